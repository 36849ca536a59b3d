//! The bulkhead: caps the calls in flight to a dependency, so that one slow dependency cannot
//! take every task, connection or buffer of the caller (Hystrix semaphore isolation,
//! Resilience4j `SemaphoreBulkhead`).
//!
//! The limit is shared by every clone of the service (one `Arc`, unlike tower's `RateLimit`,
//! tower #794). A slot is reserved in `poll_ready` ([`Mode::Backpressure`]) or taken in `call`
//! ([`Mode::Shed`]) and given back when the response future finishes or is dropped, so a
//! cancelled call never leaks a slot.
//!
//! # Cost
//!
//! Admitting is one load of the limit and one CAS on the in-flight counter; the response future
//! holds a clone of the bulkhead's `Arc`; releasing is one `fetch_sub` and one load. A rejection
//! is a `Copy` value and allocates nothing. Only a caller
//! that has to *wait* takes the wait-queue lock (briefly, never across a call) and arms a
//! timer, boxed once per service and then reused.
//!
//! # Example
//!
//! ```
//! use palisade_breaker::bulkhead::{BulkheadLayer, Config, RejectReason};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = BulkheadLayer::new("search", Config::builder().max_concurrent(1).build().unwrap())
//!     .unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|q: &'static str| async move { Ok::<_, std::io::Error>(q.len()) });
//!
//! // The first call holds the only slot while its future lives.
//! let first = svc.ready().await.unwrap().call("hold");
//! let err = svc.ready().await.unwrap().call("second").await.unwrap_err();
//! assert_eq!(err.rejection().unwrap().reason(), RejectReason::Full);
//! assert_eq!(first.await.unwrap(), 4);
//! assert_eq!(svc.ready().await.unwrap().call("third").await.unwrap(), 5);
//! # }
//! ```

mod config;
pub(crate) mod core;
pub mod error;
pub mod future;
mod layer;
#[cfg(feature = "metrics")]
mod metrics;
mod service;

pub use self::config::{Builder, Config, Mode};
pub use self::core::{Handle, Listener, Snapshot};
pub use self::error::{Error, RejectReason, Rejected};
pub use self::layer::BulkheadLayer;
#[cfg(feature = "metrics")]
pub use self::metrics::MetricsListener;
pub use self::service::Bulkhead;
