//! The tower stack that generated clients send their requests through.
//!
//! [`StackBuilder`] assembles, outside in: [`RetryPolicy`] retries (idempotent methods with
//! buffered bodies, within a budget) → a [`CircuitBreaker`] with the [`HttpClassifier`] → a
//! per-method timeout ([`Deadline`]) → [`Interceptor`]s → [`SetBaseUrl`] → the transport.
//!
//! The transport is any `Service<http::Request<Body>>`: the default hyper-util client from
//! [`StackBuilder::build`], or anything passed to [`StackBuilder::build_with`] (a test double,
//! a `tower::balance` balancer over discovered endpoints...).
//!
//! [`CircuitBreaker`]: palisade_breaker::circuit::CircuitBreaker
//! [`HttpClassifier`]: palisade_breaker::HttpClassifier

mod base_url;
mod deadline;
mod intercept;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use palisade_breaker::HttpClassifier;
use palisade_breaker::circuit::{CircuitBreaker, CircuitBreakerLayer, Config, ConfigError, Handle};
use tower::retry::Retry;
use tower_layer::Layer;

pub use self::base_url::{BaseUrl, InvalidBaseUrl, SetBaseUrl, SetBaseUrlLayer};
pub use self::deadline::{Deadline, DeadlineError, DeadlineFuture, DeadlineLayer, Elapsed};
pub use self::intercept::{BearerAuth, Intercept, InterceptLayer, Interceptor, StaticHeader};
pub use self::retry::{InvalidRetryPolicy, RetryPolicy};

use crate::transport::{HttpTransport, TransportConfig};

/// The service a [`StackBuilder`] builds over a transport `T`.
pub type Stack<T> =
    Retry<RetryPolicy, CircuitBreaker<Deadline<Intercept<SetBaseUrl<T>>>, HttpClassifier>>;

/// Assembles the standard client stack.
///
/// ```
/// use palisade_client::stack::{RetryPolicy, StackBuilder};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let stack = StackBuilder::new("catalog")
///     .base_url("http://127.0.0.1:8080")
///     .unwrap()
///     .timeout(Duration::from_secs(2))
///     .retry(RetryPolicy::new(2))
///     .build()
///     .unwrap();
/// # let _ = stack;
/// # }
/// ```
#[must_use]
pub struct StackBuilder {
    name: String,
    base: Option<BaseUrl>,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    breaker: Option<CircuitBreakerLayer<HttpClassifier>>,
    breaker_config: Config,
    interceptors: Vec<Arc<dyn Interceptor>>,
    transport: TransportConfig,
}

impl std::fmt::Debug for StackBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackBuilder")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("interceptors", &self.interceptors.len())
            .finish_non_exhaustive()
    }
}

impl StackBuilder {
    /// A builder for the client of the dependency `name` (the breaker's name).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            base: None,
            timeout: None,
            retry: RetryPolicy::default(),
            breaker: None,
            breaker_config: Config::default(),
            interceptors: Vec::new(),
            transport: TransportConfig::default(),
        }
    }

    /// Sends origin-form requests to `url` (`http://host:port[/prefix]`). Without a base URL the
    /// transport must route requests itself (a balancer over discovered endpoints).
    pub fn base_url(mut self, url: &str) -> Result<Self, InvalidBaseUrl> {
        self.base = Some(BaseUrl::parse(url)?);
        Ok(self)
    }

    /// The timeout of methods that set none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The config of the breaker the builder creates (ignored if [`breaker`](Self::breaker)
    /// supplies one).
    pub fn breaker_config(mut self, config: Config) -> Self {
        self.breaker_config = config;
        self
    }

    /// Uses this breaker (shared with whatever else it wraps).
    pub fn breaker(mut self, layer: CircuitBreakerLayer<HttpClassifier>) -> Self {
        self.breaker = Some(layer);
        self
    }

    /// Adds an interceptor; they run in the order they are added.
    pub fn interceptor(mut self, i: impl Interceptor) -> Self {
        self.interceptors.push(Arc::new(i));
        self
    }

    /// Options of the default transport.
    pub fn transport(mut self, config: TransportConfig) -> Self {
        self.transport = config;
        self
    }

    /// The stack over the default hyper-util transport.
    pub fn build(self) -> Result<Stack<HttpTransport>, ConfigError> {
        let transport = self.transport.build();
        self.build_with(transport)
    }

    /// The stack over `transport`, any `Service<http::Request<Body>>`.
    pub fn build_with<T>(self, transport: T) -> Result<Stack<T>, ConfigError> {
        Ok(self.into_layer()?.layer(transport))
    }

    /// The stack as a layer, to put over a transport with `tower::ServiceBuilder`.
    pub fn into_layer(self) -> Result<StackLayer, ConfigError> {
        let breaker = match self.breaker {
            Some(b) => b,
            None => CircuitBreakerLayer::builder(self.name.clone())
                .config(self.breaker_config)
                .classifier(HttpClassifier::new())
                .build()?,
        };
        #[cfg(feature = "metrics")]
        let retry = self.retry.metrics(&self.name);
        #[cfg(not(feature = "metrics"))]
        let retry = self.retry;
        Ok(StackLayer {
            retry,
            breaker,
            deadline: DeadlineLayer::new(self.timeout),
            intercept: InterceptLayer::new(self.interceptors),
            base: SetBaseUrlLayer::new(self.base),
        })
    }
}

/// The standard stack as a [`Layer`], to put over any transport.
#[derive(Clone, Debug)]
pub struct StackLayer {
    retry: RetryPolicy,
    breaker: CircuitBreakerLayer<HttpClassifier>,
    deadline: DeadlineLayer,
    intercept: InterceptLayer,
    base: SetBaseUrlLayer,
}

impl StackLayer {
    /// The handle of the stack's circuit breaker.
    pub fn breaker(&self) -> Handle {
        self.breaker.handle()
    }
}

impl<T> Layer<T> for StackLayer {
    type Service = Stack<T>;
    fn layer(&self, transport: T) -> Stack<T> {
        let svc = self.base.layer(transport);
        let svc = self.intercept.layer(svc);
        let svc = self.deadline.layer(svc);
        let svc = self.breaker.layer(svc);
        Retry::new(self.retry.clone(), svc)
    }
}
