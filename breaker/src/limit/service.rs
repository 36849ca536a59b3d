use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::algorithm::{Algorithm, Sample};
use crate::bulkhead::core::Shared as BulkheadShared;
use crate::bulkhead::{self, Bulkhead, BulkheadLayer};
use crate::classify::{AnyError, Classify, Outcome};
use crate::util::{InvalidConfig, SharedRef};

struct Adaptive<A> {
    algorithm: A,
    bulkhead: SharedRef<BulkheadShared<()>>,
}

/// A bulkhead whose limit an [`Algorithm`] adjusts from the latency and drops of the calls it
/// admits (Netflix concurrency-limits). Rejections are the bulkhead's; its wait queue and modes
/// apply unchanged.
pub struct AdaptiveLimitLayer<A, C = AnyError> {
    bulkhead: BulkheadLayer,
    adaptive: Arc<Adaptive<A>>,
    classifier: C,
}

impl<A, C: Clone> Clone for AdaptiveLimitLayer<A, C> {
    fn clone(&self) -> Self {
        Self {
            bulkhead: self.bulkhead.clone(),
            adaptive: self.adaptive.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<A: fmt::Debug, C> fmt::Debug for AdaptiveLimitLayer<A, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitLayer")
            .field("algorithm", &self.adaptive.algorithm)
            .field("bulkhead", &self.bulkhead)
            .finish()
    }
}

impl<A: Algorithm> AdaptiveLimitLayer<A> {
    /// An adaptive limit named `name`, driven by `algorithm`, with the waiting behaviour of
    /// `bulkhead` (its `max_concurrent` is replaced by the algorithm's initial limit).
    pub fn new(
        name: impl Into<String>,
        algorithm: A,
        bulkhead: bulkhead::Config,
    ) -> Result<Self, InvalidConfig> {
        let cfg = bulkhead::Config {
            max_concurrent: algorithm.initial_limit().max(1),
            ..bulkhead
        };
        let layer = BulkheadLayer::new(name, cfg)?;
        let shared = layer.handle().shared;
        Ok(Self {
            bulkhead: layer,
            adaptive: Arc::new(Adaptive {
                algorithm,
                bulkhead: shared,
            }),
            classifier: AnyError,
        })
    }
}

impl<A, C> AdaptiveLimitLayer<A, C> {
    /// Which results are drops (`Failure`: a timeout, an overload error) and which say nothing
    /// (`Ignored`: not sampled). Default: every error is a drop.
    pub fn classifier<C2>(self, classifier: C2) -> AdaptiveLimitLayer<A, C2> {
        AdaptiveLimitLayer {
            bulkhead: self.bulkhead,
            adaptive: self.adaptive,
            classifier,
        }
    }

    /// The handle of the underlying bulkhead: its snapshot's `max_concurrent` is the current
    /// limit.
    pub fn handle(&self) -> bulkhead::Handle {
        self.bulkhead.handle()
    }
}

impl<S, A, C: Clone> Layer<S> for AdaptiveLimitLayer<A, C> {
    type Service = AdaptiveLimit<S, A, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveLimit {
            inner: self.bulkhead.layer(inner),
            adaptive: self.adaptive.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// A service under an adaptive concurrency limit. Built by [`AdaptiveLimitLayer`].
pub struct AdaptiveLimit<S, A, C = AnyError> {
    inner: Bulkhead<S>,
    adaptive: Arc<Adaptive<A>>,
    classifier: C,
}

impl<S: Clone, A, C: Clone> Clone for AdaptiveLimit<S, A, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            adaptive: self.adaptive.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S: fmt::Debug, A, C> fmt::Debug for AdaptiveLimit<S, A, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, A, C> AdaptiveLimit<S, A, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner.into_inner()
    }
}

impl<S, A, C, Req> Service<Req> for AdaptiveLimit<S, A, C>
where
    S: Service<Req>,
    A: Algorithm,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = bulkhead::Error<S::Error>;
    type Future = ResponseFuture<bulkhead::future::ResponseFuture<S::Future, ()>, A, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let start = Instant::now();
        let fut = self.inner.call(req);
        let in_flight = self.inner.shared().in_flight();
        ResponseFuture {
            fut,
            start,
            in_flight,
            adaptive: self.adaptive.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

pin_project! {
    /// The bulkhead's response future, timed and sampled on completion.
    pub struct ResponseFuture<F, A, C> {
        #[pin]
        fut: F,
        start: Instant,
        in_flight: u32,
        adaptive: Arc<Adaptive<A>>,
        classifier: C,
    }
}

impl<F, A, C> fmt::Debug for ResponseFuture<F, A, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<F, T, E, A, C> Future for ResponseFuture<F, A, C>
where
    F: Future<Output = Result<T, bulkhead::Error<E>>>,
    A: Algorithm,
    C: Classify<T, E>,
{
    type Output = Result<T, bulkhead::Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.fut.poll(cx));
        let inner = match &result {
            Ok(t) => Some(Ok(t)),
            Err(e) => e.inner_ref().map(Err),
        };
        // A rejection never reached the dependency: not a sample.
        if let Some(r) = inner {
            let dropped = match this.classifier.classify(r, None) {
                Outcome::Success => Some(false),
                Outcome::Failure => Some(true),
                Outcome::Ignored => None,
            };
            if let Some(dropped) = dropped {
                let sample = Sample {
                    started: *this.start,
                    rtt: this.start.elapsed(),
                    in_flight: *this.in_flight,
                    dropped,
                };
                if let Some(limit) = this.adaptive.algorithm.update(sample) {
                    this.adaptive.bulkhead.set_limit(limit);
                }
            }
        }
        Poll::Ready(result)
    }
}
