//! The lock-free retry budget.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::*};

use tokio::time::Instant;

use super::config::BudgetConfig;

const UNIT: i64 = 1000; // one retry, in milli-retries

/// Retries earned by calls (`ratio` per call) and by time (`min_per_second`), spent one per
/// retry, saved up to `max_reserve`. All state is two atomics; a call deposits with one load
/// (when the reserve is full) or one `fetch_add`.
#[derive(Debug)]
pub(crate) struct Budget {
    balance: AtomicI64,
    deposit: AtomicI64,
    cap: AtomicI64,
    per_second: AtomicU64,
    // Time up to which the per-second allowance has been paid in, in ns after `epoch`.
    paid_until: AtomicU64,
    epoch: Instant,
}

impl Budget {
    pub(crate) fn new(cfg: &BudgetConfig) -> Self {
        let b = Budget {
            balance: AtomicI64::new(0),
            deposit: AtomicI64::new(0),
            cap: AtomicI64::new(0),
            per_second: AtomicU64::new(0),
            paid_until: AtomicU64::new(0),
            epoch: Instant::now(),
        };
        b.store(cfg);
        // A fresh budget starts with one second of the minimum allowance.
        b.balance.store(
            i64::from(cfg.min_per_second.min(cfg.max_reserve)) * UNIT,
            Relaxed,
        );
        b
    }

    pub(crate) fn store(&self, cfg: &BudgetConfig) {
        self.deposit
            .store((cfg.ratio * UNIT as f64) as i64, Relaxed);
        self.cap
            .store(i64::from(cfg.max_reserve.max(1)) * UNIT, Relaxed);
        self.per_second
            .store(u64::from(cfg.min_per_second), Relaxed);
    }

    /// A call was made.
    #[inline]
    pub(crate) fn deposit(&self) {
        // Reading first keeps a full reserve read-only: no cache-line ping-pong between cores.
        if self.balance.load(Relaxed) < self.cap.load(Relaxed) {
            self.balance.fetch_add(self.deposit.load(Relaxed), Relaxed);
        }
    }

    /// Spends one retry if the budget allows it.
    pub(crate) fn withdraw(&self) -> bool {
        let cap = self.cap.load(Relaxed);
        if self
            .balance
            .fetch_update(AcqRel, Relaxed, |b| (b >= UNIT).then(|| b.min(cap) - UNIT))
            .is_ok()
        {
            return true;
        }
        self.pay_per_second(cap) && self.withdraw_once()
    }

    fn withdraw_once(&self) -> bool {
        self.balance
            .fetch_update(AcqRel, Relaxed, |b| (b >= UNIT).then_some(b - UNIT))
            .is_ok()
    }

    /// Pays in the per-second allowance earned since it was last paid. Whoever wins the CAS on
    /// `paid_until` pays; others see the result in the balance.
    fn pay_per_second(&self, cap: i64) -> bool {
        let per_second = self.per_second.load(Relaxed);
        if per_second == 0 {
            return false;
        }
        let now = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos() as u64;
        let paid = self.paid_until.load(Acquire);
        let per_retry = 1_000_000_000 / per_second;
        let earned = now.saturating_sub(paid) / per_retry.max(1);
        if earned == 0 {
            return false;
        }
        if self
            .paid_until
            .compare_exchange(paid, paid + earned * per_retry, AcqRel, Relaxed)
            .is_err()
        {
            return true; // someone else paid: try the balance again
        }
        let add = (earned as i64).saturating_mul(UNIT);
        let _ = self
            .balance
            .fetch_update(AcqRel, Relaxed, |b| Some(b.saturating_add(add).min(cap)));
        true
    }

    /// Whole retries available now (without the per-second allowance not yet paid in).
    pub(crate) fn available(&self) -> u32 {
        (self.balance.load(Relaxed).max(0) / UNIT) as u32
    }
}
