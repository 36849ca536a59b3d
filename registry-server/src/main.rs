//! `palisade-registry`: a Eureka-compatible registry server.
//!
//! ```text
//! palisade-registry [--bind 127.0.0.1:8761] [--config server.json] [--no-self-preservation]
//!                   [--no-read-only-cache] [--java-lease-expiry] [--eviction-interval-secs N]
//!                   [--cache-update-secs N] [--peer URL]...
//! ```
//!
//! `--config` reads a JSON `ServerConfig` (durations as "30s"; missing fields take the defaults);
//! flags after it override it.

use std::time::Duration;

use palisade_registry_server::{LeaseExpiry, RegistryServer, ServerConfig};

const USAGE: &str = "usage: palisade-registry [--bind ADDR] [--config FILE.json] \
[--no-self-preservation] [--no-read-only-cache] [--java-lease-expiry] [--eviction-interval-secs N] \
[--cache-update-secs N] [--peer URL]...";

fn parse_args() -> Result<(String, ServerConfig), String> {
    let mut bind = "127.0.0.1:8761".to_owned();
    let mut config = ServerConfig::default();
    let mut args = std::env::args().skip(1);
    let secs = |v: Option<String>, name: &str| -> Result<Duration, String> {
        v.and_then(|v| v.parse().ok())
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{name} needs a number of seconds"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" => bind = args.next().ok_or("--bind needs an address")?,
            "--config" => {
                let path = args.next().ok_or("--config needs a file")?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {path}: {e}"))?;
                config = serde_json::from_str(&text)
                    .map_err(|e| format!("invalid config {path}: {e}"))?;
            }
            "--peer" => config
                .peers
                .peer_urls
                .push(args.next().ok_or("--peer needs a URL")?),
            "--no-self-preservation" => config.enable_self_preservation = false,
            "--no-read-only-cache" => config.use_read_only_response_cache = false,
            "--java-lease-expiry" => config.lease_expiry = LeaseExpiry::JavaDoubleDuration,
            "--eviction-interval-secs" => {
                config.eviction_interval = secs(args.next(), "--eviction-interval-secs")?;
            }
            "--cache-update-secs" => {
                config.response_cache_update_interval = secs(args.next(), "--cache-update-secs")?;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok((bind, config))
}

#[tokio::main]
async fn main() {
    let (bind, config) = match parse_args() {
        Ok(v) => v,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let server = match RegistryServer::new(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot bind {bind}: {e}");
            std::process::exit(1);
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .init();
    eprintln!("palisade-registry listening on http://{bind}/eureka/");
    let shutdown = async {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        eprintln!("palisade-registry shutting down");
    };
    if let Err(e) = server.serve(listener, shutdown).await {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}
