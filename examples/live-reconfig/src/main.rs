//! A circuit breaker whose config lives in a YAML file and changes without a restart.
//!
//! `cargo run -p palisade-example-live-reconfig -- breaker.yaml` loads `breaker.orders` from the
//! file, watches it, and applies every valid edit to the running breaker (counters kept); an
//! invalid edit is rejected with its file, line and key, and the breaker keeps its config.

use std::time::Duration;

use palisade_breaker::circuit::{CircuitBreakerLayer, Config as BreakerConfig};
use palisade_dynconfig::{Config, UpdateOutcome};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "breaker.yaml".into());
    let config = Config::builder().file(&path).build()?;
    let layer = CircuitBreakerLayer::new("orders", BreakerConfig::default())?;
    let handle = layer.handle();

    let h = handle.clone();
    let initial = config.bind_validated(
        "breaker.orders",
        |c: &BreakerConfig| c.validate().map_err(|e| e.to_string()),
        move |c: &BreakerConfig| {
            if let Err(e) = h.reconfigure(c.clone()) {
                eprintln!("not applied: {e}");
            }
        },
    )?;
    handle.reconfigure((*initial.load()).clone())?;
    let _watcher = config.watch_files(Duration::from_millis(100))?;
    println!(
        "breaker `orders` configured from {path}: {:?}",
        handle.config()
    );

    let mut events = config.events();
    while let Ok(ev) = events.recv().await {
        match ev.outcome {
            UpdateOutcome::Applied { version } => {
                println!("config version {version}: {:?}", handle.snapshot())
            }
            UpdateOutcome::Rejected(e) => println!("rejected, previous config kept: {e}"),
            _ => {}
        }
    }
    Ok(())
}
