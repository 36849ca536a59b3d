//! Resilience middleware for [tower]: circuit breakers (single and keyed), with the same
//! [`Classify`] trait and handle conventions that the bulkheads, retries and limits of this crate
//! build on.
//!
//! Everything here is a `tower::Layer`/`Service` pair plus a cloneable handle for snapshots,
//! manual control and live `reconfigure`. Hot paths take no lock, allocate nothing and box no
//! future.
//!
//! ```
//! use palisade_breaker::circuit::{CircuitBreakerLayer, Config};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = CircuitBreakerLayer::new("catalog", Config::default()).unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(breaker)
//!     .service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id * 2) });
//! assert_eq!(svc.ready().await.unwrap().call(21).await.unwrap(), 42);
//! # }
//! ```
//!
//! # Modules
//!
//! | module | what |
//! |---|---|
//! | [`circuit`] | circuit breaker, keyed breakers, registry |
//! | [`bulkhead`] | max concurrent calls, bounded wait queue, backpressure or shed |
//! | [`limit`] | adaptive concurrency limits (AIMD, Vegas, Gradient2) driving a bulkhead |
//! | [`ratelimit`] | GCRA rate limiter in one atomic word, shared by clones; keyed variant |
//! | [`retry`] | retries with backoff and full jitter, `Retry-After`, a lock-free budget, HTTP body replay |
//! | [`timeout`] | per-call timeouts, request deadlines, `grpc-timeout` / `x-request-timeout-ms` propagation |
//! | [`fallback`] | answers from a closure or service on failure or rejection |
//! | [`hedge`] | hedged requests after a fixed or learned-percentile delay |
//! | [`collapse`] | request collapsing into batch calls (allocates and takes a short lock per call, by nature) |
//! | [`chaos`] | fault injection: latency, errors, canned outcomes |
//!
//! [`find_any_rejection`] / [`is_rejection`] recognise any of this crate's rejections (breaker
//! open, bulkhead full, rate limited) through layers and boxed errors; no built-in retry or hedge
//! policy retries one.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `http` | [`HttpClassifier`] for `http::Response`; `retry::HttpPolicy`, `retry::HttpReplay` (body replay), deadline propagation in `timeout` |
//! | `tonic` | [`GrpcClassifier`] for gRPC status codes |
//! | `metrics` | [`metrics::MetricsListener`] (breaker), `bulkhead::MetricsListener`, `retry::MetricsListener`, `ratelimit::MetricsListener`, exporting through the `metrics` facade |
//!
//! [tower]: https://docs.rs/tower

pub mod bulkhead;
pub mod chaos;
pub mod circuit;
mod classify;
pub mod collapse;
pub mod fallback;
pub mod hedge;
mod layer_error;
pub mod limit;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod ratelimit;
pub mod retry;
pub mod timeout;

pub use crate::circuit::State;
#[cfg(feature = "tonic")]
pub use crate::classify::GrpcClassifier;
#[cfg(feature = "http")]
pub use crate::classify::HttpClassifier;
pub use crate::classify::{AnyError, Classify, Outcome};
pub use crate::layer_error::LayerError;
pub use crate::util::InvalidConfig;

mod util;

/// The error type at service boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Finds a circuit breaker rejection anywhere in an error's source chain (through other layers
/// and `BoxError`s).
///
/// ```
/// use palisade_breaker::{find_rejection, BoxError};
/// let e: BoxError = "not a rejection".into();
/// assert!(find_rejection(&*e).is_none());
/// ```
pub fn find_rejection<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a circuit::Rejected> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<circuit::Rejected>() {
            return Some(r);
        }
        cur = e.source();
    }
    None
}

/// A rejection by one of this crate's admission layers: the call never reached the dependency,
/// so it says nothing about the dependency's health and must not be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection<'a> {
    /// A circuit breaker was open.
    CircuitOpen(&'a circuit::Rejected),
    /// A bulkhead was full.
    BulkheadFull(&'a bulkhead::Rejected),
    /// A rate limiter turned the call away.
    RateLimited(&'a ratelimit::Rejected),
}

/// Finds any Palisade rejection (breaker open, bulkhead full, rate limited) anywhere in an
/// error's source chain.
///
/// ```
/// use palisade_breaker::{find_any_rejection, BoxError};
/// let e: BoxError = "boom".into();
/// assert!(find_any_rejection(&*e).is_none());
/// ```
pub fn find_any_rejection<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<Rejection<'a>> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<circuit::Rejected>() {
            return Some(Rejection::CircuitOpen(r));
        }
        if let Some(r) = e.downcast_ref::<bulkhead::Rejected>() {
            return Some(Rejection::BulkheadFull(r));
        }
        if let Some(r) = e.downcast_ref::<ratelimit::Rejected>() {
            return Some(Rejection::RateLimited(r));
        }
        cur = e.source();
    }
    None
}

/// Whether an error is (or wraps) a Palisade rejection. Retries use this to never retry one.
pub fn is_rejection(err: &(dyn std::error::Error + 'static)) -> bool {
    find_any_rejection(err).is_some()
}
