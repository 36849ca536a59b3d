//! A Eureka-compatible service registry server.
//!
//! It speaks the Eureka REST protocol on both `/eureka/v2` (Netflix) and `/eureka` (Spring) base
//! paths, so Java (`spring-cloud-starter-netflix-eureka-client`), Python (`py_eureka_client`) and
//! JavaScript (`eureka-js-client`) clients register with it unchanged:
//!
//! * every resource of the protocol: register (204), renew (200, 404 to force re-registration,
//!   409 to replicas holding an older copy), cancel, status overrides, metadata, full and delta
//!   fetches, applications, instances, VIPs, the replication batch;
//! * XML unless `Accept` asks for JSON; gzip when `Accept-Encoding` allows it; percent-decoded ids;
//! * leases and eviction ([`LeaseExpiry`] documents the Java "2 × duration" choice),
//!   self-preservation with the 85 % renewal threshold, status overrides with Eureka's precedence
//!   rules, the delta queue with its 180 s window, the response cache;
//! * 400 with a reason for malformed or oversized bodies; previous state is kept;
//! * a dashboard at `/` and Prometheus text at `/metrics`.
//!
//! * peer replication ([`PeerConfig`]): client writes go to the other servers in batches, a
//!   starting server pulls the registry from a peer, conflicts resolve by `lastDirtyTimestamp`.
//!
//! * `X-Eureka-Accept: compact` answers in the Java server's compact form.
//!
//! Not yet: AWS-specific features, remote regions.
//!
//! | feature | what it adds |
//! |---|---|
//! | `metrics` | `palisade_registry_renewals_total` and `palisade_registry_instances{app,status}` (set every eviction interval) through the `metrics` facade |
//!
//! ```no_run
//! use palisade_registry_server::{RegistryServer, ServerConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = RegistryServer::new(ServerConfig::default()).expect("valid config");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8761").await?;
//! server.serve(listener, std::future::pending()).await
//! # }
//! ```
//!
//! In tests, drive it without a socket through [`RegistryServer::router`]:
//!
//! ```
//! use palisade_registry_server::{RegistryServer, ServerConfig};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let server = RegistryServer::new(ServerConfig::default()).unwrap();
//! let res = server
//!     .router()
//!     .oneshot(http::Request::get("/eureka/apps/").body(axum::body::Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.headers()["content-type"], "application/xml");
//! # }
//! ```

pub mod config;
mod dashboard;
pub mod http;
pub mod registry;
pub mod replication;

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use palisade_registry_client::model::Applications;

pub use config::{BasicAuth, ConfigError, LeaseExpiry, ServerConfig};
pub use registry::SelfPreservation;
pub use replication::PeerConfig;

/// A registry server: the shared state and its HTTP resources. Clones share the state.
#[derive(Clone)]
pub struct RegistryServer {
    shared: Arc<http::Shared>,
}

impl std::fmt::Debug for RegistryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryServer").finish_non_exhaustive()
    }
}

impl RegistryServer {
    /// A server with an empty registry. Fails on an invalid configuration.
    pub fn new(config: ServerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Ok(RegistryServer {
            shared: Arc::new(http::Shared::new(config, wall_ms)),
        })
    }

    /// The HTTP resources as an axum `Router` (serve it, nest it, or call it with `oneshot`).
    pub fn router(&self) -> axum::Router {
        http::router(self.shared.clone())
    }

    /// The full registry now (bypassing the response cache).
    pub fn applications(&self) -> Applications {
        self.shared.registry().applications()
    }

    /// The self-preservation figures now.
    pub fn self_preservation(&self) -> SelfPreservation {
        self.shared.registry().self_preservation()
    }

    /// Runs the periodic duties once: threshold update when due, then eviction. [`serve`]
    /// calls it every `eviction_interval`.
    ///
    /// [`serve`]: RegistryServer::serve
    pub fn run_maintenance(&self) -> usize {
        self.shared.registry().tick().len()
    }

    /// Replaces the peers client writes are replicated to (the `peers.peer_urls` of the
    /// configuration are the first set; this is how a peer list refreshed from DNS or dynamic
    /// configuration gets in). New peers get writes from now on; no start-up pull is made. Call it
    /// inside a Tokio runtime.
    pub fn set_peers(&self, urls: Vec<String>) {
        self.shared.replicator.set_peers(
            Arc::downgrade(&self.shared),
            &self.shared.config.peers,
            &urls,
        );
    }

    /// The peers client writes are replicated to now.
    pub fn peers(&self) -> Vec<String> {
        self.shared.replicator.peer_urls()
    }

    /// Serves on `listener` until `shutdown` completes, running eviction in the background.
    /// With peers configured it also replicates client writes to them and pulls the registry
    /// from them on start (fetches answer 403 for `wait_time_when_sync_empty` if that pull
    /// found nothing).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let peers = self.shared.config.peers.clone();
        let sync = if peers.peer_urls.is_empty() {
            None
        } else {
            self.shared.replicator.set_peers(
                Arc::downgrade(&self.shared),
                &peers,
                &peers.peer_urls,
            );
            let shared = self.shared.clone();
            Some(tokio::spawn(async move {
                let count = replication::sync_from_peers(&shared, &peers).await;
                if count == 0 {
                    *shared
                        .warm_up_until
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) =
                        Some(tokio::time::Instant::now() + peers.wait_time_when_sync_empty);
                }
            }))
        };
        let maintenance = {
            let this = self.clone();
            let every = self.shared.config.eviction_interval;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    this.run_maintenance();
                }
            })
        };
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        maintenance.abort();
        if let Some(s) = sync {
            s.abort();
        }
        result
    }
}
