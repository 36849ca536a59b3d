//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! | name | labels | kind |
//! |---|---|---|
//! | `palisade_balancer_endpoints` | `service`, `state` (`active`, `ejected`, `breaker_open`, `unhealthy`) | gauge |
//! | `palisade_balancer_ejections_total` | `service`, `reason` (`consecutive_failures`, `success_rate`, `failure_percentage`) | counter |
//!
//! Both are updated when membership or ejections change, never per call. The `breaker_open`
//! gauge is as of the last change (breaker transitions are the breaker's own metrics).

use metrics::{counter, gauge};
use tokio::time::Instant;

use crate::handle::{EjectionReason, EndpointState, EndpointView};

pub(crate) fn endpoints(service: &str, views: &[EndpointView]) {
    let now = Instant::now();
    let mut counts = [0u32; 4];
    for v in views {
        let state = if v.ejected_until.is_some_and(|u| u > now) {
            EndpointState::Ejected
        } else if !v.metadata.healthy() {
            EndpointState::Unhealthy
        } else if !v.metadata.breaker_admits() {
            EndpointState::BreakerOpen
        } else {
            EndpointState::Active
        };
        counts[state as usize] += 1;
    }
    for (state, n) in [
        EndpointState::Active,
        EndpointState::Ejected,
        EndpointState::BreakerOpen,
        EndpointState::Unhealthy,
    ]
    .into_iter()
    .zip(counts)
    {
        gauge!("palisade_balancer_endpoints", "service" => service.to_owned(), "state" => state.as_str())
            .set(f64::from(n));
    }
}

pub(crate) fn ejection(service: &str, reason: EjectionReason) {
    counter!("palisade_balancer_ejections_total", "service" => service.to_owned(), "reason" => reason.as_str())
        .increment(1);
}
