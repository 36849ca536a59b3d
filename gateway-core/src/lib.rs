//! An edge gateway on hyper and tower: routes with predicates and filters, fixed upstreams
//! (HTTP/1.1 over a lock-free pool per worker thread, h2c over one shared pool), streaming
//! bodies, proxy headers, trace propagation, and a routes file that hot-reloads (a bad file is
//! refused, the old routes stay).
//!
//! For throughput, run one single-threaded Tokio runtime per core, each serving its own
//! [`reuseport_listener`] (what the `palisade-gateway` binary does with `--workers N`): a
//! request then never leaves its thread.
//!
//! ```no_run
//! use palisade_gateway::{Gateway, config::GatewayConfig};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = GatewayConfig::from_yaml(r#"
//! listen: 127.0.0.1:18080
//! routes:
//!   - id: api
//!     upstream: http://127.0.0.1:19000
//!     predicates: { path_prefix: /api }
//!     filters: [ { strip_prefix: 1 } ]
//! "#, "routes.yaml")?;
//! let gateway = Gateway::builder(cfg.clone()).build()?;
//! let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
//! palisade_gateway::serve(listener, gateway, cfg.limits, std::future::pending(), cfg.drain_timeout).await?;
//! # Ok(()) }
//! ```
//!
//! `lb://name` upstreams resolve through a registry and a balancer ([`lb`]); routes may carry a
//! bulkhead and a local rate limit ([`limits`]); retried requests replay their bodies up to a
//! limit; routes may come from `palisade-dynconfig` ([`source`]).
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `metrics` | `palisade_gateway_requests_total{route,code}`, `palisade_gateway_request_duration_seconds{route}`, `palisade_gateway_rejections_total{route,reason}`, and the bulkhead, breaker and balancer metrics of the routes, through the `metrics` facade |

pub mod admin;
pub mod body;
pub mod config;
pub mod cors;
pub mod filter;
pub mod forward;
pub mod jwt;
pub mod lb;
pub mod limits;
mod metrics;
pub mod path;
mod pool;
mod proxy;
pub mod ratelimit;
pub mod reload;
mod replay;
pub mod route;
mod server;
pub mod source;
pub mod tls;
pub mod trust;
pub mod upstream;

pub use body::{BoxError, GatewayBody};
pub use proxy::{Gateway, GatewayBuilder, GatewayConnection, ReloadStatus, ResponseFuture};
pub use server::{reuseport_listener, serve, serve_tls};
