//! Declarative HTTP clients on tower: annotate a trait with [`#[client]`](client) and get a
//! client that implements it over any `tower::Service<http::Request<Body>>`, with per-method
//! timeouts, retries (idempotent methods only, within a budget), a circuit breaker and a
//! fallback.
//!
//! ```
//! use palisade_client::{client, stack::StackBuilder, ClientError, Json};
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! pub struct Title {
//!     pub id: u64,
//!     pub name: String,
//! }
//!
//! #[client(base_path = "/api/v1", timeout = "2s")]
//! pub trait Catalog {
//!     #[get("/titles/{id}")]
//!     async fn title(&self, #[path] id: u64, #[query] lang: Option<&str>) -> Result<Json<Title>, ClientError>;
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let stack = StackBuilder::new("catalog")
//!     .base_url("http://127.0.0.1:1")
//!     .unwrap()
//!     .build()
//!     .unwrap();
//! let catalog = CatalogClient::new(stack);
//! // Nothing listens on port 1.
//! let err = catalog.title(7, Some("en")).await.unwrap_err();
//! assert!(err.is_transport());
//! assert_eq!(err.method(), "Catalog::title");
//! # }
//! ```
//!
//! See the [`client`] macro for the attributes, and [`stack`] for the middleware.
//!
//! Set `PALISADE_CLIENT_EXPAND=1` (or to a trait name) while building to print what the macro
//! generates.

mod body;
mod error;
mod meta;
mod response;
pub mod stack;
pub mod trace;
pub mod transport;

#[doc(hidden)]
pub mod __private;

pub use bytes::Bytes;
pub use http;

pub use crate::body::{Body, EncodedBody, Form, IntoRequestBody, Json, ReplayableBody, ResponseBody};
pub use crate::error::{ApiError, CallError, ClientError};
pub use crate::meta::{MethodMeta, RetrySpec};
pub use crate::response::FromResponse;

pub use palisade_client_macros::client;

/// The error type at service boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
