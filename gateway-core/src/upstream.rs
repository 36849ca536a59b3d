//! Upstreams: fixed URLs over one shared connection pool, or a named service behind a
//! `tower::Service` hook (how `lb://name` plugs into a registry client and balancer).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::util::BoxCloneSyncService;

use crate::body::{BoxError, RequestBody};
use crate::config::{Protocol, UpstreamUrl};

/// The service a `lb://name` route calls: it receives the request with the path (and query)
/// already rewritten as an origin-form URI (`/a/b?c`) and picks the instance itself.
pub type UpstreamService = BoxCloneSyncService<Request<RequestBody>, Response<Incoming>, BoxError>;

/// Resolves `lb://name` upstreams when routes are loaded.
///
/// A registry client plus balancer implements this by returning, per service name, a
/// `palisade-balancer` service over the registry's `Discover` stream whose endpoints send with
/// [`Gateway::http_client`](crate::Gateway::http_client) (the shared pool).
pub trait UpstreamResolver: Send + Sync + 'static {
    /// The service for `name`, or `None` if it is unknown (the routes file is refused).
    fn resolve(&self, name: &str) -> Option<UpstreamService>;
}

/// Where a compiled route sends requests.
#[derive(Clone)]
pub(crate) enum Upstream {
    /// A fixed `http(s)://authority/base`.
    Fixed {
        authority: Authority,
        base_path: String,
        tls: bool,
    },
    /// A named service.
    Service { name: String, svc: UpstreamService },
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Fixed {
                authority,
                base_path,
                tls,
            } => {
                let scheme = if *tls { "https" } else { "http" };
                write!(f, "{scheme}://{authority}{base_path}")
            }
            Upstream::Service { name, .. } => write!(f, "lb://{name}"),
        }
    }
}

impl Upstream {
    pub(crate) fn from_url(
        url: &UpstreamUrl,
        resolver: Option<&dyn UpstreamResolver>,
    ) -> Result<Self, String> {
        match url {
            UpstreamUrl::Fixed {
                authority,
                base_path,
                tls,
            } => Ok(Upstream::Fixed {
                authority: authority.clone(),
                base_path: base_path.clone(),
                tls: *tls,
            }),
            UpstreamUrl::Service(name) => {
                let resolver = resolver.ok_or_else(|| {
                    format!("`lb://{name}` needs a service resolver (registry + balancer), and none is configured")
                })?;
                let svc = resolver
                    .resolve(name)
                    .ok_or_else(|| format!("unknown service `{name}`"))?;
                Ok(Upstream::Service {
                    name: name.clone(),
                    svc,
                })
            }
        }
    }
}

/// The pooled HTTP client type (HTTP/1.1 or h2c).
pub type HttpClient = Client<HttpConnector, RequestBody>;

/// The two shared pools: one speaks HTTP/1.1, one h2c with prior knowledge. Each keeps
/// connections per upstream authority, shared by every route and every worker thread.
#[derive(Clone, Debug)]
pub(crate) struct Clients {
    pub(crate) h1: HttpClient,
    pub(crate) h2c: HttpClient,
    /// gwsec: pools for https upstreams, by TLS settings.
    pub(crate) tls: crate::tls::ClientCache,
}

impl Clients {
    pub(crate) fn new() -> Arc<Self> {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(5)));
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90));
        let h1 = b.build(conn.clone());
        let mut b2 = Client::builder(TokioExecutor::new());
        b2.pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_only(true);
        let h2c = b2.build(conn);
        Arc::new(Clients {
            h1,
            h2c,
            tls: Default::default(),
        })
    }
}

/// The upstream's response head did not arrive within the route's `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTimeout;

impl fmt::Display for UpstreamTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream timed out")
    }
}

impl std::error::Error for UpstreamTimeout {}

#[derive(Clone)]
enum Target {
    /// The shared pools (one `Arc`, so a per-request clone is one increment).
    Client(Arc<Clients>, Protocol),
    Service(UpstreamService),
    /// gwsec: an https upstream's pool (in an `Arc`: a per-request clone is one increment).
    Https(Arc<crate::tls::HttpsClient>),
}

/// One route's call to its upstream, with the route's timeout: a `tower::Service`, so the
/// route's resilience layers (the circuit breaker) wrap it.
#[derive(Clone)]
pub struct UpstreamCall {
    target: Target,
    timeout: Option<Duration>,
}

impl fmt::Debug for UpstreamCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamCall")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl UpstreamCall {
    pub(crate) fn new(
        upstream: &Upstream,
        clients: &Arc<Clients>,
        protocol: Protocol,
        timeout: Option<Duration>,
    ) -> Self {
        let target = match upstream {
            Upstream::Fixed { .. } => Target::Client(clients.clone(), protocol),
            Upstream::Service { svc, .. } => Target::Service(svc.clone()),
        };
        UpstreamCall { target, timeout }
    }

    /// gwsec: sends through an https pool instead (for `https://` upstreams).
    pub(crate) fn with_https(mut self, client: Option<crate::tls::HttpsClient>) -> Self {
        if let Some(c) = client {
            self.target = Target::Https(Arc::new(c));
        }
        self
    }
}

pin_project_lite::pin_project! {
    #[project = CallProj]
    enum CallState {
        Client { #[pin] fut: hyper_util::client::legacy::ResponseFuture },
        Service { #[pin] fut: tower::util::Oneshot<UpstreamService, Request<RequestBody>> },
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`UpstreamCall`].
    pub struct UpstreamFuture {
        #[pin]
        state: CallState,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
    }
}

impl std::future::Future for UpstreamFuture {
    type Output = Result<Response<Incoming>, BoxError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = self.project();
        let polled = match this.state.project() {
            CallProj::Client { fut } => fut.poll(cx).map(|r| r.map_err(Into::into)),
            CallProj::Service { fut } => fut.poll(cx),
        };
        match polled {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => match this.sleep.as_pin_mut() {
                Some(s) => s
                    .poll(cx)
                    .map(|()| Err(Box::new(UpstreamTimeout) as BoxError)),
                None => Poll::Pending,
            },
        }
    }
}

impl tower_service::Service<Request<RequestBody>> for UpstreamCall {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = UpstreamFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        // The pooled client is always ready; a plugged-in service is driven to readiness by
        // `Oneshot` in `call`.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> UpstreamFuture {
        use tower::ServiceExt;
        let state = match &self.target {
            Target::Client(c, Protocol::Http1) => CallState::Client {
                fut: c.h1.request(req),
            },
            Target::Client(c, Protocol::H2c) => CallState::Client {
                fut: c.h2c.request(req),
            },
            Target::Https(c) => CallState::Client {
                fut: c.request(req),
            },
            Target::Service(s) => CallState::Service {
                fut: s.clone().oneshot(req),
            },
        };
        UpstreamFuture {
            state,
            sleep: self.timeout.map(tokio::time::sleep),
        }
    }
}
