//! Per-route circuit breaker with a fallback response (palisade-breaker).

mod common;

use std::sync::atomic::Ordering;

use common::*;
use http_body_util::Full;

fn yaml(backend: std::net::SocketAddr, open: &str) -> String {
    format!(
        r#"
routes:
  - id: flaky
    upstream: http://{backend}
    timeout: 300ms
    breaker:
      settings:
        window: {{ type: count, size: 4 }}
        minimum_calls: 4
        trip: {{ failure_rate: 0.5 }}
        open_duration: {{ type: constant, duration: {open} }}
      fallback: {{ status: 503, body: "flaky is resting", headers: [ {{ name: retry-after, value: "30" }} ] }}
"#
    )
}

#[tokio::test]
async fn breaker_opens_on_5xx_and_answers_with_the_fallback() {
    let b = backend("b").await;
    let gw = start(&yaml(b.addr, "60s")).await;
    let c = client();
    for _ in 0..4 {
        let r = send_with(
            &c,
            get(gw.addr, "/status/500").body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!(r.status, 500, "upstream 5xx passes through while closed");
    }
    let hits = b.hits.load(Ordering::SeqCst);
    assert_eq!(hits, 4);
    let r = send_with(&c, get(gw.addr, "/ok").body(Full::default()).unwrap()).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "flaky is resting");
    assert_eq!(r.headers["retry-after"], "30");
    assert!(r.headers.contains_key("x-request-id"));
    assert_eq!(
        b.hits.load(Ordering::SeqCst),
        hits,
        "open: the upstream is not called"
    );

    let snaps = gw.gateway.breakers().snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].name, "flaky");
    assert_eq!(snaps[0].snapshot.state, palisade_breaker::State::Open);
}

#[tokio::test]
async fn timeouts_count_as_failures_and_get_the_fallback() {
    let b = backend("b").await;
    let gw = start(&yaml(b.addr, "60s")).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get_path(gw.addr, "/hang").await.status.as_u16());
    }
    // Four timeouts answered with the fallback, then the breaker is open.
    assert_eq!(statuses, vec![503; 5]);
    let mut hung = b.hung.lock().await;
    let mut reached = 0;
    while hung.try_recv().is_ok() {
        reached += 1;
    }
    assert_eq!(reached, 4, "the fifth call never left the gateway");
    assert_eq!(
        gw.gateway.breakers().snapshots()[0].snapshot.state,
        palisade_breaker::State::Open
    );
}

#[tokio::test]
async fn reload_keeps_breaker_state_and_rejects_bad_settings() {
    let b = backend("b").await;
    let gw = start(&yaml(b.addr, "60s")).await;
    for _ in 0..4 {
        let _ = get_path(gw.addr, "/status/502").await;
    }
    assert_eq!(get_path(gw.addr, "/").await.status, 503);
    // Same route id, new settings: the breaker (and its open state) is kept.
    gw.gateway
        .reload(&parse(&yaml(b.addr, "30s")), "test.yaml")
        .unwrap();
    assert_eq!(
        gw.gateway.breakers().snapshots()[0].snapshot.state,
        palisade_breaker::State::Open
    );
    assert_eq!(get_path(gw.addr, "/").await.status, 503);

    let bad = yaml(b.addr, "60s").replace("failure_rate: 0.5", "failure_rate: 1.5");
    let e = gw.gateway.reload(&parse(&bad), "test.yaml").unwrap_err();
    assert_eq!(e.key(), "routes[0].breaker.settings", "{e}");
    assert_eq!(gw.gateway.router().version(), 1);
}

fn retry_yaml(backend: std::net::SocketAddr, attempts: u32) -> String {
    format!(
        "routes:\n  - id: r\n    upstream: http://{backend}\n    timeout: 200ms\n    retry: {{ attempts: {attempts} }}\n"
    )
}

#[tokio::test]
async fn idempotent_bodiless_requests_are_retried_within_the_bound() {
    let b = backend("b").await;
    let gw = start(&retry_yaml(b.addr, 2)).await;
    let r = get_path(gw.addr, "/flaky/2").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "flaky call 2");
    assert_eq!(b.hits.load(Ordering::SeqCst), 3);

    let b = backend("b").await;
    let gw = start(&retry_yaml(b.addr, 1)).await;
    let r = get_path(gw.addr, "/flaky/5").await;
    assert_eq!(r.status, 503, "the bound holds");
    assert_eq!(b.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unsafe_methods_are_not_retried_and_bodies_are_replayed() {
    let b = backend("b").await;
    let gw = start(&retry_yaml(b.addr, 3)).await;
    let post = http::Request::post(format!("http://{}/flaky/5", gw.addr))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(post).await.status, 503);
    assert_eq!(b.hits.load(Ordering::SeqCst), 1, "POST is not idempotent");
    let put = http::Request::put(format!("http://{}/flaky/5", gw.addr))
        .body(Full::new(bytes::Bytes::from_static(b"data")))
        .unwrap();
    assert_eq!(send(put).await.status, 503);
    // wip/gwlb: a small body is kept and replayed (`retry.max_replay_bytes`, tests/replay.rs).
    assert_eq!(
        b.hits.load(Ordering::SeqCst),
        5,
        "a PUT with a body is retried"
    );
}

#[tokio::test]
async fn timeouts_are_retried() {
    let b = backend("b").await;
    let gw = start(&retry_yaml(b.addr, 2)).await;
    assert_eq!(get_path(gw.addr, "/hang").await.status, 504);
    let mut hung = b.hung.lock().await;
    let mut reached = 0;
    while hung.try_recv().is_ok() {
        reached += 1;
    }
    assert_eq!(reached, 3, "first try and two retries");
}
