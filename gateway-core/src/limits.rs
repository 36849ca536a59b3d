//! Per-route admission: a bulkhead (calls in flight, with a bounded wait) and a local,
//! in-process rate limit (GCRA per client key), both from `palisade-breaker`.
//!
//! ```yaml
//! routes:
//!   - id: search
//!     upstream: http://127.0.0.1:19000
//!     bulkhead: { max_concurrent: 32, max_wait: 50ms, max_queue: 64 }   # palisade-breaker's bulkhead Config
//!     local_rate_limit:
//!       rate: 100          # calls per period, per key
//!       period: 1s         # default 1s
//!       burst: 20          # default: rate
//!       key: client_ip     # or { header: x-api-key } or jwt_subject
//! ```
//!
//! A request over the rate gets `429` with `Retry-After` (whole seconds, at least 1); every
//! answer of a limited route carries `RateLimit-Limit` (the burst), `RateLimit-Remaining` and
//! `RateLimit-Reset` (seconds until the key is back to a full burst). A full bulkhead gives
//! `503` (`route at capacity`) once `max_wait` has passed. The slot is held from admission
//! until the exchange completes (retries included): a streamed response body keeps it until
//! its end (or an error), or until it is dropped (the client went away); gateway-written
//! answers and `101` upgrades give it back with the head. It is given back if the client goes
//! away before the head too.
//!
//! Both keep their state across reloads for as long as the route id exists, and a changed
//! setting is applied in place (`reconfigure`), like the routes' circuit breakers.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use palisade_breaker::bulkhead::{self, BulkheadLayer};
use palisade_breaker::ratelimit::{self, KeyedHandle, KeyedRateLimitLayer};
use serde::Deserialize;
use tower_service::Service;

use crate::config::Name;

/// `routes[].local_rate_limit`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRateLimitConfig {
    /// Calls per `period` per key (at least 1).
    pub rate: u32,
    /// The period (default 1 s).
    #[serde(default = "one_second", with = "humantime_serde")]
    pub period: Duration,
    /// Calls a key may make at once after a quiet spell (default `rate`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// What identifies a client: `client_ip` (default), `jwt_subject` or `{ header: NAME }`.
    #[serde(default, with = "serde_yaml::with::singleton_map")]
    pub key: LimitKey,
    /// Keys tracked at most (default 100 000); idle keys are forgotten first, and a new key
    /// that finds no room is limited.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn default_max_keys() -> usize {
    100_000
}

impl LocalRateLimitConfig {
    pub(crate) fn breaker_config(&self) -> ratelimit::Config {
        ratelimit::Config::per(self.rate, self.period).burst(self.burst.unwrap_or(self.rate))
    }

    /// Checks the values; the error says which key (relative to `local_rate_limit`) is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.max_keys == 0 {
            return Err(("max_keys".into(), "must be at least 1".into()));
        }
        self.breaker_config()
            .validate()
            .map_err(|e| (e.field().to_owned(), e.to_string()))
    }
}

/// What identifies a client for a local rate limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LimitKey {
    /// The client's IP address (the TCP peer, or the client behind `trusted_proxies`).
    #[default]
    ClientIp,
    /// A request header's value (an API key, a tenant); the client IP when it is absent.
    Header(Name),
    /// The `sub` claim of the bearer JWT, read after the route's `jwt` filter verified it; the
    /// client IP when there is none.
    JwtSubject,
}

/// The bulkheads' event listener: `palisade_bulkhead_in_flight{name}` and
/// `palisade_bulkhead_rejections_total{name}` (name = route id) with the `metrics` feature.
#[cfg(feature = "metrics")]
pub(crate) type BulkheadListener = bulkhead::MetricsListener;
#[cfg(not(feature = "metrics"))]
pub(crate) type BulkheadListener = ();

#[cfg(feature = "metrics")]
fn bulkhead_layer(
    route: &str,
    cfg: bulkhead::Config,
) -> Result<BulkheadLayer<BulkheadListener>, palisade_breaker::InvalidConfig> {
    BulkheadLayer::with_listener(route, cfg, bulkhead::MetricsListener::new(route))
}
#[cfg(not(feature = "metrics"))]
fn bulkhead_layer(
    route: &str,
    cfg: bulkhead::Config,
) -> Result<BulkheadLayer<BulkheadListener>, palisade_breaker::InvalidConfig> {
    BulkheadLayer::new(route, cfg)
}

/// A route's limits, compiled.
#[derive(Clone)]
pub(crate) struct RouteLimits {
    pub(crate) bulkhead: Option<bulkhead::Bulkhead<Hold, BulkheadListener>>,
    pub(crate) rate: Option<LocalRate>,
}

impl std::fmt::Debug for RouteLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteLimits")
            .field("bulkhead", &self.bulkhead.is_some())
            .field("rate", &self.rate.is_some())
            .finish()
    }
}

/// A route's local rate limit.
#[derive(Clone)]
pub(crate) struct LocalRate {
    handle: KeyedHandle<u64>,
    key: LimitKey,
    burst: u32,
    hasher: std::collections::hash_map::RandomState,
}

/// The bulkhead's inner service: a call that never completes, so the bulkhead's response
/// future holds the slot for as long as the gateway keeps it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hold;

impl Service<()> for Hold {
    type Response = ();
    type Error = std::convert::Infallible;
    type Future = std::future::Pending<Result<(), std::convert::Infallible>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _req: ()) -> Self::Future {
        std::future::pending()
    }
}

/// A held bulkhead slot; given back when dropped.
pub(crate) type Slot = bulkhead::future::ResponseFuture<
    std::future::Pending<Result<(), std::convert::Infallible>>,
    BulkheadListener,
>;

/// Waits for a bulkhead slot.
pub(crate) struct Admission {
    bulkhead: bulkhead::Bulkhead<Hold, BulkheadListener>,
}

impl Admission {
    pub(crate) fn new(b: &bulkhead::Bulkhead<Hold, BulkheadListener>) -> Self {
        Admission {
            bulkhead: b.clone(),
        }
    }

    /// A slot, or the rejection (full, queue full, wait timed out).
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Slot, bulkhead::Rejected>> {
        match self.bulkhead.poll_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => match e.into_inner() {
                Err(r) => return Poll::Ready(Err(r)),
                Ok(never) => match never {},
            },
            Poll::Ready(Ok(())) => {}
        }
        let mut slot = self.bulkhead.call(());
        // A rejection is ready at once; an admitted call stays pending (and keeps its slot).
        let mut noop = Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(&mut slot).poll(&mut noop) {
            Poll::Ready(Err(e)) => match e.into_inner() {
                Err(r) => Poll::Ready(Err(r)),
                Ok(never) => match never {},
            },
            Poll::Ready(Ok(())) => unreachable!("Hold never completes"),
            Poll::Pending => Poll::Ready(Ok(slot)),
        }
    }
}

use std::future::Future as _;

/// The outcome of a rate-limit check: the values of the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateInfo {
    limit: u32,
    remaining: u32,
    /// Whole seconds until full (headers), or until the next permit (when rejected).
    reset_secs: u64,
    rejected: bool,
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl LocalRate {
    /// The key when it does not depend on the route's filters (client IP or a header, read
    /// before a filter may remove the header); `None` for a JWT subject.
    pub(crate) fn key_before_filters(&self, headers: &http::HeaderMap, ip: IpAddr) -> Option<u64> {
        match self.key {
            LimitKey::JwtSubject => None,
            _ => Some(self.key_of(headers, ip)),
        }
    }

    /// Takes a permit for `key`.
    pub(crate) fn check_key(&self, key: u64) -> RateInfo {
        match self.handle.try_acquire(key) {
            Ok(a) => RateInfo {
                limit: self.burst,
                remaining: a.remaining(),
                reset_secs: ceil_secs(a.reset()),
                rejected: false,
            },
            Err(r) => RateInfo {
                limit: self.burst,
                remaining: 0,
                reset_secs: ceil_secs(r.retry_after()).max(1),
                rejected: true,
            },
        }
    }

    /// A keyed hash of the client's identity (no allocation; the random hasher keys keep
    /// clients from choosing colliding identities).
    pub(crate) fn key_of(&self, headers: &http::HeaderMap, ip: IpAddr) -> u64 {
        let mut h = self.hasher.build_hasher();
        let found = match &self.key {
            LimitKey::ClientIp => false,
            LimitKey::Header(name) => match headers.get(&name.0) {
                Some(v) => {
                    h.write_u8(1);
                    h.write(v.as_bytes());
                    true
                }
                None => false,
            },
            LimitKey::JwtSubject => match bearer_subject(headers) {
                Some(sub) => {
                    h.write_u8(2);
                    h.write(sub.as_bytes());
                    true
                }
                None => false,
            },
        };
        if !found {
            h.write_u8(0);
            match ip {
                IpAddr::V4(a) => h.write(&a.octets()),
                IpAddr::V6(a) => h.write(&a.octets()),
            }
        }
        h.finish()
    }
}

static RATELIMIT_LIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: http::HeaderName = http::HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: http::HeaderName = http::HeaderName::from_static("ratelimit-reset");

/// Header values of small numbers, built once: cloning one is a reference-count increment,
/// where `HeaderValue::from(n)` formats into a fresh buffer (two allocations).
fn number(n: u64) -> HeaderValue {
    const SMALL: usize = 4096;
    static TABLE: std::sync::LazyLock<Box<[HeaderValue]>> =
        std::sync::LazyLock::new(|| (0..SMALL as u64).map(HeaderValue::from).collect());
    match usize::try_from(n).ok().and_then(|i| TABLE.get(i)) {
        Some(v) => v.clone(),
        None => HeaderValue::from(n),
    }
}

impl RateInfo {
    pub(crate) fn rejected(&self) -> bool {
        self.rejected
    }

    /// Adds the `RateLimit-*` headers (and `Retry-After` when rejected).
    pub(crate) fn apply(&self, h: &mut http::HeaderMap) {
        h.insert(RATELIMIT_LIMIT.clone(), number(u64::from(self.limit)));
        h.insert(
            RATELIMIT_REMAINING.clone(),
            number(u64::from(self.remaining)),
        );
        let reset = number(self.reset_secs);
        if self.rejected {
            h.insert(http::header::RETRY_AFTER, reset.clone());
        }
        h.insert(RATELIMIT_RESET.clone(), reset);
    }
}

/// Bulkheads and rate limiters by route id, kept across reloads.
#[derive(Default)]
pub(crate) struct LimitStore {
    map: Mutex<HashMap<String, Stored>>,
}

impl std::fmt::Debug for LimitStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitStore").finish_non_exhaustive()
    }
}

#[derive(Default, Clone)]
struct Stored {
    bulkhead: Option<BulkheadLayer<BulkheadListener>>,
    /// The limiter and the hasher of its keys (kept together: a new hasher would give every
    /// client a fresh budget).
    rate: Option<(KeyedLayer, std::collections::hash_map::RandomState)>,
}

type KeyedLayer = KeyedRateLimitLayer<u64, fn(&u64) -> u64>;

/// Changes to apply once the whole routes file compiled.
#[derive(Default)]
pub(crate) struct PendingLimits {
    reconfigure_bulkheads: Vec<(bulkhead::Handle<BulkheadListener>, bulkhead::Config)>,
    reconfigure_rates: Vec<(KeyedHandle<u64>, ratelimit::Config)>,
    store: Vec<(String, Stored)>,
}

fn identity(k: &u64) -> u64 {
    *k
}

impl LimitStore {
    /// Compiles one route's limits, reusing (and later reconfiguring) the route's existing
    /// bulkhead and limiter. Errors are `(key under the route, message)`.
    pub(crate) fn compile(
        &self,
        id: &str,
        bulkhead_cfg: Option<&bulkhead::Config>,
        rate_cfg: Option<&LocalRateLimitConfig>,
        pending: &mut PendingLimits,
    ) -> Result<RouteLimits, (String, String)> {
        let existing = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
            .unwrap_or_default();
        let mut stored = Stored::default();
        let bulkhead = match bulkhead_cfg {
            None => None,
            Some(c) => {
                c.validate()
                    .map_err(|e| (format!("bulkhead.{}", e.field()), e.to_string()))?;
                let layer = match existing.bulkhead {
                    Some(l) => {
                        pending.reconfigure_bulkheads.push((l.handle(), c.clone()));
                        l
                    }
                    None => bulkhead_layer(id, c.clone())
                        .map_err(|e| (format!("bulkhead.{}", e.field()), e.to_string()))?,
                };
                let svc = tower::Layer::layer(&layer, Hold);
                stored.bulkhead = Some(layer);
                Some(svc)
            }
        };
        let rate = match rate_cfg {
            None => None,
            Some(c) => {
                c.validate()
                    .map_err(|(k, m)| (format!("local_rate_limit.{k}"), m))?;
                let cfg = c.breaker_config();
                let (layer, hasher) = match existing.rate {
                    Some((l, h)) => {
                        pending.reconfigure_rates.push((l.handle(), cfg.clone()));
                        (l, h)
                    }
                    None => (
                        KeyedRateLimitLayer::new(
                            cfg.clone(),
                            c.max_keys,
                            identity as fn(&u64) -> u64,
                        )
                        .map_err(|e| (format!("local_rate_limit.{}", e.field()), e.to_string()))?,
                        Default::default(),
                    ),
                };
                let rate = LocalRate {
                    handle: layer.handle(),
                    key: c.key.clone(),
                    burst: cfg.burst,
                    hasher: hasher.clone(),
                };
                stored.rate = Some((layer, hasher));
                Some(rate)
            }
        };
        pending.store.push((id.to_owned(), stored));
        Ok(RouteLimits { bulkhead, rate })
    }

    /// Applies what [`LimitStore::compile`] collected, once every route compiled: in-place
    /// reconfiguration of kept limits, and forgets the limits of removed routes.
    pub(crate) fn commit(&self, pending: PendingLimits) {
        for (h, c) in pending.reconfigure_bulkheads {
            if let Err(e) = h.reconfigure(c) {
                tracing::warn!(bulkhead = h.name(), error = %e, "bulkhead reconfigure failed");
            }
        }
        for (h, c) in pending.reconfigure_rates {
            if let Err(e) = h.reconfigure(c) {
                tracing::warn!(error = %e, "rate limit reconfigure failed");
            }
        }
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.clear();
        map.extend(pending.store);
    }
}

/// The `sub` claim of `Authorization: Bearer <jwt>`, unverified: call it only after the
/// route's `jwt` filter accepted the token. Decodes the payload (one small allocation; only
/// routes keyed by JWT subject pay it).
fn bearer_subject(headers: &http::HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let v = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let token = v.strip_prefix(b"Bearer ")?;
    let mut parts = token.split(|b| *b == b'.');
    let _header = parts.next()?;
    let payload = parts.next()?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(Deserialize)]
    struct Claims {
        sub: Option<String>,
    }
    serde_json::from_slice::<Claims>(&json).ok()?.sub
}
