//! Rate limiter metrics through the [`metrics`](https://docs.rs/metrics) facade.

use metrics::{Counter, counter};

use super::{Listener, Rejected};

/// A rate limiter [`Listener`] exporting `palisade_ratelimit_rejections_total{name}`. The
/// counter is registered once.
///
/// ```
/// use palisade_breaker::ratelimit::{Config, MetricsListener, RateLimitLayer};
/// use std::time::Duration;
/// let layer = RateLimitLayer::with_listener(
///     "api",
///     Config::per(100, Duration::from_secs(1)),
///     MetricsListener::new("api"),
/// ).unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct MetricsListener {
    rejections: Counter,
}

impl MetricsListener {
    /// Registers the limiter's counter under `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            rejections: counter!("palisade_ratelimit_rejections_total", "name" => name.into()),
        }
    }
}

impl Listener for MetricsListener {
    fn on_rejection(&self, _name: &str, _rejected: &Rejected) {
        self.rejections.increment(1);
    }
}
