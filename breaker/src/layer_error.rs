//! The error shared by the rejecting layers (circuit breaker, bulkhead, rate limiter).

use std::fmt;

/// The error of a layer that can turn a call away: either its rejection `R` (small, `Copy`,
/// allocation-free) or the inner service's error `E`. Each layer names it with its own
/// rejection: [`circuit::Error`](crate::circuit::Error), `bulkhead::Error`, `ratelimit::Error`.
///
/// The rejection is exposed as the error's `source()`, so
/// [`find_rejection`](crate::find_rejection) sees it through other layers and `BoxError`s; an
/// inner error is wrapped transparently (its `Display` and its own source chain).
pub struct LayerError<R, E> {
    kind: Kind<R, E>,
}

enum Kind<R, E> {
    Rejected(R),
    Inner(E),
}

impl<R, E> LayerError<R, E> {
    pub(crate) fn rejected(r: R) -> Self {
        Self {
            kind: Kind::Rejected(r),
        }
    }

    pub(crate) fn inner(e: E) -> Self {
        Self {
            kind: Kind::Inner(e),
        }
    }

    /// Whether the layer rejected the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self.kind, Kind::Rejected(_))
    }

    /// The rejection, if the layer rejected the call.
    pub fn rejection(&self) -> Option<&R> {
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
    pub fn into_inner(self) -> Result<E, R> {
        match self.kind {
            Kind::Inner(e) => Ok(e),
            Kind::Rejected(r) => Err(r),
        }
    }
}

impl<R: fmt::Debug, E: fmt::Debug> fmt::Debug for LayerError<R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Rejected(r) => f.debug_tuple("Rejected").field(r).finish(),
            Kind::Inner(e) => f.debug_tuple("Inner").field(e).finish(),
        }
    }
}

impl<R: fmt::Display, E: fmt::Display> fmt::Display for LayerError<R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Rejected(r) => r.fmt(f),
            Kind::Inner(e) => e.fmt(f),
        }
    }
}

impl<R, E> std::error::Error for LayerError<R, E>
where
    R: std::error::Error + 'static,
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Rejected(r) => Some(r),
            Kind::Inner(e) => e.source(),
        }
    }
}
