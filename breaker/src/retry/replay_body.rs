//! Replaying HTTP request bodies: the body is buffered as the first attempt streams it, up to a
//! limit, so a retry can send it again (linkerd's `ReplayBody`; tower's `Retry` needs `Clone`
//! requests, so it cannot retry streaming bodies at all, tower PR #790).

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::replay::Replay;

/// Why a request body cannot be replayed.
pub const BODY_TOO_LARGE: &str = "request body larger than the replay limit";

/// Replays `http::Request<B>` bodies of up to `max_bytes` (64 KiB by default, as linkerd). A
/// larger body (known from its size hint up front, or found while streaming) is sent once and
/// not retried, with [`GiveUp::NotReplayable`](super::GiveUp)`(`[`BODY_TOO_LARGE`]`)`. A
/// request the policy will not retry is not buffered at all.
///
/// Attempts are sequential: a retry starts after the previous attempt was dropped.
#[derive(Debug, Clone, Copy)]
pub struct HttpReplay {
    max_bytes: usize,
}

impl Default for HttpReplay {
    fn default() -> Self {
        Self::new(64 * 1024)
    }
}

impl HttpReplay {
    /// Buffers bodies up to `max_bytes`.
    pub const fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

/// What a retry needs: the request head and the shared body buffer.
pub struct SavedRequest<B> {
    parts: http::request::Parts,
    body: Arc<Shared<B>>,
}

impl<B> fmt::Debug for SavedRequest<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SavedRequest")
            .field("method", &self.parts.method)
            .field("uri", &self.parts.uri)
            .finish_non_exhaustive()
    }
}

impl<B> Replay<http::Request<B>> for HttpReplay
where
    B: Body<Data = Bytes>,
{
    type Request = http::Request<ReplayBody<B>>;
    type Saved = SavedRequest<B>;

    fn prepare(
        &self,
        req: http::Request<B>,
        retryable: bool,
    ) -> (Self::Request, Option<Self::Saved>) {
        let (parts, body) = req.into_parts();
        let too_large = body.size_hint().lower() > self.max_bytes as u64;
        let max = if retryable { self.max_bytes } else { 0 };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                inner: Some(body),
                chunks: Vec::new(),
                buffered: 0,
                overflow: !retryable || too_large,
                ended: false,
                trailers: None,
            }),
            max,
        });
        let saved = retryable.then(|| SavedRequest {
            parts: parts.clone(),
            body: shared.clone(),
        });
        (
            http::Request::from_parts(parts, ReplayBody::new(shared)),
            saved,
        )
    }

    fn replay(&self, saved: &Self::Saved) -> Result<Self::Request, &'static str> {
        if saved.body.lock().overflow {
            return Err(BODY_TOO_LARGE);
        }
        Ok(http::Request::from_parts(
            saved.parts.clone(),
            ReplayBody::new(saved.body.clone()),
        ))
    }
}

/// The shared state: the inner body (read by whichever attempt is current) and what has been
/// read of it so far.
pub(crate) struct Shared<B> {
    state: Mutex<State<B>>,
    max: usize,
}

struct State<B> {
    inner: Option<B>,
    chunks: Vec<Bytes>,
    buffered: usize,
    // Past the limit (or never to be replayed): the buffer was dropped.
    overflow: bool,
    ended: bool,
    trailers: Option<HeaderMap>,
}

impl<B> Shared<B> {
    fn lock(&self) -> MutexGuard<'_, State<B>> {
        // Every update leaves the state consistent; a panicking body poll cannot corrupt it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request body that records what it streams so that a retry can send it again. Built by
/// [`HttpReplay`].
pub struct ReplayBody<B> {
    shared: Arc<Shared<B>>,
    // Index of the next buffered chunk to replay; past the buffer, the inner body is read.
    next: usize,
    trailers_sent: bool,
}

impl<B> ReplayBody<B> {
    fn new(shared: Arc<Shared<B>>) -> Self {
        Self {
            shared,
            next: 0,
            trailers_sent: false,
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBody")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let shared = this.shared.clone();
        let mut st = shared.lock();
        // First what earlier attempts read.
        if this.next < st.chunks.len() {
            let chunk = st.chunks[this.next].clone();
            this.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if st.ended {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(t) = st.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
            }
            return Poll::Ready(None);
        }
        let Some(inner) = st.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                st.ended = true;
                this.trailers_sent = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref() {
            if !st.overflow {
                if st.buffered + data.len() > shared.max {
                    st.overflow = true;
                    st.chunks = Vec::new();
                } else {
                    st.buffered += data.len();
                    st.chunks.push(data.clone());
                    this.next = st.chunks.len();
                }
            }
        } else if let Some(t) = frame.trailers_ref() {
            st.ended = true;
            this.trailers_sent = true;
            if !st.overflow {
                st.trailers = Some(t.clone());
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        let st = self.shared.lock();
        self.next >= st.chunks.len() && st.ended && (self.trailers_sent || st.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        let st = self.shared.lock();
        let replayed: u64 = st.chunks[self.next.min(st.chunks.len())..]
            .iter()
            .map(|c| c.len() as u64)
            .sum();
        match &st.inner {
            Some(b) if !st.ended => {
                let h = b.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + replayed);
                if let Some(u) = h.upper() {
                    out.set_upper(u + replayed);
                }
                out
            }
            _ => SizeHint::with_exact(replayed),
        }
    }
}
