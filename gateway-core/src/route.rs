//! Compiled routes and the router that picks one per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{COOKIE, HOST};
use http::request::Parts;

use crate::config::{GatewayConfig, HostPattern, Protocol, RouteConfig, RoutesError, ValueMatch};
use crate::filter::{self, RequestFilter, ResponseFilter};
use crate::path::{self, Captures, PathPattern};
use crate::upstream::{Clients, Upstream, UpstreamCall, UpstreamResolver};
use palisade_breaker::HttpClassifier;
use palisade_breaker::circuit::{BreakerRegistry, CircuitBreaker, CircuitBreakerLayer};

/// Counters of one route, kept across reloads for as long as the route id exists.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Responses by status class: index 0 = 1xx ... 4 = 5xx.
    pub(crate) by_class: [AtomicU64; 5],
    /// Sum of time to response head, in microseconds.
    pub(crate) duration_us: AtomicU64,
}

impl RouteStats {
    pub(crate) fn record(&self, status: u16, elapsed: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.duration_us.fetch_add(
            elapsed.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }
    /// Responses with a status in `class` (1 to 5).
    pub fn responses(&self, class: usize) -> u64 {
        self.by_class[class.clamp(1, 5) - 1].load(Ordering::Relaxed)
    }
}

/// Per-route counters by route id; survives reloads.
#[derive(Debug, Default)]
pub(crate) struct StatsRegistry {
    map: Mutex<HashMap<String, Arc<RouteStats>>>,
}

impl StatsRegistry {
    pub(crate) fn get(&self, id: &str) -> Arc<RouteStats> {
        let mut m = self.map.lock().expect("stats lock poisoned");
        m.entry(id.to_owned()).or_default().clone()
    }
    pub(crate) fn snapshot(&self) -> Vec<(String, Arc<RouteStats>)> {
        let m = self.map.lock().expect("stats lock poisoned");
        let mut v: Vec<_> = m.iter().map(|(k, s)| (k.clone(), s.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// Breakers by route id; a reload reconfigures a kept route's breaker in place (its state and
/// counters stay) and drops the breakers of removed routes.
#[derive(Debug, Default)]
pub(crate) struct BreakerStore {
    map: Mutex<HashMap<String, CircuitBreakerLayer<HttpClassifier>>>,
    pub(crate) registry: BreakerRegistry,
}

/// A route's breaker-wrapped upstream call and its fallback.
#[derive(Debug, Clone)]
pub(crate) struct RouteBreaker {
    pub(crate) svc: CircuitBreaker<UpstreamCall, HttpClassifier>,
    pub(crate) fallback: filter::FixedAnswer,
}

/// A route's rate limit.
#[derive(Debug, Clone)]
pub(crate) struct RouteLimit {
    pub(crate) limiter: crate::ratelimit::RedisLimiter,
    pub(crate) rate: f64,
    pub(crate) burst: u64,
    pub(crate) key_header: Option<http::HeaderName>,
}

/// What [`Router::build`] needs besides the config.
pub(crate) struct BuildCtx<'a> {
    pub(crate) stats: &'a StatsRegistry,
    pub(crate) breakers: &'a BreakerStore,
    pub(crate) clients: &'a Arc<Clients>,
    pub(crate) resolver: Option<&'a dyn UpstreamResolver>,
    pub(crate) limiter: Option<&'a crate::ratelimit::RedisLimiter>,
    pub(crate) file: &'a std::path::Path,
    pub(crate) version: u64,
    // wip/gwlb
    pub(crate) limits: &'a crate::limits::LimitStore,
}

#[derive(Debug)]
struct Matchers {
    path_prefix: Option<String>,
    path: Option<PathPattern>,
    host: Vec<HostPattern>,
    method: Vec<http::Method>,
    headers: Vec<ValueMatch>,
    query: Vec<ValueMatch>,
    cookies: Vec<ValueMatch>,
    /// (group index, lower bound, upper bound) in the group's total weight.
    weight: Option<(usize, u32, u32)>,
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    pub(crate) id: String,
    matchers: Matchers,
    pub(crate) request_filters: Vec<RequestFilter>,
    pub(crate) response_filters: Vec<ResponseFilter>,
    pub(crate) upstream: Upstream,
    pub(crate) call: UpstreamCall,
    /// gwsec: the route's CORS policy (its own, else the top-level one).
    pub(crate) cors: Option<Arc<crate::cors::Cors>>,
    pub(crate) breaker: Option<RouteBreaker>,
    pub(crate) rate_limit: Option<RouteLimit>,
    /// (extra attempts, retried statuses).
    pub(crate) retry: Option<(u32, Vec<u16>)>,
    // wip/gwlb: admission limits and request-body replay for retries.
    pub(crate) limits: crate::limits::RouteLimits,
    pub(crate) replay: Option<crate::replay::ReplayPolicy>,
    pub(crate) metrics: crate::metrics::RouteMetrics,
    pub(crate) protocol: Protocol,
    pub(crate) preserve_host: bool,
    pub(crate) stats: Arc<RouteStats>,
    pub(crate) source: RouteConfig,
}

impl Route {
    /// The route id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The route as configured.
    pub fn config(&self) -> &RouteConfig {
        &self.source
    }
}

fn value_ok(m: &ValueMatch, v: &str) -> bool {
    match &m.regex {
        None => true,
        Some(re) => {
            re.0.find(v)
                .is_some_and(|f| f.start() == 0 && f.end() == v.len())
        }
    }
}

fn host_of(parts: &Parts) -> Option<&str> {
    let raw = match parts.headers.get(HOST).and_then(|h| h.to_str().ok()) {
        Some(h) => h,
        None => parts.uri.authority()?.as_str(),
    };
    // Strip the port; keep bracketed IPv6 whole.
    if raw.starts_with('[') {
        return raw.find(']').map(|e| &raw[..=e]);
    }
    Some(raw.rsplit_once(':').map_or(raw, |(h, _)| h))
}

fn query_ok(query: Option<&str>, m: &ValueMatch) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            k == m.name && value_ok(m, v)
        })
    })
}

fn cookie_ok(parts: &Parts, m: &ValueMatch) -> bool {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|line| {
            line.split(';').any(|c| {
                let (k, v) = c.trim().split_once('=').unwrap_or((c.trim(), ""));
                k == m.name && value_ok(m, v)
            })
        })
}

impl Matchers {
    fn matches(&self, parts: &Parts, path: &str, draws: &WeightDraw<'_>) -> Option<Captures> {
        if let Some(p) = &self.path_prefix
            && !path::has_prefix(path, p)
        {
            return None;
        }
        if !self.method.is_empty() && !self.method.contains(&parts.method) {
            return None;
        }
        if !self.host.is_empty() {
            let h = host_of(parts)?;
            if !self.host.iter().any(|p| p.matches(h)) {
                return None;
            }
        }
        for m in &self.headers {
            let ok = parts
                .headers
                .get_all(m.name.as_str())
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| value_ok(m, v)));
            if !ok {
                return None;
            }
        }
        for m in &self.query {
            if !query_ok(parts.uri.query(), m) {
                return None;
            }
        }
        for m in &self.cookies {
            if !cookie_ok(parts, m) {
                return None;
            }
        }
        if let Some((g, lo, hi)) = self.weight {
            let r = draws.draw(g);
            if r < lo || r >= hi {
                return None;
            }
        }
        match &self.path {
            Some(p) => p.matches(path),
            None => Some(Captures::default()),
        }
    }
}

/// The random draws of one request: one value per weight group, derived from one seed so the
/// request costs one RNG call however many groups there are.
pub(crate) struct WeightDraw<'a> {
    seed: u64,
    totals: &'a [u32],
}

impl WeightDraw<'_> {
    fn draw(&self, group: usize) -> u32 {
        // splitmix64 of (seed, group): independent-looking values per group.
        let mut z = self
            .seed
            .wrapping_add((group as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % u64::from(self.totals[group].max(1))) as u32
    }
}

/// The routes of one version of the routes file, in order.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Arc<Route>>,
    weight_totals: Vec<u32>,
    version: u64,
    /// gwsec: the top-level CORS policy.
    pub(crate) cors: Option<Arc<crate::cors::Cors>>,
}

impl Router {
    pub(crate) fn build(cfg: &GatewayConfig, ctx: &BuildCtx<'_>) -> Result<Self, RoutesError> {
        let file = ctx.file;
        // Breaker changes are applied only once every route compiled, so a refused file
        // leaves every breaker as it was.
        let mut reconfigure = Vec::new();
        let mut new_layers = Vec::new();
        let mut groups: Vec<(String, u32)> = Vec::new();
        let mut routes = Vec::with_capacity(cfg.routes.len());
        let mut pending_limits = crate::limits::PendingLimits::default();
        // gwsec: the top-level CORS policy, for routes without their own and for preflights
        // that match no route.
        let global_cors = match &cfg.cors {
            None => None,
            Some(c) => {
                Some(Arc::new(crate::cors::Cors::compile(c).map_err(|m| {
                    RoutesError::new(file, None, "cors".into(), m)
                })?))
            }
        };
        for (i, rc) in cfg.routes.iter().enumerate() {
            let err = |key: &str, m: String| {
                RoutesError::new(file, None, format!("routes[{i}].{key}"), m)
            };
            let (request_filters, response_filters) =
                filter::compile(&rc.filters, rc.predicates.path.as_ref())
                    .map_err(|m| err("filters", m))?;
            let upstream =
                Upstream::from_url(&rc.upstream, ctx.resolver).map_err(|m| err("upstream", m))?;
            // gwsec: https upstreams, CORS.
            let https = crate::tls::route_client(&ctx.clients.tls, rc)
                .map_err(|m| err("upstream_tls", m))?;
            let call = UpstreamCall::new(&upstream, ctx.clients, rc.protocol, rc.timeout)
                .with_https(https);
            let cors = match &rc.cors {
                None => global_cors.clone(),
                Some(c) => Some(Arc::new(
                    crate::cors::Cors::compile(c).map_err(|m| err("cors", m))?,
                )),
            };
            // gwsec end
            let breaker = match &rc.breaker {
                None => None,
                Some(b) => {
                    b.settings
                        .validate()
                        .map_err(|e| err("breaker.settings", e.to_string()))?;
                    let classifier = HttpClassifier::new().count_too_many_requests(b.count_429);
                    let existing = ctx
                        .breakers
                        .map
                        .lock()
                        .expect("breaker lock poisoned")
                        .get(&rc.id)
                        .cloned();
                    let layer = match existing {
                        Some(l) => {
                            reconfigure.push((l.handle(), b.settings.clone()));
                            l
                        }
                        None => {
                            let l = CircuitBreakerLayer::builder(rc.id.clone())
                                .config(b.settings.clone())
                                .classifier(classifier)
                                .build()
                                .map_err(|e| err("breaker.settings", e.to_string()))?;
                            new_layers.push((rc.id.clone(), l.clone()));
                            l
                        }
                    };
                    let fallback = match &b.fallback {
                        Some(f) => filter::FixedAnswer::from_config(f),
                        None => filter::FixedAnswer::unavailable(),
                    };
                    Some(RouteBreaker {
                        svc: tower::Layer::layer(&layer, call.clone()),
                        fallback,
                    })
                }
            };
            let rate_limit = match &rc.rate_limit {
                None => None,
                Some(rl) => Some(RouteLimit {
                    limiter: ctx
                        .limiter
                        .ok_or_else(|| {
                            err(
                                "rate_limit",
                                "rate_limit needs a Redis connection (top-level `redis`)".into(),
                            )
                        })?
                        .clone(),
                    rate: rl.replenish_rate,
                    burst: rl.burst,
                    key_header: rl.key_header.as_ref().map(|h| h.0.clone()),
                }),
            };
            let limits = ctx
                .limits
                .compile(
                    &rc.id,
                    rc.bulkhead.as_ref(),
                    rc.local_rate_limit.as_ref(),
                    &mut pending_limits,
                )
                .map_err(|(k, m)| err(&k, m))?;
            let weight = match &rc.predicates.weight {
                None => None,
                Some(w) => {
                    let g = match groups.iter().position(|(n, _)| *n == w.group) {
                        Some(g) => g,
                        None => {
                            groups.push((w.group.clone(), 0));
                            groups.len() - 1
                        }
                    };
                    let lo = groups[g].1;
                    let hi = lo
                        .checked_add(w.weight)
                        .ok_or_else(|| err("predicates.weight", "weights overflow".into()))?;
                    groups[g].1 = hi;
                    Some((g, lo, hi))
                }
            };
            let p = &rc.predicates;
            routes.push(Arc::new(Route {
                id: rc.id.clone(),
                matchers: Matchers {
                    path_prefix: p.path_prefix.clone(),
                    path: p.path.clone(),
                    host: p.host.clone(),
                    method: p.method.iter().map(|m| m.0.clone()).collect(),
                    headers: p.headers.clone(),
                    query: p.query.clone(),
                    cookies: p.cookies.clone(),
                    weight,
                },
                request_filters,
                response_filters,
                upstream,
                call,
                cors,
                breaker,
                rate_limit,
                retry: rc.retry.as_ref().map(|r| (r.attempts, r.statuses.clone())),
                limits,
                replay: rc.retry.as_ref().map(crate::replay::ReplayPolicy::new),
                metrics: crate::metrics::RouteMetrics::new(&rc.id),
                protocol: rc.protocol,
                preserve_host: rc.preserve_host,
                stats: ctx.stats.get(&rc.id),
                source: rc.clone(),
            }));
        }
        ctx.limits.commit(pending_limits);
        for (handle, settings) in reconfigure {
            // Validated above; a failure here would be a breaker bug, so it is only logged.
            if let Err(e) = handle.reconfigure(settings) {
                tracing::warn!(breaker = handle.name(), error = %e, "breaker reconfigure failed");
            }
        }
        {
            let mut map = ctx.breakers.map.lock().expect("breaker lock poisoned");
            for (id, layer) in new_layers {
                ctx.breakers.registry.register(&layer.handle());
                map.insert(id, layer);
            }
            map.retain(|id, _| {
                cfg.routes
                    .iter()
                    .any(|r| r.id == *id && r.breaker.is_some())
            });
        }
        let version = ctx.version;
        Ok(Router {
            routes,
            weight_totals: groups.into_iter().map(|(_, t)| t).collect(),
            version,
            cors: global_cors,
        })
    }

    /// The first route whose predicates hold, with its path captures. `seed` drives weighted
    /// splits.
    pub(crate) fn find(
        &self,
        parts: &Parts,
        path: &str,
        seed: u64,
    ) -> Option<(&Arc<Route>, Captures)> {
        let draws = WeightDraw {
            seed,
            totals: &self.weight_totals,
        };
        self.routes
            .iter()
            .find_map(|r| r.matchers.matches(parts, path, &draws).map(|c| (r, c)))
    }

    /// Whether any route uses a weighted split (so a request needs a random draw).
    pub(crate) fn has_weights(&self) -> bool {
        !self.weight_totals.is_empty()
    }

    /// The routes, in match order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// How many times the routes were loaded before this version (0 = initial).
    pub fn version(&self) -> u64 {
        self.version
    }
}
