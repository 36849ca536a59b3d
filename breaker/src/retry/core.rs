//! The retry's shared state: config, budget, RNG, counters, listener, and the handle.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::budget::Budget;
use super::config::Config;
use crate::util::{InvalidConfig, Rng, SharedRef};

/// Why a retry did not happen and the last result went back to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUp {
    /// `max_attempts` reached.
    Exhausted,
    /// The retry budget was spent: the dependency is failing for many callers at once.
    BudgetExhausted,
    /// The policy said this request may not be retried (e.g. a non-idempotent method).
    NotRetryable,
    /// The request could not be replayed (e.g. its body was larger than the replay limit).
    NotReplayable(&'static str),
    /// The server asked to come back later than `max_retry_after`.
    RetryAfterTooLong,
    /// The backoff would end after the request's deadline.
    DeadlineTooClose,
}

impl GiveUp {
    /// A stable lower-case name, for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            GiveUp::Exhausted => "exhausted",
            GiveUp::BudgetExhausted => "budget_exhausted",
            GiveUp::NotRetryable => "not_retryable",
            GiveUp::NotReplayable(_) => "not_replayable",
            GiveUp::RetryAfterTooLong => "retry_after_too_long",
            GiveUp::DeadlineTooClose => "deadline_too_close",
        }
    }
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GiveUp::NotReplayable(why) => write!(f, "not replayable: {why}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Receives a retry's events; statically dispatched, free when unused (`()`).
pub trait Listener: Send + Sync + 'static {
    /// Retry number `attempt` (the second attempt is retry 1) will start after `delay`.
    fn on_retry(&self, _name: &str, _retry: u32, _delay: Duration) {}
    /// A failed attempt was not retried.
    fn on_give_up(&self, _name: &str, _reason: GiveUp) {}
}

impl Listener for () {}

pub(crate) struct Shared<L> {
    pub(crate) cfg: ArcSwap<Config>,
    budget: Arc<Budget>,
    budget_on: AtomicBool,
    rng: Rng,
    retries: AtomicU64,
    gave_up: [AtomicU64; 6],
    name: Box<str>,
    listener: L,
}

impl<L> fmt::Debug for Shared<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("name", &self.name)
            .field("config", &**self.cfg.load())
            .finish_non_exhaustive()
    }
}

impl<L: Listener> Shared<L> {
    pub(crate) fn new(name: Box<str>, cfg: Config, seed: Option<u64>, listener: L) -> Self {
        let budget_cfg = cfg.budget.unwrap_or_default();
        Shared {
            budget: Arc::new(Budget::new(&budget_cfg)),
            budget_on: AtomicBool::new(cfg.budget.is_some()),
            cfg: ArcSwap::from_pointee(cfg),
            rng: seed.map_or_else(Rng::from_entropy, Rng::new),
            retries: AtomicU64::new(0),
            gave_up: Default::default(),
            name,
            listener,
        }
    }

    #[inline]
    pub(crate) fn on_call(&self) {
        if self.budget_on.load(Relaxed) {
            self.budget.deposit();
        }
    }

    /// Decides whether retry `retry` (1-based) happens and after what delay. `retry_after` is a
    /// server-requested delay. `Err` tells why not; the caller reports it with `give_up`.
    pub(crate) fn plan(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Duration, GiveUp> {
        let cfg = self.cfg.load();
        if retry >= cfg.max_attempts {
            return Err(GiveUp::Exhausted);
        }
        let delay = match retry_after {
            Some(d) if cfg.honour_retry_after => {
                if d > cfg.max_retry_after {
                    return Err(GiveUp::RetryAfterTooLong);
                }
                d
            }
            _ => {
                let ceiling = cfg.backoff.ceiling(retry);
                if cfg.backoff.jitter {
                    ceiling.mul_f64(self.rng.next_f64())
                } else {
                    ceiling
                }
            }
        };
        if deadline.is_some_and(|d| tokio::time::Instant::now() + delay >= d) {
            return Err(GiveUp::DeadlineTooClose);
        }
        Ok(delay)
    }

    /// Spends one retry from the budget.
    pub(crate) fn withdraw(&self) -> Result<(), GiveUp> {
        if !self.budget_on.load(Relaxed) || self.budget.withdraw() {
            Ok(())
        } else {
            Err(GiveUp::BudgetExhausted)
        }
    }

    pub(crate) fn retrying(&self, retry: u32, delay: Duration) {
        self.retries.fetch_add(1, Relaxed);
        tracing::debug!(retry = %self.name, n = retry, ?delay, "retrying");
        self.listener.on_retry(&self.name, retry, delay);
    }

    pub(crate) fn give_up(&self, reason: GiveUp) {
        let i = match reason {
            GiveUp::Exhausted => 0,
            GiveUp::BudgetExhausted => 1,
            GiveUp::NotRetryable => 2,
            GiveUp::NotReplayable(_) => 3,
            GiveUp::RetryAfterTooLong => 4,
            GiveUp::DeadlineTooClose => 5,
        };
        self.gave_up[i].fetch_add(1, Relaxed);
        tracing::debug!(retry = %self.name, %reason, "not retrying");
        self.listener.on_give_up(&self.name, reason);
    }
}

/// A point-in-time view of a retry layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Retries made (attempts after the first).
    pub retries_total: u64,
    /// Failed attempts returned because `max_attempts` was reached.
    pub exhausted_total: u64,
    /// Failed attempts returned because the budget was spent.
    pub budget_exhausted_total: u64,
    /// Failed attempts returned because the request could not be retried or replayed.
    pub not_retryable_total: u64,
    /// Failed attempts returned because the backoff would outlast the request's deadline.
    pub deadline_too_close_total: u64,
    /// Retries the budget allows right now (without the per-second allowance not yet paid in).
    pub budget_available: u32,
}

/// Controls a retry layer: snapshot and live reconfiguration. Cheap to clone.
pub struct Handle<L: 'static = ()> {
    pub(crate) shared: SharedRef<Shared<L>>,
}

impl<L: 'static> Clone for Handle<L> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<L: 'static> fmt::Debug for Handle<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl<L: Listener> Handle<L> {
    /// Counters and the budget.
    pub fn snapshot(&self) -> Snapshot {
        let s = &self.shared;
        Snapshot {
            retries_total: s.retries.load(Relaxed),
            exhausted_total: s.gave_up[0].load(Relaxed),
            budget_exhausted_total: s.gave_up[1].load(Relaxed),
            not_retryable_total: s.gave_up[2].load(Relaxed) + s.gave_up[3].load(Relaxed),
            deadline_too_close_total: s.gave_up[5].load(Relaxed),
            budget_available: s.budget.available(),
        }
    }

    /// The retry budget, to share with other layers that add load on failure (a
    /// [hedge](crate::hedge) draws its extra attempts from it).
    pub fn budget(&self) -> RetryBudget {
        RetryBudget(self.shared.budget.clone())
    }

    /// The config in force.
    pub fn config(&self) -> Config {
        Config::clone(&self.shared.cfg.load())
    }

    /// Applies a new config live; the budget's balance is kept. A bad config is refused and the
    /// old one kept.
    pub fn reconfigure(&self, cfg: Config) -> Result<(), InvalidConfig> {
        cfg.validate()?;
        let s = &self.shared;
        s.budget.store(&cfg.budget.unwrap_or_default());
        s.budget_on.store(cfg.budget.is_some(), Relaxed);
        s.cfg.store(Arc::new(cfg));
        Ok(())
    }
}

/// A retry budget that can be shared between layers: calls deposit, extra attempts (retries,
/// hedges) withdraw. Lock-free. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RetryBudget(pub(crate) Arc<Budget>);

impl RetryBudget {
    /// A budget on its own.
    pub fn new(cfg: &super::BudgetConfig) -> Self {
        RetryBudget(Arc::new(Budget::new(cfg)))
    }

    /// Records a call.
    #[inline]
    pub fn deposit(&self) {
        self.0.deposit();
    }

    /// Spends one extra attempt if the budget allows it.
    pub fn withdraw(&self) -> bool {
        self.0.withdraw()
    }

    /// Extra attempts available now.
    pub fn available(&self) -> u32 {
        self.0.available()
    }
}
