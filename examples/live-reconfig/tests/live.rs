//! Rewriting a YAML file re-tunes a live circuit breaker through dynconfig, keeping its counters;
//! a bad value is rejected with file, line and key, and the breaker keeps its config.

use std::path::Path;
use std::time::Duration;

use palisade_breaker::State;
use palisade_breaker::circuit::{CircuitBreakerLayer, Config as BreakerConfig, TripPolicy};
use palisade_dynconfig::{Config, UpdateOutcome};
use tower::{Service, ServiceBuilder, ServiceExt};

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

const YAML: &str = "breaker:
  orders:
    window: { type: count, size: 20 }
    minimum_calls: 4
    trip: { failure_rate: RATE }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_edit_retunes_a_live_breaker_without_losing_its_counters() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, YAML.replace("RATE", "0.9")).unwrap();
    let config = Config::builder().file(&file).build().unwrap();

    let layer = CircuitBreakerLayer::new("orders", BreakerConfig::default()).unwrap();
    let handle = layer.handle();
    let (tx, mut applied) = tokio::sync::mpsc::unbounded_channel();
    let h = handle.clone();
    let initial = config
        .bind_validated(
            "breaker.orders",
            |c: &BreakerConfig| c.validate().map_err(|e| e.to_string()),
            move |c: &BreakerConfig| {
                h.reconfigure(c.clone()).unwrap();
                let _ = tx.send(());
            },
        )
        .unwrap();
    handle.reconfigure((*initial.load()).clone()).unwrap();
    assert_eq!(handle.config().trip, vec![TripPolicy::FailureRate(0.9)]);

    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|fail: bool| async move { if fail { Err("down") } else { Ok(()) } });
    for fail in [true, true, true, false, false] {
        let _ = svc.ready().await.unwrap().call(fail).await;
    }
    assert_eq!(handle.state(), State::Closed, "60% failures is below 90%");

    let _watcher = config.watch_files(Duration::from_millis(50)).unwrap();
    let mut events = config.events();

    // Lower the threshold to 50%: same window shape, so the 5 recorded calls are kept.
    write_atomically(&file, &YAML.replace("RATE", "0.5"));
    tokio::time::timeout(Duration::from_secs(10), applied.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(handle.config().trip, vec![TripPolicy::FailureRate(0.5)]);
    let snap = handle.snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (5, 3),
        "counters survive the reconfigure"
    );
    // One more failure: 4 of 6 >= 50%.
    let _ = svc.ready().await.unwrap().call(true).await;
    assert_eq!(handle.state(), State::Open);

    // An out-of-range rate: rejected before the swap, with the file and the key.
    write_atomically(&file, &YAML.replace("RATE", "1.5"));
    let rejected = loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let UpdateOutcome::Rejected(e) = ev.outcome {
            break e;
        }
    };
    assert_eq!(rejected.key(), Some("breaker.orders"));
    assert!(rejected.message().contains("failure_rate"), "{rejected}");
    assert_eq!(
        rejected.source_name(),
        Some(file.display().to_string().as_str())
    );
    assert_eq!(
        handle.config().trip,
        vec![TripPolicy::FailureRate(0.5)],
        "old config kept"
    );
}
