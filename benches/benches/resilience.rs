//! Per-call overhead of Palisade's bulkhead, rate limiter, retry and timeout against a bare
//! service, tower's own layers and tower-resilience's, in one run.
//!
//! `cargo bench -p palisade-benches --bench resilience` runs the criterion groups, then prints a
//! markdown table: median ns per call (poll_ready + call + poll of a service whose future is
//! ready at once), overhead over the bare service, the ratio of each peer's overhead to
//! Palisade's, and allocations per call (counted by an instrumented global allocator over
//! 10,000 calls).
//!
//! Every layer is on its happy path: the bulkhead is never full, the rate limit is never hit,
//! the retry never retries, the timeout never fires.

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use palisade_benches::{allocations_per_call, criterion_dir, median_ns};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tower::{Layer, Service};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// The protected operation: a ready future, failing for `u64::MAX`.
#[derive(Clone, Copy)]
struct Backend;

#[derive(Debug, Clone)]
struct Fail;

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fail")
    }
}
impl std::error::Error for Fail {}

impl Service<u64> for Backend {
    type Response = u64;
    type Error = Fail;
    type Future = Ready<Result<u64, Fail>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Fail>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, x: u64) -> Self::Future {
        ready(if x == u64::MAX { Err(Fail) } else { Ok(x) })
    }
}

/// poll_ready + call + poll with a no-op waker; re-polls on `Pending` as an executor would.
#[inline]
fn drive<S: Service<u64>>(svc: &mut S, x: u64, cx: &mut Context<'_>) -> bool {
    loop {
        match svc.poll_ready(cx) {
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(_)) => return false,
            Poll::Pending => std::hint::spin_loop(),
        }
    }
    let mut fut = pin!(svc.call(x));
    loop {
        match fut.as_mut().poll(cx) {
            Poll::Ready(r) => return r.is_ok(),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
}

type Caller = Box<dyn FnMut(u64) -> bool>;

fn caller<S: Service<u64> + 'static>(mut svc: S) -> Caller {
    let waker = futures::task::noop_waker();
    Box::new(move |x| drive(&mut svc, x, &mut Context::from_waker(&waker)))
}

/// The least an exact bulkhead shared by clones must do around the bare call: take a slot and
/// give it back, one locked read-modify-write each.
fn floor_slot() -> Caller {
    let slots = std::sync::Arc::new(AtomicUsize::new(0));
    let waker = futures::task::noop_waker();
    let mut svc = Backend;
    Box::new(move |x| {
        black_box(&*slots).fetch_add(1, SeqCst);
        let ok = drive(&mut svc, x, &mut Context::from_waker(&waker));
        black_box(&*slots).fetch_sub(1, SeqCst);
        ok
    })
}

/// The least a rate limiter shared by clones must do (GCRA, or Resilience4j's cycle refresh):
/// read the clock and move one atomic word.
fn floor_clock() -> Caller {
    let epoch = tokio::time::Instant::now();
    let tat = std::sync::Arc::new(AtomicU64::new(0));
    let waker = futures::task::noop_waker();
    let mut svc = Backend;
    Box::new(move |x| {
        let now = tokio::time::Instant::now()
            .saturating_duration_since(epoch)
            .as_nanos() as u64;
        let cur = black_box(&*tat).load(Relaxed);
        let _ = black_box(&*tat).compare_exchange(cur, cur.max(now) + 1, AcqRel, Relaxed);
        drive(&mut svc, x, &mut Context::from_waker(&waker))
    })
}

/// The least a rate limiter on a coarse clock must do: load the clock word and move the TAT.
fn floor_coarse_clock() -> Caller {
    let clock = std::sync::Arc::new(AtomicU64::new(1));
    let tat = std::sync::Arc::new(AtomicU64::new(0));
    let waker = futures::task::noop_waker();
    let mut svc = Backend;
    Box::new(move |x| {
        let now = black_box(&*clock).load(Acquire);
        let cur = black_box(&*tat).load(Relaxed);
        let _ = black_box(&*tat).compare_exchange(cur, cur.max(now) + 1, AcqRel, Relaxed);
        drive(&mut svc, x, &mut Context::from_waker(&waker))
    })
}

/// A tower retry policy: retry errors up to 3 attempts, never `Ok`.
#[derive(Clone)]
struct Attempts(usize);

impl tower::retry::Policy<u64, u64, Fail> for Attempts {
    type Future = Ready<()>;
    fn retry(&mut self, _: &mut u64, r: &mut Result<u64, Fail>) -> Option<Self::Future> {
        match r {
            Ok(_) => None,
            Err(_) if self.0 > 1 => {
                self.0 -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }
    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn group(name: &str) -> Vec<(&'static str, Caller)> {
    let bare: (&'static str, Caller) = ("bare service", caller(Backend));
    match name {
        "bulkhead" => {
            use palisade_breaker::bulkhead::{BulkheadLayer, Config};
            let ours = BulkheadLayer::new(
                "bench",
                Config::builder().max_concurrent(1000).build().unwrap(),
            )
            .unwrap();
            let tr = tower_resilience_bulkhead::BulkheadLayer::builder()
                .max_concurrent_calls(1000)
                .build()
                .unwrap();
            let ours_static = BulkheadLayer::new_static(
                "bench",
                Config::builder().max_concurrent(1000).build().unwrap(),
            )
            .unwrap();
            vec![
                bare,
                ("palisade", caller(ours.layer(Backend))),
                ("palisade static", caller(ours_static.layer(Backend))),
                ("floor (fetch_add + fetch_sub)", floor_slot()),
                (
                    "tower ConcurrencyLimit",
                    caller(tower::limit::ConcurrencyLimitLayer::new(1000).layer(Backend)),
                ),
                ("tower-resilience", caller(tr.layer(Backend))),
            ]
        }
        "rate_limit" => {
            use palisade_breaker::ratelimit::{Config, RateLimitLayer};
            // Never hit: a billion calls per second.
            let ours =
                RateLimitLayer::new(Config::per(1_000_000_000, Duration::from_secs(1))).unwrap();
            let coarse =
                RateLimitLayer::new_coarse(Config::per(1_000_000_000, Duration::from_secs(1)))
                    .unwrap();
            let tr = tower_resilience_ratelimiter::RateLimiterLayer::builder()
                .limit_for_period(usize::MAX / 2)
                .refresh_period(Duration::from_secs(1))
                .build()
                .unwrap();
            vec![
                bare,
                ("palisade", caller(ours.layer(Backend))),
                ("floor (clock read + CAS)", floor_clock()),
                ("palisade coarse clock", caller(coarse.layer(Backend))),
                ("floor (coarse clock load + CAS)", floor_coarse_clock()),
                (
                    "tower RateLimit",
                    caller(
                        tower::limit::RateLimitLayer::new(u64::MAX / 2, Duration::from_secs(1))
                            .layer(Backend),
                    ),
                ),
                ("tower-resilience", caller(tr.layer(Backend))),
            ]
        }
        "retry" => {
            use palisade_breaker::retry::{Config, RetryLayer};
            let ours = RetryLayer::new("bench", Config::default()).unwrap();
            let ours_static = RetryLayer::builder("bench").build_static().unwrap();
            let tr = tower_resilience_retry::RetryLayer::<u64, u64, Fail>::builder()
                .max_attempts(3)
                .exponential_backoff(Duration::from_millis(25))
                .build();
            vec![
                bare,
                ("palisade", caller(ours.layer(Backend))),
                ("palisade static", caller(ours_static.layer(Backend))),
                (
                    "tower Retry",
                    caller(tower::retry::RetryLayer::new(Attempts(3)).layer(Backend)),
                ),
                ("tower-resilience", caller(tr.layer(Backend))),
            ]
        }
        "timeout" => {
            let ours = palisade_breaker::timeout::TimeoutLayer::new(Duration::from_secs(10));
            vec![
                bare,
                ("palisade", caller(ours.layer(Backend))),
                (
                    "tower Timeout",
                    caller(
                        tower::timeout::TimeoutLayer::new(Duration::from_secs(10)).layer(Backend),
                    ),
                ),
            ]
        }
        "adaptive" => {
            use palisade_breaker::bulkhead::Config;
            use palisade_breaker::limit::{AdaptiveLimitLayer, Vegas};
            let ours =
                AdaptiveLimitLayer::new("bench", Vegas::new(1000, 10, 2000), Config::default())
                    .unwrap();
            vec![bare, ("palisade", caller(ours.layer(Backend)))]
        }
        "fallback" => {
            use palisade_breaker::fallback::{Cause, FallbackLayer};
            let ours = FallbackLayer::new(|_: Cause<u64, Fail>| ready(Ok::<u64, Fail>(0)));
            vec![bare, ("palisade", caller(ours.layer(Backend)))]
        }
        "hedge" => {
            let ours = palisade_breaker::hedge::HedgeLayer::fixed(Duration::from_secs(10));
            vec![bare, ("palisade", caller(ours.layer(Backend)))]
        }
        "chaos" => {
            use palisade_breaker::chaos::{ChaosLayer, Config};
            let off = ChaosLayer::new(Config {
                enabled: false,
                ..Config::default()
            })
            .unwrap();
            let on = ChaosLayer::new(Config::default()).unwrap();
            vec![
                bare,
                ("palisade", caller(off.layer(Backend))),
                ("palisade enabled, zero rates", caller(on.layer(Backend))),
            ]
        }
        _ => unreachable!(),
    }
}

// Group names are what `benches/scripts/jvm-compare.sh` on main reads (`bulkhead`,
// `rate_limit`, `retry`); none collides with the breaker bench's (`closed`, `open`, `contended`).
const GROUPS: [&str; 8] = [
    "bulkhead",
    "rate_limit",
    "retry",
    "timeout",
    "adaptive",
    "fallback",
    "hedge",
    "chaos",
];

fn tokio_handle() -> tokio::runtime::Handle {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
    .handle()
    .clone()
}

fn allocations(group_name: &str) -> Vec<(&'static str, f64)> {
    group(group_name)
        .into_iter()
        .map(|(name, mut call)| {
            call(1); // warm up lazily created state
            let n = 10_000;
            (
                name,
                allocations_per_call(GLOBAL, n, |i| {
                    black_box(call(i as _));
                }),
            )
        })
        .collect()
}

fn main() {
    // Timers (tower's RateLimit, the timeouts) need a runtime context, as in a real service.
    let _rt = tokio_handle().enter();
    let mut c = Criterion::default()
        .output_directory(&criterion_dir())
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    for g in GROUPS {
        let mut bg = c.benchmark_group(g);
        for (name, mut call) in group(g) {
            bg.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| black_box(call(black_box(7))))
            });
        }
        bg.finish();
    }
    c.final_summary();

    println!(
        "\n| layer | implementation | median ns/call | overhead ns | overhead ratio to palisade | allocations/call |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    let mut allocating = Vec::new();
    for g in GROUPS {
        let bare = median_ns(&[g, "bare service"]);
        let ours = median_ns(&[g, "palisade"]);
        for (name, a) in allocations(g) {
            if name.starts_with("palisade") && a > 0.0 {
                allocating.push(format!("{g}/{name}: {a:.2} allocations per call"));
            }
            let Some(m) = median_ns(&[g, name]) else {
                continue;
            };
            let over = bare.map(|b| m - b);
            let ratio = match (over, ours.zip(bare).map(|(o, b)| o - b)) {
                (Some(x), Some(o)) if name != "bare service" && o > 0.0 => {
                    format!("{:.1}x", x / o)
                }
                _ => "-".to_string(),
            };
            let over = over.map_or("-".to_string(), |o| format!("{o:.1}"));
            println!("| {g} | {name} | {m:.1} | {over} | {ratio} | {a:.2} |");
        }
    }
    // Every run (`cargo test --benches` included) checks the happy path allocates nothing.
    assert!(allocating.is_empty(), "{allocating:?}");
}
