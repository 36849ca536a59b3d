//! The response future of [`Timeout`](super::Timeout) and
//! [`DeadlineService`](super::DeadlineService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::error::Error;

/// When the timer fires.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// This long after the call is first found pending.
    After(Duration),
    /// At this instant.
    At(Instant),
}

pin_project! {
    /// The inner future raced against a timer. Dropping it (or the timer firing) drops the
    /// inner future, which gives back whatever permits it holds.
    ///
    /// The timer is created only when the inner future first returns `Pending`: a call that
    /// completes at once never touches the timer wheel or the clock.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Timed { #[pin] fut: F, #[pin] sleep: Option<Sleep>, limit: Limit, deadline: bool },
        Untimed { #[pin] fut: F },
        Expired,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(fut: F, limit: Limit, deadline: bool) -> Self {
        Self {
            kind: Kind::Timed {
                fut,
                sleep: None,
                limit,
                deadline,
            },
        }
    }

    /// No timer (a request without a deadline).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn untimed(fut: F) -> Self {
        Self {
            kind: Kind::Untimed { fut },
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
                mut sleep,
                limit,
                deadline,
            } => {
                if let Poll::Ready(r) = fut.poll(cx) {
                    return Poll::Ready(r.map_err(Error::inner));
                }
                if sleep.is_none() {
                    let at = match *limit {
                        Limit::After(d) => Instant::now() + d,
                        Limit::At(t) => t,
                    };
                    sleep.set(Some(tokio::time::sleep_until(at)));
                }
                let sleep = sleep.as_pin_mut().expect("set above");
                match sleep.poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(Error::elapsed(*deadline))),
                    Poll::Pending => Poll::Pending,
                }
            }
            KindProj::Untimed { fut } => fut.poll(cx).map_err(Error::inner),
            KindProj::Expired => Poll::Ready(Err(Error::elapsed(true))),
        }
    }
}
