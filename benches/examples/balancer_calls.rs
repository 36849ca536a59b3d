//! Runs N requests through one balancer over `E` always-ready endpoints, for instruction
//! counting with callgrind (`benches/scripts/balancer-instructions.sh`): instruction counts do
//! not depend on what else the machine is doing, unlike criterion's wall-clock medians.
//!
//! Usage: `balancer_calls <implementation> <endpoints> <requests>`, implementation one of
//! `bare`, `tower-peak-ewma`, `tower-pending`, `round-robin`, `random`, `weighted`,
//! `least-outstanding`, `peak-ewma`, `peak-ewma-outlier`, `maglev`.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use palisade_balancer::rng::SmallRng;
use palisade_balancer::{Balance, Config, Endpoint, OutlierConfig, Policy};
use tower::Service;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover, PendingRequestsDiscover};

type Backend = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, Infallible>>>;

fn backend() -> Backend {
    let f: fn(u64) -> Ready<Result<u64, Infallible>> = |x| ready(Ok(black_box(x)));
    tower::service_fn(f)
}

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

fn drive<S: Service<u64>>(svc: &mut S, x: u64, cx: &mut Context<'_>) -> u64 {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("endpoints are always ready"),
    }
    match pin!(svc.call(x)).poll(cx) {
        Poll::Ready(r) => u64::from(r.is_ok()),
        Poll::Pending => panic!("ready future"),
    }
}

fn run<S: Service<u64>>(mut svc: S, n: u64) -> u64 {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    (0..n).map(|i| drive(&mut svc, i, &mut cx)).sum()
}

fn ours(e: usize, config: Config, n: u64) -> u64 {
    let d = Disco((0..e).map(|i| (i, Endpoint::new(backend()))).collect());
    let lb: Balance<_, u64> = Balance::builder(d)
        .config(config)
        .rng(SmallRng::seed_from_u64(1))
        .build()
        .expect("valid config");
    run(lb, n)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().expect("implementation name");
    let e: usize = args.next().map_or(10, |s| s.parse().expect("endpoints"));
    let n: u64 = args
        .next()
        .map_or(100_000, |s| s.parse().expect("requests"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _rt = rt.enter();
    let peak = Policy::PeakEwma {
        default_rtt: Duration::from_millis(30),
        decay: Duration::from_secs(10),
    };
    let ok = match which.as_str() {
        "bare" => run(backend(), n),
        "tower-peak-ewma" => {
            let d = Disco((0..e).map(|i| (i, backend())).collect());
            run(
                tower::balance::p2c::Balance::from_rng(
                    PeakEwmaDiscover::new(
                        d,
                        Duration::from_millis(30),
                        Duration::from_secs(10),
                        CompleteOnResponse::default(),
                    ),
                    SmallRng::seed_from_u64(1),
                ),
                n,
            )
        }
        "tower-pending" => {
            let d = Disco((0..e).map(|i| (i, backend())).collect());
            run(
                tower::balance::p2c::Balance::from_rng(
                    PendingRequestsDiscover::new(d, CompleteOnResponse::default()),
                    SmallRng::seed_from_u64(1),
                ),
                n,
            )
        }
        "round-robin" => ours(e, Config::with_policy(Policy::RoundRobin), n),
        "random" => ours(e, Config::with_policy(Policy::Random), n),
        "weighted" => ours(e, Config::with_policy(Policy::WeightedRoundRobin), n),
        "least-outstanding" => ours(e, Config::with_policy(Policy::LeastOutstanding), n),
        "peak-ewma" => ours(e, Config::with_policy(peak), n),
        "peak-ewma-outlier" => ours(
            e,
            Config::with_policy(peak).outlier(OutlierConfig::default()),
            n,
        ),
        "maglev" => {
            let d = Disco((0..e).map(|i| (i, Endpoint::new(backend()))).collect());
            let lb: Balance<_, u64, _, _, _> = Balance::builder(d)
                .config(Config::with_policy(Policy::Maglev { table_size: 65_537 }))
                .hash_key(|r: &u64| Some(palisade_balancer::hash::key_of(r)))
                .rng(SmallRng::seed_from_u64(1))
                .build()
                .expect("valid config");
            run(lb, n)
        }
        other => panic!("unknown implementation {other}"),
    };
    assert_eq!(ok, n);
}
