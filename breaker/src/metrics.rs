//! Metrics through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! | metric | labels | kind |
//! |---|---|---|
//! | `palisade_breaker_calls_total` | `name`, `outcome` (`success`, `failure`, `slow_success`, `slow_failure`, `ignored`, `cancelled`, `rejected`) | counter |
//! | `palisade_breaker_state` | `name` (0 closed, 1 open, 2 half-open, 3 disabled, 4 forced open, 5 metrics only) | gauge |
//! | `palisade_breaker_transitions_total` | `name`, `from`, `to` | counter |
//!
//! Per-call counters are registered once when the listener is built, so a call increments a
//! handle and never allocates.

use std::sync::Arc;

use metrics::{Counter, Gauge, counter, gauge};

use crate::Outcome;
use crate::circuit::{Listener, State, Transition};

/// A [`Listener`] that exports a breaker's calls, state and transitions. For a keyed layer the
/// `name` label is the layer's name, shared by all keys.
///
/// ```
/// use palisade_breaker::circuit::{CircuitBreakerLayer, Config};
/// use palisade_breaker::metrics::MetricsListener;
///
/// let layer = CircuitBreakerLayer::builder("payments")
///     .config(Config::default())
///     .listener(MetricsListener::new("payments"))
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct MetricsListener {
    inner: Arc<Handles>,
}

#[derive(Debug)]
struct Handles {
    name: String,
    success: Counter,
    failure: Counter,
    slow_success: Counter,
    slow_failure: Counter,
    ignored: Counter,
    cancelled: Counter,
    rejected: Counter,
    state: Gauge,
}

impl MetricsListener {
    /// Registers the breaker's counters under `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let c = |outcome: &'static str| counter!("palisade_breaker_calls_total", "name" => name.clone(), "outcome" => outcome);
        let inner = Handles {
            success: c("success"),
            failure: c("failure"),
            slow_success: c("slow_success"),
            slow_failure: c("slow_failure"),
            ignored: c("ignored"),
            cancelled: c("cancelled"),
            rejected: c("rejected"),
            state: gauge!("palisade_breaker_state", "name" => name.clone()),
            name,
        };
        inner.state.set(0.0);
        Self {
            inner: Arc::new(inner),
        }
    }
}

impl Listener for MetricsListener {
    fn on_transition(&self, _name: &str, t: &Transition) {
        let h = &self.inner;
        h.state.set(f64::from(t.to as u8));
        counter!(
            "palisade_breaker_transitions_total",
            "name" => h.name.clone(),
            "from" => t.from.as_str(),
            "to" => t.to.as_str()
        )
        .increment(1);
    }

    #[inline]
    fn on_rejection(&self, _name: &str, _state: State) {
        self.inner.rejected.increment(1);
    }

    #[inline]
    fn on_outcome(&self, _name: &str, outcome: Outcome, slow: bool) {
        let h = &self.inner;
        match (outcome, slow) {
            (Outcome::Success, false) => h.success.increment(1),
            (Outcome::Success, true) => h.slow_success.increment(1),
            (Outcome::Failure, false) => h.failure.increment(1),
            (Outcome::Failure, true) => h.slow_failure.increment(1),
            (Outcome::Ignored, _) => h.ignored.increment(1),
        }
    }

    #[inline]
    fn on_cancelled(&self, _name: &str) {
        self.inner.cancelled.increment(1);
    }
}
