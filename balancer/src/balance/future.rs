//! The balancer's response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use palisade_breaker::{Classify, Outcome};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::BoxError;
use crate::stats::EndpointStats;

pin_project! {
    /// Completes with the endpoint's response and records its outcome (for outlier detection)
    /// and latency (for Peak-EWMA). Dropping it before completion releases the in-flight count
    /// and records nothing.
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        guard: Option<CallGuard<C>>,
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

pub(crate) struct CallGuard<C> {
    pub(crate) stats: Arc<EndpointStats>,
    pub(crate) eject_pending: Arc<AtomicBool>,
    pub(crate) classifier: C,
    /// Set when the latency is needed (Peak-EWMA).
    pub(crate) start: Option<Instant>,
    pub(crate) decay_ns: f64,
    /// 0: consecutive-failure ejection off.
    pub(crate) consecutive_threshold: u32,
    /// Whether outcomes are classified at all (outlier detection on).
    pub(crate) classify: bool,
}

impl<C> Drop for CallGuard<C> {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<C> CallGuard<C> {
    fn record(&self, outcome: Outcome) {
        let s = &self.stats;
        match outcome {
            Outcome::Success => {
                s.interval_successes.fetch_add(1, Ordering::Relaxed);
                s.total_successes.fetch_add(1, Ordering::Relaxed);
                s.consecutive_failures.store(0, Ordering::Relaxed);
            }
            Outcome::Failure => {
                s.interval_failures.fetch_add(1, Ordering::Relaxed);
                s.total_failures.fetch_add(1, Ordering::Relaxed);
                let n = s.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if self.consecutive_threshold != 0 && n >= self.consecutive_threshold {
                    s.eject_request.store(true, Ordering::Release);
                    self.eject_pending.store(true, Ordering::Release);
                }
            }
            Outcome::Ignored => {}
        }
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(inner: F, guard: CallGuard<C>) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(guard) = this.guard.take() {
            let elapsed = guard.start.map(|start| {
                let now = Instant::now();
                let rtt = now.saturating_duration_since(start);
                guard.stats.record_rtt(rtt, now, guard.decay_ns);
                rtt
            });
            if guard.classify {
                guard.record(guard.classifier.classify(result.as_ref(), elapsed));
            }
        }
        Poll::Ready(result.map_err(Into::into))
    }
}
