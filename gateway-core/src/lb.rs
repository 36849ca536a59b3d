//! `lb://name` upstreams: the instances of a registered application, found through
//! `palisade-registry-client` (a Eureka-compatible registry) and spread by a
//! `palisade-balancer` [`Balance`] per service.
//!
//! [`RegistryResolver`] is the [`UpstreamResolver`] the gateway uses when the routes file has a
//! top-level `registry` section:
//!
//! ```yaml
//! registry:
//!   urls: [ "http://127.0.0.1:8761/eureka/" ]
//!   refresh_interval: 5s              # how often the local copy of the registry is fetched
//!   balancer:                         # palisade-balancer's Config
//!     policy: { type: round_robin }
//!     outlier: { consecutive_failures: 1, base_ejection_time: 30s, max_ejection_percent: 0.5 }
//! routes:
//!   - id: orders
//!     upstream: lb://orders           # the Eureka application name, any case
//!     retry: { attempts: 2 }          # a failed idempotent call goes to another instance
//! ```
//!
//! One balancer per service name, shared by every route that names it and kept across
//! reloads (its ejections and latency estimates stay). The balancer follows the registry's
//! `UP` instances (the client's `Discover` stream), counts upstream errors and `5xx` against an
//! instance for outlier ejection, and a retry picks again, so it lands on another instance.
//! While a service has no `UP` instance, requests get `503` with
//! `no instance of service `name` is up`.
//!
//! An instance is spoken to over HTTP/1.1, or over h2c (HTTP/2 with prior knowledge, one
//! multiplexed connection) when its registry metadata has `protocol: h2c` (`http1` is the
//! default; another value leaves the instance out, with a WARN log). The route's own
//! `protocol` stays `http1` for `lb://`: the protocol is the instance's.
//!
//! Picking is one short critical section (the balancer's `poll_ready` and `call`, no await,
//! never held across the upstream call).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use palisade_balancer::{Balance, Endpoint, Metadata};
use palisade_breaker::HttpClassifier;
use palisade_registry_client::{ClientConfig, EndpointDiscover, RegistryClient, ServiceUrl};
use serde::Deserialize;
use tower::discover::Change;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use crate::body::{BoxError, GatewayBody, RequestBody};
use crate::upstream::{HttpClient, UpstreamResolver, UpstreamService};

/// The `registry` section of the routes file (read at start).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Eureka service URLs (`http://host:port/eureka/`), tried in order.
    pub urls: Vec<String>,
    /// How often the local copy of the registry is refreshed (default 30 s, as Eureka's client).
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Balancer settings for every `lb://` service (policy, outlier detection, zones).
    #[serde(default)]
    pub balancer: palisade_balancer::Config,
}

fn default_refresh() -> Duration {
    Duration::from_secs(30)
}

impl RegistryConfig {
    /// Checks the section: at least one `http://` URL, a non-zero refresh interval, a valid
    /// balancer config. The error names the bad key (relative to `registry`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.urls.is_empty() {
            return Err(("urls".into(), "at least one registry URL is needed".into()));
        }
        for (i, u) in self.urls.iter().enumerate() {
            if !u.starts_with("http://") || u.parse::<Uri>().is_err() {
                return Err((format!("urls[{i}]"), format!("`{u}` is not an http:// URL")));
            }
        }
        if self.refresh_interval.is_zero() {
            return Err(("refresh_interval".into(), "must not be zero".into()));
        }
        self.balancer
            .validate()
            .map_err(|e| (format!("balancer.{}", e.field()), e.to_string()))
    }
}

/// No instance of the service is `UP` in the registry (or none is known yet). The gateway
/// answers `503` naming the service.
#[derive(Debug, Clone)]
pub struct NoInstances {
    service: Arc<str>,
}

impl NoInstances {
    /// The service asked for.
    pub fn service(&self) -> &str {
        &self.service
    }

    pub(crate) fn response(&self) -> Response<GatewayBody> {
        let mut r = Response::new(GatewayBody::full(Bytes::from(format!("{self}\n"))));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        r
    }
}

impl fmt::Display for NoInstances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no instance of service `{}` is up", self.service)
    }
}

impl std::error::Error for NoInstances {}

/// Sends a request (origin-form URI) to one instance over the shared pool (HTTP/1.1, or the
/// h2c pool for an instance whose metadata says `protocol: h2c`).
#[derive(Clone)]
pub(crate) struct InstanceCall {
    http: HttpClient,
    authority: Authority,
    // gw2: HTTP/2 with prior knowledge to this instance.
    h2c: bool,
}

impl Service<Request<RequestBody>> for InstanceCall {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let mut up = std::mem::take(&mut parts.uri).into_parts();
        up.scheme = Some(Scheme::HTTP);
        up.authority = Some(self.authority.clone());
        if up.path_and_query.is_none() {
            up.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        parts.uri = Uri::from_parts(up).expect("scheme, authority and path are set");
        if self.h2c {
            parts.version = http::Version::HTTP_2;
        }
        self.http.request(Request::from_parts(parts, body))
    }
}

/// The registry's `Discover` stream with each instance turned into a balancer endpoint.
struct Instances {
    inner: EndpointDiscover,
    http: HttpClient,
    h2c: HttpClient,
    service: Arc<str>,
    /// Keys inserted into the balancer (instances without a usable address are left out, and
    /// so are their removals).
    known: HashSet<String>,
}

impl Stream for Instances {
    type Item = Result<Change<String, Endpoint<InstanceCall>>, Infallible>;

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
                    let authority = match (e.socket_addr(), e.port) {
                        (Some(a), _) => Authority::try_from(a.to_string().as_str()).ok(),
                        (None, Some(p)) => {
                            Authority::try_from(format!("{}:{p}", e.host_name).as_str()).ok()
                        }
                        (None, None) => None,
                    };
                    let Some(authority) = authority else {
                        tracing::debug!(service = %self.service, instance = %id, "instance has no usable address and port; skipped");
                        continue;
                    };
                    let mut md = Metadata::new();
                    if let Some(z) = e.metadata.get("zone") {
                        md = md.zone(z.as_str());
                    }
                    if let Some(w) = e.metadata.get("weight").and_then(|w| w.parse().ok()) {
                        md = md.weight(w);
                    }
                    // gw2: the instance's protocol from its metadata (`protocol: h2c`).
                    let h2c = match e.metadata.get("protocol").map(String::as_str) {
                        None | Some("http1" | "http/1.1") => false,
                        Some("h2c") => true,
                        Some(other) => {
                            tracing::warn!(service = %self.service, instance = %id, protocol = other, "unknown protocol in the instance metadata (http1 or h2c); skipped");
                            continue;
                        }
                    };
                    tracing::debug!(service = %self.service, instance = %id, %authority, h2c, "instance added");
                    self.known.insert(id.clone());
                    let svc = InstanceCall {
                        http: if h2c {
                            self.h2c.clone()
                        } else {
                            self.http.clone()
                        },
                        authority,
                        h2c,
                    };
                    return Poll::Ready(Some(Ok(Change::Insert(
                        id,
                        Endpoint::with_metadata(svc, md),
                    ))));
                }
                Change::Remove(id) => {
                    if self.known.remove(&id) {
                        tracing::debug!(service = %self.service, instance = %id, "instance removed");
                        return Poll::Ready(Some(Ok(Change::Remove(id))));
                    }
                }
            }
        }
    }
}

type ServiceBalance = Balance<Instances, Request<RequestBody>, HttpClassifier>;

/// One service's balancer, shared by every clone (and every route naming the service).
#[derive(Clone)]
struct LbService {
    service: Arc<str>,
    balance: Arc<Mutex<ServiceBalance>>,
}

pin_project_lite::pin_project! {
    #[project = LbFutureProj]
    enum LbFuture {
        Called { #[pin] fut: palisade_balancer::balance::future::ResponseFuture<hyper_util::client::legacy::ResponseFuture, HttpClassifier> },
        Failed { err: Option<BoxError> },
    }
}

impl std::future::Future for LbFuture {
    type Output = Result<Response<Incoming>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            LbFutureProj::Called { fut } => fut.poll(cx),
            LbFutureProj::Failed { err } => {
                Poll::Ready(Err(err.take().expect("polled after completion")))
            }
        }
    }
}

impl Service<Request<RequestBody>> for LbService {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = LbFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> LbFuture {
        // The endpoints are always ready (the pool queues), so the balancer is pending only
        // when it has no endpoint: that is answered at once rather than waited for. The
        // balancer re-reads the registry stream on every pick, so no wakeup is needed.
        let mut cx = Context::from_waker(Waker::noop());
        let mut lb = self
            .balance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match lb.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => LbFuture::Called { fut: lb.call(req) },
            Poll::Ready(Err(e)) => LbFuture::Failed { err: Some(e) },
            Poll::Pending => LbFuture::Failed {
                err: Some(Box::new(NoInstances {
                    service: self.service.clone(),
                })),
            },
        }
    }
}

struct ResolverInner {
    client: RegistryClient,
    http: HttpClient,
    h2c: HttpClient,
    balancer: palisade_balancer::Config,
    services: Mutex<HashMap<String, (UpstreamService, palisade_balancer::Handle)>>,
    refresh: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for ResolverInner {
    fn drop(&mut self) {
        if let Some(t) = &self.refresh {
            t.abort();
        }
    }
}

/// Resolves `lb://name` to a balancer over the registry's `UP` instances of application
/// `name`. Cheap to clone.
///
/// ```no_run
/// use std::sync::Arc;
/// use palisade_gateway::{Gateway, config::GatewayConfig, lb::RegistryResolver};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cfg = GatewayConfig::from_yaml(r#"
/// registry: { urls: [ "http://127.0.0.1:8761/eureka/" ], refresh_interval: 5s }
/// routes:
///   - { id: orders, upstream: lb://orders, predicates: { path_prefix: /orders } }
/// "#, "routes.yaml")?;
/// let resolver = RegistryResolver::new(cfg.registry.as_ref().unwrap())?; // starts refreshing
/// let gateway = Gateway::builder(cfg).resolver(Arc::new(resolver)).build()?;
/// # drop(gateway); Ok(()) }
/// ```
#[derive(Clone)]
pub struct RegistryResolver {
    inner: Arc<ResolverInner>,
}

impl fmt::Debug for RegistryResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryResolver")
            .field("urls", &self.inner.client.config().service_urls)
            .finish_non_exhaustive()
    }
}

impl RegistryResolver {
    /// A registry client for `config` and a task that refreshes its local copy every
    /// `refresh_interval` (the first fetch starts at once). Needs a Tokio runtime.
    pub fn new(config: &RegistryConfig) -> Result<Self, String> {
        config
            .validate()
            .map_err(|(k, m)| format!("registry.{k}: {m}"))?;
        let client = RegistryClient::new(ClientConfig {
            service_urls: config.urls.iter().map(ServiceUrl::new).collect(),
            registry_fetch_interval: config.refresh_interval,
            ..Default::default()
        })
        .map_err(|e| format!("registry: {e}"))?;
        let refresh = client.spawn_refresh();
        let mut r = Self::from_client(client, config.balancer.clone());
        Arc::get_mut(&mut r.inner).expect("not shared yet").refresh = Some(refresh);
        Ok(r)
    }

    /// Uses an existing client (refreshed by its owner) with `balancer` settings.
    pub fn from_client(client: RegistryClient, balancer: palisade_balancer::Config) -> Self {
        let clients = crate::upstream::Clients::new();
        RegistryResolver {
            inner: Arc::new(ResolverInner {
                client,
                http: clients.h1.clone(),
                h2c: clients.h2c.clone(),
                balancer,
                services: Mutex::new(HashMap::new()),
                refresh: None,
            }),
        }
    }

    /// The registry client.
    pub fn client(&self) -> &RegistryClient {
        &self.inner.client
    }

    /// The balancer of a service resolved so far (endpoint states, ejections).
    pub fn balancer(&self, service: &str) -> Option<palisade_balancer::Handle> {
        let m = self
            .inner
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.get(&service.to_ascii_lowercase()).map(|(_, h)| h.clone())
    }
}

impl UpstreamResolver for RegistryResolver {
    fn endpoints(&self) -> Vec<palisade_balancer::Snapshot> {
        let handles: Vec<palisade_balancer::Handle> = {
            let m = self
                .inner
                .services
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            m.values().map(|(_, h)| h.clone()).collect()
        };
        let mut snaps: Vec<_> = handles.iter().map(|h| h.snapshot()).collect();
        snaps.sort_by(|a, b| a.name.cmp(&b.name));
        snaps
    }

    fn resolve(&self, name: &str) -> Option<UpstreamService> {
        let key = name.to_ascii_lowercase();
        let mut m = self
            .inner
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((svc, _)) = m.get(&key) {
            return Some(svc.clone());
        }
        let service: Arc<str> = Arc::from(key.as_str());
        let instances = Instances {
            inner: self.inner.client.discover_app(name),
            http: self.inner.http.clone(),
            h2c: self.inner.h2c.clone(),
            service: service.clone(),
            known: HashSet::new(),
        };
        let balance = Balance::builder(instances)
            .name(key.clone())
            .config(self.inner.balancer.clone())
            .classifier(HttpClassifier::new())
            .build()
            .ok()?;
        let handle = balance.handle();
        let svc = BoxCloneSyncService::new(LbService {
            service,
            balance: Arc::new(Mutex::new(balance)),
        });
        m.insert(key, (svc.clone(), handle));
        Some(svc)
    }
}
