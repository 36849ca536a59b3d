//! Timeouts and deadlines: per-call timeouts release permits, deadlines hold across retries and
//! are propagated per attempt.

use std::time::Duration;

use palisade_breaker::bulkhead::{BulkheadLayer, Config as BulkheadConfig};
use palisade_breaker::timeout::TimeoutLayer;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

async fn slow(d: Duration) -> Result<Duration, std::io::Error> {
    tokio::time::sleep(d).await;
    Ok(d)
}

#[tokio::test(start_paused = true)]
async fn timeout_fires_and_releases_the_bulkhead_slot() {
    let bulkhead = BulkheadLayer::new(
        "b",
        BulkheadConfig::builder().max_concurrent(1).build().unwrap(),
    )
    .unwrap();
    let bh = bulkhead.handle();
    let mut svc = TimeoutLayer::new(Duration::from_millis(100))
        .layer(bulkhead.layer(tower::service_fn(slow)));
    let start = Instant::now();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.is_elapsed());
    assert!(!err.is_deadline_exceeded());
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(bh.snapshot().in_flight, 0);
    // A fast call gets through untouched.
    let ok = svc
        .ready()
        .await
        .unwrap()
        .call(Duration::from_millis(99))
        .await
        .unwrap();
    assert_eq!(ok, Duration::from_millis(99));
}

#[cfg(feature = "http")]
mod deadlines {
    use super::*;
    use palisade_breaker::retry::{Config as RetryConfig, HttpPolicy, RetryLayer};
    use palisade_breaker::timeout::{
        CarryDeadline, Deadline, DeadlineLayer, HTTP_TIMEOUT_HEADER, PropagateDeadlineLayer,
        Propagation, grpc_timeout, inbound_deadline, parse_grpc_timeout,
    };
    use std::sync::{Arc, Mutex};

    /// Records the propagated header of each attempt; every attempt takes 10 ms and gets a 503.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<(Instant, String)>>>);

    impl Service<http::Request<()>> for Seen {
        type Response = http::Response<()>;
        type Error = std::io::Error;
        type Future = std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<http::Response<()>, std::io::Error>> + Send,
            >,
        >;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<()>) -> Self::Future {
            let h = req
                .headers()
                .get(HTTP_TIMEOUT_HEADER)
                .or_else(|| req.headers().get("grpc-timeout"))
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            self.0.lock().unwrap().push((Instant::now(), h));
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(http::Response::builder().status(503).body(()).unwrap())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_bounds_retries_and_is_propagated_per_attempt() {
        let seen = Seen::default();
        let retry = RetryLayer::builder("r")
            .config(
                RetryConfig::builder()
                    .max_attempts(100)
                    .backoff(Duration::from_millis(20), Duration::from_millis(20))
                    .jitter(false)
                    .budget(None)
                    .build()
                    .unwrap(),
            )
            .policy(HttpPolicy::new())
            .build()
            .unwrap();
        let mut svc = DeadlineLayer::new(Duration::from_millis(100))
            .layer(retry.layer(PropagateDeadlineLayer::new(Propagation::Http).layer(seen.clone())));
        let start = Instant::now();
        let req = http::Request::get("/").body(()).unwrap();
        // The fourth attempt ends exactly at the deadline; a fifth (after a 20 ms backoff)
        // could not finish in time, so its 503 is the answer, at 100 ms.
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        let seen = seen.0.lock().unwrap().clone();
        // Attempts at 0, 30, 60, 90 ms; each sends what is left then.
        let sent: Vec<_> = seen.iter().map(|(_, h)| h.as_str()).collect();
        assert_eq!(sent, vec!["100", "70", "40", "10"]);
        assert_eq!(seen[3].0 - start, Duration::from_millis(90));
    }

    /// A retry whose backoff would end after the deadline is not made: the caller gets the last
    /// answer (a 503) when it came, not a deadline error 60 ms later.
    #[tokio::test(start_paused = true)]
    async fn no_retry_that_cannot_finish_before_the_deadline() {
        let seen = Seen::default();
        let retry = RetryLayer::builder("r")
            .config(
                RetryConfig::builder()
                    .max_attempts(5)
                    .backoff(Duration::from_millis(95), Duration::from_millis(95))
                    .jitter(false)
                    .budget(None)
                    .build()
                    .unwrap(),
            )
            .policy(HttpPolicy::new())
            .build()
            .unwrap();
        let h = retry.handle();
        let mut svc =
            DeadlineLayer::new(Duration::from_millis(100)).layer(retry.layer(seen.clone()));
        let start = Instant::now();
        let req = http::Request::get("/").body(()).unwrap();
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(resp.status(), 503);
        // One attempt (10 ms); a 95 ms backoff would end at 105 ms > 100 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(10));
        assert_eq!(seen.0.lock().unwrap().len(), 1);
        assert_eq!(h.snapshot().deadline_too_close_total, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_inbound_deadline_wins_and_grpc_format_is_used() {
        let seen = Seen::default();
        let mut svc = DeadlineLayer::new(Duration::from_secs(10))
            .layer(PropagateDeadlineLayer::new(Propagation::Grpc).layer(seen.clone()));
        let mut req = http::Request::get("/").body(()).unwrap();
        req.headers_mut()
            .insert("grpc-timeout", http::HeaderValue::from_static("50m"));
        let inbound = inbound_deadline(req.headers()).unwrap();
        assert_eq!(inbound.remaining(), Duration::from_millis(50));
        req.set_deadline(inbound);
        let _ = svc.ready().await.unwrap().call(req).await;
        assert_eq!(seen.0.lock().unwrap()[0].1, "50000000n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_passed_deadline_fails_without_calling() {
        let seen = Seen::default();
        let mut svc = PropagateDeadlineLayer::new(Propagation::Http).layer(seen.clone());
        let mut req = http::Request::get("/").body(()).unwrap();
        req.set_deadline(Deadline(Instant::now()));
        let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
        assert!(err.is_deadline_exceeded());
        assert!(seen.0.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_no_header() {
        let seen = Seen::default();
        let mut svc = PropagateDeadlineLayer::new(Propagation::Grpc).layer(seen.clone());
        let req = http::Request::get("/").body(()).unwrap();
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(seen.0.lock().unwrap()[0].1, "");
    }

    #[test]
    fn grpc_timeout_round_trips() {
        for d in [
            Duration::from_nanos(7),
            Duration::from_millis(1),
            Duration::from_secs(99),
            Duration::from_secs(3 * 3600),
        ] {
            let s = grpc_timeout(d);
            assert!(s.len() <= 9, "{s}");
            let back = parse_grpc_timeout(&s).unwrap();
            assert!(back >= d, "{s}: {back:?} < {d:?}");
        }
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("m"), None);
    }
}
