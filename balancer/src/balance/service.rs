use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use palisade_breaker::{AnyError, Classify};
use tokio::time::Instant;
use tower::discover::{Change, Discover};
use tower_service::Service;

use super::error::NoEndpoints;
use super::future::{CallGuard, ResponseFuture};
use crate::BoxError;
use crate::config::{Config, ConfigError, OutlierConfig, Policy};
use crate::endpoint::Endpoint;
use crate::handle::{EjectionReason, EndpointView, Handle, Shared};
use crate::hash::{HashKey, MaglevTable, NoHashKey, StableHasher};
use crate::rng::{Rng, SmallRng, two_distinct};
use crate::stats::{EndpointStats, nanos};

/// A load balancer over the endpoints of a [`Discover`]: picks one per request with the
/// configured [`Policy`], routes around endpoints that outlier detection ejected or whose
/// circuit breaker is open, and records each call's outcome and latency.
///
/// Like tower's `Balance` it is not `Clone`: put it behind `tower::buffer::Buffer` to share it.
///
/// # Readiness
///
/// `poll_ready` drains the discover stream, applies due ejections, then asks the policy for an
/// endpoint and polls that endpoint. If it is not ready, the other candidates are polled from a
/// random start and the first ready one is reserved; if none is ready the balancer is not ready
/// (every candidate has registered the waker). An endpoint whose `poll_ready` fails is removed
/// from the set, as tower's balancer does.
pub struct Balance<D, Req, C = AnyError, R = SmallRng, H = NoHashKey>
where
    D: Discover,
{
    discover: D,
    discover_done: bool,
    slots: Vec<Slot<D::Key, D::Service>>,
    index: HashMap<D::Key, usize>,
    /// Slot indexes that the policy chooses from; rebuilt when membership, ejections or (with
    /// breakers) breaker states change.
    candidates: Vec<usize>,
    candidates_dirty: bool,
    breakers: usize,
    panic: bool,
    chosen: Option<usize>,
    rr_next: usize,
    rng: R,
    classifier: C,
    hash_key: H,
    table: MaglevTable,
    table_dirty: bool,
    /// Maglev: `poll_ready` found at least one ready candidate; `call` picks by key.
    hash_ready: bool,
    /// Maglev: candidates not polled ready since their last call.
    unready: Vec<usize>,
    /// Maglev: candidates polled ready and not called since.
    ready_candidates: usize,
    cfg: Arc<Config>,
    cfg_version: u64,
    decay_ns: f64,
    shared: Arc<Shared>,
    eject_pending: Arc<AtomicBool>,
    next_eval: Option<Instant>,
    next_unejection: Option<Instant>,
    ejected: usize,
    scratch: Vec<(usize, f64, u64)>,
    /// Whether a first batch of endpoints was seen (slow start spares it).
    seen_endpoints: bool,
    /// While some endpoint is slow-starting: when the last ramp ends.
    slow_start_until: Option<Instant>,
    _req: PhantomData<fn(Req)>,
}

/// Ejections remembered per endpoint for the snapshot.
const HISTORY: usize = 8;

struct Slot<K, S> {
    key: K,
    /// The endpoint (service and metadata).
    service: S,
    stats: Arc<EndpointStats>,
    ejected_until: Option<Instant>,
    /// Multiplier of the next ejection time; grows per ejection, shrinks per healthy interval.
    ejection_level: u32,
    ejections: u64,
    last_ejection: Option<EjectionReason>,
    /// The latest ejections, oldest first (at most `HISTORY`).
    history: VecDeque<(EjectionReason, Instant, Duration)>,
    wrr_current: i64,
    /// When the endpoint joined, if it is slow-starting.
    joined: Option<Instant>,
    /// Maglev: polled ready and not called since.
    ready: bool,
    /// In the candidate list.
    candidate: bool,
}

impl<D, Req, C, R, H> fmt::Debug for Balance<D, Req, C, R, H>
where
    D: Discover + fmt::Debug,
    D::Key: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("name", &self.shared.name)
            .field("discover", &self.discover)
            .field("endpoints", &self.slots.len())
            .field("policy", &self.cfg.policy)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Balance`].
#[must_use]
pub struct Builder<D, C = AnyError, R = SmallRng, H = NoHashKey> {
    discover: D,
    name: String,
    config: Config,
    classifier: C,
    rng: R,
    hash_key: H,
}

impl<D: fmt::Debug, C: fmt::Debug, R, H> fmt::Debug for Builder<D, C, R, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("discover", &self.discover)
            .field("name", &self.name)
            .field("config", &self.config)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<D, Req> Balance<D, Req>
where
    D: Discover,
{
    /// A balancer over `discover` with the default config (P2C Peak-EWMA, no outlier
    /// detection), the [`AnyError`] classifier and an entropy-seeded RNG.
    pub fn new(discover: D) -> Self {
        Builder::new(discover)
            .build()
            .expect("the default config is valid")
    }
}

impl<D: Discover> Balance<D, ()> {
    /// A builder for name, config, classifier and RNG (the same as [`Builder::new`]; the request
    /// type is fixed by [`Builder::build`]).
    pub fn builder(discover: D) -> Builder<D> {
        Builder::new(discover)
    }
}

impl<D> Builder<D> {
    /// Starts from the default config (P2C Peak-EWMA, no outlier detection), the [`AnyError`]
    /// classifier, an entropy-seeded RNG and the name `"default"`.
    pub fn new(discover: D) -> Self {
        Builder {
            discover,
            name: String::from("default"),
            config: Config::default(),
            classifier: AnyError,
            rng: SmallRng::from_entropy(),
            hash_key: NoHashKey,
        }
    }
}

impl<D, C, R, H> Builder<D, C, R, H> {
    /// The name used as the `service` label of metrics and in logs.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The config.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The policy (shorthand for changing `config.policy`).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.config.policy = policy;
        self
    }

    /// What counts as a failure for outlier detection.
    pub fn classifier<C2>(self, classifier: C2) -> Builder<D, C2, R, H> {
        Builder {
            discover: self.discover,
            name: self.name,
            config: self.config,
            classifier,
            rng: self.rng,
            hash_key: self.hash_key,
        }
    }

    /// The random number generator (seed it for repeatable picks).
    pub fn rng<R2: Rng>(self, rng: R2) -> Builder<D, C, R2, H> {
        Builder {
            discover: self.discover,
            name: self.name,
            config: self.config,
            classifier: self.classifier,
            rng,
            hash_key: self.hash_key,
        }
    }

    /// The request key for [`Policy::Maglev`] (without one, Maglev sends every request to a
    /// random ready endpoint).
    pub fn hash_key<H2>(self, hash_key: H2) -> Builder<D, C, R, H2> {
        Builder {
            discover: self.discover,
            name: self.name,
            config: self.config,
            classifier: self.classifier,
            rng: self.rng,
            hash_key,
        }
    }

    /// Validates the config and builds the balancer.
    pub fn build<Req>(self) -> Result<Balance<D, Req, C, R, H>, ConfigError>
    where
        D: Discover,
    {
        self.config.validate()?;
        let cfg = Arc::new(self.config);
        let shared = Arc::new(Shared {
            name: self.name,
            config: ArcSwap::new(cfg.clone()),
            config_version: AtomicU64::new(0),
            views: Mutex::new(Vec::new()),
            panic: AtomicBool::new(false),
            local_zone_only: AtomicBool::new(false),
        });
        Ok(Balance {
            discover: self.discover,
            discover_done: false,
            slots: Vec::new(),
            index: HashMap::new(),
            candidates: Vec::new(),
            candidates_dirty: true,
            breakers: 0,
            panic: false,
            chosen: None,
            rr_next: 0,
            rng: self.rng,
            classifier: self.classifier,
            hash_key: self.hash_key,
            table: MaglevTable::default(),
            table_dirty: true,
            hash_ready: false,
            unready: Vec::new(),
            ready_candidates: 0,
            decay_ns: decay_ns(&cfg.policy),
            cfg,
            cfg_version: 0,
            shared,
            eject_pending: Arc::new(AtomicBool::new(false)),
            next_eval: None,
            next_unejection: None,
            ejected: 0,
            scratch: Vec::new(),
            seen_endpoints: false,
            slow_start_until: None,
            _req: PhantomData,
        })
    }
}

fn decay_ns(policy: &Policy) -> f64 {
    match policy {
        Policy::PeakEwma { decay, .. } => nanos(*decay),
        _ => 0.0,
    }
}

fn default_rtt(policy: &Policy) -> Duration {
    match policy {
        Policy::PeakEwma { default_rtt, .. } => *default_rtt,
        _ => Duration::from_millis(30),
    }
}

impl<D, Req, C, R, H> Balance<D, Req, C, R, H>
where
    D: Discover,
{
    /// The handle: snapshot and live reconfiguration.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Number of endpoints (ejected ones included).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is no endpoint.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

impl<D, S, Req, C, R, H> Balance<D, Req, C, R, H>
where
    D: Discover<Service = Endpoint<S>> + Unpin,
    D::Key: Hash + Eq + Clone + fmt::Debug,
    D::Error: Into<BoxError>,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    R: Rng,
{
    fn refresh_config(&mut self) {
        let v = self.shared.config_version.load(Ordering::Acquire);
        if v == self.cfg_version {
            return;
        }
        self.cfg_version = v;
        let cfg = self.shared.config.load_full();
        if cfg.policy != self.cfg.policy {
            self.rr_next = 0;
            self.table_dirty = true;
            for s in &mut self.slots {
                // Readiness seen under the old policy may have been consumed since.
                s.ready = false;
                s.wrr_current = 0;
                s.stats.reset_default_rtt(default_rtt(&cfg.policy));
            }
        }
        if cfg.outlier.is_none() {
            // Detection switched off: nothing stays ejected.
            for s in &mut self.slots {
                s.ejected_until = None;
            }
            self.ejected = 0;
            self.next_eval = None;
            self.next_unejection = None;
        } else if cfg.outlier.as_ref().map(|o| o.interval)
            != self.cfg.outlier.as_ref().map(|o| o.interval)
        {
            self.next_eval = None;
        }
        self.decay_ns = decay_ns(&cfg.policy);
        self.cfg = cfg;
        self.candidates_dirty = true;
        self.publish();
    }

    /// Drains the discover stream. Returns an error if the stream failed.
    fn poll_discover(&mut self, cx: &mut Context<'_>) -> Result<(), BoxError> {
        if self.discover_done {
            return Ok(());
        }
        let mut changed = false;
        loop {
            match Pin::new(&mut self.discover).poll_discover(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    self.discover_done = true;
                    break;
                }
                Poll::Ready(Some(Err(e))) => {
                    if changed {
                        self.publish();
                    }
                    return Err(e.into());
                }
                Poll::Ready(Some(Ok(Change::Insert(key, ep)))) => {
                    self.remove(&key);
                    self.insert(key, ep);
                    changed = true;
                }
                Poll::Ready(Some(Ok(Change::Remove(key)))) => {
                    changed |= self.remove(&key);
                }
            }
        }
        if changed {
            self.publish();
        }
        if !self.slots.is_empty() {
            self.seen_endpoints = true;
        }
        Ok(())
    }

    fn insert(&mut self, key: D::Key, ep: Endpoint<S>) {
        tracing::debug!(balancer = %self.shared.name, key = ?key, "endpoint added");
        if ep.metadata.has_breaker() {
            self.breakers += 1;
        }
        let now = Instant::now();
        let stats = Arc::new(EndpointStats::new(default_rtt(&self.cfg.policy), now));
        // The first batch starts at full weight; later joiners ramp up.
        let joined_at = match &self.cfg.slow_start {
            Some(ss) if self.seen_endpoints => {
                let until = now + ss.window;
                self.slow_start_until = Some(self.slow_start_until.map_or(until, |t| t.max(until)));
                Some(now)
            }
            _ => None,
        };
        self.index.insert(key.clone(), self.slots.len());
        self.slots.push(Slot {
            key,
            service: ep,
            stats,
            ejected_until: None,
            ejection_level: 0,
            ejections: 0,
            last_ejection: None,
            history: VecDeque::new(),
            wrr_current: 0,
            joined: joined_at,
            ready: false,
            candidate: false,
        });
        self.table_dirty = true;
        self.candidates_dirty = true;
    }

    fn remove(&mut self, key: &D::Key) -> bool {
        let Some(i) = self.index.remove(key) else {
            return false;
        };
        self.remove_at(i);
        true
    }

    fn remove_at(&mut self, i: usize) {
        let slot = self.slots.swap_remove(i);
        self.index.remove(&slot.key);
        if i < self.slots.len() {
            let moved = self.slots[i].key.clone();
            self.index.insert(moved, i);
        }
        if slot.service.metadata.has_breaker() {
            self.breakers -= 1;
        }
        if slot.ejected_until.is_some() {
            self.ejected -= 1;
        }
        self.table_dirty = true;
        tracing::debug!(balancer = %self.shared.name, key = ?slot.key, "endpoint removed");
        self.candidates_dirty = true;
    }

    /// Publishes endpoint views for the handle (membership or ejection changed; never per call).
    fn publish(&self) {
        let views: Vec<EndpointView> = self
            .slots
            .iter()
            .map(|s| EndpointView {
                key: format!("{:?}", s.key),
                metadata: s.service.metadata.clone(),
                stats: s.stats.clone(),
                ejected_until: s.ejected_until,
                ejections: s.ejections,
                last_ejection: s.last_ejection,
                history: s.history.iter().copied().collect(),
            })
            .collect();
        #[cfg(feature = "metrics")]
        crate::metrics::endpoints(&self.shared.name, &views);
        *self.shared.views.lock().unwrap_or_else(|p| p.into_inner()) = views;
    }

    /// Ejections and un-ejections that are due. Reads the clock only when outlier detection is on
    /// or an endpoint is ejected.
    fn maintain(&mut self) {
        let Some(outlier) = self.cfg.outlier.clone() else {
            return;
        };
        let now = Instant::now();
        let mut changed = false;
        if self.next_unejection.is_some_and(|t| t <= now) {
            self.next_unejection = None;
            for s in &mut self.slots {
                match s.ejected_until {
                    Some(until) if until <= now => {
                        s.ejected_until = None;
                        s.stats.consecutive_failures.store(0, Ordering::Relaxed);
                        self.ejected -= 1;
                        changed = true;
                        tracing::info!(balancer = %self.shared.name, key = ?s.key, "endpoint returned from ejection");
                    }
                    Some(until) => {
                        self.next_unejection =
                            Some(self.next_unejection.map_or(until, |t| t.min(until)));
                    }
                    None => {}
                }
            }
        }
        if self.eject_pending.swap(false, Ordering::AcqRel) {
            for i in 0..self.slots.len() {
                if self.slots[i]
                    .stats
                    .eject_request
                    .swap(false, Ordering::AcqRel)
                {
                    changed |= self.eject(i, EjectionReason::ConsecutiveFailures, now, &outlier);
                }
            }
        }
        match self.next_eval {
            None => self.next_eval = Some(now + outlier.interval),
            Some(t) if t <= now => {
                self.next_eval = Some(now + outlier.interval);
                changed |= self.evaluate(now, &outlier);
            }
            Some(_) => {}
        }
        if changed {
            self.candidates_dirty = true;
            self.publish();
        }
    }

    /// Ejects slot `i` unless it is ejected already or the cap is reached.
    fn eject(&mut self, i: usize, reason: EjectionReason, now: Instant, o: &OutlierConfig) -> bool {
        let max = ((o.max_ejection_percent * self.slots.len() as f64).floor() as usize).max(1);
        let slot = &mut self.slots[i];
        if slot.ejected_until.is_some() {
            return false;
        }
        if self.ejected >= max {
            tracing::debug!(balancer = %self.shared.name, key = ?slot.key, reason = reason.as_str(), "ejection skipped: max ejection percent reached");
            return false;
        }
        slot.ejection_level = slot.ejection_level.saturating_add(1);
        let time = o
            .base_ejection_time
            .saturating_mul(slot.ejection_level)
            .min(o.max_ejection_time);
        let until = now + time;
        slot.ejected_until = Some(until);
        slot.ejections += 1;
        slot.last_ejection = Some(reason);
        if slot.history.len() == HISTORY {
            slot.history.pop_front();
        }
        slot.history.push_back((reason, now, time));
        slot.stats.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejected += 1;
        self.next_unejection = Some(self.next_unejection.map_or(until, |t| t.min(until)));
        tracing::info!(balancer = %self.shared.name, key = ?slot.key, reason = reason.as_str(), ejection_time = ?time, "endpoint ejected");
        #[cfg(feature = "metrics")]
        crate::metrics::ejection(&self.shared.name, reason);
        true
    }

    /// The interval verdicts: success rate and failure percentage, then the counters restart.
    /// Runs once per interval; works in a reused scratch buffer.
    fn evaluate(&mut self, now: Instant, o: &OutlierConfig) -> bool {
        self.scratch.clear();
        for (i, s) in self.slots.iter_mut().enumerate() {
            let ok = s.stats.interval_successes.swap(0, Ordering::Relaxed);
            let bad = s.stats.interval_failures.swap(0, Ordering::Relaxed);
            if s.ejected_until.is_some() {
                continue;
            }
            if bad == 0 {
                // A healthy interval: the next ejection will be shorter.
                s.ejection_level = s.ejection_level.saturating_sub(1);
            }
            let total = ok + bad;
            if total > 0 {
                self.scratch.push((i, ok as f64 / total as f64, total));
            }
        }
        let mut changed = false;
        if let Some(sr) = &o.success_rate {
            let vol = u64::from(sr.request_volume);
            let judged = || self.scratch.iter().filter(move |(_, _, t)| *t >= vol);
            let n = judged().count();
            if n >= sr.minimum_hosts as usize && n > 0 {
                let nf = n as f64;
                let mean = judged().map(|(_, r, _)| r).sum::<f64>() / nf;
                let var = judged().map(|(_, r, _)| (r - mean).powi(2)).sum::<f64>() / nf;
                let threshold = mean - sr.stdev_factor * var.sqrt();
                for k in 0..self.scratch.len() {
                    let (i, rate, total) = self.scratch[k];
                    if total >= vol && rate < threshold {
                        changed |= self.eject(i, EjectionReason::SuccessRate, now, o);
                    }
                }
            }
        }
        if let Some(fp) = &o.failure_percentage {
            let vol = u64::from(fp.request_volume);
            let n = self.scratch.iter().filter(|(_, _, t)| *t >= vol).count();
            if n >= fp.minimum_hosts as usize {
                for k in 0..self.scratch.len() {
                    let (i, rate, total) = self.scratch[k];
                    if total >= vol && 1.0 - rate >= fp.threshold {
                        changed |= self.eject(i, EjectionReason::FailurePercentage, now, o);
                    }
                }
            }
        }
        changed
    }
}

impl<D, S, Req, C, R, H> Balance<D, Req, C, R, H>
where
    D: Discover<Service = Endpoint<S>> + Unpin,
    D::Key: Hash + Eq + Clone + fmt::Debug,
    D::Error: Into<BoxError>,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    R: Rng,
{
    /// Rebuilds the candidate list: endpoints that are neither ejected nor behind a breaker that
    /// refuses calls; all endpoints when the healthy share is under the panic threshold.
    /// Returns whether it rebuilt.
    fn rebuild_candidates(&mut self) -> bool {
        if !self.candidates_dirty && self.breakers == 0 {
            return false;
        }
        self.candidates_dirty = false;
        self.candidates.clear();
        for (i, s) in self.slots.iter().enumerate() {
            if s.ejected_until.is_none() && s.service.metadata.available() {
                self.candidates.push(i);
            }
        }
        let healthy = self.candidates.len();
        let panic =
            healthy == 0 || (healthy as f64) < self.cfg.panic_threshold * self.slots.len() as f64;
        if panic {
            self.candidates.clear();
            self.candidates.extend(0..self.slots.len());
        }
        let mut local_only = false;
        if let Some(z) = &self.cfg.zone_aware {
            let local = |s: &Slot<D::Key, D::Service>| {
                s.service.metadata.zone_name() == Some(z.local_zone.as_str())
            };
            let zone_total = self.slots.iter().filter(|s| local(s)).count();
            let zone_healthy = self
                .slots
                .iter()
                .filter(|s| local(s) && s.ejected_until.is_none() && s.service.metadata.available())
                .count();
            if zone_healthy > 0 && zone_healthy as f64 >= z.min_healthy_share * zone_total as f64 {
                let slots = &self.slots;
                self.candidates.retain(|&i| local(&slots[i]));
                local_only = true;
            }
        }
        self.shared
            .local_zone_only
            .store(local_only, Ordering::Relaxed);
        for s in &mut self.slots {
            s.candidate = false;
        }
        for k in 0..self.candidates.len() {
            let i = self.candidates[k];
            self.slots[i].candidate = true;
        }
        if panic != self.panic {
            self.panic = panic;
            self.shared.panic.store(panic, Ordering::Relaxed);
            if panic {
                tracing::info!(balancer = %self.shared.name, healthy, total = self.slots.len(), "panic mode: routing to every endpoint");
            } else {
                tracing::info!(balancer = %self.shared.name, "panic mode over");
            }
        }
        true
    }

    /// The policy's choice among the candidates (at least one).
    fn pick(&mut self) -> usize {
        let n = self.candidates.len();
        debug_assert!(n > 0);
        if n == 1 {
            return self.candidates[0];
        }
        match self.cfg.policy {
            Policy::RoundRobin => {
                let i = self.candidates[self.rr_next % n];
                self.rr_next = self.rr_next.wrapping_add(1);
                i
            }
            // Maglev picks in `call`; this arm only serves a policy switch mid-flight.
            Policy::Random | Policy::Maglev { .. } => {
                self.candidates[self.rng.next_range(0..n as u64) as usize]
            }
            Policy::WeightedRoundRobin => {
                let mut total = 0i64;
                let mut best = self.candidates[0];
                let mut best_w = i64::MIN;
                let now = self.slow_start_until.map(|_| Instant::now());
                for k in 0..self.candidates.len() {
                    let i = self.candidates[k];
                    // Integer weights in thousandths keep slow-start fractions.
                    let w = (self.weight(i, now) * 1000.0) as i64;
                    let s = &mut self.slots[i];
                    total += w;
                    s.wrr_current += w;
                    if s.wrr_current > best_w {
                        best_w = s.wrr_current;
                        best = i;
                    }
                }
                self.slots[best].wrr_current -= total;
                best
            }
            Policy::LeastOutstanding => {
                let (a, b) = two_distinct(&mut self.rng, n);
                let (a, b) = (self.candidates[a], self.candidates[b]);
                let now = self.slow_start_until.map(|_| Instant::now());
                let la = f64::from(self.slots[a].stats.in_flight() + 1) / self.weight(a, now);
                let lb = f64::from(self.slots[b].stats.in_flight() + 1) / self.weight(b, now);
                if la <= lb { a } else { b }
            }
            Policy::PeakEwma { .. } => {
                let (a, b) = two_distinct(&mut self.rng, n);
                let (a, b) = (self.candidates[a], self.candidates[b]);
                let now = Instant::now();
                let ca = self.cost(a, now);
                let cb = self.cost(b, now);
                if ca <= cb { a } else { b }
            }
        }
    }

    fn cost(&self, i: usize, now: Instant) -> f64 {
        let s = &self.slots[i];
        let rtt = s.stats.rtt_estimate(now, self.decay_ns);
        rtt * f64::from(s.stats.in_flight() + 1) / self.weight(i, Some(now))
    }

    /// The endpoint's weight, scaled down while it slow-starts. Reads the clock only while some
    /// endpoint is slow-starting (and `now` was not given).
    #[inline]
    fn weight(&self, i: usize, now: Option<Instant>) -> f64 {
        let s = &self.slots[i];
        let w = f64::from(s.service.metadata.weight_value());
        match (self.slow_start_until, s.joined, &self.cfg.slow_start) {
            (Some(_), Some(joined), Some(ss)) => {
                let now = now.unwrap_or_else(Instant::now);
                w * ss.scale(now.saturating_duration_since(joined))
            }
            _ => w,
        }
    }
}

impl<D, S, Req, C, R, H> Service<Req> for Balance<D, Req, C, R, H>
where
    D: Discover<Service = Endpoint<S>> + Unpin,
    D::Key: Hash + Eq + Clone + fmt::Debug,
    D::Error: Into<BoxError>,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
    R: Rng,
    H: HashKey<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.chosen.is_some() || self.hash_ready {
            return Poll::Ready(Ok(()));
        }
        self.refresh_config();
        self.poll_discover(cx)?;
        self.maintain();
        if let Some(until) = self.slow_start_until
            && Instant::now() >= until
        {
            self.slow_start_until = None;
            for s in &mut self.slots {
                s.joined = None;
            }
        }
        if matches!(self.cfg.policy, Policy::Maglev { .. }) {
            return self.poll_ready_hashed(cx);
        }
        loop {
            if self.slots.is_empty() {
                return if self.discover_done {
                    Poll::Ready(Err(NoEndpoints::new().into()))
                } else {
                    Poll::Pending
                };
            }
            let _ = self.rebuild_candidates();
            let first = self.pick();
            match self.slots[first].service.service.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    self.chosen = Some(first);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) => {
                    self.drop_failed(first, e.into());
                    continue;
                }
                Poll::Pending => {}
            }
            // The pick is busy: take the first ready candidate from a random start.
            let n = self.candidates.len();
            let offset = self.rng.next_range(0..n as u64) as usize;
            let mut failed = None;
            for j in 0..n {
                let i = self.candidates[(offset + j) % n];
                if i == first {
                    continue;
                }
                match self.slots[i].service.service.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        self.chosen = Some(i);
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Err(e)) => {
                        failed = Some((i, e.into()));
                        break;
                    }
                    Poll::Pending => {}
                }
            }
            match failed {
                Some((i, e)) => self.drop_failed(i, e),
                None => return Poll::Pending,
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let i = if self.hash_ready {
            self.hash_ready = false;
            let i = self.pick_hashed(&req);
            self.slots[i].ready = false;
            // `pick_hashed` returns a ready candidate.
            self.ready_candidates -= 1;
            self.unready.push(i);
            i
        } else {
            self.chosen
                .take()
                .expect("Balance::call without a successful poll_ready (tower's Service contract)")
        };
        let slot = &mut self.slots[i];
        slot.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let peak = matches!(self.cfg.policy, Policy::PeakEwma { .. });
        let outlier = self.cfg.outlier.as_ref();
        let guard = CallGuard {
            stats: slot.stats.clone(),
            eject_pending: self.eject_pending.clone(),
            classifier: self.classifier.clone(),
            start: peak.then(Instant::now),
            decay_ns: self.decay_ns,
            consecutive_threshold: outlier.and_then(|o| o.consecutive_failures).unwrap_or(0),
            classify: outlier.is_some(),
        };
        ResponseFuture::new(slot.service.service.call(req), guard)
    }
}

impl<D, S, Req, C, R, H> Balance<D, Req, C, R, H>
where
    D: Discover<Service = Endpoint<S>> + Unpin,
    D::Key: Hash + Eq + Clone + fmt::Debug,
    D::Error: Into<BoxError>,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    R: Rng,
{
    fn drop_failed(&mut self, i: usize, e: BoxError) {
        tracing::debug!(balancer = %self.shared.name, key = ?self.slots[i].key, error = %e, "endpoint failed readiness; removed");
        self.remove_at(i);
        self.publish();
    }
}

impl<D, S, Req, C, R, H> Balance<D, Req, C, R, H>
where
    D: Discover<Service = Endpoint<S>> + Unpin,
    D::Key: Hash + Eq + Clone + fmt::Debug,
    D::Error: Into<BoxError>,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    R: Rng,
    H: HashKey<Req>,
{
    /// Maglev readiness: the request (and so its endpoint) is known only in `call`, so every
    /// candidate is kept polled ready (each one is re-polled only after it was called, as tower's
    /// ready cache does) and the balancer is ready when at least one candidate is.
    fn poll_ready_hashed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            if self.slots.is_empty() {
                return if self.discover_done {
                    Poll::Ready(Err(NoEndpoints::new().into()))
                } else {
                    Poll::Pending
                };
            }
            if self.rebuild_candidates() {
                // Candidate indexes changed: recount which are ready.
                self.unready.clear();
                self.ready_candidates = 0;
                for k in 0..self.candidates.len() {
                    let i = self.candidates[k];
                    if self.slots[i].ready {
                        self.ready_candidates += 1;
                    } else {
                        self.unready.push(i);
                    }
                }
            }
            if self.table_dirty {
                self.rebuild_table();
            }
            // Only candidates not known to be ready are polled (usually just the one called last).
            let mut failed = None;
            let mut k = 0;
            while k < self.unready.len() {
                let i = self.unready[k];
                match self.slots[i].service.service.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        self.slots[i].ready = true;
                        self.ready_candidates += 1;
                        self.unready.swap_remove(k);
                    }
                    Poll::Ready(Err(e)) => {
                        failed = Some((i, e.into()));
                        break;
                    }
                    Poll::Pending => k += 1,
                }
            }
            if let Some((i, e)) = failed {
                self.drop_failed(i, e);
                continue;
            }
            if self.ready_candidates > 0 {
                self.hash_ready = true;
                return Poll::Ready(Ok(()));
            }
            return Poll::Pending;
        }
    }

    fn rebuild_table(&mut self) {
        use std::hash::Hasher as _;
        self.table_dirty = false;
        let size = match self.cfg.policy {
            Policy::Maglev { table_size } => table_size,
            _ => return,
        };
        let keys: Vec<(u64, u64)> = self
            .slots
            .iter()
            .map(|s| {
                let mut a = StableHasher::new(1);
                s.key.hash(&mut a);
                let mut b = StableHasher::new(2);
                s.key.hash(&mut b);
                (a.finish(), b.finish())
            })
            .collect();
        self.table.build(&keys, size);
    }

    /// The endpoint for this request: the key's table entry, else the next entries in table
    /// order (a stable fallback), else any ready candidate. Unkeyed requests go to a random ready
    /// candidate.
    fn pick_hashed(&mut self, req: &Req) -> usize {
        if let Some(key) = self.hash_key.hash_key(req) {
            let tries = self.table.len().min(4 * self.slots.len().max(1) + 64);
            for probe in 0..tries {
                let i = self.table.lookup(key, probe);
                if i < self.slots.len() && self.slots[i].ready && self.slots[i].candidate {
                    return i;
                }
            }
        }
        let n = self.candidates.len();
        let offset = self.rng.next_range(0..n as u64) as usize;
        for j in 0..n {
            let i = self.candidates[(offset + j) % n];
            if self.slots[i].ready {
                return i;
            }
        }
        unreachable!("poll_ready found a ready candidate and nothing changed since")
    }
}
