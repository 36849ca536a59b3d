use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::core::{Front, Shared, StripeSet, Ticket};
use super::error::Error;
use super::events::Listener;
use super::future::{Owner, Permit, ResponseFuture};
use super::state::Word;
use crate::classify::{AnyError, Classify};

/// A service guarded by a circuit breaker. Built by
/// [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
///
/// `poll_ready` asks the breaker first: when it rejects, `poll_ready` returns ready *without*
/// polling the inner service (an open breaker must not wait on an overloaded dependency) and the
/// next `call` fails at once with [`Error::rejection`]. When it admits, the permit is reserved
/// and the inner service is polled. A clone starts without a reservation.
pub struct CircuitBreaker<S, C = AnyError, L: Listener = ()> {
    inner: S,
    classifier: C,
    slot: Slot<L>,
}

/// The decision reserved by `poll_ready` for the next `call`. An unused half-open probe is given
/// back when the service is dropped.
struct Slot<L: Listener> {
    shared: Arc<Shared<L>>,
    front: Arc<Front<L>>,
    // The current stripe set: one atomic load per call while it is unchanged.
    stripes: arc_swap::Cache<Arc<arc_swap::ArcSwap<StripeSet<L>>>, Arc<StripeSet<L>>>,
    reserved: Reserved,
}

enum Reserved {
    Nothing,
    Admitted(Ticket),
    Rejected(Word),
}

impl<L: Listener> Drop for Slot<L> {
    fn drop(&mut self) {
        if let Reserved::Admitted(t) = self.reserved {
            self.shared.release(t);
        }
    }
}

impl<S, C, L: Listener> CircuitBreaker<S, C, L> {
    pub(crate) fn from_front(inner: S, front: Arc<Front<L>>, classifier: C) -> Self {
        Self {
            inner,
            classifier,
            slot: Slot {
                shared: front.shared.clone(),
                stripes: arc_swap::Cache::new(front.set.clone()),
                front,
                reserved: Reserved::Nothing,
            },
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service (a reserved permit is given back).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The handle of this service's breaker.
    pub fn handle(&self) -> super::Handle<L> {
        super::Handle {
            shared: self.slot.shared.clone(),
            front: Some(self.slot.front.clone()),
        }
    }
}

impl<S: Clone, C: Clone, L: Listener> Clone for CircuitBreaker<S, C, L> {
    fn clone(&self) -> Self {
        Self::from_front(
            self.inner.clone(),
            self.slot.front.clone(),
            self.classifier.clone(),
        )
    }
}

impl<S: fmt::Debug, C, L: Listener> fmt::Debug for CircuitBreaker<S, C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", &self.slot.shared)
            .finish_non_exhaustive()
    }
}

impl<S, C, L, Req> Service<Req> for CircuitBreaker<S, C, L>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
    L: Listener,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future, C, L>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Reserved::Nothing = self.slot.reserved {
            self.slot.reserved = match self.slot.shared.admit() {
                Ok(t) => Reserved::Admitted(t),
                Err(r) => Reserved::Rejected(r),
            };
        }
        match self.slot.reserved {
            Reserved::Rejected(_) => Poll::Ready(Ok(())),
            _ => match self.inner.poll_ready(cx) {
                Poll::Ready(Err(e)) => {
                    if let Reserved::Admitted(t) =
                        std::mem::replace(&mut self.slot.reserved, Reserved::Nothing)
                    {
                        self.slot.shared.release(t);
                    }
                    Poll::Ready(Err(Error::inner(e)))
                }
                other => other.map_err(Error::inner),
            },
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let decision = match std::mem::replace(&mut self.slot.reserved, Reserved::Nothing) {
            Reserved::Admitted(t) => Ok(t),
            Reserved::Rejected(r) => Err(r),
            // Called without `poll_ready`: decide now. Admitting then calls an inner service that
            // was not polled, which is the caller's contract to keep.
            Reserved::Nothing => self.slot.shared.admit(),
        };
        match decision {
            Ok(ticket) => {
                let owner = match self.slot.front.fixed {
                    Some(s) => Owner::Static(s),
                    None => Owner::Stripe(self.slot.stripes.load().local()),
                };
                ResponseFuture::called(
                    self.inner.call(req),
                    Permit::new(owner, ticket, self.classifier.clone()),
                )
            }
            Err(w) => ResponseFuture::rejected(self.slot.shared.rejection(w)),
        }
    }
}
