//! Runs N closed-state calls through one circuit breaker implementation, for instruction counting
//! with callgrind (`benches/scripts/breaker-instructions.sh`): instruction counts do not depend on
//! what else the machine is doing, unlike criterion's wall-clock medians.
//!
//! Usage: `breaker_calls <bare|palisade|palisade-static|tower-resilience|recloser|recloser-async|failsafe|failsafe-async|
//! bulkhead|bulkhead-static|ratelimit|ratelimit-coarse|retry|retry-static|floor> N` (`bulkhead`, `ratelimit`, `retry`: Palisade's layers on their
//! happy path, configured as in `benches/resilience.rs`; `floor`: one `fetch_add` + `fetch_sub`).

use std::future::{Ready, ready};
use std::task::Context;

use palisade_benches::{Fail, drive, op, poll_once};

use palisade_breaker::circuit::{CircuitBreakerLayer, Config};
use tower::Layer;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().expect("implementation name");
    let n: u64 = args
        .next()
        .map_or(1_000_000, |s| s.parse().expect("a count"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _rt = rt.enter();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let backend: fn(u64) -> Ready<Result<u64, Fail>> = |x| ready(op(x));
    let mut ok = 0u64;
    match which.as_str() {
        "bare" => {
            let mut s = tower::service_fn(backend);
            (0..n).for_each(|i| ok += u64::from(drive(&mut s, i, &mut cx)));
        }
        "palisade" => {
            let layer = CircuitBreakerLayer::new("b", Config::default()).expect("config");
            let mut s = layer.layer(tower::service_fn(backend));
            (0..n).for_each(|i| ok += u64::from(drive(&mut s, i, &mut cx)));
        }
        "palisade-static" => {
            let layer = CircuitBreakerLayer::builder("b")
                .config(Config::default())
                .build_static()
                .expect("config");
            // The same backend by reference: a service type of its own, so
            // that `drive` is inlined here as it is for `palisade` (one call site per type).
            let mut s = layer.layer(tower::service_fn(&backend));
            (0..n).for_each(|i| ok += u64::from(drive(&mut s, i, &mut cx)));
        }
        "tower-resilience" => {
            let layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .build()
                .expect("config");
            let mut s = layer.layer(tower::service_fn(backend));
            (0..n).for_each(|i| ok += u64::from(drive(&mut s, i, &mut cx)));
        }
        "recloser" => {
            let r = recloser::Recloser::custom().build();
            (0..n).for_each(|i| ok += u64::from(r.call(|| op(i)).is_ok()));
        }
        "recloser-async" => {
            let r = recloser::AsyncRecloser::from(recloser::Recloser::custom().build());
            (0..n).for_each(|i| ok += u64::from(poll_once(r.call(ready(op(i))), &mut cx).is_ok()));
        }
        "failsafe" => {
            use failsafe::CircuitBreaker;
            let f = failsafe::Config::new().build();
            (0..n).for_each(|i| ok += u64::from(f.call(|| op(i)).is_ok()));
        }
        "failsafe-async" => {
            use failsafe::futures::CircuitBreaker;
            let f = failsafe::Config::new().build();
            (0..n).for_each(|i| ok += u64::from(poll_once(f.call(ready(op(i))), &mut cx).is_ok()));
        }
        "bulkhead" => {
            use palisade_breaker::bulkhead::{BulkheadLayer, Config};
            let cfg = Config::builder()
                .max_concurrent(1000)
                .build()
                .expect("config");
            let layer = BulkheadLayer::new("b", cfg).expect("config");
            let mut s = layer.layer(tower::service_fn(backend));
            (0..n).for_each(|i| ok += u64::from(drive(&mut s, i, &mut cx)));
        }
        "bulkhead-static" => {
            use palisade_breaker::bulkhead::{BulkheadLayer, Config};
            let cfg = Config::builder()
                .max_concurrent(1000)
                .build()
                .expect("config");
            let layer = BulkheadLayer::new_static("b", cfg).expect("config");
            let mut s = layer.layer(tower::service_fn(backend));
            (0..n).for_each(|i| ok += u64::from(drive(&mut s, i, &mut cx)));
        }
        "retry-static" => {
            use palisade_breaker::retry::RetryLayer;
            let layer = RetryLayer::builder("b").build_static().expect("config");
            let mut s = layer.layer(tower::service_fn(backend));
            (0..n).for_each(|i| ok += u64::from(drive(&mut s, i, &mut cx)));
        }
        "ratelimit" => {
            use palisade_breaker::ratelimit::{Config, RateLimitLayer};
            let cfg = Config::per(1_000_000_000, std::time::Duration::from_secs(1));
            let mut s = RateLimitLayer::new(cfg)
                .expect("config")
                .layer(tower::service_fn(backend));
            (0..n).for_each(|i| ok += u64::from(drive(&mut s, i, &mut cx)));
        }
        "ratelimit-coarse" => {
            use palisade_breaker::ratelimit::{Config, RateLimitLayer};
            let cfg = Config::per(1_000_000_000, std::time::Duration::from_secs(1));
            // A service type of its own (see `palisade-static`).
            let mut s = RateLimitLayer::new_coarse(cfg)
                .expect("config")
                .layer(tower::service_fn(&backend));
            (0..n).for_each(|i| ok += u64::from(drive(&mut s, i, &mut cx)));
        }
        "retry" => {
            use palisade_breaker::retry::{Config, RetryLayer};
            let layer = RetryLayer::new("b", Config::default()).expect("config");
            let mut s = layer.layer(tower::service_fn(backend));
            (0..n).for_each(|i| ok += u64::from(drive(&mut s, i, &mut cx)));
        }
        // The least an exact shared bulkhead must do: take a slot and give it back.
        "floor" => {
            use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
            let slots = AtomicUsize::new(0);
            (0..n).for_each(|i| {
                std::hint::black_box(&slots).fetch_add(1, SeqCst);
                ok += u64::from(op(i).is_ok());
                std::hint::black_box(&slots).fetch_sub(1, SeqCst);
            });
        }
        other => panic!("unknown implementation {other}"),
    }
    assert_eq!(ok, n, "every call succeeded");
}
