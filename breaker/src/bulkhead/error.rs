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
pub type Error<E> = crate::LayerError<Rejected, E>;
