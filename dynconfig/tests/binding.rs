//! Binding a section to a live, stateful component: its config changes, its counters stay.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use palisade_dynconfig::{Config, UpdateOutcome};
use serde::Deserialize;

/// What a middleware's config looks like: `serde::Deserialize`, validated.
#[derive(Debug, Clone, Deserialize, PartialEq)]
struct GateConfig {
    failure_threshold: u32,
    #[serde(default = "default_window")]
    window: String,
}

fn default_window() -> String {
    "10s".into()
}

impl GateConfig {
    fn validate(&self) -> Result<(), String> {
        if self.failure_threshold == 0 {
            return Err("failure_threshold must be at least 1".into());
        }
        Ok(())
    }
}

/// A small stateful component with a `reconfigure` handle, standing in for the circuit breaker.
#[derive(Debug, Default)]
struct Gate {
    threshold: AtomicU32,
    failures: AtomicU64,
    reconfigured: AtomicU64,
}

impl Gate {
    fn record_failure(&self) -> bool {
        let f = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
        f >= u64::from(self.threshold.load(Ordering::SeqCst))
    }
    fn reconfigure(&self, c: &GateConfig) {
        self.threshold.store(c.failure_threshold, Ordering::SeqCst);
        self.reconfigured.fetch_add(1, Ordering::SeqCst);
    }
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_the_yaml_retunes_a_live_component_without_losing_counters() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, "breaker:\n  orders:\n    failure_threshold: 5\n").unwrap();
    let config = Config::builder().file(&file).build().unwrap();

    let gate = Arc::new(Gate::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let g = gate.clone();
    let bound = config
        .bind_validated(
            "breaker.orders",
            GateConfig::validate,
            move |c: &GateConfig| {
                g.reconfigure(c);
                let _ = tx.send(c.clone());
            },
        )
        .unwrap();
    gate.reconfigure(&bound.load());
    assert_eq!(gate.threshold.load(Ordering::SeqCst), 5);
    assert_eq!(bound.load().window, "10s");
    for _ in 0..3 {
        assert!(!gate.record_failure());
    }

    let _watcher = config.watch_files(Duration::from_millis(50)).unwrap();
    let mut events = config.events();

    // A valid change: the threshold drops to 4 and the 3 failures are kept, so one more trips.
    write_atomically(
        &file,
        "breaker:\n  orders:\n    failure_threshold: 4\n    window: 30s\n",
    );
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        GateConfig {
            failure_threshold: 4,
            window: "30s".into()
        }
    );
    assert_eq!(gate.threshold.load(Ordering::SeqCst), 4);
    assert_eq!(
        gate.failures.load(Ordering::SeqCst),
        3,
        "counters survive the reconfigure"
    );
    assert!(
        gate.record_failure(),
        "the 4th failure reaches the new threshold"
    );

    // An invalid value: rejected with file, line and key; the gate keeps threshold 4.
    write_atomically(
        &file,
        "breaker:\n  orders:\n    window: 30s\n    failure_threshold: 0\n",
    );
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
    assert!(rejected.message().contains("at least 1"), "{rejected}");
    assert_eq!(
        rejected.source_name(),
        Some(file.display().to_string().as_str())
    );
    assert_eq!(rejected.line(), Some(2), "the line of the bound section");
    // A value of the wrong type: the error names the exact key and line.
    write_atomically(
        &file,
        "breaker:\n  orders:\n    window: 30s\n    failure_threshold: lots\n",
    );
    let rejected = loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let UpdateOutcome::Rejected(e) = ev.outcome {
            break e;
        }
    };
    assert_eq!(rejected.key(), Some("breaker.orders.failure_threshold"));
    assert_eq!(rejected.line(), Some(4));
    assert!(
        rejected
            .to_string()
            .contains("app.yaml line 4 key `breaker.orders.failure_threshold`"),
        "{rejected}"
    );
    assert_eq!(gate.threshold.load(Ordering::SeqCst), 4);
    assert_eq!(bound.load().failure_threshold, 4);

    // Broken YAML: a syntax error with its line; still the last good config.
    write_atomically(&file, "breaker:\n  orders: [unclosed\n");
    let rejected = loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let UpdateOutcome::Rejected(e) = ev.outcome {
            break e;
        }
    };
    assert!(rejected.is_syntax(), "{rejected}");
    assert!(rejected.line().is_some(), "{rejected}");

    // Fixed again: applied, and only valid values ever reached the gate.
    write_atomically(&file, "breaker:\n  orders:\n    failure_threshold: 9\n");
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.failure_threshold, 9);
    assert_eq!(gate.failures.load(Ordering::SeqCst), 4);
    assert_eq!(
        gate.reconfigured.load(Ordering::SeqCst),
        3,
        "initial + two valid changes"
    );
}

#[test]
fn a_binding_rejects_an_override_it_cannot_decode() {
    let config = Config::builder()
        .defaults(serde_json::json!({"gate": {"failure_threshold": 3}}))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let p = config
        .bind("gate", move |_: &GateConfig| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let err = config
        .set_override("gate.failure_threshold", -1)
        .unwrap_err();
    assert_eq!(err.key(), Some("gate.failure_threshold"));
    assert_eq!(err.source_name(), Some("override"));
    assert_eq!(p.load().failure_threshold, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    config.set_override("gate.failure_threshold", "8").unwrap();
    assert_eq!(p.load().failure_threshold, 8);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // An unrelated change does not call the binding again.
    config.set_override("other", 1).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
