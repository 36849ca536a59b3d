//! `cargo run -p example-balancer-hyper`: see the crate docs.

#[tokio::main]
async fn main() -> Result<(), palisade_balancer::BoxError> {
    let summary = example_balancer_hyper::run(300).await?;
    println!("responses per server: {:?}", summary.per_server);
    println!("5xx responses: {}", summary.server_errors);
    for e in &summary.snapshot.endpoints {
        println!(
            "endpoint {}: {:?}, {} ok, {} failed, ejected {} time(s), rtt {:?}",
            e.key, e.state, e.successes, e.failures, e.ejections, e.rtt_estimate
        );
    }
    Ok(())
}
