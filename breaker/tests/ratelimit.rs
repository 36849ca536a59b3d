//! Rate limiter: GCRA burst and steady rate under paused time, shared limits across clones,
//! backpressure, keyed limits with eviction, reconfiguration, and a multi-threaded stress test.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade_breaker::ratelimit::{Config, KeyedRateLimitLayer, RateLimitLayer};
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};

#[derive(Debug, Clone, Copy)]
struct Echo;

impl Service<u32> for Echo {
    type Response = u32;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<u32, std::io::Error>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, x: u32) -> Self::Future {
        std::future::ready(Ok(x))
    }
}

async fn call<S: Service<u32>>(svc: &mut S, x: u32) -> Result<S::Response, S::Error> {
    svc.ready().await?.call(x).await
}

#[tokio::test(start_paused = true)]
async fn burst_then_steady_rate_with_retry_after() {
    // 10 per second = one every 100 ms, burst 3.
    let layer = RateLimitLayer::new(Config::per(10, Duration::from_secs(1)).burst(3)).unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(Echo);
    assert_eq!(h.snapshot().available, 3);
    for i in 0..3 {
        assert_eq!(call(&mut svc, i).await.unwrap(), i);
    }
    let err = call(&mut svc, 9).await.unwrap_err();
    assert!(err.is_rejected());
    assert!(palisade_breaker::is_rejection(&err));
    assert_eq!(
        err.rejection().unwrap().retry_after(),
        Duration::from_millis(100)
    );
    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(call(&mut svc, 9).await.is_err());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(call(&mut svc, 9).await.is_ok());
    assert!(call(&mut svc, 9).await.is_err());
    // One second later: the rate over a long run is 10/s, capped by the burst.
    tokio::time::advance(Duration::from_secs(10)).await;
    let mut ok = 0;
    for _ in 0..10 {
        ok += u32::from(call(&mut svc, 1).await.is_ok());
    }
    assert_eq!(ok, 3);
    assert_eq!(h.snapshot().rejected_total, 10);
}

/// tower #794: every clone of tower's `RateLimit` had its own limit.
#[tokio::test(start_paused = true)]
async fn clones_share_one_limit() {
    let layer = RateLimitLayer::new(Config::per(5, Duration::from_secs(1))).unwrap();
    let svc = layer.layer(Echo);
    let mut ok = 0;
    for i in 0..20 {
        let mut c = svc.clone();
        ok += u32::from(call(&mut c, i).await.is_ok());
    }
    assert_eq!(ok, 5);
    // Another service from the same layer shares it too.
    let mut other = layer.layer(Echo);
    assert!(call(&mut other, 0).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn backpressure_waits_for_the_next_permit_within_max_wait() {
    let cfg = Config::per(1, Duration::from_secs(1)).backpressure(Duration::from_millis(1500));
    let layer = RateLimitLayer::new(cfg).unwrap();
    let mut a = layer.layer(Echo);
    let mut b = a.clone();
    let mut c = a.clone();
    assert!(call(&mut a, 1).await.is_ok());
    let mut rb = task::spawn(b.ready());
    assert_pending!(rb.poll());
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_pending!(rb.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(rb.is_woken());
    let b = assert_ready_ok!(rb.poll());
    assert!(b.call(2).await.is_ok());
    // The next permit is 1 s away and `c` reserves it; `a` would need 2 s > 1.5 s: rejected.
    let mut rc = task::spawn(c.ready());
    assert_pending!(rc.poll());
    let a = a.ready().await.unwrap();
    let err = a.call(3).await.unwrap_err();
    assert_eq!(
        err.rejection().unwrap().retry_after(),
        Duration::from_secs(2)
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let c = assert_ready_ok!(rc.poll());
    assert!(c.call(4).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn reconfigure_changes_the_rate_and_keeps_the_state() {
    let layer = RateLimitLayer::new(Config::per(1, Duration::from_secs(1))).unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(Echo);
    assert!(call(&mut svc, 1).await.is_ok());
    assert!(call(&mut svc, 1).await.is_err());
    assert!(
        h.reconfigure(Config::per(0, Duration::from_secs(1)))
            .is_err()
    );
    h.reconfigure(Config::per(100, Duration::from_secs(1)).burst(1))
        .unwrap();
    // The TAT from the old rate is kept: still 1 s ahead.
    assert!(call(&mut svc, 1).await.is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(call(&mut svc, 1).await.is_ok());
    tokio::time::advance(Duration::from_millis(10)).await;
    assert!(call(&mut svc, 1).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn keyed_limits_are_per_key_and_idle_keys_are_evicted() {
    let layer =
        KeyedRateLimitLayer::new(Config::per(1, Duration::from_secs(1)), 2, |x: &u32| *x % 10)
            .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(Echo);
    assert!(call(&mut svc, 1).await.is_ok());
    assert!(call(&mut svc, 2).await.is_ok());
    assert!(call(&mut svc, 11).await.is_err()); // key 1 again
    // A third key while both are busy: no room.
    let err = call(&mut svc, 3).await.unwrap_err();
    assert!(err.is_rejected());
    assert_eq!(h.rejected_new_keys(), 1);
    assert_eq!(h.keys(), 2);
    // Once the keys are idle again they can be evicted for new ones.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(call(&mut svc, 3).await.is_ok());
    assert!(h.keys() <= 2);
    assert!(call(&mut svc, 13).await.is_err());
}

/// Eight threads race for a burst of 1000 permits with no refill in sight: exactly 1000 calls
/// pass (the CAS never double-spends or loses a permit).
#[test]
fn stress_exact_permit_count_across_threads() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let layer =
            RateLimitLayer::new(Config::per(1, Duration::from_secs(86_400)).burst(1000)).unwrap();
        let svc = layer.layer(Echo);
        let ok = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let mut svc = svc.clone();
                let ok = ok.clone();
                tokio::spawn(async move {
                    for i in 0..500 {
                        if call(&mut svc, i).await.is_ok() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        if i % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(ok.load(Ordering::Relaxed), 1000);
    });
}

#[test]
fn config_validation() {
    assert!(Config::per(0, Duration::from_secs(1)).validate().is_err());
    assert!(
        Config::per(1, Duration::from_secs(1))
            .burst(0)
            .validate()
            .is_err()
    );
    assert!(Config::per(10, Duration::ZERO).validate().is_err());
    let c: Config =
        serde_yaml::from_str("rate: 5\nperiod: 250ms\nmode: backpressure\nmax_wait: 1s\n").unwrap();
    assert_eq!(c.emission_interval(), Duration::from_millis(50));
}

#[derive(Clone, Default)]
struct Rejections(Arc<std::sync::Mutex<Vec<(String, Duration)>>>);

impl palisade_breaker::ratelimit::Listener for Rejections {
    fn on_rejection(&self, name: &str, r: &palisade_breaker::ratelimit::Rejected) {
        self.0
            .lock()
            .unwrap()
            .push((name.to_owned(), r.retry_after()));
    }
}

#[tokio::test(start_paused = true)]
async fn the_listener_sees_each_rejection() {
    let seen = Rejections::default();
    let layer =
        RateLimitLayer::with_listener("api", Config::per(1, Duration::from_secs(1)), seen.clone())
            .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(Echo);
    assert!(call(&mut svc, 1).await.is_ok());
    assert!(call(&mut svc, 2).await.is_err());
    assert_eq!(
        *seen.0.lock().unwrap(),
        vec![("api".to_owned(), Duration::from_secs(1))]
    );
    assert_eq!(h.snapshot().rejected_total, 1);
}

/// Keyed: threads racing on a few keys (new keys inserted concurrently) get exactly each key's
/// burst, no more, no less.
#[test]
fn stress_keyed_exact_per_key_counts() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let layer = KeyedRateLimitLayer::new(
            Config::per(1, Duration::from_secs(86_400)).burst(100),
            16,
            |x: &u32| *x % 4,
        )
        .unwrap();
        let h = layer.handle();
        let svc = layer.layer(Echo);
        let ok = Arc::new([
            AtomicU32::new(0),
            AtomicU32::new(0),
            AtomicU32::new(0),
            AtomicU32::new(0),
        ]);
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let mut svc = svc.clone();
                let ok = ok.clone();
                tokio::spawn(async move {
                    for i in 0..200u32 {
                        let x = i + t;
                        if call(&mut svc, x).await.is_ok() {
                            ok[(x % 4) as usize].fetch_add(1, Ordering::Relaxed);
                        }
                        if i % 8 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        for k in ok.iter() {
            assert_eq!(k.load(Ordering::Relaxed), 100);
        }
        assert_eq!(h.keys(), 4);
    });
}

#[tokio::test(start_paused = true)]
async fn keyed_try_acquire_reports_remaining_and_reset() {
    // 4 per second (T = 250ms), burst 3.
    let layer = KeyedRateLimitLayer::new(
        Config::per(4, Duration::from_secs(1)).burst(3),
        16,
        |k: &u8| *k,
    )
    .unwrap();
    let h = layer.handle();
    let a = h.try_acquire(1).unwrap();
    assert_eq!((a.remaining(), a.reset()), (2, Duration::from_millis(250)));
    let a = h.try_acquire(1).unwrap();
    assert_eq!((a.remaining(), a.reset()), (1, Duration::from_millis(500)));
    let a = h.try_acquire(1).unwrap();
    assert_eq!((a.remaining(), a.reset()), (0, Duration::from_millis(750)));
    let r = h.try_acquire(1).unwrap_err();
    assert_eq!(r.retry_after(), Duration::from_millis(250));
    // Another key is untouched; the service and the handle share the keys.
    assert_eq!(h.try_acquire(2).unwrap().remaining(), 2);
    let mut svc = layer.layer(tower::service_fn(|_: u8| async { Ok::<_, ()>(()) }));
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(1)
            .await
            .unwrap_err()
            .is_rejected()
    );
    tokio::time::advance(Duration::from_millis(250)).await;
    let a = h.try_acquire(1).unwrap();
    assert_eq!((a.remaining(), a.reset()), (0, Duration::from_millis(750)));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(h.try_acquire(1).unwrap().remaining(), 2);
}

/// The coarse clock changes when time is read, not how permits are counted: a burst is exact,
/// across threads.
#[test]
fn coarse_clock_burst_is_exact_across_threads() {
    use std::future::Future;
    let layer = RateLimitLayer::new_coarse(Config::per(1, Duration::from_secs(86_400)).burst(1000))
        .unwrap();
    let ok = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mut svc = layer.layer(Echo);
            let ok = ok.clone();
            std::thread::spawn(move || {
                let waker = futures::task::noop_waker();
                let mut cx = std::task::Context::from_waker(&waker);
                for i in 0..500 {
                    assert!(svc.poll_ready(&mut cx).is_ready());
                    let mut fut = std::pin::pin!(svc.call(i));
                    if let std::task::Poll::Ready(Ok(_)) = fut.as_mut().poll(&mut cx) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(ok.load(Ordering::Relaxed), 1000);
}

/// On the real clock (the coarse clock does not follow paused time): the limiter admits again
/// as the coarse clock ticks, and never more in total than `burst + rate * elapsed` allows, with
/// one permit of slack for the clock's lag when the limiter was built.
#[test]
fn coarse_clock_refills_and_never_admits_more_than_elapsed_time_allows() {
    use std::future::Future;
    let start = std::time::Instant::now();
    // One permit every 10 ms, burst 1.
    let layer =
        RateLimitLayer::new_coarse(Config::per(100, Duration::from_secs(1)).burst(1)).unwrap();
    let mut svc = layer.layer(Echo);
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let deadline = start + Duration::from_secs(20);
    let mut admitted = 0u64;
    let mut rejected = 0u64;
    while admitted < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {admitted} calls admitted in 20 s: the coarse clock does not advance"
        );
        assert!(svc.poll_ready(&mut cx).is_ready());
        match std::pin::pin!(svc.call(0)).poll(&mut cx) {
            std::task::Poll::Ready(Ok(_)) => admitted += 1,
            std::task::Poll::Ready(Err(e)) => {
                assert!(e.rejection().unwrap().retry_after() <= Duration::from_millis(10));
                rejected += 1;
            }
            std::task::Poll::Pending => unreachable!("shed mode never waits"),
        }
        let elapsed_ms = start.elapsed().as_millis() as u64;
        assert!(
            admitted <= 1 + elapsed_ms / 10 + 1,
            "{admitted} admitted after {elapsed_ms} ms: more than burst + rate * elapsed"
        );
        std::thread::yield_now();
    }
    assert!(rejected > 0, "a 100/s limiter turned nobody away");
}
