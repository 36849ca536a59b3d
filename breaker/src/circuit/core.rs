//! The breaker's shared state: admission, outcome recording, transitions and the handle.

use std::fmt;
use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::time::Instant;

use super::config::{CancellationPolicy, Config, ConfigError, TripPolicy};
use super::events::{Listener, Transition};
use super::state::{Admission, ProbeSuccess, StateCell, Word};
use super::window::{CachePadded, CountWindow, Counts, Window};
use super::{Rejected, State, TripReason};
use crate::classify::Outcome;

/// The validated config with its window; replaced as a whole on reconfigure.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) cfg: Config,
    pub(crate) window: Arc<Window>,
    failure_rate: Option<f64>,
    slow_rate: Option<f64>,
    slow_threshold: Option<Duration>,
    consecutive: Option<u32>,
    required_successes: u32,
}

impl Core {
    fn new(cfg: Config, window: Arc<Window>) -> Self {
        let mut core = Core {
            failure_rate: None,
            slow_rate: None,
            slow_threshold: None,
            consecutive: None,
            required_successes: cfg.half_open.required_successes(),
            window,
            cfg,
        };
        for p in &core.cfg.trip {
            match *p {
                TripPolicy::FailureRate(r) => core.failure_rate = Some(r),
                TripPolicy::SlowCallRate { rate, threshold } => {
                    core.slow_rate = Some(rate);
                    core.slow_threshold = Some(threshold);
                }
                TripPolicy::ConsecutiveFailures(n) => core.consecutive = Some(n),
            }
        }
        core
    }

    fn evaluate(&self, counts: Counts, consecutive: u32) -> Option<TripReason> {
        if self.consecutive.is_some_and(|n| consecutive >= n) {
            return Some(TripReason::ConsecutiveFailures);
        }
        if counts.calls < u64::from(self.cfg.minimum_calls) || counts.calls == 0 {
            return None;
        }
        let calls = counts.calls as f64;
        if self
            .failure_rate
            .is_some_and(|r| counts.failures as f64 / calls >= r)
        {
            return Some(TripReason::FailureRate);
        }
        if self
            .slow_rate
            .is_some_and(|r| counts.slow as f64 / calls >= r)
        {
            return Some(TripReason::SlowCallRate);
        }
        None
    }
}

/// What a call admitted by the breaker must report back: the state generation it was admitted
/// in, whether it holds a half-open probe slot and whether it must be timed, packed in one word
/// (`generation << 2 | probe << 1 | timed`) so that reserving and moving it are one register.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

impl Ticket {
    #[inline]
    fn new(generation: u64, probe: bool, timed: bool) -> Self {
        Ticket((generation << 2) | (u64::from(probe) << 1) | u64::from(timed))
    }

    #[inline]
    pub(crate) fn generation(self) -> u64 {
        self.0 >> 2
    }

    #[inline]
    pub(crate) fn probe(self) -> bool {
        self.0 & 2 != 0
    }

    /// Whether the call must be timed (a slow-call policy is in force). The clock is read in
    /// `call`, so time spent waiting for readiness is not counted as latency.
    #[inline]
    pub(crate) fn timed(self) -> bool {
        self.0 & 1 != 0
    }
}

/// A finished call as the breaker records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completion {
    Done(Outcome),
    Cancelled,
}

pub(crate) struct Shared<L> {
    state: CachePadded<StateCell>,
    consecutive: CachePadded<AtomicU32>,
    core: ArcSwap<Core>,
    max_probes: AtomicU32,
    // Deadline of the current Open period (or of the HalfOpen max duration), in nanoseconds since
    // `epoch`, valid for the generation in `deadline_gen`.
    deadline: AtomicU64,
    deadline_gen: AtomicU64,
    opens_in_row: AtomicU32,
    last_reason: AtomicU8,
    rng: AtomicU64,
    epoch: Instant,
    // `'static` breakers only (`fixed`): the window, whose shape cannot change, and the minimum
    // number of calls in force, so that recording needs no config load.
    fixed: bool,
    window: Arc<Window>,
    minimum_calls: AtomicU32,
    name: Box<str>,
    listener: L,
}

impl<L> fmt::Debug for Shared<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &self.state.0.load().kind())
            .finish_non_exhaustive()
    }
}

const NO_DEADLINE_GEN: u64 = u64::MAX;

impl<L: Listener> Shared<L> {
    pub(crate) fn new(name: Box<str>, cfg: Config, listener: L, seed: u64) -> Self {
        Self::build(name, cfg, listener, seed, false)
    }

    /// A breaker whose window shape is fixed for life, for `'static` layers.
    pub(crate) fn new_fixed(name: Box<str>, cfg: Config, listener: L, seed: u64) -> Self {
        Self::build(name, cfg, listener, seed, true)
    }

    fn build(name: Box<str>, cfg: Config, listener: L, seed: u64, fixed: bool) -> Self {
        let window = Arc::new(Window::new(&cfg.window));
        let core = Core::new(cfg, window.clone());
        Self {
            state: CachePadded(StateCell::new(State::Closed, core.slow_threshold.is_some())),
            consecutive: CachePadded(AtomicU32::new(0)),
            max_probes: AtomicU32::new(core.cfg.half_open.probes),
            minimum_calls: AtomicU32::new(core.cfg.minimum_calls),
            core: ArcSwap::from_pointee(core),
            deadline: AtomicU64::new(0),
            deadline_gen: AtomicU64::new(NO_DEADLINE_GEN),
            opens_in_row: AtomicU32::new(0),
            last_reason: AtomicU8::new(0),
            rng: AtomicU64::new(seed),
            epoch: Instant::now(),
            fixed,
            window,
            name,
            listener,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The config in force (an `arc-swap` load).
    pub(crate) fn core(&self) -> arc_swap::Guard<Arc<Core>> {
        self.core.load()
    }

    pub(crate) fn state(&self) -> State {
        self.state.0.load().kind()
    }

    #[inline]
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// A uniform sample in [0, 1) from a lock-free SplitMix64 stream.
    fn next_uniform(&self) -> f64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Asks to make a call. `Closed`: one atomic load, no clock read unless slow calls are timed.
    /// `Err` carries the state word that rejected the call; [`Shared::rejection`] turns it into
    /// the error (kept apart so that `poll_ready` moves eight bytes, not the error).
    #[inline]
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Ticket, Word> {
        // `Closed`: one load and a bit test, inlined; every other state out of line, so the
        // caller's closed path carries none of their code (nor its register saves).
        let w = self.state.0.load();
        if w.is_closed() {
            return Ok(Ticket::new(w.generation(), false, w.timed()));
        }
        self.admit_slow()
    }

    /// [`admit`](Self::admit) in every state but `Closed`.
    #[inline(never)]
    fn admit_slow(self: &Arc<Self>) -> Result<Ticket, Word> {
        loop {
            match self
                .state
                .0
                .admit(|| self.max_probes.load(Ordering::Relaxed))
            {
                Admission::Admit {
                    generation,
                    probe,
                    timed,
                } => {
                    return Ok(Ticket::new(generation, probe, timed));
                }
                Admission::Reject(w) => {
                    self.rejected(w);
                    return Err(w);
                }
                Admission::OpenCheckClock(w) => {
                    let now = Instant::now();
                    match self.deadline_of(w) {
                        Some(d) if self.nanos(now) >= d => {}
                        _ => {
                            self.rejected(w);
                            return Err(w);
                        }
                    }
                    if let Ok(next) = self.state.0.try_half_open(w, true) {
                        self.entered_half_open(w, next, now);
                        return Ok(Ticket::new(next.generation(), true, next.timed()));
                    }
                    // Somebody else moved the state on: decide again.
                }
            }
        }
    }

    fn deadline_of(&self, w: Word) -> Option<u64> {
        if self.deadline_gen.load(Ordering::Acquire) == w.generation() {
            Some(self.deadline.load(Ordering::Relaxed))
        } else {
            None
        }
    }

    fn set_deadline(&self, generation: u64, at_nanos: u64) {
        self.deadline_gen.store(NO_DEADLINE_GEN, Ordering::Release);
        self.deadline.store(at_nanos, Ordering::Relaxed);
        self.deadline_gen.store(generation, Ordering::Release);
    }

    /// Bookkeeping of a rejection: the listener, and the lazy half-open timeout.
    #[inline]
    fn rejected(self: &Arc<Self>, w: Word) {
        if w.kind() == State::HalfOpen {
            self.check_half_open_timeout(w);
        }
        self.listener.on_rejection(&self.name, w.kind());
    }

    /// The error for a call rejected in state `w`.
    #[inline]
    pub(crate) fn rejection(&self, w: Word) -> Rejected {
        let kind = w.kind();
        let (reason, deadline) = match kind {
            State::Open => (
                TripReason::from_u8(self.last_reason.load(Ordering::Relaxed)),
                self.deadline_of(w).unwrap_or(0),
            ),
            State::HalfOpen => (
                TripReason::from_u8(self.last_reason.load(Ordering::Relaxed)),
                0,
            ),
            _ => (None, 0),
        };
        Rejected {
            state: kind,
            reason,
            deadline,
            epoch: self.epoch,
        }
    }

    /// Lazy half-open timeout for breakers without a timer task: checked when a call is turned
    /// away because every probe is taken.
    #[cold]
    fn check_half_open_timeout(self: &Arc<Self>, w: Word) {
        if let Some(d) = self.deadline_of(w) {
            let now = Instant::now();
            if self.nanos(now) >= d {
                self.open(
                    State::HalfOpen,
                    w.generation(),
                    TripReason::HalfOpenTimeout,
                    now,
                );
            }
        }
    }

    /// Gives back a permit that was reserved but never used for a call.
    pub(crate) fn release(&self, ticket: Ticket) {
        if ticket.probe() {
            self.state.0.release_probe(ticket.generation());
        }
    }

    /// Records a finished or cancelled call. `now` is the completion time if the caller already
    /// read the clock.
    ///
    /// Inlined fast path: an untimed success in `Closed` on a count window touches only the
    /// window's ring and the consecutive-failure run (one `fetch_add`, two loads); everything
    /// else goes to the out-of-line [`record_slow`](Self::record_slow).
    #[inline(always)]
    pub(crate) fn record(
        self: &Arc<Self>,
        core: &Core,
        ticket: Ticket,
        completion: Completion,
        elapsed: Option<Duration>,
        now: Option<Instant>,
    ) {
        if completion == Completion::Done(Outcome::Success)
            && elapsed.is_none()
            && let Window::Count(window) = &*core.window
        {
            let w = self.state.0.load();
            if w.is_closed() && w.generation() == ticket.generation() {
                self.listener
                    .on_outcome(&self.name, Outcome::Success, false);
                let calls = window.record(false, false);
                if self.consecutive.0.load(Ordering::Relaxed) != 0 {
                    self.consecutive.0.store(0, Ordering::Relaxed);
                }
                if calls == u64::from(core.cfg.minimum_calls) {
                    self.judge_minimum(core, window, w);
                }
                return;
            }
        }
        self.record_slow(core, ticket, completion, elapsed, now);
    }

    /// [`record`](Self::record) with the config in force (keyed breakers, which have no
    /// stripes); out of line, so that plain breakers' response futures do not carry it.
    #[inline(never)]
    pub(crate) fn record_loaded(
        self: &Arc<Self>,
        ticket: Ticket,
        completion: Completion,
        elapsed: Option<Duration>,
        now: Option<Instant>,
    ) {
        self.record(&self.core(), ticket, completion, elapsed, now);
    }

    /// [`record`](Self::record) for `'static` breakers: the same fast path, on the fixed window
    /// and the mirrored minimum, without loading the config; the rest with the config in force.
    #[inline(always)]
    pub(crate) fn record_fixed(
        self: &Arc<Self>,
        ticket: Ticket,
        completion: Completion,
        elapsed: Option<Duration>,
        now: Option<Instant>,
    ) {
        if completion == Completion::Done(Outcome::Success)
            && elapsed.is_none()
            && let Window::Count(window) = &*self.window
        {
            let w = self.state.0.load();
            if w.is_closed() && w.generation() == ticket.generation() {
                self.listener
                    .on_outcome(&self.name, Outcome::Success, false);
                let calls = window.record(false, false);
                if self.consecutive.0.load(Ordering::Relaxed) != 0 {
                    self.consecutive.0.store(0, Ordering::Relaxed);
                }
                if calls == u64::from(self.minimum_calls.load(Ordering::Relaxed)) {
                    self.judge_minimum(&self.core(), window, w);
                }
                return;
            }
        }
        self.record_slow(&self.core(), ticket, completion, elapsed, now);
    }

    /// The success that completes the minimum number of calls: the window may already hold
    /// enough failures to open.
    #[cold]
    #[inline(never)]
    fn judge_minimum(self: &Arc<Self>, core: &Core, window: &CountWindow, w: Word) {
        if let Some(reason) = core.evaluate(window.counts(), 0) {
            self.open(State::Closed, w.generation(), reason, Instant::now());
        }
    }

    /// Every record but the fast path of [`record`](Self::record).
    #[inline(never)]
    fn record_slow(
        self: &Arc<Self>,
        core: &Core,
        ticket: Ticket,
        completion: Completion,
        elapsed: Option<Duration>,
        now: Option<Instant>,
    ) {
        let w = self.state.0.load();
        let slow = matches!((core.slow_threshold, elapsed), (Some(t), Some(e)) if e >= t);
        match completion {
            Completion::Done(o) => self.listener.on_outcome(&self.name, o, slow),
            Completion::Cancelled => self.listener.on_cancelled(&self.name),
        }
        if w.generation() != ticket.generation() {
            // The call belongs to an older state: its outcome decides nothing.
            return;
        }
        let failed = match completion {
            Completion::Done(Outcome::Success) => false,
            Completion::Done(Outcome::Failure) => true,
            Completion::Done(Outcome::Ignored) => {
                if ticket.probe() {
                    self.state.0.release_probe(ticket.generation());
                }
                return;
            }
            Completion::Cancelled => match core.cfg.cancellation {
                CancellationPolicy::Failure => true,
                CancellationPolicy::Ignore => {
                    if ticket.probe() {
                        self.state.0.release_probe(ticket.generation());
                    }
                    return;
                }
            },
        };
        match w.kind() {
            State::Closed | State::MetricsOnly => {
                let now_nanos = if core.window.needs_clock() {
                    self.nanos(now.unwrap_or_else(Instant::now))
                } else {
                    0
                };
                let calls = core.window.record(now_nanos, failed, slow);
                let consecutive = if failed {
                    self.consecutive.0.fetch_add(1, Ordering::Relaxed) + 1
                } else {
                    if self.consecutive.0.load(Ordering::Relaxed) != 0 {
                        self.consecutive.0.store(0, Ordering::Relaxed);
                    }
                    0
                };
                // A success can only lower the rates, except the one that completes the minimum.
                let judge = failed || slow || calls == Some(u64::from(core.cfg.minimum_calls));
                if judge && w.kind() == State::Closed {
                    let counts = core.window.counts(now_nanos);
                    if let Some(reason) = core.evaluate(counts, consecutive) {
                        self.open(
                            State::Closed,
                            w.generation(),
                            reason,
                            now.unwrap_or_else(Instant::now),
                        );
                    }
                }
            }
            State::HalfOpen if ticket.probe() => {
                if failed || slow {
                    let now = now.unwrap_or_else(Instant::now);
                    self.open(
                        State::HalfOpen,
                        w.generation(),
                        TripReason::ProbeFailed,
                        now,
                    );
                } else {
                    let window = &core.window;
                    let closed = self.state.0.probe_success(
                        ticket.generation(),
                        core.required_successes,
                        || {
                            window.reset();
                        },
                    );
                    if let ProbeSuccess::Closed(next) = closed {
                        self.consecutive.0.store(0, Ordering::Relaxed);
                        self.opens_in_row.store(0, Ordering::Relaxed);
                        self.transitioned(State::HalfOpen, next.kind(), None);
                    }
                }
            }
            _ => {}
        }
    }

    /// Opens the breaker if it is still `from` in `generation`.
    fn open(self: &Arc<Self>, from: State, generation: u64, reason: TripReason, now: Instant) {
        let armed = tokio::runtime::Handle::try_current().is_ok();
        let Some((_, next)) = self
            .state
            .0
            .transition_if(from, generation, State::Open, armed)
        else {
            return;
        };
        self.last_reason.store(reason as u8, Ordering::Relaxed);
        let n = self
            .opens_in_row
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let core = self.core.load();
        let duration = core.cfg.open_duration.nth(n, self.next_uniform());
        let until = now + duration;
        self.set_deadline(next.generation(), self.nanos(until));
        self.consecutive.0.store(0, Ordering::Relaxed);
        self.transitioned(from, State::Open, Some(reason));
        if armed {
            self.spawn_timer(next.generation(), until);
        }
    }

    fn entered_half_open(self: &Arc<Self>, from: Word, next: Word, now: Instant) {
        let max = self.core.load().cfg.half_open.max_duration;
        let deadline = max.map_or(u64::MAX, |d| self.nanos(now + d));
        self.set_deadline(next.generation(), deadline);
        self.transitioned(from.kind(), State::HalfOpen, None);
        if let Some(max) = max
            && tokio::runtime::Handle::try_current().is_ok()
        {
            self.spawn_half_open_timer(next.generation(), now + max);
        }
    }

    fn transitioned(&self, from: State, to: State, reason: Option<TripReason>) {
        let t = Transition { from, to, reason };
        tracing::info!(breaker = %self.name, ?from, ?to, ?reason, "circuit breaker state changed");
        self.listener.on_transition(&self.name, &t);
    }

    fn spawn_timer(self: &Arc<Self>, generation: u64, until: Instant) {
        let guard = Disarm {
            shared: Arc::downgrade(self),
            generation,
        };
        tokio::spawn(async move {
            tokio::time::sleep_until(until).await;
            let shared = guard.shared.upgrade();
            std::mem::forget(guard);
            if let Some(s) = shared {
                let w = s.state.0.load();
                if w.kind() == State::Open
                    && w.generation() == generation
                    && let Ok(next) = s.state.0.try_half_open(w, false)
                {
                    s.entered_half_open(w, next, Instant::now());
                }
            }
        });
    }

    fn spawn_half_open_timer(self: &Arc<Self>, generation: u64, until: Instant) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(until).await;
            if let Some(s) = weak.upgrade() {
                s.open(
                    State::HalfOpen,
                    generation,
                    TripReason::HalfOpenTimeout,
                    Instant::now(),
                );
            }
        });
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let w = self.state.0.load();
        let core = self.core.load();
        let now = Instant::now();
        let c = core.window.counts(self.nanos(now));
        let rate = |n: u64| {
            if c.calls == 0 {
                0.0
            } else {
                n as f64 / c.calls as f64
            }
        };
        let open_remaining = match w.kind() {
            State::Open => self
                .deadline_of(w)
                .map(|d| Duration::from_nanos(d.saturating_sub(self.nanos(now)))),
            _ => None,
        };
        Snapshot {
            state: w.kind(),
            generation: w.generation(),
            calls: c.calls,
            failures: c.failures,
            slow_calls: c.slow,
            failure_rate: rate(c.failures),
            slow_call_rate: rate(c.slow),
            consecutive_failures: self.consecutive.0.load(Ordering::Relaxed),
            half_open_probes: if w.kind() == State::HalfOpen {
                w.probes()
            } else {
                0
            },
            half_open_successes: if w.kind() == State::HalfOpen {
                w.successes()
            } else {
                0
            },
            open_remaining,
            last_trip: TripReason::from_u8(self.last_reason.load(Ordering::Relaxed)),
        }
    }

    fn force(&self, to: State, clear: bool) {
        let core = self.core.load();
        if clear {
            core.window.reset();
            self.consecutive.0.store(0, Ordering::Relaxed);
        }
        let (prev, _) = self.state.0.force(to, false);
        if prev.kind() != to {
            self.transitioned(prev.kind(), to, None);
        }
    }

    fn reconfigure(&self, cfg: Config) -> Result<(), ConfigError> {
        cfg.validate()?;
        let old = self.core.load();
        if self.fixed && old.cfg.window != cfg.window {
            return Err(ConfigError::new(
                "window",
                format!(
                    "a 'static breaker keeps its window shape ({:?}); got {:?} (build a new layer to change it)",
                    old.cfg.window, cfg.window
                ),
            ));
        }
        let window = if old.cfg.window == cfg.window {
            old.window.clone()
        } else {
            Arc::new(Window::new(&cfg.window))
        };
        let core = Core::new(cfg, window);
        self.max_probes
            .store(core.cfg.half_open.probes, Ordering::Relaxed);
        self.minimum_calls
            .store(core.cfg.minimum_calls, Ordering::Relaxed);
        self.state.0.set_timed(core.slow_threshold.is_some());
        self.core.store(Arc::new(core));
        Ok(())
    }
}

/// Per-thread owners of a breaker, so that calls on different threads do not bump one shared
/// reference count (a cache line bouncing between cores on every call). A response future holds
/// its thread's stripe; every stripe points at the breaker and at the config in force when the
/// stripe set was built, so recording needs no `arc-swap` load. Reconfiguring builds a new set.
///
/// The breaker does not own its front (the stripes own the breaker): no reference cycle.
pub(crate) struct Front<L: 'static> {
    pub(crate) shared: Arc<Shared<L>>,
    pub(crate) set: Arc<ArcSwap<StripeSet<L>>>,
    // `'static` breakers: a reference held for the life of the process (one leaked `Arc`), which
    // response futures copy instead of cloning a stripe.
    pub(crate) fixed: Option<&'static Arc<Shared<L>>>,
}

pub(crate) struct StripeSet<L> {
    stripes: Box<[Arc<Stripe<L>>]>,
    mask: usize,
}

/// One stripe, alone on its cache line (the `Arc` counts share the line with nothing else).
#[repr(align(64))]
pub(crate) struct Stripe<L> {
    pub(crate) shared: Arc<Shared<L>>,
    pub(crate) core: Arc<Core>,
}

impl<L: 'static> Front<L> {
    pub(crate) fn new(shared: Arc<Shared<L>>) -> Self {
        let set = Arc::new(ArcSwap::from_pointee(StripeSet::new(&shared)));
        Self {
            shared,
            set,
            fixed: None,
        }
    }

    /// A front for a `'static` breaker: leaks one reference to it.
    pub(crate) fn new_static(shared: Arc<Shared<L>>) -> Self {
        let mut front = Self::new(shared);
        front.fixed = Some(Box::leak(Box::new(front.shared.clone())));
        front
    }

    /// Re-points the stripes at the config in force.
    pub(crate) fn rebuild(&self) {
        self.set.store(Arc::new(StripeSet::new(&self.shared)));
    }
}

impl<L> StripeSet<L> {
    fn new(shared: &Arc<Shared<L>>) -> Self {
        let n = std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .next_power_of_two()
            .clamp(2, 32);
        let core = shared.core.load_full();
        Self {
            stripes: (0..n)
                .map(|_| {
                    Arc::new(Stripe {
                        shared: shared.clone(),
                        core: core.clone(),
                    })
                })
                .collect(),
            mask: n - 1,
        }
    }

    /// The calling thread's stripe.
    #[inline]
    pub(crate) fn local(&self) -> Arc<Stripe<L>> {
        self.stripes[thread_index() & self.mask].clone()
    }
}

#[inline]
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // Const-initialised: no lazy-init check on access; assigned on first use.
        static INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        let mut v = i.get();
        if v == usize::MAX {
            v = NEXT.fetch_add(1, Ordering::Relaxed);
            i.set(v);
        }
        v
    })
}

/// Clears the armed bit if a timer task is dropped before it fires (runtime shut down), so the
/// breaker falls back to reading the clock instead of staying open for ever.
struct Disarm<L: Listener> {
    shared: Weak<Shared<L>>,
    generation: u64,
}

impl<L: Listener> Drop for Disarm<L> {
    fn drop(&mut self) {
        if let Some(s) = self.shared.upgrade() {
            s.state.0.disarm(self.generation);
        }
    }
}

/// A point-in-time view of a breaker, for health endpoints and dashboards.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// Current state.
    pub state: State,
    /// Transitions so far (the state generation).
    pub generation: u64,
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// `failures / calls` (0 when empty).
    pub failure_rate: f64,
    /// `slow_calls / calls` (0 when empty).
    pub slow_call_rate: f64,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Probe permits handed out in this half-open period and not given back: the probes in
    /// flight plus the successful ones (half-open only).
    pub half_open_probes: u32,
    /// Successful probes so far (half-open only).
    pub half_open_successes: u32,
    /// Time left in the open state.
    #[serde(with = "humantime_serde")]
    pub open_remaining: Option<Duration>,
    /// The policy that opened the breaker most recently.
    pub last_trip: Option<TripReason>,
}

/// A cloneable handle to one breaker: snapshot, manual control and live reconfiguration. Every
/// service built from the same layer shares the breaker this handle controls.
pub struct Handle<L: 'static = ()> {
    pub(crate) shared: Arc<Shared<L>>,
    // The stripes of the layer this handle came from, re-pointed on reconfigure.
    pub(crate) front: Option<Arc<Front<L>>>,
}

impl<L> Clone for Handle<L> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            front: self.front.clone(),
        }
    }
}

impl<L> Handle<L> {
    pub(crate) fn of(shared: Arc<Shared<L>>) -> Self {
        Self {
            shared,
            front: None,
        }
    }
}

impl<L> fmt::Debug for Handle<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl<L: Listener> Handle<L> {
    /// The breaker's name (used in metrics and logs).
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// A snapshot of state and window counts.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Whether a call made now would be admitted: one atomic load (a clock read only for an
    /// `Open` breaker that has no timer, i.e. outside a tokio runtime). `HalfOpen` admits while a
    /// probe slot is free. Load balancers use this to route around an endpoint whose breaker
    /// would reject, since the breaker's `poll_ready` reports ready even when it is open.
    pub fn admits(&self) -> bool {
        let s = &self.shared;
        let w = s.state.0.load();
        match w.kind() {
            State::Closed | State::Disabled | State::MetricsOnly => true,
            State::ForcedOpen => false,
            State::Open => {
                !w.armed()
                    && s.deadline_of(w)
                        .is_some_and(|d| s.nanos(Instant::now()) >= d)
            }
            State::HalfOpen => w.probes() < s.max_probes.load(Ordering::Relaxed),
        }
    }

    /// Rejects every call until another manual transition (`ForcedOpen`).
    pub fn force_open(&self) {
        self.shared.force(State::ForcedOpen, false);
    }

    /// Closes the breaker with an empty window.
    pub fn close(&self) {
        self.shared.force(State::Closed, true);
    }

    /// Admits every call and records nothing (`Disabled`).
    pub fn disable(&self) {
        self.shared.force(State::Disabled, false);
    }

    /// Admits every call and records outcomes, but never opens (`MetricsOnly`).
    pub fn metrics_only(&self) {
        self.shared.force(State::MetricsOnly, false);
    }

    /// Back to a fresh `Closed` breaker: empty window, open backoff reset.
    pub fn reset(&self) {
        self.shared.opens_in_row.store(0, Ordering::Relaxed);
        self.shared.force(State::Closed, true);
    }

    /// Applies a new config live. Counters are kept when the window shape is unchanged and reset
    /// atomically when it changes. A config that fails validation is rejected and the old one
    /// stays.
    pub fn reconfigure(&self, cfg: Config) -> Result<(), ConfigError> {
        self.shared.reconfigure(cfg)?;
        if let Some(front) = &self.front {
            front.rebuild();
        }
        Ok(())
    }

    /// The config in force.
    pub fn config(&self) -> Config {
        self.shared.core.load().cfg.clone()
    }
}
