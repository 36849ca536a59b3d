//! Allocations per request added by a route's bulkhead and local rate limit, counted by a
//! global allocator around real requests (client, gateway and backend in one process; the
//! difference between two routes of the same gateway isolates the limits).

mod common;

use std::alloc::System;

use common::*;
use http_body_util::Full;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn allocs() -> u64 {
    let s = GLOBAL.stats();
    (s.allocations + s.reallocations) as u64
}

#[tokio::test(flavor = "current_thread")]
async fn limits_add_no_allocation_per_request() {
    let b = backend("b").await;
    let gw = start(&format!(
        r#"
routes:
  - id: bh
    upstream: http://{0}
    predicates: {{ path_prefix: /bh }}
    bulkhead: {{ max_concurrent: 64 }}
  - id: rl
    upstream: http://{0}
    predicates: {{ path_prefix: /rl }}
    local_rate_limit: {{ rate: 1000000, burst: 100, key: {{ header: x-api-key }} }}
  - id: hdr
    upstream: http://{0}
    predicates: {{ path_prefix: /hdr }}
    filters: [ {{ add_response_header: {{ name: ratelimit-limit, value: "100" }} }}, {{ add_response_header: {{ name: ratelimit-remaining, value: "99" }} }}, {{ add_response_header: {{ name: ratelimit-reset, value: "1" }} }} ]
  - id: plain
    upstream: http://{0}
"#,
        b.addr
    ))
    .await;
    let c = client();
    let run = async |path: &str, n: u64| {
        let before = allocs();
        for _ in 0..n {
            let r = send_with(
                &c,
                get(gw.addr, path)
                    .header("x-api-key", "k")
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
            assert_eq!(r.status, 200);
        }
        allocs() - before
    };
    for p in ["/plain", "/bh", "/rl", "/hdr"] {
        run(p, 50).await; // warm: pools, limiter keys, header tables
    }
    let n = 400;
    let plain = run("/plain", n).await;
    let bulkhead = run("/bh", n).await;
    // Same three response headers as the limiter writes, as fixed values: what the headers
    // cost the client and the server, apart from the limiter.
    let headers = run("/hdr", n).await;
    let rate = run("/rl", n).await;
    let per = |a: u64, b: u64| (a as f64 - b as f64) / n as f64;
    println!(
        "allocations per request (client + gateway + backend): plain {:.2}; bulkhead {:+.2}; \
         local rate limit {:+.2} over fixed headers ({:+.2} over plain)",
        plain as f64 / n as f64,
        per(bulkhead, plain),
        per(rate, headers),
        per(rate, plain),
    );
    assert!(
        per(bulkhead, plain) < 0.5,
        "the bulkhead allocates per request"
    );
    assert!(
        per(rate, headers) < 0.5,
        "the local rate limit allocates per request"
    );
}
