//! Retries with exponential backoff and full jitter, `Retry-After`, and a lock-free retry
//! budget that is on by default.
//!
//! * **What is retried** is a [`Policy`]: [`RetryErrors`] (the default), [`RetryFailures`] (a
//!   [`Classify`](crate::Classify), so the breaker's classifier also drives retries), or
//!   `HttpPolicy` (feature `http`: idempotent methods only unless told, 502/503/504/429,
//!   `Retry-After`). No built-in policy ever retries a Palisade rejection (breaker open,
//!   bulkhead full, rate limited): see [`is_rejection`](crate::is_rejection).
//! * **How a request is replayed** is a [`Replay`]: [`CloneReplay`] for `Clone` requests;
//!   `HttpReplay` (feature `http`) for `http::Request<B>` with a streaming body, buffered as the
//!   first attempt sends it, up to a limit (64 KiB by default); a larger body is sent once and
//!   not retried, reported as `GiveUp::NotReplayable(BODY_TOO_LARGE)`.
//! * **How much** is bounded by `max_attempts` and by the budget: retries at most `ratio` of the
//!   calls plus `min_per_second`, so a failing dependency sees at most that much extra load
//!   instead of `max_attempts` times its traffic.
//!
//! A request that carries a deadline (the policy's [`Policy::deadline`]; `HttpPolicy` reads the
//! [`Deadline`](crate::timeout::Deadline) that [`DeadlineLayer`](crate::timeout::DeadlineLayer)
//! sets) is not retried when the backoff would outlast it: the caller gets the last answer at
//! once instead of a deadline error later.
//!
//! Every reason not to retry is reported ([`GiveUp`]) to the listener, to `tracing` at `debug`,
//! and in the handle's counters.
//!
//! # Cost
//!
//! On the happy path: one budget deposit (one load once the reserve is full), the policy's
//! `retryable` check, the replay's `prepare` (a clone for [`CloneReplay`]), a clone of the inner
//! service and of an `Arc` for the response future. No allocation, no lock, no clock read.
//!
//! # Example
//!
//! ```
//! use palisade_breaker::retry::{Config, RetryLayer};
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let calls = Arc::new(AtomicU32::new(0));
//! let c = calls.clone();
//! let cfg = Config::builder()
//!     .max_attempts(3)
//!     .backoff(Duration::from_millis(1), Duration::from_millis(10))
//!     .build()
//!     .unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new("catalog", cfg).unwrap())
//!     .service_fn(move |x: u32| {
//!         let n = c.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             if n < 2 { Err(std::io::Error::other("flaky")) } else { Ok(x) }
//!         }
//!     });
//! assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # }
//! ```

mod budget;
mod config;
mod core;
pub mod future;
#[cfg(feature = "metrics")]
mod metrics;
mod policy;
mod replay;
#[cfg(feature = "http")]
mod replay_body;
mod service;

pub use self::config::{Backoff, BudgetConfig, Builder, Config};
pub use self::core::{GiveUp, Handle, Listener, RetryBudget, Snapshot};
#[cfg(feature = "metrics")]
pub use self::metrics::MetricsListener;
#[cfg(feature = "http")]
pub use self::policy::HttpPolicy;
pub use self::policy::{Decision, Policy, RetryErrors, RetryFailures};
pub use self::replay::{CloneReplay, Replay};
#[cfg(feature = "http")]
pub use self::replay_body::{BODY_TOO_LARGE, HttpReplay, ReplayBody, SavedRequest};
pub use self::service::{LayerBuilder, Retry, RetryLayer};
