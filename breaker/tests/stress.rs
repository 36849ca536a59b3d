//! Many clones hammering one breaker from several threads. Interleavings are up to the
//! scheduler; the assertions are invariants that must hold under any of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use palisade_breaker::circuit::{CircuitBreakerLayer, Config, Listener, OpenDuration, TripPolicy};
use palisade_breaker::{Outcome, State};
use tower::{Service, ServiceBuilder, ServiceExt};

#[derive(Clone, Default)]
struct Counts {
    outcomes: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
    rejected: Arc<AtomicUsize>,
}

impl Listener for Counts {
    fn on_outcome(&self, _: &str, _: Outcome, _: bool) {
        self.outcomes.fetch_add(1, SeqCst);
    }
    fn on_cancelled(&self, _: &str) {
        self.cancelled.fetch_add(1, SeqCst);
    }
    fn on_rejection(&self, _: &str, _: State) {
        self.rejected.fetch_add(1, SeqCst);
    }
}

#[derive(Default)]
struct Backend {
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

const PROBES: u32 = 3;

struct Leave(Arc<Backend>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, SeqCst);
    }
}

fn stress_breaker(
    counts: &Counts,
    backend: &Arc<Backend>,
) -> (
    impl Service<bool, Error = palisade_breaker::circuit::Error<&'static str>, Future: Send>
    + Clone
    + Send
    + 'static,
    palisade_breaker::circuit::Handle<Counts>,
) {
    let cfg = Config::builder()
        .trip(TripPolicy::consecutive_failures(1))
        .open_duration(OpenDuration::constant(Duration::from_micros(200)))
        .half_open_probes(PROBES)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::builder("stress")
        .config(cfg)
        .listener(counts.clone())
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = ServiceBuilder::new().layer(layer).service_fn({
        let backend = backend.clone();
        move |hang: bool| {
            let b = backend.clone();
            async move {
                b.calls.fetch_add(1, SeqCst);
                let n = b.in_flight.fetch_add(1, SeqCst) + 1;
                b.max_in_flight.fetch_max(n, SeqCst);
                // Leaves the in-flight count when the call ends or is dropped (before the
                // breaker's permit, which the response future drops after the inner future).
                let _leave = Leave(b.clone());
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                if hang {
                    // Until the caller's timeout drops us.
                    std::future::pending::<()>().await;
                }
                Err::<(), _>("down")
            }
        }
    });
    (svc, handle)
}

/// Runs `TASKS` tasks of `CALLS` calls each; `hang` calls are dropped by a short timeout.
async fn storm<S>(svc: S, hang: bool) -> usize
where
    S: Service<bool, Error = palisade_breaker::circuit::Error<&'static str>, Future: Send>
        + Clone
        + Send
        + 'static,
{
    const TASKS: usize = 16;
    const CALLS: usize = 400;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                for i in 0..CALLS {
                    let fut = svc
                        .ready()
                        .await
                        .unwrap_or_else(|_| panic!("ready"))
                        .call(hang);
                    let _ = tokio::time::timeout(Duration::from_micros(50), fut).await;
                    if i % 50 == 0 {
                        tokio::time::sleep(Duration::from_micros(300)).await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    TASKS * CALLS
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_n_probes_in_flight_and_counts_add_up() {
    let counts = Counts::default();
    let backend = Arc::new(Backend::default());
    let (svc, handle) = stress_breaker(&counts, &backend);
    // Trip it before the storm so every admitted call below is a half-open probe.
    let mut first = svc.clone();
    let _ = first
        .ready()
        .await
        .unwrap_or_else(|_| panic!("ready"))
        .call(false)
        .await;
    assert_eq!(handle.state(), State::Open);
    backend.max_in_flight.store(0, SeqCst);
    let calls_before = backend.calls.load(SeqCst);

    // Phase 1: every probe hangs and is cancelled. Cancellations return probe slots, so the
    // breaker stays in one half-open generation: everything at the backend is a probe of it.
    let attempts = storm(svc.clone(), true).await;
    let max = backend.max_in_flight.load(SeqCst);
    let probes = backend.calls.load(SeqCst) - calls_before;
    eprintln!(
        "phase 1: {attempts} attempts, {probes} probes, max {max} in flight, {} rejected",
        counts.rejected.load(SeqCst)
    );
    assert!(
        max <= PROBES as usize,
        "{max} probes in flight at once, limit {PROBES}"
    );
    assert!(
        probes > PROBES as usize,
        "cancelled probes gave their slots back"
    );
    assert_eq!(
        counts.cancelled.load(SeqCst),
        probes,
        "every probe reported its cancellation"
    );
    assert_eq!(counts.rejected.load(SeqCst) + probes, attempts);
    assert_eq!(handle.state(), State::HalfOpen, "not stuck: slots free");
    assert_eq!(handle.snapshot().half_open_probes, 0);

    // Phase 2: probes fail, the breaker flaps between open and half-open. Every attempt is
    // either rejected or admitted, and every admitted call reports exactly once.
    let (o, c, r) = (
        counts.outcomes.load(SeqCst),
        counts.cancelled.load(SeqCst),
        counts.rejected.load(SeqCst),
    );
    let b = backend.calls.load(SeqCst);
    let attempts = storm(svc, false).await;
    let admitted = backend.calls.load(SeqCst) - b;
    let reported = counts.outcomes.load(SeqCst) - o + counts.cancelled.load(SeqCst) - c;
    let rejected = counts.rejected.load(SeqCst) - r;
    eprintln!(
        "phase 2: {attempts} attempts, {admitted} admitted, {reported} reported, {rejected} rejected"
    );
    assert!(admitted > 0);
    assert_eq!(reported, admitted);
    assert_eq!(reported + rejected, attempts);
    assert!(matches!(handle.state(), State::Open | State::HalfOpen));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfiguration_under_load() {
    let layer = CircuitBreakerLayer::new("reconf", Config::default()).unwrap();
    let handle = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|i: usize| async move { if i.is_multiple_of(4) { Err("x") } else { Ok(i) } });
    let stop = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                let mut done = 0usize;
                for i in 0..5_000 {
                    if let Ok(s) = svc.ready().await {
                        let _ = s.call(i).await;
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let reconf = {
        let handle = handle.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while stop.load(SeqCst) == 0 && n < 2_000 {
                let size = if n.is_multiple_of(3) { 50 } else { 100 };
                let rate = if n.is_multiple_of(2) { 0.9 } else { 0.3 };
                let cfg = Config::builder()
                    .count_window(size)
                    .trip(TripPolicy::failure_rate(rate))
                    .open_duration(OpenDuration::constant(Duration::from_millis(1)))
                    .build()
                    .unwrap();
                handle.reconfigure(cfg).unwrap();
                let s = handle.snapshot();
                assert!(s.calls <= 100 && s.failures <= s.calls, "{s:?}");
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        })
    };
    for w in workers {
        assert_eq!(w.await.unwrap(), 5_000);
    }
    stop.store(1, SeqCst);
    assert!(reconf.await.unwrap() > 0);
    let s = handle.snapshot();
    assert!(s.failures <= s.calls && s.calls <= 100);
}
