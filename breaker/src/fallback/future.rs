//! The response futures of [`FallbackService`](super::FallbackService).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::service::{Cause, Fallback};
use crate::classify::{Classify, Outcome};

pin_project! {
    /// The primary call, then the fallback if the primary failed.
    pub struct ResponseFuture<Fut, F, C, Res, E>
    where
        F: Fallback<Res, E>,
    {
        #[pin]
        state: State<Fut, F::Future>,
        fallback: F,
        classifier: C,
        _types: PhantomData<fn() -> (Res, E)>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut, Fb> {
        Primary { #[pin] fut: Fut },
        Fallback { #[pin] fut: Fb },
    }
}

impl<Fut, F: Fallback<Res, E>, C, Res, E> ResponseFuture<Fut, F, C, Res, E> {
    pub(crate) fn new(fut: Fut, fallback: F, classifier: C) -> Self {
        Self {
            state: State::Primary { fut },
            fallback,
            classifier,
            _types: PhantomData,
        }
    }
}

impl<Fut, F: Fallback<Res, E>, C, Res, E> fmt::Debug for ResponseFuture<Fut, F, C, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<Fut, F, C, Res, E> Future for ResponseFuture<Fut, F, C, Res, E>
where
    Fut: Future<Output = Result<Res, E>>,
    F: Fallback<Res, E>,
    C: Classify<Res, E>,
    E: std::error::Error + 'static,
{
    type Output = Result<Res, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Primary { fut } => {
                    let result = ready!(fut.poll(cx));
                    let cause = match result {
                        Err(e) if crate::is_rejection(&e) => Cause::Rejected(e),
                        r => match this.classifier.classify(r.as_ref(), None) {
                            Outcome::Failure => match r {
                                Ok(res) => Cause::FailedResponse(res),
                                Err(e) => Cause::Failed(e),
                            },
                            Outcome::Success | Outcome::Ignored => return Poll::Ready(r),
                        },
                    };
                    let fut = this.fallback.fallback(cause);
                    this.state.set(State::Fallback { fut });
                }
                StateProj::Fallback { fut } => return fut.poll(cx),
            }
        }
    }
}

pin_project! {
    /// Polls a fallback service ready, then calls it once.
    pub struct ServiceFallbackFuture<S, Req>
    where
        S: Service<Req>,
    {
        svc: S,
        req: Option<Req>,
        #[pin]
        fut: Option<S::Future>,
    }
}

impl<S: Service<Req>, Req> ServiceFallbackFuture<S, Req> {
    pub(crate) fn new(svc: S, req: Req) -> Self {
        Self {
            svc,
            req: Some(req),
            fut: None,
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ServiceFallbackFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceFallbackFuture")
    }
}

impl<S: Service<Req>, Req> Future for ServiceFallbackFuture<S, Req> {
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(req) = this.req.take() {
            match this.svc.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let fut = this.svc.call(req);
                    this.fut.set(Some(fut));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    *this.req = Some(req);
                    return Poll::Pending;
                }
            }
        }
        this.fut
            .as_pin_mut()
            .expect("the fallback call is made before it is polled")
            .poll(cx)
    }
}
