//! Active health checks: thresholds under paused time, routing around unhealthy endpoints, and
//! the HTTP probe against a real local server.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::id_svc;
use palisade_balancer::discover::StaticList;
use palisade_balancer::health::{HealthCheckConfig, HealthChecker, HealthFlag};
use palisade_balancer::{Balance, Config, Endpoint, EndpointState, Metadata, Policy};
use tower::{Service, ServiceExt};

fn config() -> HealthCheckConfig {
    HealthCheckConfig {
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(100),
        unhealthy_threshold: 2,
        healthy_threshold: 3,
    }
}

#[tokio::test(start_paused = true)]
async fn thresholds_flip_the_flag() {
    let script: Arc<Mutex<VecDeque<bool>>> = Arc::new(Mutex::new(
        [
            true, false, true, false, false, true, true, false, true, true, true,
        ]
        .into_iter()
        .collect(),
    ));
    let flag = HealthFlag::new();
    let s = script.clone();
    let task = tokio::spawn(HealthChecker::new(config(), flag.clone()).run(move || {
        let next = s.lock().unwrap().pop_front().unwrap_or(true);
        async move { next }
    }));
    let mut seen = Vec::new();
    for _ in 0..11 {
        // The first tick fires at once, then one per second.
        tokio::time::sleep(Duration::from_millis(10)).await;
        seen.push(flag.is_healthy());
        tokio::time::sleep(Duration::from_millis(990)).await;
    }
    task.abort();
    // checks:  T  F  T  F  F  T  T  F  T  T  T
    // healthy: y  y  y  y  n  n  n  n  n  n  y   (2 fails in a row; then 3 passes in a row)
    assert_eq!(
        seen,
        [
            true, true, true, true, false, false, false, false, false, false, true
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_check_that_hangs_fails() {
    let flag = HealthFlag::new();
    let task =
        tokio::spawn(HealthChecker::new(config(), flag.clone()).run(std::future::pending::<bool>));
    tokio::time::sleep(Duration::from_millis(1150)).await;
    assert!(!flag.is_healthy(), "two timed-out checks");
    task.abort();
}

#[tokio::test]
async fn unhealthy_endpoints_are_routed_around() {
    let flag = HealthFlag::new();
    let list = StaticList::new([
        (0usize, Endpoint::new(id_svc(0))),
        (
            1,
            Endpoint::with_metadata(id_svc(1), Metadata::new().health(flag.clone())),
        ),
    ]);
    let mut lb = Balance::builder(list)
        .config(Config::with_policy(Policy::RoundRobin).panic_threshold(0.0))
        .build()
        .unwrap();
    let handle = lb.handle();
    flag.set(false);
    for _ in 0..10 {
        assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), 0);
    }
    assert_eq!(
        handle.snapshot().endpoint("1").unwrap().state,
        EndpointState::Unhealthy
    );
    flag.set(true);
    let mut hits = [0; 2];
    for _ in 0..10 {
        hits[lb.ready().await.unwrap().call(()).await.unwrap()] += 1;
    }
    assert_eq!(hits, [5, 5]);
}

#[cfg(feature = "http-health")]
#[tokio::test]
async fn http_check_against_a_local_server() {
    use palisade_balancer::health::HttpCheck;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = sock.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(req.contains("\r\nHost: "), "{req}");
            let status = if req.starts_with("GET /healthz ") {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let resp =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            sock.write_all(resp.as_bytes()).await.unwrap();
        }
    });
    assert!(HttpCheck::new(addr, "/healthz").check().await);
    assert_eq!(HttpCheck::new(addr, "/other").status().await, Some(503));
    assert!(!HttpCheck::new(addr, "/other").check().await);
    server.abort();
    let _ = server.await;
    // Nobody listens there any more: the check fails, it does not hang or panic.
    let closed = HttpCheck::new(addr, "/healthz");
    assert!(!closed.check().await);
}
