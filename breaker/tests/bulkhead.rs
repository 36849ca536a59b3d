//! Bulkhead: admission, waiting, timeouts, queue bound, release on every path, shared limits,
//! reconfiguration, and a stress test of the in-flight invariant.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade_breaker::bulkhead::{BulkheadLayer, Config, Mode, RejectReason};
use tokio::sync::oneshot;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};

type Gate = oneshot::Receiver<()>;

/// A service whose calls finish when their gate opens (or its sender drops).
#[derive(Debug, Clone, Copy)]
struct Gated;

impl Service<Gate> for Gated {
    type Response = ();
    type Error = std::io::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), std::io::Error>> + Send>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, g: Gate) -> Self::Future {
        Box::pin(async move {
            let _ = g.await;
            Ok(())
        })
    }
}

fn gated() -> Gated {
    Gated
}

fn gate() -> (oneshot::Sender<()>, Gate) {
    oneshot::channel()
}

fn cfg(max: u32) -> palisade_breaker::bulkhead::Builder {
    Config::builder().max_concurrent(max)
}

#[tokio::test(start_paused = true)]
async fn fails_fast_when_full_and_frees_the_slot_on_completion() {
    fails_fast(BulkheadLayer::new("t", cfg(2).build().unwrap()).unwrap()).await;
}

#[tokio::test(start_paused = true)]
async fn static_state_fails_fast_and_frees_the_slot_on_completion() {
    fails_fast(BulkheadLayer::new_static("t", cfg(2).build().unwrap()).unwrap()).await;
}

async fn fails_fast(layer: BulkheadLayer) {
    let h = layer.handle();
    let mut svc = layer.layer(gated());
    let (t1, g1) = gate();
    let (_t2, g2) = gate();
    let f1 = svc.ready().await.unwrap().call(g1);
    let f2 = svc.ready().await.unwrap().call(g2);
    assert_eq!(h.snapshot().in_flight, 2);
    let (_t3, g3) = gate();
    let err = svc.ready().await.unwrap().call(g3).await.unwrap_err();
    assert!(err.is_rejected());
    assert_eq!(err.rejection().unwrap().reason(), RejectReason::Full);
    assert_eq!(err.rejection().unwrap().limit(), 2);
    assert!(palisade_breaker::is_rejection(&err));
    t1.send(()).unwrap();
    f1.await.unwrap();
    assert_eq!(h.snapshot().in_flight, 1);
    let (t4, g4) = gate();
    let f4 = svc.ready().await.unwrap().call(g4);
    t4.send(()).unwrap();
    f4.await.unwrap();
    drop(f2);
    assert_eq!(h.snapshot().in_flight, 0);
    assert_eq!(h.snapshot().rejected_total, 1);
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_limit_and_start_without_a_reservation() {
    let layer = BulkheadLayer::new("t", cfg(1).build().unwrap()).unwrap();
    let h = layer.handle();
    let mut a = layer.layer(gated());
    // `a` reserves the only slot in poll_ready.
    a.ready().await.unwrap();
    assert_eq!(h.snapshot().in_flight, 1);
    let mut b = a.clone();
    let (_t, g) = gate();
    let err = b.ready().await.unwrap().call(g).await.unwrap_err();
    assert_eq!(err.rejection().unwrap().reason(), RejectReason::Full);
    // Dropping a service that holds a reservation gives it back.
    drop(a);
    assert_eq!(h.snapshot().in_flight, 0);
    let (t, g) = gate();
    let f = b.ready().await.unwrap().call(g);
    t.send(()).unwrap();
    f.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn cancelled_call_releases_its_slot() {
    let layer = BulkheadLayer::new("t", cfg(1).build().unwrap()).unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(gated());
    let (_t, g) = gate();
    let f = svc.ready().await.unwrap().call(g);
    assert_eq!(h.snapshot().in_flight, 1);
    drop(f);
    assert_eq!(h.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn backpressure_waits_and_gets_the_slot_handed_over() {
    let c = cfg(1)
        .max_wait(Duration::from_secs(1))
        .max_queue(4)
        .build()
        .unwrap();
    let layer = BulkheadLayer::new("t", c).unwrap();
    let h = layer.handle();
    let mut a = layer.layer(gated());
    let mut b = a.clone();
    let (t1, g1) = gate();
    let f1 = a.ready().await.unwrap().call(g1);

    let mut ready_b = task::spawn(b.ready());
    assert_pending!(ready_b.poll());
    assert_eq!(h.snapshot().queued, 1);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_pending!(ready_b.poll());
    t1.send(()).unwrap();
    f1.await.unwrap();
    assert!(ready_b.is_woken());
    let b = assert_ready_ok!(ready_b.poll());
    assert_eq!(h.snapshot().queued, 0);
    assert_eq!(h.snapshot().in_flight, 1);
    let (t2, g2) = gate();
    let f2 = b.call(g2);
    t2.send(()).unwrap();
    f2.await.unwrap();
    assert_eq!(h.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn wait_times_out_with_a_timeout_rejection() {
    let c = cfg(1)
        .max_wait(Duration::from_millis(100))
        .max_queue(4)
        .build()
        .unwrap();
    let layer = BulkheadLayer::new("t", c).unwrap();
    let h = layer.handle();
    let mut a = layer.layer(gated());
    let mut b = a.clone();
    let (_t1, g1) = gate();
    let _f1 = a.ready().await.unwrap().call(g1);
    let mut ready_b = task::spawn(b.ready());
    assert_pending!(ready_b.poll());
    tokio::time::advance(Duration::from_millis(99)).await;
    assert_pending!(ready_b.poll());
    tokio::time::advance(Duration::from_millis(2)).await;
    let b = assert_ready_ok!(ready_b.poll());
    let (_t2, g2) = gate();
    let err = b.call(g2).await.unwrap_err();
    assert_eq!(err.rejection().unwrap().reason(), RejectReason::Timeout);
    assert_eq!(h.snapshot().queued, 0);
    assert_eq!(h.snapshot().in_flight, 1);
}

#[tokio::test(start_paused = true)]
async fn full_queue_rejects_at_once_and_waiters_are_served_in_order() {
    let c = cfg(1).wait_forever().max_queue(2).build().unwrap();
    let layer = BulkheadLayer::new("t", c).unwrap();
    let h = layer.handle();
    let mut a = layer.layer(gated());
    let (mut w1, mut w2, mut w3) = (a.clone(), a.clone(), a.clone());
    let (t0, g0) = gate();
    let f0 = a.ready().await.unwrap().call(g0);
    let mut r1 = task::spawn(w1.ready());
    let mut r2 = task::spawn(w2.ready());
    assert_pending!(r1.poll());
    assert_pending!(r2.poll());
    // Third waiter: the queue (2) is full.
    let w3 = w3.ready().await.unwrap();
    let (_t, g) = gate();
    let err = w3.call(g).await.unwrap_err();
    assert_eq!(err.rejection().unwrap().reason(), RejectReason::QueueFull);
    // The oldest waiter gets the slot first.
    t0.send(()).unwrap();
    f0.await.unwrap();
    assert_ready_ok!(r1.poll());
    assert_pending!(r2.poll());
    drop(r1);
    // Dropping the ready (unused) w1 future does not drop the service: its reservation is still
    // held by `w1` until w1 is dropped.
    drop(w1);
    assert_ready_ok!(r2.poll());
    assert_eq!(h.snapshot().queued, 0);
    assert_eq!(h.snapshot().in_flight, 1);
}

#[tokio::test(start_paused = true)]
async fn dropped_waiter_leaves_the_queue() {
    let c = cfg(1).wait_forever().max_queue(1).build().unwrap();
    let layer = BulkheadLayer::new("t", c).unwrap();
    let h = layer.handle();
    let mut a = layer.layer(gated());
    let mut b = a.clone();
    let (t0, g0) = gate();
    let f0 = a.ready().await.unwrap().call(g0);
    {
        let mut rb = task::spawn(b.ready());
        assert_pending!(rb.poll());
        assert_eq!(h.snapshot().queued, 1);
    }
    // The ready future was dropped, but `b` is still queued until it is dropped.
    drop(b);
    assert_eq!(h.snapshot().queued, 0);
    t0.send(()).unwrap();
    f0.await.unwrap();
    assert_eq!(h.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn shed_mode_rejects_in_call_and_never_waits() {
    let c = cfg(1)
        .mode(Mode::Shed)
        .max_wait(Duration::from_secs(5))
        .max_queue(5)
        .build()
        .unwrap();
    let layer = BulkheadLayer::new("t", c).unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(gated());
    // poll_ready reserves nothing in shed mode.
    svc.ready().await.unwrap();
    assert_eq!(h.snapshot().in_flight, 0);
    let (_t, g) = gate();
    let _f = svc.call(g);
    let mut ready = task::spawn(svc.ready());
    let svc = assert_ready_ok!(ready.poll());
    let (_t2, g2) = gate();
    let err = svc.call(g2).await.unwrap_err();
    assert_eq!(err.rejection().unwrap().reason(), RejectReason::Full);
    assert_eq!(h.snapshot().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_raises_the_limit_and_wakes_waiters_and_refuses_bad_config() {
    let c = cfg(1).wait_forever().max_queue(4).build().unwrap();
    let layer = BulkheadLayer::new("t", c.clone()).unwrap();
    let h = layer.handle();
    let mut a = layer.layer(gated());
    let mut b = a.clone();
    let (_t0, g0) = gate();
    let _f0 = a.ready().await.unwrap().call(g0);
    let mut rb = task::spawn(b.ready());
    assert_pending!(rb.poll());
    let bad = Config {
        max_concurrent: 0,
        ..c.clone()
    };
    let e = h.reconfigure(bad).unwrap_err();
    assert_eq!(e.field(), "max_concurrent");
    assert_eq!(h.snapshot().max_concurrent, 1);
    h.reconfigure(Config {
        max_concurrent: 2,
        ..c
    })
    .unwrap();
    assert!(rb.is_woken());
    assert_ready_ok!(rb.poll());
    assert_eq!(h.snapshot().in_flight, 2);
    assert_eq!(h.snapshot().max_concurrent, 2);
}

#[test]
fn config_validation_and_serde() {
    assert!(Config::builder().max_concurrent(0).build().is_err());
    // Waiting without a queue is a contradiction.
    let e = Config::builder()
        .max_wait(Duration::from_millis(5))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "max_queue");
    let c: Config = serde_yaml::from_str("max_concurrent: 3\nmode: shed\n").unwrap();
    assert_eq!(c.mode, Mode::Shed);
    assert_eq!(c.max_concurrent, 3);
    assert!(serde_json::from_str::<Config>(r#"{"max_concurrent": 3, "nope": 1}"#).is_err());
}

/// Many tasks on a multi-threaded runtime through clones of one bulkhead, half of them waiting
/// with a timeout and some cancelled: the in-flight count never exceeds the limit, and every slot
/// comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stress_never_exceeds_the_limit_and_releases_every_slot() {
    stress(BulkheadLayer::new("t", stress_cfg()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn static_state_stress_never_exceeds_the_limit_and_releases_every_slot() {
    stress(BulkheadLayer::new_static("t", stress_cfg()).unwrap()).await;
}

const LIMIT: u32 = 5;

fn stress_cfg() -> Config {
    cfg(LIMIT)
        .max_wait(Duration::from_millis(20))
        .max_queue(16)
        .build()
        .unwrap()
}

async fn stress(layer: BulkheadLayer) {
    let h = layer.handle();
    let current = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let (cur2, peak2) = (current.clone(), peak.clone());
    let svc = layer.layer(tower::service_fn(move |i: u32| {
        let (cur, peak) = (cur2.clone(), peak2.clone());
        async move {
            let now = cur.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            for _ in 0..(i % 3) {
                tokio::task::yield_now().await;
            }
            cur.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        }
    }));
    let ok = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..16u32)
        .map(|t| {
            let mut svc = svc.clone();
            let ok = ok.clone();
            tokio::spawn(async move {
                for i in 0..300u32 {
                    let ready = match svc.ready().await {
                        Ok(s) => s,
                        Err(_) => continue,
                    };
                    let fut = ready.call(i + t);
                    if (i + t) % 7 == 0 {
                        drop(fut); // cancellation
                    } else if fut.await.is_ok() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= LIMIT);
    assert!(ok.load(Ordering::Relaxed) > 0);
    let s = h.snapshot();
    assert_eq!((s.in_flight, s.queued), (0, 0));
}

/// The limit changes under load (as the adaptive limits do): the in-flight count never exceeds
/// the largest limit, every waiter is served or times out, and every slot comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stress_reconfigure_under_load() {
    let base = cfg(2)
        .max_wait(Duration::from_millis(5))
        .max_queue(8)
        .build()
        .unwrap();
    let layer = BulkheadLayer::new("t", base.clone()).unwrap();
    let h = layer.handle();
    let current = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let (cur2, peak2) = (current.clone(), peak.clone());
    let svc = layer.layer(tower::service_fn(move |_: u32| {
        let (cur, peak) = (cur2.clone(), peak2.clone());
        async move {
            let now = cur.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::task::yield_now().await;
            cur.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        }
    }));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..12u32)
        .map(|t| {
            let mut svc = svc.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(s) = svc.ready().await {
                        let _ = s.call(i + t).await;
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for round in 0..200u32 {
        let limit = if round % 2 == 0 { 6 } else { 2 };
        h.reconfigure(Config {
            max_concurrent: limit,
            max_queue: 8 - (round % 8),
            ..base.clone()
        })
        .unwrap();
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= 6);
    let s = h.snapshot();
    assert_eq!((s.in_flight, s.queued), (0, 0));
}
