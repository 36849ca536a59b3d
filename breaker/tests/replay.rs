//! HTTP body replay: a streamed body is sent again, whole, on each retry; a body over the limit
//! is sent once and not retried, with the reason.
#![cfg(feature = "http")]

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use palisade_breaker::retry::{
    BODY_TOO_LARGE, Config, GiveUp, HttpPolicy, HttpReplay, Listener, ReplayBody, RetryLayer,
};
use tower::{Layer, Service, ServiceExt};

/// A streaming body (not `Clone`), optionally hiding its length.
struct Chunks {
    chunks: VecDeque<Bytes>,
    hint: bool,
}

impl Chunks {
    fn new(parts: &[&'static str], hint: bool) -> Self {
        Self {
            chunks: parts
                .iter()
                .map(|p| Bytes::from_static(p.as_bytes()))
                .collect(),
            hint,
        }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }
    fn size_hint(&self) -> SizeHint {
        if self.hint {
            SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
        } else {
            SizeHint::new()
        }
    }
}

async fn read_all(mut body: ReplayBody<Chunks>) -> String {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame.unwrap().into_data() {
            out.extend_from_slice(&data);
        }
    }
    String::from_utf8(out).unwrap()
}

/// Reads the body (or not, when `read` is false for the first attempt), records it, and answers
/// 503 to the first `fail` attempts.
#[derive(Clone)]
struct Upstream {
    seen: Arc<Mutex<Vec<String>>>,
    fail: usize,
    read_first: bool,
}

impl Service<http::Request<ReplayBody<Chunks>>> for Upstream {
    type Response = http::Response<()>;
    type Error = std::io::Error;
    type Future = Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<()>, std::io::Error>> + Send>,
    >;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<ReplayBody<Chunks>>) -> Self::Future {
        let seen = self.seen.clone();
        let (fail, read_first) = (self.fail, self.read_first);
        Box::pin(async move {
            let n = seen.lock().unwrap().len();
            let body = if n == 0 && !read_first {
                "<unread>".to_string()
            } else {
                read_all(req.into_body()).await
            };
            seen.lock().unwrap().push(body);
            let status = if n < fail { 503 } else { 200 };
            Ok(http::Response::builder().status(status).body(()).unwrap())
        })
    }
}

#[derive(Clone, Default)]
struct GaveUp(Arc<Mutex<Vec<GiveUp>>>);
impl Listener for GaveUp {
    fn on_give_up(&self, _: &str, r: GiveUp) {
        self.0.lock().unwrap().push(r);
    }
}

fn layer(max: usize, l: GaveUp) -> RetryLayer<HttpPolicy, HttpReplay, GaveUp> {
    RetryLayer::builder("r")
        .config(
            Config::builder()
                .max_attempts(3)
                .backoff(Duration::from_millis(1), Duration::from_millis(1))
                .build()
                .unwrap(),
        )
        .policy(HttpPolicy::new())
        .replay(HttpReplay::new(max))
        .listener(l)
        .build()
        .unwrap()
}

fn upstream(fail: usize, read_first: bool) -> Upstream {
    Upstream {
        seen: Default::default(),
        fail,
        read_first,
    }
}

#[tokio::test(start_paused = true)]
async fn a_streamed_body_is_replayed_whole_on_each_retry() {
    let up = upstream(2, true);
    let mut svc = layer(1024, GaveUp::default()).layer(up.clone());
    let req = http::Request::put("/doc")
        .body(Chunks::new(&["hello ", "streaming ", "world"], false))
        .unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen, vec!["hello streaming world"; 3]);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_never_read_the_body_leaves_it_whole_for_the_retry() {
    let up = upstream(1, false);
    let mut svc = layer(1024, GaveUp::default()).layer(up.clone());
    let req = http::Request::put("/doc")
        .body(Chunks::new(&["a", "b"], false))
        .unwrap();
    assert_eq!(
        svc.ready().await.unwrap().call(req).await.unwrap().status(),
        200
    );
    assert_eq!(*up.seen.lock().unwrap(), vec!["<unread>", "ab"]);
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_sent_once_with_the_reason() {
    // Found while streaming (no size hint).
    let up = upstream(5, true);
    let gave_up = GaveUp::default();
    let mut svc = layer(8, gave_up.clone()).layer(up.clone());
    let req = http::Request::put("/doc")
        .body(Chunks::new(&["12345", "67890"], false))
        .unwrap();
    assert_eq!(
        svc.ready().await.unwrap().call(req).await.unwrap().status(),
        503
    );
    assert_eq!(*up.seen.lock().unwrap(), vec!["1234567890"]);
    assert_eq!(
        *gave_up.0.lock().unwrap(),
        vec![GiveUp::NotReplayable(BODY_TOO_LARGE)]
    );
    // Known up front from the size hint.
    let up = upstream(5, true);
    let mut svc = layer(8, gave_up.clone()).layer(up.clone());
    let req = http::Request::put("/doc")
        .body(Chunks::new(&["123456789"], true))
        .unwrap();
    svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(up.seen.lock().unwrap().len(), 1);
    assert_eq!(gave_up.0.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_non_idempotent_request_is_neither_buffered_nor_retried() {
    let up = upstream(5, true);
    let gave_up = GaveUp::default();
    let mut svc = layer(1024, gave_up.clone()).layer(up.clone());
    let req = http::Request::post("/orders")
        .body(Chunks::new(&["x"], false))
        .unwrap();
    assert_eq!(
        svc.ready().await.unwrap().call(req).await.unwrap().status(),
        503
    );
    assert_eq!(*up.seen.lock().unwrap(), vec!["x"]);
    assert_eq!(*gave_up.0.lock().unwrap(), vec![GiveUp::NotRetryable]);
}
