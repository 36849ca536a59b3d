//! Fault injection: adds latency, injected errors or canned outcomes (an HTTP 503, a gRPC
//! `UNAVAILABLE`...) to a configured share of calls, switchable at runtime through a handle, so a
//! running stack can show its breakers, retries and fallbacks at work (Polly's Simmy, Envoy's
//! fault filter).
//!
//! Disabled, it costs one atomic load per call. The RNG is seedable, so a test or demo injects
//! the same faults every run.
//!
//! ```
//! use palisade_breaker::chaos::{ChaosLayer, Config};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let layer = ChaosLayer::new(Config { error_rate: 1.0, ..Config::default() }).unwrap();
//! let handle = layer.handle();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) });
//! assert!(svc.ready().await.unwrap().call(1).await.unwrap_err().is_injected());
//! handle.disable();
//! assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use serde::{Deserialize, Serialize};
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use crate::util::{InvalidConfig, Rng};

/// Fault injection configuration. Rates are shares of calls (0..=1), drawn independently; a call
/// that draws an error or an outcome does not reach the inner service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Master switch.
    pub enabled: bool,
    /// Share of calls delayed by `latency`.
    pub latency_rate: f64,
    /// The injected delay (added before the response is returned).
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Share of calls failed with an [`Injected`] error.
    pub error_rate: f64,
    /// Share of calls answered with the layer's canned outcome (needs
    /// [`ChaosLayer::outcome`]).
    pub outcome_rate: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            latency_rate: 0.0,
            latency: Duration::ZERO,
            error_rate: 0.0,
            outcome_rate: 0.0,
        }
    }
}

impl Config {
    /// Checks the rates.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        for (field, r) in [
            ("latency_rate", self.latency_rate),
            ("error_rate", self.error_rate),
            ("outcome_rate", self.outcome_rate),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(InvalidConfig::new(
                    "chaos",
                    field,
                    "must be between 0 and 1",
                ));
            }
        }
        Ok(())
    }
}

const PPM: f64 = 1_000_000.0;

struct Shared {
    enabled: AtomicBool,
    latency_ppm: AtomicU32,
    latency_ns: AtomicU64,
    error_ppm: AtomicU32,
    outcome_ppm: AtomicU32,
    injected: AtomicU64,
    rng: Rng,
}

impl Shared {
    fn store(&self, cfg: &Config) {
        self.latency_ppm
            .store((cfg.latency_rate * PPM) as u32, Relaxed);
        self.latency_ns.store(
            cfg.latency.as_nanos().min(u128::from(u64::MAX)) as u64,
            Relaxed,
        );
        self.error_ppm.store((cfg.error_rate * PPM) as u32, Relaxed);
        self.outcome_ppm
            .store((cfg.outcome_rate * PPM) as u32, Relaxed);
        self.enabled.store(cfg.enabled, Relaxed);
    }

    fn draw(&self, ppm: &AtomicU32) -> bool {
        let p = ppm.load(Relaxed);
        p != 0 && (self.rng.next_u64() % 1_000_000) < u64::from(p)
    }
}

/// Produces the canned outcome (e.g. an HTTP 503 response).
pub trait Outcome<Res> {
    /// The response to return instead of calling; `None` when there is none.
    fn outcome(&self) -> Option<Res>;
}

/// No canned outcome (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOutcome;

impl<Res> Outcome<Res> for NoOutcome {
    fn outcome(&self) -> Option<Res> {
        None
    }
}

impl<Res, F: Fn() -> Res> Outcome<Res> for F {
    fn outcome(&self) -> Option<Res> {
        Some(self())
    }
}

/// Injects faults. Every service it wraps shares one config and one handle.
pub struct ChaosLayer<O = NoOutcome> {
    shared: Arc<Shared>,
    outcome: O,
}

impl<O: Clone> Clone for ChaosLayer<O> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            outcome: self.outcome.clone(),
        }
    }
}

impl<O> fmt::Debug for ChaosLayer<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLayer").finish_non_exhaustive()
    }
}

impl ChaosLayer {
    /// Fault injection with `config`, an unpredictable seed and no canned outcome.
    pub fn new(config: Config) -> Result<Self, InvalidConfig> {
        Self::with_seed(config, crate::util::random_seed())
    }

    /// Fault injection with a seeded RNG: the same calls get the same faults every run.
    pub fn with_seed(config: Config, seed: u64) -> Result<Self, InvalidConfig> {
        config.validate()?;
        let shared = Shared {
            enabled: AtomicBool::new(false),
            latency_ppm: AtomicU32::new(0),
            latency_ns: AtomicU64::new(0),
            error_ppm: AtomicU32::new(0),
            outcome_ppm: AtomicU32::new(0),
            injected: AtomicU64::new(0),
            rng: Rng::new(seed),
        };
        shared.store(&config);
        Ok(Self {
            shared: Arc::new(shared),
            outcome: NoOutcome,
        })
    }
}

impl<O> ChaosLayer<O> {
    /// The canned outcome returned to `outcome_rate` of the calls.
    pub fn outcome<O2>(self, outcome: O2) -> ChaosLayer<O2> {
        ChaosLayer {
            shared: self.shared,
            outcome,
        }
    }

    /// The handle: switch on and off, reconfigure.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }
}

impl<S, O: Clone> Layer<S> for ChaosLayer<O> {
    type Service = Chaos<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        Chaos {
            inner,
            shared: self.shared.clone(),
            outcome: self.outcome.clone(),
        }
    }
}

/// Switches fault injection on and off and reconfigures it live.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("enabled", &self.shared.enabled.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// Starts injecting.
    pub fn enable(&self) {
        self.shared.enabled.store(true, Relaxed);
    }

    /// Stops injecting: calls go straight through.
    pub fn disable(&self) {
        self.shared.enabled.store(false, Relaxed);
    }

    /// Whether faults are being injected.
    pub fn is_enabled(&self) -> bool {
        self.shared.enabled.load(Relaxed)
    }

    /// Faults injected so far (delays, errors and outcomes).
    pub fn injected_total(&self) -> u64 {
        self.shared.injected.load(Relaxed)
    }

    /// Applies new rates live. A bad config is refused and the old one kept.
    pub fn reconfigure(&self, cfg: Config) -> Result<(), InvalidConfig> {
        cfg.validate()?;
        self.shared.store(&cfg);
        Ok(())
    }
}

/// A service with fault injection. Built by [`ChaosLayer`].
pub struct Chaos<S, O = NoOutcome> {
    inner: S,
    shared: Arc<Shared>,
    outcome: O,
}

impl<S: Clone, O: Clone> Clone for Chaos<S, O> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            outcome: self.outcome.clone(),
        }
    }
}

impl<S: fmt::Debug, O> fmt::Debug for Chaos<S, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// An injected failure. Not a rejection: policies treat it as the dependency failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injected;

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("injected fault")
    }
}

impl std::error::Error for Injected {}

/// The error of a [`Chaos`] service: an injected fault or the inner service's error.
pub struct Error<E> {
    inner: Option<E>,
}

impl<E> Error<E> {
    /// Whether the fault was injected.
    pub fn is_injected(&self) -> bool {
        self.inner.is_none()
    }

    /// The inner service's error, if it failed by itself.
    pub fn inner_ref(&self) -> Option<&E> {
        self.inner.as_ref()
    }

    /// The inner service's error, or the injected fault.
    pub fn into_inner(self) -> Result<E, Injected> {
        self.inner.ok_or(Injected)
    }
}

impl<E: fmt::Debug> fmt::Debug for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("Injected"),
            Some(e) => f.debug_tuple("Inner").field(e).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => Injected.fmt(f),
            Some(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner {
            None => None,
            Some(e) => e.source(),
        }
    }
}

impl<S, O, Req> Service<Req> for Chaos<S, O>
where
    S: Service<Req>,
    O: Outcome<S::Response>,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future, S::Response>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error { inner: Some(e) })
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let s = &self.shared;
        if !s.enabled.load(Relaxed) {
            return ResponseFuture::called(self.inner.call(req), None);
        }
        let delay = s
            .draw(&s.latency_ppm)
            .then(|| tokio::time::sleep(Duration::from_nanos(s.latency_ns.load(Relaxed))));
        if delay.is_some() {
            s.injected.fetch_add(1, Relaxed);
        }
        if s.draw(&s.error_ppm) {
            s.injected.fetch_add(1, Relaxed);
            return ResponseFuture::done(None, delay);
        }
        if s.draw(&s.outcome_ppm)
            && let Some(res) = self.outcome.outcome()
        {
            s.injected.fetch_add(1, Relaxed);
            return ResponseFuture::done(Some(res), delay);
        }
        ResponseFuture::called(self.inner.call(req), delay)
    }
}

pin_project! {
    /// The inner future (or an injected result), possibly delayed.
    pub struct ResponseFuture<F, Res>
    where
        F: Future,
    {
        #[pin]
        kind: Kind<F, Res>,
        #[pin]
        delay: Option<Sleep>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, Res>
    where
        F: Future,
    {
        Called { #[pin] fut: F, out: Option<F::Output> },
        Done { out: Option<Res>, failed: bool },
    }
}

impl<F: Future, Res> ResponseFuture<F, Res> {
    fn called(fut: F, delay: Option<Sleep>) -> Self {
        Self {
            kind: Kind::Called { fut, out: None },
            delay,
        }
    }

    /// An injected outcome (`Some`) or error (`None`).
    fn done(out: Option<Res>, delay: Option<Sleep>) -> Self {
        let failed = out.is_none();
        Self {
            kind: Kind::Done { out, failed },
            delay,
        }
    }
}

impl<F: Future, Res> fmt::Debug for ResponseFuture<F, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<F, E, Res> Future for ResponseFuture<F, Res>
where
    F: Future<Output = Result<Res, E>>,
{
    type Output = Result<Res, Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called { fut, out } => {
                if out.is_none() {
                    *out = Some(ready!(fut.poll(cx)));
                }
                if let Some(d) = this.delay.as_pin_mut() {
                    ready!(d.poll(cx));
                }
                let r = out.take().expect("polled after completion");
                Poll::Ready(r.map_err(|e| Error { inner: Some(e) }))
            }
            KindProj::Done { out, failed } => {
                if let Some(d) = this.delay.as_pin_mut() {
                    ready!(d.poll(cx));
                }
                if *failed {
                    Poll::Ready(Err(Error { inner: None }))
                } else {
                    Poll::Ready(Ok(out.take().expect("polled after completion")))
                }
            }
        }
    }
}
