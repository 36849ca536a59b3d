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
use crate::config::UpstreamUrl;

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
    /// A fixed `http://authority/base`.
    Fixed {
        authority: Authority,
        base_path: String,
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
            } => write!(f, "http://{authority}{base_path}"),
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
            } => Ok(Upstream::Fixed {
                authority: authority.clone(),
                base_path: base_path.clone(),
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
        Arc::new(Clients { h1, h2c })
    }
}
