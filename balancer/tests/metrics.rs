//! The `metrics` feature exports the names from ARCHITECTURE.md.
#![cfg(feature = "metrics")]

mod common;

use std::time::Duration;

use common::{balancer, sim_svc};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use palisade_balancer::{Config, OutlierConfig, Policy};
use tower::{Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn endpoint_gauges_and_ejection_counter() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // This test binary holds this one test, so the process-wide recorder is ours.
    metrics::set_global_recorder(recorder).unwrap();
    let cfg = Config::with_policy(Policy::RoundRobin)
        .outlier(OutlierConfig {
            consecutive_failures: Some(2),
            success_rate: None,
            max_ejection_percent: 1.0,
            ..OutlierConfig::default()
        })
        .panic_threshold(0.0);
    let mut lb = balancer(
        cfg,
        vec![
            (sim_svc(0, Duration::from_millis(1), |_| false), 1),
            (sim_svc(1, Duration::from_millis(1), |_| true), 1),
        ],
    );
    for _ in 0..6 {
        let _ = lb.ready().await.unwrap().call(()).await;
    }
    let mut seen = std::collections::HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let k = key.key();
        let mut labels: Vec<String> = k
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        seen.insert(format!("{}{{{}}}", k.name(), labels.join(",")), value);
    }
    assert_eq!(
        seen.get("palisade_balancer_ejections_total{reason=consecutive_failures,service=default}"),
        Some(&DebugValue::Counter(1)),
        "{seen:?}"
    );
    let gauge = |state: &str| {
        seen.get(&format!(
            "palisade_balancer_endpoints{{service=default,state={state}}}"
        ))
    };
    assert_eq!(gauge("active"), Some(&DebugValue::Gauge(1.0.into())));
    assert_eq!(gauge("ejected"), Some(&DebugValue::Gauge(1.0.into())));
    assert_eq!(gauge("breaker_open"), Some(&DebugValue::Gauge(0.0.into())));
}
