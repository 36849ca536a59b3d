//! Rate limiting with GCRA (the generic cell rate algorithm): the whole limiter state is one
//! `AtomicU64` (the theoretical arrival time of the next call) updated by one CAS, shared by
//! every clone of the service (unlike tower's `RateLimit`, tower #794), with a keyed variant for
//! per-client limits.
//!
//! # Cost
//!
//! One clock read, three relaxed loads and one CAS per call; a rejection is a `Copy` value that
//! says when to retry and allocates nothing.
//!
//! # Example
//!
//! ```
//! use palisade_breaker::ratelimit::{Config, RateLimitLayer};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = RateLimitLayer::new(Config::per(2, Duration::from_secs(1))).unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) });
//! let mut other = svc.clone(); // clones share the limit
//! assert!(svc.ready().await.unwrap().call(1).await.is_ok());
//! assert!(other.ready().await.unwrap().call(2).await.is_ok());
//! let err = svc.ready().await.unwrap().call(3).await.unwrap_err();
//! assert!(err.rejection().unwrap().retry_after() <= Duration::from_millis(500));
//! # }
//! ```

mod config;
pub mod error;
pub mod future;
mod gcra;
mod keyed;
#[cfg(feature = "metrics")]
mod metrics;
mod service;

pub use self::config::{Config, Mode};
pub use self::error::{Error, Rejected};
pub use self::gcra::{Handle, Listener, Snapshot};
pub use self::keyed::{Acquired, KeyedHandle, KeyedRateLimit, KeyedRateLimitLayer};
#[cfg(feature = "metrics")]
pub use self::metrics::MetricsListener;
pub use self::service::{RateLimit, RateLimitLayer};
