//! Built-in filters, compiled from the routes file.
//!
//! Like Pingora's phases, a filter acts on the request head before the upstream is called (and
//! may answer instead, as `redirect` and `fixed_response` do) or on the response head after.
//! They touch heads only, so bodies keep streaming. Custom behaviour that needs the body or
//! async work is a plain tower layer around [`Gateway`](crate::Gateway) (it is a
//! `tower::Service`).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use http::{Response, StatusCode};

use crate::body::GatewayBody;
use crate::config::FilterConfig;
use crate::path::{Captures, PathPattern};

/// A `set_path` template: literal text and `{capture}` references.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone)]
enum TemplatePart {
    Text(String),
    Capture(usize),
}

impl PathTemplate {
    /// Parses a template against the route's path pattern (every `{name}` must be a capture).
    pub fn parse(t: &str, pattern: Option<&PathPattern>) -> Result<Self, String> {
        if !t.starts_with('/') {
            return Err(format!("set_path `{t}` must start with `/`"));
        }
        let mut parts = Vec::new();
        let mut rest = t;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in set_path `{t}`"))?
                + open;
            let name = &rest[open + 1..close];
            let idx = pattern
                .and_then(|p| p.capture_names().position(|n| n == name))
                .ok_or_else(|| {
                    format!("set_path `{t}` uses `{{{name}}}`, which the route's `path` predicate does not capture")
                })?;
            parts.push(TemplatePart::Capture(idx));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_owned()));
        }
        Ok(PathTemplate { parts })
    }

    fn render(&self, matched_path: &str, caps: &Captures) -> String {
        let mut s = String::with_capacity(matched_path.len() + 16);
        for p in &self.parts {
            match p {
                TemplatePart::Text(t) => s.push_str(t),
                TemplatePart::Capture(i) => s.push_str(caps.get(matched_path, *i).unwrap_or("")),
            }
        }
        s
    }
}

/// A compiled request-phase filter.
#[derive(Debug, Clone)]
pub(crate) enum RequestFilter {
    AddHeader(HeaderName, HeaderValue),
    SetHeader(HeaderName, HeaderValue),
    RemoveHeader(HeaderName),
    StripPrefix(usize),
    PrefixPath(String),
    RewritePath(regex::Regex, String),
    SetPath(PathTemplate),
    Respond(FixedAnswer),
    ApiKey(HeaderName, Vec<Bytes>),
    Jwt(Box<crate::jwt::JwtValidator>),
}

/// Compares in time that depends on the lengths only.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A response given by the gateway itself.
#[derive(Debug, Clone)]
pub(crate) struct FixedAnswer {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl FixedAnswer {
    pub(crate) fn from_config(f: &crate::config::FixedResponse) -> Self {
        FixedAnswer {
            status: f.status.0,
            body: Bytes::from(f.body.clone()),
            headers: f
                .headers
                .iter()
                .map(|h| (h.name.0.clone(), h.value.0.clone()))
                .collect(),
        }
    }
    pub(crate) fn unavailable() -> Self {
        FixedAnswer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: Bytes::new(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn response(&self) -> Response<GatewayBody> {
        let mut r = Response::new(GatewayBody::full(self.body.clone()));
        *r.status_mut() = self.status;
        for (n, v) in &self.headers {
            r.headers_mut().append(n.clone(), v.clone());
        }
        r
    }
}

/// A compiled response-phase filter.
#[derive(Debug, Clone)]
#[allow(clippy::enum_variant_names)] // the phase is the type; the variant names the action
pub(crate) enum ResponseFilter {
    AddHeader(HeaderName, HeaderValue),
    SetHeader(HeaderName, HeaderValue),
    RemoveHeader(HeaderName),
}

impl ResponseFilter {
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        match self {
            ResponseFilter::AddHeader(n, v) => {
                headers.append(n.clone(), v.clone());
            }
            ResponseFilter::SetHeader(n, v) => {
                headers.insert(n.clone(), v.clone());
            }
            ResponseFilter::RemoveHeader(n) => {
                headers.remove(n);
            }
        }
    }
}

/// Splits the configured filters by phase. `pattern` is the route's path pattern.
pub(crate) fn compile(
    filters: &[FilterConfig],
    pattern: Option<&PathPattern>,
) -> Result<(Vec<RequestFilter>, Vec<ResponseFilter>), String> {
    let mut req = Vec::new();
    let mut resp = Vec::new();
    for f in filters {
        match f {
            FilterConfig::AddRequestHeader(p) => req.push(RequestFilter::AddHeader(
                p.name.0.clone(),
                p.value.0.clone(),
            )),
            FilterConfig::SetRequestHeader(p) => req.push(RequestFilter::SetHeader(
                p.name.0.clone(),
                p.value.0.clone(),
            )),
            FilterConfig::RemoveRequestHeader(n) => {
                req.push(RequestFilter::RemoveHeader(n.0.clone()))
            }
            FilterConfig::AddResponseHeader(p) => resp.push(ResponseFilter::AddHeader(
                p.name.0.clone(),
                p.value.0.clone(),
            )),
            FilterConfig::SetResponseHeader(p) => resp.push(ResponseFilter::SetHeader(
                p.name.0.clone(),
                p.value.0.clone(),
            )),
            FilterConfig::RemoveResponseHeader(n) => {
                resp.push(ResponseFilter::RemoveHeader(n.0.clone()))
            }
            FilterConfig::StripPrefix(n) => req.push(RequestFilter::StripPrefix(*n)),
            FilterConfig::PrefixPath(p) => {
                if !p.starts_with('/') {
                    return Err(format!("prefix_path `{p}` must start with `/`"));
                }
                req.push(RequestFilter::PrefixPath(
                    p.trim_end_matches('/').to_owned(),
                ))
            }
            FilterConfig::RewritePath(r) => req.push(RequestFilter::RewritePath(
                r.regex.0.clone(),
                r.replacement.clone(),
            )),
            FilterConfig::SetPath(t) => {
                req.push(RequestFilter::SetPath(PathTemplate::parse(t, pattern)?))
            }
            FilterConfig::Redirect(r) => req.push(RequestFilter::Respond(FixedAnswer {
                status: r.status.0,
                body: Bytes::new(),
                headers: vec![(LOCATION, r.location.0.clone())],
            })),
            FilterConfig::ApiKey(k) => {
                if k.keys.is_empty() || k.keys.iter().any(|k| k.is_empty()) {
                    return Err("api_key needs at least one non-empty key".to_owned());
                }
                req.push(RequestFilter::ApiKey(
                    k.header.0.clone(),
                    k.keys.iter().map(|k| Bytes::from(k.clone())).collect(),
                ))
            }
            // gwsec: RS256/ES256 from a JWKS file.
            FilterConfig::Jwt(j) if j.jwks_file.is_some() => {
                let path = j.jwks_file.as_ref().expect("checked by the guard");
                if j.secret.is_some() || j.secret_env.is_some() {
                    return Err(
                        "jwt needs exactly one of `secret`, `secret_env` and `jwks_file`".into(),
                    );
                }
                let jwks =
                    crate::jwt::Jwks::from_file(path).map_err(|m| format!("jwt.jwks_file: {m}"))?;
                req.push(RequestFilter::Jwt(Box::new(
                    crate::jwt::JwtValidator::with_jwks(
                        jwks,
                        j.issuer.clone(),
                        j.audience.clone(),
                        j.require_exp,
                        j.leeway.map_or(0, |d| d.as_secs()),
                    ),
                )))
            }
            FilterConfig::Jwt(j) => {
                let secret = match (&j.secret, &j.secret_env) {
                    (Some(s), None) => s.clone(),
                    (None, Some(var)) => std::env::var(var).map_err(|_| {
                        format!("jwt.secret_env: environment variable `{var}` is not set")
                    })?,
                    _ => {
                        return Err(
                            "jwt needs exactly one of `secret`, `secret_env` and `jwks_file`"
                                .to_owned(),
                        );
                    }
                };
                if secret.len() < 16 {
                    return Err("jwt secret must be at least 16 bytes".to_owned());
                }
                req.push(RequestFilter::Jwt(Box::new(crate::jwt::JwtValidator::new(
                    secret.as_bytes(),
                    j.issuer.clone(),
                    j.audience.clone(),
                    j.require_exp,
                    j.leeway.map_or(0, |d| d.as_secs()),
                ))))
            }
            FilterConfig::FixedResponse(f) => {
                req.push(RequestFilter::Respond(FixedAnswer::from_config(f)))
            }
        }
    }
    Ok((req, resp))
}

/// Runs the request-phase filters on a head. Returns a response when a filter answers.
pub(crate) fn apply_request<'p>(
    filters: &[RequestFilter],
    headers: &mut HeaderMap,
    path: &mut Cow<'p, str>,
    matched: &str,
    caps: &Captures,
) -> Option<Response<GatewayBody>> {
    for f in filters {
        match f {
            RequestFilter::AddHeader(n, v) => {
                headers.append(n.clone(), v.clone());
            }
            RequestFilter::SetHeader(n, v) => {
                headers.insert(n.clone(), v.clone());
            }
            RequestFilter::RemoveHeader(n) => {
                headers.remove(n);
            }
            RequestFilter::StripPrefix(k) => {
                let p: &str = path;
                let mut idx = 0;
                let mut stripped = 0;
                while stripped < *k {
                    match p[idx + 1..].find('/') {
                        Some(e) => idx = idx + 1 + e,
                        None => {
                            idx = p.len();
                            break;
                        }
                    }
                    stripped += 1;
                }
                let rest = &p[idx..];
                *path = Cow::Owned(if rest.is_empty() {
                    "/".to_owned()
                } else {
                    rest.to_owned()
                });
            }
            RequestFilter::PrefixPath(pre) => {
                let mut s = String::with_capacity(pre.len() + path.len());
                s.push_str(pre);
                s.push_str(path);
                *path = Cow::Owned(s);
            }
            RequestFilter::RewritePath(re, rep) => {
                if let Cow::Owned(s) = re.replace(path, rep.as_str()) {
                    *path = Cow::Owned(if s.starts_with('/') {
                        s
                    } else {
                        format!("/{s}")
                    });
                }
            }
            RequestFilter::SetPath(t) => *path = Cow::Owned(t.render(matched, caps)),
            RequestFilter::Respond(a) => return Some(a.response()),
            RequestFilter::Jwt(v) => {
                let token = headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.strip_prefix("Bearer "));
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let verdict = token.map_or(Err(crate::jwt::JwtError::Missing), |t| {
                    v.validate(t.trim(), now)
                });
                if let Err(e) = verdict {
                    tracing::debug!(error = ?e, "jwt refused");
                    let mut r = Response::new(GatewayBody::full(Bytes::from_static(
                        b"missing or invalid token\n",
                    )));
                    *r.status_mut() = StatusCode::UNAUTHORIZED;
                    r.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer error=\"invalid_token\""),
                    );
                    return Some(r);
                }
            }
            RequestFilter::ApiKey(name, keys) => {
                let given = headers.get(name).map(|v| v.as_bytes());
                // Check every key so timing does not reveal which one is close.
                let ok =
                    given.is_some_and(|g| keys.iter().fold(false, |m, k| same_bytes(g, k) | m));
                if !ok {
                    let mut r = Response::new(GatewayBody::full(Bytes::from_static(
                        b"missing or invalid API key\n",
                    )));
                    *r.status_mut() = StatusCode::UNAUTHORIZED;
                    r.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("ApiKey"),
                    );
                    return Some(r);
                }
                headers.remove(name);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(filters: &[RequestFilter], p: &str) -> String {
        let mut headers = HeaderMap::new();
        let mut path = Cow::Borrowed(p);
        apply_request(filters, &mut headers, &mut path, p, &Captures::default());
        path.into_owned()
    }

    #[test]
    fn strip_prefix() {
        assert_eq!(
            run(&[RequestFilter::StripPrefix(1)], "/api/users/1"),
            "/users/1"
        );
        assert_eq!(run(&[RequestFilter::StripPrefix(2)], "/api/users/1"), "/1");
        assert_eq!(run(&[RequestFilter::StripPrefix(3)], "/api/users/1"), "/");
        assert_eq!(run(&[RequestFilter::StripPrefix(1)], "/api"), "/");
        assert_eq!(run(&[RequestFilter::StripPrefix(5)], "/a/b"), "/");
    }

    #[test]
    fn template() {
        let p = PathPattern::parse("/u/{id}/{*rest}").unwrap();
        let t = PathTemplate::parse("/v2/{id}/x/{rest}", Some(&p)).unwrap();
        let caps = p.matches("/u/7/a/b").unwrap();
        assert_eq!(t.render("/u/7/a/b", &caps), "/v2/7/x/a/b");
        assert!(PathTemplate::parse("/v2/{nope}", Some(&p)).is_err());
        assert!(PathTemplate::parse("/v2/{id}", None).is_err());
    }
}
