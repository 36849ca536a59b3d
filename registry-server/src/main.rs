//! `palisade-registry`: a Eureka-compatible registry server.
//!
//! ```text
//! palisade-registry [--bind 127.0.0.1:8761] [--no-self-preservation] [--no-read-only-cache]
//!                   [--java-lease-expiry] [--eviction-interval-secs N] [--cache-update-secs N]
//! ```

use std::time::Duration;

use palisade_registry_server::{LeaseExpiry, RegistryServer, ServerConfig};

const USAGE: &str = "usage: palisade-registry [--bind ADDR] [--no-self-preservation] \
[--no-read-only-cache] [--java-lease-expiry] [--eviction-interval-secs N] [--cache-update-secs N]";

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
    eprintln!("palisade-registry listening on http://{bind}/eureka/");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = server.serve(listener, shutdown).await {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}
