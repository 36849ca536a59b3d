//! A lock-free log-scale latency histogram with a cached percentile.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

// Values below 4 µs exactly, then four sub-buckets per power of two, up to 2^42 µs.
const BUCKETS: usize = 4 + 4 * 40;
const RECOMPUTE_EVERY: u64 = 32;

fn bucket(us: u64) -> usize {
    if us < 4 {
        return us as usize;
    }
    let log = 63 - us.leading_zeros() as u64; // >= 2
    let sub = (us >> (log - 2)) & 3;
    ((4 + 4 * (log - 2) + sub) as usize).min(BUCKETS - 1)
}

/// The exclusive upper bound of a bucket, in µs.
fn upper(i: usize) -> u64 {
    if i < 4 {
        return i as u64 + 1;
    }
    let log = (i as u64 - 4) / 4 + 2;
    let sub = (i as u64 - 4) % 4;
    (5 + sub) << (log - 2)
}

/// Latency samples in atomic buckets. Recording is two `fetch_add`s; every 32nd sample also
/// recomputes the percentile (a scan of 164 counters) into a cached word that the request path
/// reads with one load. Old samples decay: when the histogram holds twice the window, every
/// bucket is halved.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    recorded: AtomicU64,
    cached_us: AtomicU64,
    percentile: f64,
    min_samples: u64,
    window: u64,
}

impl Histogram {
    pub(crate) fn new(percentile: f64, min_samples: u32, window: u32) -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            recorded: AtomicU64::new(0),
            cached_us: AtomicU64::new(0),
            percentile: percentile.clamp(0.0, 1.0),
            min_samples: u64::from(min_samples.max(1)),
            window: u64::from(window.max(min_samples).max(1)),
        }
    }

    pub(crate) fn record(&self, us: u64) {
        self.buckets[bucket(us)].fetch_add(1, Relaxed);
        let n = self.recorded.fetch_add(1, Relaxed) + 1;
        if n.is_multiple_of(RECOMPUTE_EVERY) || n == self.min_samples {
            self.recompute();
        }
    }

    fn recompute(&self) {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total < self.min_samples {
            return;
        }
        let target = ((total as f64) * self.percentile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                self.cached_us.store(upper(i), Relaxed);
                break;
            }
        }
        if total > 2 * self.window {
            for b in self.buckets.iter() {
                let _ = b.fetch_update(Relaxed, Relaxed, |v| Some(v / 2));
            }
        }
    }

    /// The percentile in µs, 0 until `min_samples` were recorded.
    #[inline]
    pub(crate) fn percentile_us(&self) -> u64 {
        self.cached_us.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for us in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            9,
            15,
            16,
            100,
            1000,
            12_345,
            1 << 30,
        ] {
            let b = bucket(us);
            assert!(b >= last);
            assert!(upper(b) > us, "{us} -> {b} -> {}", upper(b));
            // At most 25% above the value (four sub-buckets per power of two).
            assert!(upper(b) as f64 <= (us as f64 + 1.0) * 1.25 + 1.0, "{us}");
            last = b;
        }
    }

    #[test]
    fn percentile_follows_the_samples() {
        let h = Histogram::new(0.9, 10, 1000);
        for _ in 0..9 {
            h.record(10_000);
        }
        assert_eq!(h.percentile_us(), 0);
        h.record(10_000);
        let p = h.percentile_us();
        assert!((10_000..=12_500).contains(&p), "{p}");
        // 90% fast, 10% slow: p90 stays fast; then mostly slow: p90 goes slow.
        for i in 0..100 {
            h.record(if i % 10 == 0 { 200_000 } else { 10_000 });
        }
        assert!(h.percentile_us() <= 12_500);
        for _ in 0..3000 {
            h.record(200_000);
        }
        assert!(h.percentile_us() >= 200_000);
    }
}
