//! The response future of the rate limiters.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::error::{Error, Rejected};

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit) and
    /// [`KeyedRateLimit`](super::KeyedRateLimit): the inner future, or an immediate rejection.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] fut: F },
        Rejected { rejected: Option<Rejected> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(fut: F) -> Self {
        Self {
            kind: Kind::Called { fut },
        }
    }

    pub(crate) fn rejected(r: Rejected) -> Self {
        Self {
            kind: Kind::Rejected { rejected: Some(r) },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, Error<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { fut } => Poll::Ready(ready!(fut.poll(cx)).map_err(Error::inner)),
            KindProj::Rejected { rejected } => Poll::Ready(Err(Error::rejected(
                rejected
                    .take()
                    .expect("ResponseFuture polled after completion"),
            ))),
        }
    }
}
