//! Deadlines carried by requests, so that every layer below (and the next hop) sees the time
//! that is left.

use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::error::Error;
use super::future::{Limit, ResponseFuture};

/// The instant by which a request must be answered. Carried in `http::Request` extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// A request that can carry a [`Deadline`]. Implemented for `http::Request<B>` (feature `http`,
/// in the extensions); implement it for your own request types.
pub trait CarryDeadline {
    /// The deadline, if one is set.
    fn deadline(&self) -> Option<Deadline>;
    /// Sets the deadline.
    fn set_deadline(&mut self, deadline: Deadline);
}

#[cfg(feature = "http")]
impl<B> CarryDeadline for http::Request<B> {
    #[inline]
    fn deadline(&self) -> Option<Deadline> {
        self.extensions().get::<Deadline>().copied()
    }

    #[inline]
    fn set_deadline(&mut self, deadline: Deadline) {
        self.extensions_mut().insert(deadline);
    }
}

/// Sets an overall deadline on each request (keeping an earlier one it already carries, e.g.
/// from an inbound `grpc-timeout`) and fails the call when it passes. Put it above the retry:
/// the deadline then holds across every attempt and backoff, and dropping the retry at the
/// deadline cancels the attempt in flight.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    budget: Duration,
}

impl DeadlineLayer {
    /// Each request gets `budget` from when it is called.
    pub const fn new(budget: Duration) -> Self {
        Self { budget }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            budget: self.budget,
        }
    }
}

/// A service enforcing request deadlines. Built by [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
    budget: Duration,
}

impl<S> DeadlineService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for DeadlineService<S>
where
    S: Service<Req>,
    Req: CarryDeadline,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::inner)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        let ours = Deadline(Instant::now() + self.budget);
        let deadline = match req.deadline() {
            Some(d) if d <= ours => d,
            _ => ours,
        };
        req.set_deadline(deadline);
        ResponseFuture::new(self.inner.call(req), Limit::At(deadline.0), true)
    }
}
