//! Selection cost per request: this crate's policies against tower's `p2c::Balance`, in one run.
//!
//! `cargo bench -p palisade-benches --bench balancer` runs the criterion groups, then prints a
//! markdown table (median ns per request, ratio to tower's P2C PeakEwma, allocations per request)
//! that `balancer/README.md` records.
//!
//! One request = `poll_ready` + `call` + poll of the response future, through the balancer, over
//! `n` endpoints (10 and 100) that are always ready and answer with a ready future. The bare
//! endpoint (no balancer) is the floor.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use futures::Stream;
use palisade_balancer::rng::SmallRng;
use palisade_balancer::{Balance, Config, Endpoint, OutlierConfig, Policy};
use palisade_benches::allocations_per_call;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tower::Service;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover, PendingRequestsDiscover};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

type Backend = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, Infallible>>>;

fn backend() -> Backend {
    let f: fn(u64) -> Ready<Result<u64, Infallible>> = |x| ready(Ok(black_box(x)));
    tower::service_fn(f)
}

/// Yields the endpoints, then stays open (a registry watch never ends).
struct Disco<S>(Vec<(usize, S)>);

impl<S> Unpin for Disco<S> {}

impl<S> Stream for Disco<S> {
    type Item = Result<Change<usize, S>, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.0.pop() {
            Some((k, s)) => Poll::Ready(Some(Ok(Change::Insert(k, s)))),
            None => Poll::Pending,
        }
    }
}

#[inline]
fn drive<S: Service<u64>>(svc: &mut S, x: u64, cx: &mut Context<'_>) -> bool {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("endpoints are always ready"),
    }
    let fut = pin!(svc.call(x));
    match fut.poll(cx) {
        Poll::Ready(r) => r.is_ok(),
        Poll::Pending => panic!("ready future"),
    }
}

type Caller = Box<dyn FnMut(u64) -> bool>;
type MakeCaller = Box<dyn Fn() -> Caller>;

fn caller<S: Service<u64> + 'static>(mut svc: S) -> Caller {
    let waker = futures::task::noop_waker();
    Box::new(move |x| {
        let mut cx = Context::from_waker(&waker);
        drive(&mut svc, x, &mut cx)
    })
}

fn ours(n: usize, config: Config) -> Caller {
    let d = Disco((0..n).map(|i| (i, Endpoint::new(backend()))).collect());
    let lb: Balance<_, u64> = Balance::builder(d)
        .config(config)
        .rng(SmallRng::seed_from_u64(1))
        .build()
        .unwrap();
    caller(lb)
}

fn peak_ewma() -> Policy {
    Policy::PeakEwma {
        default_rtt: Duration::from_millis(30),
        decay: Duration::from_secs(10),
    }
}

fn callers(n: usize) -> Vec<(&'static str, MakeCaller)> {
    vec![
        ("bare endpoint", Box::new(|| caller(backend()))),
        (
            "tower p2c PeakEwma",
            Box::new(move || {
                let d = Disco((0..n).map(|i| (i, backend())).collect());
                caller(tower::balance::p2c::Balance::from_rng(
                    PeakEwmaDiscover::new(
                        d,
                        Duration::from_millis(30),
                        Duration::from_secs(10),
                        CompleteOnResponse::default(),
                    ),
                    SmallRng::seed_from_u64(1),
                ))
            }),
        ),
        (
            "tower p2c PendingRequests",
            Box::new(move || {
                let d = Disco((0..n).map(|i| (i, backend())).collect());
                caller(tower::balance::p2c::Balance::from_rng(
                    PendingRequestsDiscover::new(d, CompleteOnResponse::default()),
                    SmallRng::seed_from_u64(1),
                ))
            }),
        ),
        (
            "ours round robin",
            Box::new(move || ours(n, Config::with_policy(Policy::RoundRobin))),
        ),
        (
            "ours random",
            Box::new(move || ours(n, Config::with_policy(Policy::Random))),
        ),
        (
            "ours weighted round robin",
            Box::new(move || ours(n, Config::with_policy(Policy::WeightedRoundRobin))),
        ),
        (
            "ours P2C least outstanding",
            Box::new(move || ours(n, Config::with_policy(Policy::LeastOutstanding))),
        ),
        (
            "ours P2C Peak-EWMA",
            Box::new(move || ours(n, Config::with_policy(peak_ewma()))),
        ),
        (
            "ours Maglev (keyed)",
            Box::new(move || {
                let d = Disco((0..n).map(|i| (i, Endpoint::new(backend()))).collect());
                let lb: Balance<_, u64, _, _, _> = Balance::builder(d)
                    .config(Config::with_policy(Policy::Maglev { table_size: 65_537 }))
                    .hash_key(|r: &u64| Some(palisade_balancer::hash::key_of(r)))
                    .rng(SmallRng::seed_from_u64(1))
                    .build()
                    .unwrap();
                caller(lb)
            }),
        ),
        (
            "ours P2C Peak-EWMA + outlier",
            Box::new(move || {
                ours(
                    n,
                    Config::with_policy(peak_ewma()).outlier(OutlierConfig::default()),
                )
            }),
        ),
    ]
}

const SIZES: [usize; 2] = [10, 100];

fn selection(c: &mut Criterion) {
    let mut g = c.benchmark_group("balancer");
    for n in SIZES {
        for (name, make) in callers(n) {
            let mut call = make();
            call(0);
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                let mut i = 0u64;
                b.iter(|| {
                    i += 1;
                    black_box(call(black_box(i)))
                })
            });
        }
    }
    g.finish();
}

/// Allocations per request over 10,000 requests (after a warm-up request).
fn allocations(n: usize) -> Vec<(&'static str, f64)> {
    callers(n)
        .into_iter()
        .map(|(name, make)| {
            let mut call = make();
            call(0);
            let reqs = 10_000;
            (
                name,
                allocations_per_call(GLOBAL, reqs, |i| {
                    black_box(call(i as _));
                }),
            )
        })
        .collect()
}

fn median_ns(name: &str, n: usize) -> Option<f64> {
    palisade_benches::median_ns(&["balancer", name, &n.to_string()])
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _rt = rt.enter();
    let mut c = Criterion::default()
        .output_directory(&palisade_benches::criterion_dir())
        .configure_from_args();
    selection(&mut c);
    c.final_summary();

    println!(
        "\n| endpoints | implementation | median ns/request | ratio to tower p2c PeakEwma | allocations/request |"
    );
    println!("|---:|---|---:|---:|---:|");
    for n in SIZES {
        let tower = median_ns("tower p2c PeakEwma", n);
        for (name, a) in allocations(n) {
            let Some(m) = median_ns(name, n) else {
                continue;
            };
            let ratio = tower.map_or("-".to_string(), |t| format!("{:.2}x", m / t));
            println!("| {n} | {name} | {m:.1} | {ratio} | {a:.2} |");
        }
    }
}
