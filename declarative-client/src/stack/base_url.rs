use std::task::{Context, Poll};

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Uri};
use tower_layer::Layer;
use tower_service::Service;

/// An invalid base URL.
#[derive(Debug)]
pub struct InvalidBaseUrl(String);

impl std::fmt::Display for InvalidBaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid base URL: {}", self.0)
    }
}

impl std::error::Error for InvalidBaseUrl {}

/// A base URL: scheme, authority and an optional path prefix.
#[derive(Debug, Clone)]
pub struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    prefix: Option<String>,
}

impl BaseUrl {
    /// Parses `http://host:port[/prefix]`.
    pub fn parse(url: &str) -> Result<Self, InvalidBaseUrl> {
        let uri: Uri = url
            .parse()
            .map_err(|e| InvalidBaseUrl(format!("{url}: {e}")))?;
        let parts = uri.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(InvalidBaseUrl(format!("{url}: needs a scheme and a host")));
        };
        let prefix = parts
            .path_and_query
            .map(|p| p.path().trim_end_matches('/').to_owned())
            .filter(|p| !p.is_empty());
        Ok(Self {
            scheme,
            authority,
            prefix,
        })
    }
}

/// Sets the scheme and authority (and path prefix) of origin-form request URIs. Requests that
/// already carry an authority pass through untouched, so a balancer below can pick endpoints.
#[derive(Debug, Clone)]
pub struct SetBaseUrl<S> {
    inner: S,
    base: Option<BaseUrl>,
}

/// The layer of [`SetBaseUrl`].
#[derive(Debug, Clone)]
pub struct SetBaseUrlLayer {
    base: Option<BaseUrl>,
}

impl SetBaseUrlLayer {
    /// Sets `base` on every request; `None` passes requests through.
    pub fn new(base: Option<BaseUrl>) -> Self {
        Self { base }
    }
}

impl<S> Layer<S> for SetBaseUrlLayer {
    type Service = SetBaseUrl<S>;
    fn layer(&self, inner: S) -> SetBaseUrl<S> {
        SetBaseUrl {
            inner,
            base: self.base.clone(),
        }
    }
}

impl<S, B> Service<Request<B>> for SetBaseUrl<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        if let Some(base) = &self.base
            && req.uri().authority().is_none()
        {
            let mut parts = std::mem::take(req.uri_mut()).into_parts();
            parts.scheme = Some(base.scheme.clone());
            parts.authority = Some(base.authority.clone());
            if let Some(prefix) = &base.prefix {
                let pq = parts
                    .path_and_query
                    .as_ref()
                    .map_or("/", PathAndQuery::as_str);
                parts.path_and_query = PathAndQuery::try_from(format!("{prefix}{pq}")).ok();
            }
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
        self.inner.call(req)
    }
}
