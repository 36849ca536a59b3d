//! Layered, typed, live configuration: Archaius for Rust.
//!
//! A [`Config`] merges layers of sources, lowest to highest priority: defaults, files (TOML,
//! YAML, JSON, Java properties; watched with `notify` and debounced), environment variables with
//! a prefix, a Spring Cloud Config compatible server (feature `remote`), and runtime overrides.
//!
//! - [`Property<T>`] reads are lock-free and allocation-free: the value is decoded once per
//!   snapshot and loaded from an `ArcSwap` (integers, floats, bools, chars and durations from
//!   one `AtomicU64`).
//! - Changes arrive through [`Property::watch`], [`Property::subscribe`] callbacks,
//!   [`Config::events`] and [`Config::changes`].
//! - Derived properties: [`Property::map`] and fallback keys ([`PropertyBuilder::or_key`]).
//! - `${key}` and `${key:default}` placeholders resolve across layers.
//! - [`Config::bind`] ties a section to a `serde::Deserialize` struct and a callback: the glue
//!   that lets a middleware's `reconfigure` run whenever its section changes.
//! - Every update is validated before the new snapshot is swapped in: a broken file or a value
//!   that does not decode keeps the last good configuration, and the error says which file, line
//!   and key.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
//! use palisade_dynconfig::Config;
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize, PartialEq)]
//! struct BreakerConfig {
//!     failure_threshold: u32,
//!     #[serde(default)]
//!     name: String,
//! }
//!
//! # fn main() -> Result<(), palisade_dynconfig::ConfigError> {
//! let dir = std::env::temp_dir().join(format!("dynconfig-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let file = dir.join("app.yaml");
//! std::fs::write(&file, "server:\n  port: 8080\nbreaker:\n  orders:\n    failure_threshold: 5\n").unwrap();
//!
//! let config = Config::builder()
//!     .default_value("server.host", "127.0.0.1")
//!     .default_value("server.url", "http://${server.host}:${server.port}")
//!     .file(&file)
//!     .env_vars("APP", [("APP_SERVER__PORT", "9090")]) // env beats files
//!     .build()?;
//!
//! let port = config.property::<u16>("server.port", 80)?;
//! assert_eq!(port.get(), 9090);
//! // Placeholders resolve across layers: the host from the defaults, the port from the env.
//! let url = config.property("server.url", String::new())?;
//! assert_eq!(url.get(), "http://127.0.0.1:9090");
//!
//! // Bind a section to a struct; the callback is where a middleware's `reconfigure` goes.
//! let seen = Arc::new(AtomicU32::new(0));
//! let seen2 = seen.clone();
//! let breaker = config.bind("breaker.orders", move |c: &BreakerConfig| {
//!     seen2.store(c.failure_threshold, Ordering::SeqCst);
//! })?;
//! assert_eq!(breaker.load().failure_threshold, 5);
//!
//! config.set_override("breaker.orders.failure_threshold", 7)?;
//! assert_eq!(seen.load(Ordering::SeqCst), 7);
//!
//! // A bad value is rejected: the last good configuration stays, and the error names the key.
//! let err = config.set_override("breaker.orders.failure_threshold", "many").unwrap_err();
//! assert_eq!(err.key(), Some("breaker.orders.failure_threshold"));
//! assert_eq!(breaker.load().failure_threshold, 7);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `metrics` | `palisade_dynconfig_updates_total{source,result}` through the `metrics` facade |
//! | `remote` | the `remote` module: the Spring Cloud Config client source (poll, webhook trigger, last known good) |

mod config;
mod error;
pub mod format;
mod lenient;
mod placeholder;
mod property;
#[cfg(feature = "remote")]
pub mod remote;
mod scalar;
pub mod value;
mod watch;

pub use config::{Config, ConfigBuilder, ConfigEvent, Snapshot, SourceKind, UpdateOutcome};
pub use error::ConfigError;
pub use property::{Property, PropertyBuilder};
pub use watch::FileWatcher;

/// Resolves every `${key}` / `${key:default}` placeholder in the string values of `tree` against
/// the tree itself (what each snapshot goes through).
///
/// # Errors
/// A placeholder that refers to a missing key or a section, or that loops; the error names the
/// key holding it.
pub fn resolve_placeholders(tree: &serde_json::Value) -> Result<serde_json::Value, ConfigError> {
    placeholder::resolve(tree)
}

/// Expands the placeholders in a text (a configuration file served as a plain resource) against
/// `tree`. Placeholders that cannot be resolved are left as written.
pub fn expand_placeholders(tree: &serde_json::Value, text: &str) -> String {
    placeholder::expand(tree, text, 0, true).unwrap_or_else(|_| text.to_owned())
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
