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
pub type Error<E> = crate::LayerError<Rejected, E>;
