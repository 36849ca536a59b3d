//! The circuit breaker.
//!
//! A breaker watches the outcomes of calls to a dependency and stops calling it while it is
//! failing, so the caller fails fast and the dependency gets room to recover.
//!
//! # States
//!
//! | state | admits | records | leaves by |
//! |---|---|---|---|
//! | `Closed` | every call | yes | a [`TripPolicy`] fires -> `Open` |
//! | `Open` | nothing | no | the open duration ends -> `HalfOpen` |
//! | `HalfOpen` | `probes` calls at once | probes | enough successes -> `Closed`; a failure or the max duration -> `Open` |
//! | `Disabled` | every call | no | manual |
//! | `ForcedOpen` | nothing | no | manual |
//! | `MetricsOnly` | every call | yes | manual (never opens) |
//!
//! # Cost
//!
//! In `Closed` a call costs one atomic load to admit and, on completion, one load of the state,
//! one `arc-swap` load of the config and one lock-free window update; no allocation, no lock.
//! The clock is read only when a slow-call policy needs the latency (twice: start and end) or a
//! time window needs the bucket (once). A rejection is one atomic load: while the breaker is
//! open a timer task moves it to `HalfOpen` when the open duration ends, so rejecting never reads
//! the clock (without a tokio runtime the breaker falls back to reading it).
//!
//! # Example
//!
//! ```
//! use palisade_breaker::circuit::{CircuitBreakerLayer, Config, TripPolicy};
//! use palisade_breaker::State;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = Config::builder()
//!     .count_window(10)
//!     .minimum_calls(4)
//!     .trip(TripPolicy::failure_rate(0.5))
//!     .build()
//!     .unwrap();
//! let layer = CircuitBreakerLayer::new("inventory", config).unwrap();
//! let handle = layer.handle();
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|fail: bool| async move { if fail { Err("boom") } else { Ok("ok") } });
//!
//! for _ in 0..4 {
//!     let _ = svc.ready().await.unwrap().call(true).await;
//! }
//! assert_eq!(handle.state(), State::Open);
//! let err = svc.ready().await.unwrap().call(false).await.unwrap_err();
//! assert!(err.is_rejected());
//! # }
//! ```

pub mod config;
mod core;
pub mod error;
mod events;
pub mod future;
mod keyed;
mod layer;
mod registry;
mod service;
pub(crate) mod state;
mod window;

pub use self::config::{
    Builder, CancellationPolicy, Config, ConfigError, HalfOpenConfig, OpenDuration, TripPolicy,
    WindowConfig,
};
pub use self::core::{Handle, Snapshot};
pub use self::error::{Error, Rejected, TripReason};
pub use self::events::{Listener, Transition};
pub use self::keyed::{KeyedCircuitBreaker, KeyedCircuitBreakerLayer, KeyedHandle};
pub use self::layer::{CircuitBreakerLayer, LayerBuilder};
pub use self::registry::{BreakerRegistry, NamedSnapshot};
pub use self::service::CircuitBreaker;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum State {
    /// Calls flow and are recorded.
    Closed = 0,
    /// Calls are rejected until the open duration ends.
    Open = 1,
    /// A limited number of probe calls decide between `Closed` and `Open`.
    HalfOpen = 2,
    /// Manual: every call flows, nothing is recorded.
    Disabled = 3,
    /// Manual: every call is rejected.
    ForcedOpen = 4,
    /// Manual: every call flows and is recorded, the breaker never opens.
    MetricsOnly = 5,
}

impl State {
    /// A stable lower-case name (`"half_open"`), for metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::Disabled => "disabled",
            State::ForcedOpen => "forced_open",
            State::MetricsOnly => "metrics_only",
        }
    }
}
