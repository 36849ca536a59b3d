//! Retry configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::util::InvalidConfig;

/// Retry configuration.
///
/// ```
/// use palisade_breaker::retry::Config;
/// use std::time::Duration;
///
/// let cfg: Config = serde_json::from_str(r#"{
///     "max_attempts": 4,
///     "backoff": { "initial": "50ms", "max": "2s" },
///     "budget": { "ratio": 0.1, "min_per_second": 5 }
/// }"#).unwrap();
/// cfg.validate().unwrap();
/// assert_eq!(cfg.backoff.initial, Duration::from_millis(50));
/// assert!(cfg.budget.is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Attempts at most, the first included (>= 1; 1 never retries).
    pub max_attempts: u32,
    /// Delay before each retry.
    pub backoff: Backoff,
    /// Honour a server's `Retry-After` (as reported by the [`Policy`](super::Policy)) instead of
    /// the backoff, up to `max_retry_after`; a longer one ends the retries.
    pub honour_retry_after: bool,
    /// The longest `Retry-After` honoured.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// The retry budget; `null` disables it (not recommended: retries then multiply the load
    /// on a failing dependency by `max_attempts`).
    pub budget: Option<BudgetConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Backoff::default(),
            honour_retry_after: true,
            max_retry_after: Duration::from_secs(10),
            budget: Some(BudgetConfig::default()),
        }
    }
}

/// Exponential backoff with full jitter: the delay before retry `n` (1-based) is uniform in
/// `[0, min(max, initial * multiplier^(n-1))]` (the "full jitter" of the AWS architecture blog,
/// which spreads synchronized clients best).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// The cap of the first delay.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// The largest cap.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Growth per retry (>= 1).
    pub multiplier: f64,
    /// Full jitter (`true`) or the capped exponential delay itself (`false`).
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(25),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: true,
        }
    }
}

impl Backoff {
    /// The cap of the delay before retry `n` (1-based).
    pub fn ceiling(&self, n: u32) -> Duration {
        let exp = self.multiplier.powi(n.saturating_sub(1).min(64) as i32);
        let secs = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// A retry budget: retries may be at most `ratio` of the calls, plus `min_per_second`, with a
/// reserve of at most `max_reserve` retries saved up in quiet times (tower's `TpsBudget`, Envoy's
/// and Finagle's retry budgets). Lock-free: one atomic load per call once the reserve is full.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Retries allowed per call made (0..=1000).
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic (so that a quiet service can retry).
    pub min_per_second: u32,
    /// The most retries that can be saved up.
    pub max_reserve: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10,
            max_reserve: 100,
        }
    }
}

impl Config {
    /// A builder from the defaults (3 attempts, 25 ms..1 s backoff with full jitter, budget of
    /// 20% + 10/s).
    pub fn builder() -> Builder {
        Builder(Config::default())
    }

    /// Checks the rules of every field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let err = |field, msg| Err(InvalidConfig::new("retry", field, msg));
        if self.max_attempts == 0 {
            return err("max_attempts", "must be at least 1");
        }
        if !(self.backoff.multiplier >= 1.0 && self.backoff.multiplier.is_finite()) {
            return err("backoff.multiplier", "must be a finite number >= 1");
        }
        if self.backoff.max < self.backoff.initial {
            return err("backoff.max", "must be at least backoff.initial");
        }
        if let Some(b) = &self.budget {
            if !(b.ratio >= 0.0 && b.ratio <= 1000.0) {
                return err("budget.ratio", "must be between 0 and 1000");
            }
            if b.ratio == 0.0 && b.min_per_second == 0 {
                return err(
                    "budget",
                    "allows no retry at all: set ratio or min_per_second",
                );
            }
        }
        Ok(())
    }
}

/// Builds a retry [`Config`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder(Config);

impl Builder {
    /// Attempts at most, the first included.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.0.max_attempts = n;
        self
    }

    /// Exponential backoff from `initial` up to `max`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.0.backoff.initial = initial;
        self.0.backoff.max = max;
        self
    }

    /// Growth of the backoff per retry.
    pub fn multiplier(mut self, m: f64) -> Self {
        self.0.backoff.multiplier = m;
        self
    }

    /// Full jitter on or off.
    pub fn jitter(mut self, on: bool) -> Self {
        self.0.backoff.jitter = on;
        self
    }

    /// Honour `Retry-After` up to `max` (`None`: ignore it).
    pub fn retry_after(mut self, max: Option<Duration>) -> Self {
        self.0.honour_retry_after = max.is_some();
        if let Some(m) = max {
            self.0.max_retry_after = m;
        }
        self
    }

    /// The retry budget (`None`: unlimited, not recommended).
    pub fn budget(mut self, b: Option<BudgetConfig>) -> Self {
        self.0.budget = b;
        self
    }

    /// Validates and returns the config.
    pub fn build(self) -> Result<Config, InvalidConfig> {
        self.0.validate()?;
        Ok(self.0)
    }
}
