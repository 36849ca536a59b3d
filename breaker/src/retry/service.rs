use std::fmt;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::config::Config;
use super::core::{Handle, Listener, Shared};
use super::future::ResponseFuture;
use super::policy::{Policy, RetryErrors};
use super::replay::{CloneReplay, Replay};
use crate::util::{InvalidConfig, SharedRef};

/// Retries failed calls. Built by [`RetryLayer`].
///
/// Each call deposits into the retry budget; each retry withdraws from it. The response future
/// holds a clone of the inner service for the retries, and polls it ready before each retry.
pub struct Retry<S, P = RetryErrors, R = CloneReplay, L: 'static = ()> {
    inner: S,
    policy: P,
    replay: R,
    shared: SharedRef<Shared<L>>,
}

impl<S: Clone, P: Clone, R: Clone, L: 'static> Clone for Retry<S, P, R, L> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
            replay: self.replay.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, P, R, L: 'static> fmt::Debug for Retry<S, P, R, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("retry", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<S, P, R, L: Listener> Retry<S, P, R, L> {
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

    /// The handle of this retry layer.
    pub fn handle(&self) -> Handle<L> {
        Handle {
            shared: self.shared.clone(),
        }
    }
}

impl<S, P, R, L, Req> Service<Req> for Retry<S, P, R, L>
where
    R: Replay<Req> + Clone,
    S: Service<R::Request> + Clone,
    P: Policy<Req, S::Response, S::Error> + Clone,
    L: Listener,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req, P, R, L>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.shared.on_call();
        let retryable = self.policy.retryable(&req);
        let deadline = self.policy.deadline(&req);
        let (first, saved) = self.replay.prepare(req, retryable);
        // The ready service takes the first attempt; the future keeps a clone for retries (it
        // polls that clone ready before each one).
        let fut = self.inner.call(first);
        ResponseFuture::new(
            fut,
            self.inner.clone(),
            saved,
            deadline,
            self.policy.clone(),
            self.replay.clone(),
            self.shared.clone(),
        )
    }
}

/// Applies retries to services. Every service it wraps shares one budget and one handle.
pub struct RetryLayer<P = RetryErrors, R = CloneReplay, L: 'static = ()> {
    policy: P,
    replay: R,
    shared: SharedRef<Shared<L>>,
}

impl<P: Clone, R: Clone, L: 'static> Clone for RetryLayer<P, R, L> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            replay: self.replay.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<P, R, L: 'static> fmt::Debug for RetryLayer<P, R, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("retry", &self.shared)
            .finish_non_exhaustive()
    }
}

impl RetryLayer {
    /// Retries errors (never rejections) of `Clone` requests with `config`.
    pub fn new(name: impl Into<String>, config: Config) -> Result<Self, InvalidConfig> {
        Self::builder(name).config(config).build()
    }

    /// A builder for the policy, the replay, the listener and the RNG seed.
    pub fn builder(name: impl Into<String>) -> LayerBuilder {
        LayerBuilder {
            name: name.into(),
            config: Config::default(),
            policy: RetryErrors,
            replay: CloneReplay,
            listener: (),
            seed: None,
        }
    }
}

impl<P, R, L: Listener> RetryLayer<P, R, L> {
    /// The handle of this layer.
    pub fn handle(&self) -> Handle<L> {
        Handle {
            shared: self.shared.clone(),
        }
    }
}

impl<S, P: Clone, R: Clone, L: 'static> Layer<S> for RetryLayer<P, R, L> {
    type Service = Retry<S, P, R, L>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            policy: self.policy.clone(),
            replay: self.replay.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// Builds a [`RetryLayer`].
#[derive(Debug)]
#[must_use]
pub struct LayerBuilder<P = RetryErrors, R = CloneReplay, L = ()> {
    name: String,
    config: Config,
    policy: P,
    replay: R,
    listener: L,
    seed: Option<u64>,
}

impl<P, R, L> LayerBuilder<P, R, L> {
    /// The config (validated by [`build`](Self::build)).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// What to retry.
    pub fn policy<P2>(self, policy: P2) -> LayerBuilder<P2, R, L> {
        LayerBuilder {
            name: self.name,
            config: self.config,
            policy,
            replay: self.replay,
            listener: self.listener,
            seed: self.seed,
        }
    }

    /// How requests are kept for replay.
    pub fn replay<R2>(self, replay: R2) -> LayerBuilder<P, R2, L> {
        LayerBuilder {
            name: self.name,
            config: self.config,
            policy: self.policy,
            replay,
            listener: self.listener,
            seed: self.seed,
        }
    }

    /// The event listener.
    pub fn listener<L2: Listener>(self, listener: L2) -> LayerBuilder<P, R, L2> {
        LayerBuilder {
            name: self.name,
            config: self.config,
            policy: self.policy,
            replay: self.replay,
            listener,
            seed: self.seed,
        }
    }

    /// Seeds the jitter RNG, for repeatable tests and simulations.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates the config and builds the layer.
    pub fn build(self) -> Result<RetryLayer<P, R, L>, InvalidConfig>
    where
        L: Listener,
    {
        self.build_with(SharedRef::new)
    }

    /// Like [`build`](Self::build), for a retry layer that lives as long as the process (most
    /// do: one per downstream, built at start-up). Its state is allocated once and never freed,
    /// so a call hands it to the response future without touching a reference count: two
    /// atomic operations fewer per call. Each call leaks that allocation (a few hundred bytes):
    /// build these once, not per request or per reconfiguration (use
    /// [`Handle::reconfigure`](super::Handle::reconfigure) to change them).
    ///
    /// ```
    /// use palisade_breaker::retry::{Config, RetryLayer};
    ///
    /// let retry = RetryLayer::builder("catalog").config(Config::default()).build_static()?;
    /// let svc = tower::ServiceBuilder::new()
    ///     .layer(retry)
    ///     .service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) });
    /// # let _ = svc;
    /// # Ok::<(), palisade_breaker::InvalidConfig>(())
    /// ```
    pub fn build_static(self) -> Result<RetryLayer<P, R, L>, InvalidConfig>
    where
        L: Listener,
    {
        self.build_with(SharedRef::leak)
    }

    fn build_with(
        self,
        place: fn(Shared<L>) -> SharedRef<Shared<L>>,
    ) -> Result<RetryLayer<P, R, L>, InvalidConfig>
    where
        L: Listener,
    {
        self.config.validate()?;
        Ok(RetryLayer {
            policy: self.policy,
            replay: self.replay,
            shared: place(Shared::new(
                self.name.into_boxed_str(),
                self.config,
                self.seed,
                self.listener,
            )),
        })
    }
}
