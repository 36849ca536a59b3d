//! The typical stack, timeout -> retry -> breaker -> bulkhead -> service, proving: rejections are
//! not retried, the budget caps retry storms, the deadline holds across retries, and
//! cancellation gives back every permit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_breaker::bulkhead::{BulkheadLayer, Config as BulkheadConfig};
use palisade_breaker::circuit::{
    CircuitBreakerLayer, Config as BreakerConfig, OpenDuration, TripPolicy,
};
use palisade_breaker::retry::{BudgetConfig, Config as RetryConfig, RetryLayer};
use palisade_breaker::timeout::TimeoutLayer;
use palisade_breaker::{Rejection, State, find_any_rejection};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}
impl std::error::Error for Boom {}

const OK: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

/// The dependency: succeeds, fails, or takes 40 ms then fails, or hangs for an hour.
#[derive(Clone, Default)]
struct Backend {
    mode: Arc<AtomicU8>,
    calls: Arc<AtomicU32>,
}

impl Backend {
    fn set(&self, m: u8) {
        self.mode.store(m, Ordering::SeqCst);
    }
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<u32> for Backend {
    type Response = u32;
    type Error = Boom;
    type Future = Pin<Box<dyn Future<Output = Result<u32, Boom>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, x: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = self.mode.load(Ordering::SeqCst);
        Box::pin(async move {
            match mode {
                OK => Ok(x),
                FAIL => Err(Boom),
                HANG => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Err(Boom)
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    Err(Boom)
                }
            }
        })
    }
}

struct Stack {
    backend: Backend,
    breaker: palisade_breaker::circuit::Handle,
    bulkhead: palisade_breaker::bulkhead::Handle,
    retry: palisade_breaker::retry::Handle,
    svc: BoxSvc,
}

type BoxSvc = tower::util::BoxCloneService<u32, u32, palisade_breaker::BoxError>;

fn stack(deadline: Duration, retry: RetryConfig, max_concurrent: u32) -> Stack {
    let backend = Backend::default();
    let breaker = CircuitBreakerLayer::new(
        "dep",
        BreakerConfig::builder()
            .count_window(20)
            .minimum_calls(10)
            .trip(TripPolicy::failure_rate(0.5))
            .open_duration(OpenDuration::constant(Duration::from_secs(1)))
            .half_open_probes(1)
            .build()
            .unwrap(),
    )
    .unwrap();
    let bulkhead = BulkheadLayer::new(
        "dep",
        BulkheadConfig::builder()
            .max_concurrent(max_concurrent)
            .build()
            .unwrap(),
    )
    .unwrap();
    let retry = RetryLayer::builder("dep")
        .config(retry)
        .rng_seed(7)
        .build()
        .unwrap();
    let (bh, rh, bkh) = (breaker.handle(), retry.handle(), bulkhead.handle());
    let svc = TimeoutLayer::new(deadline)
        .layer(retry.layer(breaker.layer(bulkhead.layer(backend.clone()))));
    Stack {
        backend,
        breaker: bh,
        bulkhead: bkh,
        retry: rh,
        svc: BoxSvc::new(svc.map_err(palisade_breaker::BoxError::from)),
    }
}

fn retries(max_attempts: u32, budget: Option<BudgetConfig>) -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(max_attempts)
        .backoff(Duration::from_millis(5), Duration::from_millis(5))
        .jitter(false)
        .budget(budget)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn rejections_are_not_retried() {
    let mut s = stack(Duration::from_secs(10), retries(5, None), 1);
    // Breaker open.
    s.breaker.force_open();
    let err = s.svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(matches!(
        find_any_rejection(&*err),
        Some(Rejection::CircuitOpen(_))
    ));
    assert_eq!(s.backend.calls(), 0);
    assert_eq!(s.retry.snapshot().retries_total, 0);
    s.breaker.close();

    // Bulkhead full: another caller holds the only slot with a hanging call.
    s.backend.set(HANG);
    let mut holder = s.svc.clone();
    let held = tokio::spawn(async move { holder.ready().await.unwrap().call(0).await });
    tokio::task::yield_now().await;
    assert_eq!(s.bulkhead.snapshot().in_flight, 1);
    let err = s.svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(matches!(
        find_any_rejection(&*err),
        Some(Rejection::BulkheadFull(_))
    ));
    assert_eq!(s.backend.calls(), 1);
    assert_eq!(s.retry.snapshot().retries_total, 0);
    // Aborting the holder cancels its call: the slot comes back.
    held.abort();
    let _ = held.await;
    assert_eq!(s.bulkhead.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn budget_caps_a_retry_storm_and_the_breaker_ends_it() {
    let budget = Some(BudgetConfig {
        ratio: 0.2,
        min_per_second: 0,
        max_reserve: 20,
    });
    // Breaker disabled: only the budget limits the storm.
    let mut s = stack(Duration::from_secs(10), retries(3, budget), 10);
    s.breaker.disable();
    s.backend.set(FAIL);
    for i in 0..1000 {
        assert!(s.svc.ready().await.unwrap().call(i).await.is_err());
    }
    let calls = s.backend.calls();
    // Without a budget: 3000 calls. With it: 1000 + 20% (+ rounding).
    assert!(calls <= 1000 + 201, "calls: {calls}");
    assert!(calls >= 1000 + 150, "calls: {calls}");
    assert!(s.retry.snapshot().budget_exhausted_total >= 790);

    // With the breaker on, it opens after 10 calls and every later call is rejected without
    // reaching the dependency or being retried.
    let mut s = stack(Duration::from_secs(10), retries(3, budget), 10);
    s.backend.set(FAIL);
    for i in 0..1000 {
        assert!(s.svc.ready().await.unwrap().call(i).await.is_err());
    }
    assert_eq!(s.breaker.state(), State::Open);
    let calls = s.backend.calls();
    assert!(calls <= 20, "calls: {calls}");
}

#[tokio::test(start_paused = true)]
async fn deadline_holds_across_retries() {
    // Each attempt takes 40 ms and fails; 5 ms backoff; 10 attempts would take 445 ms.
    let mut s = stack(Duration::from_millis(100), retries(10, None), 10);
    s.breaker.disable();
    s.backend.set(3);
    let start = Instant::now();
    let err = s.svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    let t = err
        .downcast_ref::<palisade_breaker::timeout::Error<_>>()
        .map(
            |e: &palisade_breaker::timeout::Error<
                palisade_breaker::circuit::Error<palisade_breaker::bulkhead::Error<Boom>>,
            >| e.is_elapsed(),
        );
    assert_eq!(t, Some(true));
    // Attempts at 0, 45, 90 ms: the third was cut by the deadline.
    assert_eq!(s.backend.calls(), 3);
    assert_eq!(s.bulkhead.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn cancellation_releases_every_permit() {
    let mut s = stack(Duration::from_millis(50), retries(3, None), 4);
    // Trip the breaker, wait for half-open.
    s.backend.set(FAIL);
    for i in 0..10 {
        let _ = s.svc.ready().await.unwrap().call(i).await;
    }
    assert_eq!(s.breaker.state(), State::Open);
    tokio::time::advance(Duration::from_secs(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(s.breaker.state(), State::HalfOpen);

    // The single probe hangs and is cut by the deadline: its probe slot and bulkhead slot
    // come back, so the breaker is not stuck in half-open.
    s.backend.set(HANG);
    let err = s.svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(find_any_rejection(&*err).is_none());
    assert_eq!(s.bulkhead.snapshot().in_flight, 0);
    let snap = s.breaker.snapshot();
    assert_eq!((snap.state, snap.half_open_probes), (State::HalfOpen, 0));

    // Many callers, all hanging, all dropped mid-flight (not by the deadline): every permit back.
    s.backend.set(OK);
    assert_eq!(s.svc.ready().await.unwrap().call(5).await.unwrap(), 5);
    assert_eq!(s.breaker.state(), State::Closed);
    s.backend.set(HANG);
    let mut futs = Vec::new();
    for i in 0..8 {
        let mut c = s.svc.clone();
        futs.push(tokio::spawn(async move {
            c.ready().await.unwrap().call(i).await
        }));
    }
    tokio::task::yield_now().await;
    assert_eq!(s.bulkhead.snapshot().in_flight, 4);
    for f in &futs {
        f.abort();
    }
    for f in futs {
        let _ = f.await;
    }
    assert_eq!(s.bulkhead.snapshot().in_flight, 0);
    assert_eq!(s.breaker.snapshot().half_open_probes, 0);
}
