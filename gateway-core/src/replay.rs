//! Request bodies kept for retries: a retried route's idempotent request (or one of the
//! methods listed in `retry.methods`) records its body as the first attempt streams it, up to
//! `retry.max_replay_bytes`, with `palisade-breaker`'s `ReplayBody`, and a retry sends the same
//! bytes again. A body known (from `Content-Length`) or found (while streaming) to be larger is
//! streamed once and the request is not retried; the reason is logged at `debug`. Requests the
//! route would not retry are not buffered at all.

use http::{Method, Request};
use palisade_breaker::retry::{HttpReplay, Replay, SavedRequest};

use crate::body::RequestBody;
use crate::config::RetryConfig;

/// A route's replay settings.
#[derive(Debug, Clone)]
pub(crate) struct ReplayPolicy {
    methods: Vec<Method>,
    replay: HttpReplay,
    max_bytes: u64,
}

/// What a retry of a request with a body needs.
pub(crate) type Saved = SavedRequest<RequestBody>;

impl ReplayPolicy {
    pub(crate) fn new(r: &RetryConfig) -> Self {
        ReplayPolicy {
            methods: r.methods.iter().map(|m| m.0.clone()).collect(),
            replay: HttpReplay::new(usize::try_from(r.max_replay_bytes).unwrap_or(usize::MAX)),
            max_bytes: r.max_replay_bytes,
        }
    }

    /// Whether a request with this method may be sent again.
    pub(crate) fn retryable(&self, m: &Method) -> bool {
        is_idempotent(m) || self.methods.contains(m)
    }

    /// Whether bodies are kept at all.
    pub(crate) fn keeps_bodies(&self) -> bool {
        self.max_bytes > 0
    }

    /// The first attempt, recording its body, and what a retry needs.
    pub(crate) fn prepare(
        &self,
        req: Request<RequestBody>,
    ) -> (Request<RequestBody>, Option<Saved>) {
        let (req, saved) = self.replay.prepare(req, true);
        (req.map(RequestBody::replaying), saved)
    }

    /// Another attempt, or why there cannot be one.
    pub(crate) fn again(&self, saved: &Saved) -> Result<Request<RequestBody>, &'static str> {
        self.replay
            .replay(saved)
            .map(|r| r.map(RequestBody::replaying))
    }
}

pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}
