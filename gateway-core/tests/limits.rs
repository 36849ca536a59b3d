//! Per-route bulkhead and local (in-process) rate limit, against a real backend on loopback.

mod common;

use std::time::Duration;

use common::*;
use http_body_util::Full;
use palisade_gateway::config::GatewayConfig;

fn routes(backend: std::net::SocketAddr, yaml: &str) -> String {
    yaml.replace("BACKEND", &format!("http://{backend}"))
}

fn header(r: &Reply, name: &str) -> Option<String> {
    r.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulkhead_caps_requests_in_flight_per_route() {
    let b = backend("b").await;
    let gw = start(&routes(
        b.addr,
        r#"
routes:
  - id: fast-fail
    upstream: BACKEND
    predicates: { path_prefix: /ff }
    filters: [ { strip_prefix: 1 } ]
    timeout: 400ms
    bulkhead: { max_concurrent: 1, max_wait: 0s }
  - id: queued
    upstream: BACKEND
    predicates: { path_prefix: /q }
    filters: [ { strip_prefix: 1 } ]
    timeout: 400ms
    bulkhead: { max_concurrent: 1, max_wait: 5s, max_queue: 1 }
  - id: short-wait
    upstream: BACKEND
    predicates: { path_prefix: /sw }
    filters: [ { strip_prefix: 1 } ]
    timeout: 2s
    bulkhead: { max_concurrent: 1, max_wait: 50ms, max_queue: 1 }
"#,
    ))
    .await;
    let addr = gw.addr;
    let mut hung = b.hung.lock().await;

    // Fail fast: while one request hangs upstream, the next is refused at once.
    let first = tokio::spawn(async move { get_path(addr, "/ff/hang").await });
    hung.recv().await.unwrap();
    let r = get_path(addr, "/ff/x").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "route at capacity\n");
    assert_eq!(first.await.unwrap().status, 504); // the route's timeout frees the slot
    assert_eq!(get_path(addr, "/ff/x").await.status, 200);

    // Wait: the second request queues and goes through once the first one's slot is free.
    let first = tokio::spawn(async move { get_path(addr, "/q/hang").await });
    hung.recv().await.unwrap();
    let started = tokio::time::Instant::now();
    let second = get_path(addr, "/q/x").await;
    assert_eq!(second.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "did not wait"
    );
    assert_eq!(first.await.unwrap().status, 504);

    // A wait longer than max_wait is refused.
    let first = tokio::spawn(async move { get_path(addr, "/sw/hang").await });
    hung.recv().await.unwrap();
    let r = get_path(addr, "/sw/x").await;
    assert_eq!(r.status, 503);
    first.abort();
}

#[tokio::test]
async fn local_rate_limit_by_header_with_standard_headers() {
    let b = backend("b").await;
    let yaml = routes(
        b.addr,
        r#"
routes:
  - id: keyed
    upstream: BACKEND
    local_rate_limit: { rate: 2, period: 1h, key: { header: x-api-key } }
    filters: [ { api_key: { keys: [k1, k2] } } ]
"#,
    );
    let gw = start(&yaml).await;
    let call = |key: &'static str| {
        send(
            get(gw.addr, "/")
                .header("x-api-key", key)
                .body(Full::default())
                .unwrap(),
        )
    };
    let r = call("k1").await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("1"));
    // Full again in about one emission interval (30 min).
    let reset: u64 = header(&r, "ratelimit-reset").unwrap().parse().unwrap();
    assert!((1790..=1800).contains(&reset), "{reset}");
    let r = call("k1").await;
    assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("0"));
    let r = call("k1").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body, "rate limit exceeded\n");
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1790..=1800).contains(&retry), "{retry}");
    assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("0"));
    // Another key has its own budget; the limited one reached the backend twice only.
    assert_eq!(call("k2").await.status, 200);
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), 3);

    // A reload keeps the limiter's state (k1 is still limited) and applies a new rate.
    let v = gw
        .gateway
        .reload(
            &GatewayConfig::from_yaml(&yaml.replace("rate: 2,", "rate: 3,"), "r.yaml").unwrap(),
            "r.yaml",
        )
        .unwrap();
    assert_eq!(v, 1);
    let r = call("k1").await;
    assert_eq!(r.status, 429);
    assert_eq!(header(&r, "ratelimit-limit").as_deref(), Some("3"));
}

fn hs256(secret: &[u8], claims: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::Mac;
    let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(claims);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{h}.{p}").as_bytes());
    format!(
        "{h}.{p}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn local_rate_limit_by_jwt_subject_and_client_ip() {
    let b = backend("b").await;
    let gw = start(&routes(
        b.addr,
        r#"
routes:
  - id: by-sub
    upstream: BACKEND
    predicates: { path_prefix: /sub }
    filters: [ { jwt: { secret: "0123456789abcdef-route-secret", require_exp: false } } ]
    local_rate_limit: { rate: 1, period: 1h, key: jwt_subject }
  - id: by-ip
    upstream: BACKEND
    predicates: { path_prefix: /ip }
    local_rate_limit: { rate: 1, period: 1h, burst: 2 }
"#,
    ))
    .await;
    let secret = b"0123456789abcdef-route-secret";
    let alice = hs256(secret, r#"{"sub":"alice"}"#);
    let bob = hs256(secret, r#"{"sub":"bob"}"#);
    let call = |t: &str| {
        send(
            get(gw.addr, "/sub")
                .header("authorization", format!("Bearer {t}"))
                .body(Full::default())
                .unwrap(),
        )
    };
    assert_eq!(call(&alice).await.status, 200);
    assert_eq!(call(&alice).await.status, 429);
    assert_eq!(call(&bob).await.status, 200);
    // A forged token is refused by the jwt filter and does not use up the subject's budget.
    let forged = hs256(b"another-secret-of-enough-length", r#"{"sub":"bob"}"#);
    let r = call(&forged).await;
    assert_eq!(r.status, 401);
    assert!(header(&r, "ratelimit-limit").is_none());

    // By client IP, burst 2.
    assert_eq!(get_path(gw.addr, "/ip").await.status, 200);
    assert_eq!(get_path(gw.addr, "/ip").await.status, 200);
    let r = get_path(gw.addr, "/ip").await;
    assert_eq!(r.status, 429);
    assert_eq!(header(&r, "ratelimit-limit").as_deref(), Some("2"));
}

#[test]
fn bad_limits_are_refused_with_their_key() {
    let e = GatewayConfig::from_yaml(
        "routes:\n  - id: a\n    upstream: http://127.0.0.1:1\n    local_rate_limit: { rate: 0 }\n",
        "r.yaml",
    )
    .unwrap_err();
    assert_eq!(e.key(), "routes[0].local_rate_limit.rate");
    assert_eq!(e.line(), Some(2));
    let e = GatewayConfig::from_yaml(
        "routes:\n  - id: a\n    upstream: http://127.0.0.1:1\n    bulkhead: { max_concurrent: 0 }\n",
        "r.yaml",
    )
    .unwrap_err();
    assert_eq!(e.key(), "routes[0].bulkhead.max_concurrent");
    let e = GatewayConfig::from_yaml(
        "routes:\n  - id: a\n    upstream: http://127.0.0.1:1\n    bulkhead: { max_concurrent: 2, max_wait: 1s }\n",
        "r.yaml",
    )
    .unwrap_err();
    assert_eq!(e.key(), "routes[0].bulkhead.max_queue");
    assert!(e.to_string().contains("max_wait"), "{e}");
    let e = GatewayConfig::from_yaml(
        "routes:\n  - id: a\n    upstream: http://127.0.0.1:1\n    local_rate_limit: { rate: 1, key: { cookie: x } }\n",
        "r.yaml",
    )
    .unwrap_err();
    assert_eq!(e.line(), Some(4));
    let e = GatewayConfig::from_yaml(
        "routes:\n  - id: a\n    upstream: lb://orders\n    protocol: h2c\n",
        "r.yaml",
    )
    .unwrap_err();
    assert_eq!(e.key(), "routes[0].protocol");
    let e = GatewayConfig::from_yaml("registry:\n  urls: [ \"ftp://x\" ]\nroutes: []\n", "r.yaml")
        .unwrap_err();
    assert_eq!(e.key(), "registry.urls[0]");
    assert_eq!(e.line(), Some(1));
}

#[tokio::test]
async fn local_rate_limit_keys_on_the_client_behind_trusted_proxies() {
    let b = backend("b").await;
    let gw = start(&routes(
        b.addr,
        r#"
trusted_proxies: [ 127.0.0.1 ]
routes:
  - id: by-ip
    upstream: BACKEND
    local_rate_limit: { rate: 1, period: 1h }
"#,
    ))
    .await;
    let from = |client: &'static str| {
        send(
            get(gw.addr, "/")
                .header("x-forwarded-for", client)
                .body(Full::default())
                .unwrap(),
        )
    };
    assert_eq!(from("203.0.113.7").await.status, 200);
    assert_eq!(from("203.0.113.7").await.status, 429);
    // Another client behind the same proxy has its own budget.
    assert_eq!(from("203.0.113.8").await.status, 200);
}

// gw2: the slot is the whole exchange's, not just the response head's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulkhead_slot_is_held_until_the_streamed_body_ends_or_is_dropped() {
    use http_body_util::BodyExt;
    let b = backend("b").await;
    let gw = start(&routes(
        b.addr,
        r#"
routes:
  - id: one-at-a-time
    upstream: BACKEND
    bulkhead: { max_concurrent: 1, max_wait: 0s }
"#,
    ))
    .await;
    let addr = gw.addr;
    let wait = Duration::from_secs(10);

    // The head is back but the body is still streaming: the exchange is in flight.
    let resp = client()
        .request(get(addr, "/stream-down").body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(wait, body.frame())
        .await
        .expect("first chunk")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first;");
    let r = get_path(addr, "/x").await;
    assert_eq!(r.status, 503, "slot given back at the response head");
    assert_eq!(r.body, "route at capacity\n");

    // Body ends: the slot is free again before the client has seen the end.
    b.release.notify_one();
    let rest = tokio::time::timeout(wait, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(rest, "second");
    assert_eq!(get_path(addr, "/x").await.status, 200);

    // A client that goes away mid-body gives the slot back too (once the gateway sees it).
    let resp = client()
        .request(get(addr, "/stream-down").body(Full::default()).unwrap())
        .await
        .unwrap();
    let mut body = resp.into_body();
    tokio::time::timeout(wait, body.frame())
        .await
        .expect("first chunk")
        .unwrap()
        .unwrap();
    assert_eq!(get_path(addr, "/x").await.status, 503);
    drop(body);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let r = get_path(addr, "/x").await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "slot not given back after the client dropped the body"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The backend's stream is still open (never released): only the drop freed the slot.
    b.release.notify_one();
}
