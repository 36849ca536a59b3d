//! Client-side load balancing for [tower]: a [`Balance`] service that spreads requests over the
//! endpoints of any [`Discover`](tower::discover::Discover) stream (the registry client's, a
//! static list, a channel fed by dynamic config) with a choice of policies, passive health
//! (outlier detection with Envoy's rules) and circuit-breaker-aware routing.
//!
//! ```
//! use palisade_balancer::discover::StaticList;
//! use palisade_balancer::rng::SmallRng;
//! use palisade_balancer::{Balance, Config, Endpoint, Metadata, OutlierConfig, Policy};
//! use tower::{Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let endpoint = |id: u32| service_fn(move |req: u32| async move {
//!     Ok::<_, std::io::Error>(req + id)
//! });
//! let endpoints = StaticList::new([
//!     ("a", Endpoint::with_metadata(endpoint(100), Metadata::new().zone("z1").weight(2))),
//!     ("b", Endpoint::with_metadata(endpoint(200), Metadata::new().zone("z2"))),
//! ]);
//! let config = Config::with_policy(Policy::WeightedRoundRobin).outlier(OutlierConfig::default());
//! let mut lb = Balance::builder(endpoints)
//!     .name("catalog")
//!     .config(config)
//!     .rng(SmallRng::seed_from_u64(42))
//!     .build()
//!     .unwrap();
//! let handle = lb.handle();
//!
//! let mut got = Vec::new();
//! for _ in 0..3 {
//!     got.push(lb.ready().await.unwrap().call(1).await.unwrap());
//! }
//! got.sort();
//! assert_eq!(got, [101, 101, 201]); // weight 2 : weight 1
//! assert_eq!(handle.snapshot().endpoints.len(), 2);
//! # }
//! ```
//!
//! # Policies
//!
//! | [`Policy`] | picks | state per pick |
//! |---|---|---|
//! | `RoundRobin` | each candidate in turn | a counter |
//! | `Random` | a uniform candidate | one RNG draw |
//! | `WeightedRoundRobin` | smooth weighted round robin (nginx) | one pass over the candidates |
//! | `LeastOutstanding` | P2C on in-flight requests / weight | two RNG draws |
//! | `PeakEwma` (default) | P2C on `rtt * (in_flight + 1) / weight` | two draws, one clock read |
//! | `Maglev` | consistent hashing on a request key ([`hash::HashKey`]) | one table lookup |
//!
//! Randomness comes from an injectable [`rng::Rng`] (tower's trait); [`rng::SmallRng`] is seeded.
//!
//! # Health
//!
//! - **Outlier detection** ([`OutlierConfig`]): consecutive failures, success rate below
//!   `mean - k * stddev`, failure percentage; ejection time grows with repeated ejections up to a
//!   maximum; at most a share of endpoints ejected. What a failure is comes from a
//!   [`Classify`](palisade_breaker::Classify) (the breaker crate's trait and classifiers).
//! - **Circuit breakers**: an endpoint whose [`Metadata::breaker`] does not admit calls is left
//!   out of the candidates (see [`BreakerProbe`] for why the balancer asks the breaker's handle
//!   instead of relying on readiness).
//! - **Active health checks** ([`health`]): a task per endpoint probes it on an interval and
//!   flips the [`health::HealthFlag`] given to [`Metadata::health`]; failing endpoints are left
//!   out like ejected ones.
//! - **Panic threshold**: below this share of healthy endpoints every endpoint is a candidate.
//!
//! # Zones and slow start
//!
//! - **Zone-aware** ([`ZoneAware`]): healthy endpoints of the local zone only, while enough of
//!   the zone is healthy; otherwise every healthy endpoint.
//! - **Slow start** ([`SlowStart`]): an endpoint that joins a running balancer ramps up from a
//!   fraction of its weight over a window (Envoy's formula).
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `metrics` | `palisade_balancer_endpoints{service,state}` and `palisade_balancer_ejections_total{service,reason}` through the `metrics` facade |
//! | `http-health` | [`health::HttpCheck`], an HTTP/1.1 `GET` probe for active health checks |
//!
//! [tower]: https://docs.rs/tower

pub mod balance;
mod config;
pub mod discover;
mod endpoint;
mod handle;
pub mod hash;
pub mod health;
#[cfg(feature = "metrics")]
mod metrics;
pub mod rng;
mod stats;

pub use crate::balance::{Balance, Builder};
pub use crate::config::{
    Config, ConfigError, FailurePercentage, OutlierConfig, Policy, SlowStart, SuccessRate,
    ZoneAware,
};
pub use crate::endpoint::{BreakerProbe, Endpoint, Metadata};
pub use crate::handle::{
    Ejection, EjectionReason, EndpointSnapshot, EndpointState, Handle, Snapshot,
};

/// The error type at service boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
