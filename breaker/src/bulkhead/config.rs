//! Bulkhead configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::util::InvalidConfig;

/// What a bulkhead does when every slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `poll_ready` reserves a slot and waits for one (up to `max_wait`, in a queue of at most
    /// `max_queue` waiters). Load balancers see the service as not ready. A wait that times out
    /// or finds the queue full makes `poll_ready` return ready and the next `call` fail with a
    /// [`Rejected`](super::Rejected).
    #[default]
    Backpressure,
    /// `poll_ready` never waits for the bulkhead (it only polls the inner service); `call` takes
    /// a slot or fails at once with a [`Rejected`](super::Rejected). `max_wait` and `max_queue`
    /// are not used.
    Shed,
}

/// Bulkhead configuration.
///
/// ```
/// use palisade_breaker::bulkhead::{Config, Mode};
/// use std::time::Duration;
///
/// let cfg: Config = serde_json::from_str(
///     r#"{ "max_concurrent": 32, "max_wait": "50ms", "max_queue": 64 }"#,
/// ).unwrap();
/// cfg.validate().unwrap();
/// assert_eq!(cfg.max_wait, Some(Duration::from_millis(50)));
/// assert_eq!(cfg.mode, Mode::Backpressure);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Calls in flight at most, shared by every clone of the service (>= 1).
    pub max_concurrent: u32,
    /// How long a caller may wait for a slot in [`Mode::Backpressure`]: `0` fails fast,
    /// `None` (absent) waits as long as it takes.
    #[serde(with = "humantime_serde")]
    pub max_wait: Option<Duration>,
    /// Waiters at most; a caller that finds the queue full is rejected at once.
    pub max_queue: u32,
    /// Backpressure or shed.
    pub mode: Mode,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_concurrent: 25,
            max_wait: Some(Duration::ZERO),
            max_queue: 0,
            mode: Mode::Backpressure,
        }
    }
}

impl Config {
    /// A builder starting from the defaults (25 concurrent calls, fail fast).
    pub fn builder() -> Builder {
        Builder(Config::default())
    }

    /// Checks the rules of every field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.max_concurrent == 0 {
            return Err(InvalidConfig::new(
                "bulkhead",
                "max_concurrent",
                "must be at least 1",
            ));
        }
        if self.max_concurrent > super::core::MAX_LIMIT {
            return Err(InvalidConfig::new(
                "bulkhead",
                "max_concurrent",
                "must be at most 2^30",
            ));
        }
        if self.max_wait.is_none_or(|w| !w.is_zero()) && self.max_queue == 0 {
            return Err(InvalidConfig::new(
                "bulkhead",
                "max_queue",
                "must be at least 1 when max_wait is not zero",
            ));
        }
        Ok(())
    }

    pub(crate) fn max_wait_nanos(&self) -> u64 {
        match self.max_wait {
            None => u64::MAX,
            Some(d) => d.as_nanos().min(u128::from(u64::MAX - 1)) as u64,
        }
    }
}

/// Builds a bulkhead [`Config`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder(Config);

impl Builder {
    /// Calls in flight at most.
    pub fn max_concurrent(mut self, n: u32) -> Self {
        self.0.max_concurrent = n;
        self
    }

    /// Longest wait for a slot (`Duration::ZERO`: fail fast). Set `max_queue` too.
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.0.max_wait = Some(d);
        self
    }

    /// Wait for a slot as long as it takes (pure backpressure, as tower's `ConcurrencyLimit`).
    pub fn wait_forever(mut self) -> Self {
        self.0.max_wait = None;
        self
    }

    /// Waiters at most.
    pub fn max_queue(mut self, n: u32) -> Self {
        self.0.max_queue = n;
        self
    }

    /// Backpressure or shed.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.0.mode = mode;
        self
    }

    /// Validates and returns the config.
    pub fn build(self) -> Result<Config, InvalidConfig> {
        self.0.validate()?;
        Ok(self.0)
    }
}
