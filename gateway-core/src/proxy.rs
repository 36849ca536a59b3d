//! The proxy service.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, HeaderValue, TRANSFER_ENCODING, UPGRADE};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use palisade_breaker::circuit::BreakerRegistry;

use palisade_breaker::HttpClassifier;
use pin_project_lite::pin_project;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::{BodyTooLarge, GatewayBody, RequestBody, UpstreamBody};
use crate::config::{GatewayConfig, Limits, Protocol, RoutesError};
use crate::filter;
use crate::forward;
use crate::path;
use crate::route::{BreakerStore, BuildCtx, Route, Router, StatsRegistry};
use crate::upstream::{
    Clients, HttpClient, Upstream, UpstreamFuture, UpstreamResolver, UpstreamTimeout,
};

/// The outcome of the latest reload attempt.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// Version of the routes in use (0 = as started; +1 per accepted reload).
    pub version: u64,
    /// Reload attempts so far (accepted or refused).
    pub attempts: u64,
    /// The error of the latest attempt, if it was refused (the previous routes stay).
    pub last_error: Option<String>,
}

pub(crate) struct Shared {
    router: ArcSwap<Router>,
    clients: Arc<Clients>,
    limits: Limits,
    /// gwsec: peers whose forwarded headers are believed.
    trust: crate::trust::TrustedProxies,
    pub(crate) stats: StatsRegistry,
    resolver: Option<Arc<dyn UpstreamResolver>>,
    seed: Option<AtomicU64>,
    reload_tx: watch::Sender<ReloadStatus>,
    breakers: BreakerStore,
    limiter: Option<crate::ratelimit::RedisLimiter>,
    // wip/gwlb
    admission: crate::limits::LimitStore,
}

/// The gateway: routes plus the shared upstream pool. Cheap to clone (one `Arc`).
///
/// Serve it with [`serve`](crate::serve), or call [`Gateway::connection`] for a per-connection
/// `tower::Service` (it needs the client address for `X-Forwarded-For`).
#[derive(Clone)]
pub struct Gateway {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("routes", &self.router().routes().len())
            .finish()
    }
}

/// Builds a [`Gateway`].
pub struct GatewayBuilder {
    config: GatewayConfig,
    file: std::path::PathBuf,
    resolver: Option<Arc<dyn UpstreamResolver>>,
    seed: Option<u64>,
    limiter: Option<crate::ratelimit::RedisLimiter>,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("file", &self.file)
            .finish()
    }
}

impl GatewayBuilder {
    /// Resolves `lb://name` upstreams.
    pub fn resolver(mut self, r: Arc<dyn UpstreamResolver>) -> Self {
        self.resolver = Some(r);
        self
    }
    /// The Redis connection for `rate_limit` routes.
    pub fn redis(mut self, limiter: crate::ratelimit::RedisLimiter) -> Self {
        self.limiter = Some(limiter);
        self
    }
    /// Seeds the per-request randomness (weighted splits, generated ids) for repeatable tests.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// Names the file the config came from (for errors).
    pub fn file(mut self, file: impl AsRef<Path>) -> Self {
        self.file = file.as_ref().to_owned();
        self
    }
    /// Compiles the routes.
    pub fn build(self) -> Result<Gateway, RoutesError> {
        let stats = StatsRegistry::default();
        let breakers = BreakerStore::default();
        let clients = Clients::new();
        let limits = crate::limits::LimitStore::default();
        let router = Router::build(
            &self.config,
            &BuildCtx {
                stats: &stats,
                breakers: &breakers,
                clients: &clients,
                resolver: self.resolver.as_deref(),
                limiter: self.limiter.as_ref(),
                file: &self.file,
                version: 0,
                limits: &limits,
            },
        )?;
        let (reload_tx, _) = watch::channel(ReloadStatus::default());
        Ok(Gateway {
            shared: Arc::new(Shared {
                router: ArcSwap::from_pointee(router),
                clients,
                limits: self.config.limits,
                trust: crate::trust::TrustedProxies::new(
                    self.config.trusted_proxies.clone(),
                    self.config.trust_forwarded,
                ),
                stats,
                resolver: self.resolver,
                seed: self.seed.map(AtomicU64::new),
                reload_tx,
                breakers,
                limiter: self.limiter,
                admission: limits,
            }),
        })
    }
}

impl Gateway {
    /// Starts building a gateway from a parsed routes file.
    pub fn builder(config: GatewayConfig) -> GatewayBuilder {
        GatewayBuilder {
            config,
            file: "<config>".into(),
            resolver: None,
            seed: None,
            limiter: None,
        }
    }

    /// The routes in use.
    pub fn router(&self) -> Arc<Router> {
        self.shared.router.load_full()
    }

    /// The shared HTTP/1.1 pool, for upstream services plugged in through
    /// [`UpstreamResolver`].
    pub fn http_client(&self) -> HttpClient {
        self.shared.clients.h1.clone()
    }

    /// Swaps in new routes, compiled from `config`. On error the routes in use stay. Listener
    /// addresses and limits are read at start only. Connections are untouched: requests in
    /// flight finish on the routes they matched; the next request on any connection sees the
    /// new routes.
    pub fn reload(
        &self,
        config: &GatewayConfig,
        file: impl AsRef<Path>,
    ) -> Result<u64, RoutesError> {
        let mut status = self.shared.reload_tx.borrow().clone();
        status.attempts += 1;
        let version = status.version + 1;
        let result = Router::build(
            config,
            &BuildCtx {
                stats: &self.shared.stats,
                breakers: &self.shared.breakers,
                clients: &self.shared.clients,
                resolver: self.shared.resolver.as_deref(),
                limiter: self.shared.limiter.as_ref(),
                file: file.as_ref(),
                version,
                limits: &self.shared.admission,
            },
        );
        match result {
            Ok(router) => {
                self.shared.router.store(Arc::new(router));
                status.version = version;
                status.last_error = None;
                tracing::info!(version, routes = config.routes.len(), "routes reloaded");
                self.shared.reload_tx.send_replace(status);
                Ok(version)
            }
            Err(e) => {
                tracing::warn!(error = %e, "routes file refused; previous routes kept");
                status.last_error = Some(e.to_string());
                self.shared.reload_tx.send_replace(status);
                Err(e)
            }
        }
    }

    /// Reads, checks and swaps in a routes file (see [`Gateway::reload`]).
    pub fn reload_file(&self, file: impl AsRef<Path>) -> Result<u64, RoutesError> {
        let file = file.as_ref();
        match GatewayConfig::from_file(file) {
            Ok(cfg) => self.reload(&cfg, file),
            Err(e) => {
                self.shared.reload_tx.send_modify(|s| {
                    s.attempts += 1;
                    s.last_error = Some(e.to_string());
                });
                tracing::warn!(error = %e, "routes file refused; previous routes kept");
                Err(e)
            }
        }
    }

    // wip/gwlb
    /// Parses, checks and swaps in a routes document held in memory (from dynconfig, say);
    /// `label` names it in errors. A refusal is recorded like a refused file.
    pub fn reload_yaml(&self, text: &str, label: impl AsRef<Path>) -> Result<u64, RoutesError> {
        let label = label.as_ref();
        match GatewayConfig::from_yaml(text, label) {
            Ok(cfg) => self.reload(&cfg, label),
            Err(e) => {
                self.shared.reload_tx.send_modify(|s| {
                    s.attempts += 1;
                    s.last_error = Some(e.to_string());
                });
                tracing::warn!(error = %e, "routes document refused; previous routes kept");
                Err(e)
            }
        }
    }

    /// Watches reload outcomes.
    pub fn reload_status(&self) -> watch::Receiver<ReloadStatus> {
        self.shared.reload_tx.subscribe()
    }

    /// Request counts by route and status class: `(route id, [1xx, 2xx, 3xx, 4xx, 5xx], total
    /// microseconds to response head)`.
    pub fn route_stats(&self) -> Vec<(String, [u64; 5], u64)> {
        self.shared
            .stats
            .snapshot()
            .into_iter()
            .map(|(id, s)| {
                let c = std::array::from_fn(|i| s.responses(i + 1));
                (id, c, s.duration_us.load(Ordering::Relaxed))
            })
            .collect()
    }

    /// The circuit breakers of the routes.
    pub fn breakers(&self) -> &BreakerRegistry {
        &self.shared.breakers.registry
    }

    /// Snapshots of the `lb://` endpoints (state, ejections, in-flight, latency estimate), one
    /// balancer per service resolved so far; empty without a resolver.
    pub fn endpoints(&self) -> Vec<palisade_balancer::Snapshot> {
        self.shared
            .resolver
            .as_ref()
            .map(|r| r.endpoints())
            .unwrap_or_default()
    }

    /// The service for one client connection.
    pub fn connection(&self, remote: SocketAddr) -> GatewayConnection {
        GatewayConnection {
            shared: self.shared.clone(),
            remote,
            client: forward::ClientAddr::new(remote),
            proto: "http",
        }
    }

    /// The service for one client connection that arrived over TLS (`X-Forwarded-Proto:
    /// https`).
    pub fn connection_tls(&self, remote: SocketAddr) -> GatewayConnection {
        GatewayConnection {
            shared: self.shared.clone(),
            remote,
            client: forward::ClientAddr::new(remote),
            proto: "https",
        }
    }
}

/// The gateway as seen by one client connection: a `tower::Service` and a
/// `hyper::service::Service`, never failing (errors become responses).
#[derive(Clone)]
pub struct GatewayConnection {
    shared: Arc<Shared>,
    remote: SocketAddr,
    client: forward::ClientAddr,
    /// gwsec: `http` or `https` (the client's scheme, for `X-Forwarded-Proto`/`Forwarded`).
    proto: &'static str,
}

impl std::fmt::Debug for GatewayConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConnection")
            .field("remote", &self.remote)
            .finish()
    }
}

fn local(status: StatusCode, msg: &'static str) -> Response<GatewayBody> {
    let mut r = Response::new(GatewayBody::full(Bytes::from_static(msg.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    r
}

impl GatewayConnection {
    fn handle(&self, req: Request<Incoming>) -> ResponseFuture {
        let start = Instant::now();
        let (mut parts, body) = req.into_parts();
        let h = &parts.headers;

        // One pass over the few headers present instead of a hashed lookup per name below.
        let (mut has_te, mut has_cl, mut has_upgrade) = (false, false, false);
        for k in h.keys() {
            has_te |= *k == TRANSFER_ENCODING;
            has_cl |= *k == CONTENT_LENGTH;
            has_upgrade |= *k == UPGRADE;
        }
        // Request smuggling: a body framed two ways is refused outright (RFC 9112 6.3).
        if has_te && has_cl {
            return ResponseFuture::local(local(
                StatusCode::BAD_REQUEST,
                "conflicting Content-Length and Transfer-Encoding\n",
            ));
        }
        // Only plain `chunked` framing is forwarded: a request whose last coding is something
        // else has no reliable end, and codings are never passed through to the upstream.
        if has_te {
            let only_chunked = h
                .get_all(TRANSFER_ENCODING)
                .iter()
                .all(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
            if !only_chunked
                || h.get_all(TRANSFER_ENCODING).iter().count() != 1
                || parts.version == Version::HTTP_10
            {
                return ResponseFuture::local(local(
                    StatusCode::BAD_REQUEST,
                    "unsupported Transfer-Encoding\n",
                ));
            }
        }
        let mut lengths = has_cl
            .then(|| h.get_all(CONTENT_LENGTH).iter())
            .into_iter()
            .flatten();
        if let Some(first) = lengths.next() {
            if lengths.any(|v| v != first) {
                return ResponseFuture::local(local(
                    StatusCode::BAD_REQUEST,
                    "conflicting Content-Length\n",
                ));
            }
            match first.to_str().ok().and_then(|s| s.parse::<u64>().ok()) {
                None => {
                    return ResponseFuture::local(local(
                        StatusCode::BAD_REQUEST,
                        "bad Content-Length\n",
                    ));
                }
                Some(n) if n > self.shared.limits.max_body_bytes => {
                    return ResponseFuture::local(local(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request body too large\n",
                    ));
                }
                Some(_) => {}
            }
        }

        let router = self.shared.router.load();
        let norm = match path::normalize(parts.uri.path()) {
            Ok(p) => p,
            Err(_) => {
                return ResponseFuture::local(local(StatusCode::BAD_REQUEST, "bad request path\n"));
            }
        };
        let mut rng = match &self.shared.seed {
            Some(s) => fastrand::Rng::with_seed(s.fetch_add(1, Ordering::Relaxed)),
            None => fastrand::Rng::new(),
        };
        let seed = if router.has_weights() { rng.u64(..) } else { 0 };
        // gwsec: a CORS preflight is matched as the request it announces, and answered here.
        if crate::cors::Cors::is_preflight_head(&parts.method, &parts.headers)
            && let Some(asked) = parts
                .headers
                .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
                .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        {
            let options = std::mem::replace(&mut parts.method, asked);
            // No route for the announced method: the top-level policy decides (Spring's
            // `globalcors` is by path, not by route).
            let cors = match router.find(&parts, &norm, seed) {
                Some((r, _)) => r.cors.clone(),
                None => router.cors.clone(),
            };
            parts.method = options;
            if let Some(cors) = cors {
                return ResponseFuture::local(cors.preflight(&parts.headers));
            }
        }
        let Some((route, caps)) = router.find(&parts, &norm, seed) else {
            return ResponseFuture::local(local(StatusCode::NOT_FOUND, "no route\n"));
        };
        let route = route.clone();
        drop(router);
        let cors_origin = route
            .cors
            .as_ref()
            .and_then(|c| c.allow_origin(&parts.headers));

        let client_host = parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let upgrade = match has_upgrade.then(|| upgrade_protocol(&parts)).flatten() {
            Some(proto) if route.protocol == Protocol::Http1 => {
                parts.extensions.remove::<OnUpgrade>().map(|on| (on, proto))
            }
            _ => None,
        };
        forward::strip_hop_by_hop(&mut parts.headers);
        if let Some((_, proto)) = &upgrade {
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(UPGRADE, proto.clone());
        }
        // gwsec: trusted proxies (the client IP behind them keys the rate limit).
        // wip/gwlb: ... and the local rate limit.
        let client_ip = if route.rate_limit.is_some() || route.limits.rate.is_some() {
            self.shared
                .trust
                .client_ip(self.remote.ip(), &parts.headers)
        } else {
            self.remote.ip()
        };
        if !self.shared.trust.trusts(self.remote.ip()) {
            forward::drop_forwarded(&mut parts.headers);
        }
        forward::add_forwarded_for(
            &mut parts.headers,
            &self.client,
            self.proto,
            client_host.as_ref(),
        );
        let request_id = forward::ensure_request_id(&mut parts.headers, &mut rng);
        forward::propagate_trace(&mut parts.headers, &mut rng);

        // The rate-limit key is read before the filters, which may remove its header.
        let limit_key = route.rate_limit.as_ref().map(|rl| {
            let client = rl
                .key_header
                .as_ref()
                .and_then(|h| parts.headers.get(h))
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| client_ip.to_string(), str::to_owned);
            format!("palisade:rl:{}:{client}", route.id)
        });
        // wip/gwlb: the local limit's key header is read before the filters too.
        let local_key = route
            .limits
            .rate
            .as_ref()
            .and_then(|r| r.key_before_filters(&parts.headers, client_ip));
        let mut path: Cow<'_, str> = Cow::Borrowed(&norm);
        if let Some(mut resp) = filter::apply_request(
            &route.request_filters,
            &mut parts.headers,
            &mut path,
            &norm,
            &caps,
        ) {
            finish_head(&route, &request_id, cors_origin.as_ref(), &mut resp);
            route.stats.record(resp.status().as_u16(), start.elapsed());
            route
                .metrics
                .record(resp.status().as_u16(), start.elapsed());
            return ResponseFuture::local(resp);
        }
        // wip/gwlb: local rate limit, after the filters (a JWT subject is verified by then).
        let local_limit = route.limits.rate.as_ref().map(|r| {
            let key = local_key.unwrap_or_else(|| r.key_of(&parts.headers, client_ip));
            r.check_key(key)
        });
        if let Some(info) = local_limit
            && info.rejected()
        {
            let mut resp = local(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n");
            finish_head(&route, &request_id, cors_origin.as_ref(), &mut resp);
            info.apply(resp.headers_mut());
            route.metrics.rejected(crate::metrics::Rejection::RateLimit);
            route.stats.record(resp.status().as_u16(), start.elapsed());
            route
                .metrics
                .record(resp.status().as_u16(), start.elapsed());
            return ResponseFuture::local(resp);
        }

        let query = parts.uri.query();
        let (base, upstream) = match &route.upstream {
            Upstream::Fixed {
                authority,
                base_path,
                host,
                tls,
            } => (base_path.as_str(), Some((authority, host, *tls))),
            Upstream::Service { .. } => ("", None),
        };
        // Usually the path goes out as it came: then the request's own bytes are shared.
        let unchanged = base.is_empty()
            && matches!(&path, Cow::Borrowed(p) if std::ptr::eq(*p, parts.uri.path()));
        let pq = match parts.uri.path_and_query() {
            Some(pq) if unchanged => pq.clone(),
            _ => {
                let mut pq = String::with_capacity(
                    base.len() + path.len() + query.map_or(0, |q| q.len() + 1),
                );
                pq.push_str(base);
                pq.push_str(&path);
                if let Some(q) = query {
                    pq.push('?');
                    pq.push_str(q);
                }
                let Ok(pq) = PathAndQuery::try_from(pq) else {
                    return ResponseFuture::local(local(
                        StatusCode::BAD_REQUEST,
                        "bad request path\n",
                    ));
                };
                pq
            }
        };
        drop(path);
        drop(norm);
        let mut up = http::uri::Parts::default();
        up.path_and_query = Some(pq);
        // Plain HTTP/1.1 goes out as written (origin-form, our `Host`); h2c needs the authority
        // in the URI (`:authority`), and the https pool the scheme and authority to connect.
        let upstream_host = match upstream {
            Some((authority, _, tls)) if tls || route.protocol == Protocol::H2c => {
                up.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
                up.authority = Some(authority.clone());
                None
            }
            Some((_, host, _)) => Some(host),
            None => None,
        };
        parts.uri = Uri::from_parts(up).expect("scheme, authority and path are valid");
        match (route.preserve_host, client_host) {
            (true, Some(h)) => {
                parts.headers.insert(HOST, h);
            }
            _ => match upstream_host {
                Some(h) => {
                    parts.headers.insert(HOST, h.clone());
                }
                // The h2c and https pools write the upstream's authority; a service, its instance's.
                None => {
                    parts.headers.remove(HOST);
                }
            },
        }
        parts.version = match route.protocol {
            Protocol::Http1 => Version::HTTP_11,
            Protocol::H2c => Version::HTTP_2,
        };
        // gw2: only routes that retry need to know (two hashed lookups spared elsewhere).
        let bodiless = route.replay.is_some()
            && !parts.headers.contains_key(TRANSFER_ENCODING)
            && parts
                .headers
                .get(CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0")
            && http_body::Body::is_end_stream(&body);
        // wip/gwlb: retried requests with a body keep it for replay (`crate::replay`).
        let replay = route
            .replay
            .as_ref()
            .filter(|p| p.retryable(&parts.method) && (bodiless || p.keeps_bodies()));
        let mut retry = match (&route.retry, replay) {
            // gw2: boxed, so routes without retries do not move its ~450 bytes around with
            // every poll; routes with retries clone the headers anyway.
            (Some((attempts, _)), Some(_)) => Some(Box::new(Retry {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                version: parts.version,
                headers: parts.headers.clone(),
                left: *attempts,
                saved: None,
            })),
            _ => None,
        };
        let mut req = Request::from_parts(
            parts,
            RequestBody::new(body, self.shared.limits.max_body_bytes),
        );
        if let (Some(retry), Some(p)) = (retry.as_mut(), replay)
            && !bodiless
        {
            let (first, saved) = p.prepare(req);
            req = first;
            retry.saved = saved;
        }
        let state = match (&route.rate_limit, limit_key) {
            (Some(rl), Some(key)) => State::Limiting {
                fut: rl.limiter.take(key, rl.rate, rl.burst),
                req: Some(req),
            },
            _ => State::start(&route, req),
        };
        ResponseFuture {
            state,
            retry,
            finish: Some(Finish {
                route,
                request_id,
                start,
                upgrade,
                limit: None,
                local_limit,
                slot: None,
                cors_origin,
            }),
        }
    }
}

fn finish_head(
    route: &Route,
    request_id: &HeaderValue,
    cors_origin: Option<&HeaderValue>,
    resp: &mut Response<GatewayBody>,
) {
    forward::strip_hop_by_hop(resp.headers_mut());
    // gwsec: CORS headers before the route's own response filters (which may adjust them).
    if let Some(c) = &route.cors {
        c.apply(cors_origin, resp.headers_mut());
    }
    for f in &route.response_filters {
        f.apply(resp.headers_mut());
    }
    resp.headers_mut()
        .insert(forward::X_REQUEST_ID.clone(), request_id.clone());
}

static RATELIMIT_LIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: http::HeaderName = http::HeaderName::from_static("ratelimit-remaining");

struct Finish {
    route: Arc<Route>,
    request_id: HeaderValue,
    start: Instant,
    /// The client side of an `Upgrade` request, and the protocol asked for.
    upgrade: Option<(OnUpgrade, HeaderValue)>,
    /// (bucket size, tokens left) from the rate limiter.
    limit: Option<(u64, i64)>,
    // wip/gwlb
    /// The local rate limit's verdict (for the `RateLimit-*` headers).
    local_limit: Option<crate::limits::RateInfo>,
    /// The route's bulkhead slot, held until the response body ends (or is dropped).
    slot: Option<crate::limits::Slot>,
    /// gwsec: the `Access-Control-Allow-Origin` to send, when the route has CORS.
    cors_origin: Option<HeaderValue>,
}

/// An HTTP/1.1 `Upgrade` request (WebSocket and others): `Upgrade` present and `Connection`
/// listing `upgrade`.
fn upgrade_protocol(parts: &http::request::Parts) -> Option<HeaderValue> {
    if parts.version != Version::HTTP_11 {
        return None;
    }
    let proto = parts.headers.get(UPGRADE)?;
    let listed = parts.headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    listed.then(|| proto.clone())
}

/// Joins the client and upstream connections once both sides have switched protocols.
fn tunnel(route: &str, client: OnUpgrade, upstream: OnUpgrade) {
    let route = route.to_owned();
    tokio::spawn(async move {
        let (c, u) = match tokio::try_join!(client, upstream) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(%route, error = %e, "upgrade failed");
                return;
            }
        };
        let mut c = TokioIo::new(c);
        let mut u = TokioIo::new(u);
        match tokio::io::copy_bidirectional(&mut c, &mut u).await {
            Ok((up, down)) => tracing::debug!(%route, up, down, "upgraded connection closed"),
            Err(e) => tracing::debug!(%route, error = %e, "upgraded connection failed"),
        }
    });
}

type BreakerFuture =
    palisade_breaker::circuit::future::ResponseFuture<UpstreamFuture, HttpClassifier, ()>;

pin_project! {
    #[project = StateProj]
    enum State {
        Local { resp: Option<Response<GatewayBody>> },
        Direct { #[pin] fut: UpstreamFuture },
        Breaker { #[pin] fut: BreakerFuture },
        Limiting { fut: crate::ratelimit::VerdictFuture, req: Option<Request<RequestBody>> },
        // wip/gwlb: waiting for a bulkhead slot.
        Admitting { adm: crate::limits::Admission, req: Option<Request<RequestBody>> },
    }
}

impl State {
    // wip/gwlb: the first attempt goes through the route's bulkhead, retries do not (the slot
    // is held for the whole request).
    fn start(route: &Route, req: Request<RequestBody>) -> Self {
        match &route.limits.bulkhead {
            Some(b) => State::Admitting {
                adm: crate::limits::Admission::new(b),
                req: Some(req),
            },
            None => State::call(route, req),
        }
    }

    fn call(route: &Route, req: Request<RequestBody>) -> Self {
        match &route.breaker {
            None => State::Direct {
                fut: route.call.send(req),
            },
            Some(b) => State::Breaker {
                fut: tower_service::Service::call(&mut b.svc.clone(), req),
            },
        }
    }
}

/// What a bodiless idempotent request needs to be sent again.
struct Retry {
    method: Method,
    uri: Uri,
    version: Version,
    headers: http::HeaderMap,
    left: u32,
    // wip/gwlb: the body kept for replay, when the request has one.
    saved: Option<crate::replay::Saved>,
}

impl Retry {
    fn request(&self, route: &Route) -> Result<Request<RequestBody>, &'static str> {
        if let (Some(saved), Some(p)) = (&self.saved, &route.replay) {
            return p.again(saved);
        }
        let mut r = Request::new(RequestBody::empty());
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = self.version;
        *r.headers_mut() = self.headers.clone();
        Ok(r)
    }
}

/// One attempt's outcome.
enum Attempt {
    Response(Response<UpstreamBody>),
    /// Upstream error or timeout (may be retried).
    Failed(crate::BoxError),
    /// Answered by the gateway (breaker fallback, 413): final.
    Answered(Response<GatewayBody>),
}

pin_project! {
    /// The response future of [`GatewayConnection`].
    pub struct ResponseFuture {
        #[pin]
        state: State,
        retry: Option<Box<Retry>>,
        finish: Option<Finish>,
    }
}

impl ResponseFuture {
    fn local(resp: Response<GatewayBody>) -> Self {
        ResponseFuture {
            state: State::Local { resp: Some(resp) },
            retry: None,
            finish: None,
        }
    }
}

fn upstream_error(route: &Route, e: &(dyn std::error::Error + 'static)) -> Response<GatewayBody> {
    if has_cause::<BodyTooLarge>(e) {
        local(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
    } else if let Some(n) = find_cause::<crate::lb::NoInstances>(e) {
        n.response()
    } else if has_cause::<UpstreamTimeout>(e) {
        local(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n")
    } else if warn_tls_failure(route, e) {
        local(StatusCode::BAD_GATEWAY, "upstream unavailable\n")
    } else {
        tracing::debug!(route = %route.id, error = %e, "upstream failed");
        local(StatusCode::BAD_GATEWAY, "upstream unavailable\n")
    }
}

fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// gwsec: a TLS failure to an upstream is a configuration problem (wrong CA, name, protocol),
/// not load: it is logged at WARN with the reason. Returns whether `e` was one.
fn warn_tls_failure(route: &Route, e: &(dyn std::error::Error + 'static)) -> bool {
    match crate::tls::tls_failure(e) {
        Some(why) => {
            tracing::warn!(route = %route.id, upstream = ?route.upstream, tls_error = %why, "TLS to upstream failed");
            true
        }
        None => false,
    }
}

fn has_cause<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<T>() {
            return true;
        }
        cur = e.source();
    }
    false
}

impl Future for ResponseFuture {
    type Output = Result<Response<GatewayBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut resp = loop {
            let attempt = match this.state.as_mut().project() {
                StateProj::Limiting { fut, req } => {
                    let verdict = ready!(fut.as_mut().poll(cx));
                    let req = req.take().expect("polled after completion");
                    let finish = this.finish.as_mut().expect("polled after completion");
                    let rl = finish
                        .route
                        .rate_limit
                        .as_ref()
                        .expect("limiting state has a limit");
                    match verdict {
                        Ok((allowed, left)) => {
                            finish.limit = Some((rl.burst, left));
                            if allowed == 1 {
                                let next = State::start(&finish.route, req);
                                this.state.set(next);
                                continue;
                            }
                            let mut r =
                                local(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n");
                            let wait = (1.0 / rl.rate).ceil().max(1.0) as u64;
                            r.headers_mut()
                                .insert(http::header::RETRY_AFTER, HeaderValue::from(wait));
                            Attempt::Answered(r)
                        }
                        Err(e) => {
                            // Fail open: a Redis outage must not take the routes down.
                            tracing::debug!(route = %finish.route.id, error = %e, "rate limiter unavailable; letting through");
                            let next = State::start(&finish.route, req);
                            this.state.set(next);
                            continue;
                        }
                    }
                }
                StateProj::Admitting { adm, req } => {
                    let admitted = ready!(adm.poll(cx));
                    let req = req.take().expect("polled after completion");
                    let finish = this.finish.as_mut().expect("polled after completion");
                    match admitted {
                        Ok(slot) => {
                            finish.slot = Some(slot);
                            let next = State::call(&finish.route, req);
                            this.state.set(next);
                            continue;
                        }
                        Err(r) => {
                            tracing::debug!(route = %finish.route.id, reason = %r, "bulkhead full");
                            finish
                                .route
                                .metrics
                                .rejected(crate::metrics::Rejection::Bulkhead);
                            Attempt::Answered(local(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "route at capacity\n",
                            ))
                        }
                    }
                }
                StateProj::Local { resp } => {
                    return Poll::Ready(Ok(resp.take().expect("polled after completion")));
                }
                StateProj::Direct { fut } => match ready!(fut.poll(cx)) {
                    Ok(r) => Attempt::Response(r),
                    Err(e) => Attempt::Failed(e),
                },
                StateProj::Breaker { fut } => match ready!(fut.poll(cx)) {
                    Ok(r) => Attempt::Response(r),
                    Err(e) => match e.into_inner() {
                        Ok(inner) => Attempt::Failed(inner),
                        // Open (or no probe slot): fail fast with the fallback, no retry.
                        Err(_rejected) => {
                            let route =
                                &this.finish.as_ref().expect("polled after completion").route;
                            let b = route.breaker.as_ref().expect("breaker state has a breaker");
                            Attempt::Answered(b.fallback.response())
                        }
                    },
                },
            };
            let route = &this.finish.as_ref().expect("polled after completion").route;
            let retriable = match &attempt {
                Attempt::Response(r) => route
                    .retry
                    .as_ref()
                    .is_some_and(|(_, st)| st.contains(&r.status().as_u16())),
                Attempt::Failed(e) => !has_cause::<BodyTooLarge>(&**e),
                Attempt::Answered(_) => false,
            };
            if retriable
                && let Some(retry) = this.retry.as_mut()
                && retry.left > 0
            {
                match retry.request(route) {
                    Ok(req) => {
                        retry.left -= 1;
                        tracing::debug!(route = %route.id, left = retry.left, "retrying");
                        let next = State::call(route, req);
                        this.state.set(next);
                        continue;
                    }
                    Err(why) => {
                        retry.left = 0;
                        tracing::debug!(route = %route.id, reason = why, "not retried");
                    }
                }
            }
            break match attempt {
                Attempt::Response(r) => r.map(GatewayBody::from_upstream),
                Attempt::Answered(r) => r,
                Attempt::Failed(e) => match &route.breaker {
                    Some(b) if !has_cause::<BodyTooLarge>(&*e) => {
                        warn_tls_failure(route, &*e); // gwsec
                        tracing::debug!(route = %route.id, error = %e, "upstream failed; fallback");
                        b.fallback.response()
                    }
                    _ => upstream_error(route, &*e),
                },
            };
        };
        let mut finish = this.finish.take().expect("polled after completion");
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        let upstream_upgrade = if switching {
            resp.extensions_mut().remove::<OnUpgrade>()
        } else {
            None
        };
        finish_head(
            &finish.route,
            &finish.request_id,
            finish.cors_origin.as_ref(),
            &mut resp,
        );
        if let Some(info) = &finish.local_limit {
            info.apply(resp.headers_mut());
        }
        // gw2: the slot stays with a streamed body until it ends or is dropped.
        let slot = finish.slot.take();
        if let Some((limit, left)) = finish.limit {
            resp.headers_mut()
                .insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(limit));
            resp.headers_mut()
                .insert(RATELIMIT_REMAINING.clone(), HeaderValue::from(left.max(0)));
        }
        if switching {
            match (finish.upgrade.take(), upstream_upgrade) {
                (Some((client, proto)), Some(upstream)) => {
                    let proto = resp.headers().get(UPGRADE).cloned().unwrap_or(proto);
                    resp.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
                    resp.headers_mut().insert(UPGRADE, proto);
                    tunnel(&finish.route.id, client, upstream);
                }
                // A 101 to a request that did not ask for one cannot be honoured.
                _ => resp = local(StatusCode::BAD_GATEWAY, "unexpected protocol switch\n"),
            }
        } else {
            resp.body_mut().hold(slot);
        }
        let elapsed = finish.start.elapsed();
        finish.route.stats.record(resp.status().as_u16(), elapsed);
        finish.route.metrics.record(resp.status().as_u16(), elapsed);
        tracing::debug!(
            target: "palisade_gateway::access",
            route = %finish.route.id,
            status = resp.status().as_u16(),
            elapsed_us = elapsed.as_micros() as u64,
            request_id = ?finish.request_id,
        );
        Poll::Ready(Ok(resp))
    }
}

impl tower_service::Service<Request<Incoming>> for GatewayConnection {
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The pool has no admission limit of its own; per-route limits are layers.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> ResponseFuture {
        self.handle(req)
    }
}

impl hyper::service::Service<Request<Incoming>> for GatewayConnection {
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<Incoming>) -> ResponseFuture {
        self.handle(req)
    }
}

// gw2: the response future is moved into hyper's dispatcher for every request, and every
// byte of it is copied: a retry's state (~450 bytes) is boxed, and only on routes with retries.
#[cfg(all(test, target_pointer_width = "64"))]
mod size {
    #[test]
    fn response_future_stays_small() {
        let n = std::mem::size_of::<super::ResponseFuture>();
        assert!(
            n <= 768,
            "ResponseFuture is {n} bytes (1168 with the retry state inline)"
        );
    }
}
