use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::config::Mode;
use super::core::{Handle, Listener, Shared, Wait};
use super::error::{Error, RejectReason, Rejected};
use super::future::{Permit, ResponseFuture};
use crate::util::SharedRef;

/// A service whose concurrent calls are capped by a bulkhead shared with all its clones. Built
/// by [`BulkheadLayer`](super::BulkheadLayer).
///
/// In [`Mode::Backpressure`] `poll_ready` reserves a slot (waiting for one within `max_wait`)
/// and then polls the inner service; a rejection makes `poll_ready` return ready without polling
/// the inner service, and the next `call` fails with it. In [`Mode::Shed`] `call` takes the slot
/// or fails at once. The slot is given back when the response future completes or is dropped,
/// and a reserved slot when the service is dropped. A clone starts without a reservation.
pub struct Bulkhead<S, L: Listener = ()> {
    inner: S,
    slot: Slot<L>,
}

/// The reservation, apart from the inner service so that `into_inner` can move it out while
/// `Drop` gives the reservation back.
struct Slot<L: Listener> {
    shared: SharedRef<Shared<L>>,
    reserved: Reserved,
    // Boxed once per service and reused: only a caller that waits needs a timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

#[derive(Clone, Copy)]
enum Reserved {
    Nothing,
    Waiting(u64),
    Acquired,
    Rejected(Rejected),
}

impl<S, L: Listener> Bulkhead<S, L> {
    pub(crate) fn from_shared(inner: S, shared: SharedRef<Shared<L>>) -> Self {
        Self {
            inner,
            slot: Slot {
                shared,
                reserved: Reserved::Nothing,
                sleep: None,
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

    /// Unwraps the inner service (a reserved slot is given back).
    pub fn into_inner(self) -> S {
        self.inner
    }

    pub(crate) fn shared(&self) -> &SharedRef<Shared<L>> {
        &self.slot.shared
    }

    /// The handle of this service's bulkhead.
    pub fn handle(&self) -> Handle<L> {
        Handle {
            shared: self.slot.shared.clone(),
        }
    }
}

impl<L: Listener> Slot<L> {
    fn give_back(&mut self) {
        match std::mem::replace(&mut self.reserved, Reserved::Nothing) {
            Reserved::Acquired => self.shared.release(),
            Reserved::Waiting(id) => self.shared.cancel_waiter(id),
            _ => {}
        }
    }

    fn arm_timer(&mut self, wait: std::time::Duration) {
        let at = Instant::now() + wait;
        match &mut self.sleep {
            Some(s) => s.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }
}

impl<L: Listener> Drop for Slot<L> {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl<S: Clone, L: Listener> Clone for Bulkhead<S, L> {
    fn clone(&self) -> Self {
        Self::from_shared(self.inner.clone(), self.slot.shared.clone())
    }
}

impl<S: fmt::Debug, L: Listener> fmt::Debug for Bulkhead<S, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("bulkhead", &self.slot.shared)
            .finish_non_exhaustive()
    }
}

impl<S, L, Req> Service<Req> for Bulkhead<S, L>
where
    S: Service<Req>,
    L: Listener,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future, L>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The common case, fail fast with a free slot, inline; everything else (waiting, shed
        // mode, rejection) out of line in `poll_reserve`.
        if matches!(self.slot.reserved, Reserved::Nothing) {
            let shared = &self.slot.shared;
            if shared.fails_fast() && shared.mode() == Mode::Backpressure && shared.try_acquire() {
                self.slot.reserved = Reserved::Acquired;
                return self.poll_inner(cx);
            }
        }
        self.poll_reserve(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let admitted = match std::mem::replace(&mut self.slot.reserved, Reserved::Nothing) {
            Reserved::Acquired => Ok(()),
            Reserved::Rejected(r) => Err(r),
            Reserved::Waiting(id) => {
                self.slot.shared.cancel_waiter(id);
                Err(self.slot.shared.reject(RejectReason::Full))
            }
            // Shed mode, or called without `poll_ready`.
            Reserved::Nothing => {
                if self.slot.shared.try_acquire() {
                    Ok(())
                } else {
                    Err(self.slot.shared.reject(RejectReason::Full))
                }
            }
        };
        match admitted {
            Ok(()) => {
                ResponseFuture::called(self.inner.call(req), Permit::new(self.slot.shared.clone()))
            }
            Err(r) => ResponseFuture::rejected(r),
        }
    }
}

impl<S, L: Listener> Bulkhead<S, L> {
    /// Polls the inner service while holding a slot; gives the slot back if it failed.
    #[inline]
    fn poll_inner<Req>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error<S::Error>>>
    where
        S: Service<Req>,
    {
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                self.slot.give_back();
                Poll::Ready(Err(Error::inner(e)))
            }
            other => other.map_err(Error::inner),
        }
    }

    /// `poll_ready` beyond the fast path: waiting for a slot, shed mode, rejections.
    #[inline(never)]
    fn poll_reserve<Req>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error<S::Error>>>
    where
        S: Service<Req>,
    {
        if self.slot.shared.mode() == Mode::Shed {
            return self.inner.poll_ready(cx).map_err(Error::inner);
        }
        loop {
            match self.slot.reserved {
                Reserved::Nothing => {
                    if self.slot.shared.fails_fast() {
                        self.slot.reserved = if self.slot.shared.try_acquire() {
                            Reserved::Acquired
                        } else {
                            Reserved::Rejected(self.slot.shared.reject(RejectReason::Full))
                        };
                        continue;
                    }
                    let wait = self.slot.shared.max_wait();
                    if self.slot.shared.queued_is_empty() && self.slot.shared.try_acquire() {
                        self.slot.reserved = Reserved::Acquired;
                        continue;
                    }
                    match self.slot.shared.enqueue(cx.waker()) {
                        Ok(id) => {
                            self.slot.reserved = Reserved::Waiting(id);
                            if let Some(w) = wait {
                                self.slot.arm_timer(w);
                            }
                        }
                        Err(Wait::Rejected(r)) => self.slot.reserved = Reserved::Rejected(r),
                        Err(_) => unreachable!("enqueue fails only with a rejection"),
                    }
                }
                Reserved::Waiting(id) => match self.slot.shared.poll_waiter(id, cx.waker()) {
                    Wait::Acquired => self.slot.reserved = Reserved::Acquired,
                    Wait::Rejected(r) => self.slot.reserved = Reserved::Rejected(r),
                    Wait::Pending => {
                        let timed_out = match (&mut self.slot.sleep, self.slot.shared.max_wait()) {
                            (Some(s), Some(_)) => s.as_mut().poll(cx).is_ready(),
                            _ => false,
                        };
                        if !timed_out {
                            return Poll::Pending;
                        }
                        // Gives back a slot granted in the meantime.
                        self.slot.shared.cancel_waiter(id);
                        self.slot.reserved =
                            Reserved::Rejected(self.slot.shared.reject(RejectReason::Timeout));
                    }
                },
                Reserved::Rejected(_) => return Poll::Ready(Ok(())),
                Reserved::Acquired => return self.poll_inner(cx),
            }
        }
    }
}
