//! Rate limiter configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::util::InvalidConfig;

/// What a rate limiter does with a call over the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `call` fails at once with a [`Rejected`](super::Rejected) that says when to come back.
    #[default]
    Shed,
    /// `poll_ready` waits for the next permit when it comes within `max_wait`; later than that,
    /// the next `call` is rejected.
    Backpressure,
}

/// Rate limiter configuration: `rate` calls per `period`, with bursts of up to `burst` calls.
///
/// ```
/// use palisade_breaker::ratelimit::Config;
/// use std::time::Duration;
///
/// let cfg: Config = serde_json::from_str(r#"{ "rate": 100, "period": "1s", "burst": 10 }"#).unwrap();
/// cfg.validate().unwrap();
/// assert_eq!(cfg.emission_interval(), Duration::from_millis(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Calls per period (>= 1).
    pub rate: u32,
    /// The period.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Calls that may go at once after a quiet spell (>= 1).
    pub burst: u32,
    /// Shed or backpressure.
    pub mode: Mode,
    /// Longest wait in [`Mode::Backpressure`].
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rate: 50,
            period: Duration::from_secs(1),
            burst: 50,
            mode: Mode::Shed,
            max_wait: Duration::ZERO,
        }
    }
}

impl Config {
    /// `rate` calls per `period`, burst `rate`, shed mode.
    pub fn per(rate: u32, period: Duration) -> Self {
        Self {
            rate,
            period,
            burst: rate,
            ..Self::default()
        }
    }

    /// Sets the burst.
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Waits up to `max_wait` for a permit in `poll_ready` instead of shedding.
    #[must_use]
    pub fn backpressure(mut self, max_wait: Duration) -> Self {
        self.mode = Mode::Backpressure;
        self.max_wait = max_wait;
        self
    }

    /// The time between two calls at the steady rate.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.rate.max(1)
    }

    /// Checks the rules of every field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.rate == 0 {
            return Err(InvalidConfig::new(
                "rate limit",
                "rate",
                "must be at least 1",
            ));
        }
        if self.burst == 0 {
            return Err(InvalidConfig::new(
                "rate limit",
                "burst",
                "must be at least 1",
            ));
        }
        if self.emission_interval().is_zero() {
            return Err(InvalidConfig::new(
                "rate limit",
                "period",
                "must be at least 1ns per call",
            ));
        }
        if self.period > Duration::from_secs(365 * 24 * 3600) {
            return Err(InvalidConfig::new(
                "rate limit",
                "period",
                "must be at most a year",
            ));
        }
        if self
            .emission_interval()
            .as_nanos()
            .saturating_mul(u128::from(self.burst))
            > 1 << 62
        {
            return Err(InvalidConfig::new(
                "rate limit",
                "burst",
                "burst times the emission interval must be under about 146 years",
            ));
        }
        Ok(())
    }
}
