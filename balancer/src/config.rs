//! Balancer configuration: plain serde structs with humantime durations, validated on build and
//! on [`Handle::reconfigure`](crate::Handle::reconfigure).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Balancer configuration. Every field has a default, so a config file names only what it
/// changes:
///
/// ```
/// use palisade_balancer::{Config, Policy};
/// use std::time::Duration;
///
/// let cfg: Config = serde_json::from_str(r#"{
///     "policy": { "type": "peak_ewma", "default_rtt": "30ms", "decay": "10s" },
///     "outlier": { "interval": "1s", "consecutive_failures": 5 },
///     "panic_threshold": 0.5
/// }"#).unwrap();
/// cfg.validate().unwrap();
/// assert_eq!(cfg.policy, Policy::PeakEwma { default_rtt: Duration::from_millis(30), decay: Duration::from_secs(10) });
/// assert_eq!(cfg.outlier.unwrap().consecutive_failures, Some(5));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How an endpoint is picked among the candidates.
    pub policy: Policy,
    /// Passive health: ejects endpoints whose calls fail. `None` turns it off.
    pub outlier: Option<OutlierConfig>,
    /// When the share of healthy endpoints (not ejected, breaker admitting) falls below this
    /// fraction, health is ignored and every endpoint is a candidate (Envoy's
    /// `healthy_panic_threshold`, default 0.5). `0` disables panic mode.
    pub panic_threshold: f64,
    /// Prefer endpoints in the local zone. `None`: zones are ignored.
    pub zone_aware: Option<ZoneAware>,
    /// Ramp up traffic to endpoints that join a running balancer. `None`: full weight at once.
    pub slow_start: Option<SlowStart>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            outlier: None,
            panic_threshold: 0.5,
            zone_aware: None,
            slow_start: None,
        }
    }
}

/// Zone-aware routing: requests go to healthy endpoints of `local_zone` while enough of that
/// zone is healthy, and spill over to every healthy endpoint when its healthy share falls below
/// `min_healthy_share` (or the zone has no endpoint at all).
///
/// This is the simple form of Ribbon's `ZoneAvoidanceRule` and Envoy's zone-aware routing: all
/// or nothing, no proportional spill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneAware {
    /// The caller's zone.
    pub local_zone: String,
    /// Spill over below this healthy share of the local zone (default 0.7).
    #[serde(default = "default_min_healthy_share")]
    pub min_healthy_share: f64,
}

fn default_min_healthy_share() -> f64 {
    0.7
}

impl ZoneAware {
    /// Prefers `local_zone`, spilling over below 70 % healthy.
    pub fn new(local_zone: impl Into<String>) -> Self {
        Self {
            local_zone: local_zone.into(),
            min_healthy_share: default_min_healthy_share(),
        }
    }
}

/// Slow start (Envoy's): an endpoint that joins a running balancer gets its weight scaled by
/// `max(min_weight_percent, (t / window) ^ (1 / aggression))` for `window` after it joined.
/// Applies to weighted round robin and both P2C policies (whose load is divided by the weight).
/// The endpoints of the first discovery batch start at full weight: there is nothing to shift
/// their load to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlowStart {
    /// How long the ramp lasts.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// 1.0 is linear; larger ramps up faster at first.
    pub aggression: f64,
    /// The smallest scale, as a fraction (default 0.1).
    pub min_weight_percent: f64,
}

impl Default for SlowStart {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            aggression: 1.0,
            min_weight_percent: 0.1,
        }
    }
}

impl SlowStart {
    /// The weight scale `elapsed` after the endpoint joined.
    pub fn scale(&self, elapsed: Duration) -> f64 {
        if elapsed >= self.window {
            return 1.0;
        }
        let t = elapsed.as_secs_f64() / self.window.as_secs_f64();
        t.powf(1.0 / self.aggression).max(self.min_weight_percent)
    }
}

/// The endpoint selection policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Policy {
    /// Each candidate in turn.
    RoundRobin,
    /// A uniformly random candidate.
    Random,
    /// Smooth weighted round robin (nginx's algorithm): traffic in proportion to weights, spread
    /// evenly rather than in bursts.
    WeightedRoundRobin,
    /// Power of two choices: two random candidates, the one with fewer requests in flight
    /// (divided by weight) wins.
    LeastOutstanding,
    /// Power of two choices on Peak-EWMA cost: `rtt_estimate * (in_flight + 1) / weight`, where
    /// the estimate jumps to any slower sample and decays towards faster ones over `decay`.
    PeakEwma {
        /// The estimate of an endpoint that has no sample yet.
        #[serde(with = "humantime_serde")]
        default_rtt: Duration,
        /// The time constant of the decay.
        #[serde(with = "humantime_serde")]
        decay: Duration,
    },
    /// Consistent hashing with a Maglev table: requests with the same key (from the balancer's
    /// [`HashKey`](crate::hash::HashKey)) go to the same endpoint while it is available;
    /// adding or removing an endpoint moves about `1 / n` of the keys.
    Maglev {
        /// Table size, a prime well above the number of endpoints (Envoy: 65537).
        #[serde(default = "default_table_size")]
        table_size: u32,
    },
}

fn default_table_size() -> u32 {
    65_537
}

impl Default for Policy {
    /// Peak-EWMA with linkerd's defaults (30 ms default RTT, 10 s decay).
    fn default() -> Self {
        Policy::PeakEwma {
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
        }
    }
}

/// Outlier detection (passive health checking), after Envoy's.
///
/// Consecutive failures eject as soon as they happen; success-rate and failure-percentage
/// ejections are judged every `interval` over the calls of that interval. An ejected endpoint
/// stays out for `base_ejection_time * n` (capped at `max_ejection_time`), `n` being how many
/// times it was ejected lately; `n` shrinks by one for each interval the endpoint spends healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    /// How often success rates and failure percentages are judged.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Ejection time of a first ejection.
    #[serde(with = "humantime_serde")]
    pub base_ejection_time: Duration,
    /// The longest ejection.
    #[serde(with = "humantime_serde")]
    pub max_ejection_time: Duration,
    /// At most this fraction of the endpoints is ejected at once (at least one endpoint may
    /// always be ejected).
    pub max_ejection_percent: f64,
    /// Eject after this many failures in a row. `None` turns it off.
    pub consecutive_failures: Option<u32>,
    /// Eject endpoints whose success rate is below `mean - stdev_factor * stddev`.
    pub success_rate: Option<SuccessRate>,
    /// Eject endpoints whose failure share is at least `threshold`.
    pub failure_percentage: Option<FailurePercentage>,
}

impl Default for OutlierConfig {
    /// Envoy's defaults: 10 s interval, 30 s base and 300 s max ejection time, 10 % max ejected,
    /// 5 consecutive failures, success rate with factor 1.9; failure percentage off.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 0.1,
            consecutive_failures: Some(5),
            success_rate: Some(SuccessRate::default()),
            failure_percentage: None,
        }
    }
}

/// Statistical success-rate ejection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuccessRate {
    /// `k` in `mean - k * stddev` (Envoy: 1.9).
    pub stdev_factor: f64,
    /// Judged only when at least this many endpoints have `request_volume` calls (Envoy: 5).
    pub minimum_hosts: u32,
    /// Calls an endpoint needs in the interval to be judged (Envoy: 100).
    pub request_volume: u32,
}

impl Default for SuccessRate {
    fn default() -> Self {
        Self {
            stdev_factor: 1.9,
            minimum_hosts: 5,
            request_volume: 100,
        }
    }
}

/// Fixed failure-percentage ejection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailurePercentage {
    /// Eject at this failure share or above (Envoy: 0.85).
    pub threshold: f64,
    /// Judged only when at least this many endpoints have `request_volume` calls (Envoy: 5).
    pub minimum_hosts: u32,
    /// Calls an endpoint needs in the interval to be judged (Envoy: 50).
    pub request_volume: u32,
}

impl Default for FailurePercentage {
    fn default() -> Self {
        Self {
            threshold: 0.85,
            minimum_hosts: 5,
            request_volume: 50,
        }
    }
}

/// A config that breaks a rule; names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    message: String,
}

impl ConfigError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }

    /// The offending field, as a dotted path (`outlier.interval`).
    pub fn field(&self) -> &str {
        self.field
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid balancer config: {}: {}",
            self.field, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

fn fraction(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::new(field, format!("{v} is not in 0..=1")))
    }
}

fn positive(field: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(ConfigError::new(field, "must be more than zero"))
    } else {
        Ok(())
    }
}

impl Config {
    /// The default config with `policy`.
    pub fn with_policy(policy: Policy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// Sets outlier detection.
    #[must_use]
    pub fn outlier(mut self, outlier: OutlierConfig) -> Self {
        self.outlier = Some(outlier);
        self
    }

    /// Sets zone-aware routing.
    #[must_use]
    pub fn zone_aware(mut self, zone: ZoneAware) -> Self {
        self.zone_aware = Some(zone);
        self
    }

    /// Sets slow start.
    #[must_use]
    pub fn slow_start(mut self, slow_start: SlowStart) -> Self {
        self.slow_start = Some(slow_start);
        self
    }

    /// Sets the panic threshold.
    #[must_use]
    pub fn panic_threshold(mut self, threshold: f64) -> Self {
        self.panic_threshold = threshold;
        self
    }

    /// Checks every rule; the error names the first field that breaks one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fraction("panic_threshold", self.panic_threshold)?;
        if let Some(z) = &self.zone_aware {
            fraction("zone_aware.min_healthy_share", z.min_healthy_share)?;
        }
        if let Some(ss) = &self.slow_start {
            positive("slow_start.window", ss.window)?;
            if !(ss.aggression.is_finite() && ss.aggression > 0.0) {
                return Err(ConfigError::new(
                    "slow_start.aggression",
                    "must be a finite number > 0",
                ));
            }
            fraction("slow_start.min_weight_percent", ss.min_weight_percent)?;
            if ss.min_weight_percent == 0.0 {
                return Err(ConfigError::new(
                    "slow_start.min_weight_percent",
                    "must be more than zero",
                ));
            }
        }
        if let Policy::PeakEwma { default_rtt, decay } = self.policy {
            positive("policy.default_rtt", default_rtt)?;
            positive("policy.decay", decay)?;
        }
        if let Policy::Maglev { table_size } = self.policy
            && !(crate::hash::is_prime(table_size) && (7..=5_000_011).contains(&table_size))
        {
            return Err(ConfigError::new(
                "policy.table_size",
                format!("{table_size} is not a prime in 7..=5000011"),
            ));
        }
        if let Some(o) = &self.outlier {
            positive("outlier.interval", o.interval)?;
            positive("outlier.base_ejection_time", o.base_ejection_time)?;
            if o.max_ejection_time < o.base_ejection_time {
                return Err(ConfigError::new(
                    "outlier.max_ejection_time",
                    "must be at least base_ejection_time",
                ));
            }
            fraction("outlier.max_ejection_percent", o.max_ejection_percent)?;
            if o.consecutive_failures == Some(0) {
                return Err(ConfigError::new(
                    "outlier.consecutive_failures",
                    "must be at least 1",
                ));
            }
            if let Some(sr) = &o.success_rate {
                if !(sr.stdev_factor.is_finite() && sr.stdev_factor >= 0.0) {
                    return Err(ConfigError::new(
                        "outlier.success_rate.stdev_factor",
                        "must be a finite number >= 0",
                    ));
                }
                if sr.minimum_hosts == 0 {
                    return Err(ConfigError::new(
                        "outlier.success_rate.minimum_hosts",
                        "must be at least 1",
                    ));
                }
            }
            if let Some(fp) = &o.failure_percentage {
                fraction("outlier.failure_percentage.threshold", fp.threshold)?;
                if fp.minimum_hosts == 0 {
                    return Err(ConfigError::new(
                        "outlier.failure_percentage.minimum_hosts",
                        "must be at least 1",
                    ));
                }
            }
        }
        Ok(())
    }
}
