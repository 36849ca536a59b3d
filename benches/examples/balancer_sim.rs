//! Deterministic load-balancer simulator (paused tokio time, seeded RNGs): the setup of tower
//! PR #76 and a degradation scenario, for this crate's policies, tower's own P2C balancers and a
//! round-robin baseline.
//!
//! ```sh
//! cargo run --release -p palisade-benches --example balancer_sim
//! ```
//!
//! Scenario 1 (tower PR #76): 10 endpoints with max latencies 1, 10 x4, 100 x4, 1000 ms (each
//! call's latency uniform in `0..max` ms), endpoint capacity 50, 50,000 requests at concurrency
//! 50.
//!
//! Scenario 2: 10 equal endpoints (latency uniform in `0..10` ms); endpoint 0 turns 10x slower
//! after the first 25,000 requests; endpoint 9 fails 30 % of its calls (after its latency).
//!
//! Latency is measured by the client, from `call` to completion, on the virtual clock; failed
//! requests count in the latency percentiles. Every figure is a pure function of the seeds.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use palisade_balancer::rng::{Rng, SmallRng};
use palisade_balancer::{Balance, BoxError, Config, Endpoint, OutlierConfig, Policy, SuccessRate};
use tokio::time::Instant;
use tower::discover::Change;
use tower::limit::ConcurrencyLimit;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover, PendingRequestsDiscover};
use tower::{Service, ServiceExt};

const REQUESTS: usize = 50_000;
const CONCURRENCY: usize = 50;
const ENDPOINT_CAPACITY: usize = 50;
const DEFAULT_RTT: Duration = Duration::from_millis(30);
const DECAY: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    max_ms: [u64; 10],
    /// (endpoint, after this many requests issued, latency factor)
    slow_down: Option<(usize, usize, u64)>,
    /// (endpoint, failure probability)
    failing: Option<(usize, f64)>,
}

const PR76: Scenario = Scenario {
    name: "tower PR #76: max latencies 1, 10x4, 100x4, 1000 ms",
    max_ms: [1, 10, 10, 10, 10, 100, 100, 100, 100, 1000],
    slow_down: None,
    failing: None,
};

const DEGRADED: Scenario = Scenario {
    name: "10 equal endpoints (0..10 ms); #0 10x slower after 25,000 requests; #9 fails 30%",
    max_ms: [10; 10],
    slow_down: Some((0, REQUESTS / 2, 10)),
    failing: Some((9, 0.3)),
};

type Svc = tower::util::BoxCloneSyncService<(), usize, BoxError>;

/// One simulated endpoint: latency uniform in `0..max` ms from its own seeded RNG.
fn endpoint(sc: Scenario, id: usize, issued: Arc<AtomicUsize>) -> ConcurrencyLimit<Svc> {
    let rng = Arc::new(Mutex::new(SmallRng::seed_from_u64(1000 + id as u64)));
    let svc = tower::service_fn(move |()| {
        let n = issued.fetch_add(1, Ordering::Relaxed);
        let mut max = sc.max_ms[id];
        if let Some((slow, after, factor)) = sc.slow_down
            && slow == id
            && n >= after
        {
            max *= factor;
        }
        let (latency, fail) = {
            let mut r = rng.lock().unwrap();
            let latency = Duration::from_millis(r.next_range(0..max));
            let fail = sc.failing.is_some_and(|(f, p)| f == id && r.next_f64() < p);
            (latency, fail)
        };
        async move {
            tokio::time::sleep(latency).await;
            if fail {
                Err::<usize, BoxError>(io::Error::other("endpoint failed").into())
            } else {
                Ok(id)
            }
        }
    });
    ConcurrencyLimit::new(Svc::new(svc), ENDPOINT_CAPACITY)
}

/// A discover that yields the endpoints, then stays open (as a registry watch does).
struct Disco<S>(Vec<(usize, S)>);

impl<S> Unpin for Disco<S> {}

impl<S> Stream for Disco<S> {
    type Item = Result<Change<usize, S>, BoxError>;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.0.pop() {
            Some((k, s)) => Poll::Ready(Some(Ok(Change::Insert(k, s)))),
            None => Poll::Pending,
        }
    }
}

fn endpoints(sc: Scenario) -> Vec<(usize, ConcurrencyLimit<Svc>)> {
    let issued = Arc::new(AtomicUsize::new(0));
    (0..10)
        .rev()
        .map(|i| (i, endpoint(sc, i, issued.clone())))
        .collect()
}

struct Row {
    name: String,
    wall: Duration,
    p: [u64; 4],
    success: f64,
    per_endpoint: [usize; 10],
}

async fn drive<S>(name: &str, lb: S) -> Row
where
    S: Service<(), Response = usize, Error = BoxError>,
{
    let start = Instant::now();
    let timed = ConcurrencyLimit::new(lb, CONCURRENCY).map_future(|f| {
        let t = Instant::now();
        async move {
            let r = f.await;
            Ok::<_, BoxError>((t.elapsed(), r))
        }
    });
    // map_future's error type is the service's; the future yields (latency, result).
    let results: Vec<(Duration, Result<usize, BoxError>)> = timed
        .call_all(futures::stream::repeat(()).take(REQUESTS))
        .unordered()
        .map(|r| r.expect("the balancer itself never fails here"))
        .collect()
        .await;
    let wall = start.elapsed();
    let mut lat: Vec<u64> = results.iter().map(|(d, _)| d.as_micros() as u64).collect();
    lat.sort_unstable();
    let pct = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).min(lat.len()) - 1];
    let mut per_endpoint = [0; 10];
    let mut ok = 0;
    for (_, r) in &results {
        if let Ok(id) = r {
            ok += 1;
            per_endpoint[*id] += 1;
        }
    }
    Row {
        name: name.to_owned(),
        wall,
        p: [pct(0.5), pct(0.9), pct(0.99), pct(0.999)],
        success: ok as f64 / results.len() as f64,
        per_endpoint,
    }
}

async fn ours(sc: Scenario, name: &str, config: Config) -> Row {
    let list = Disco(
        endpoints(sc)
            .into_iter()
            .map(|(k, s)| (k, Endpoint::new(s)))
            .collect(),
    );
    let lb = Balance::builder(list)
        .name("sim")
        .config(config)
        .rng(SmallRng::seed_from_u64(42))
        .build()
        .expect("valid config");
    drive(name, lb).await
}

fn peak_ewma() -> Policy {
    Policy::PeakEwma {
        default_rtt: DEFAULT_RTT,
        decay: DECAY,
    }
}

/// The outlier config used in scenario 2: Envoy's rules with a short interval and a low
/// request volume, so a 30 % failing endpoint is judged within ~100 ms of traffic.
fn fast_outlier() -> OutlierConfig {
    OutlierConfig {
        interval: Duration::from_millis(100),
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(300),
        max_ejection_percent: 0.1,
        consecutive_failures: Some(5),
        success_rate: Some(SuccessRate {
            stdev_factor: 1.9,
            minimum_hosts: 5,
            request_volume: 20,
        }),
        failure_percentage: None,
    }
}

async fn scenario(sc: Scenario, with_outlier: bool) -> Vec<Row> {
    let mut rows = vec![
        ours(
            sc,
            "round robin (baseline, ours)",
            Config::with_policy(Policy::RoundRobin),
        )
        .await,
        ours(sc, "random (ours)", Config::with_policy(Policy::Random)).await,
        ours(
            sc,
            "P2C least outstanding (ours)",
            Config::with_policy(Policy::LeastOutstanding),
        )
        .await,
        ours(sc, "P2C Peak-EWMA (ours)", Config::with_policy(peak_ewma())).await,
    ];
    let tower_pe = tower::balance::p2c::Balance::from_rng(
        PeakEwmaDiscover::new(
            Disco(endpoints(sc)),
            DEFAULT_RTT,
            DECAY,
            CompleteOnResponse::default(),
        ),
        SmallRng::seed_from_u64(42),
    );
    rows.push(drive("tower p2c PeakEwma", tower_pe).await);
    let tower_ll = tower::balance::p2c::Balance::from_rng(
        PendingRequestsDiscover::new(Disco(endpoints(sc)), CompleteOnResponse::default()),
        SmallRng::seed_from_u64(42),
    );
    rows.push(drive("tower p2c PendingRequests", tower_ll).await);
    if with_outlier {
        rows.push(
            ours(
                sc,
                "round robin + outlier (ours)",
                Config::with_policy(Policy::RoundRobin).outlier(fast_outlier()),
            )
            .await,
        );
        rows.push(
            ours(
                sc,
                "P2C Peak-EWMA + outlier, Envoy defaults (ours)",
                Config::with_policy(peak_ewma()).outlier(OutlierConfig::default()),
            )
            .await,
        );
        rows.push(
            ours(
                sc,
                "P2C Peak-EWMA + outlier, 100 ms interval (ours)",
                Config::with_policy(peak_ewma()).outlier(fast_outlier()),
            )
            .await,
        );
    }
    rows
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn print(sc: Scenario, rows: &[Row]) {
    println!("\n### {}\n", sc.name);
    println!(
        "{REQUESTS} requests, concurrency {CONCURRENCY}, endpoint capacity {ENDPOINT_CAPACITY}; virtual time\n"
    );
    println!(
        "| policy | wall (virtual) | p50 ms | p90 ms | p99 ms | p999 ms | success | requests per endpoint (ok) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.1} s | {} | {} | {} | {} | {:.3} % | {:?} |",
            r.name,
            r.wall.as_secs_f64(),
            ms(r.p[0]),
            ms(r.p[1]),
            ms(r.p[2]),
            ms(r.p[3]),
            r.success * 100.0,
            r.per_endpoint
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let rows = scenario(PR76, false).await;
        print(PR76, &rows);
        let rows = scenario(DEGRADED, true).await;
        print(DEGRADED, &rows);
    });
}
