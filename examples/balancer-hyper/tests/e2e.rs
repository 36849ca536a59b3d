//! The example end to end, over real sockets on 127.0.0.1.

use palisade_balancer::{EjectionReason, EndpointState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_server_is_ejected_and_the_others_serve() {
    let s = example_balancer_hyper::run(200).await.unwrap();
    // Five 503s in a row eject server 2 for 30 s; P2C may need a few picks to hit it that often.
    assert!(s.server_errors >= 5 && s.server_errors < 40, "{s:?}");
    assert_eq!(s.per_server.iter().sum::<usize>(), 200);
    assert!(s.per_server[0] > 40 && s.per_server[1] > 40, "{s:?}");
    let e = s.snapshot.endpoint("2").unwrap();
    assert_eq!(e.state, EndpointState::Ejected);
    assert_eq!(e.last_ejection, Some(EjectionReason::ConsecutiveFailures));
}
