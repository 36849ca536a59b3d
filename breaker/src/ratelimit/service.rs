use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use super::config::{Config, Mode};
use super::error::{Error, Rejected};
use super::future::ResponseFuture;
use super::gcra::{Gcra, Handle, Listener};
use crate::util::InvalidConfig;

/// Applies one rate limit to services: every service it wraps, and every clone of those, draws
/// from the same limit (tower #794 is the bug where each clone got its own).
pub struct RateLimitLayer<L = ()> {
    gcra: Arc<Gcra<L>>,
}

impl<L> Clone for RateLimitLayer<L> {
    fn clone(&self) -> Self {
        Self {
            gcra: self.gcra.clone(),
        }
    }
}

impl<L> fmt::Debug for RateLimitLayer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.gcra)
            .finish()
    }
}

impl RateLimitLayer {
    /// A limiter with `config`.
    pub fn new(config: Config) -> Result<Self, InvalidConfig> {
        Self::with_listener("", config, ())
    }

    /// A limiter with `config` on the coarse clock: one atomic load per call instead of a
    /// `clock_gettime`, at the price of precision (see [the module docs](super#clocks)).
    ///
    /// ```
    /// use palisade_breaker::ratelimit::{Config, RateLimitLayer};
    /// use std::time::Duration;
    ///
    /// // 10,000 calls a second; the coarse clock's 1 ms tick is worth 10 calls.
    /// let layer = RateLimitLayer::new_coarse(Config::per(10_000, Duration::from_secs(1)))?;
    /// assert!(layer.handle().snapshot().available > 0);
    /// # Ok::<(), palisade_breaker::InvalidConfig>(())
    /// ```
    pub fn new_coarse(config: Config) -> Result<Self, InvalidConfig> {
        Self::with_listener_coarse("", config, ())
    }
}

impl<L: Listener> RateLimitLayer<L> {
    /// A limiter named `name` (passed to the listener) with an event listener.
    pub fn with_listener(
        name: impl Into<String>,
        config: Config,
        listener: L,
    ) -> Result<Self, InvalidConfig> {
        Self::build(name.into(), config, listener, false)
    }

    /// [`with_listener`](Self::with_listener) on the coarse clock, as in
    /// [`new_coarse`](RateLimitLayer::new_coarse).
    pub fn with_listener_coarse(
        name: impl Into<String>,
        config: Config,
        listener: L,
    ) -> Result<Self, InvalidConfig> {
        Self::build(name.into(), config, listener, true)
    }

    fn build(
        name: String,
        config: Config,
        listener: L,
        coarse: bool,
    ) -> Result<Self, InvalidConfig> {
        config.validate()?;
        let gcra = Gcra::with_listener(&config, Instant::now(), name.into_boxed_str(), listener);
        Ok(Self {
            gcra: Arc::new(if coarse {
                gcra.with_coarse_clock()
            } else {
                gcra
            }),
        })
    }

    /// The handle of this layer's limiter.
    pub fn handle(&self) -> Handle<L> {
        Handle {
            gcra: self.gcra.clone(),
        }
    }
}

impl<S, L: Listener> Layer<S> for RateLimitLayer<L> {
    type Service = RateLimit<S, L>;

    fn layer(&self, inner: S) -> RateLimit<S, L> {
        RateLimit {
            inner,
            gcra: self.gcra.clone(),
            reserved: Reserved::Nothing,
            sleep: None,
        }
    }
}

/// A rate-limited service. Built by [`RateLimitLayer`].
///
/// In [`Mode::Shed`] `call` takes a permit or fails at once; in [`Mode::Backpressure`]
/// `poll_ready` reserves the next permit when it comes within `max_wait` and waits for it, so
/// waiters are served in order. A permit reserved in `poll_ready` is spent even if `call` never
/// comes (GCRA cannot give one back). A clone starts without a permit.
pub struct RateLimit<S, L = ()> {
    inner: S,
    gcra: Arc<Gcra<L>>,
    reserved: Reserved,
    // Boxed once per service and reused: only a caller that waits needs a timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

#[derive(Clone, Copy)]
enum Reserved {
    Nothing,
    // A permit reserved for later: usable when the timer fires.
    Waiting,
    Acquired,
    Rejected(Rejected),
}

impl<S, L: Listener> RateLimit<S, L> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The handle of this service's limiter.
    pub fn handle(&self) -> Handle<L> {
        Handle {
            gcra: self.gcra.clone(),
        }
    }

    fn arm(&mut self, at: Instant) {
        match &mut self.sleep {
            Some(s) => s.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }
}

impl<S: Clone, L> Clone for RateLimit<S, L> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            gcra: self.gcra.clone(),
            reserved: Reserved::Nothing,
            sleep: None,
        }
    }
}

impl<S: fmt::Debug, L> fmt::Debug for RateLimit<S, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.gcra)
            .finish_non_exhaustive()
    }
}

impl<S, L, Req> Service<Req> for RateLimit<S, L>
where
    S: Service<Req>,
    L: Listener,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.gcra.mode() == Mode::Shed {
            return self.inner.poll_ready(cx).map_err(Error::inner);
        }
        loop {
            match self.reserved {
                Reserved::Nothing => {
                    let g = &self.gcra;
                    self.reserved = match g.reserve_at(g.now(), g.max_wait_nanos()) {
                        Ok(0) => Reserved::Acquired,
                        Ok(wait) => {
                            self.arm(Instant::now() + Duration::from_nanos(wait));
                            Reserved::Waiting
                        }
                        Err(wait) => Reserved::Rejected(g.reject(wait)),
                    };
                }
                Reserved::Waiting => {
                    let sleep = self.sleep.as_mut().expect("armed when waiting");
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.reserved = Reserved::Acquired;
                }
                Reserved::Rejected(_) => return Poll::Ready(Ok(())),
                Reserved::Acquired => return self.inner.poll_ready(cx).map_err(Error::inner),
            }
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let admitted = match std::mem::replace(&mut self.reserved, Reserved::Nothing) {
            Reserved::Acquired => Ok(()),
            Reserved::Rejected(r) => Err(r),
            Reserved::Nothing | Reserved::Waiting => {
                self.gcra.try_acquire().map_err(|ns| self.gcra.reject(ns))
            }
        };
        match admitted {
            Ok(()) => ResponseFuture::called(self.inner.call(req)),
            Err(r) => ResponseFuture::rejected(r),
        }
    }
}
