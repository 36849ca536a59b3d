//! CORS, with Spring Cloud Gateway's semantics (`globalcors` as the top-level `cors`, a route's
//! own `cors` replacing it).
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered by the
//! gateway and never reaches the upstream: `200` with the `Access-Control-Allow-*` headers when
//! origin, method and headers are allowed, `403` without any CORS header otherwise. An actual
//! request from an allowed origin gets `Access-Control-Allow-Origin` (and credentials, exposed
//! headers) on its response; from any other origin it is proxied but gets no CORS header (the
//! browser then refuses the response). Answers of CORS routes always carry `Vary: Origin`.
//!
//! ```
//! use palisade_gateway::cors::{Cors, CorsConfig};
//! let cfg: CorsConfig = serde_yaml::from_str(r#"
//! allowed_origins: [https://app.example.com]
//! allowed_origin_patterns: ["https://*.example.org"]
//! allowed_methods: [GET, POST]
//! allowed_headers: [content-type, authorization]
//! exposed_headers: [x-request-id]
//! allow_credentials: true
//! max_age: 10m
//! "#).unwrap();
//! let cors = Cors::compile(&cfg).unwrap();
//! assert!(cors.origin_allowed(b"https://app.example.com"));
//! assert!(cors.origin_allowed(b"https://a.b.example.org"));
//! assert!(!cors.origin_allowed(b"https://example.org.evil.com"));
//! ```

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde::Deserialize;

use crate::body::GatewayBody;

/// `cors:` (top level or per route). Lists take `*` for "any".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`), or `*`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Origin patterns: `*` in the host matches any labels (`https://*.example.com`), a port list
    /// in brackets matches those ports (`http://localhost:[8080,8081]`, `:[*]` any port).
    #[serde(default)]
    pub allowed_origin_patterns: Vec<String>,
    /// Methods (default `GET`, `HEAD`, `POST`), or `*`.
    #[serde(default)]
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for, or `*` (default: none besides the
    /// CORS-safelisted ones, which browsers never ask about).
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Response headers the browser may expose to the page.
    #[serde(default)]
    pub exposed_headers: Vec<String>,
    /// `Access-Control-Allow-Credentials: true` (then origins are echoed, never `*`).
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long the browser may cache a preflight (default 30 minutes).
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
}

/// A compiled CORS policy.
#[derive(Debug, Clone)]
pub struct Cors {
    any_origin: bool,
    origins: Vec<String>,
    patterns: Vec<regex::Regex>,
    any_method: bool,
    methods: Vec<Method>,
    any_header: bool,
    headers: Vec<HeaderName>,
    allow_methods: HeaderValue,
    allow_headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: HeaderValue,
}

static VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
static PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);
static STAR: HeaderValue = HeaderValue::from_static("*");
static TRUE: HeaderValue = HeaderValue::from_static("true");

fn check_origin(o: &str) -> Result<(), String> {
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
        .ok_or_else(|| format!("origin `{o}` must start with http:// or https://"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(format!(
            "origin `{o}` must be scheme://host[:port], without a path"
        ));
    }
    Ok(())
}

fn pattern(p: &str) -> Result<regex::Regex, String> {
    if p == "*" {
        return Ok(regex::Regex::new("^.*$").expect("valid regex"));
    }
    let (host, ports) = match p.rfind(":[") {
        Some(i) if p.ends_with(']') => (&p[..i], Some(&p[i + 2..p.len() - 1])),
        _ => (p, None),
    };
    check_origin(&host.replace('*', "x")).map_err(|m| format!("allowed_origin_patterns: {m}"))?;
    // ASCII case-insensitive: origins are ASCII (IDNs arrive punycoded).
    let mut re = String::from("(?i-u)^");
    for (i, part) in host.split('*').enumerate() {
        if i > 0 {
            re.push_str("[A-Za-z0-9.-]*");
        }
        re.push_str(&regex::escape(part));
    }
    match ports {
        None => {}
        Some("*") => re.push_str("(:[0-9]{1,5})?"),
        Some(list) => {
            let mut alts = Vec::new();
            for port in list.split(',') {
                let port = port.trim();
                port.parse::<u16>()
                    .map_err(|_| format!("bad port `{port}` in origin pattern `{p}`"))?;
                alts.push(port.to_owned());
            }
            re.push_str(&format!(":({})", alts.join("|")));
        }
    }
    re.push('$');
    regex::Regex::new(&re).map_err(|e| format!("bad origin pattern `{p}`: {e}"))
}

impl Cors {
    /// Checks and compiles a policy. The error says which key is wrong.
    pub fn compile(cfg: &CorsConfig) -> Result<Self, String> {
        let any_origin = cfg.allowed_origins.iter().any(|o| o == "*");
        let mut origins = Vec::new();
        for o in cfg.allowed_origins.iter().filter(|o| *o != "*") {
            check_origin(o).map_err(|m| format!("allowed_origins: {m}"))?;
            origins.push(o.trim_end_matches('/').to_ascii_lowercase());
        }
        if any_origin && cfg.allow_credentials {
            return Err("allowed_origins: `*` cannot be combined with allow_credentials: true (list the origins, or use allowed_origin_patterns)".into());
        }
        let patterns = cfg
            .allowed_origin_patterns
            .iter()
            .map(|p| pattern(p))
            .collect::<Result<Vec<_>, _>>()?;
        if !any_origin && origins.is_empty() && patterns.is_empty() {
            return Err(
                "cors needs allowed_origins or allowed_origin_patterns (no origin would be allowed)"
                    .into(),
            );
        }
        let any_method = cfg.allowed_methods.iter().any(|m| m == "*");
        let mut methods = Vec::new();
        if cfg.allowed_methods.is_empty() {
            methods = vec![Method::GET, Method::HEAD, Method::POST];
        }
        for m in cfg.allowed_methods.iter().filter(|m| *m != "*") {
            methods.push(
                Method::from_bytes(m.as_bytes())
                    .map_err(|_| format!("allowed_methods: invalid method `{m}`"))?,
            );
        }
        let any_header = cfg.allowed_headers.iter().any(|h| h == "*");
        let mut headers = Vec::new();
        for h in cfg.allowed_headers.iter().filter(|h| *h != "*") {
            headers.push(
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| format!("allowed_headers: invalid header name `{h}`"))?,
            );
        }
        for h in &cfg.exposed_headers {
            if h != "*" {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| format!("exposed_headers: invalid header name `{h}`"))?;
            }
        }
        let join = |v: Vec<&str>| HeaderValue::from_str(&v.join(", ")).ok();
        let allow_methods = join(methods.iter().map(Method::as_str).collect())
            .expect("methods are valid header text");
        let allow_headers = if any_header || headers.is_empty() {
            None
        } else {
            join(headers.iter().map(HeaderName::as_str).collect())
        };
        let expose = if cfg.exposed_headers.is_empty() {
            None
        } else {
            join(cfg.exposed_headers.iter().map(String::as_str).collect())
        };
        let max_age = cfg.max_age.unwrap_or(Duration::from_secs(1800)).as_secs();
        Ok(Cors {
            any_origin,
            origins,
            patterns,
            any_method,
            methods,
            any_header,
            headers,
            allow_methods,
            allow_headers,
            expose,
            credentials: cfg.allow_credentials,
            max_age: HeaderValue::from(max_age),
        })
    }

    /// Whether a request's `Origin` value is allowed.
    pub fn origin_allowed(&self, origin: &[u8]) -> bool {
        if self.any_origin {
            return true;
        }
        let Ok(o) = std::str::from_utf8(origin) else {
            return false;
        };
        let o = o.strip_suffix('/').unwrap_or(o);
        self.origins.iter().any(|a| a.eq_ignore_ascii_case(o))
            || self.patterns.iter().any(|p| p.is_match(o))
    }

    /// The `Access-Control-Allow-Origin` value for this request's origin, if it is allowed.
    pub(crate) fn allow_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        if !self.origin_allowed(origin.as_bytes()) {
            return None;
        }
        if self.any_origin && !self.credentials {
            Some(STAR.clone())
        } else {
            Some(origin.clone())
        }
    }

    /// Whether `req` is a CORS preflight.
    pub fn is_preflight<B>(req: &Request<B>) -> bool {
        Self::is_preflight_head(req.method(), req.headers())
    }

    pub(crate) fn is_preflight_head(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// Answers a preflight: `200` with the allow headers, or `403` with none.
    pub(crate) fn preflight(&self, headers: &HeaderMap) -> Response<GatewayBody> {
        let mut r = Response::new(GatewayBody::full(Bytes::new()));
        r.headers_mut().insert(header::VARY, PREFLIGHT_VARY.clone());
        let verdict = self.check_preflight(headers);
        let Ok(origin) = verdict else {
            tracing::debug!(
                reason = verdict.err().unwrap_or_default(),
                "CORS preflight refused"
            );
            *r.status_mut() = StatusCode::FORBIDDEN;
            *r.body_mut() = GatewayBody::full(Bytes::from_static(b"CORS request refused\n"));
            return r;
        };
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            if self.any_method {
                headers[header::ACCESS_CONTROL_REQUEST_METHOD].clone()
            } else {
                self.allow_methods.clone()
            },
        );
        let asked = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        match (&self.allow_headers, asked) {
            (_, None) => {}
            (Some(v), Some(_)) => {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
            }
            // `*`: echo what was asked (a literal `*` is not honoured with credentials).
            (None, Some(a)) => {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, a.clone());
            }
        }
        if self.credentials {
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        r
    }

    fn check_preflight(&self, headers: &HeaderMap) -> Result<HeaderValue, &'static str> {
        let origin = self.allow_origin(headers).ok_or("origin not allowed")?;
        let method = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .ok_or("bad Access-Control-Request-Method")?;
        if !self.any_method && !self.methods.contains(&method) {
            return Err("method not allowed");
        }
        if !self.any_header {
            for v in headers.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
                let v = v
                    .to_str()
                    .map_err(|_| "bad Access-Control-Request-Headers")?;
                for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if !self
                        .headers
                        .iter()
                        .any(|a| a.as_str().eq_ignore_ascii_case(name))
                    {
                        return Err("header not allowed");
                    }
                }
            }
        }
        Ok(origin)
    }

    /// Sets the CORS headers of an actual (non-preflight) response. `allowed` is what
    /// [`Cors::allow_origin`] said for the request. Upstream CORS headers are replaced.
    pub(crate) fn apply(&self, allowed: Option<&HeaderValue>, h: &mut HeaderMap) {
        h.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
        h.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        h.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
        h.append(header::VARY, VARY_ORIGIN.clone());
        let Some(origin) = allowed else { return };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        }
        if let Some(e) = &self.expose {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(y: &str) -> Result<Cors, String> {
        Cors::compile(&serde_yaml::from_str(y).unwrap())
    }

    #[test]
    fn patterns_and_ports() {
        let c = cfg("allowed_origin_patterns: ['https://*.ex.com', 'http://localhost:[8080,8081]', 'http://127.0.0.1:[*]']").unwrap();
        assert!(c.origin_allowed(b"https://a.ex.com"));
        assert!(c.origin_allowed(b"HTTPS://A.EX.COM"));
        assert!(!c.origin_allowed(b"https://ex.com.evil.net"));
        assert!(!c.origin_allowed(b"http://a.ex.com"));
        assert!(!c.origin_allowed(b"https://a.ex.com:444"));
        assert!(c.origin_allowed(b"http://localhost:8081"));
        assert!(!c.origin_allowed(b"http://localhost:9000"));
        assert!(!c.origin_allowed(b"http://localhost"));
        assert!(c.origin_allowed(b"http://127.0.0.1"));
        assert!(c.origin_allowed(b"http://127.0.0.1:3000"));
        assert!(!c.origin_allowed(b"null"));
    }

    #[test]
    fn bad_policies_are_refused() {
        let e = cfg("allowed_origins: ['*']\nallow_credentials: true").unwrap_err();
        assert!(e.contains("allow_credentials"), "{e}");
        let e = cfg("allowed_origins: ['https://a.com/path']").unwrap_err();
        assert!(e.contains("without a path"), "{e}");
        let e = cfg("allowed_origins: ['a.com']").unwrap_err();
        assert!(e.contains("http:// or https://"), "{e}");
        let e = cfg("allowed_origin_patterns: ['http://x:[80,nope]']").unwrap_err();
        assert!(e.contains("bad port `nope`"), "{e}");
        let e = cfg("allowed_methods: ['G T']\nallowed_origins: ['*']").unwrap_err();
        assert!(e.contains("allowed_methods"), "{e}");
        let e = cfg("allowed_methods: [GET]").unwrap_err();
        assert!(e.contains("no origin"), "{e}");
    }
}
