//! Circuit breaker configuration: plain serde structs with humantime durations, validated on
//! build and on [`Handle::reconfigure`](super::Handle::reconfigure).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::MAX_PROBES;

/// Circuit breaker configuration.
///
/// Deserialises from YAML/JSON/TOML with humantime durations. Every field has a default, so a
/// config file only names what it changes:
///
/// ```
/// use palisade_breaker::circuit::{Config, TripPolicy, WindowConfig};
/// use std::time::Duration;
///
/// let cfg: Config = serde_json::from_str(r#"{
///     "window": { "type": "time", "length": "10s", "buckets": 10 },
///     "minimum_calls": 20,
///     "trip": { "failure_rate": 0.5, "consecutive_failures": 5 },
///     "open_duration": { "type": "exponential", "initial": "1s", "max": "30s" },
///     "half_open": { "probes": 2, "max_duration": "10s" }
/// }"#).unwrap();
/// cfg.validate().unwrap();
/// assert_eq!(cfg.window, WindowConfig::Time { length: Duration::from_secs(10), buckets: 10 });
/// assert!(cfg.trip.contains(&TripPolicy::ConsecutiveFailures(5)));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The window over which rates are computed.
    pub window: WindowConfig,
    /// No rate is judged before the window holds this many calls.
    pub minimum_calls: u32,
    /// Trip policies; the breaker opens when any of them fires. In config files this is a map
    /// (`trip: { failure_rate: 0.5, consecutive_failures: 5 }`).
    #[serde(with = "trip_serde")]
    pub trip: Vec<TripPolicy>,
    /// How long the breaker stays open before probing.
    pub open_duration: OpenDuration,
    /// Half-open behaviour.
    pub half_open: HalfOpenConfig,
    /// What a call whose response future is dropped before completion counts as.
    pub cancellation: CancellationPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window: WindowConfig::Count { size: 100 },
            minimum_calls: 20,
            trip: vec![TripPolicy::FailureRate(0.5)],
            open_duration: OpenDuration::Constant {
                duration: Duration::from_secs(60),
            },
            half_open: HalfOpenConfig::default(),
            cancellation: CancellationPolicy::Ignore,
        }
    }
}

/// The sliding window of recent calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowConfig {
    /// The last `size` calls (Resilience4j `COUNT_BASED`).
    Count {
        /// Number of calls in the window (1..=1,000,000).
        size: u32,
    },
    /// The calls of the last `length`, in `buckets` buckets (Hystrix, Resilience4j `TIME_BASED`).
    Time {
        /// Length of the window.
        #[serde(with = "humantime_serde")]
        length: Duration,
        /// Number of buckets (1..=1000); each bucket is at least 1 ms.
        buckets: u32,
    },
}

/// One reason to open. Policies are combined with "any": the first that fires trips the breaker
/// and is reported as the [`TripReason`](super::TripReason).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TripPolicy {
    /// Trip when failures / calls in the window reach this rate (0 < rate <= 1).
    FailureRate(f64),
    /// Trip when calls slower than `threshold` make up `rate` of the window.
    SlowCallRate {
        /// The rate (0 < rate <= 1).
        rate: f64,
        /// A call at least this slow is a slow call.
        threshold: Duration,
    },
    /// Trip after this many failures in a row (>= 1); independent of the window and of
    /// `minimum_calls`.
    ConsecutiveFailures(u32),
}

impl TripPolicy {
    /// Failure rate over the window.
    pub fn failure_rate(rate: f64) -> Self {
        TripPolicy::FailureRate(rate)
    }

    /// Slow-call rate over the window, with the slow-call threshold.
    pub fn slow_call_rate(rate: f64, threshold: Duration) -> Self {
        TripPolicy::SlowCallRate { rate, threshold }
    }

    /// Consecutive failures.
    pub fn consecutive_failures(n: u32) -> Self {
        TripPolicy::ConsecutiveFailures(n)
    }
}

/// How long the breaker stays open.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OpenDuration {
    /// Always the same.
    Constant {
        /// The open duration.
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
    /// `initial * multiplier^(n-1)` for the n-th opening in a row (reset when the breaker
    /// closes), capped at `max`, then scaled by a random factor in `[1 - jitter, 1 + jitter]`.
    Exponential {
        /// The first open duration.
        #[serde(with = "humantime_serde")]
        initial: Duration,
        /// Growth per consecutive opening (>= 1).
        #[serde(default = "default_multiplier")]
        multiplier: f64,
        /// The cap.
        #[serde(with = "humantime_serde")]
        max: Duration,
        /// Relative jitter (0 <= jitter < 1).
        #[serde(default)]
        jitter: f64,
    },
}

/// The config-file form of the trip policies: one optional field per policy.
mod trip_serde {
    use super::TripPolicy;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::time::Duration;

    #[derive(Serialize, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Trip {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure_rate: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slow_call_rate: Option<f64>,
        #[serde(
            default,
            with = "humantime_serde",
            skip_serializing_if = "Option::is_none"
        )]
        slow_call_threshold: Option<Duration>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        consecutive_failures: Option<u32>,
    }

    pub(super) fn serialize<S: Serializer>(v: &[TripPolicy], s: S) -> Result<S::Ok, S::Error> {
        let mut t = Trip::default();
        for p in v {
            match *p {
                TripPolicy::FailureRate(r) => t.failure_rate = Some(r),
                TripPolicy::SlowCallRate { rate, threshold } => {
                    t.slow_call_rate = Some(rate);
                    t.slow_call_threshold = Some(threshold);
                }
                TripPolicy::ConsecutiveFailures(n) => t.consecutive_failures = Some(n),
            }
        }
        t.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<TripPolicy>, D::Error> {
        let t = Trip::deserialize(d)?;
        let mut v = vec![];
        if let Some(n) = t.consecutive_failures {
            v.push(TripPolicy::ConsecutiveFailures(n));
        }
        if let Some(r) = t.failure_rate {
            v.push(TripPolicy::FailureRate(r));
        }
        match (t.slow_call_rate, t.slow_call_threshold) {
            (Some(rate), Some(threshold)) => v.push(TripPolicy::SlowCallRate { rate, threshold }),
            (None, None) => {}
            _ => {
                return Err(serde::de::Error::custom(
                    "slow_call_rate and slow_call_threshold go together",
                ));
            }
        }
        Ok(v)
    }
}

fn default_multiplier() -> f64 {
    2.0
}

impl OpenDuration {
    /// A constant open duration.
    pub fn constant(duration: Duration) -> Self {
        OpenDuration::Constant { duration }
    }

    /// Exponential backoff doubling from `initial` up to `max`, without jitter.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        OpenDuration::Exponential {
            initial,
            multiplier: 2.0,
            max,
            jitter: 0.0,
        }
    }

    /// The duration of the `n`-th opening in a row (`n >= 1`), given a uniform sample `u` in
    /// `[0, 1)`.
    pub(crate) fn nth(&self, n: u32, u: f64) -> Duration {
        match *self {
            OpenDuration::Constant { duration } => duration,
            OpenDuration::Exponential {
                initial,
                multiplier,
                max,
                jitter,
            } => {
                let exp = multiplier.powi(n.saturating_sub(1).min(1024) as i32);
                let base = (initial.as_secs_f64() * exp).min(max.as_secs_f64());
                let factor = 1.0 - jitter + 2.0 * jitter * u;
                Duration::from_secs_f64((base * factor).max(0.0))
            }
        }
    }
}

/// Half-open behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HalfOpenConfig {
    /// Probe calls admitted at once across all clones (1..=4095).
    pub probes: u32,
    /// Successful probes needed to close (1..=probes, default: `probes`). Any probe failure
    /// reopens.
    pub successes: Option<u32>,
    /// Reopen if the breaker has not decided within this time (Resilience4j
    /// `maxWaitDurationInHalfOpenState`).
    #[serde(with = "humantime_serde")]
    pub max_duration: Option<Duration>,
}

impl Default for HalfOpenConfig {
    fn default() -> Self {
        Self {
            probes: 3,
            successes: None,
            max_duration: None,
        }
    }
}

impl HalfOpenConfig {
    pub(crate) fn required_successes(&self) -> u32 {
        self.successes.unwrap_or(self.probes)
    }
}

/// What a call whose response future was dropped before completion counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancellationPolicy {
    /// Not counted; a cancelled half-open probe gives its slot back.
    #[default]
    Ignore,
    /// Counted as a failure.
    Failure,
}

/// A configuration that failed validation. Its message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }

    /// The offending field, as a dotted path (`half_open.probes`).
    pub fn field(&self) -> &str {
        self.field
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid circuit breaker config: {}: {}",
            self.field, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

fn rate_ok(r: f64) -> bool {
    r > 0.0 && r <= 1.0
}

impl Config {
    /// Starts a builder from the defaults.
    pub fn builder() -> Builder {
        Builder(Config::default())
    }

    /// Checks every rule; the error names the first field that breaks one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.window {
            WindowConfig::Count { size } => {
                if !(1..=1_000_000).contains(&size) {
                    return Err(ConfigError::new(
                        "window.size",
                        format!("{size} is not in 1..=1000000"),
                    ));
                }
            }
            WindowConfig::Time { length, buckets } => {
                if !(1..=1000).contains(&buckets) {
                    return Err(ConfigError::new(
                        "window.buckets",
                        format!("{buckets} is not in 1..=1000"),
                    ));
                }
                if length / buckets < Duration::from_millis(1) {
                    return Err(ConfigError::new(
                        "window.length",
                        format!("{length:?} over {buckets} buckets is below 1ms per bucket"),
                    ));
                }
            }
        }
        if self.minimum_calls == 0 {
            return Err(ConfigError::new("minimum_calls", "must be at least 1"));
        }
        if self.trip.is_empty() {
            return Err(ConfigError::new("trip", "needs at least one trip policy"));
        }
        let mut seen = [false; 3];
        for p in &self.trip {
            let (i, ok, what) = match *p {
                TripPolicy::FailureRate(r) => (0, rate_ok(r), "failure_rate must be in (0, 1]"),
                TripPolicy::SlowCallRate { rate, threshold } => (
                    1,
                    rate_ok(rate) && !threshold.is_zero(),
                    "slow_call_rate needs a rate in (0, 1] and a non-zero threshold",
                ),
                TripPolicy::ConsecutiveFailures(n) => {
                    (2, n >= 1, "consecutive_failures must be at least 1")
                }
            };
            if !ok {
                return Err(ConfigError::new("trip", what));
            }
            if std::mem::replace(&mut seen[i], true) {
                return Err(ConfigError::new(
                    "trip",
                    "each kind of trip policy may appear once",
                ));
            }
        }
        match self.open_duration {
            OpenDuration::Constant { duration } => {
                if duration.is_zero() {
                    return Err(ConfigError::new(
                        "open_duration.duration",
                        "must be non-zero",
                    ));
                }
            }
            OpenDuration::Exponential {
                initial,
                multiplier,
                max,
                jitter,
            } => {
                if initial.is_zero() {
                    return Err(ConfigError::new(
                        "open_duration.initial",
                        "must be non-zero",
                    ));
                }
                if !(multiplier >= 1.0 && multiplier.is_finite()) {
                    return Err(ConfigError::new(
                        "open_duration.multiplier",
                        "must be a finite number >= 1",
                    ));
                }
                if max < initial {
                    return Err(ConfigError::new(
                        "open_duration.max",
                        "must be at least `initial`",
                    ));
                }
                if !(0.0..1.0).contains(&jitter) {
                    return Err(ConfigError::new(
                        "open_duration.jitter",
                        "must be in [0, 1)",
                    ));
                }
            }
        }
        let ho = &self.half_open;
        if !(1..=MAX_PROBES).contains(&ho.probes) {
            return Err(ConfigError::new(
                "half_open.probes",
                format!("{} is not in 1..={MAX_PROBES}", ho.probes),
            ));
        }
        if let Some(s) = ho.successes
            && (s == 0 || s > ho.probes)
        {
            return Err(ConfigError::new(
                "half_open.successes",
                "must be in 1..=half_open.probes",
            ));
        }
        if ho.max_duration.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "half_open.max_duration",
                "must be non-zero",
            ));
        }
        Ok(())
    }

    /// The slow-call threshold of the slow-call policy, if there is one.
    pub fn slow_call_threshold(&self) -> Option<Duration> {
        self.trip.iter().find_map(|p| match *p {
            TripPolicy::SlowCallRate { threshold, .. } => Some(threshold),
            _ => None,
        })
    }
}

/// Builds a [`Config`] from the defaults.
///
/// ```
/// use palisade_breaker::circuit::{Config, OpenDuration, TripPolicy};
/// use std::time::Duration;
///
/// let cfg = Config::builder()
///     .count_window(50)
///     .minimum_calls(10)
///     .trip(TripPolicy::failure_rate(0.25))
///     .trip(TripPolicy::consecutive_failures(5))
///     .open_duration(OpenDuration::exponential(Duration::from_secs(1), Duration::from_secs(60)))
///     .half_open_probes(2)
///     .build()
///     .unwrap();
/// assert_eq!(cfg.trip.len(), 2);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder(Config);

impl Builder {
    /// A count-based window of `size` calls.
    pub fn count_window(mut self, size: u32) -> Self {
        self.0.window = WindowConfig::Count { size };
        self
    }

    /// A time-based window of `length` in `buckets` buckets.
    pub fn time_window(mut self, length: Duration, buckets: u32) -> Self {
        self.0.window = WindowConfig::Time { length, buckets };
        self
    }

    /// The minimum number of calls before a rate is judged.
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.0.minimum_calls = n;
        self
    }

    /// Adds a trip policy. The first call replaces the default failure-rate policy.
    pub fn trip(mut self, policy: TripPolicy) -> Self {
        if self.0.trip == Config::default().trip {
            self.0.trip.clear();
        }
        self.0.trip.push(policy);
        self
    }

    /// The open duration.
    pub fn open_duration(mut self, d: OpenDuration) -> Self {
        self.0.open_duration = d;
        self
    }

    /// Probes admitted in half-open; successes needed default to the same number.
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.0.half_open.probes = n;
        self
    }

    /// Successful probes needed to close.
    pub fn half_open_successes(mut self, n: u32) -> Self {
        self.0.half_open.successes = Some(n);
        self
    }

    /// Maximum time in half-open before reopening.
    pub fn half_open_max_duration(mut self, d: Duration) -> Self {
        self.0.half_open.max_duration = Some(d);
        self
    }

    /// What a cancelled call counts as.
    pub fn cancellation(mut self, p: CancellationPolicy) -> Self {
        self.0.cancellation = p;
        self
    }

    /// Validates and returns the config.
    pub fn build(self) -> Result<Config, ConfigError> {
        self.0.validate()?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_round_trip_with_humantime() {
        let yaml = "
window: { type: count, size: 10 }
trip:
  failure_rate: 0.5
  slow_call_rate: 0.8
  slow_call_threshold: 250ms
open_duration: { type: constant, duration: 5s }
cancellation: failure
";
        let cfg: Config = serde_yaml::from_str(yaml).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.slow_call_threshold(), Some(Duration::from_millis(250)));
        assert_eq!(cfg.cancellation, CancellationPolicy::Failure);
        let back: Config = serde_yaml::from_str(&serde_yaml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases: Vec<(Config, &str)> = vec![
            (
                Config {
                    window: WindowConfig::Count { size: 0 },
                    ..Config::default()
                },
                "window.size",
            ),
            (
                Config {
                    window: WindowConfig::Time {
                        length: Duration::from_millis(5),
                        buckets: 10,
                    },
                    ..Config::default()
                },
                "window.length",
            ),
            (
                Config {
                    trip: vec![TripPolicy::FailureRate(1.5)],
                    ..Config::default()
                },
                "trip",
            ),
            (
                Config {
                    trip: vec![],
                    ..Config::default()
                },
                "trip",
            ),
            (
                Config {
                    trip: vec![
                        TripPolicy::ConsecutiveFailures(2),
                        TripPolicy::ConsecutiveFailures(3),
                    ],
                    ..Config::default()
                },
                "trip",
            ),
            (
                Config {
                    half_open: HalfOpenConfig {
                        probes: 2,
                        successes: Some(3),
                        max_duration: None,
                    },
                    ..Config::default()
                },
                "half_open.successes",
            ),
            (
                Config {
                    open_duration: OpenDuration::Exponential {
                        initial: Duration::from_secs(2),
                        multiplier: 2.0,
                        max: Duration::from_secs(1),
                        jitter: 0.0,
                    },
                    ..Config::default()
                },
                "open_duration.max",
            ),
        ];
        for (cfg, field) in cases {
            let err = cfg.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
        let unknown = serde_json::from_str::<Config>(r#"{"windw": {"type":"count","size":3}}"#);
        assert!(unknown.unwrap_err().to_string().contains("windw"));
        let half = serde_json::from_str::<Config>(r#"{"trip": {"slow_call_rate": 0.5}}"#);
        assert!(
            half.unwrap_err()
                .to_string()
                .contains("slow_call_threshold")
        );
    }

    #[test]
    fn exponential_open_duration_grows_caps_and_jitters() {
        let d = OpenDuration::Exponential {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(10),
            jitter: 0.5,
        };
        assert_eq!(d.nth(1, 0.5), Duration::from_secs(1));
        assert_eq!(d.nth(3, 0.5), Duration::from_secs(4));
        assert_eq!(d.nth(30, 0.5), Duration::from_secs(10));
        assert_eq!(d.nth(3, 0.0), Duration::from_secs(2));
        assert!(d.nth(3, 0.999) < Duration::from_secs(6));
    }
}
