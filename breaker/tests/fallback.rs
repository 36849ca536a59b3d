//! Fallback: rejections and failures answered from a closure or a service, with the cause;
//! successes untouched; classifier-driven fallback on failed responses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade_breaker::circuit::{CircuitBreakerLayer, Config as BreakerConfig};
use palisade_breaker::fallback::{Cause, FallbackLayer};
use palisade_breaker::{Classify, Outcome};
use tower::{Layer, Service, ServiceExt};

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}
impl std::error::Error for Boom {}

fn backend() -> impl Service<u32, Response = u32, Error = Boom, Future: Send> + Clone {
    tower::service_fn(|x: u32| async move { if x == 0 { Err(Boom) } else { Ok(x) } })
}

#[tokio::test]
async fn failures_and_rejections_fall_back_with_their_cause() {
    let breaker = CircuitBreakerLayer::new("b", BreakerConfig::default()).unwrap();
    let bh = breaker.handle();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let fb = FallbackLayer::new(
        move |cause: Cause<u32, palisade_breaker::circuit::Error<Boom>>| {
            let rejected = cause.is_rejected();
            s2.lock().unwrap().push(rejected);
            async move { Ok(if rejected { 1000 } else { 500 }) }
        },
    );
    let mut svc = fb.layer(breaker.layer(backend()));
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
    assert_eq!(svc.ready().await.unwrap().call(0).await.unwrap(), 500);
    bh.force_open();
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 1000);
    assert_eq!(*seen.lock().unwrap(), vec![false, true]);
}

#[tokio::test]
async fn a_fallback_may_pass_the_error_on() {
    let mut svc = FallbackLayer::new(|cause: Cause<u32, Boom>| async move {
        assert!(cause.error().is_some());
        cause.into_result()
    })
    .layer(backend());
    assert!(svc.ready().await.unwrap().call(0).await.is_err());
}

#[derive(Clone, Copy)]
struct OddIsFailure;
impl Classify<u32, Boom> for OddIsFailure {
    fn classify(&self, r: Result<&u32, &Boom>, _: Option<Duration>) -> Outcome {
        match r {
            Ok(x) if x % 2 == 1 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Ignored,
        }
    }
}

#[tokio::test]
async fn the_classifier_decides_including_failed_responses() {
    let mut svc = FallbackLayer::new(|cause: Cause<u32, Boom>| async move {
        match cause {
            Cause::FailedResponse(x) => Ok(x + 1),
            other => other.into_result(),
        }
    })
    .classifier(OddIsFailure)
    .layer(backend());
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 4);
    assert_eq!(svc.ready().await.unwrap().call(4).await.unwrap(), 4);
    // Errors are `Ignored` by this classifier: passed through.
    assert!(svc.ready().await.unwrap().call(0).await.is_err());
}

#[tokio::test]
async fn another_service_can_be_the_fallback() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let secondary = tower::service_fn(move |cause: Cause<u32, Boom>| {
        c.fetch_add(1, Ordering::SeqCst);
        let failed = matches!(cause, Cause::Failed(_));
        async move { if failed { Ok(42) } else { Err(Boom) } }
    });
    let mut svc = FallbackLayer::service(secondary).layer(backend());
    assert_eq!(svc.ready().await.unwrap().call(5).await.unwrap(), 5);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(svc.ready().await.unwrap().call(0).await.unwrap(), 42);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
