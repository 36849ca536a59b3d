//! Errors of the timeout and deadline services.

use std::fmt;

/// A call ran out of time. Not a rejection: the call may well have reached the dependency, so a
/// retry policy may retry it (while the overall deadline allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    pub(crate) deadline: bool,
}

impl Elapsed {
    /// Whether the overall deadline (rather than a per-attempt timeout) ran out.
    pub fn is_deadline(&self) -> bool {
        self.deadline
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deadline {
            f.write_str("deadline exceeded")
        } else {
            f.write_str("request timed out")
        }
    }
}

impl std::error::Error for Elapsed {}

/// The error of [`Timeout`](super::Timeout) and [`Deadline`](super::DeadlineService): the
/// time ran out, or the inner service failed.
pub struct Error<E> {
    kind: Kind<E>,
}

enum Kind<E> {
    Elapsed(Elapsed),
    Inner(E),
}

impl<E> Error<E> {
    pub(crate) fn elapsed(deadline: bool) -> Self {
        Self {
            kind: Kind::Elapsed(Elapsed { deadline }),
        }
    }

    pub(crate) fn inner(e: E) -> Self {
        Self {
            kind: Kind::Inner(e),
        }
    }

    /// Whether the time ran out.
    pub fn is_elapsed(&self) -> bool {
        matches!(self.kind, Kind::Elapsed(_))
    }

    /// Whether the overall deadline ran out.
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(self.kind, Kind::Elapsed(Elapsed { deadline: true }))
    }

    /// The inner service's error, if it failed.
    pub fn inner_ref(&self) -> Option<&E> {
        match &self.kind {
            Kind::Inner(e) => Some(e),
            Kind::Elapsed(_) => None,
        }
    }

    /// The inner service's error, or the timeout.
    pub fn into_inner(self) -> Result<E, Elapsed> {
        match self.kind {
            Kind::Inner(e) => Ok(e),
            Kind::Elapsed(t) => Err(t),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Elapsed(t) => f.debug_tuple("Elapsed").field(t).finish(),
            Kind::Inner(e) => f.debug_tuple("Inner").field(e).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Elapsed(t) => t.fmt(f),
            Kind::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Elapsed(t) => Some(t),
            Kind::Inner(e) => e.source(),
        }
    }
}
