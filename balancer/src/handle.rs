//! The balancer's cloneable handle: snapshot and live reconfiguration.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use palisade_breaker::State as BreakerState;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::{Config, ConfigError};
use crate::endpoint::Metadata;
use crate::stats::EndpointStats;

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EjectionReason {
    /// `consecutive_failures` failures in a row.
    ConsecutiveFailures,
    /// Success rate below `mean - k * stddev` of its peers.
    SuccessRate,
    /// Failure share at or above the configured percentage.
    FailurePercentage,
}

impl EjectionReason {
    /// A stable lower-case name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EjectionReason::ConsecutiveFailures => "consecutive_failures",
            EjectionReason::SuccessRate => "success_rate",
            EjectionReason::FailurePercentage => "failure_percentage",
        }
    }
}

/// The routing state of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    /// A candidate for requests.
    Active,
    /// Ejected by outlier detection.
    Ejected,
    /// Its circuit breaker does not admit calls.
    BreakerOpen,
    /// It fails its active health checks.
    Unhealthy,
}

impl EndpointState {
    /// A stable lower-case name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Active => "active",
            EndpointState::Ejected => "ejected",
            EndpointState::BreakerOpen => "breaker_open",
            EndpointState::Unhealthy => "unhealthy",
        }
    }
}

/// One endpoint in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct EndpointSnapshot {
    /// The discovery key, formatted with `Debug`.
    pub key: String,
    /// Zone, if any.
    pub zone: Option<String>,
    /// Weight.
    pub weight: u32,
    /// Routing state (ejection first, then health checks, then breaker).
    pub state: EndpointState,
    /// The breaker's state, if the endpoint has a breaker.
    pub breaker: Option<BreakerState>,
    /// Requests in flight.
    pub in_flight: u32,
    /// Successful calls since the endpoint was added (calls are classified, and so counted, only
    /// while outlier detection is on).
    pub successes: u64,
    /// Failed calls since the endpoint was added (counted only while outlier detection is on).
    pub failures: u64,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// The Peak-EWMA estimate (undecayed), once a latency was measured.
    #[serde(with = "humantime_serde")]
    pub rtt_estimate: Option<Duration>,
    /// How many times it was ejected since it was added.
    pub ejections: u64,
    /// The reason of the latest ejection.
    pub last_ejection: Option<EjectionReason>,
    /// Ejection time left.
    #[serde(with = "humantime_serde")]
    pub ejected_for: Option<Duration>,
    /// The latest ejections (up to 8), oldest first.
    pub history: Vec<Ejection>,
}

/// One past ejection of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Ejection {
    /// Why.
    pub reason: EjectionReason,
    /// How long ago it started (at the time of the snapshot).
    #[serde(with = "humantime_serde")]
    pub ago: Duration,
    /// How long it was set to last.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// A point-in-time view of a balancer, for health endpoints and dashboards.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// The balancer's name.
    pub name: String,
    /// Endpoints, in the balancer's order.
    pub endpoints: Vec<EndpointSnapshot>,
    /// Whether the balancer ignored health at its last selection because too few endpoints were
    /// healthy.
    pub panic: bool,
    /// Whether the last selection kept to the local zone (zone-aware routing, not spilled).
    pub local_zone_only: bool,
}

impl Snapshot {
    /// The endpoint with `key` (as formatted with `Debug`).
    pub fn endpoint(&self, key: &str) -> Option<&EndpointSnapshot> {
        self.endpoints.iter().find(|e| e.key == key)
    }

    /// How many endpoints are in `state`.
    pub fn count(&self, state: EndpointState) -> usize {
        self.endpoints.iter().filter(|e| e.state == state).count()
    }
}

/// What the balancer publishes about an endpoint whenever membership or ejections change.
#[derive(Debug, Clone)]
pub(crate) struct EndpointView {
    pub(crate) key: String,
    pub(crate) metadata: Metadata,
    pub(crate) stats: Arc<EndpointStats>,
    pub(crate) ejected_until: Option<Instant>,
    pub(crate) ejections: u64,
    pub(crate) last_ejection: Option<EjectionReason>,
    pub(crate) history: Vec<(EjectionReason, Instant, Duration)>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) config: ArcSwap<Config>,
    pub(crate) config_version: AtomicU64,
    pub(crate) views: Mutex<Vec<EndpointView>>,
    pub(crate) panic: std::sync::atomic::AtomicBool,
    pub(crate) local_zone_only: std::sync::atomic::AtomicBool,
}

/// A cloneable handle to a [`Balance`](crate::Balance): snapshot and live reconfiguration.
#[derive(Debug, Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl Handle {
    /// The balancer's name (the `service` label of its metrics).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Endpoints with their load, state and ejection history.
    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let views = self.shared.views.lock().unwrap_or_else(|p| p.into_inner());
        let endpoints = views
            .iter()
            .map(|v| {
                let ejected_for = v
                    .ejected_until
                    .filter(|u| *u > now)
                    .map(|u| u.saturating_duration_since(now));
                let state = if ejected_for.is_some() {
                    EndpointState::Ejected
                } else if !v.metadata.healthy() {
                    EndpointState::Unhealthy
                } else if !v.metadata.breaker_admits() {
                    EndpointState::BreakerOpen
                } else {
                    EndpointState::Active
                };
                let s = &v.stats;
                EndpointSnapshot {
                    key: v.key.clone(),
                    zone: v.metadata.zone_name().map(str::to_owned),
                    weight: v.metadata.weight_value(),
                    state,
                    breaker: v.metadata.breaker_state(),
                    in_flight: s.in_flight(),
                    successes: s.total_successes.load(Ordering::Relaxed),
                    failures: s.total_failures.load(Ordering::Relaxed),
                    consecutive_failures: s.consecutive_failures.load(Ordering::Relaxed),
                    rtt_estimate: s.rtt_snapshot(),
                    ejections: v.ejections,
                    last_ejection: v.last_ejection,
                    ejected_for,
                    history: v
                        .history
                        .iter()
                        .map(|&(reason, at, duration)| Ejection {
                            reason,
                            ago: now.saturating_duration_since(at),
                            duration,
                        })
                        .collect(),
                }
            })
            .collect();
        Snapshot {
            name: self.shared.name.clone(),
            endpoints,
            panic: self.shared.panic.load(Ordering::Relaxed),
            local_zone_only: self.shared.local_zone_only.load(Ordering::Relaxed),
        }
    }

    /// The config in force.
    pub fn config(&self) -> Config {
        Config::clone(&self.shared.config.load())
    }

    /// Applies a new config at the balancer's next `poll_ready`. Endpoint counters, latency
    /// estimates and ejections are kept. A config that fails validation is rejected and the old
    /// one stays.
    pub fn reconfigure(&self, config: Config) -> Result<(), ConfigError> {
        config.validate()?;
        self.shared.config.store(Arc::new(config));
        self.shared.config_version.fetch_add(1, Ordering::Release);
        Ok(())
    }
}
