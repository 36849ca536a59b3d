//! Retry: backoff and jitter under paused time, max attempts, budget against retry storms,
//! `Retry-After`, rejections never retried, HTTP idempotency, reconfiguration.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_breaker::bulkhead::{BulkheadLayer, Config as BulkheadConfig};
use palisade_breaker::retry::{
    BudgetConfig, Config, Decision, GiveUp, Listener, Policy, RetryErrors, RetryLayer,
};
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

/// Fails the first `fail` calls, then succeeds; records when each call came.
#[derive(Clone)]
struct Flaky {
    fail: u32,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Flaky {
    fn new(fail: u32) -> Self {
        Self {
            fail,
            calls: Default::default(),
        }
    }
    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl Service<u32> for Flaky {
    type Response = u32;
    type Error = Boom;
    type Future = std::future::Ready<Result<u32, Boom>>;
    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Boom>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, x: u32) -> Self::Future {
        let mut calls = self.calls.lock().unwrap();
        calls.push(Instant::now());
        std::future::ready(if calls.len() as u32 <= self.fail {
            Err(Boom)
        } else {
            Ok(x)
        })
    }
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(u32, Duration)>>>, Arc<Mutex<Vec<GiveUp>>>);
impl Listener for Recorder {
    fn on_retry(&self, _: &str, n: u32, d: Duration) {
        self.0.lock().unwrap().push((n, d));
    }
    fn on_give_up(&self, _: &str, r: GiveUp) {
        self.1.lock().unwrap().push(r);
    }
}

fn no_jitter(attempts: u32) -> Config {
    Config::builder()
        .max_attempts(attempts)
        .backoff(Duration::from_millis(10), Duration::from_millis(25))
        .jitter(false)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn retries_until_success_with_exponential_backoff() {
    let backend = Flaky::new(3);
    let layer = RetryLayer::new("t", no_jitter(5)).unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(backend.clone());
    let start = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
    let calls = backend.calls.lock().unwrap().clone();
    let gaps: Vec<_> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    // 10 ms, 20 ms, then capped at 25 ms.
    assert_eq!(
        gaps,
        vec![
            Duration::from_millis(10),
            Duration::from_millis(20),
            Duration::from_millis(25)
        ]
    );
    assert_eq!(calls[0], start);
    assert_eq!(h.snapshot().retries_total, 3);
}

/// The `'static` state (`build_static`) behaves as the counted one: backoff, counters through
/// the handle, a budget shared by clones.
#[tokio::test(start_paused = true)]
async fn static_state_retries_and_shares_its_budget_across_clones() {
    let backend = Flaky::new(3);
    let layer = RetryLayer::builder("t")
        .config(no_jitter(5))
        .build_static()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(backend.clone());
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
    assert_eq!(backend.count(), 4);
    assert_eq!(h.snapshot().retries_total, 3);

    let always = Flaky::new(u32::MAX);
    let cfg = Config::builder()
        .max_attempts(3)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .budget(Some(BudgetConfig {
            ratio: 0.1,
            min_per_second: 0,
            max_reserve: 10,
        }))
        .build()
        .unwrap();
    let layer = RetryLayer::builder("t").config(cfg).build_static().unwrap();
    let h = layer.handle();
    let (mut a, mut b) = (layer.layer(always.clone()), layer.layer(always.clone()));
    for i in 0..500 {
        assert!(a.ready().await.unwrap().call(i).await.is_err());
        assert!(b.ready().await.unwrap().call(i).await.is_err());
    }
    let retries = always.count() - 1000;
    assert!((90..=101).contains(&retries), "retries: {retries}");
    assert_eq!(h.snapshot().retries_total as usize, retries);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts_with_the_last_error() {
    let backend = Flaky::new(100);
    let rec = Recorder::default();
    let layer = RetryLayer::builder("t")
        .config(no_jitter(3))
        .listener(rec.clone())
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(backend.clone());
    assert!(svc.ready().await.unwrap().call(1).await.is_err());
    assert_eq!(backend.count(), 3);
    assert_eq!(*rec.1.lock().unwrap(), vec![GiveUp::Exhausted]);
    assert_eq!(h.snapshot().exhausted_total, 1);
}

#[tokio::test(start_paused = true)]
async fn full_jitter_stays_under_the_ceiling_and_repeats_with_a_seed() {
    async fn delays(seed: u64) -> Vec<(u32, Duration)> {
        let rec = Recorder::default();
        let cfg = Config::builder()
            .max_attempts(6)
            .backoff(Duration::from_millis(100), Duration::from_secs(1))
            .budget(None)
            .build()
            .unwrap();
        let layer = RetryLayer::builder("t")
            .config(cfg)
            .listener(rec.clone())
            .rng_seed(seed)
            .build()
            .unwrap();
        let mut svc = layer.layer(Flaky::new(100));
        let _ = svc.ready().await.unwrap().call(1).await;
        rec.0.lock().unwrap().clone()
    }
    let a = delays(42).await;
    let b = delays(42).await;
    let c = delays(43).await;
    assert_eq!(a.len(), 5);
    assert_eq!(a, b);
    assert_ne!(a, c);
    for (n, d) in &a {
        let ceiling = Duration::from_millis(100 * 2u64.pow(n - 1)).min(Duration::from_secs(1));
        assert!(*d <= ceiling, "retry {n}: {d:?} > {ceiling:?}");
    }
    // Full jitter actually spreads: not every delay sits at the ceiling.
    assert!(
        a.iter()
            .any(|(n, d)| *d < Duration::from_millis(100 * 2u64.pow(n - 1)) / 2)
    );
}

/// A dependency that always fails, 1000 calls, 3 attempts each: without a budget it would get
/// 3000 calls; the budget (10% + reserve) holds the retries near 100.
#[tokio::test(start_paused = true)]
async fn budget_caps_a_retry_storm() {
    let backend = Flaky::new(u32::MAX);
    let cfg = Config::builder()
        .max_attempts(3)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .budget(Some(BudgetConfig {
            ratio: 0.1,
            min_per_second: 0,
            max_reserve: 10,
        }))
        .build()
        .unwrap();
    let layer = RetryLayer::new("t", cfg).unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(backend.clone());
    for i in 0..1000 {
        assert!(svc.ready().await.unwrap().call(i).await.is_err());
    }
    let retries = backend.count() - 1000;
    assert!(retries <= 101, "retries: {retries}");
    assert!(retries >= 90, "retries: {retries}");
    let s = h.snapshot();
    assert_eq!(s.retries_total as usize, retries);
    assert!(s.budget_exhausted_total > 800);
}

#[tokio::test(start_paused = true)]
async fn budget_min_per_second_allows_retries_when_quiet() {
    let backend = Flaky::new(u32::MAX);
    let cfg = Config::builder()
        .max_attempts(2)
        .backoff(Duration::ZERO, Duration::ZERO)
        .budget(Some(BudgetConfig {
            ratio: 0.0,
            min_per_second: 2,
            max_reserve: 2,
        }))
        .build()
        .unwrap();
    let layer = RetryLayer::new("t", cfg).unwrap();
    let mut svc = layer.layer(backend.clone());
    for i in 0..5 {
        let _ = svc.ready().await.unwrap().call(i).await;
    }
    // Two saved up at the start, then none.
    assert_eq!(backend.count(), 5 + 2);
    tokio::time::advance(Duration::from_secs(1)).await;
    for i in 0..5 {
        let _ = svc.ready().await.unwrap().call(i).await;
    }
    assert_eq!(backend.count(), 10 + 4);
}

#[tokio::test(start_paused = true)]
async fn never_retries_a_rejection() {
    let backend = Flaky::new(0);
    let bulkhead = BulkheadLayer::new(
        "b",
        BulkheadConfig::builder().max_concurrent(1).build().unwrap(),
    )
    .unwrap();
    let bh = bulkhead.handle();
    let layer = RetryLayer::new("t", no_jitter(5)).unwrap();
    let h = layer.handle();
    let mut holder = bulkhead.layer(backend.clone());
    let mut svc = layer.layer(bulkhead.layer(backend.clone()));
    // Hold the only slot.
    holder.ready().await.unwrap();
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is_rejected());
    assert_eq!(backend.count(), 0);
    assert_eq!(h.snapshot().retries_total, 0);
    assert_eq!(bh.snapshot().rejected_total, 1);
}

#[derive(Clone)]
struct AskLater(Duration);
impl<Req> Policy<Req, u32, Boom> for AskLater {
    fn decide(&self, r: Result<&u32, &Boom>) -> Decision {
        match r {
            Ok(_) => Decision::Return,
            Err(_) => Decision::RetryAfter(self.0),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn honours_retry_after_and_gives_up_when_it_is_too_long() {
    let backend = Flaky::new(1);
    let layer = RetryLayer::builder("t")
        .config(no_jitter(3))
        .policy(AskLater(Duration::from_secs(2)))
        .build()
        .unwrap();
    let mut svc = layer.layer(backend.clone());
    assert!(svc.ready().await.unwrap().call(1).await.is_ok());
    let calls = backend.calls.lock().unwrap().clone();
    assert_eq!(calls[1] - calls[0], Duration::from_secs(2));

    let backend = Flaky::new(1);
    let layer = RetryLayer::builder("t")
        .config(no_jitter(3))
        .policy(AskLater(Duration::from_secs(60)))
        .build()
        .unwrap();
    let rec = layer.handle();
    let mut svc = layer.layer(backend.clone());
    assert!(svc.ready().await.unwrap().call(1).await.is_err());
    assert_eq!(backend.count(), 1);
    assert_eq!(rec.snapshot().retries_total, 0);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_applies_live_and_refuses_bad_config() {
    let backend = Flaky::new(100);
    let layer = RetryLayer::new("t", no_jitter(2)).unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(backend.clone());
    let _ = svc.ready().await.unwrap().call(1).await;
    assert_eq!(backend.count(), 2);
    assert!(
        h.reconfigure(Config {
            max_attempts: 0,
            ..no_jitter(2)
        })
        .is_err()
    );
    h.reconfigure(no_jitter(4)).unwrap();
    let _ = svc.ready().await.unwrap().call(1).await;
    assert_eq!(backend.count(), 6);
    assert_eq!(h.config().max_attempts, 4);
}

#[test]
fn default_policy_returns_ok_and_rejections() {
    let p = RetryErrors;
    assert_eq!(
        Policy::<(), u32, Boom>::decide(&p, Ok(&1)),
        Decision::Return
    );
    assert_eq!(
        Policy::<(), u32, Boom>::decide(&p, Err(&Boom)),
        Decision::Retry
    );
    assert!(Config::builder().multiplier(0.5).build().is_err());
}

#[cfg(feature = "http")]
mod http_policy {
    use super::*;
    use palisade_breaker::retry::HttpPolicy;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Clone)]
    struct Status(Arc<AtomicU32>, u16);
    impl Service<http::Request<()>> for Status {
        type Response = http::Response<()>;
        type Error = Boom;
        type Future = std::future::Ready<Result<http::Response<()>, Boom>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Boom>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(http::Response::builder()
                .status(self.1)
                .body(())
                .unwrap()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_idempotent_methods_are_retried_unless_told() {
        let n = Arc::new(AtomicU32::new(0));
        let layer = RetryLayer::builder("h")
            .config(no_jitter(3))
            .policy(HttpPolicy::new())
            .build()
            .unwrap();
        let h = layer.handle();
        let mut svc = layer.layer(Status(n.clone(), 503));
        let get = http::Request::get("/").body(()).unwrap();
        assert_eq!(
            svc.ready().await.unwrap().call(get).await.unwrap().status(),
            503
        );
        assert_eq!(n.swap(0, Ordering::SeqCst), 3);
        let post = http::Request::post("/").body(()).unwrap();
        svc.ready().await.unwrap().call(post).await.unwrap();
        assert_eq!(n.swap(0, Ordering::SeqCst), 1);
        assert_eq!(h.snapshot().not_retryable_total, 1);

        let layer = RetryLayer::builder("h")
            .config(no_jitter(3))
            .policy(HttpPolicy::new().retry_non_idempotent(true))
            .build()
            .unwrap();
        let mut svc = layer.layer(Status(n.clone(), 502));
        let post = http::Request::post("/").body(()).unwrap();
        svc.ready().await.unwrap().call(post).await.unwrap();
        assert_eq!(n.swap(0, Ordering::SeqCst), 3);
        // 404 is the caller's problem: never retried.
        let mut svc = layer.layer(Status(n.clone(), 404));
        let get = http::Request::get("/").body(()).unwrap();
        svc.ready().await.unwrap().call(get).await.unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }
}

/// Threads racing on one budget: no retry is spent twice or lost, and the reserve cap holds.
#[test]
fn stress_budget_is_exact_across_threads() {
    use palisade_breaker::retry::RetryBudget;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    // Only deposits: 4 threads x 5000 calls at 0.1 = 2000 retries, capped at 1500.
    let budget = RetryBudget::new(&BudgetConfig {
        ratio: 0.1,
        min_per_second: 0,
        max_reserve: 1500,
    });
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let b = budget.clone();
            s.spawn(move || {
                for _ in 0..5000 {
                    b.deposit();
                }
            });
        }
    });
    let available = budget.available();
    // The cap is checked before each deposit, so racing threads may each add one more.
    assert!((1500..=1504).contains(&available), "{available}");
    let spent = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let b = budget.clone();
            let spent = &spent;
            s.spawn(move || {
                for _ in 0..1000 {
                    if b.withdraw() {
                        spent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert!(start.elapsed() < Duration::from_secs(60));
    assert_eq!(
        spent.load(std::sync::atomic::Ordering::Relaxed),
        available.min(1500)
    );
    assert_eq!(budget.available(), 0);
}
