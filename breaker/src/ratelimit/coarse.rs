//! A coarse monotonic clock: one atomic load per read, kept up to date by a background thread.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the ticker thread advances the coarse clock.
pub const TICK: Duration = Duration::from_millis(1);

struct Ticker {
    base: Instant,
    now: AtomicU64,
}

static TICKER: OnceLock<&'static Ticker> = OnceLock::new();

fn ticker() -> &'static Ticker {
    TICKER.get_or_init(|| {
        let t: &'static Ticker = Box::leak(Box::new(Ticker {
            base: Instant::now(),
            now: AtomicU64::new(0),
        }));
        std::thread::Builder::new()
            .name("palisade-coarse-clock".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    t.now.store(nanos_since(t.base), Ordering::Release);
                }
            })
            .expect("spawn the coarse clock thread");
        t
    })
}

fn nanos_since(base: Instant) -> u64 {
    let d = Instant::now().saturating_duration_since(base);
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// The coarse clock: nanoseconds since the process's first coarse limiter, as of the ticker
/// thread's last tick. Never ahead of the real clock; behind it by up to one [`TICK`] (more while
/// the ticker thread waits for a core).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Coarse(&'static Ticker);

impl std::fmt::Debug for Ticker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticker").finish_non_exhaustive()
    }
}

impl Coarse {
    /// Starts the ticker thread on first use.
    pub(crate) fn get() -> Self {
        Self(ticker())
    }

    #[inline]
    pub(crate) fn now(self) -> u64 {
        self.0.now.load(Ordering::Acquire)
    }

    /// The exact time on the same scale, for tests.
    #[cfg(test)]
    pub(crate) fn exact(self) -> u64 {
        nanos_since(self.0.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_clock_advances_and_never_runs_ahead() {
        let c = Coarse::get();
        let first = c.now();
        assert!(first <= c.exact());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = first;
        // Poll (bounded) until the ticker has moved the clock on at least twice.
        while last < first + 2 * TICK.as_nanos() as u64 {
            assert!(
                Instant::now() < deadline,
                "the coarse clock did not advance"
            );
            let now = c.now();
            assert!(now >= last, "the coarse clock went back");
            assert!(
                now <= c.exact(),
                "the coarse clock ran ahead of the real one"
            );
            last = now;
            std::thread::yield_now();
        }
    }
}
