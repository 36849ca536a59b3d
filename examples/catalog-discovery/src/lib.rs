//! A declarative client (`palisade-client`) whose instances come from a Eureka registry
//! (`palisade-registry-client`) through the balancer (`palisade-balancer`): `service = "catalog"`
//! resolved end to end. `tests/failover.rs` wires it and kills one of two instances mid-test: no
//! idempotent request fails.
//!
//! The wiring: the registry's `Discover` stream of `UP` instances becomes one transport per
//! instance (the shared hyper-util pool plus the instance's base URL); the balancer picks among
//! them; the client's stack (retry, breaker, timeout) sits on top, behind a `Buffer` that makes
//! the balancer cloneable. A retry goes back through the balancer, so it lands on another
//! instance.

use palisade_client::{ClientError, Json, client};
use serde::{Deserialize, Serialize};

/// A title, as the catalog service returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Title {
    /// The title's id.
    pub id: u64,
    /// Which instance answered.
    pub served_by: String,
}

/// The catalog service's API.
#[client(service = "catalog", base_path = "/api/v1")]
pub trait Catalog {
    /// One title.
    #[get("/titles/{id}")]
    async fn title(&self, #[path] id: u64) -> Result<Json<Title>, ClientError>;
}
