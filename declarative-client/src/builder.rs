//! [`ClientBuilder`]: the standard stack for a generated client, over a fixed base URL or (with
//! the `discovery` feature) a balancer over the registry's instances of `service = "..."`.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use palisade_breaker::HttpClassifier;
use palisade_breaker::circuit::{CircuitBreakerLayer, Config as BreakerConfig};
use tower_service::Service;

use crate::BoxError;
use crate::body::Body;
use crate::stack::{Interceptor, InvalidBaseUrl, RetryPolicy, Stack, StackBuilder};
use crate::transport::{HttpTransport, TransportConfig};

/// The stack of a client made by [`ClientBuilder`]: the standard [`Stack`] over a
/// [`Transport`].
pub type ClientStack = Stack<Transport>;

/// What a generated client exposes to [`ClientBuilder`]; the `#[client]` macro implements it
/// for `TraitClient<ClientStack>`. Not meant to be implemented by hand.
pub trait GeneratedClient: Sized {
    /// The trait's name (`"Catalog"`).
    const NAME: &'static str;
    /// The `service = "..."` name, if the trait has one.
    const SERVICE: Option<&'static str>;
    /// The trait-level fallback type (`()` without one).
    type Fallback;
    /// The client over `stack`.
    fn from_stack(stack: ClientStack, fallback: Self::Fallback) -> Self;
    /// The fallback to use when none was given: `Some(())` for clients without one.
    fn no_fallback() -> Option<Self::Fallback>;
}

/// Builds a generated client over the standard stack (retry → circuit breaker → timeout →
/// interceptors → transport), sending to a fixed [`base_url`](Self::base_url) or, with the
/// `discovery` feature, to the instances that [`discovery`](Self::discovery) finds for the
/// trait's `service = "..."`. Get one with `TraitClient::builder()`.
///
/// ```
/// use palisade_client::{client, ClientError, Json};
/// use palisade_client::stack::RetryPolicy;
///
/// #[client(service = "catalog", base_path = "/api/v1")]
/// pub trait Catalog {
///     #[get("/titles/{id}")]
///     async fn title(&self, #[path] id: u64) -> Result<Json<String>, ClientError>;
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let catalog = CatalogClient::builder()
///     .base_url("http://127.0.0.1:1")
///     .unwrap()
///     .retry(RetryPolicy::new(2))
///     .build()
///     .unwrap();
/// // Nothing listens on port 1.
/// assert!(catalog.title(7).await.unwrap_err().is_transport());
///
/// // Neither a base URL nor discovery: a clear error.
/// let err = CatalogClient::builder().build().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "client `Catalog` (service `catalog`): no destination: call `base_url(..)` or `discovery(..)`"
/// );
/// # }
/// ```
#[must_use]
pub struct ClientBuilder<C: GeneratedClient> {
    stack: StackBuilder,
    has_base: bool,
    fallback: Option<C::Fallback>,
    transport: TransportConfig,
    #[cfg(feature = "discovery")]
    discovery: Option<discovery::Discovery>,
    #[cfg(feature = "discovery")]
    balancer: discovery::BalancerSettings,
    _client: PhantomData<fn() -> C>,
}

impl<C: GeneratedClient> fmt::Debug for ClientBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("client", &C::NAME)
            .field("service", &C::SERVICE)
            .field("stack", &self.stack)
            .finish_non_exhaustive()
    }
}

impl<C: GeneratedClient> Default for ClientBuilder<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: GeneratedClient> ClientBuilder<C> {
    /// A builder whose breaker (and balancer) is named after the `service`, else the trait.
    pub fn new() -> Self {
        Self {
            stack: StackBuilder::new(C::SERVICE.unwrap_or(C::NAME)),
            has_base: false,
            fallback: None,
            transport: TransportConfig::default(),
            #[cfg(feature = "discovery")]
            discovery: None,
            #[cfg(feature = "discovery")]
            balancer: discovery::BalancerSettings::default(),
            _client: PhantomData,
        }
    }

    /// Sends every request to `url` (`http://host:port[/prefix]`).
    pub fn base_url(mut self, url: &str) -> Result<Self, InvalidBaseUrl> {
        self.stack = self.stack.base_url(url)?;
        self.has_base = true;
        Ok(self)
    }

    /// The timeout of methods that set none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.stack = self.stack.timeout(timeout);
        self
    }

    /// The retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.stack = self.stack.retry(policy);
        self
    }

    /// The config of the circuit breaker.
    pub fn breaker_config(mut self, config: BreakerConfig) -> Self {
        self.stack = self.stack.breaker_config(config);
        self
    }

    /// Uses this breaker (shared with whatever else it wraps).
    pub fn breaker(mut self, layer: CircuitBreakerLayer<HttpClassifier>) -> Self {
        self.stack = self.stack.breaker(layer);
        self
    }

    /// Adds an interceptor; they run in the order they are added.
    pub fn interceptor(mut self, i: impl Interceptor) -> Self {
        self.stack = self.stack.interceptor(i);
        self
    }

    /// Options of the hyper-util transport (shared by every discovered instance).
    pub fn transport(mut self, config: TransportConfig) -> Self {
        self.transport = config;
        self
    }

    /// The trait-level fallback (required when the trait has `fallback = Type`).
    pub fn fallback(mut self, fallback: C::Fallback) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// Builds the client. With [`discovery`](Self::discovery) it must run inside a Tokio
    /// runtime (the balancer runs in a task).
    pub fn build(self) -> Result<C, BuildError> {
        let fail = |kind| BuildError {
            client: C::NAME,
            service: C::SERVICE,
            kind,
        };
        let fallback = match self.fallback.or_else(C::no_fallback) {
            Some(f) => f,
            None => return Err(fail(BuildErrorKind::NoFallback)),
        };
        let http = self.transport.build();
        #[cfg(feature = "discovery")]
        if let Some(d) = self.discovery {
            if self.has_base {
                return Err(fail(BuildErrorKind::BaseUrlAndDiscovery));
            }
            let Some(service) = C::SERVICE else {
                return Err(fail(BuildErrorKind::NoService));
            };
            let balanced = d
                .build(service, http, self.balancer)
                .map_err(|e| fail(BuildErrorKind::Balancer(e)))?;
            let stack = self
                .stack
                .build_with(Transport::balanced(balanced))
                .map_err(|e| fail(BuildErrorKind::Breaker(e)))?;
            return Ok(C::from_stack(stack, fallback));
        }
        if !self.has_base {
            return Err(fail(BuildErrorKind::NoDestination));
        }
        let stack = self
            .stack
            .build_with(Transport::direct(http))
            .map_err(|e| fail(BuildErrorKind::Breaker(e)))?;
        Ok(C::from_stack(stack, fallback))
    }
}

/// Why [`ClientBuilder::build`] failed.
#[derive(Debug)]
pub struct BuildError {
    client: &'static str,
    service: Option<&'static str>,
    kind: BuildErrorKind,
}

#[derive(Debug)]
enum BuildErrorKind {
    NoDestination,
    NoFallback,
    #[cfg(feature = "discovery")]
    NoService,
    #[cfg(feature = "discovery")]
    BaseUrlAndDiscovery,
    #[cfg(feature = "discovery")]
    Balancer(palisade_balancer::ConfigError),
    Breaker(palisade_breaker::circuit::ConfigError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client `{}`", self.client)?;
        if let Some(s) = self.service {
            write!(f, " (service `{s}`)")?;
        }
        match &self.kind {
            BuildErrorKind::NoDestination => {
                f.write_str(": no destination: call `base_url(..)` or `discovery(..)`")
            }
            BuildErrorKind::NoFallback => f.write_str(
                ": the trait has `fallback = Type`: pass an instance with `fallback(..)`",
            ),
            #[cfg(feature = "discovery")]
            BuildErrorKind::NoService => f.write_str(
                ": discovery needs the service name: add `service = \"...\"` to `#[client]`",
            ),
            #[cfg(feature = "discovery")]
            BuildErrorKind::BaseUrlAndDiscovery => {
                f.write_str(": both `base_url(..)` and `discovery(..)`: pick one")
            }
            #[cfg(feature = "discovery")]
            BuildErrorKind::Balancer(e) => write!(f, ": invalid balancer config: {e}"),
            BuildErrorKind::Breaker(e) => write!(f, ": invalid breaker config: {e}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            #[cfg(feature = "discovery")]
            BuildErrorKind::Balancer(e) => Some(e),
            BuildErrorKind::Breaker(e) => Some(e),
            _ => None,
        }
    }
}

/// The transport under a [`ClientStack`]: the hyper-util client to a fixed base URL, or (with
/// the `discovery` feature) a balancer over the discovered instances.
#[derive(Clone)]
pub struct Transport {
    inner: TransportInner,
}

// Boxing the hyper-util client would allocate on every clone, and the retry layer clones the
// stack on every call.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum TransportInner {
    Direct(HttpTransport),
    #[cfg(feature = "discovery")]
    Balanced(discovery::Balanced),
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            TransportInner::Direct(_) => f.write_str("Transport::Direct"),
            #[cfg(feature = "discovery")]
            TransportInner::Balanced(_) => f.write_str("Transport::Balanced"),
        }
    }
}

impl Transport {
    /// The hyper-util client, to requests that carry their authority.
    pub fn direct(client: HttpTransport) -> Self {
        Self {
            inner: TransportInner::Direct(client),
        }
    }

    #[cfg(feature = "discovery")]
    fn balanced(b: discovery::Balanced) -> Self {
        Self {
            inner: TransportInner::Balanced(b),
        }
    }
}

impl Service<Request<Body>> for Transport {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = TransportFuture;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &mut self.inner {
            TransportInner::Direct(c) => c.poll_ready(cx).map_err(Into::into),
            #[cfg(feature = "discovery")]
            TransportInner::Balanced(b) => b.poll_ready(cx),
        }
    }

    #[inline]
    fn call(&mut self, req: Request<Body>) -> TransportFuture {
        match &mut self.inner {
            TransportInner::Direct(c) => TransportFuture {
                inner: FutureInner::Direct { fut: c.call(req) },
            },
            #[cfg(feature = "discovery")]
            TransportInner::Balanced(b) => TransportFuture {
                inner: FutureInner::Balanced { fut: b.call(req) },
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Transport`].
    pub struct TransportFuture {
        #[pin]
        inner: FutureInner,
    }
}

#[cfg(not(feature = "discovery"))]
pin_project_lite::pin_project! {
    #[project = FutureProj]
    enum FutureInner {
        Direct { #[pin] fut: hyper_util::client::legacy::ResponseFuture },
    }
}

#[cfg(feature = "discovery")]
pin_project_lite::pin_project! {
    #[project = FutureProj]
    enum FutureInner {
        Direct { #[pin] fut: hyper_util::client::legacy::ResponseFuture },
        Balanced { #[pin] fut: discovery::BalancedFuture },
    }
}

impl fmt::Debug for TransportFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransportFuture")
    }
}

impl Future for TransportFuture {
    type Output = Result<Response<Incoming>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.project() {
            FutureProj::Direct { fut } => fut.poll(cx).map_err(Into::into),
            #[cfg(feature = "discovery")]
            FutureProj::Balanced { fut } => fut.poll(cx),
        }
    }
}

#[cfg(feature = "discovery")]
pub use self::discovery::DiscoverySource;

#[cfg(feature = "discovery")]
mod discovery {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures_core::Stream;
    use http::Request;
    use palisade_balancer::rng::SmallRng;
    use palisade_balancer::{
        Balance, Config, ConfigError, Endpoint, Metadata, OutlierConfig, Policy,
    };
    use palisade_breaker::HttpClassifier;
    use palisade_registry_client::{EndpointDiscover, RegistryClient};
    use tower::buffer::Buffer;
    use tower::discover::Change;

    use super::{ClientBuilder, GeneratedClient};
    use crate::body::Body;
    use crate::stack::{BaseUrl, SetBaseUrl, SetBaseUrlLayer};
    use crate::transport::HttpTransport;
    use tower_layer::Layer;

    /// Where [`ClientBuilder::discovery`] finds the instances of a service: the Eureka
    /// [`RegistryClient`] (its local cache, kept fresh by `spawn_refresh`), or anything else
    /// that yields the registry client's `Discover` stream.
    pub trait DiscoverySource {
        /// The `Discover` stream of the `UP` instances of `service`.
        fn discover(&self, service: &str) -> EndpointDiscover;
    }

    impl DiscoverySource for RegistryClient {
        fn discover(&self, service: &str) -> EndpointDiscover {
            self.discover_app(service)
        }
    }

    pub(super) struct Discovery {
        source: Box<dyn DiscoverySource + Send>,
    }

    pub(super) struct BalancerSettings {
        config: Config,
        seed: Option<u64>,
        buffer: usize,
    }

    impl Default for BalancerSettings {
        fn default() -> Self {
            Self {
                config: Config::with_policy(Policy::RoundRobin).outlier(OutlierConfig::default()),
                seed: None,
                buffer: 1024,
            }
        }
    }

    type Instance = SetBaseUrl<HttpTransport>;
    type Lb = Balance<Instances, Request<Body>, HttpClassifier>;
    pub(super) type BalancedFuture = tower::buffer::future::ResponseFuture<
        <Lb as tower_service::Service<Request<Body>>>::Future,
    >;
    pub(super) type Balanced =
        Buffer<Request<Body>, <Lb as tower_service::Service<Request<Body>>>::Future>;

    impl Discovery {
        pub(super) fn build(
            self,
            service: &str,
            http: HttpTransport,
            settings: BalancerSettings,
        ) -> Result<Balanced, ConfigError> {
            let instances = Instances {
                inner: self.source.discover(service),
                http,
            };
            let builder = Balance::builder(instances)
                .name(service)
                .config(settings.config)
                .classifier(HttpClassifier::new());
            let rng = match settings.seed {
                Some(s) => SmallRng::seed_from_u64(s),
                None => SmallRng::from_entropy(),
            };
            let lb: Lb = builder.rng(rng).build()?;
            Ok(Buffer::new(lb, settings.buffer))
        }
    }

    /// The registry's instances as transports: the shared hyper-util pool with the instance's
    /// base URL, and its zone (Eureka metadata `zone`) for zone-aware balancing.
    pub(super) struct Instances {
        inner: EndpointDiscover,
        http: HttpTransport,
    }

    impl Stream for Instances {
        type Item = Result<Change<String, Endpoint<Instance>>, Infallible>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            loop {
                let change = match Pin::new(&mut self.inner).poll_next(cx) {
                    Poll::Ready(Some(Ok(c))) => c,
                    Poll::Ready(Some(Err(never))) => match never {},
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                };
                match change {
                    Change::Insert(id, e) => {
                        let Some(addr) = e.socket_addr() else {
                            tracing::debug!(instance = %id, "instance without a usable IP and port; skipped");
                            continue;
                        };
                        let Ok(base) = BaseUrl::parse(&format!("http://{addr}")) else {
                            continue;
                        };
                        let svc = SetBaseUrlLayer::new(Some(base)).layer(self.http.clone());
                        let mut meta = Metadata::new();
                        if let Some(zone) = e.metadata.get("zone") {
                            meta = meta.zone(zone.as_str());
                        }
                        return Poll::Ready(Some(Ok(Change::Insert(
                            id,
                            Endpoint::with_metadata(svc, meta),
                        ))));
                    }
                    Change::Remove(id) => return Poll::Ready(Some(Ok(Change::Remove(id)))),
                }
            }
        }
    }

    impl<C: GeneratedClient> ClientBuilder<C> {
        /// Sends requests to the instances of the trait's `service = "..."` that `source`
        /// discovers (a [`RegistryClient`]), through a balancer: round robin with outlier
        /// detection (5 consecutive failures eject an instance) unless
        /// [`balancer`](Self::balancer) says otherwise. A retry goes back through the balancer,
        /// so it can land on another instance. Calls wait (within their timeout) until the
        /// registry has an instance.
        pub fn discovery(mut self, source: impl DiscoverySource + Send + 'static) -> Self {
            self.discovery = Some(Discovery {
                source: Box::new(source),
            });
            self
        }

        /// The balancer's config (policy, outlier detection, zones...), with
        /// [`discovery`](Self::discovery). Validated by [`build`](Self::build).
        pub fn balancer(mut self, config: Config) -> Self {
            self.balancer.config = config;
            self
        }

        /// Seeds the balancer's random choices, with [`discovery`](Self::discovery).
        pub fn balancer_seed(mut self, seed: u64) -> Self {
            self.balancer.seed = Some(seed);
            self
        }
    }
}
