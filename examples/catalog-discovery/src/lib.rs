//! A declarative client (`palisade-client`) whose instances come from a Eureka registry
//! (`palisade-registry-client`) through the balancer (`palisade-balancer`): `service = "catalog"`
//! resolved end to end. `tests/failover.rs` wires it and kills one of two instances mid-test: no
//! idempotent request fails.
//!
//! No hand wiring: `CatalogClient::builder().discovery(registry)` reads the service name
//! (`"catalog"`) from the macro and assembles the standard stack (retry, breaker, timeout) over
//! a balancer fed by the registry's `Discover` stream of `UP` instances (one transport per
//! instance: the shared hyper-util pool plus the instance's address). A retry goes back
//! through the balancer, so it lands on another instance.
//!
//! ```no_run
//! use palisade_client::stack::RetryPolicy;
//! use palisade_example_catalog_discovery::{Catalog, CatalogClient};
//! use palisade_registry_client::{ClientConfig, RegistryClient, ServiceUrl};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = RegistryClient::new(ClientConfig {
//!     service_urls: vec![ServiceUrl::new("http://127.0.0.1:8761/eureka/")],
//!     ..Default::default()
//! })?;
//! let _refresh = registry.spawn_refresh();
//! let catalog = CatalogClient::builder()
//!     .discovery(registry)
//!     .retry(RetryPolicy::new(2))
//!     .build()?;
//! let title = catalog.title(7).await?;
//! println!("{:?}", title.0);
//! # Ok(())
//! # }
//! ```

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
