//! Adaptive concurrency limits against a simulated backend (paused time): the limit settles
//! near the backend's true capacity and backs off when its latency rises.
//!
//! The backend has `capacity` workers and a base latency: a call that arrives with `n` calls in
//! flight takes `base * max(1, n / capacity)` (the excess queues), so throughput is capped at
//! `capacity / base` and concurrency above `capacity` only adds latency. Sixty clients loop on
//! it as fast as the limiter lets them (a rejected client waits 1 ms).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_breaker::bulkhead::{self, Mode};
use palisade_breaker::limit::{AdaptiveLimitLayer, Aimd, Algorithm, Gradient2, Sample, Vegas};
use tower::{Layer, Service, ServiceExt};

#[derive(Clone)]
struct Sim {
    in_flight: Arc<AtomicU32>,
    capacity: Arc<AtomicU32>,
    base_us: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
}

impl Service<()> for Sim {
    type Response = ();
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<(), std::io::Error>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: ()) -> Self::Future {
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let cap = self.capacity.load(Ordering::SeqCst);
        let base = self.base_us.load(Ordering::SeqCst) as f64;
        let latency = base * (f64::from(n) / f64::from(cap)).max(1.0);
        let (in_flight, done) = (self.in_flight.clone(), self.done.clone());
        Box::pin(async move {
            tokio::time::sleep(Duration::from_micros(latency as u64)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            done.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }
}

/// Average limit over the second half of each phase `(capacity, base latency, length)`.
async fn simulate<A: Algorithm>(algorithm: A, phases: &[(u32, Duration, Duration)]) -> Vec<f64> {
    let sim = Sim {
        in_flight: Default::default(),
        capacity: Arc::new(AtomicU32::new(phases[0].0)),
        base_us: Arc::new(AtomicU64::new(phases[0].1.as_micros() as u64)),
        done: Default::default(),
    };
    let cfg = bulkhead::Config::builder()
        .mode(Mode::Shed)
        .build()
        .unwrap();
    let layer = AdaptiveLimitLayer::new("sim", algorithm, cfg).unwrap();
    let handle = layer.handle();
    let svc = layer.layer(sim.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..60)
        .map(|_| {
            let mut svc = svc.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = svc.ready().await.unwrap().call(()).await;
                    if r.is_err() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
        })
        .collect();
    let mut averages = Vec::new();
    for &(capacity, base, length) in phases {
        sim.capacity.store(capacity, Ordering::SeqCst);
        sim.base_us.store(base.as_micros() as u64, Ordering::SeqCst);
        let steps = (length.as_millis() / 50) as usize;
        let mut seen = Vec::new();
        for _ in 0..steps {
            tokio::time::sleep(Duration::from_millis(50)).await;
            seen.push(f64::from(handle.snapshot().max_concurrent));
        }
        if std::env::var_os("SIM_TRACE").is_some() {
            println!("{:?}", &seen[..seen.len().min(60)]);
        }
        let tail = &seen[steps / 2..];
        averages.push(tail.iter().sum::<f64>() / tail.len() as f64);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(sim.done.load(Ordering::Relaxed) > 10_000);
    averages
}

const CAPACITY: u32 = 20;

/// The band every algorithm must settle in, as multiples of the backend's capacity: at least
/// 0.9x (otherwise the backend is left idle) and at most `HIGH`x (above it, the extra calls only
/// queue: at 1.75x the latency is 1.75x the no-load latency).
const LOW: f64 = 0.9;
const HIGH: f64 = 1.75;

/// Healthy (20 workers), degraded (10 workers: at the same concurrency the latency doubles),
/// healthy again; 10 ms base latency, 20 s each.
fn phases() -> [(u32, Duration, Duration); 3] {
    let ms10 = Duration::from_millis(10);
    let s20 = Duration::from_secs(20);
    [
        (CAPACITY, ms10, s20),
        (CAPACITY / 2, ms10, s20),
        (CAPACITY, ms10, s20),
    ]
}

/// Checks the averages of [`phases`]: each within the band around its phase's capacity, the
/// degraded one at most 0.75x the healthy one (the limit backed off), and back up after.
fn check(avg: &[f64]) -> Result<(), String> {
    check_band(avg, HIGH)
}

fn check_band(avg: &[f64], high: f64) -> Result<(), String> {
    for (a, (cap, ..)) in avg.iter().zip(phases()) {
        let band = LOW * f64::from(cap)..=high * f64::from(cap);
        if !band.contains(a) {
            return Err(format!(
                "limit {a:.1} outside {band:?} (capacity {cap}): {avg:?}"
            ));
        }
    }
    if avg[1] > 0.75 * avg[0] {
        return Err(format!("did not back off: {avg:?}"));
    }
    if avg[2] < avg[1] / 0.75 {
        return Err(format!("did not recover: {avg:?}"));
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn vegas_settles_near_capacity_and_backs_off() {
    let avg = simulate(Vegas::new(5, 1, 200), &phases()).await;
    println!("vegas: {avg:?}");
    check(&avg).unwrap();
}

#[tokio::test(start_paused = true)]
async fn gradient2_settles_near_capacity_and_backs_off() {
    // Settles where the queueing equals the tolerance: about tolerance * capacity + sqrt(limit).
    let avg = simulate(Gradient2::new(5, 1, 200).tolerance(1.2), &phases()).await;
    println!("gradient2: {avg:?}");
    check(&avg).unwrap();
}

#[tokio::test(start_paused = true)]
async fn gradient2_with_netflix_tolerance_settles_under_its_fixed_point() {
    // Tolerance 1.5 (Netflix's default) allows 1.5x the no-load latency, so the limit settles
    // higher, under `tolerance * capacity + sqrt(limit)`: 35.9 with 20 workers, 19.5 with 10
    // (it measured [28.8, 19.9, 28.7]); the band is widened to 2x for it.
    let avg = simulate(Gradient2::new(5, 1, 200), &phases()).await;
    println!("gradient2 (1.5): {avg:?}");
    check_band(&avg, 2.0).unwrap();
}

#[tokio::test(start_paused = true)]
async fn aimd_with_a_latency_timeout_settles_near_capacity_and_backs_off() {
    // A call over 15 ms is a drop: at 10 ms base that is 1.5x capacity in flight.
    let aimd = Aimd::new(5, 1, 200).timeout(Duration::from_millis(15));
    let avg = simulate(aimd, &phases()).await;
    println!("aimd: {avg:?}");
    check(&avg).unwrap();
}

/// A fixed limit, to show that [`check`] can fail.
struct Fixed(u32);

impl Algorithm for Fixed {
    fn initial_limit(&self) -> u32 {
        self.0
    }
    fn update(&self, _: Sample) -> Option<u32> {
        None
    }
}

#[tokio::test(start_paused = true)]
async fn the_check_fails_for_a_limit_that_does_not_adapt() {
    // Inside the healthy band, but it never backs off.
    let avg = simulate(Fixed(30), &phases()).await;
    assert_eq!(avg, [30.0, 30.0, 30.0]);
    let err = check(&avg).unwrap_err();
    assert!(err.contains("outside"), "{err}");
    // Netflix's Gradient2 without this crate's long-average rule drifts to its maximum.
    let avg = simulate(NetflixGradient2::default(), &phases()).await;
    println!("netflix gradient2: {avg:?}");
    assert!(check(&avg).is_err(), "{avg:?}");
}

/// Netflix's `Gradient2Limit` as published (every sample feeds the long average, queue size 4),
/// to show what the crate's variant fixes.
struct NetflixGradient2(std::sync::Mutex<(f64, f64, u32)>);

impl Default for NetflixGradient2 {
    fn default() -> Self {
        Self(std::sync::Mutex::new((5.0, 0.0, 0)))
    }
}

impl Algorithm for NetflixGradient2 {
    fn initial_limit(&self) -> u32 {
        5
    }
    fn update(&self, s: Sample) -> Option<u32> {
        let mut g = self.0.lock().unwrap();
        let (limit, long, n) = &mut *g;
        let short = s.rtt.as_secs_f64();
        *n += 1;
        if *n <= 10 {
            *long += (short - *long) / f64::from(*n);
        } else {
            *long += (short - *long) * 2.0 / 601.0;
        }
        if *long / short > 2.0 {
            *long *= 0.95;
        }
        if f64::from(s.in_flight) < *limit / 2.0 {
            return None;
        }
        let gradient = (1.5 * *long / short).clamp(0.5, 1.0);
        let new = *limit * gradient + 4.0;
        *limit = (*limit * 0.8 + new * 0.2).clamp(1.0, 200.0);
        Some(*limit as u32)
    }
}

#[test]
fn aimd_unit_steps() {
    let a = Aimd::new(10, 2, 12);
    let t0 = tokio::time::Instant::now();
    let ok = |n| Sample {
        started: t0,
        rtt: Duration::from_millis(1),
        in_flight: n,
        dropped: false,
    };
    // App-limited (in flight well under the limit): no growth.
    assert_eq!(a.update(ok(2)), None);
    // +1/limit per sample: about ten samples at 10 make one step (10 + 1/10 + 1/10.1 + ...).
    let steps: Vec<_> = (0..11).map(|_| a.update(ok(10))).collect();
    assert_eq!(steps[..9].iter().flatten().count(), 0);
    assert_eq!(steps.iter().flatten().collect::<Vec<_>>(), vec![&11]);
    for _ in 0..40 {
        a.update(ok(12));
    }
    assert_eq!(a.update(ok(12)), None); // max
    let drop = Sample {
        dropped: true,
        ..ok(12)
    };
    assert_eq!(a.update(drop), Some(10)); // 12 * 0.9 = 10.8
    // Another drop from a call that started before that decrease: not counted again.
    assert_eq!(a.update(drop), None);
    let later = Sample {
        started: t0 + Duration::from_millis(5),
        ..drop
    };
    assert_eq!(a.update(later), Some(9)); // 10.8 * 0.9 = 9.72
}
