//! Errors of the circuit breaker service.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::State;

/// Why the breaker opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum TripReason {
    /// The failure rate over the window reached its threshold.
    FailureRate = 1,
    /// The slow-call rate over the window reached its threshold.
    SlowCallRate = 2,
    /// Too many failures in a row.
    ConsecutiveFailures = 3,
    /// A half-open probe failed.
    ProbeFailed = 4,
    /// The half-open state lasted longer than its maximum.
    HalfOpenTimeout = 5,
}

impl TripReason {
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => TripReason::FailureRate,
            2 => TripReason::SlowCallRate,
            3 => TripReason::ConsecutiveFailures,
            4 => TripReason::ProbeFailed,
            5 => TripReason::HalfOpenTimeout,
            _ => return None,
        })
    }
}

/// A call turned away by the breaker. Small, `Copy`, allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub(crate) state: State,
    pub(crate) reason: Option<TripReason>,
    // The open deadline as nanoseconds after `epoch` (0: none). Kept raw so that a rejection
    // does no time arithmetic; `retry_at` does it when asked.
    pub(crate) deadline: u64,
    pub(crate) epoch: Instant,
}

impl Rejected {
    /// The state that rejected the call (`Open`, `ForcedOpen`, or `HalfOpen` with every probe
    /// taken).
    pub fn state(&self) -> State {
        self.state
    }

    /// Why the breaker opened, if it opened by itself.
    pub fn reason(&self) -> Option<TripReason> {
        self.reason
    }

    /// When the open period ends (the breaker will probe then), if known.
    pub fn retry_at(&self) -> Option<Instant> {
        (self.deadline != 0).then(|| self.epoch + Duration::from_nanos(self.deadline))
    }

    /// Time until the open period ends, if known (reads the clock).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_at()
            .map(|t| t.saturating_duration_since(Instant::now()))
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            State::ForcedOpen => f.write_str("circuit breaker forced open"),
            State::HalfOpen => f.write_str("circuit breaker half-open: probes in flight"),
            _ => f.write_str("circuit breaker open"),
        }
    }
}

impl std::error::Error for Rejected {}

/// The error of a [`CircuitBreaker`](super::CircuitBreaker) service: either the breaker turned the
/// call away, or the inner service failed.
///
/// Converts into `tower::BoxError`; use [`find_rejection`](crate::find_rejection) to find a
/// rejection in a boxed error chain.
pub type Error<E> = crate::LayerError<Rejected, E>;
