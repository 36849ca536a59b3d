//! Adaptive concurrency limits: a [bulkhead](crate::bulkhead) whose limit follows the
//! dependency's measured capacity instead of a number guessed at deploy time (Netflix
//! concurrency-limits; Envoy's adaptive concurrency filter).
//!
//! The algorithm is pluggable ([`Algorithm`]): [`Aimd`] (loss-based), [`Vegas`] (queue
//! estimated from the no-load latency) and [`Gradient2`] (long-term vs current latency). Each
//! finished call is one [`Sample`] (latency, calls in flight, whether it was a drop as the
//! classifier sees it); rejections are not samples.
//!
//! # Cost
//!
//! The bulkhead's, plus two clock reads per call and the algorithm's update, which takes a lock
//! with `try_lock` for a few arithmetic operations (a completion that finds it held skips its
//! sample; nothing waits).
//!
//! ```
//! use palisade_breaker::bulkhead;
//! use palisade_breaker::limit::{AdaptiveLimitLayer, Gradient2};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = AdaptiveLimitLayer::new("search", Gradient2::new(20, 5, 200), bulkhead::Config::default()).unwrap();
//! let handle = layer.handle();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|q: u32| async move { Ok::<_, std::io::Error>(q) });
//! assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
//! assert!(handle.snapshot().max_concurrent >= 5);
//! # }
//! ```

mod algorithm;
mod service;

pub use self::algorithm::{Aimd, Algorithm, Gradient2, Sample, Vegas};
pub use self::service::{AdaptiveLimit, AdaptiveLimitLayer, ResponseFuture};
