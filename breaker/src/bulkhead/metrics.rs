//! Bulkhead metrics through the [`metrics`](https://docs.rs/metrics) facade.

use std::sync::Arc;

use metrics::{Counter, Gauge, counter, gauge};

use super::{Listener, Rejected};

/// A bulkhead [`Listener`] exporting `palisade_bulkhead_in_flight{name}` (gauge) and
/// `palisade_bulkhead_rejections_total{name}` (counter). Handles are registered once, so a call
/// updates a gauge handle and never allocates.
///
/// ```
/// use palisade_breaker::bulkhead::{BulkheadLayer, Config, MetricsListener};
/// let layer = BulkheadLayer::with_listener("db", Config::default(), MetricsListener::new("db")).unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct MetricsListener {
    inner: Arc<(Gauge, Counter)>,
}

impl MetricsListener {
    /// Registers the bulkhead's metrics under `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            inner: Arc::new((
                gauge!("palisade_bulkhead_in_flight", "name" => name.clone()),
                counter!("palisade_bulkhead_rejections_total", "name" => name),
            )),
        }
    }
}

impl Listener for MetricsListener {
    fn on_rejection(&self, _name: &str, _rejected: &Rejected) {
        self.inner.1.increment(1);
    }

    #[inline]
    fn on_in_flight(&self, _name: &str, in_flight: u32) {
        self.inner.0.set(f64::from(in_flight));
    }
}
