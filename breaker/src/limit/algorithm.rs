//! Limit algorithms, after Netflix's concurrency-limits: AIMD, Vegas and Gradient2.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// One finished call, as the limit algorithms see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it started.
    pub started: Instant,
    /// Its latency.
    pub rtt: Duration,
    /// Calls in flight when it started (itself included).
    pub in_flight: u32,
    /// Whether it failed in a way that signals overload (the classifier's `Failure`: a timeout,
    /// a 503...).
    pub dropped: bool,
}

/// Computes a concurrency limit from samples. `update` runs on the completion of every call, so
/// implementations must be short; the built-in ones take a lock with `try_lock` and skip the
/// sample when another completion holds it (sampling is enough for a control loop, and nothing
/// ever waits).
pub trait Algorithm: Send + Sync + 'static {
    /// The limit to start with.
    fn initial_limit(&self) -> u32;
    /// Feeds one sample; returns the new limit, or `None` when it is unchanged or the sample was
    /// skipped.
    fn update(&self, sample: Sample) -> Option<u32>;
}

fn clamp(v: f64, min: u32, max: u32) -> f64 {
    v.max(f64::from(min)).min(f64::from(max))
}

/// Additive increase, multiplicative decrease: +1 per round trip while the limit is in use
/// (`+1/limit` per sample, TCP's congestion avoidance), times `backoff` (0.9) on a drop or a call
/// slower than `timeout`. (Netflix's `AIMDLimit` adds 1 per *sample*, which at thousands of
/// calls per second overshoots the knee by a whole round trip's worth of calls.)
///
/// Like TCP, it decreases at most once per round trip: a drop from a call that started before
/// the last decrease was caused by the old limit and is not counted again. (Decreasing on every
/// such sample, as Netflix's `AIMDLimit` does, collapses the limit to its minimum after each
/// congestion event, when every call in flight comes back slow at once.)
pub struct Aimd {
    min: u32,
    max: u32,
    backoff: f64,
    timeout: Duration,
    state: Mutex<AimdState>,
    initial: u32,
}

#[derive(Debug)]
struct AimdState {
    limit: f64,
    last_decrease: Option<Instant>,
}

impl fmt::Debug for Aimd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aimd")
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Aimd {
    /// Starts at `initial`, between `min` and `max`, backoff 0.9, no timeout.
    pub fn new(initial: u32, min: u32, max: u32) -> Self {
        Self {
            min: min.max(1),
            max: max.max(min.max(1)),
            backoff: 0.9,
            timeout: Duration::MAX,
            state: Mutex::new(AimdState {
                limit: f64::from(initial),
                last_decrease: None,
            }),
            initial,
        }
    }

    /// The multiplicative decrease (0.5..1).
    #[must_use]
    pub fn backoff(mut self, ratio: f64) -> Self {
        self.backoff = ratio.clamp(0.5, 0.999);
        self
    }

    /// A call slower than this counts as a drop.
    #[must_use]
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
}

impl Algorithm for Aimd {
    fn initial_limit(&self) -> u32 {
        self.initial
    }

    fn update(&self, s: Sample) -> Option<u32> {
        let mut st = self.state.try_lock().ok()?;
        let old = st.limit;
        if s.dropped || s.rtt > self.timeout {
            if st.last_decrease.is_some_and(|t| s.started < t) {
                return None;
            }
            st.limit = clamp(old * self.backoff, self.min, self.max);
            st.last_decrease = Some(s.started + s.rtt);
        } else if f64::from(s.in_flight) * 2.0 >= old {
            st.limit = clamp(old + 1.0 / old.max(1.0), self.min, self.max);
        }
        (st.limit.floor() != old.floor()).then_some(st.limit as u32)
    }
}

/// TCP Vegas: estimates the queue from the ratio of the no-load latency (the smallest seen) to
/// the current one, `queue = limit * (1 - rtt_noload / rtt)`, and grows the limit while the
/// queue is short (`< alpha = 3 log10(limit)`), shrinks it when long (`> beta = 6 log10(limit)`)
/// or on a drop.
pub struct Vegas {
    min: u32,
    max: u32,
    smoothing: f64,
    state: Mutex<VegasState>,
    initial: u32,
}

#[derive(Debug)]
struct VegasState {
    limit: f64,
    rtt_noload: Option<Duration>,
}

impl fmt::Debug for Vegas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vegas")
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Vegas {
    /// Starts at `initial`, between `min` and `max`, no smoothing.
    pub fn new(initial: u32, min: u32, max: u32) -> Self {
        Self {
            min: min.max(1),
            max: max.max(min.max(1)),
            smoothing: 1.0,
            state: Mutex::new(VegasState {
                limit: f64::from(initial),
                rtt_noload: None,
            }),
            initial,
        }
    }

    /// Weight of a new estimate (0..=1).
    #[must_use]
    pub fn smoothing(mut self, s: f64) -> Self {
        self.smoothing = s.clamp(0.01, 1.0);
        self
    }
}

impl Algorithm for Vegas {
    fn initial_limit(&self) -> u32 {
        self.initial
    }

    fn update(&self, s: Sample) -> Option<u32> {
        let mut st = self.state.try_lock().ok()?;
        if s.rtt.is_zero() {
            return None;
        }
        let noload = match st.rtt_noload {
            Some(n) if n <= s.rtt => n,
            _ => {
                st.rtt_noload = Some(s.rtt);
                return None;
            }
        };
        let limit = st.limit;
        let log = limit.max(1.0).log10().max(1.0);
        let (alpha, beta, threshold) = (3.0 * log, 6.0 * log, log);
        let queue = (limit * (1.0 - noload.as_secs_f64() / s.rtt.as_secs_f64())).ceil();
        let new = if s.dropped {
            limit - log
        } else if f64::from(s.in_flight) * 2.0 < limit {
            return None; // app-limited: the sample says nothing about capacity
        } else if queue <= threshold {
            limit + beta
        } else if queue < alpha {
            limit + log
        } else if queue > beta {
            limit - log
        } else {
            return None;
        };
        let new = clamp(
            limit * (1.0 - self.smoothing) + new * self.smoothing,
            self.min,
            self.max,
        );
        st.limit = new;
        (new.floor() != limit.floor()).then_some(new as u32)
    }
}

/// Gradient2, after Netflix's `Gradient2Limit`: compares a long-term average of the latency with
/// the latest sample, `gradient = clamp(tolerance * long_rtt / rtt, 0.5, 1)`, and sets
/// `limit = limit * gradient + queue_size`, smoothed (`queue_size = sqrt(limit)` by default, as
/// in Netflix's `GradientLimit`). Drops are ignored (latency drives it); samples taken while the
/// limit is not in use (fewer than half of it in flight) do not move it.
///
/// **Where this differs from Netflix's, and why.** Netflix feeds every sample into the long-term
/// average. Under a load that keeps the limit full, that average catches up with whatever latency
/// the current limit causes, the gradient returns to 1 and the limit grows by `queue_size` per
/// sample again: there is no fixed point, and the limit drifts to its maximum (the old test of
/// this crate saw exactly that against a simulated backend). Here the long-term average follows
/// the latency *down* (an exponential average over `long_window` samples of the samples at or
/// below it) but not *up*, so it estimates the latency without our own queueing, and the limit
/// settles where the queueing it causes equals the tolerance: with a backend of `capacity`
/// workers, at about `tolerance * capacity + queue_size`. When the backend itself becomes slower,
/// the gradient sheds load; once the limit is down at `min` and the latency is still above the
/// tolerance, nothing we do causes it, so the average then follows it up (drift recovery; the
/// other direction keeps Netflix's rule of shrinking the average by 5% whenever it is more than
/// twice the latest sample).
pub struct Gradient2 {
    min: u32,
    max: u32,
    smoothing: f64,
    tolerance: f64,
    queue_size: Option<f64>,
    long_window: u32,
    state: Mutex<Gradient2State>,
    initial: u32,
}

#[derive(Debug)]
struct Gradient2State {
    limit: f64,
    long_rtt: f64,
    samples: u32,
}

impl fmt::Debug for Gradient2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gradient2")
            .field("min", &self.min)
            .field("max", &self.max)
            .field("tolerance", &self.tolerance)
            .finish_non_exhaustive()
    }
}

impl Gradient2 {
    /// Starts at `initial`, between `min` and `max`; smoothing 0.2, tolerance 1.5, long window
    /// 600 samples (Netflix's defaults), queue size `sqrt(limit)`.
    pub fn new(initial: u32, min: u32, max: u32) -> Self {
        Self {
            min: min.max(1),
            max: max.max(min.max(1)),
            smoothing: 0.2,
            tolerance: 1.5,
            queue_size: None,
            long_window: 600,
            state: Mutex::new(Gradient2State {
                limit: f64::from(initial),
                long_rtt: 0.0,
                samples: 0,
            }),
            initial,
        }
    }

    /// Weight of a new estimate (0..=1).
    #[must_use]
    pub fn smoothing(mut self, s: f64) -> Self {
        self.smoothing = s.clamp(0.01, 1.0);
        self
    }

    /// How much slower than the long-term average a call may be before the limit shrinks (>= 1):
    /// the queueing the limit settles at.
    #[must_use]
    pub fn tolerance(mut self, t: f64) -> Self {
        self.tolerance = t.max(1.0);
        self
    }

    /// A fixed growth step instead of `sqrt(limit)` (Netflix's `Gradient2Limit` uses 4).
    #[must_use]
    pub fn queue_size(mut self, q: f64) -> Self {
        self.queue_size = Some(q.max(0.0));
        self
    }

    /// Samples in the long-term average.
    #[must_use]
    pub fn long_window(mut self, n: u32) -> Self {
        self.long_window = n.max(1);
        self
    }
}

impl Algorithm for Gradient2 {
    fn initial_limit(&self) -> u32 {
        self.initial
    }

    fn update(&self, s: Sample) -> Option<u32> {
        let mut st = self.state.try_lock().ok()?;
        let short = s.rtt.as_secs_f64();
        if short <= 0.0 {
            return None;
        }
        let limit = st.limit;
        st.samples = st.samples.saturating_add(1);
        if st.samples <= 10 {
            // Warm-up: a plain mean of the first ten samples.
            st.long_rtt += (short - st.long_rtt) / f64::from(st.samples);
        } else if short <= st.long_rtt || limit <= f64::from(self.min) {
            let f = 2.0 / (f64::from(self.long_window) + 1.0);
            st.long_rtt += (short - st.long_rtt) * f;
        }
        // Back to normal after a long overload: let the long average catch up faster.
        if st.long_rtt / short > 2.0 {
            st.long_rtt *= 0.95;
        }
        if f64::from(s.in_flight) < limit / 2.0 {
            return None; // app-limited: the sample says nothing about capacity
        }
        let long = st.long_rtt;
        let queue_size = self.queue_size.unwrap_or_else(|| limit.sqrt());
        let gradient = (self.tolerance * long / short).clamp(0.5, 1.0);
        let new = limit * gradient + queue_size;
        let new = clamp(
            limit * (1.0 - self.smoothing) + new * self.smoothing,
            self.min,
            self.max,
        );
        st.limit = new;
        (new.floor() != limit.floor()).then_some(new as u32)
    }
}
