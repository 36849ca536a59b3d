//! `cargo run -p example-balancer-tonic`: see the crate docs.

#[tokio::main]
async fn main() -> Result<(), palisade_balancer::BoxError> {
    let summary = example_balancer_tonic::run(300).await?;
    println!("replies per server: {:?}", summary.per_server);
    println!("gRPC errors: {}", summary.errors);
    for e in &summary.snapshot.endpoints {
        println!(
            "endpoint {}: {:?}, {} ok, {} failed, ejected {} time(s)",
            e.key, e.state, e.successes, e.failures, e.ejections
        );
    }
    Ok(())
}
