//! Per-endpoint counters shared between the balancer and the response futures of calls in flight.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Counters of one endpoint. Response futures update them lock-free, except the Peak-EWMA
/// estimate which sits behind a mutex held for a few arithmetic operations (never across a call).
#[derive(Debug)]
pub(crate) struct EndpointStats {
    pub(crate) in_flight: AtomicU32,
    pub(crate) consecutive_failures: AtomicU32,
    /// Calls of the current outlier-detection interval.
    pub(crate) interval_successes: AtomicU64,
    pub(crate) interval_failures: AtomicU64,
    pub(crate) total_successes: AtomicU64,
    pub(crate) total_failures: AtomicU64,
    /// Set by a response future when the consecutive-failure threshold is reached; the balancer
    /// acts on it in its next `poll_ready`.
    pub(crate) eject_request: AtomicBool,
    rtt: Mutex<RttEstimate>,
}

#[derive(Debug, Clone, Copy)]
struct RttEstimate {
    rtt_ns: f64,
    update_at: Instant,
    sampled: bool,
}

impl EndpointStats {
    pub(crate) fn new(default_rtt: Duration, now: Instant) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            interval_successes: AtomicU64::new(0),
            interval_failures: AtomicU64::new(0),
            total_successes: AtomicU64::new(0),
            total_failures: AtomicU64::new(0),
            eject_request: AtomicBool::new(false),
            rtt: Mutex::new(RttEstimate {
                rtt_ns: nanos(default_rtt).max(1.0),
                update_at: now,
                sampled: false,
            }),
        }
    }

    /// The Peak-EWMA estimate decayed to `now` (written back, as tower does).
    pub(crate) fn rtt_estimate(&self, now: Instant, decay_ns: f64) -> f64 {
        let mut e = self.rtt.lock().unwrap_or_else(|p| p.into_inner());
        e.update(0.0, now, decay_ns)
    }

    /// Records an RTT sample.
    pub(crate) fn record_rtt(&self, rtt: Duration, now: Instant, decay_ns: f64) {
        let mut e = self.rtt.lock().unwrap_or_else(|p| p.into_inner());
        e.update(nanos(rtt), now, decay_ns);
        e.sampled = true;
    }

    /// The estimate without decay, if any sample was recorded.
    pub(crate) fn rtt_snapshot(&self) -> Option<Duration> {
        let e = self.rtt.lock().unwrap_or_else(|p| p.into_inner());
        e.sampled.then(|| Duration::from_nanos(e.rtt_ns as u64))
    }

    pub(crate) fn reset_default_rtt(&self, default_rtt: Duration) {
        let mut e = self.rtt.lock().unwrap_or_else(|p| p.into_inner());
        if !e.sampled {
            e.rtt_ns = nanos(default_rtt).max(1.0);
        }
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

impl RttEstimate {
    /// Peak-EWMA: a slower sample replaces the estimate at once; a faster one pulls it down by
    /// `1 - exp(-elapsed / decay)`.
    fn update(&mut self, rtt_ns: f64, now: Instant, decay_ns: f64) -> f64 {
        if self.rtt_ns < rtt_ns {
            self.rtt_ns = rtt_ns;
        } else {
            let elapsed = nanos(now.saturating_duration_since(self.update_at));
            let decay = (-elapsed / decay_ns).exp();
            self.rtt_ns = self.rtt_ns * decay + rtt_ns * (1.0 - decay);
        }
        self.update_at = now;
        self.rtt_ns
    }
}

pub(crate) fn nanos(d: Duration) -> f64 {
    d.as_secs() as f64 * 1e9 + f64::from(d.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn peak_then_decay() {
        let decay = nanos(Duration::from_secs(1));
        let start = Instant::now();
        let s = EndpointStats::new(Duration::from_millis(10), start);
        assert_eq!(s.rtt_snapshot(), None);
        // A slower sample is taken as is.
        s.record_rtt(Duration::from_millis(100), start, decay);
        assert_eq!(s.rtt_snapshot(), Some(Duration::from_millis(100)));
        // After one decay period with no sample the estimate is e^-1 of the peak.
        let est = s.rtt_estimate(start + Duration::from_secs(1), decay);
        let want = 100e6 * (-1.0f64).exp();
        assert!((est - want).abs() < 1.0, "{est} vs {want}");
        // A faster sample right away barely moves it.
        s.record_rtt(
            Duration::from_millis(1),
            start + Duration::from_secs(1),
            decay,
        );
        let e2 = s.rtt_snapshot().unwrap().as_nanos() as f64;
        assert!((e2 - want).abs() < 1.0, "{e2}");
    }
}
