//! Timeouts and deadlines.
//!
//! * [`TimeoutLayer`]: a timeout per call. Below a retry it is the per-attempt timeout.
//! * [`DeadlineLayer`]: an overall deadline, set on the request (for requests that
//!   [`CarryDeadline`], e.g. `http::Request`) so every layer and hop below sees it, and
//!   enforced: above a retry it holds across every attempt and backoff.
//! * `PropagateDeadlineLayer` (feature `http`): writes the time left into `grpc-timeout` (gRPC)
//!   or [`x-request-timeout-ms`](HTTP_TIMEOUT_HEADER) (HTTP) for the next hop, per attempt;
//!   `inbound_deadline` reads them on the server side.
//!
//! A timed-out call drops its inner future, which gives back every permit it holds (bulkhead
//! slot, breaker probe) on the way.
//!
//! ```
//! use palisade_breaker::timeout::TimeoutLayer;
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let mut svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_millis(100)))
//!     .service_fn(|_: ()| async {
//!         tokio::time::sleep(Duration::from_secs(1)).await;
//!         Ok::<_, std::io::Error>(())
//!     });
//! let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
//! assert!(err.is_elapsed());
//! # }
//! ```

mod deadline;
pub mod error;
pub mod future;
#[cfg(feature = "http")]
mod propagate;
mod service;

pub use self::deadline::{CarryDeadline, Deadline, DeadlineLayer, DeadlineService};
pub use self::error::{Elapsed, Error};
#[cfg(feature = "http")]
pub use self::propagate::{
    HTTP_TIMEOUT_HEADER, PropagateDeadline, PropagateDeadlineLayer, Propagation, grpc_timeout,
    inbound_deadline, parse_grpc_timeout,
};
pub use self::service::{Timeout, TimeoutLayer};
