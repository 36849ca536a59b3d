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
//! # Attributes
//!
//! On the trait, `#[client(...)]` takes:
//!
//! | key | meaning |
//! |---|---|
//! | `service = "catalog"` | the logical service name: `CatalogClient::SERVICE`, what [`ClientBuilder::discovery`] looks up, the `service` of spans and metrics |
//! | `base_path = "/api/v1"` | prefix of every method path |
//! | `timeout = "2s"` | timeout of every method (humantime syntax) |
//! | `retry = 3` / `retry = "never"` | retries of the idempotent methods |
//! | `headers("user-agent" = "x", ...)` | static headers on every request |
//! | `fallback = Type` | a `Type: Trait` called when the circuit breaker rejects a call; `new` then takes it |
//! | `fallback_on = "failure"` | also fall back on transport errors and timeouts (default `"rejection"`: only when the breaker rejects) |
//!
//! On each `async fn`, one of `#[get]`, `#[post]`, `#[put]`, `#[patch]`, `#[delete]`, `#[head]`
//! with the path (`"/titles/{id}"`) and optionally `timeout`, `retry`, `headers(...)`,
//! `idempotent` (lets a POST or PATCH be retried), `fallback = false` (no fallback for this
//! method) and `fallback = OtherType` (this method's own fallback: a `OtherType: Trait +
//! Default`, built once by `new`).
//!
//! Each parameter is one of:
//!
//! | attribute | type | becomes |
//! |---|---|---|
//! | `#[path]`, `#[path("name")]` | `Display` | a `{name}` segment, percent-encoded |
//! | `#[query]`, `#[query("name")]` | scalar, `Option<_>` (absent if `None`), `Vec<_>` (repeated) | `?name=value` |
//! | `#[query(flatten)]` | `Serialize` struct | one pair per field |
//! | `#[header("name")]` | string, number, `HeaderValue`, `Option<_>` | a header |
//! | `#[headers]` | `HeaderMap` | headers |
//! | `#[body]` | [`Json<T>`], [`Form<T>`], [`Bytes`], `Vec<u8>`, `String`, `&str`, streaming [`Body`] | the body and its `content-type` |
//!
//! Methods return `Result<T, ClientError>` or `Result<T, ApiError<E>>` (the error body decoded
//! as JSON `E`), with `T` one of [`Json<T>`], `String`, [`Bytes`], `()`, [`ResponseBody`]
//! (streamed) or `http::Response<ResponseBody>` (every status returned as is). Non-2xx statuses
//! are errors carrying the status, headers and body.
//!
//! Mistakes are compile errors: a `{placeholder}` without its `#[path]` parameter and the
//! reverse, two bodies, a body on GET or HEAD, `retry` on POST/PATCH without `idempotent`,
//! `retry` (or a fallback) with a streaming body, unknown keys, a fallback type that does not
//! implement the trait.
//!
//! # The stack
//!
//! The generated `TraitClient<S>` works over any `S: Service<http::Request<Body>>` that returns
//! `http::Response<B>`. `TraitClient::builder()` ([`ClientBuilder`]) assembles the standard one
//! and picks the service name from the macro: retries ([`stack::RetryPolicy`]: exponential
//! backoff with full jitter, `Retry-After`, a budget, idempotent methods only) → circuit
//! breaker → timeout → interceptors ([`stack::BearerAuth`], [`trace::Traceparent`],
//! [`trace::B3`]) → a fixed base URL, or (feature `discovery`) a balancer over the instances that
//! the registry's `Discover` stream gives for `service = "..."` → the hyper-util transport
//! ([`transport`]; pooled, HTTP/1.1 or HTTP/2). [`stack::StackBuilder`] builds the same stack
//! over any transport. The method's [`MethodMeta`] travels in the request extensions, so each
//! layer applies the method's own timeout and retry settings.
//!
//! # Observability
//!
//! Each call runs in a `debug` span `palisade_client.call` with the fields `method`
//! (`"Catalog::title"`), `service`, `http.method`, `http.status_code` and `outcome` (`success`,
//! `status`, `timeout`, `rejected`, `transport`, `decode`, `encode`, `fallback`). With the
//! `metrics` feature: `palisade_client_calls_total{service,method,outcome}`,
//! `palisade_client_call_duration_seconds{service,method}` and the retry's
//! `palisade_retry_attempts_total{name,result}`; recording allocates nothing (the labels are
//! built at compile time in each method's `static` metadata).
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `discovery` | [`ClientBuilder::discovery`]: a `palisade-balancer` balancer over a `palisade-registry-client` `Discover` stream |
//! | `metrics` | the metrics above, through the `metrics` facade |
//!
//! Set `PALISADE_CLIENT_EXPAND=1` (or to a trait name) while building to print what the macro
//! generates.

mod body;
mod builder;
mod error;
mod meta;
mod observe;
mod response;
pub mod stack;
pub mod trace;
pub mod transport;

#[doc(hidden)]
pub mod __private;

pub use bytes::Bytes;
pub use http;

pub use crate::body::{
    Body, EncodedBody, Form, IntoRequestBody, Json, ReplayableBody, ResponseBody,
};
#[cfg(feature = "discovery")]
pub use crate::builder::DiscoverySource;
pub use crate::builder::{
    BuildError, ClientBuilder, ClientStack, GeneratedClient, Transport, TransportFuture,
};
pub use crate::error::{ApiError, CallError, ClientError};
pub use crate::meta::{MethodMeta, RetrySpec};
pub use crate::response::FromResponse;

pub use palisade_client_macros::client;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The error type at service boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
