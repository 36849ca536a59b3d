//! The response future of [`Bulkhead`](super::Bulkhead).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::core::{Listener, Shared};
use super::error::{Error, Rejected};
use crate::util::SharedRef;

/// A held slot, given back on drop (completion or cancellation alike).
pub(crate) struct Permit<L: Listener> {
    shared: SharedRef<Shared<L>>,
}

impl<L: Listener> Permit<L> {
    pub(crate) fn new(shared: SharedRef<Shared<L>>) -> Self {
        Self { shared }
    }
}

impl<L: Listener> Drop for Permit<L> {
    #[inline]
    fn drop(&mut self) {
        self.shared.release();
    }
}

pin_project! {
    /// The response future of [`Bulkhead`](super::Bulkhead): the inner future holding its slot,
    /// or an immediate rejection.
    pub struct ResponseFuture<F, L: Listener> {
        #[pin]
        kind: Kind<F, L>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, L: Listener> {
        Called { #[pin] fut: F, permit: Option<Permit<L>> },
        Rejected { rejected: Option<Rejected> },
    }
}

impl<F, L: Listener> ResponseFuture<F, L> {
    pub(crate) fn called(fut: F, permit: Permit<L>) -> Self {
        Self {
            kind: Kind::Called {
                fut,
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn rejected(r: Rejected) -> Self {
        Self {
            kind: Kind::Rejected { rejected: Some(r) },
        }
    }
}

impl<F, L: Listener> fmt::Debug for ResponseFuture<F, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<F, T, E, L> Future for ResponseFuture<F, L>
where
    F: Future<Output = Result<T, E>>,
    L: Listener,
{
    type Output = Result<T, Error<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { fut, permit } => {
                let result = ready!(fut.poll(cx));
                // The slot is free as soon as the call is, not when the future is dropped.
                drop(permit.take());
                Poll::Ready(result.map_err(Error::inner))
            }
            KindProj::Rejected { rejected } => Poll::Ready(Err(Error::rejected(
                rejected
                    .take()
                    .expect("ResponseFuture polled after completion"),
            ))),
        }
    }
}
