use std::fmt;
use std::future::Future;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::future::{ResponseFuture, ServiceFallbackFuture};
use crate::classify::{AnyError, Classify};

/// Why the fallback runs, with the cause itself (Hystrix `getFallback` with
/// `getExecutionException`, Feign fallback factories).
#[derive(Debug)]
pub enum Cause<Res, E> {
    /// A Palisade layer turned the call away (breaker open, bulkhead full, rate limited): the
    /// dependency was not called.
    Rejected(E),
    /// The call failed with an error.
    Failed(E),
    /// The call returned a response that the classifier calls a failure (e.g. a 503).
    FailedResponse(Res),
}

impl<Res, E> Cause<Res, E> {
    /// Whether the call was rejected rather than failed.
    pub fn is_rejected(&self) -> bool {
        matches!(self, Cause::Rejected(_))
    }

    /// The error, if there is one.
    pub fn error(&self) -> Option<&E> {
        match self {
            Cause::Rejected(e) | Cause::Failed(e) => Some(e),
            Cause::FailedResponse(_) => None,
        }
    }

    /// The original result, to hand back unchanged.
    pub fn into_result(self) -> Result<Res, E> {
        match self {
            Cause::Rejected(e) | Cause::Failed(e) => Err(e),
            Cause::FailedResponse(r) => Ok(r),
        }
    }
}

/// Produces the fallback answer from the cause. Implemented for closures
/// `Fn(Cause<Res, E>) -> impl Future<Output = Result<Res, E>>` and, through
/// [`FallbackLayer::service`], for a service taking the cause.
pub trait Fallback<Res, E> {
    /// The fallback's future.
    type Future: Future<Output = Result<Res, E>>;
    /// Answers in place of the failed call.
    fn fallback(&self, cause: Cause<Res, E>) -> Self::Future;
}

impl<F, Fut, Res, E> Fallback<Res, E> for F
where
    F: Fn(Cause<Res, E>) -> Fut,
    Fut: Future<Output = Result<Res, E>>,
{
    type Future = Fut;
    fn fallback(&self, cause: Cause<Res, E>) -> Fut {
        self(cause)
    }
}

/// A fallback that is a service taking the [`Cause`] (cloned for each fallback call, and polled
/// ready before it is called).
#[derive(Debug, Clone)]
pub struct ServiceFallback<S>(S);

impl<S, Res, E> Fallback<Res, E> for ServiceFallback<S>
where
    S: Service<Cause<Res, E>, Response = Res, Error = E> + Clone,
{
    type Future = ServiceFallbackFuture<S, Cause<Res, E>>;
    fn fallback(&self, cause: Cause<Res, E>) -> Self::Future {
        ServiceFallbackFuture::new(self.0.clone(), cause)
    }
}

/// Answers from a fallback when a call fails or is rejected. Put it above the layers whose
/// failures it covers (above the breaker and bulkhead to serve their rejections too).
#[derive(Clone)]
pub struct FallbackLayer<F, C = AnyError> {
    fallback: F,
    classifier: C,
}

impl<F, C> fmt::Debug for FallbackLayer<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer").finish_non_exhaustive()
    }
}

impl<F> FallbackLayer<F> {
    /// Falls back on every error (rejections included), through `fallback`: a closure
    /// `Fn(Cause<Res, E>) -> impl Future<Output = Result<Res, E>>`.
    pub fn new(fallback: F) -> Self {
        Self {
            fallback,
            classifier: AnyError,
        }
    }
}

impl<S> FallbackLayer<ServiceFallback<S>> {
    /// Falls back on every error through another service that takes the [`Cause`].
    pub fn service(fallback: S) -> Self {
        Self {
            fallback: ServiceFallback(fallback),
            classifier: AnyError,
        }
    }
}

impl<F, C> FallbackLayer<F, C> {
    /// Falls back on what `classifier` calls a failure (responses included), and on every
    /// rejection.
    pub fn classifier<C2>(self, classifier: C2) -> FallbackLayer<F, C2> {
        FallbackLayer {
            fallback: self.fallback,
            classifier,
        }
    }
}

impl<S, F: Clone, C: Clone> Layer<S> for FallbackLayer<F, C> {
    type Service = FallbackService<S, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        FallbackService {
            inner,
            fallback: self.fallback.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// A service with a fallback. Built by [`FallbackLayer`].
#[derive(Clone)]
pub struct FallbackService<S, F, C = AnyError> {
    inner: S,
    fallback: F,
    classifier: C,
}

impl<S: fmt::Debug, F, C> fmt::Debug for FallbackService<S, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, F, C> FallbackService<S, F, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, F, C, Req> Service<Req> for FallbackService<S, F, C>
where
    S: Service<Req>,
    S::Error: std::error::Error + 'static,
    F: Fallback<S::Response, S::Error> + Clone,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, F, C, S::Response, S::Error>;

    /// Readiness errors are passed through: there is no request yet to answer for.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::new(
            self.inner.call(req),
            self.fallback.clone(),
            self.classifier.clone(),
        )
    }
}
