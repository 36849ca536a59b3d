//! Errors of the bulkhead service.

use std::fmt;

/// Why a bulkhead turned a call away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Every slot was taken and the bulkhead does not wait (shed mode, or `max_wait` zero).
    Full,
    /// Every slot was taken and the wait queue was full.
    QueueFull,
    /// No slot came free within `max_wait`.
    Timeout,
}

/// A call turned away by a bulkhead. Small, `Copy`, allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub(crate) reason: RejectReason,
    pub(crate) limit: u32,
}

impl Rejected {
    /// Why the call was turned away.
    pub fn reason(&self) -> RejectReason {
        self.reason
    }

    /// The concurrency limit in force.
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            RejectReason::Full => f.write_str("bulkhead full"),
            RejectReason::QueueFull => f.write_str("bulkhead full: wait queue full"),
            RejectReason::Timeout => f.write_str("bulkhead full: wait timed out"),
        }
    }
}

impl std::error::Error for Rejected {}

/// The error of a [`Bulkhead`](super::Bulkhead) service: the bulkhead turned the call away, or
/// the inner service failed. Use [`find_rejection`](crate::find_rejection) or
/// [`is_rejection`](crate::is_rejection) to find a rejection in a boxed chain.
pub struct Error<E> {
    kind: Kind<E>,
}

enum Kind<E> {
    Rejected(Rejected),
    Inner(E),
}

impl<E> Error<E> {
    pub(crate) fn rejected(r: Rejected) -> Self {
        Self {
            kind: Kind::Rejected(r),
        }
    }

    pub(crate) fn inner(e: E) -> Self {
        Self {
            kind: Kind::Inner(e),
        }
    }

    /// Whether the bulkhead rejected the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self.kind, Kind::Rejected(_))
    }

    /// The rejection, if the bulkhead rejected the call.
    pub fn rejection(&self) -> Option<&Rejected> {
        match &self.kind {
            Kind::Rejected(r) => Some(r),
            Kind::Inner(_) => None,
        }
    }

    /// The inner service's error, if it failed.
    pub fn inner_ref(&self) -> Option<&E> {
        match &self.kind {
            Kind::Inner(e) => Some(e),
            Kind::Rejected(_) => None,
        }
    }

    /// The inner service's error, or the rejection.
    pub fn into_inner(self) -> Result<E, Rejected> {
        match self.kind {
            Kind::Inner(e) => Ok(e),
            Kind::Rejected(r) => Err(r),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Rejected(r) => f.debug_tuple("Rejected").field(r).finish(),
            Kind::Inner(e) => f.debug_tuple("Inner").field(e).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Rejected(r) => r.fmt(f),
            Kind::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Rejected(r) => Some(r),
            // Transparent, as the breaker's error: the inner error's own chain.
            Kind::Inner(e) => e.source(),
        }
    }
}
