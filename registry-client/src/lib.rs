//! The Eureka wire model and a Eureka registry client.
//!
//! * [`model`]: instances, applications, statuses, leases, `apps__hashcode` and delta merging.
//! * [`json`] and [`xml`]: Eureka's two wire formats with the exact field names (`$`/`@enabled`
//!   ports, `@class`), accepting the single-object-instead-of-array quirk of old servers.
//! * [`RegistryClient`]: register, renew, cancel, status and metadata calls; full then delta
//!   fetches reconciled by `apps__hashcode`; failover across servers, same zone first; basic auth;
//!   gzip; a local cache that keeps serving when every server is down; [`Registration`] keeps an
//!   instance registered and deregisters on shutdown.
//! * [`EndpointDiscover`]: a `tower::discover::Discover` stream of the `UP` instances of an
//!   application or VIP, fed by the local cache.
//!
//! | feature | what it adds |
//! |---|---|
//! | `etcd` | `etcd::EtcdRegistry`: the same registry and Discover streams on etcd v3, with leases for liveness |
//!
//! The wire model:
//!
//! ```
//! use palisade_registry_client::model::{InstanceInfo, InstanceStatus, PortInfo};
//! use palisade_registry_client::{json, xml};
//!
//! let inst = InstanceInfo {
//!     instance_id: "h1:orders:8080".into(),
//!     host_name: "h1".into(),
//!     app: "ORDERS".into(),
//!     ip_addr: "10.0.0.5".into(),
//!     status: InstanceStatus::Up,
//!     port: Some(PortInfo::enabled(8080)),
//!     ..Default::default()
//! };
//! let body = json::encode_instance(&inst);
//! assert!(String::from_utf8_lossy(&body).contains(r#""port":{"$":8080,"@enabled":"true"}"#));
//! assert_eq!(json::decode_instance(&body)?, inst);
//! assert_eq!(xml::decode_instance(&xml::encode_instance(&inst))?, inst);
//! # Ok::<(), palisade_registry_client::WireError>(())
//! ```
//!
//! The client: stay registered, keep a local copy of the registry, follow an application.
//!
//! ```no_run
//! use futures::StreamExt;
//! use palisade_registry_client::model::{DataCenterInfo, InstanceInfo, InstanceStatus, PortInfo};
//! use palisade_registry_client::{ClientConfig, RegistryClient, ServiceUrl};
//! use tower::discover::Change;
//!
//! # async fn run() -> Result<(), palisade_registry_client::ClientError> {
//! let client = RegistryClient::new(ClientConfig {
//!     service_urls: vec![
//!         ServiceUrl::in_zone("http://eureka-a:8761/eureka/", "zone-a"),
//!         ServiceUrl::in_zone("http://eureka-b:8761/eureka/", "zone-b"),
//!     ],
//!     zone: Some("zone-a".into()),
//!     ..Default::default()
//! })?;
//! let registration = client.start_registration(InstanceInfo {
//!     instance_id: "host1:orders:8080".into(),
//!     host_name: "host1".into(),
//!     app: "ORDERS".into(),
//!     ip_addr: "10.0.0.5".into(),
//!     status: InstanceStatus::Up,
//!     port: Some(PortInfo::enabled(8080)),
//!     data_center_info: DataCenterInfo::my_own(),
//!     ..Default::default()
//! });
//! let _refresh = client.spawn_refresh();
//! let mut payments = client.discover_app("PAYMENTS");
//! while let Some(Ok(change)) = payments.next().await {
//!     match change {
//!         Change::Insert(id, endpoint) => println!("+ {id} at {:?}", endpoint.socket_addr()),
//!         Change::Remove(id) => println!("- {id}"),
//!     }
//! #   break;
//! }
//! registration.shutdown().await?; // deregisters
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod discover;
pub mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod json;
pub mod model;
pub mod xml;

pub use client::{
    ClientConfig, ClientError, Heartbeat, Refresh, Registration, RegistryClient, Renewal,
    ServiceUrl, basic_auth_value, split_credentials,
};
pub use discover::{Endpoint, EndpointDiscover};
pub use error::WireError;
pub use model::{
    ActionType, Application, Applications, DataCenterInfo, InstanceInfo, InstanceStatus, LeaseInfo,
    PortInfo,
};
