use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::Body;

/// Changes each request before it is sent: auth headers, trace context, tenant ids.
///
/// Runs once per attempt, so a retry carries a fresh token or span id.
pub trait Interceptor: Send + Sync + 'static {
    /// Changes the request.
    fn intercept(&self, req: &mut Request<Body>);
}

impl<F> Interceptor for F
where
    F: Fn(&mut Request<Body>) + Send + Sync + 'static,
{
    fn intercept(&self, req: &mut Request<Body>) {
        self(req)
    }
}

/// Sets `authorization: Bearer <token>`, the token read from a provider on every request (so
/// it can be refreshed behind the provider).
///
/// ```
/// use palisade_client::stack::BearerAuth;
/// let auth = BearerAuth::new(|| "s3cret".to_owned());
/// # let _ = auth;
/// ```
pub struct BearerAuth<F> {
    token: F,
}

impl<F> BearerAuth<F>
where
    F: Fn() -> String + Send + Sync + 'static,
{
    /// Reads the token from `token` on each request.
    pub fn new(token: F) -> Self {
        Self { token }
    }
}

impl<F> fmt::Debug for BearerAuth<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerAuth")
    }
}

impl<F> Interceptor for BearerAuth<F>
where
    F: Fn() -> String + Send + Sync + 'static,
{
    fn intercept(&self, req: &mut Request<Body>) {
        let token = (self.token)();
        if let Ok(mut v) = HeaderValue::try_from(format!("Bearer {token}")) {
            v.set_sensitive(true);
            req.headers_mut().insert(http::header::AUTHORIZATION, v);
        }
    }
}

/// Sets a fixed header on every request.
#[derive(Debug, Clone)]
pub struct StaticHeader {
    name: HeaderName,
    value: HeaderValue,
}

impl StaticHeader {
    /// Sets `name: value`.
    pub fn new(name: HeaderName, value: HeaderValue) -> Self {
        Self { name, value }
    }
}

impl Interceptor for StaticHeader {
    fn intercept(&self, req: &mut Request<Body>) {
        req.headers_mut()
            .insert(self.name.clone(), self.value.clone());
    }
}

/// Runs [`Interceptor`]s on each request, in the order they were added.
#[derive(Clone)]
pub struct Intercept<S> {
    inner: S,
    interceptors: Arc<[Arc<dyn Interceptor>]>,
}

impl<S: fmt::Debug> fmt::Debug for Intercept<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Intercept")
            .field("inner", &self.inner)
            .field("interceptors", &self.interceptors.len())
            .finish()
    }
}

/// The layer of [`Intercept`].
#[derive(Clone)]
pub struct InterceptLayer {
    interceptors: Arc<[Arc<dyn Interceptor>]>,
}

impl fmt::Debug for InterceptLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterceptLayer")
            .field("interceptors", &self.interceptors.len())
            .finish()
    }
}

impl InterceptLayer {
    /// Runs `interceptors` in order.
    pub fn new(interceptors: Vec<Arc<dyn Interceptor>>) -> Self {
        Self {
            interceptors: interceptors.into(),
        }
    }
}

impl<S> Layer<S> for InterceptLayer {
    type Service = Intercept<S>;
    fn layer(&self, inner: S) -> Intercept<S> {
        Intercept {
            inner,
            interceptors: self.interceptors.clone(),
        }
    }
}

impl<S> Service<Request<Body>> for Intercept<S>
where
    S: Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> S::Future {
        for i in self.interceptors.iter() {
            i.intercept(&mut req);
        }
        self.inner.call(req)
    }
}
