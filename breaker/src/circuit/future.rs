//! The response future of [`CircuitBreaker`](super::CircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::core::{Completion, Shared, Stripe, Ticket};
use super::error::{Error, Rejected};
use super::events::Listener;
use crate::classify::Classify;

/// An admitted call's right to report its outcome. Dropped without an outcome (the response
/// future was dropped), it records a cancellation, so a half-open probe can never be lost.
pub(crate) struct Permit<C, L: Listener> {
    owner: Owner<L>,
    ticket: Ticket,
    start: Option<Instant>,
    classifier: C,
    pending: bool,
}

/// What keeps the breaker alive while a call is in flight.
pub(crate) enum Owner<L: 'static> {
    /// The calling thread's stripe (plain breakers).
    Stripe(Arc<Stripe<L>>),
    /// The breaker itself (keyed breakers, whose per-key breakers have no stripes).
    Shared(Arc<Shared<L>>),
    /// A `'static` breaker: a copied reference, no reference count.
    Static(&'static Arc<Shared<L>>),
}

impl<L: Listener> Owner<L> {
    /// Records with the stripe's config, or loads the breaker's config in force.
    #[inline(always)]
    fn record(
        &self,
        ticket: Ticket,
        c: Completion,
        elapsed: Option<Duration>,
        now: Option<Instant>,
    ) {
        match self {
            Owner::Stripe(s) => s.shared.record(&s.core, ticket, c, elapsed, now),
            Owner::Shared(s) => s.record_loaded(ticket, c, elapsed, now),
            Owner::Static(s) => s.record_fixed(ticket, c, elapsed, now),
        }
    }
}

impl<C, L: Listener> Permit<C, L> {
    pub(crate) fn new(owner: Owner<L>, ticket: Ticket, classifier: C) -> Self {
        Self {
            owner,
            start: ticket.timed().then(Instant::now),
            ticket,
            classifier,
            pending: true,
        }
    }
}

impl<C, L: Listener> Permit<C, L> {
    /// The response future was dropped before its call finished.
    #[cold]
    #[inline(never)]
    fn cancelled(&mut self) {
        self.owner
            .record(self.ticket, Completion::Cancelled, None, None);
    }
}

impl<C, L: Listener> Drop for Permit<C, L> {
    #[inline]
    fn drop(&mut self) {
        if self.pending {
            self.cancelled();
        }
    }
}

pin_project! {
    /// The response future of [`CircuitBreaker`](super::CircuitBreaker): the inner future with
    /// its permit, or an immediate rejection.
    pub struct ResponseFuture<F, C, L: Listener> {
        #[pin]
        kind: Kind<F, C, L>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C, L: Listener> {
        Called { #[pin] fut: F, permit: Permit<C, L> },
        Rejected { rejected: Option<Rejected> },
    }
}

impl<F, C, L: Listener> ResponseFuture<F, C, L> {
    pub(crate) fn called(fut: F, permit: Permit<C, L>) -> Self {
        Self {
            kind: Kind::Called { fut, permit },
        }
    }

    pub(crate) fn rejected(r: Rejected) -> Self {
        Self {
            kind: Kind::Rejected { rejected: Some(r) },
        }
    }
}

impl<F, C, L: Listener> fmt::Debug for ResponseFuture<F, C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<F, T, E, C, L> Future for ResponseFuture<F, C, L>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
    L: Listener,
{
    type Output = Result<T, Error<E>>;

    // Always inlined: the closed path is a few loads and one `fetch_add` once the slow paths
    // are out of line, and a call would cost more than it (register saves, the result by memory).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { fut, permit } => {
                let result = ready!(fut.poll(cx));
                let (elapsed, now) = match permit.start {
                    Some(start) => {
                        let now = Instant::now();
                        (Some(now.saturating_duration_since(start)), Some(now))
                    }
                    None => (None, None),
                };
                let outcome = permit.classifier.classify(result.as_ref(), elapsed);
                permit.pending = false;
                permit
                    .owner
                    .record(permit.ticket, Completion::Done(outcome), elapsed, now);
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
