//! The response future of [`Timeout`](super::Timeout) and
//! [`DeadlineService`](super::DeadlineService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::error::Error;

pin_project! {
    /// The inner future raced against a timer. Dropping it (or the timer firing) drops the
    /// inner future, which gives back whatever permits it holds.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Timed { #[pin] fut: F, #[pin] sleep: Sleep, deadline: bool },
        Expired,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(fut: F, sleep: Sleep, deadline: bool) -> Self {
        Self {
            kind: Kind::Timed {
                fut,
                sleep,
                deadline,
            },
        }
    }

    /// A deadline that had already passed: fails without calling.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn expired() -> Self {
        Self {
            kind: Kind::Expired,
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
            KindProj::Timed {
                fut,
                sleep,
                deadline,
            } => {
                if let Poll::Ready(r) = fut.poll(cx) {
                    return Poll::Ready(r.map_err(Error::inner));
                }
                match sleep.poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(Error::elapsed(*deadline))),
                    Poll::Pending => Poll::Pending,
                }
            }
            KindProj::Expired => Poll::Ready(Err(Error::elapsed(true))),
        }
    }
}
