//! Hedged requests: when a call has not answered after a delay, send the same request again and
//! take whichever answers first; the other is cancelled (dropped). The delay is fixed, or a
//! latency percentile learned from recent calls without a lock on the request path (tower's
//! `Hedge` takes a mutex on its histogram for every call). Hedges draw from a
//! [`RetryBudget`] (share the retry layer's with [`retry::Handle::budget`](crate::retry::Handle::budget)),
//! so a slow dependency does not get twice the load.
//!
//! Per call it clones the request and the inner service (kept for the hedge); the timer is
//! armed only if the call is still pending when first polled, so a call that answers at once
//! never touches the timer wheel.
//!
//! ```
//! use palisade_breaker::hedge::HedgeLayer;
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let layer = HedgeLayer::fixed(Duration::from_millis(50));
//! let handle = layer.handle();
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let c = calls.clone();
//! let mut svc = ServiceBuilder::new().layer(layer).service_fn(move |x: u32| {
//!     // The first call is stuck; the hedge answers.
//!     let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     async move {
//!         tokio::time::sleep(Duration::from_millis(if n == 0 { 10_000 } else { 5 })).await;
//!         Ok::<_, std::io::Error>(x)
//!     }
//! });
//! let start = tokio::time::Instant::now();
//! assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
//! assert_eq!(start.elapsed(), Duration::from_millis(55));
//! assert_eq!(handle.hedges_total(), 1);
//! # }
//! ```

mod histogram;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use self::histogram::Histogram;
use crate::retry::{BudgetConfig, RetryBudget};

enum Delay {
    Fixed(Duration),
    Percentile(Histogram, (f64, u32, u32)),
}

impl Delay {
    fn fresh(&self) -> Delay {
        match self {
            Delay::Fixed(d) => Delay::Fixed(*d),
            Delay::Percentile(_, (p, min, window)) => {
                Delay::Percentile(Histogram::new(*p, *min, *window), (*p, *min, *window))
            }
        }
    }
}

struct Shared {
    delay: Delay,
    budget: RetryBudget,
    hedges: AtomicU64,
    hedge_wins: AtomicU64,
    denied: AtomicU64,
}

impl Shared {
    /// The hedge delay now, `None` while a percentile has too few samples.
    #[inline]
    fn delay(&self) -> Option<Duration> {
        match &self.delay {
            Delay::Fixed(d) => Some(*d),
            Delay::Percentile(h, _) => match h.percentile_us() {
                0 => None,
                us => Some(Duration::from_micros(us)),
            },
        }
    }

    fn record(&self, start: Option<Instant>) {
        if let (Delay::Percentile(h, _), Some(start)) = (&self.delay, start) {
            h.record(start.elapsed().as_micros().min(u128::from(u64::MAX)) as u64);
        }
    }

    fn learns(&self) -> bool {
        matches!(self.delay, Delay::Percentile(..))
    }
}

/// Hedges calls. Every service it wraps shares the delay estimate, the budget and the counters.
#[derive(Clone)]
pub struct HedgeLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for HedgeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayer").finish_non_exhaustive()
    }
}

impl HedgeLayer {
    fn with(delay: Delay) -> Self {
        Self {
            shared: Arc::new(Shared {
                delay,
                budget: RetryBudget::new(&BudgetConfig::default()),
                hedges: AtomicU64::new(0),
                hedge_wins: AtomicU64::new(0),
                denied: AtomicU64::new(0),
            }),
        }
    }

    /// Hedge after a fixed delay.
    pub fn fixed(delay: Duration) -> Self {
        Self::with(Delay::Fixed(delay))
    }

    /// Hedge after the `percentile` (e.g. 0.95) of recent latencies, once `min_samples` calls
    /// were seen (no hedging before). Samples decay over about `2 * window` calls.
    pub fn percentile(percentile: f64, min_samples: u32, window: u32) -> Self {
        Self::with(Delay::Percentile(
            Histogram::new(percentile, min_samples, window),
            (percentile, min_samples, window),
        ))
    }

    /// Draw hedges from this budget (default: a budget of its own, 20% + 10/s). Set it while
    /// building: a layer already cloned or handed out starts over with fresh counters and
    /// latency samples.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.budget = budget,
            None => {
                let delay = self.shared.delay.fresh();
                self = Self::with(delay);
                if let Some(shared) = Arc::get_mut(&mut self.shared) {
                    shared.budget = budget;
                }
            }
        }
        self
    }

    /// Counters and the current delay.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }
}

impl<S> Layer<S> for HedgeLayer {
    type Service = Hedge<S>;

    fn layer(&self, inner: S) -> Hedge<S> {
        Hedge {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Counters of a hedge layer.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("hedges", &self.hedges_total())
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// Hedges sent.
    pub fn hedges_total(&self) -> u64 {
        self.shared.hedges.load(Relaxed)
    }

    /// Hedges that answered first.
    pub fn hedge_wins_total(&self) -> u64 {
        self.shared.hedge_wins.load(Relaxed)
    }

    /// Hedges not sent because the budget was spent.
    pub fn denied_total(&self) -> u64 {
        self.shared.denied.load(Relaxed)
    }

    /// The hedge delay in force (`None`: not enough samples yet).
    pub fn delay(&self) -> Option<Duration> {
        self.shared.delay()
    }
}

/// A hedged service. Built by [`HedgeLayer`]. Requests must be `Clone` (the hedge sends a copy).
pub struct Hedge<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Hedge<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Hedge<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, Req> Service<Req> for Hedge<S>
where
    S: Service<Req> + Clone,
    Req: Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.shared.budget.deposit();
        let delay = self.shared.delay();
        let spare = delay.map(|_| (self.inner.clone(), req.clone()));
        let primary = self.inner.call(req);
        ResponseFuture {
            primary: Some(primary),
            hedge: None,
            timer: None,
            delay,
            spare,
            hedging: false,
            primary_error: None,
            start: self.shared.learns().then(Instant::now),
            hedge_start: None,
            shared: self.shared.clone(),
        }
    }
}

pin_project! {
    /// The primary call and, after the delay, the hedge; the first success wins and the other is
    /// dropped.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        primary: Option<S::Future>,
        #[pin]
        hedge: Option<S::Future>,
        #[pin]
        timer: Option<Sleep>,
        // The hedge delay, until the timer is armed (when the primary is first found pending:
        // a call that answers at once never touches the timer wheel).
        delay: Option<Duration>,
        spare: Option<(S, Req)>,
        hedging: bool,
        primary_error: Option<S::Error>,
        start: Option<Instant>,
        hedge_start: Option<Instant>,
        shared: Arc<Shared>,
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(fut) = this.primary.as_mut().as_pin_mut()
            && let Poll::Ready(r) = fut.poll(cx)
        {
            this.primary.set(None);
            this.shared.record(*this.start);
            match r {
                Ok(res) => return Poll::Ready(Ok(res)),
                // An error before the hedge went out is returned as is: hedging is for
                // latency, retrying is the retry layer's job.
                Err(e) if this.hedge.is_none() && !*this.hedging => return Poll::Ready(Err(e)),
                Err(e) => *this.primary_error = Some(e),
            }
        }
        if let Some(d) = this.delay.take()
            && this.primary.is_some()
        {
            this.timer.set(Some(tokio::time::sleep(d)));
        }
        // Send the hedge once the timer fires (and the budget allows).
        if let Some(timer) = this.timer.as_mut().as_pin_mut()
            && timer.poll(cx).is_ready()
        {
            this.timer.set(None);
            if this.shared.budget.withdraw() {
                *this.hedging = true;
            } else {
                this.shared.denied.fetch_add(1, Relaxed);
                *this.spare = None;
            }
        }
        if *this.hedging {
            let (svc, _) = this
                .spare
                .as_mut()
                .expect("a spare is kept until the hedge is sent");
            match svc.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let (mut svc, req) = this.spare.take().expect("checked above");
                    this.hedge.set(Some(svc.call(req)));
                    *this.hedging = false;
                    *this.hedge_start = Some(Instant::now());
                    this.shared.hedges.fetch_add(1, Relaxed);
                }
                Poll::Ready(Err(_)) => {
                    *this.hedging = false;
                    *this.spare = None;
                }
                Poll::Pending => {}
            }
        }
        if let Some(fut) = this.hedge.as_mut().as_pin_mut()
            && let Poll::Ready(r) = fut.poll(cx)
        {
            this.hedge.set(None);
            this.shared.record(*this.hedge_start);
            match r {
                Ok(res) => {
                    this.shared.hedge_wins.fetch_add(1, Relaxed);
                    return Poll::Ready(Ok(res));
                }
                Err(e) if this.primary.is_none() => return Poll::Ready(Err(e)),
                Err(_) => {}
            }
        }
        // Both attempts over and no success: the primary's error.
        if this.primary.is_none()
            && this.hedge.is_none()
            && !*this.hedging
            && let Some(e) = this.primary_error.take()
        {
            return Poll::Ready(Err(e));
        }
        Poll::Pending
    }
}
