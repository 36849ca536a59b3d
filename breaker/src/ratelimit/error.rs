//! Errors of the rate limiter.

use std::fmt;
use std::time::Duration;

/// A call turned away by a rate limiter. Small, `Copy`, allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub(crate) retry_after: Duration,
}

impl Rejected {
    /// How long until the limiter allows a call again.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("rate limited")
    }
}

impl std::error::Error for Rejected {}

/// The error of a rate-limited service: the limiter turned the call away, or the inner service
/// failed.
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

    /// Whether the limiter rejected the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self.kind, Kind::Rejected(_))
    }

    /// The rejection, if the limiter rejected the call.
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
            Kind::Inner(e) => e.source(),
        }
    }
}
