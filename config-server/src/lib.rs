//! A Spring Cloud Config compatible configuration server, as a library (an axum [`Router`]) and
//! a binary (`palisade-config-server`).
//!
//! - The Spring API: `/{application}/{profile}[/{label}]` (comma-separated profiles, `(_)` for
//!   `/` in labels), the `.yml`, `.properties` and `.json` flat forms, plain resource files with
//!   placeholders resolved, and the v2 media type whose values carry their origin (file and line).
//! - Property sources in Spring Boot's precedence: for each profile (the last one first)
//!   `{app}-{profile}` then `application-{profile}` (and YAML documents activated for the
//!   profile), then `{app}` and `application`.
//! - Backends: [`GitBackend`] (label = branch, tag or commit; version = commit sha; refresh rate)
//!   on libgit2, and [`DirectoryBackend`] for a plain folder.
//! - `{cipher}` values decrypted with AES-256-GCM ([`Cipher`]); `/encrypt` and `/decrypt` only
//!   behind basic auth; the key never appears in logs or responses.
//! - Names, labels and resource paths that try to leave the repository get a 400.
//! - `/health` (also `/actuator/health`) and `/metrics` (Prometheus text).
//!
//! [`Router`]: axum::Router
//!
//! # Example
//!
//! ```
//! use palisade_config_server::{ConfigServer, DirectoryBackend};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let dir = std::env::temp_dir().join(format!("config-server-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(dir.join("application.yml"), "greeting: hello\n")?;
//! std::fs::write(dir.join("orders-prod.yml"), "greeting: hello from prod\n")?;
//!
//! let router = ConfigServer::new(DirectoryBackend::new(&dir)?).router();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let server = tokio::spawn(async move { axum::serve(listener, router).await });
//!
//! // GET /orders/prod answers with the property sources, the most specific first.
//! let mut stream = tokio::net::TcpStream::connect(addr).await?;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! stream.write_all(b"GET /orders/prod HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
//! let mut response = String::new();
//! stream.read_to_string(&mut response).await?;
//! assert!(response.starts_with("HTTP/1.1 200"));
//! let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
//! let env: serde_json::Value = serde_json::from_str(body).unwrap();
//! assert_eq!(env["propertySources"][0]["source"]["greeting"], "hello from prod");
//! server.abort();
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

mod backend;
mod cipher;
pub mod environment;
mod git;
mod server;

pub use backend::{
    Backend, BackendError, DirectoryBackend, Files, Request, check_name, check_relative_path,
};
pub use cipher::{Cipher, CipherError};
pub use git::GitBackend;
pub use server::{ConfigServer, V2_MEDIA_TYPE};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
