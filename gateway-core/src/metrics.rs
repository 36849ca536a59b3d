//! Gateway metrics through the `metrics` facade (feature `metrics`), with the names of
//! ARCHITECTURE.md:
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `palisade_gateway_requests_total` | `route`, `code` (`2xx`...) | answers per route and status class |
//! | `palisade_gateway_request_duration_seconds` | `route` | histogram of the time to the response head |
//! | `palisade_gateway_rejections_total` | `route`, `reason` (`rate_limit`, `bulkhead`) | requests turned away by the route's admission limits |
//! | `palisade_balancer_endpoints` | `service`, `state` | `lb://` endpoint health, from `palisade-balancer` |
//! | `palisade_balancer_ejections_total` | `service`, `reason` | `lb://` outlier ejections, from `palisade-balancer` |
//!
//! The handles are registered once per route when the routes load (with the recorder
//! installed then), so a request updates them without allocating. The admin `/metrics` page
//! renders the gateway's own counters, updated at the same points.

use std::time::Duration;

/// Why a route turned a request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    RateLimit,
    Bulkhead,
}

#[cfg(feature = "metrics")]
mod imp {
    use super::*;
    use metrics::{Counter, Histogram, counter, histogram};

    /// One route's metric handles.
    #[derive(Debug)]
    pub(crate) struct RouteMetrics {
        by_class: [Counter; 5],
        duration: Histogram,
        rate_limited: Counter,
        bulkhead: Counter,
    }

    impl RouteMetrics {
        pub(crate) fn new(route: &str) -> Self {
            let r = route.to_owned();
            let by_class = ["1xx", "2xx", "3xx", "4xx", "5xx"].map(
                |c| counter!("palisade_gateway_requests_total", "route" => r.clone(), "code" => c),
            );
            RouteMetrics {
                by_class,
                duration: histogram!("palisade_gateway_request_duration_seconds", "route" => r.clone()),
                rate_limited: counter!("palisade_gateway_rejections_total", "route" => r.clone(), "reason" => "rate_limit"),
                bulkhead: counter!("palisade_gateway_rejections_total", "route" => r, "reason" => "bulkhead"),
            }
        }

        #[inline]
        pub(crate) fn record(&self, status: u16, elapsed: Duration) {
            let class = (status / 100).clamp(1, 5) as usize - 1;
            self.by_class[class].increment(1);
            self.duration.record(elapsed.as_secs_f64());
        }

        #[inline]
        pub(crate) fn rejected(&self, why: Rejection) {
            match why {
                Rejection::RateLimit => self.rate_limited.increment(1),
                Rejection::Bulkhead => self.bulkhead.increment(1),
            }
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    use super::*;

    /// One route's metric handles (the `metrics` feature is off: nothing).
    #[derive(Debug)]
    pub(crate) struct RouteMetrics;

    impl RouteMetrics {
        pub(crate) fn new(_route: &str) -> Self {
            RouteMetrics
        }
        #[inline]
        pub(crate) fn record(&self, _status: u16, _elapsed: Duration) {}
        #[inline]
        pub(crate) fn rejected(&self, _why: Rejection) {}
    }
}

pub(crate) use imp::RouteMetrics;
