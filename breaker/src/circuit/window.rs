//! Lock-free sliding windows of call outcomes.
//!
//! * [`CountWindow`]: the last `size` calls, a ring of one-byte slots plus running failure and
//!   slow counters. A success that replaces a success costs one `fetch_add` and one `swap`.
//! * [`TimeWindow`]: `buckets` buckets covering `length`; each counter word packs the bucket's
//!   epoch (high 32 bits) and its count (low 32 bits), so a bucket is reset by the CAS that
//!   starts its new epoch and no count is lost to a reset race.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::config::WindowConfig;

/// Counts read from a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn new(cfg: &WindowConfig) -> Self {
        match *cfg {
            WindowConfig::Count { size } => Window::Count(CountWindow::new(size)),
            WindowConfig::Time { length, buckets } => {
                Window::Time(TimeWindow::new(length, buckets))
            }
        }
    }

    /// Records one outcome at `now_nanos` (ignored by count windows). Returns the number of
    /// calls in the window after the record when it is cheap to know (count windows).
    #[inline]
    pub(crate) fn record(&self, now_nanos: u64, failed: bool, slow: bool) -> Option<u64> {
        match self {
            Window::Count(w) => Some(w.record(failed, slow)),
            Window::Time(w) => {
                w.record(now_nanos, failed, slow);
                None
            }
        }
    }

    pub(crate) fn counts(&self, now_nanos: u64) -> Counts {
        match self {
            Window::Count(w) => w.counts(),
            Window::Time(w) => w.counts(now_nanos),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            Window::Count(w) => w.reset(),
            Window::Time(w) => w.reset(),
        }
    }

    pub(crate) fn needs_clock(&self) -> bool {
        matches!(self, Window::Time(_))
    }
}

const FAIL: u8 = 1;
const SLOW: u8 = 2;

#[derive(Debug)]
pub(crate) struct CountWindow {
    // Own cache line: the one word every recording thread increments.
    next: CachePadded<AtomicU64>,
    failures: AtomicI64,
    slow: AtomicI64,
    size: u64,
    // `i % size` without a division (Lemire's fastmod; see `Fastmod`).
    rem: Fastmod,
    slots: Box<[AtomicU8]>,
}

/// `i % d` by two multiplications instead of a `div` (tens of cycles on x86): with
/// `m = ceil(2^128 / d)`, `i % d` is the high 128 bits of `(m * i mod 2^128) * d`. Exact for
/// every 64-bit `i` and every `d` below 2^64 (Lemire, Kaser and Kurz, "Faster remainder by direct
/// computation", 2019: 128 bits of precision cover a 64-bit numerator and divisor).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fastmod {
    m: u128,
    d: u64,
}

impl Fastmod {
    pub(crate) fn new(d: u64) -> Self {
        assert!(d > 0, "fastmod by zero");
        Self {
            m: (u128::MAX / u128::from(d)).wrapping_add(1),
            d,
        }
    }

    #[inline]
    pub(crate) fn rem(self, i: u64) -> u64 {
        if self.d == 1 {
            return 0; // m wrapped to 0
        }
        let low = self.m.wrapping_mul(u128::from(i));
        let d = u128::from(self.d);
        let hi = u128::from((low >> 64) as u64) * d;
        let lo = (u128::from(low as u64) * d) >> 64;
        ((hi + lo) >> 64) as u64
    }
}

impl CountWindow {
    fn new(size: u32) -> Self {
        Self {
            next: CachePadded(AtomicU64::new(0)),
            failures: AtomicI64::new(0),
            slow: AtomicI64::new(0),
            size: u64::from(size),
            rem: Fastmod::new(u64::from(size)),
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    #[inline(always)]
    pub(crate) fn record(&self, failed: bool, slow: bool) -> u64 {
        let i = self.next.0.fetch_add(1, Relaxed);
        let new = (u8::from(failed) * FAIL) | (u8::from(slow) * SLOW);
        let slot = &self.slots[self.rem.rem(i) as usize];
        // Steady state (a success replacing a success): read only, so the slots' cache lines
        // stay shared between cores. Leaving an equal value in place is the same as writing it.
        if slot.load(Relaxed) == new {
            return (i + 1).min(self.size);
        }
        let old = slot.swap(new, Relaxed);
        if old != new {
            let df = i64::from(new & FAIL) - i64::from(old & FAIL);
            if df != 0 {
                self.failures.fetch_add(df, Relaxed);
            }
            let ds = i64::from((new & SLOW) >> 1) - i64::from((old & SLOW) >> 1);
            if ds != 0 {
                self.slow.fetch_add(ds, Relaxed);
            }
        }
        (i + 1).min(self.size)
    }

    pub(crate) fn counts(&self) -> Counts {
        let calls = self.next.0.load(Relaxed).min(self.size);
        // Racing writers can leave a counter one behind its slots for an instant; clamp so a
        // reader never sees a negative or an impossible count.
        let clamp = |v: i64| (v.max(0) as u64).min(calls);
        Counts {
            calls,
            failures: clamp(self.failures.load(Relaxed)),
            slow: clamp(self.slow.load(Relaxed)),
        }
    }

    fn reset(&self) {
        for s in self.slots.iter() {
            s.store(0, Relaxed);
        }
        self.failures.store(0, Relaxed);
        self.slow.store(0, Relaxed);
        self.next.0.store(0, Relaxed);
    }
}

#[derive(Debug)]
struct Bucket {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_nanos: u64,
    buckets: Box<[CachePadded<Bucket>]>,
}

const EPOCH_SHIFT: u32 = 32;
const COUNT: u64 = (1 << EPOCH_SHIFT) - 1;

impl TimeWindow {
    fn new(length: Duration, buckets: u32) -> Self {
        let bucket_nanos = (length.as_nanos() / u128::from(buckets)).max(1) as u64;
        Self {
            bucket_nanos,
            buckets: (0..buckets)
                .map(|_| {
                    CachePadded(Bucket {
                        calls: AtomicU64::new(0),
                        failures: AtomicU64::new(0),
                        slow: AtomicU64::new(0),
                    })
                })
                .collect(),
        }
    }

    #[inline]
    fn epoch(&self, now_nanos: u64) -> u64 {
        // +1 so that epoch 0 (all zero words) never matches a real bucket.
        now_nanos / self.bucket_nanos + 1
    }

    #[inline]
    fn record(&self, now_nanos: u64, failed: bool, slow: bool) {
        let e = self.epoch(now_nanos);
        let b = &self.buckets[(e % self.buckets.len() as u64) as usize].0;
        let e = e as u32;
        bump(&b.calls, e);
        if failed {
            bump(&b.failures, e);
        }
        if slow {
            bump(&b.slow, e);
        }
    }

    fn counts(&self, now_nanos: u64) -> Counts {
        let e = self.epoch(now_nanos) as u32;
        let n = self.buckets.len() as u32;
        let live = |v: u64| {
            let age = e.wrapping_sub((v >> EPOCH_SHIFT) as u32);
            if v != 0 && age < n { v & COUNT } else { 0 }
        };
        let mut c = Counts::default();
        for b in self.buckets.iter() {
            c.calls += live(b.0.calls.load(Relaxed));
            c.failures += live(b.0.failures.load(Relaxed));
            c.slow += live(b.0.slow.load(Relaxed));
        }
        c.failures = c.failures.min(c.calls);
        c.slow = c.slow.min(c.calls);
        c
    }

    fn reset(&self) {
        for b in self.buckets.iter() {
            b.0.calls.store(0, Relaxed);
            b.0.failures.store(0, Relaxed);
            b.0.slow.store(0, Relaxed);
        }
    }
}

/// Adds one to an epoch-tagged counter, starting the bucket's new epoch if it is stale.
#[inline]
fn bump(word: &AtomicU64, epoch: u32) {
    let mut v = word.load(Relaxed);
    loop {
        let current = (v >> EPOCH_SHIFT) as u32;
        if current == epoch {
            word.fetch_add(1, Relaxed);
            return;
        }
        if (current.wrapping_sub(epoch) as i32) > 0 && v != 0 {
            // The bucket already belongs to a newer epoch: this outcome is older than the
            // window's newest bucket and would land in the wrong period; drop it.
            return;
        }
        match word.compare_exchange_weak(v, (u64::from(epoch) << EPOCH_SHIFT) | 1, Relaxed, Relaxed)
        {
            Ok(_) => return,
            Err(cur) => v = cur,
        }
    }
}

/// Pads and aligns a value to a cache line so hot counters do not share one.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct CachePadded<T>(pub(crate) T);

#[cfg(test)]
mod tests {
    #[test]
    fn fastmod_matches_the_remainder() {
        let edges = [
            0,
            1,
            2,
            99,
            100,
            101,
            1 << 32,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for d in [
            1,
            2,
            3,
            7,
            10,
            64,
            100,
            1000,
            65_537,
            999_983,
            1_000_000,
            u64::MAX,
        ] {
            let f = super::Fastmod::new(d);
            for i in edges.into_iter().chain(edges.map(|e| e.wrapping_add(d))) {
                assert_eq!(f.rem(i), i % d, "{i} % {d}");
            }
            for _ in 0..100_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                assert_eq!(f.rem(x), x % d, "{x} % {d}");
                assert_eq!(f.rem(x >> 24), (x >> 24) % d, "{} % {d}", x >> 24);
            }
        }
    }

    use super::*;

    #[test]
    fn count_window_slides() {
        let w = CountWindow::new(4);
        for _ in 0..4 {
            w.record(true, false);
        }
        assert_eq!(
            w.counts(),
            Counts {
                calls: 4,
                failures: 4,
                slow: 0
            }
        );
        w.record(false, true);
        w.record(false, true);
        assert_eq!(
            w.counts(),
            Counts {
                calls: 4,
                failures: 2,
                slow: 2
            }
        );
        for _ in 0..4 {
            w.record(false, false);
        }
        assert_eq!(
            w.counts(),
            Counts {
                calls: 4,
                failures: 0,
                slow: 0
            }
        );
        w.reset();
        assert_eq!(w.counts(), Counts::default());
    }

    #[test]
    fn time_window_expires_old_buckets() {
        let sec = 1_000_000_000;
        let w = TimeWindow::new(Duration::from_secs(10), 10);
        w.record(0, true, false);
        w.record(sec, false, false);
        w.record(sec, false, true);
        assert_eq!(
            w.counts(sec),
            Counts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        // 9.5 s later the first bucket (t=0) is out of the window, the second is still in.
        assert_eq!(
            w.counts(10 * sec + sec / 2),
            Counts {
                calls: 2,
                failures: 0,
                slow: 1
            }
        );
        assert_eq!(w.counts(11 * sec), Counts::default());
        // A bucket slot reused by a later epoch starts from zero.
        w.record(10 * sec, false, false);
        assert_eq!(
            w.counts(10 * sec),
            Counts {
                calls: 3,
                failures: 0,
                slow: 1
            }
        );
    }

    #[test]
    fn count_window_counts_add_up_under_threads() {
        let w = std::sync::Arc::new(CountWindow::new(64));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        w.record((i + t) % 3 == 0, i % 5 == 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // After all writers finished, the counters equal what the slots hold.
        let c = w.counts();
        let fails = w
            .slots
            .iter()
            .filter(|s| s.load(Relaxed) & FAIL != 0)
            .count() as u64;
        let slow = w
            .slots
            .iter()
            .filter(|s| s.load(Relaxed) & SLOW != 0)
            .count() as u64;
        assert_eq!(c.calls, 64);
        assert_eq!((c.failures, c.slow), (fails, slow));
    }
}
