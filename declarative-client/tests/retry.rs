//! Retries as Feign and Resilience4j users expect them, end to end against a real hyper server
//! under paused time: `Retry-After` (seconds and HTTP date), 429, configurable statuses,
//! seeded full-jitter backoff.
#![allow(missing_docs)]

mod common;

use std::time::Duration;

use common::Echo;
use palisade_client::stack::{RetryPolicy, StackBuilder};
use palisade_client::{ClientError, Json, client};
use tokio::time::Instant;

#[client(timeout = "60s")]
pub trait Busy {
    #[get("/retry-after/{fails}/{code}/{after}")]
    async fn get(
        &self,
        #[path] fails: u32,
        #[path] code: u16,
        #[path] after: &str,
    ) -> Result<Json<Echo>, ClientError>;

    #[post("/retry-after/{fails}/{code}/{after}")]
    async fn post(
        &self,
        #[path] fails: u32,
        #[path] code: u16,
        #[path] after: &str,
    ) -> Result<Json<Echo>, ClientError>;

    #[get("/flaky/{fails}")]
    async fn flaky(&self, #[path] fails: u32) -> Result<Json<Echo>, ClientError>;
}

fn client(
    url: &str,
    policy: RetryPolicy,
) -> BusyClient<palisade_client::stack::Stack<palisade_client::transport::HttpTransport>> {
    BusyClient::new(
        StackBuilder::new("busy")
            .base_url(url)
            .unwrap()
            .retry(policy)
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_is_waited_exactly() {
    let s = common::start().await;
    let c = client(&s.url(), RetryPolicy::new(2));
    let start = Instant::now();
    let Json(e) = c.get(1, 503, "2").await.unwrap();
    let waited = start.elapsed();
    assert_eq!(e.path, "/retry-after/1/503/2");
    assert_eq!(s.seen.hits("/retry-after/1/503/2"), 2);
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_is_honoured() {
    let s = common::start().await;
    let c = client(&s.url(), RetryPolicy::new(2));
    let start = Instant::now();
    c.get(1, 503, "date3").await.unwrap();
    let waited = start.elapsed();
    // HTTP dates have a one-second resolution: the wait is in (2 s, 3 s].
    assert!(
        waited > Duration::from_secs(2) && waited <= Duration::from_millis(3100),
        "{waited:?}"
    );
    assert_eq!(s.seen.hits("/retry-after/1/503/date3"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_longer_than_the_cap_is_not_waited() {
    let s = common::start().await;
    let c = client(
        &s.url(),
        RetryPolicy::new(2).max_retry_after(Duration::from_secs(10)),
    );
    let start = Instant::now();
    let err = c.get(1, 503, "60").await.unwrap_err();
    assert_eq!(err.status_code().map(|s| s.as_u16()), Some(503));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(s.seen.hits("/retry-after/1/503/60"), 1);
}

#[tokio::test(start_paused = true)]
async fn too_many_requests_is_retried_only_with_retry_after() {
    let s = common::start().await;
    let c = client(&s.url(), RetryPolicy::new(2));
    let start = Instant::now();
    c.get(1, 429, "1").await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert_eq!(s.seen.hits("/retry-after/1/429/1"), 2);

    let err = c.get(1, 429, "-").await.unwrap_err();
    assert_eq!(err.status_code().map(|s| s.as_u16()), Some(429));
    assert_eq!(
        s.seen.hits("/retry-after/1/429/-"),
        1,
        "no Retry-After: not retried"
    );
}

#[tokio::test(start_paused = true)]
async fn retryable_statuses_are_configurable() {
    let s = common::start().await;
    // 500 is not retried by default...
    let err = client(&s.url(), RetryPolicy::new(2))
        .get(1, 500, "-")
        .await
        .unwrap_err();
    assert_eq!(err.status_code().map(|s| s.as_u16()), Some(500));
    assert_eq!(s.seen.hits("/retry-after/1/500/-"), 1);
    // ...but is when listed; 503 then is not.
    let policy = RetryPolicy::new(2).retry_statuses(&[500]).unwrap();
    let c = client(&s.url(), policy);
    c.get(2, 500, "-").await.unwrap();
    assert_eq!(s.seen.hits("/retry-after/2/500/-"), 3);
    let err = c.get(1, 503, "-").await.unwrap_err();
    assert_eq!(err.status_code().map(|s| s.as_u16()), Some(503));
}

#[tokio::test(start_paused = true)]
async fn a_post_is_not_retried_even_with_retry_after() {
    let s = common::start().await;
    let c = client(&s.url(), RetryPolicy::new(3));
    let err = c.post(1, 503, "1").await.unwrap_err();
    assert_eq!(err.status_code().map(|s| s.as_u16()), Some(503));
    assert_eq!(s.seen.hits("/retry-after/1/503/1"), 1);
}

/// The time three failing attempts and a success take with `seed`.
async fn backoff_run(seed: u64) -> Duration {
    let s = common::start().await;
    let policy = RetryPolicy::new(3)
        .backoff(Duration::from_millis(100), Duration::from_secs(1))
        .seed(seed);
    let c = client(&s.url(), policy);
    let start = Instant::now();
    c.flaky(3).await.unwrap();
    assert_eq!(s.seen.hits("/flaky/3"), 4);
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn full_jitter_backoff_is_bounded_and_repeatable_with_a_seed() {
    let a = backoff_run(11).await;
    // Full jitter: each wait is in [0, 100 ms], [0, 200 ms], [0, 400 ms].
    assert!(a <= Duration::from_millis(700), "{a:?}");
    assert!(a > Duration::ZERO, "{a:?}");
    assert_eq!(a, backoff_run(11).await, "same seed, same waits");
    assert_ne!(a, backoff_run(12).await, "another seed, other waits");
}
