//! Circuit breaker behaviour under paused tokio time: every transition, manual states,
//! reconfiguration, cancellation and readiness.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use palisade_breaker::circuit::{
    CancellationPolicy, CircuitBreakerLayer, Config, Handle, Listener, OpenDuration, Transition,
    TripPolicy, TripReason,
};
use palisade_breaker::{Outcome, State};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

#[derive(Clone, Debug)]
enum Req {
    Ok,
    Fail,
    Slow(Duration),
    /// Waits for a permit of the semaphore, then succeeds.
    Hang(Arc<Semaphore>),
}

type Svc = palisade_breaker::circuit::CircuitBreaker<
    tower::util::ServiceFn<
        fn(Req) -> futures::future::BoxFuture<'static, Result<&'static str, &'static str>>,
    >,
    palisade_breaker::AnyError,
    Recorder,
>;

fn backend(req: Req) -> futures::future::BoxFuture<'static, Result<&'static str, &'static str>> {
    Box::pin(async move {
        match req {
            Req::Ok => Ok("ok"),
            Req::Fail => Err("boom"),
            Req::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok("slow")
            }
            Req::Hang(sem) => {
                let _p = sem.acquire().await.expect("semaphore open");
                Ok("released")
            }
        }
    })
}

/// Records transitions and outcomes.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn transitions(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.contains("->"))
            .cloned()
            .collect()
    }
    fn count(&self, what: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|e| *e == what).count()
    }
}

impl Listener for Recorder {
    fn on_transition(&self, _name: &str, t: &Transition) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{:?}->{:?} {:?}", t.from, t.to, t.reason));
    }
    fn on_outcome(&self, _name: &str, o: Outcome, slow: bool) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{o:?}{}", if slow { " slow" } else { "" }));
    }
    fn on_cancelled(&self, _name: &str) {
        self.0.lock().unwrap().push("cancelled".into());
    }
    fn on_rejection(&self, _name: &str, _s: State) {
        self.0.lock().unwrap().push("rejected".into());
    }
}

fn breaker(cfg: Config) -> (Svc, Handle<Recorder>, Recorder) {
    let rec = Recorder::default();
    let layer = CircuitBreakerLayer::builder("test")
        .config(cfg)
        .listener(rec.clone())
        .rng_seed(7)
        .build()
        .unwrap();
    let handle = layer.handle();
    let f: fn(Req) -> _ = backend;
    let svc = ServiceBuilder::new().layer(layer).service_fn(f);
    (svc, handle, rec)
}

async fn call(
    svc: &mut Svc,
    req: Req,
) -> Result<&'static str, palisade_breaker::circuit::Error<&'static str>> {
    svc.ready().await?.call(req).await
}

/// Moves paused time forward and lets woken tasks (the breaker's timers) run.
async fn tick(d: Duration) {
    tokio::time::advance(d).await;
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
}

fn base() -> palisade_breaker::circuit::Builder {
    Config::builder()
        .count_window(10)
        .minimum_calls(4)
        .open_duration(OpenDuration::constant(Duration::from_secs(10)))
        .half_open_probes(2)
}

#[tokio::test(start_paused = true)]
async fn failure_rate_trips_only_after_minimum_calls() {
    let (mut svc, h, rec) = breaker(base().trip(TripPolicy::failure_rate(0.5)).build().unwrap());
    for _ in 0..3 {
        assert!(
            call(&mut svc, Req::Fail)
                .await
                .unwrap_err()
                .inner_ref()
                .is_some()
        );
    }
    assert_eq!(h.state(), State::Closed, "3 calls are below minimum_calls");
    // The 4th call is a success, but it completes the minimum with a 75% failure rate.
    call(&mut svc, Req::Ok).await.unwrap();
    assert_eq!(h.state(), State::Open);
    assert_eq!(rec.transitions(), vec!["Closed->Open Some(FailureRate)"]);
    let snap = h.snapshot();
    assert_eq!((snap.calls, snap.failures), (4, 3));
    assert_eq!(snap.last_trip, Some(TripReason::FailureRate));

    let err = call(&mut svc, Req::Ok).await.unwrap_err();
    let r = *err.rejection().expect("rejected");
    assert_eq!(r.state(), State::Open);
    assert_eq!(r.reason(), Some(TripReason::FailureRate));
    assert_eq!(r.retry_after(), Some(Duration::from_secs(10)));
    assert_eq!(rec.count("rejected"), 1);
}

#[tokio::test(start_paused = true)]
async fn below_threshold_stays_closed() {
    let (mut svc, h, _) = breaker(base().trip(TripPolicy::failure_rate(0.5)).build().unwrap());
    for i in 0..40 {
        let req = if i % 3 == 1 { Req::Fail } else { Req::Ok };
        let _ = call(&mut svc, req).await;
    }
    assert_eq!(h.state(), State::Closed);
    let s = h.snapshot();
    assert_eq!(s.calls, 10, "count window holds the last 10 calls");
    assert!(s.failure_rate < 0.5);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_and_successes_reset_the_run() {
    let (mut svc, h, rec) = breaker(
        base()
            .trip(TripPolicy::consecutive_failures(3))
            .build()
            .unwrap(),
    );
    for _ in 0..2 {
        let _ = call(&mut svc, Req::Fail).await;
    }
    call(&mut svc, Req::Ok).await.unwrap();
    for _ in 0..2 {
        let _ = call(&mut svc, Req::Fail).await;
    }
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.snapshot().consecutive_failures, 2);
    let _ = call(&mut svc, Req::Fail).await;
    assert_eq!(h.state(), State::Open);
    assert_eq!(
        rec.transitions(),
        vec!["Closed->Open Some(ConsecutiveFailures)"]
    );
}

#[tokio::test(start_paused = true)]
async fn slow_call_rate_trips_with_measured_latency() {
    let cfg = base()
        .trip(TripPolicy::slow_call_rate(0.5, Duration::from_millis(100)))
        .build()
        .unwrap();
    let (mut svc, h, rec) = breaker(cfg);
    call(&mut svc, Req::Slow(Duration::from_millis(99)))
        .await
        .unwrap();
    call(&mut svc, Req::Ok).await.unwrap();
    call(&mut svc, Req::Slow(Duration::from_millis(150)))
        .await
        .unwrap();
    assert_eq!(h.state(), State::Closed);
    call(&mut svc, Req::Slow(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(h.state(), State::Open);
    assert_eq!(rec.count("Success slow"), 2);
    assert_eq!(h.snapshot().last_trip, Some(TripReason::SlowCallRate));
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_old_failures() {
    let cfg = base()
        .time_window(Duration::from_secs(10), 10)
        .trip(TripPolicy::failure_rate(0.5))
        .build()
        .unwrap();
    let (mut svc, h, _) = breaker(cfg);
    for _ in 0..3 {
        let _ = call(&mut svc, Req::Fail).await;
    }
    assert_eq!(h.snapshot().failures, 3);
    tick(Duration::from_secs(11)).await;
    assert_eq!(h.snapshot().calls, 0, "old buckets fell out of the window");
    for _ in 0..3 {
        call(&mut svc, Req::Ok).await.unwrap();
    }
    let _ = call(&mut svc, Req::Fail).await;
    assert_eq!(h.state(), State::Closed, "1 failure in 4 is below 50%");
    let _ = call(&mut svc, Req::Fail).await;
    let _ = call(&mut svc, Req::Fail).await;
    assert_eq!(h.state(), State::Open, "3 failures in 6 reach 50%");
}

#[tokio::test(start_paused = true)]
async fn open_half_open_closed_cycle() {
    let cfg = base()
        .trip(TripPolicy::consecutive_failures(1))
        .build()
        .unwrap();
    let (mut svc, h, rec) = breaker(cfg);
    let _ = call(&mut svc, Req::Fail).await;
    assert_eq!(h.state(), State::Open);
    tick(Duration::from_millis(9_999)).await;
    assert_eq!(h.state(), State::Open);
    tick(Duration::from_millis(2)).await;
    assert_eq!(
        h.state(),
        State::HalfOpen,
        "the timer moved it when the open duration ended"
    );

    // Two probes admitted, the third rejected while they are in flight.
    let gate = Arc::new(Semaphore::new(0));
    let mut a = svc.clone();
    let mut b = svc.clone();
    let pa = tokio::spawn({
        let g = gate.clone();
        async move { call(&mut a, Req::Hang(g)).await }
    });
    let pb = tokio::spawn({
        let g = gate.clone();
        async move { call(&mut b, Req::Hang(g)).await }
    });
    tokio::task::yield_now().await;
    assert_eq!(h.snapshot().half_open_probes, 2);
    let third = call(&mut svc, Req::Ok).await.unwrap_err();
    assert_eq!(third.rejection().unwrap().state(), State::HalfOpen);
    gate.add_permits(2);
    pa.await.unwrap().unwrap();
    pb.await.unwrap().unwrap();
    assert_eq!(h.state(), State::Closed);
    assert_eq!(
        rec.transitions(),
        vec![
            "Closed->Open Some(ConsecutiveFailures)",
            "Open->HalfOpen None",
            "HalfOpen->Closed None"
        ]
    );
    assert_eq!(h.snapshot().calls, 0, "closing starts a fresh window");
}

#[tokio::test(start_paused = true)]
async fn probe_failure_reopens_with_exponential_backoff() {
    let cfg = base()
        .trip(TripPolicy::consecutive_failures(1))
        .open_duration(OpenDuration::exponential(
            Duration::from_secs(1),
            Duration::from_secs(5),
        ))
        .half_open_probes(1)
        .build()
        .unwrap();
    let (mut svc, h, rec) = breaker(cfg);
    let _ = call(&mut svc, Req::Fail).await;
    let mut opened_for = vec![];
    for _ in 0..4 {
        let start = Instant::now();
        while h.state() != State::HalfOpen {
            tick(Duration::from_millis(100)).await;
        }
        opened_for.push(start.elapsed().as_millis());
        let _ = call(&mut svc, Req::Fail).await;
        assert_eq!(h.state(), State::Open);
    }
    // 1 s, 2 s, 4 s, then capped at 5 s (timer granularity: 100 ms steps).
    assert_eq!(opened_for, vec![1000, 2000, 4000, 5000]);
    assert!(
        rec.transitions()
            .iter()
            .filter(|t| t.contains("ProbeFailed"))
            .count()
            == 4
    );
    // A success closes and resets the backoff.
    while h.state() != State::HalfOpen {
        tick(Duration::from_millis(100)).await;
    }
    call(&mut svc, Req::Ok).await.unwrap();
    assert_eq!(h.state(), State::Closed);
    let _ = call(&mut svc, Req::Fail).await;
    assert_eq!(h.snapshot().open_remaining, Some(Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn jitter_is_seeded_and_bounded() {
    let cfg = base()
        .trip(TripPolicy::consecutive_failures(1))
        .open_duration(OpenDuration::Exponential {
            initial: Duration::from_secs(10),
            multiplier: 1.0,
            max: Duration::from_secs(10),
            jitter: 0.5,
        })
        .build()
        .unwrap();
    let run = || async {
        let (mut svc, h, _) = breaker(cfg.clone());
        let _ = call(&mut svc, Req::Fail).await;
        h.snapshot().open_remaining.unwrap()
    };
    let a = run().await;
    let b = run().await;
    assert_eq!(a, b, "same seed, same jitter");
    assert!(a >= Duration::from_secs(5) && a <= Duration::from_secs(15));
    assert_ne!(a, Duration::from_secs(10), "jitter applied");
}

#[tokio::test(start_paused = true)]
async fn half_open_max_duration_reopens() {
    let cfg = base()
        .trip(TripPolicy::consecutive_failures(1))
        .half_open_probes(1)
        .half_open_max_duration(Duration::from_secs(5))
        .build()
        .unwrap();
    let (mut svc, h, rec) = breaker(cfg);
    let _ = call(&mut svc, Req::Fail).await;
    tick(Duration::from_secs(10)).await;
    assert_eq!(h.state(), State::HalfOpen);
    // A probe that never finishes.
    let gate = Arc::new(Semaphore::new(0));
    let mut probe = svc.clone();
    let stuck = tokio::spawn({
        let g = gate.clone();
        async move { call(&mut probe, Req::Hang(g)).await }
    });
    tokio::task::yield_now().await;
    tick(Duration::from_secs(5)).await;
    assert_eq!(h.state(), State::Open);
    assert!(
        rec.transitions()
            .last()
            .unwrap()
            .contains("HalfOpenTimeout")
    );
    // The stuck probe finishing later belongs to an older generation: it changes nothing.
    gate.add_permits(1);
    stuck.await.unwrap().unwrap();
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn cancelled_probe_gives_its_slot_back() {
    let cfg = base()
        .trip(TripPolicy::consecutive_failures(1))
        .half_open_probes(1)
        .build()
        .unwrap();
    let (mut svc, h, rec) = breaker(cfg);
    let _ = call(&mut svc, Req::Fail).await;
    tick(Duration::from_secs(10)).await;
    let gate = Arc::new(Semaphore::new(0));
    let mut probe = svc.clone();
    let task = tokio::spawn({
        let g = gate.clone();
        async move { call(&mut probe, Req::Hang(g)).await }
    });
    tokio::task::yield_now().await;
    assert_eq!(h.snapshot().half_open_probes, 1);
    task.abort();
    let _ = task.await;
    assert_eq!(rec.count("cancelled"), 1);
    assert_eq!(h.snapshot().half_open_probes, 0, "slot returned");
    call(&mut svc, Req::Ok).await.unwrap();
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn cancellation_counted_as_failure_reopens() {
    let cfg = base()
        .trip(TripPolicy::consecutive_failures(1))
        .half_open_probes(1)
        .cancellation(CancellationPolicy::Failure)
        .build()
        .unwrap();
    let (mut svc, h, _) = breaker(cfg);
    let _ = call(&mut svc, Req::Fail).await;
    tick(Duration::from_secs(10)).await;
    let gate = Arc::new(Semaphore::new(0));
    let fut = svc.ready().await.unwrap().call(Req::Hang(gate));
    drop(fut);
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn cancellation_storm_never_sticks_in_half_open() {
    let cfg = base()
        .trip(TripPolicy::consecutive_failures(1))
        .half_open_probes(3)
        .build()
        .unwrap();
    let (mut svc, h, _) = breaker(cfg);
    let _ = call(&mut svc, Req::Fail).await;
    tick(Duration::from_secs(10)).await;
    let gate = Arc::new(Semaphore::new(0));
    for round in 0..20 {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let mut s = svc.clone();
                let g = gate.clone();
                tokio::spawn(async move { call(&mut s, Req::Hang(g)).await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(h.snapshot().half_open_probes <= 3, "round {round}");
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        assert_eq!(
            h.snapshot().half_open_probes,
            0,
            "round {round}: every slot returned"
        );
    }
    assert_eq!(h.state(), State::HalfOpen);
    for _ in 0..3 {
        call(&mut svc, Req::Ok).await.unwrap();
    }
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn outcome_of_an_older_generation_is_discarded() {
    let cfg = base()
        .trip(TripPolicy::consecutive_failures(2))
        .build()
        .unwrap();
    let (mut svc, h, _) = breaker(cfg);
    let gate = Arc::new(Semaphore::new(0));
    let fut = svc.ready().await.unwrap().call(Req::Hang(gate.clone()));
    let late = tokio::spawn(fut);
    tokio::task::yield_now().await;
    h.force_open();
    h.close();
    gate.add_permits(1);
    late.await.unwrap().unwrap();
    assert_eq!(
        h.snapshot().calls,
        0,
        "the call admitted before the transitions was not counted"
    );
}

#[tokio::test(start_paused = true)]
async fn manual_states() {
    let (mut svc, h, rec) = breaker(
        base()
            .trip(TripPolicy::consecutive_failures(1))
            .build()
            .unwrap(),
    );
    h.force_open();
    assert_eq!(h.state(), State::ForcedOpen);
    let err = call(&mut svc, Req::Ok).await.unwrap_err();
    assert_eq!(err.rejection().unwrap().state(), State::ForcedOpen);
    assert_eq!(err.rejection().unwrap().retry_after(), None);
    tick(Duration::from_secs(3600)).await;
    assert_eq!(h.state(), State::ForcedOpen, "forced open never times out");

    h.disable();
    for _ in 0..5 {
        let _ = call(&mut svc, Req::Fail).await;
    }
    assert_eq!(h.state(), State::Disabled);
    assert_eq!(h.snapshot().calls, 0, "disabled records nothing");

    h.metrics_only();
    for _ in 0..5 {
        let _ = call(&mut svc, Req::Fail).await;
    }
    assert_eq!(h.state(), State::MetricsOnly, "metrics-only never opens");
    assert_eq!(h.snapshot().failures, 5);

    h.reset();
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.snapshot().calls, 0);
    let _ = call(&mut svc, Req::Fail).await;
    assert_eq!(h.state(), State::Open);
    assert_eq!(
        rec.transitions(),
        vec![
            "Closed->ForcedOpen None",
            "ForcedOpen->Disabled None",
            "Disabled->MetricsOnly None",
            "MetricsOnly->Closed None",
            "Closed->Open Some(ConsecutiveFailures)"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn reconfigure_keeps_counters_when_the_window_shape_is_unchanged() {
    let (mut svc, h, _) = breaker(base().trip(TripPolicy::failure_rate(0.9)).build().unwrap());
    for _ in 0..3 {
        let _ = call(&mut svc, Req::Fail).await;
    }
    call(&mut svc, Req::Ok).await.unwrap();
    call(&mut svc, Req::Ok).await.unwrap();
    assert_eq!(h.state(), State::Closed, "60% < 90%");

    // Same window, lower threshold: counts kept, the next failure judges 4/6 against 50%.
    let lower = base().trip(TripPolicy::failure_rate(0.5)).build().unwrap();
    h.reconfigure(lower).unwrap();
    assert_eq!(h.snapshot().calls, 5, "counters kept");
    let _ = call(&mut svc, Req::Fail).await;
    assert_eq!(h.state(), State::Open);

    // A bad config is rejected and the old one stays.
    let mut bad = h.config();
    bad.minimum_calls = 0;
    let err = h.reconfigure(bad).unwrap_err();
    assert_eq!(err.field(), "minimum_calls");
    assert_eq!(h.config().minimum_calls, 4);

    // A new window shape resets the counts.
    h.close();
    let _ = call(&mut svc, Req::Ok).await;
    assert_eq!(h.snapshot().calls, 1);
    h.reconfigure(base().count_window(20).build().unwrap())
        .unwrap();
    assert_eq!(h.snapshot().calls, 0, "window shape changed: reset");
}

#[tokio::test(start_paused = true)]
async fn reconfigure_to_slow_call_policy_starts_timing_calls() {
    let (mut svc, h, rec) = breaker(base().trip(TripPolicy::failure_rate(0.5)).build().unwrap());
    call(&mut svc, Req::Slow(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(rec.count("Success slow"), 0);
    h.reconfigure(
        base()
            .trip(TripPolicy::slow_call_rate(0.5, Duration::from_millis(10)))
            .build()
            .unwrap(),
    )
    .unwrap();
    call(&mut svc, Req::Slow(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(rec.count("Success slow"), 1);
}

#[tokio::test(start_paused = true)]
async fn open_breaker_rejects_without_polling_the_inner_service() {
    let layer = CircuitBreakerLayer::new(
        "mock",
        base()
            .trip(TripPolicy::consecutive_failures(1))
            .build()
            .unwrap(),
    )
    .unwrap();
    let h = layer.handle();
    let (mock, mut ctl) = tower_test::mock::pair::<&'static str, &'static str>();
    let mut svc = tower_test::mock::Spawn::new(ServiceBuilder::new().layer(layer).service(mock));
    h.force_open();
    ctl.allow(0); // The inner service is not ready and never will be.
    assert!(
        svc.poll_ready().is_ready(),
        "rejection does not wait for the inner service"
    );
    let err = svc.call("x").await.unwrap_err();
    assert!(err.is_rejected());
    // Closed again: now readiness comes from the inner service.
    h.close();
    assert!(svc.poll_ready().is_pending());
    ctl.allow(1);
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call("y");
    let (req, send) = ctl.next_request().await.unwrap();
    assert_eq!(req, "y");
    send.send_response("done");
    assert_eq!(fut.await.unwrap(), "done");
}

#[tokio::test(start_paused = true)]
async fn unused_probe_reservation_is_returned_when_the_service_is_dropped() {
    let cfg = base()
        .trip(TripPolicy::consecutive_failures(1))
        .half_open_probes(1)
        .build()
        .unwrap();
    let (mut svc, h, _) = breaker(cfg);
    let _ = call(&mut svc, Req::Fail).await;
    tick(Duration::from_secs(10)).await;
    let mut reserving = svc.clone();
    futures::future::poll_fn(|cx| reserving.poll_ready(cx))
        .await
        .unwrap();
    assert_eq!(h.snapshot().half_open_probes, 1);
    drop(reserving);
    assert_eq!(h.snapshot().half_open_probes, 0);
}

#[test]
fn without_a_runtime_the_open_state_reads_the_clock() {
    // No tokio runtime: no timer task can be spawned, so `Open` is not armed and admission
    // compares the clock with the deadline instead.
    let cfg = base()
        .trip(TripPolicy::consecutive_failures(1))
        .open_duration(OpenDuration::constant(Duration::from_millis(20)))
        .half_open_probes(1)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new("sync", cfg).unwrap();
    let h = layer.handle();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|ok: bool| async move { if ok { Ok(()) } else { Err("no") } });
    let _ = futures::executor::block_on(svc.call(false));
    assert_eq!(h.state(), State::Open);
    assert!(
        futures::executor::block_on(svc.call(true))
            .unwrap_err()
            .is_rejected()
    );
    std::thread::sleep(Duration::from_millis(30));
    futures::executor::block_on(svc.call(true)).unwrap();
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn waiting_for_readiness_is_not_latency() {
    let cfg = base()
        .trip(TripPolicy::slow_call_rate(0.5, Duration::from_millis(100)))
        .minimum_calls(1)
        .build()
        .unwrap();
    let rec = Recorder::default();
    let layer = CircuitBreakerLayer::builder("ready")
        .config(cfg)
        .listener(rec.clone())
        .build()
        .unwrap();
    let h = layer.handle();
    let (mock, mut ctl) = tower_test::mock::pair::<&'static str, &'static str>();
    let mut svc = tower_test::mock::Spawn::new(ServiceBuilder::new().layer(layer).service(mock));
    ctl.allow(0);
    assert!(svc.poll_ready().is_pending());
    // A second of back-pressure from the inner service...
    tick(Duration::from_secs(1)).await;
    ctl.allow(1);
    assert!(svc.poll_ready().is_ready());
    // ...then a fast call: it is not a slow call.
    let fut = svc.call("x");
    let (_, send) = ctl.next_request().await.unwrap();
    send.send_response("ok");
    fut.await.unwrap();
    assert_eq!(rec.count("Success"), 1);
    assert_eq!(rec.count("Success slow"), 0);
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn admits_tells_whether_a_call_would_pass() {
    let cfg = base()
        .trip(TripPolicy::consecutive_failures(1))
        .half_open_probes(2)
        .build()
        .unwrap();
    let (mut svc, h, _) = breaker(cfg);
    assert!(h.admits());
    let _ = call(&mut svc, Req::Fail).await;
    assert!(!h.admits(), "open");
    tick(Duration::from_secs(10)).await;
    assert!(h.admits(), "half-open with free probe slots");
    let gate = Arc::new(Semaphore::new(0));
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut s = svc.clone();
            let g = gate.clone();
            tokio::spawn(async move { call(&mut s, Req::Hang(g)).await })
        })
        .collect();
    tokio::task::yield_now().await;
    assert!(!h.admits(), "every probe slot taken");
    gate.add_permits(2);
    for t in held {
        t.await.unwrap().unwrap();
    }
    assert_eq!(h.state(), State::Closed);
    assert!(h.admits());
    h.force_open();
    assert!(!h.admits());
    h.disable();
    assert!(h.admits());
}

fn static_breaker(cfg: Config) -> (Svc, Handle<Recorder>, Recorder) {
    let rec = Recorder::default();
    let layer = CircuitBreakerLayer::builder("static")
        .config(cfg)
        .listener(rec.clone())
        .rng_seed(7)
        .build_static()
        .unwrap();
    let handle = layer.handle();
    let f: fn(Req) -> _ = backend;
    let svc = ServiceBuilder::new().layer(layer).service_fn(f);
    (svc, handle, rec)
}

/// A `'static` breaker records through its fixed window and mirrored minimum: it trips when a
/// success completes the minimum, recovers through half-open, and follows a live change of the
/// minimum.
#[tokio::test(start_paused = true)]
async fn static_breaker_trips_recovers_and_follows_a_new_minimum() {
    let (mut svc, h, rec) =
        static_breaker(base().trip(TripPolicy::failure_rate(0.5)).build().unwrap());
    for _ in 0..3 {
        let _ = call(&mut svc, Req::Fail).await;
    }
    assert_eq!(h.state(), State::Closed, "3 calls are below minimum_calls");
    call(&mut svc, Req::Ok).await.unwrap();
    assert_eq!(
        h.state(),
        State::Open,
        "the 4th call completes the minimum at 75%"
    );
    assert!(
        call(&mut svc, Req::Ok)
            .await
            .unwrap_err()
            .rejection()
            .is_some()
    );

    tick(Duration::from_secs(10)).await;
    assert_eq!(h.state(), State::HalfOpen);
    call(&mut svc, Req::Ok).await.unwrap();
    call(&mut svc, Req::Ok).await.unwrap();
    assert_eq!(h.state(), State::Closed);
    assert_eq!(
        rec.transitions(),
        vec![
            "Closed->Open Some(FailureRate)",
            "Open->HalfOpen None",
            "HalfOpen->Closed None"
        ]
    );

    // Same window shape, minimum 2: the success that completes it judges 1 failure in 2.
    let cfg = base()
        .minimum_calls(2)
        .trip(TripPolicy::failure_rate(0.5))
        .build()
        .unwrap();
    h.reconfigure(cfg).unwrap();
    let _ = call(&mut svc, Req::Fail).await;
    assert_eq!(h.state(), State::Closed);
    call(&mut svc, Req::Ok).await.unwrap();
    assert_eq!(h.state(), State::Open);
}

/// A `'static` breaker's window shape is fixed: a config that changes it is refused with the
/// field named, and the breaker keeps its config and its counts.
#[tokio::test(start_paused = true)]
async fn static_breaker_refuses_a_new_window_shape() {
    let (mut svc, h, _) =
        static_breaker(base().trip(TripPolicy::failure_rate(0.9)).build().unwrap());
    let _ = call(&mut svc, Req::Fail).await;
    call(&mut svc, Req::Ok).await.unwrap();
    let before = h.config();
    let err = h
        .reconfigure(base().count_window(20).build().unwrap())
        .unwrap_err();
    assert_eq!(err.field(), "window");
    assert!(err.to_string().contains("build a new layer"), "{err}");
    assert_eq!(h.config(), before, "the old config stays");
    let snap = h.snapshot();
    assert_eq!((snap.calls, snap.failures), (2, 1), "counts kept");
}

/// A response future of a `'static` breaker dropped mid-call is recorded as a cancellation
/// (here a failure), like any other.
#[tokio::test(start_paused = true)]
async fn static_breaker_records_cancelled_calls() {
    let cfg = base()
        .trip(TripPolicy::consecutive_failures(2))
        .cancellation(CancellationPolicy::Failure)
        .build()
        .unwrap();
    let (mut svc, h, _) = static_breaker(cfg);
    let gate = Arc::new(Semaphore::new(0));
    for _ in 0..2 {
        let fut = svc.ready().await.unwrap().call(Req::Hang(gate.clone()));
        drop(fut);
    }
    assert_eq!(h.state(), State::Open);
}
