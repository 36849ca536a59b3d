//! Request and response bodies, and the body wrappers used in client traits.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderValue;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use crate::BoxError;

/// The body of a request sent by a generated client.
///
/// A buffered body (empty, or bytes) is replayable: retries and fallbacks can send it again. A
/// streaming body is sent once and is never retried.
///
/// ```
/// use palisade_client::Body;
/// let b = Body::from("hello");
/// assert!(b.try_clone().is_some());
/// ```
pub struct Body {
    kind: Kind,
}

enum Kind {
    Full(Bytes),
    Stream(UnsyncBoxBody<Bytes, BoxError>),
}

impl Body {
    /// An empty body.
    pub const fn empty() -> Self {
        Self {
            kind: Kind::Full(Bytes::new()),
        }
    }

    /// A streaming body from any [`http_body::Body`]. It cannot be retried.
    pub fn from_body<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            kind: Kind::Stream(body.map_err(Into::into).boxed_unsync()),
        }
    }

    /// A streaming body from a stream of chunks. It cannot be retried.
    pub fn from_stream<St, D, E>(stream: St) -> Self
    where
        St: futures_core::Stream<Item = Result<D, E>> + Send + 'static,
        D: Into<Bytes>,
        E: Into<BoxError>,
    {
        Self::from_body(StreamBody { stream })
    }

    /// A copy of a buffered body, or `None` for a streaming body.
    pub fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Full(b) => Some(Self {
                kind: Kind::Full(b.clone()),
            }),
            Kind::Stream(_) => None,
        }
    }

    /// Whether the body is buffered, so that it can be sent again.
    pub fn is_replayable(&self) -> bool {
        matches!(self.kind, Kind::Full(_))
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(b) => f.debug_tuple("Body").field(&b.len()).finish(),
            Kind::Stream(_) => f.write_str("Body(stream)"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Self {
            kind: Kind::Full(b),
        }
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Bytes::from(s).into()
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Bytes::from_static(s.as_bytes()).into()
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Full(b) => {
                if b.is_empty() {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Ok(Frame::data(std::mem::take(b)))))
                }
            }
            Kind::Stream(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_empty(),
            Kind::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.len() as u64),
            Kind::Stream(s) => s.size_hint(),
        }
    }
}

pin_project_lite::pin_project! {
    struct StreamBody<St> {
        #[pin]
        stream: St,
    }
}

impl<St, D, E> http_body::Body for StreamBody<St>
where
    St: futures_core::Stream<Item = Result<D, E>>,
    D: Into<Bytes>,
    E: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().stream.poll_next(cx) {
            Poll::Ready(Some(Ok(d))) => Poll::Ready(Some(Ok(Frame::data(d.into())))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The body of a response, streamed. Returned by methods whose return type is
/// `ResponseBody` or `http::Response<ResponseBody>`.
pub struct ResponseBody {
    inner: UnsyncBoxBody<Bytes, BoxError>,
}

impl ResponseBody {
    pub(crate) fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            inner: body.map_err(Into::into).boxed_unsync(),
        }
    }

    /// The next chunk of data, or `None` at the end of the body (trailers are skipped).
    pub async fn chunk(&mut self) -> Option<Result<Bytes, BoxError>> {
        loop {
            match self.inner.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data));
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Reads the rest of the body into one buffer.
    pub async fn bytes(self) -> Result<Bytes, BoxError> {
        Ok(self.inner.collect().await?.to_bytes())
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseBody")
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A JSON body (request) or a JSON-decoded response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Json<T>(pub T);

/// An `application/x-www-form-urlencoded` request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Form<T>(pub T);

impl<T> Json<T> {
    /// The wrapped value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Form<T> {
    /// The wrapped value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// A request body plus the `content-type` it implies.
pub type EncodedBody = (Body, Option<HeaderValue>);

/// A body that can be encoded from a shared reference, and so sent again by a retry or passed
/// on to a fallback: JSON, forms, bytes and text.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a replayable body",
    label = "a streaming body cannot be retried or passed to a fallback",
    note = "buffer it (`Bytes`, `Json`, `Form`, `String`), or remove `retry`/`fallback` from this method"
)]
pub trait ReplayableBody {
    /// Encodes the body.
    fn to_body(&self) -> Result<EncodedBody, BoxError>;
}

/// Anything that can be a `#[body]` argument: every [`ReplayableBody`], and a streaming [`Body`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a request body",
    note = "use `Json<T>`, `Form<T>`, `Bytes`, `Vec<u8>`, `String`, `&str` or a streaming `Body`"
)]
pub trait IntoRequestBody {
    /// Encodes the body.
    fn into_body(self) -> Result<EncodedBody, BoxError>;
}

impl<T: ReplayableBody> IntoRequestBody for T {
    fn into_body(self) -> Result<EncodedBody, BoxError> {
        self.to_body()
    }
}

impl IntoRequestBody for Body {
    fn into_body(self) -> Result<EncodedBody, BoxError> {
        Ok((self, None))
    }
}

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const FORM: HeaderValue = HeaderValue::from_static("application/x-www-form-urlencoded");
const OCTETS: HeaderValue = HeaderValue::from_static("application/octet-stream");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

impl<T: serde::Serialize> ReplayableBody for Json<T> {
    fn to_body(&self) -> Result<EncodedBody, BoxError> {
        Ok((Body::from(serde_json::to_vec(&self.0)?), Some(JSON)))
    }
}

impl<T: serde::Serialize> ReplayableBody for Form<T> {
    fn to_body(&self) -> Result<EncodedBody, BoxError> {
        Ok((
            Body::from(serde_urlencoded::to_string(&self.0)?),
            Some(FORM),
        ))
    }
}

impl ReplayableBody for Bytes {
    fn to_body(&self) -> Result<EncodedBody, BoxError> {
        Ok((Body::from(self.clone()), Some(OCTETS)))
    }
}

impl ReplayableBody for Vec<u8> {
    fn to_body(&self) -> Result<EncodedBody, BoxError> {
        Ok((Body::from(Bytes::copy_from_slice(self)), Some(OCTETS)))
    }
}

impl ReplayableBody for [u8] {
    fn to_body(&self) -> Result<EncodedBody, BoxError> {
        Ok((Body::from(Bytes::copy_from_slice(self)), Some(OCTETS)))
    }
}

impl ReplayableBody for String {
    fn to_body(&self) -> Result<EncodedBody, BoxError> {
        Ok((
            Body::from(Bytes::copy_from_slice(self.as_bytes())),
            Some(TEXT),
        ))
    }
}

impl ReplayableBody for str {
    fn to_body(&self) -> Result<EncodedBody, BoxError> {
        Ok((
            Body::from(Bytes::copy_from_slice(self.as_bytes())),
            Some(TEXT),
        ))
    }
}

impl<T: ReplayableBody + ?Sized> ReplayableBody for &T {
    fn to_body(&self) -> Result<EncodedBody, BoxError> {
        (**self).to_body()
    }
}
