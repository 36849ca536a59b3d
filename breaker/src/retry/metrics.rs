//! Retry metrics through the [`metrics`](https://docs.rs/metrics) facade.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, counter};

use super::{GiveUp, Listener};

/// A retry [`Listener`] exporting `palisade_retry_attempts_total{name,result}`: `result` is
/// `retried` for each retry, or why a failed attempt was not retried (`exhausted`,
/// `budget_exhausted`, `not_retryable`, `not_replayable`, `retry_after_too_long`,
/// `deadline_too_close`). Counters are registered once.
///
/// ```
/// use palisade_breaker::retry::{Config, MetricsListener, RetryLayer};
/// let layer = RetryLayer::builder("catalog").listener(MetricsListener::new("catalog")).build().unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct MetricsListener {
    inner: Arc<[Counter; 7]>,
}

impl MetricsListener {
    /// Registers the retry's counters under `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let c = |result: &'static str| counter!("palisade_retry_attempts_total", "name" => name.clone(), "result" => result);
        Self {
            inner: Arc::new([
                c("retried"),
                c("exhausted"),
                c("budget_exhausted"),
                c("not_retryable"),
                c("not_replayable"),
                c("retry_after_too_long"),
                c("deadline_too_close"),
            ]),
        }
    }
}

impl Listener for MetricsListener {
    fn on_retry(&self, _name: &str, _retry: u32, _delay: Duration) {
        self.inner[0].increment(1);
    }

    fn on_give_up(&self, _name: &str, reason: GiveUp) {
        let i = match reason {
            GiveUp::Exhausted => 1,
            GiveUp::BudgetExhausted => 2,
            GiveUp::NotRetryable => 3,
            GiveUp::NotReplayable(_) => 4,
            GiveUp::RetryAfterTooLong => 5,
            GiveUp::DeadlineTooClose => 6,
        };
        self.inner[i].increment(1);
    }
}
