//! Timeouts, retries, the breaker and its fallback, interceptors and HTTP/2, against a real
//! hyper server.
#![allow(missing_docs)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::Echo;
use palisade_breaker::State;
use palisade_breaker::circuit::{Config, TripPolicy};
use palisade_client::stack::{BearerAuth, RetryPolicy, Stack, StackBuilder};
use palisade_client::trace::{B3, TraceContext, Traceparent};
use palisade_client::transport::{HttpTransport, TransportConfig};
use palisade_client::{Body, ClientError, Json, client};
use tower::retry::budget::TpsBudget;

#[client(timeout = "5s")]
pub trait Flaky {
    #[get("/flaky/{fails}")]
    async fn get(&self, #[path] fails: u32) -> Result<Json<Echo>, ClientError>;

    #[get("/flaky/{fails}", retry = "never")]
    async fn get_never(&self, #[path] fails: u32) -> Result<Json<Echo>, ClientError>;

    #[post("/flaky/{fails}")]
    async fn post(&self, #[path] fails: u32) -> Result<Json<Echo>, ClientError>;

    #[post("/flaky/{fails}", idempotent, retry = 3)]
    async fn post_idempotent(
        &self,
        #[path] fails: u32,
        #[body] b: Bytes,
    ) -> Result<Json<Echo>, ClientError>;

    #[put("/flaky/{fails}")]
    async fn put_stream(
        &self,
        #[path] fails: u32,
        #[body] b: Body,
    ) -> Result<Json<Echo>, ClientError>;

    #[get("/hang")]
    async fn hang(&self) -> Result<(), ClientError>;

    #[get("/hang", timeout = "30ms")]
    async fn hang_short(&self) -> Result<(), ClientError>;
}

fn stack(url: &str, retry: RetryPolicy) -> Stack<HttpTransport> {
    StackBuilder::new("flaky")
        .base_url(url)
        .unwrap()
        .retry(retry)
        .build()
        .unwrap()
}

#[tokio::test]
async fn idempotent_get_is_retried_until_success() {
    let s = common::start().await;
    let c = FlakyClient::new(stack(&s.url(), RetryPolicy::new(3)));
    let Json(e) = c.get(2).await.unwrap();
    assert_eq!(e.path, "/flaky/2");
    assert_eq!(s.seen.hits("/flaky/2"), 3);
}

#[tokio::test]
async fn retries_stop_at_the_maximum() {
    let s = common::start().await;
    let c = FlakyClient::new(stack(&s.url(), RetryPolicy::new(1)));
    let err = c.get(5).await.unwrap_err();
    assert_eq!(err.status_code().map(|s| s.as_u16()), Some(503));
    assert_eq!(s.seen.hits("/flaky/5"), 2);
}

#[tokio::test]
async fn post_is_never_retried_by_the_stack() {
    let s = common::start().await;
    let c = FlakyClient::new(stack(&s.url(), RetryPolicy::new(3)));
    let err = c.post(1).await.unwrap_err();
    assert!(err.is_status());
    assert_eq!(s.seen.hits("/flaky/1"), 1);
}

#[tokio::test]
async fn post_marked_idempotent_is_retried_with_its_own_count() {
    let s = common::start().await;
    // The stack's default is no retries; the method asks for 3.
    let c = FlakyClient::new(stack(&s.url(), RetryPolicy::default()));
    let Json(e) = c
        .post_idempotent(3, Bytes::from_static(b"again"))
        .await
        .unwrap();
    assert_eq!(e.body, "again", "the replayed body is sent whole");
    assert_eq!(s.seen.hits("/flaky/3"), 4);
}

#[tokio::test]
async fn retry_never_on_the_method_wins() {
    let s = common::start().await;
    let c = FlakyClient::new(stack(&s.url(), RetryPolicy::new(3)));
    assert!(c.get_never(1).await.unwrap_err().is_status());
    assert_eq!(s.seen.hits("/flaky/1"), 1);
}

#[tokio::test]
async fn streaming_body_is_not_retried() {
    let s = common::start().await;
    let c = FlakyClient::new(stack(&s.url(), RetryPolicy::new(3)));
    let body = Body::from_stream(futures::stream::iter(vec![Ok::<_, std::io::Error>("x")]));
    assert!(c.put_stream(1, body).await.unwrap_err().is_status());
    assert_eq!(s.seen.hits("/flaky/1"), 1);
}

#[tokio::test]
async fn an_empty_budget_stops_retries() {
    let s = common::start().await;
    let policy = RetryPolicy::new(3).budget(TpsBudget::new(Duration::from_secs(1), 0, 0.0));
    let c = FlakyClient::new(stack(&s.url(), policy));
    assert!(c.get(1).await.unwrap_err().is_status());
    assert_eq!(s.seen.hits("/flaky/1"), 1);
}

#[tokio::test]
async fn method_timeout_overrides_the_trait_timeout() {
    let s = common::start().await;
    let c = FlakyClient::new(stack(&s.url(), RetryPolicy::default()));
    let err = c.hang_short().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.method(), "Flaky::hang_short");
}

#[tokio::test]
async fn stack_timeout_applies_when_no_attribute_sets_one() {
    #[client]
    pub trait NoTimeout {
        #[get("/hang")]
        async fn hang(&self) -> Result<(), ClientError>;
    }
    let s = common::start().await;
    let stack = StackBuilder::new("t")
        .base_url(&s.url())
        .unwrap()
        .timeout(Duration::from_millis(30))
        .build()
        .unwrap();
    assert!(
        NoTimeoutClient::new(stack)
            .hang()
            .await
            .unwrap_err()
            .is_timeout()
    );
}

#[client(fallback = CatalogFallback)]
pub trait Catalog {
    #[get("/titles/{id}")]
    async fn title(&self, #[path] id: u64) -> Result<String, ClientError>;

    #[post("/titles")]
    async fn create(&self, #[body] t: Json<Vec<u32>>) -> Result<String, ClientError>;

    #[get("/status/{code}", fallback = false)]
    async fn no_fallback(&self, #[path] code: u16) -> Result<String, ClientError>;
}

pub struct CatalogFallback;

impl Catalog for CatalogFallback {
    async fn title(&self, id: u64) -> Result<String, ClientError> {
        Ok(format!("cached title {id}"))
    }

    async fn create(&self, t: Json<Vec<u32>>) -> Result<String, ClientError> {
        Ok(format!("queued {} items", t.len()))
    }

    async fn no_fallback(&self, _code: u16) -> Result<String, ClientError> {
        Ok("must not be called".into())
    }
}

#[tokio::test]
async fn fallback_when_the_breaker_opens() {
    let s = common::start().await;
    let config = Config::builder()
        .trip(TripPolicy::consecutive_failures(2))
        .build()
        .unwrap();
    let stack = StackBuilder::new("catalog")
        .base_url(&s.url())
        .unwrap()
        .breaker_config(config)
        .build()
        .unwrap();
    let breaker = stack.get_ref().handle();
    let c = CatalogClient::new(stack, CatalogFallback);

    // Two 500s: failures (HttpClassifier), the breaker opens.
    for _ in 0..2 {
        let err = c.no_fallback(500).await.unwrap_err();
        assert_eq!(err.status_code().map(|s| s.as_u16()), Some(500));
    }
    assert_eq!(breaker.state(), State::Open);
    let before = s.seen.total.load(Ordering::SeqCst);

    assert_eq!(c.title(7).await.unwrap(), "cached title 7");
    assert_eq!(
        c.create(Json(vec![1, 2, 3])).await.unwrap(),
        "queued 3 items"
    );
    // A method with `fallback = false` gets the rejection.
    let err = c.no_fallback(200).await.unwrap_err();
    assert!(err.is_rejected(), "{err:?}");
    assert!(err.rejection().is_some());
    assert_eq!(
        s.seen.total.load(Ordering::SeqCst),
        before,
        "nothing reached the server"
    );

    breaker.close();
    // Closed again: the call reaches the server (the echo, not the fallback's text).
    let echoed = c.title(7).await.unwrap();
    assert!(echoed.contains("\"path\":\"/titles/7\""), "{echoed}");
    assert_eq!(s.seen.total.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn auth_and_traceparent_interceptors() {
    let s = common::start().await;
    #[client]
    pub trait Traced {
        #[get("/echo")]
        async fn echo(&self) -> Result<Json<Echo>, ClientError>;
    }
    let stack = StackBuilder::new("traced")
        .base_url(&s.url())
        .unwrap()
        .interceptor(BearerAuth::new(|| "t0ken".to_owned()))
        .interceptor(Traceparent::new())
        .build()
        .unwrap();
    let c = TracedClient::new(stack);

    let parent =
        TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let Json(e) = parent.scope(c.echo()).await.unwrap();
    assert_eq!(e.header("authorization"), Some("Bearer t0ken"));
    let sent = TraceContext::parse(e.header("traceparent").unwrap()).unwrap();
    assert_eq!(sent.trace_id, parent.trace_id);
    assert_ne!(sent.span_id, parent.span_id);
    assert_eq!(sent.flags, 1);

    // Outside a scope: a new trace.
    let Json(e) = c.echo().await.unwrap();
    let root = TraceContext::parse(e.header("traceparent").unwrap()).unwrap();
    assert_ne!(root.trace_id, parent.trace_id);
}

#[tokio::test]
async fn http2_transport() {
    let s = common::start().await;
    #[client]
    pub trait H2 {
        #[get("/echo")]
        async fn echo(&self) -> Result<Json<Echo>, ClientError>;
    }
    let stack = StackBuilder::new("h2")
        .base_url(&s.url())
        .unwrap()
        .transport(TransportConfig::default().http2_only(true))
        .build()
        .unwrap();
    let c = H2Client::new(stack);
    assert_eq!(c.echo().await.unwrap().version, "HTTP/2.0");
    let stack = StackBuilder::new("h1")
        .base_url(&s.url())
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        H2Client::new(stack).echo().await.unwrap().version,
        "HTTP/1.1"
    );
}

#[tokio::test]
async fn base_url_prefix_is_prepended() {
    let s = common::start().await;
    #[client(base_path = "/v2")]
    pub trait Prefixed {
        #[get("/x")]
        async fn x(&self) -> Result<Json<Echo>, ClientError>;
    }
    let stack = StackBuilder::new("p")
        .base_url(&format!("{}/gw/", s.url()))
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        PrefixedClient::new(stack).x().await.unwrap().path,
        "/gw/v2/x"
    );
}

#[client(fallback = Cached, fallback_on = "failure", timeout = "30ms")]
pub trait Resilient {
    #[get("/hang")]
    async fn hang(&self) -> Result<String, ClientError>;

    // Its own timeout, so that a slow machine cannot turn the 404 into a timeout.
    #[get("/status/{code}", timeout = "30s")]
    async fn status(&self, #[path] code: u16) -> Result<String, ClientError>;
}

pub struct Cached;

impl Resilient for Cached {
    async fn hang(&self) -> Result<String, ClientError> {
        Ok("cached".into())
    }

    async fn status(&self, code: u16) -> Result<String, ClientError> {
        Ok(format!("cached {code}"))
    }
}

#[tokio::test]
async fn fallback_on_failure_covers_timeouts_and_transport_errors_not_statuses() {
    let s = common::start().await;
    let stack = StackBuilder::new("resilient")
        .base_url(&s.url())
        .unwrap()
        .build()
        .unwrap();
    let c = ResilientClient::new(stack, Cached);
    // Timeout: falls back.
    assert_eq!(c.hang().await.unwrap(), "cached");
    // An answer, even an error status, is not a failure to reach the service.
    let err = c.status(404).await.unwrap_err();
    assert_eq!(err.status_code().map(|s| s.as_u16()), Some(404));

    // Connection refused: falls back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stack = StackBuilder::new("gone")
        .base_url(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        ResilientClient::new(stack, Cached)
            .status(200)
            .await
            .unwrap(),
        "cached 200"
    );
}

#[tokio::test]
async fn b3_single_header_propagation() {
    let s = common::start().await;
    #[client]
    pub trait Zipkin {
        #[get("/echo")]
        async fn echo(&self) -> Result<Json<Echo>, ClientError>;
    }
    let stack = StackBuilder::new("b3")
        .base_url(&s.url())
        .unwrap()
        .interceptor(B3)
        .build()
        .unwrap();
    let c = ZipkinClient::new(stack);
    let parent =
        TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let Json(e) = parent.scope(c.echo()).await.unwrap();
    let b3: Vec<&str> = e.header("b3").unwrap().split('-').collect();
    assert_eq!(b3.len(), 4);
    assert_eq!(b3[0], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(b3[1], "00f067aa0ba902b7");
    assert_eq!(b3[1].len(), 16);
    assert_eq!(b3[2], "1");
    assert_eq!(b3[3], "00f067aa0ba902b7");
    let Json(e) = c.echo().await.unwrap();
    assert_eq!(
        e.header("b3").unwrap().split('-').count(),
        3,
        "a new root has no parent"
    );
}

#[client(fallback = Stale)]
pub trait Library {
    #[get("/titles/{id}")]
    async fn title(&self, #[path] id: u64) -> Result<String, ClientError>;

    #[get("/top", fallback = EmptyTop)]
    async fn top(&self) -> Result<String, ClientError>;

    #[get("/count", fallback = false)]
    async fn count(&self) -> Result<String, ClientError>;
}

pub struct Stale;

impl Library for Stale {
    async fn title(&self, id: u64) -> Result<String, ClientError> {
        Ok(format!("stale title {id}"))
    }
    async fn top(&self) -> Result<String, ClientError> {
        Ok("stale top".into())
    }
    async fn count(&self) -> Result<String, ClientError> {
        Ok("must not be called".into())
    }
}

#[derive(Default)]
pub struct EmptyTop;

impl Library for EmptyTop {
    async fn title(&self, _id: u64) -> Result<String, ClientError> {
        Ok("EmptyTop::title must not be called".into())
    }
    async fn top(&self) -> Result<String, ClientError> {
        Ok("[]".into())
    }
    async fn count(&self) -> Result<String, ClientError> {
        Ok("EmptyTop::count must not be called".into())
    }
}

#[tokio::test]
async fn per_method_fallback_override() {
    let s = common::start().await;
    let stack = StackBuilder::new("library")
        .base_url(&s.url())
        .unwrap()
        .build()
        .unwrap();
    let breaker = stack.get_ref().handle();
    let c = LibraryClient::new(stack, Stale);
    // Closed: every method reaches the server.
    assert!(c.top().await.unwrap().contains("\"path\":\"/top\""));

    breaker.force_open();
    assert_eq!(
        c.title(3).await.unwrap(),
        "stale title 3",
        "the trait's fallback"
    );
    assert_eq!(c.top().await.unwrap(), "[]", "the method's own fallback");
    assert!(c.count().await.unwrap_err().is_rejected(), "no fallback");
    assert_eq!(
        s.seen.total.load(Ordering::SeqCst),
        1,
        "only the first call got through"
    );
}

#[tokio::test]
async fn the_builder_takes_the_fallback_and_says_when_it_is_missing() {
    let s = common::start().await;
    let err = LibraryClient::builder()
        .base_url(&s.url())
        .unwrap()
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "client `Library`: the trait has `fallback = Type`: pass an instance with `fallback(..)`"
    );
    let c = LibraryClient::builder()
        .base_url(&s.url())
        .unwrap()
        .fallback(Stale)
        .build()
        .unwrap();
    assert!(c.title(1).await.unwrap().contains("\"path\":\"/titles/1\""));
    c.get_ref().get_ref().handle().force_open();
    assert_eq!(c.title(1).await.unwrap(), "stale title 1");
}
