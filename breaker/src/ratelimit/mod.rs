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
//! # Clocks
//!
//! By default the limiter reads tokio's `Instant` (the real monotonic clock in production, the
//! paused clock in tests): nanosecond precision, at the price of a `clock_gettime` per call.
//! [`RateLimitLayer::coarse_clock`] switches a limiter to a coarse clock instead: one atomic load,
//! advanced every [`COARSE_CLOCK_TICK`] (1 ms) by a background thread started on first use.
//! That clock never runs ahead of the real one, so a coarse limiter never admits more calls in
//! total than the exact one (at most `burst + rate * elapsed` since it was built); but it lags by
//! up to a tick, and when it catches up the calls that one tick earns become available at once,
//! so a burst can reach `burst + rate * tick`. It follows the real clock, not tokio's paused
//! time.
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

mod coarse;
mod config;
pub mod error;
pub mod future;
mod gcra;
mod keyed;
#[cfg(feature = "metrics")]
mod metrics;
mod service;

pub use self::coarse::TICK as COARSE_CLOCK_TICK;
pub use self::config::{Config, Mode};
pub use self::error::{Error, Rejected};
pub use self::gcra::{Handle, Listener, Snapshot};
pub use self::keyed::{Acquired, KeyedHandle, KeyedRateLimit, KeyedRateLimitLayer};
#[cfg(feature = "metrics")]
pub use self::metrics::MetricsListener;
pub use self::service::{RateLimit, RateLimitLayer};
