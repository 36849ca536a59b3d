//! Support code for the `#[client]` macro. Not a public API: it changes without notice.

use std::fmt::{self, Display, Write as _};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use percent_encoding::{AsciiSet, CONTROLS};
use tower::ServiceExt;
use tower_service::Service;

use crate::BoxError;
use crate::body::{Body, EncodedBody, IntoRequestBody, ReplayableBody};
use crate::error::{CallError, ClientError};
use crate::meta::MethodMeta;
use crate::response::{FromResponse, collect};

// RFC 3986 path segment: everything but unreserved and sub-delims, plus '/', '?', '#', '%'.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'^')
    .add(b'|')
    .add(b'\\')
    .add(b'[')
    .add(b']');

struct SegmentWriter<'a>(&'a mut String);

impl fmt::Write for SegmentWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in percent_encoding::utf8_percent_encode(s, SEGMENT) {
            self.0.push_str(chunk);
        }
        Ok(())
    }
}

struct FormWriter<'a>(&'a mut String);

impl fmt::Write for FormWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in form_urlencoded::byte_serialize(s.as_bytes()) {
            self.0.push_str(chunk);
        }
        Ok(())
    }
}

/// Builds the request of one generated method call.
pub struct RequestBuilder {
    meta: &'static MethodMeta,
    method: Method,
    uri: String,
    has_query: bool,
    headers: HeaderMap,
    body: Body,
}

impl RequestBuilder {
    /// Starts a request.
    pub fn new(meta: &'static MethodMeta, method: Method, capacity: usize) -> Self {
        Self {
            meta,
            method,
            uri: String::with_capacity(capacity),
            has_query: false,
            headers: HeaderMap::new(),
            body: Body::empty(),
        }
    }

    /// A literal part of the path (already valid).
    pub fn path(&mut self, lit: &str) {
        self.uri.push_str(lit);
    }

    /// A `{placeholder}`, percent-encoded as one path segment.
    pub fn path_param<T: Display + ?Sized>(&mut self, value: &T) {
        let _ = write!(SegmentWriter(&mut self.uri), "{value}");
    }

    /// A `#[query]` parameter.
    pub fn query<T: QueryParam + ?Sized>(&mut self, name: &str, value: &T) {
        value.push_query(name, &mut QueryWriter(self));
    }

    /// A `#[query(flatten)]` struct.
    pub fn query_flatten<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), ClientError> {
        let s = serde_urlencoded::to_string(value)
            .map_err(|e| ClientError::encode(self.meta.name(), e))?;
        if !s.is_empty() {
            self.uri.push(if self.has_query { '&' } else { '?' });
            self.has_query = true;
            self.uri.push_str(&s);
        }
        Ok(())
    }

    /// A static header, checked by the macro.
    pub fn static_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.headers.append(name, value);
    }

    /// A `#[header("name")]` parameter.
    pub fn header<T: HeaderParam + ?Sized>(
        &mut self,
        name: HeaderName,
        value: &T,
    ) -> Result<(), ClientError> {
        value
            .push_header(name, &mut self.headers)
            .map_err(|e| ClientError::encode(self.meta.name(), e))
    }

    /// A `#[headers]` map parameter.
    pub fn headers<T: HeaderMapParam + ?Sized>(&mut self, value: &T) {
        value.extend_headers(&mut self.headers);
    }

    /// A `#[body]` parameter, consumed.
    pub fn body<T: IntoRequestBody>(&mut self, value: T) -> Result<(), ClientError> {
        let encoded = value
            .into_body()
            .map_err(|e| ClientError::encode(self.meta.name(), e))?;
        self.set_body(encoded);
        Ok(())
    }

    /// A `#[body]` parameter encoded from a reference, for methods that retry or fall back.
    pub fn body_ref<T: ReplayableBody + ?Sized>(&mut self, value: &T) -> Result<(), ClientError> {
        let encoded = value
            .to_body()
            .map_err(|e| ClientError::encode(self.meta.name(), e))?;
        self.set_body(encoded);
        Ok(())
    }

    fn set_body(&mut self, (body, content_type): EncodedBody) {
        if let Some(ct) = content_type {
            self.headers.entry(http::header::CONTENT_TYPE).or_insert(ct);
        }
        self.body = body;
    }

    /// The request.
    pub fn build(self) -> Result<Request<Body>, ClientError> {
        let uri =
            http::Uri::try_from(self.uri).map_err(|e| ClientError::encode(self.meta.name(), e))?;
        let mut req = Request::new(self.body);
        *req.method_mut() = self.method;
        *req.uri_mut() = uri;
        *req.headers_mut() = self.headers;
        req.extensions_mut().insert(self.meta);
        Ok(req)
    }
}

/// Writes query pairs.
pub struct QueryWriter<'a>(&'a mut RequestBuilder);

impl QueryWriter<'_> {
    /// Appends `name=value`, both form-encoded.
    pub fn pair(&mut self, name: &str, value: &dyn Display) {
        let b = &mut *self.0;
        b.uri.push(if b.has_query { '&' } else { '?' });
        b.has_query = true;
        let _ = write!(FormWriter(&mut b.uri), "{name}");
        b.uri.push('=');
        let _ = write!(FormWriter(&mut b.uri), "{value}");
    }
}

/// A `#[query]` value: scalars, `Option` (absent when `None`) and sequences (repeated).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a query parameter",
    note = "use a string, number, bool or char, an `Option` or `Vec` of one, or `#[query(flatten)]` for a `Serialize` struct"
)]
pub trait QueryParam {
    /// Appends the pairs for `name`.
    fn push_query(&self, name: &str, out: &mut QueryWriter<'_>);
}

macro_rules! scalar_query {
    ($($t:ty),*) => {$(
        impl QueryParam for $t {
            fn push_query(&self, name: &str, out: &mut QueryWriter<'_>) {
                out.pair(name, &self);
            }
        }
    )*};
}

scalar_query!(
    str, String, bool, char, u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32,
    f64
);

impl<T: QueryParam + ?Sized> QueryParam for &T {
    fn push_query(&self, name: &str, out: &mut QueryWriter<'_>) {
        (**self).push_query(name, out);
    }
}

impl<T: QueryParam> QueryParam for Option<T> {
    fn push_query(&self, name: &str, out: &mut QueryWriter<'_>) {
        if let Some(v) = self {
            v.push_query(name, out);
        }
    }
}

impl<T: QueryParam> QueryParam for [T] {
    fn push_query(&self, name: &str, out: &mut QueryWriter<'_>) {
        for v in self {
            v.push_query(name, out);
        }
    }
}

impl<T: QueryParam> QueryParam for Vec<T> {
    fn push_query(&self, name: &str, out: &mut QueryWriter<'_>) {
        self.as_slice().push_query(name, out);
    }
}

/// A `#[header("name")]` value: strings, numbers, `HeaderValue`, `Option` (absent when `None`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a header value",
    note = "use a string, a number, a `HeaderValue` or an `Option` of one"
)]
pub trait HeaderParam {
    /// Appends the header.
    fn push_header(&self, name: HeaderName, headers: &mut HeaderMap) -> Result<(), BoxError>;
}

impl HeaderParam for HeaderValue {
    fn push_header(&self, name: HeaderName, headers: &mut HeaderMap) -> Result<(), BoxError> {
        headers.append(name, self.clone());
        Ok(())
    }
}

impl HeaderParam for str {
    fn push_header(&self, name: HeaderName, headers: &mut HeaderMap) -> Result<(), BoxError> {
        headers.append(name, HeaderValue::from_str(self)?);
        Ok(())
    }
}

impl HeaderParam for String {
    fn push_header(&self, name: HeaderName, headers: &mut HeaderMap) -> Result<(), BoxError> {
        self.as_str().push_header(name, headers)
    }
}

macro_rules! num_header {
    ($($t:ty),*) => {$(
        impl HeaderParam for $t {
            fn push_header(&self, name: HeaderName, headers: &mut HeaderMap) -> Result<(), BoxError> {
                headers.append(name, HeaderValue::from(*self));
                Ok(())
            }
        }
    )*};
}

num_header!(u16, u32, u64, usize, i16, i32, i64, isize);

impl<T: HeaderParam + ?Sized> HeaderParam for &T {
    fn push_header(&self, name: HeaderName, headers: &mut HeaderMap) -> Result<(), BoxError> {
        (**self).push_header(name, headers)
    }
}

impl<T: HeaderParam> HeaderParam for Option<T> {
    fn push_header(&self, name: HeaderName, headers: &mut HeaderMap) -> Result<(), BoxError> {
        match self {
            Some(v) => v.push_header(name, headers),
            None => Ok(()),
        }
    }
}

/// A `#[headers]` value: a `HeaderMap` or an `Option` of one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a `#[headers]` parameter",
    note = "use `http::HeaderMap`"
)]
pub trait HeaderMapParam {
    /// Appends every header.
    fn extend_headers(&self, headers: &mut HeaderMap);
}

impl HeaderMapParam for HeaderMap {
    fn extend_headers(&self, headers: &mut HeaderMap) {
        for (k, v) in self {
            headers.append(k.clone(), v.clone());
        }
    }
}

impl<T: HeaderMapParam + ?Sized> HeaderMapParam for &T {
    fn extend_headers(&self, headers: &mut HeaderMap) {
        (**self).extend_headers(headers);
    }
}

impl<T: HeaderMapParam> HeaderMapParam for Option<T> {
    fn extend_headers(&self, headers: &mut HeaderMap) {
        if let Some(v) = self {
            v.extend_headers(headers);
        }
    }
}

/// Sends a request through the service: a named future, so that the generated method's state
/// holds the service once (an `async fn` would keep its argument beside the `Oneshot`).
///
/// The stack runs inside the call's span (`obs`), so that what the layers log belongs to it.
pub fn send<S, B>(
    svc: S,
    req: Request<Body>,
    meta: &'static MethodMeta,
    obs: &CallObserver,
) -> SendFuture<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    SendFuture {
        inner: svc.oneshot(req),
        meta,
        span: obs.span(),
    }
}

pin_project_lite::pin_project! {
    /// The future of [`send`].
    pub struct SendFuture<S: Service<Request<Body>>> {
        #[pin]
        inner: tower::util::Oneshot<S, Request<Body>>,
        meta: &'static MethodMeta,
        span: tracing::Span,
    }
}

impl<S, B> std::future::Future for SendFuture<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<B>, ClientError>;

    #[inline]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let meta = *this.meta;
        this.inner
            .poll(cx)
            .map_err(|e| ClientError::from_service(meta.name(), e.into()))
    }
}

/// Whether a failed call goes to the fallback: the breaker rejected it, or (with
/// `fallback_on = "failure"`) the call failed before a response came back.
pub fn wants_fallback(err: &ClientError, on_failure: bool) -> bool {
    err.is_rejected() || (on_failure && (err.is_transport() || err.is_timeout()))
}

/// Turns the response into the method's return type.
pub async fn finish<T, E, B>(resp: Response<B>, meta: &'static MethodMeta) -> Result<T, E>
where
    T: FromResponse,
    E: CallError,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if !T::ANY_STATUS && !resp.status().is_success() {
        let (parts, body) = resp.into_parts();
        let body = collect(body, meta.name()).await?;
        return Err(E::from_status(ClientError::status(
            meta.name(),
            parts.status,
            parts.headers,
            body,
        )));
    }
    Ok(T::from_response(resp, meta.name()).await?)
}

pub use crate::observe::CallObserver;
pub use http;
pub use http_body;
pub use tower_service;
