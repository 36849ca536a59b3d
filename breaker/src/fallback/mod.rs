//! Fallback: answers from a closure or another service when a call fails or is rejected, with
//! the [`Cause`] in hand (Hystrix `getFallback`, Feign fallback factories).
//!
//! What counts as a failure is a [`Classify`](crate::Classify) (default: every error), so a 503
//! response can fall back too; a Palisade rejection (breaker open, bulkhead full, rate limited)
//! always falls back, as [`Cause::Rejected`]. On success the fallback costs a clone of the
//! closure (usually zero-sized) and one match; nothing is boxed.
//!
//! ```
//! use palisade_breaker::bulkhead::{BulkheadLayer, Config};
//! use palisade_breaker::fallback::{Cause, FallbackLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let bulkhead = BulkheadLayer::new("recs", Config::builder().max_concurrent(1).build().unwrap()).unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(FallbackLayer::new(|cause: Cause<&'static str, _>| async move {
//!         // A rejection gets the cached top-10; a real failure is passed on.
//!         if cause.is_rejected() { Ok("top-10") } else { cause.into_result() }
//!     }))
//!     .layer(bulkhead)
//!     .service_fn(|_: ()| async { Ok::<_, std::io::Error>("personalised") });
//!
//! let first = svc.ready().await.unwrap().call(()); // holds the only slot
//! assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), "top-10");
//! assert_eq!(first.await.unwrap(), "personalised");
//! # }
//! ```

pub mod future;
mod service;

pub use self::service::{Cause, Fallback, FallbackLayer, FallbackService, ServiceFallback};
