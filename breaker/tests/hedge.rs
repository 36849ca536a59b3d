//! Hedging: the hedge answers a stuck call, fast calls are not hedged, the loser is cancelled,
//! hedges draw from the budget, the delay is learned from latencies.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade_breaker::hedge::HedgeLayer;
use palisade_breaker::retry::{BudgetConfig, RetryBudget};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// Latency per call from a script (by call number), counting calls started and dropped early.
#[derive(Clone)]
struct Scripted {
    latencies: Arc<Vec<u64>>,
    calls: Arc<AtomicU32>,
    cancelled: Arc<AtomicU32>,
}

struct CancelGuard(Arc<AtomicU32>, bool);
impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Scripted {
    fn new(latencies: Vec<u64>) -> Self {
        Self {
            latencies: Arc::new(latencies),
            calls: Default::default(),
            cancelled: Default::default(),
        }
    }
}

impl Service<u32> for Scripted {
    type Response = u32;
    type Error = std::io::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, std::io::Error>> + Send>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::io::Error>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, x: u32) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
        let ms = *self.latencies.get(n).unwrap_or(&5);
        let cancelled = self.cancelled.clone();
        Box::pin(async move {
            let mut guard = CancelGuard(cancelled, false);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            guard.1 = true;
            Ok(x * 10 + n as u32)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_hedge_answers_a_stuck_call_and_the_loser_is_cancelled() {
    let backend = Scripted::new(vec![10_000, 20]);
    let layer = HedgeLayer::fixed(Duration::from_millis(30));
    let h = layer.handle();
    let mut svc = layer.layer(backend.clone());
    let start = Instant::now();
    // Call 0 is stuck; call 1 (the hedge, at 30 ms) answers at 50 ms.
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 11);
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert_eq!((h.hedges_total(), h.hedge_wins_total()), (1, 1));
    assert_eq!(backend.cancelled.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn fast_calls_are_not_hedged() {
    let backend = Scripted::new(vec![10, 10, 10]);
    let layer = HedgeLayer::fixed(Duration::from_millis(30));
    let h = layer.handle();
    let mut svc = layer.layer(backend.clone());
    for i in 0..3 {
        svc.ready().await.unwrap().call(i).await.unwrap();
    }
    assert_eq!(backend.calls.load(Ordering::SeqCst), 3);
    assert_eq!(h.hedges_total(), 0);
}

#[tokio::test(start_paused = true)]
async fn hedges_draw_from_the_budget() {
    // Every call is slow: without a budget each would be hedged.
    let backend = Scripted::new(vec![100; 200]);
    let budget = RetryBudget::new(&BudgetConfig {
        ratio: 0.1,
        min_per_second: 0,
        max_reserve: 5,
    });
    let layer = HedgeLayer::fixed(Duration::from_millis(10)).budget(budget);
    let h = layer.handle();
    let mut svc = layer.layer(backend.clone());
    for i in 0..100 {
        svc.ready().await.unwrap().call(i).await.unwrap();
    }
    // 10% of 100 calls.
    let hedges = h.hedges_total();
    assert!((9..=11).contains(&hedges), "{hedges}");
    assert_eq!(h.denied_total(), 100 - hedges);
    assert_eq!(backend.calls.load(Ordering::SeqCst) as u64, 100 + hedges);
}

#[tokio::test(start_paused = true)]
async fn the_delay_is_a_learned_latency_percentile() {
    // 95% of calls take 10 ms, 5% take 500 ms.
    let script: Vec<u64> = (0..400)
        .map(|i| if i % 20 == 0 { 500 } else { 10 })
        .collect();
    let backend = Scripted::new(script);
    let layer = HedgeLayer::percentile(0.9, 20, 1000);
    let h = layer.handle();
    let mut svc = layer.layer(backend.clone());
    assert_eq!(h.delay(), None);
    for i in 0..100 {
        svc.ready().await.unwrap().call(i).await.unwrap();
    }
    let d = h.delay().expect("learned");
    assert!(
        d >= Duration::from_millis(10) && d <= Duration::from_millis(13),
        "{d:?}"
    );
    // The slow calls now get hedged after ~p90 and answer in ~2 x 10 ms instead of 500 ms.
    let before = h.hedges_total();
    let start = Instant::now();
    for i in 0..100 {
        svc.ready().await.unwrap().call(i).await.unwrap();
    }
    assert!(h.hedges_total() > before);
    assert!(
        start.elapsed() < Duration::from_millis(100 * 10 + 5 * 40),
        "{:?}",
        start.elapsed()
    );
}

/// Over a bulkhead: the hedge takes its own slot, and when the hedge wins the cancelled primary
/// gives its slot back.
#[tokio::test(start_paused = true)]
async fn over_a_bulkhead_every_slot_comes_back() {
    use palisade_breaker::bulkhead::{BulkheadLayer, Config};
    let backend = Scripted::new(vec![10_000, 20, 10_000, 20]);
    let bulkhead =
        BulkheadLayer::new("b", Config::builder().max_concurrent(2).build().unwrap()).unwrap();
    let bh = bulkhead.handle();
    let layer = HedgeLayer::fixed(Duration::from_millis(30));
    let h = layer.handle();
    let mut svc = layer.layer(bulkhead.layer(backend.clone()));
    for i in 0..2 {
        assert!(svc.ready().await.unwrap().call(i).await.is_ok());
        assert_eq!(bh.snapshot().in_flight, 0);
    }
    assert_eq!(h.hedge_wins_total(), 2);
    assert_eq!(backend.cancelled.load(Ordering::SeqCst), 2);
}
