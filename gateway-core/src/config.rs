//! The routes file: a YAML document deserialised straight into checked types, so a bad value is
//! reported with the file, line, column and key path where it was written.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

use crate::path::PathPattern;

/// The whole routes file.
///
/// ```
/// use palisade_gateway::config::GatewayConfig;
/// let yaml = r#"
/// listen: 127.0.0.1:18080
/// routes:
///   - id: users
///     upstream: http://127.0.0.1:19000
///     predicates: { path: "/users/{id}", method: [GET] }
///     filters:
///       - set_path: "/v2/users/{id}"
///       - add_response_header: { name: x-served-by, value: palisade }
/// "#;
/// let cfg = GatewayConfig::from_yaml(yaml, "routes.yaml").unwrap();
/// assert_eq!(cfg.routes[0].id, "users");
///
/// let err = GatewayConfig::from_yaml("routes:\n  - id: a\n    upstream: ftp://x\n", "r.yaml")
///     .unwrap_err();
/// assert_eq!(err.line(), Some(3));
/// assert_eq!(err.key(), "routes[0].upstream");
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address of the proxy listener (read at start; a reload does not move it).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The admin listener, if any.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Request limits on the proxy listener (read at start).
    #[serde(default)]
    pub limits: Limits,
    /// Redis for cluster-wide rate limits (`redis://127.0.0.1:6379`), read at start.
    #[serde(default)]
    pub redis: Option<String>,
    /// Keep the client's `X-Forwarded-*`/`Forwarded` and append to them (only behind another
    /// proxy you trust). Default `false`: the edge drops them and writes its own, so a client
    /// cannot spoof its address to the upstreams. Read at start.
    #[serde(default)]
    pub trust_forwarded: bool,
    // gwsec: TLS listener, trusted proxies, global CORS (new optional keys).
    /// TLS on the proxy listener (certificate chain and key PEM files), read at start.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsListenerConfig>,
    /// Peers (CIDRs or addresses) whose `X-Forwarded-*`/`Forwarded` are kept and appended to;
    /// from any other peer they are dropped. `trust_forwarded: true` trusts every peer.
    #[serde(default)]
    pub trusted_proxies: Vec<crate::trust::Cidr>,
    /// CORS for every route that has no `cors` of its own.
    #[serde(default)]
    pub cors: Option<crate::cors::CorsConfig>,
    // gwsec end
    /// How long graceful shutdown waits for in-flight requests.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// The routes, tried in order; the first that matches wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    // wip/gwlb: lb:// through the registry and balancer.
    /// The registry `lb://` upstreams are resolved in (read at start): see [`crate::lb`].
    #[serde(default)]
    pub registry: Option<crate::lb::RegistryConfig>,
    // gw2: the binary's routes from dynconfig.
    /// Take the routes from a `palisade-dynconfig` key instead of this file's `routes` (read at
    /// start; see [`DynconfigSourceConfig`]). The library's equivalent is
    /// [`crate::source::follow_dynconfig`].
    #[serde(default)]
    pub dynconfig: Option<DynconfigSourceConfig>,
}

/// gw2: where the binary takes its routes from when they live in dynconfig: `key` of the
/// dynconfig configuration layered from `files` (later files win; YAML, JSON, TOML or
/// `.properties` by extension), watched for changes. The value of `key` is a routes document
/// (the same YAML as a routes file); each new value is checked like a routes file and a bad one
/// is refused with `dynconfig:KEY:line:column: key: message`, the routes in use staying.
///
/// ```yaml
/// listen: 0.0.0.0:8080
/// dynconfig: { files: [/etc/palisade/app.yaml], key: gateway.routes }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynconfigSourceConfig {
    /// The dynconfig file layers, lowest priority first.
    pub files: Vec<std::path::PathBuf>,
    /// The key whose string value is the routes document (`gateway.routes`).
    pub key: String,
    /// How long the files must be quiet before a change is read (default 100ms).
    #[serde(default = "default_debounce", with = "humantime_serde")]
    pub debounce: Duration,
}

fn default_debounce() -> Duration {
    Duration::from_millis(100)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_drain() -> Duration {
    Duration::from_secs(30)
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Its address (a separate port from the proxy).
    pub listen: SocketAddr,
    /// Bearer token every admin call but `/health` must present.
    pub token: String,
}

/// Limits applied to every request on the proxy listener.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most request headers (HTTP/1.1; more: `431`).
    pub max_header_count: usize,
    /// Most bytes in the request head (HTTP/1.1 read buffer; at least 8192; more: `431`) and in
    /// the HTTP/2 header list.
    pub max_header_bytes: usize,
    /// Most body bytes (a larger `Content-Length`, or a stream that grows past it: `413`).
    pub max_body_bytes: u64,
    /// How long a client may take to send the request head (slow-loris guard).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_count: 100,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Upstream wire protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive.
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

/// One route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name (metrics label, admin API).
    pub id: String,
    /// Where matching requests go: `http://host:port[/base]`.
    pub upstream: UpstreamUrl,
    /// Upstream protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// Send the client's `Host` upstream instead of the upstream's authority.
    #[serde(default)]
    pub preserve_host: bool,
    /// Time limit for the upstream's response head (`504` when it passes).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// All must hold for the route to match.
    #[serde(default)]
    pub predicates: Predicates,
    /// Cluster-wide rate limit (needs the gateway's Redis).
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Retries of bodiless idempotent requests.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Circuit breaker around the upstream call, with the response given while it is open.
    #[serde(default)]
    pub breaker: Option<BreakerConfig>,
    // wip/gwlb: per-route admission (see `crate::limits`).
    /// Calls in flight at most, with a bounded wait (`503` when full).
    #[serde(default)]
    pub bulkhead: Option<palisade_breaker::bulkhead::Config>,
    /// In-process rate limit per client key (`429`).
    #[serde(default)]
    pub local_rate_limit: Option<crate::limits::LocalRateLimitConfig>,
    // gwsec: https upstreams and per-route CORS.
    /// How an `https://` upstream is verified (CA file, webpki roots, ALPN).
    #[serde(default)]
    pub upstream_tls: Option<crate::tls::UpstreamTlsConfig>,
    /// CORS for this route (replaces the top-level `cors`).
    #[serde(default)]
    pub cors: Option<crate::cors::CorsConfig>,
    // gwsec end
    /// Applied in order; each is a one-key map (`- strip_prefix: 1`).
    #[serde(default, with = "serde_yaml::with::singleton_map_recursive")]
    pub filters: Vec<FilterConfig>,
}

/// A token bucket per client on Redis: `burst` tokens, refilled at `replenish_rate` per second.
/// Answers `429` with `Retry-After` when empty; every answer carries `RateLimit-Limit` and
/// `RateLimit-Remaining`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Tokens per second (may be below 1).
    pub replenish_rate: f64,
    /// Bucket size.
    pub burst: u64,
    /// Header naming the client (an API key, a user id); default: the client IP. When the
    /// header is absent the client IP is used.
    #[serde(default)]
    pub key_header: Option<Name>,
}

/// Retry policy: idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) and those listed
/// in `methods` are retried. A request body is kept as it streams, up to `max_replay_bytes`,
/// and sent again on a retry; a larger body is streamed once and the request is not retried
/// (logged at debug). A retry follows an upstream error or timeout, or one of `statuses`; a
/// breaker rejection is not retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Extra attempts after the first (1 to 5).
    pub attempts: u32,
    /// Response statuses that are retried (default 502, 503, 504).
    #[serde(default = "default_retry_statuses")]
    pub statuses: Vec<u16>,
    /// More methods to retry (`POST` when the upstream deduplicates), besides the idempotent ones.
    #[serde(default)]
    pub methods: Vec<MethodName>,
    /// Largest request body kept for replay (default 64 KiB; `0`: bodiless requests only).
    #[serde(default = "default_max_replay")]
    pub max_replay_bytes: u64,
}

fn default_max_replay() -> u64 {
    64 * 1024
}

fn default_retry_statuses() -> Vec<u16> {
    vec![502, 503, 504]
}

/// A route's circuit breaker (`palisade-breaker`): 5xx responses, upstream errors and timeouts
/// count as failures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Breaker settings (window, minimum calls, trip policies, open duration, half-open).
    #[serde(default)]
    pub settings: palisade_breaker::circuit::Config,
    /// Whether `429` counts as a failure.
    #[serde(default)]
    pub count_429: bool,
    /// Answer while the breaker is open, or when the upstream call fails or times out
    /// (default `503` with an empty body).
    #[serde(default)]
    pub fallback: Option<FixedResponse>,
}

/// Route predicates; all given ones must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predicates {
    /// Path prefix on a segment boundary.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Path pattern with captures (`/users/{id}`, `/files/{*rest}`).
    #[serde(default)]
    pub path: Option<PathPattern>,
    /// Host names (`api.example.com`, `*.example.com`); any may match.
    #[serde(default)]
    pub host: Vec<HostPattern>,
    /// Methods; any may match.
    #[serde(default)]
    pub method: Vec<MethodName>,
    /// Headers that must be present (and match `regex` if given).
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
    /// Query parameters that must be present (and match).
    #[serde(default)]
    pub query: Vec<ValueMatch>,
    /// Cookies that must be present (and match).
    #[serde(default)]
    pub cookies: Vec<ValueMatch>,
    /// Weighted split: the routes of one group share traffic in proportion to their weights.
    #[serde(default)]
    pub weight: Option<Weight>,
}

/// A named value that must be present, optionally matching a regex (whole value).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMatch {
    /// Header, parameter or cookie name.
    pub name: String,
    /// Regex the value must match (anchored at both ends).
    #[serde(default)]
    pub regex: Option<Pattern>,
}

/// A weight in a weighted split.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weight {
    /// The group of routes that share the traffic.
    pub group: String,
    /// This route's share.
    pub weight: u32,
}

/// A filter, applied in the order listed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FilterConfig {
    /// Appends a request header.
    AddRequestHeader(HeaderPair),
    /// Sets (replaces) a request header.
    SetRequestHeader(HeaderPair),
    /// Removes a request header.
    RemoveRequestHeader(Name),
    /// Appends a response header.
    AddResponseHeader(HeaderPair),
    /// Sets (replaces) a response header.
    SetResponseHeader(HeaderPair),
    /// Removes a response header.
    RemoveResponseHeader(Name),
    /// Drops this many leading path segments.
    StripPrefix(usize),
    /// Prepends a path prefix.
    PrefixPath(String),
    /// Regex rewrite of the path (`$name` / `${1}` in the replacement).
    RewritePath(RewritePath),
    /// Replaces the path with a template over the `path` predicate's captures (`/v2/{id}`).
    SetPath(String),
    /// Answers with a redirect instead of proxying.
    Redirect(Redirect),
    /// Answers with a fixed response instead of proxying.
    FixedResponse(FixedResponse),
    /// Requires one of the listed API keys in a header (`401` otherwise); the header is not
    /// forwarded upstream.
    ApiKey(ApiKey),
    /// Requires a valid JWT in `Authorization: Bearer` (`401` otherwise): HS256 with a secret,
    /// or RS256/ES256 with a JWKS file.
    Jwt(JwtConfig),
}

/// JWT check: HS256 with a secret from `secret_env` (an environment variable, read when the
/// routes load) or, for tests, `secret`; or RS256/ES256 with the public keys of `jwks_file`
/// (read when the routes load). Exactly one of the three.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Environment variable holding the HMAC secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The HMAC secret inline.
    #[serde(default)]
    pub secret: Option<String>,
    /// A JWKS file (RFC 7517 `{"keys": [...]}`, RSA and EC P-256 keys) for RS256/ES256 (gwsec).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud` (string or one of an array).
    #[serde(default)]
    pub audience: Option<String>,
    /// Whether `exp` must be present (default true).
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// Clock skew allowed on `exp`/`nbf`.
    #[serde(default, with = "humantime_serde")]
    pub leeway: Option<Duration>,
}

fn yes() -> bool {
    true
}

/// API key check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Header carrying the key (default `x-api-key`).
    #[serde(default = "default_api_key_header")]
    pub header: Name,
    /// Accepted keys.
    pub keys: Vec<String>,
}

fn default_api_key_header() -> Name {
    Name(HeaderName::from_static("x-api-key"))
}

/// A header name and value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderPair {
    /// Header name.
    pub name: Name,
    /// Header value.
    pub value: Value,
}

/// Regex path rewrite.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewritePath {
    /// Regex over the path.
    pub regex: Pattern,
    /// Replacement (regex crate syntax).
    pub replacement: String,
}

/// A redirect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// `301`, `302`, `303`, `307` or `308` (default `302`).
    #[serde(default = "found")]
    pub status: Status,
    /// The `Location`.
    pub location: Value,
}

fn found() -> Status {
    Status(StatusCode::FOUND)
}

/// A fixed response.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedResponse {
    /// Status code.
    pub status: Status,
    /// Body text.
    #[serde(default)]
    pub body: String,
    /// Extra headers.
    #[serde(default)]
    pub headers: Vec<HeaderPair>,
}

macro_rules! checked_string {
    ($(#[$m:meta])* $name:ident($inner:ty), |$s:ident| $parse:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone)]
        pub struct $name(pub $inner);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let $s = String::deserialize(d)?;
                let r: Result<$inner, String> = $parse;
                r.map($name).map_err(D::Error::custom)
            }
        }
    };
}

checked_string!(
    /// A header name, checked.
    Name(HeaderName),
    |s| HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("invalid header name `{s}`"))
);
checked_string!(
    /// A header value, checked.
    Value(HeaderValue),
    |s| HeaderValue::from_str(&s).map_err(|_| format!("invalid header value `{s}`"))
);
checked_string!(
    /// A method name, checked.
    MethodName(Method),
    |s| Method::from_bytes(s.as_bytes()).map_err(|_| format!("invalid method `{s}`"))
);
checked_string!(
    /// A regex, compiled.
    Pattern(regex::Regex),
    |s| regex::Regex::new(&s).map_err(|e| format!("invalid regex `{s}`: {e}"))
);

/// A status code, checked.
#[derive(Debug, Clone, Copy)]
pub struct Status(pub StatusCode);
impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u16::deserialize(d)?;
        StatusCode::from_u16(n)
            .map(Status)
            .map_err(|_| D::Error::custom(format!("invalid status code {n}")))
    }
}

/// A host pattern: exact (`api.example.com`) or a leading wildcard (`*.example.com`),
/// compared without case and without port.
#[derive(Debug, Clone)]
pub struct HostPattern {
    /// The suffix after `*` (including the dot), or the whole name.
    pub(crate) text: String,
    pub(crate) wildcard: bool,
}

impl HostPattern {
    /// Whether a host (no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        if self.wildcard {
            host.len() > self.text.len()
                && host
                    .get(host.len() - self.text.len()..)
                    .is_some_and(|t| t.eq_ignore_ascii_case(&self.text))
        } else {
            host.eq_ignore_ascii_case(&self.text)
        }
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (wildcard, text) = match s.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') => (true, rest.to_ascii_lowercase()),
            Some(_) => return Err(D::Error::custom(format!("bad host pattern `{s}`"))),
            None => (false, s.to_ascii_lowercase()),
        };
        if text.is_empty() || text.contains(['*', '/', ':', ' ']) {
            return Err(D::Error::custom(format!("bad host pattern `{s}`")));
        }
        Ok(HostPattern { text, wildcard })
    }
}

impl<'de> Deserialize<'de> for PathPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PathPattern::parse(&s).map_err(D::Error::custom)
    }
}

/// Where a route sends requests: a fixed `http://` URL, or `lb://name` (a service resolved by
/// an [`UpstreamResolver`](crate::upstream::UpstreamResolver) given to the gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamUrl {
    /// `http://authority[/base]` or `https://authority[/base]`.
    Fixed {
        /// `host:port`.
        authority: http::uri::Authority,
        /// Path prepended to every request path, without a trailing `/` (may be empty).
        base_path: String,
        /// `https://` (gwsec).
        tls: bool,
    },
    /// `lb://name`.
    Service(String),
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamUrl::Fixed {
                authority,
                base_path,
                tls,
            } => {
                let scheme = if *tls { "https" } else { "http" };
                write!(f, "{scheme}://{authority}{base_path}")
            }
            UpstreamUrl::Service(n) => write!(f, "lb://{n}"),
        }
    }
}

impl UpstreamUrl {
    /// Parses `http://host:port[/base]`, `https://host[:port][/base]` or `lb://name`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix("lb://") {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(format!("bad service name in `{s}`"));
            }
            return Ok(UpstreamUrl::Service(name.to_owned()));
        }
        let uri: http::Uri = s
            .parse()
            .map_err(|e| format!("invalid upstream URL `{s}`: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(format!(
                    "unsupported upstream scheme `{other}` in `{s}` (use http://, https:// or lb://)"
                ));
            }
            None => {
                return Err(format!(
                    "upstream URL `{s}` has no scheme (use http://, https:// or lb://)"
                ));
            }
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("upstream URL `{s}` has no host"))?;
        if uri.query().is_some() {
            return Err(format!("upstream URL `{s}` must not have a query"));
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(UpstreamUrl::Fixed {
            authority,
            base_path,
            tls,
        })
    }
}

impl<'de> Deserialize<'de> for UpstreamUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UpstreamUrl::parse(&s).map_err(D::Error::custom)
    }
}

/// A routes file that was refused: where, and why.
#[derive(Debug, Clone)]
pub struct RoutesError {
    file: PathBuf,
    line: Option<usize>,
    column: Option<usize>,
    key: String,
    message: String,
}

impl RoutesError {
    pub(crate) fn new(file: &Path, line: Option<usize>, key: String, message: String) -> Self {
        RoutesError {
            file: file.to_owned(),
            line,
            column: None,
            key,
            message,
        }
    }
    /// The file.
    pub fn file(&self) -> &Path {
        &self.file
    }
    /// 1-based line, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }
    /// 1-based column, when known.
    pub fn column(&self) -> Option<usize> {
        self.column
    }
    /// Key path of the bad value (`routes[2].filters[0].set_path`), empty for the document.
    pub fn key(&self) -> &str {
        &self.key
    }
    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RoutesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RoutesError {}

impl GatewayConfig {
    /// Parses and checks a routes document. `file` only labels errors.
    pub fn from_yaml(text: &str, file: impl AsRef<Path>) -> Result<Self, RoutesError> {
        let file = file.as_ref();
        let de = serde_yaml::Deserializer::from_str(text);
        let cfg: GatewayConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let loc = inner.location();
            let mut message = inner.to_string();
            // serde_yaml appends "at line L column C"; the location is reported separately.
            if let Some(i) = message.find(" at line ") {
                message.truncate(i);
            }
            let key = if key == "." { String::new() } else { key };
            // serde_yaml also prefixes its own path; keep one.
            if let Some((p, rest)) = message.split_once(": ")
                && !p.contains(' ')
                && key.starts_with(p)
            {
                message = rest.to_owned();
            }
            // serde_yaml places errors raised by a value's own checks at the start of the
            // enclosing mapping; move them to the line of the key itself.
            let (line, column) = match &loc {
                Some(l) => refine(text, l.line(), l.column(), &key),
                None => (None, None),
            };
            RoutesError {
                file: file.to_owned(),
                line,
                column,
                key,
                message,
            }
        })?;
        cfg.check(text, file)?;
        Ok(cfg)
    }

    /// Reads and parses a routes file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, RoutesError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            RoutesError::new(path, None, String::new(), format!("cannot read: {e}"))
        })?;
        Self::from_yaml(&text, path)
    }

    /// Checks that need the whole document: unique ids, set_path captures.
    fn check(&self, text: &str, file: &Path) -> Result<(), RoutesError> {
        // gw2: routes come from one place.
        if let Some(d) = &self.dynconfig {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("dynconfig:"))
                .map(|i| i + 1);
            let bad = if d.files.is_empty() {
                Some(("dynconfig.files", "at least one file is needed"))
            } else if d.key.trim().is_empty() {
                Some(("dynconfig.key", "empty key"))
            } else if !self.routes.is_empty() {
                Some((
                    "dynconfig",
                    "the routes come from dynconfig: remove this file's `routes`",
                ))
            } else {
                None
            };
            if let Some((k, m)) = bad {
                return Err(RoutesError::new(file, line, k.into(), m.into()));
            }
        }
        // wip/gwlb: the registry section.
        if let Some(reg) = &self.registry
            && let Err((k, m)) = reg.validate()
        {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("registry:"))
                .map(|i| i + 1);
            return Err(RoutesError::new(file, line, format!("registry.{k}"), m));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let line = line_of_route(text, &r.id);
            if r.id.is_empty() {
                return Err(RoutesError::new(
                    file,
                    line,
                    format!("routes[{i}].id"),
                    "empty id".into(),
                ));
            }
            if self.routes[..i].iter().any(|o| o.id == r.id) {
                return Err(RoutesError::new(
                    file,
                    line,
                    format!("routes[{i}].id"),
                    format!("duplicate route id `{}`", r.id),
                ));
            }
            for (j, f) in r.filters.iter().enumerate() {
                if let FilterConfig::SetPath(t) = f {
                    crate::filter::PathTemplate::parse(t, r.predicates.path.as_ref()).map_err(
                        |m| {
                            RoutesError::new(
                                file,
                                line,
                                format!("routes[{i}].filters[{j}].set_path"),
                                m,
                            )
                        },
                    )?;
                }
                if let FilterConfig::Redirect(rd) = f
                    && !rd.status.0.is_redirection()
                {
                    return Err(RoutesError::new(
                        file,
                        line,
                        format!("routes[{i}].filters[{j}].redirect.status"),
                        format!("{} is not a redirect status", rd.status.0.as_u16()),
                    ));
                }
            }
            if let Some(rl) = &r.rate_limit
                && !(rl.replenish_rate > 0.0 && rl.replenish_rate.is_finite() && rl.burst > 0)
            {
                return Err(RoutesError::new(
                    file,
                    line,
                    format!("routes[{i}].rate_limit"),
                    "replenish_rate and burst must be positive".into(),
                ));
            }
            if let Some(rt) = &r.retry
                && !(1..=5).contains(&rt.attempts)
            {
                return Err(RoutesError::new(
                    file,
                    line,
                    format!("routes[{i}].retry.attempts"),
                    format!("attempts must be 1 to 5, not {}", rt.attempts),
                ));
            }
            // wip/gwlb: lb:// endpoints are called over HTTP/1.1.
            if matches!(r.upstream, UpstreamUrl::Service(_)) && r.protocol == Protocol::H2c {
                return Err(RoutesError::new(
                    file,
                    line,
                    format!("routes[{i}].protocol"),
                    "the protocol of lb:// instances comes from their registry metadata (`protocol: h2c`), not from the route".into(),
                ));
            }
            // wip/gwlb: admission limits.
            if let Some(b) = &r.bulkhead
                && let Err(e) = b.validate()
            {
                return Err(RoutesError::new(
                    file,
                    line,
                    format!("routes[{i}].bulkhead.{}", e.field()),
                    e.to_string(),
                ));
            }
            if let Some(l) = &r.local_rate_limit
                && let Err((k, m)) = l.validate()
            {
                return Err(RoutesError::new(
                    file,
                    line,
                    format!("routes[{i}].local_rate_limit.{k}"),
                    m,
                ));
            }
            if let Some(w) = &r.predicates.weight
                && w.weight == 0
            {
                return Err(RoutesError::new(
                    file,
                    line,
                    format!("routes[{i}].predicates.weight.weight"),
                    "weight must be at least 1".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Finds the line of the last key of `path` inside the mapping that starts at `line`/`column`.
fn refine(text: &str, line: usize, column: usize, path: &str) -> (Option<usize>, Option<usize>) {
    let last = path.rsplit('.').next().unwrap_or("");
    let last = last.split('[').next().unwrap_or("");
    if last.is_empty() {
        return (Some(line), Some(column));
    }
    let needle = format!("{last}:");
    for (i, l) in text.lines().enumerate().skip(line.saturating_sub(1)) {
        let indent = l.len() - l.trim_start().len();
        if i + 1 > line && !l.trim().is_empty() && indent + 1 < column {
            break; // left the mapping
        }
        let mut from = 0;
        while let Some(pos) = l[from..].find(&needle) {
            let at = from + pos;
            let before = l[..at].chars().next_back();
            if before.is_none_or(|c| c == ' ' || c == '{' || c == ',' || c == '-') {
                return (Some(i + 1), Some(at + 1));
            }
            from = at + needle.len();
        }
    }
    (Some(line), Some(column))
}

/// The line of `id: <id>` for a route (for errors found after parsing).
fn line_of_route(text: &str, id: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            t.strip_prefix("id:")
                .map(|v| v.trim().trim_matches(['"', '\'']) == id)
                .unwrap_or(false)
        })
        .map(|i| i + 1)
}
