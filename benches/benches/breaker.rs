//! Circuit breaker overhead against a bare service and against peer crates, in one run.
//!
//! `cargo bench -p palisade-benches --bench breaker` runs the criterion groups, then prints a
//! markdown table (median ns per call, ratio to Palisade, allocations per call) that
//! `benches/README.md` records.
//!
//! * `closed`: one call in the closed state: poll_ready + call + poll for tower services
//!   (Palisade, tower-resilience); recloser and failsafe are not tower middleware, so they are
//!   measured both through their closure API (`call(|| ..)`, no future at all) and through their
//!   future API (`(async)`: wrap a ready future and poll it), the like-for-like comparison.
//! * `open`: one rejected call in the open state.
//! * `contended`: the closed-state call on two threads at once, sharing one breaker; ns per call
//!   per thread.

use std::future::{Ready, ready};
use std::sync::Barrier;
use std::task::Context;
use std::time::{Duration, Instant};

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion};
use failsafe::CircuitBreaker as _;
use palisade_benches::{
    Fail, allocations_per_call, criterion_dir, drive, median_ns, op, poll_once,
};
use palisade_breaker::circuit::{CircuitBreakerLayer, Config, OpenDuration, TripPolicy};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tower::{Layer, Service};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// The protected operation: a ready future, failing for `u64::MAX`.
type Backend = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, Fail>>>;

fn backend() -> Backend {
    let f: fn(u64) -> Ready<Result<u64, Fail>> = |x| ready(op(x));
    tower::service_fn(f)
}

fn palisade(open: bool) -> impl Service<u64> + Clone + Send {
    let cfg = Config::builder()
        .count_window(100)
        .minimum_calls(10)
        .trip(TripPolicy::failure_rate(0.5))
        .open_duration(OpenDuration::constant(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let mut svc = CircuitBreakerLayer::new("bench", cfg)
        .unwrap()
        .layer(backend());
    if open {
        trip(&mut svc);
    }
    svc
}

/// The same breaker with `'static` state (`build_static`): no reference count per call.
fn palisade_static(open: bool) -> impl Service<u64> + Clone + Send {
    let cfg = Config::builder()
        .count_window(100)
        .minimum_calls(10)
        .trip(TripPolicy::failure_rate(0.5))
        .open_duration(OpenDuration::constant(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let mut svc = CircuitBreakerLayer::builder("bench static")
        .config(cfg)
        .build_static()
        .unwrap()
        .layer(backend());
    if open {
        trip(&mut svc);
    }
    svc
}

fn tower_resilience(open: bool) -> impl Service<u64> + Clone + Send {
    let layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(10)
        .wait_duration_in_open(Duration::from_secs(3600))
        .build()
        .unwrap();
    let mut svc = layer.layer(backend());
    if open {
        trip(&mut svc);
    }
    svc
}

fn trip<S: Service<u64>>(svc: &mut S) {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    for _ in 0..200 {
        drive(svc, u64::MAX, &mut cx);
    }
    assert!(!drive(svc, 1, &mut cx), "breaker did not open");
}

fn recloser(open: bool) -> recloser::Recloser {
    let r = recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(100)
        .open_wait(Duration::from_secs(3600))
        .build();
    if open {
        for _ in 0..200 {
            let _ = r.call(|| op(u64::MAX));
        }
        assert!(r.call(|| op(1)).is_err(), "recloser did not open");
    }
    r
}

type Failsafe = failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>,
    (),
>;

fn failsafe(open: bool) -> Failsafe {
    let policy = failsafe::failure_policy::consecutive_failures(
        10,
        failsafe::backoff::constant(Duration::from_secs(3600)),
    );
    let f = failsafe::Config::new().failure_policy(policy).build();
    if open {
        for _ in 0..20 {
            let _ = f.call(|| op(u64::MAX));
        }
        assert!(f.call(|| op(1)).is_err(), "failsafe did not open");
    }
    f
}

fn bare() -> impl Service<u64> + Clone + Send {
    backend()
}

/// The implementations, each as "make a per-thread caller".
type Caller = Box<dyn FnMut(u64) -> bool + Send>;
/// Makes a caller for the current thread.
type MakeCaller = Box<dyn Fn() -> Caller + Sync>;

fn callers(open: bool) -> Vec<(&'static str, MakeCaller)> {
    fn tower_caller<S: Service<u64> + Send + 'static>(mut svc: S) -> Caller {
        let waker = futures::task::noop_waker();
        Box::new(move |x| drive(&mut svc, x, &mut Context::from_waker(&waker)))
    }
    let ours = palisade(open);
    let tr = tower_resilience(open);
    let rc = std::sync::Arc::new(recloser(open));
    let fs = std::sync::Arc::new(failsafe(open));
    let mut v: Vec<(&'static str, MakeCaller)> = vec![];
    if !open {
        v.push(("bare service", Box::new(|| tower_caller(bare()))));
        v.push(("bare closure", Box::new(|| Box::new(|x| op(x).is_ok()))));
    }
    let ours2 = ours.clone();
    let ours_s = std::sync::Mutex::new(ours2);
    v.push((
        "palisade",
        Box::new(move || tower_caller(ours_s.lock().unwrap().clone())),
    ));
    let ours_static = std::sync::Mutex::new(palisade_static(open));
    v.push((
        "palisade static",
        Box::new(move || tower_caller(ours_static.lock().unwrap().clone())),
    ));
    let tr_s = std::sync::Mutex::new(tr);
    v.push((
        "tower-resilience",
        Box::new(move || tower_caller(tr_s.lock().unwrap().clone())),
    ));
    v.push((
        "recloser",
        Box::new(move || {
            let rc = rc.clone();
            Box::new(move |x| rc.call(|| op(x)).is_ok())
        }),
    ));
    let fs_async = fs.clone();
    v.push((
        "failsafe",
        Box::new(move || {
            let fs = fs.clone();
            Box::new(move |x| fs.call(|| op(x)).is_ok())
        }),
    ));
    let rc_async = recloser::AsyncRecloser::from(recloser(open));
    v.push((
        "recloser (async)",
        Box::new(move || {
            let rc = rc_async.clone();
            Box::new(move |x| {
                poll_once(
                    rc.call(ready(op(x))),
                    &mut Context::from_waker(&futures::task::noop_waker()),
                )
                .is_ok()
            })
        }),
    ));
    v.push((
        "failsafe (async)",
        Box::new(move || {
            let fs = fs_async.clone();
            Box::new(move |x| {
                poll_once(
                    failsafe::futures::CircuitBreaker::call(&*fs, ready(op(x))),
                    &mut Context::from_waker(&futures::task::noop_waker()),
                )
                .is_ok()
            })
        }),
    ));
    drop(ours);
    v
}

fn single(c: &mut Criterion, group: &str, open: bool) {
    let mut g = c.benchmark_group(group);
    for (name, make) in callers(open) {
        let mut call = make();
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| black_box(call(black_box(7))))
        });
    }
    g.finish();
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("contended");
    for (name, make) in callers(false) {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let barrier = Barrier::new(2);
                let start = std::sync::Mutex::new(None::<Instant>);
                let handle = tokio_handle();
                std::thread::scope(|s| {
                    for _ in 0..2 {
                        s.spawn(|| {
                            let _rt = handle.enter();
                            let mut call = make();
                            if barrier.wait().is_leader() {
                                *start.lock().unwrap() = Some(Instant::now());
                            }
                            for i in 0..iters {
                                black_box(call(black_box(i)));
                            }
                        });
                    }
                });
                start.lock().unwrap().expect("started").elapsed()
            })
        });
    }
    g.finish();
}

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

/// Allocations per call, counted by the instrumented global allocator over 10,000 calls.
fn allocations(open: bool) -> Vec<(&'static str, f64)> {
    let _rt = tokio_handle().enter();
    callers(open)
        .into_iter()
        .map(|(name, make)| {
            let mut call = make();
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
    // Time-based features (the open timer) need a runtime context, as in a real service.
    let _rt = tokio_handle().enter();
    let mut c = Criterion::default()
        .output_directory(&criterion_dir())
        .configure_from_args();
    single(&mut c, "closed", false);
    single(&mut c, "open", true);
    contended(&mut c);
    c.final_summary();

    let allocs_closed = allocations(false);
    let allocs_open = allocations(true);
    // Checked on every run, including `cargo test --benches` in CI: the hot paths never allocate.
    for (state, allocs) in [("closed", &allocs_closed), ("open", &allocs_open)] {
        for name in ["palisade", "palisade static"] {
            let ours = allocs
                .iter()
                .find(|(n, _)| *n == name)
                .expect("palisade rows")
                .1;
            assert_eq!(
                ours, 0.0,
                "{name} allocated {ours} times per call in the {state} state"
            );
        }
    }
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches`: each bench ran once, there are no fresh medians to print.
        return;
    }
    println!(
        "\n| group | implementation | median ns/call | ratio to palisade | allocations/call |"
    );
    println!("|---|---|---:|---:|---:|");
    for (group, allocs) in [
        ("closed", &allocs_closed),
        ("open", &allocs_open),
        ("contended", &allocs_closed),
    ] {
        let ours = median_ns(&[group, "palisade"]);
        for (name, a) in allocs {
            let Some(m) = median_ns(&[group, name]) else {
                continue;
            };
            let ratio = ours.map_or("-".to_string(), |o| format!("{:.2}x", m / o));
            println!("| {group} | {name} | {m:.1} | {ratio} | {a:.2} |");
        }
    }
    let bare = median_ns(&["closed", "bare service"]);
    let ours = median_ns(&["closed", "palisade"]);
    let tr = median_ns(&["closed", "tower-resilience"]);
    if let (Some(b), Some(o), Some(t)) = (bare, ours, tr) {
        println!(
            "\nclosed-state overhead over the bare service: palisade {:.1} ns, tower-resilience {:.1} ns: ratio {:.1}x",
            o - b,
            t - b,
            (t - b) / (o - b)
        );
    }
}
