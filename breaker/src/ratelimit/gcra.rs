//! GCRA (the generic cell rate algorithm) in one atomic word, and the handle.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::*};
use std::time::Duration;

use tokio::time::Instant;

use super::coarse::Coarse;
use super::config::{Config, Mode};
use super::error::Rejected;
use crate::util::{CachePadded, InvalidConfig};

/// The limiter state: the theoretical arrival time (TAT) of the next call, in nanoseconds after
/// `epoch`. A call at `now` is allowed when `max(tat, now) + T - now <= tau`, and moves the TAT
/// to `max(tat, now) + T` (one CAS).
/// Receives a rate limiter's events; statically dispatched, free when unused (`()`).
pub trait Listener: Send + Sync + 'static {
    /// A call was turned away.
    fn on_rejection(&self, _name: &str, _rejected: &Rejected) {}
}

impl Listener for () {}

pub(crate) struct Gcra<L = ()> {
    tat: CachePadded<AtomicU64>,
    // Emission interval T and burst tolerance tau = T * burst, in nanoseconds; replaced on
    // reconfigure, read with the TAT.
    t: AtomicU64,
    tau: AtomicU64,
    mode: AtomicU8,
    max_wait: AtomicU64,
    rejected: AtomicU64,
    epoch: Instant,
    // `Some`: time is read from the coarse clock (nanoseconds on its own scale), not `Instant`.
    coarse: Option<Coarse>,
    name: Box<str>,
    listener: L,
}

impl<L> fmt::Debug for Gcra<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gcra")
            .field("emission_interval_ns", &self.t.load(Relaxed))
            .field("tolerance_ns", &self.tau.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Gcra {
    pub(crate) fn new(cfg: &Config, epoch: Instant) -> Self {
        Self::with_listener(cfg, epoch, "".into(), ())
    }
}

impl<L: Listener> Gcra<L> {
    pub(crate) fn with_listener(cfg: &Config, epoch: Instant, name: Box<str>, listener: L) -> Self {
        let g = Gcra {
            tat: CachePadded(AtomicU64::new(0)),
            t: AtomicU64::new(0),
            tau: AtomicU64::new(0),
            mode: AtomicU8::new(0),
            max_wait: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            epoch,
            coarse: None,
            name,
            listener,
        };
        g.store(cfg);
        g
    }

    pub(crate) fn store(&self, cfg: &Config) {
        let t = cfg.emission_interval().as_nanos() as u64;
        self.t.store(t, Relaxed);
        self.tau
            .store(t.saturating_mul(u64::from(cfg.burst)), Relaxed);
        self.mode.store(cfg.mode as u8, Relaxed);
        self.max_wait.store(
            cfg.max_wait.as_nanos().min(u128::from(u64::MAX)) as u64,
            Relaxed,
        );
    }

    pub(crate) fn mode(&self) -> Mode {
        if self.mode.load(Relaxed) == Mode::Backpressure as u8 {
            Mode::Backpressure
        } else {
            Mode::Shed
        }
    }

    pub(crate) fn max_wait_nanos(&self) -> u64 {
        self.max_wait.load(Relaxed)
    }

    /// Switches to the coarse clock. Only before the first call: the TAT is on the clock's scale.
    pub(crate) fn with_coarse_clock(mut self) -> Self {
        self.coarse = Some(Coarse::get());
        self
    }

    /// Nanoseconds on the limiter's clock: since `epoch` (tokio's `Instant`, so paused time in
    /// tests), or the coarse clock's reading. (Integer `as_secs`/`subsec_nanos` math instead of
    /// `as_nanos` measured the same under callgrind: the cost is std's `Instant` subtraction.)
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        if let Some(c) = self.coarse {
            return c.now();
        }
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos() as u64
    }

    /// Takes a permit at `now`, or says how long until one is free (nanoseconds).
    #[inline]
    pub(crate) fn try_acquire_at(&self, now: u64) -> Result<(), u64> {
        self.reserve_at(now, 0).map(|_| ())
    }

    /// Reserves the next permit if it comes within `max_wait` nanoseconds: `Ok(wait)` is when
    /// it may be used (0: now). `Err(wait)` when it comes later; nothing is reserved then.
    /// Reserving moves the TAT, so waiters are served in the order they reserved.
    #[inline]
    pub(crate) fn reserve_at(&self, now: u64, max_wait: u64) -> Result<u64, u64> {
        let t = self.t.load(Relaxed);
        let tau = self.tau.load(Relaxed);
        let mut tat = self.tat.load(Relaxed);
        loop {
            let new_tat = tat.max(now) + t;
            let wait = (new_tat - now).saturating_sub(tau);
            if wait > max_wait {
                return Err(wait);
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, AcqRel, Relaxed)
            {
                Ok(_) => return Ok(wait),
                Err(cur) => tat = cur,
            }
        }
    }

    #[inline]
    pub(crate) fn try_acquire(&self) -> Result<(), u64> {
        self.try_acquire_at(self.now())
    }

    /// Takes a permit now and says how many more would be allowed right after it and in how
    /// many nanoseconds the limiter is back to a full burst; or how long until a permit is
    /// free (nanoseconds).
    pub(crate) fn try_acquire_counted(&self) -> Result<(u32, u64), u64> {
        let now = self.now();
        self.reserve_at(now, 0)?;
        let t = self.t.load(Relaxed).max(1);
        let tau = self.tau.load(Relaxed);
        let tat = self.tat.load(Relaxed).max(now);
        let remaining = (tau + now).saturating_sub(tat) / t;
        Ok((remaining.min(u64::from(u32::MAX)) as u32, tat - now))
    }

    pub(crate) fn reject(&self, wait_ns: u64) -> Rejected {
        self.rejected.fetch_add(1, Relaxed);
        let r = Rejected {
            retry_after: Duration::from_nanos(wait_ns),
        };
        self.listener.on_rejection(&self.name, &r);
        r
    }

    /// Whether the limiter is in the same state as a fresh one (its TAT is in the past), so a
    /// keyed limiter may forget it.
    pub(crate) fn is_idle_at(&self, now: u64) -> bool {
        self.tat.load(Relaxed) <= now
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let t = self.t.load(Relaxed).max(1);
        let tau = self.tau.load(Relaxed);
        let tat = self.tat.load(Relaxed).max(now);
        // Calls allowed right now: how many more T steps fit under the tolerance.
        let available = (tau + now).saturating_sub(tat) / t;
        Snapshot {
            available: available.min(u64::from(u32::MAX)) as u32,
            rejected_total: self.rejected.load(Relaxed),
        }
    }
}

/// A point-in-time view of a rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Calls that would be allowed right now, back to back.
    pub available: u32,
    /// Calls rejected since the limiter was built.
    pub rejected_total: u64,
}

/// Controls a rate limiter: snapshot and live reconfiguration. Cheap to clone.
pub struct Handle<L = ()> {
    pub(crate) gcra: Arc<Gcra<L>>,
}

impl<L> Clone for Handle<L> {
    fn clone(&self) -> Self {
        Self {
            gcra: self.gcra.clone(),
        }
    }
}

impl<L> fmt::Debug for Handle<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.gcra.fmt(f)
    }
}

impl<L: Listener> Handle<L> {
    /// Permits available now and rejections so far.
    pub fn snapshot(&self) -> Snapshot {
        self.gcra.snapshot()
    }

    /// Applies a new rate, burst or mode live; the limiter's state (the calls already made) is
    /// kept. A bad config is refused and the old one kept.
    pub fn reconfigure(&self, cfg: Config) -> Result<(), InvalidConfig> {
        cfg.validate()?;
        self.gcra.store(&cfg);
        Ok(())
    }
}
