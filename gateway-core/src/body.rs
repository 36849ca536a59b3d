//! Body types: both stream; nothing is buffered.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::pool::{self, Sender, UpstreamKey};

/// The error type at service boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// A response body: the upstream's, streamed through, or one the gateway wrote.
    pub struct GatewayBody {
        #[pin]
        inner: Inner,
        // gw2: the route's bulkhead slot, held until the body ends or is dropped, so that a
        // streamed response counts as in flight until the exchange completes.
        slot: Option<crate::limits::Slot>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner {
        Upstream { #[pin] body: UpstreamBody },
        Full { data: Option<Bytes> },
    }
}

impl GatewayBody {
    /// A body of fixed bytes.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        GatewayBody {
            inner: Inner::Full {
                data: (!data.is_empty()).then_some(data),
            },
            slot: None,
        }
    }
    /// An empty body.
    pub fn empty() -> Self {
        GatewayBody {
            inner: Inner::Full { data: None },
            slot: None,
        }
    }
    /// The upstream's body, streamed through.
    pub fn upstream(body: Incoming) -> Self {
        Self::from_upstream(UpstreamBody::plain(body))
    }

    pub(crate) fn from_upstream(body: UpstreamBody) -> Self {
        GatewayBody {
            inner: Inner::Upstream { body },
            slot: None,
        }
    }

    /// gw2: keeps the route's bulkhead slot until this body ends or is dropped. A body that
    /// has already ended (or a gateway-written one) lets it go at once.
    pub(crate) fn hold(&mut self, slot: Option<crate::limits::Slot>) {
        if matches!(self.inner, Inner::Upstream { .. }) && !http_body::Body::is_end_stream(self) {
            self.slot = slot;
        }
    }
}

impl fmt::Debug for GatewayBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Upstream { .. } => f.write_str("GatewayBody::Upstream"),
            Inner::Full { data } => {
                write!(f, "GatewayBody::Full({:?})", data.as_ref().map(|d| d.len()))
            }
        }
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        match this.inner.project() {
            InnerProj::Upstream { body } => {
                let r = ready!(body.poll_frame(cx));
                if !matches!(r, Some(Ok(_))) {
                    // End or error: the exchange is over, give the slot back now.
                    *this.slot = None;
                }
                Poll::Ready(r)
            }
            InnerProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream { body } => body.is_end_stream(),
            Inner::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream { body } => body.size_hint(),
            Inner::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// An upstream's response body, streamed. If it came over a connection of the per-thread
/// HTTP/1.1 pool, it holds that connection's sender and puts it back in the pool when it is
/// dropped after its end (a body dropped early closes the connection: hyper cannot reuse it).
pub struct UpstreamBody {
    body: Incoming,
    pooled: Option<(UpstreamKey, Sender)>,
    ended: bool,
}

impl UpstreamBody {
    /// A body whose connection is not the gateway's to return (h2c, `lb://` services).
    pub(crate) fn plain(body: Incoming) -> Self {
        UpstreamBody {
            body,
            pooled: None,
            ended: false,
        }
    }

    pub(crate) fn pooled(body: Incoming, key: UpstreamKey, tx: Sender) -> Self {
        UpstreamBody {
            body,
            pooled: Some((key, tx)),
            ended: false,
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some((key, tx)) = self.pooled.take()
            && (self.ended || self.body.is_end_stream())
        {
            pool::checkin(key, tx);
        }
    }
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("pooled", &self.pooled.is_some())
            .field("ended", &self.ended)
            .finish()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = ready!(Pin::new(&mut this.body).poll_frame(cx));
        if r.is_none() {
            this.ended = true;
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The request body grew past the configured limit.
#[derive(Debug, Clone, Copy)]
pub struct BodyTooLarge;

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body over the size limit")
    }
}

impl std::error::Error for BodyTooLarge {}

/// The client's request body on its way upstream, cut off with [`BodyTooLarge`] once it passes
/// the limit; or empty (a replayed bodiless request).
pub struct RequestBody {
    // gw2: one of three sources, as an enum so the body (moved with its request through every
    // stage of a call) stays small.
    src: Src,
    remaining: u64,
}

enum Src {
    Incoming(Incoming),
    // wip/gwlb: a body kept for retries (see `crate::replay`).
    Replay(palisade_breaker::retry::ReplayBody<RequestBody>),
    Empty,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, limit: u64) -> Self {
        RequestBody {
            src: Src::Incoming(inner),
            remaining: limit,
        }
    }
    /// A body that records what it streams so that a retry can send it again.
    pub(crate) fn replaying(body: palisade_breaker::retry::ReplayBody<RequestBody>) -> Self {
        RequestBody {
            src: Src::Replay(body),
            remaining: 0,
        }
    }
    /// An empty body.
    pub fn empty() -> Self {
        RequestBody {
            src: Src::Empty,
            remaining: 0,
        }
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let inner = match &mut this.src {
            Src::Replay(r) => return Pin::new(r).poll_frame(cx),
            Src::Empty => return Poll::Ready(None),
            Src::Incoming(inner) => inner,
        };
        match ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    let n = d.len() as u64;
                    if n > this.remaining {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.src {
            Src::Replay(r) => r.is_end_stream(),
            Src::Incoming(b) => b.is_end_stream(),
            Src::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.src {
            Src::Replay(r) => r.size_hint(),
            Src::Incoming(b) => b.size_hint(),
            Src::Empty => SizeHint::with_exact(0),
        }
    }
}

// gw2: the request body is moved with its request through every stage of a call (handler,
// breaker, pool, hyper's dispatch channel): keep it small.
#[cfg(all(test, target_pointer_width = "64"))]
mod size {
    #[test]
    fn request_body_stays_small() {
        let n = std::mem::size_of::<super::RequestBody>();
        assert!(n <= 48, "RequestBody is {n} bytes");
    }
}
