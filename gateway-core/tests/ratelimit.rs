//! Cluster-wide rate limit: two gateway instances share one Redis token bucket. Needs
//! `PALISADE_REDIS_URL` (scripts/services/gateway-redis.sh starts a Redis and sets it).

mod common;

use common::*;
use http_body_util::Full;
use palisade_gateway::Gateway;
use palisade_gateway::ratelimit::RedisLimiter;

fn redis_url() -> String {
    std::env::var("PALISADE_REDIS_URL")
        .expect("PALISADE_REDIS_URL is not set: run the tests through scripts/test.sh (scripts/services/gateway-redis.sh sets it)")
}

async fn instance(yaml: &str) -> Gw {
    let cfg = parse(yaml);
    let limiter = RedisLimiter::connect(&redis_url())
        .await
        .expect("Redis is reachable");
    let gateway = Gateway::builder(cfg.clone())
        .redis(limiter)
        .build()
        .unwrap();
    serve(gateway, cfg).await
}

#[tokio::test]
async fn two_gateways_share_one_bucket() {
    let b = backend("b").await;
    // A fresh route id per run: buckets live in Redis between runs.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let yaml = format!(
        "routes:\n  - id: rl-{nanos}\n    upstream: http://{}\n    rate_limit: {{ replenish_rate: 0.001, burst: 3, key_header: x-client }}\n",
        b.addr
    );
    let a = instance(&yaml).await;
    let c = instance(&yaml).await;
    let call = |gw: std::net::SocketAddr, client: &'static str| {
        send(
            get(gw, "/")
                .header("x-client", client)
                .body(Full::default())
                .unwrap(),
        )
    };
    let r1 = call(a.addr, "alice").await;
    let r2 = call(c.addr, "alice").await;
    let r3 = call(a.addr, "alice").await;
    let r4 = call(c.addr, "alice").await;
    let r5 = call(a.addr, "alice").await;
    let statuses: Vec<u16> = [&r1, &r2, &r3, &r4, &r5]
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let remaining: Vec<&str> = [&r1, &r2, &r3, &r4]
        .iter()
        .map(|r| r.headers["ratelimit-remaining"].to_str().unwrap())
        .collect();
    assert_eq!(remaining, ["2", "1", "0", "0"]);
    assert_eq!(r1.headers["ratelimit-limit"], "3");
    assert_eq!(r4.headers["retry-after"], "1000");
    assert_eq!(
        b.hits.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "rejected calls never reach the backend"
    );
    // Another client has its own bucket.
    assert_eq!(call(c.addr, "bob").await.status, 200);
}

#[tokio::test]
async fn rate_limit_without_redis_is_refused() {
    let yaml = "routes:\n  - id: r\n    upstream: http://127.0.0.1:9\n    rate_limit: { replenish_rate: 1, burst: 1 }\n";
    let e = Gateway::builder(parse(yaml)).build().unwrap_err();
    assert_eq!(e.key(), "routes[0].rate_limit");
    // Keep the env contract: this file's tests run only where Redis was started.
    let _ = redis_url();
}

/// gwsec: behind a trusted proxy the bucket is the client's (the right-most untrusted
/// `X-Forwarded-For` entry), not the proxy's; from an untrusted peer the header is ignored, so
/// a client cannot dodge its bucket by spoofing it.
#[tokio::test]
async fn trusted_proxies_key_the_bucket_by_the_forwarded_client() {
    let b = backend("b").await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let route = format!(
        "routes:\n  - id: rl-trust-{nanos}\n    upstream: http://{}\n    rate_limit: {{ replenish_rate: 0.001, burst: 1 }}\n",
        b.addr
    );
    let call = |gw: std::net::SocketAddr, xff: &'static str| {
        send(
            get(gw, "/")
                .header("x-forwarded-for", xff)
                .body(Full::default())
                .unwrap(),
        )
    };
    // The test client (127.0.0.1) is a trusted proxy: one bucket per forwarded client.
    let gw = instance(&format!("trusted_proxies: [127.0.0.1]\n{route}")).await;
    let statuses = [
        call(gw.addr, "198.51.100.1").await.status.as_u16(),
        call(gw.addr, "198.51.100.2").await.status.as_u16(),
        call(gw.addr, "198.51.100.1, 127.0.0.1")
            .await
            .status
            .as_u16(),
    ];
    assert_eq!(statuses, [200, 200, 429]);

    // Untrusted: every request is the peer's, whatever it claims.
    let route = route.replace("rl-trust-", "rl-untrusted-");
    let gw = instance(&format!("trusted_proxies: [10.0.0.0/8]\n{route}")).await;
    let statuses = [
        call(gw.addr, "198.51.100.3").await.status.as_u16(),
        call(gw.addr, "198.51.100.4").await.status.as_u16(),
    ];
    assert_eq!(statuses, [200, 429]);
}
