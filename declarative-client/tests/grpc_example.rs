//! Runs `examples/grpc_breaker.rs` and checks what it shows.
#![allow(missing_docs, dead_code, unreachable_pub)]

#[path = "../examples/grpc_breaker.rs"]
mod example;

use tonic::Code;

#[tokio::test]
async fn tonic_client_behind_the_breaker() {
    let outcomes = example::run().await;
    assert_eq!(outcomes.len(), 4);
    assert_eq!(outcomes[0].as_ref().unwrap().as_ref(), b"hello, palisade");
    for failed in &outcomes[1..3] {
        let s = failed.as_ref().unwrap_err();
        assert_eq!(s.code(), Code::Unavailable);
        assert!(!example::is_rejection(s));
    }
    // The server would answer now, but the breaker is open.
    let s = outcomes[3].as_ref().unwrap_err();
    assert!(example::is_rejection(s), "{s:?}");
}
