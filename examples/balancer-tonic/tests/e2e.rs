//! The example end to end, over real HTTP/2 connections on 127.0.0.1.

use palisade_balancer::{EjectionReason, EndpointState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_server_is_ejected_and_the_others_serve() {
    let s = example_balancer_tonic::run(200).await.unwrap();
    assert!(s.errors >= 5 && s.errors < 40, "{s:?}");
    assert_eq!(s.per_server[2], 0);
    assert_eq!(s.per_server[0] + s.per_server[1] + s.errors, 200);
    assert!(s.per_server[0] > 40 && s.per_server[1] > 40, "{s:?}");
    let e = s.snapshot.endpoint("2").unwrap();
    assert_eq!(e.state, EndpointState::Ejected);
    assert_eq!(e.last_ejection, Some(EjectionReason::ConsecutiveFailures));
}
