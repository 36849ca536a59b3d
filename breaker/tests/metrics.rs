//! The `metrics` listener exports the names from ARCHITECTURE.md.
#![cfg(feature = "metrics")]

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use palisade_breaker::circuit::{CircuitBreakerLayer, Config, TripPolicy};
use palisade_breaker::metrics::MetricsListener;
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::test(start_paused = true)]
async fn calls_state_and_transitions_are_exported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // This test binary holds this one test, so the process-wide recorder is ours.
    metrics::set_global_recorder(recorder).unwrap();
    let listener = MetricsListener::new("payments");
    let layer = CircuitBreakerLayer::builder("payments")
        .config(
            Config::builder()
                .trip(TripPolicy::consecutive_failures(2))
                .build()
                .unwrap(),
        )
        .listener(listener)
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|fail: bool| async move { if fail { Err("x") } else { Ok(()) } });
    svc.ready().await.unwrap().call(false).await.unwrap();
    for _ in 0..2 {
        let _ = svc.ready().await.unwrap().call(true).await;
    }
    let _ = svc.ready().await.unwrap().call(false).await;

    let mut seen = std::collections::HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let k = key.key();
        let labels: Vec<String> = k
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        seen.insert(format!("{}{{{}}}", k.name(), labels.join(",")), value);
    }
    let counter = |name: &str| match seen.get(name) {
        Some(DebugValue::Counter(v)) => *v,
        other => panic!("{name}: {other:?} in {:?}", seen.keys()),
    };
    assert_eq!(
        counter("palisade_breaker_calls_total{name=payments,outcome=success}"),
        1
    );
    assert_eq!(
        counter("palisade_breaker_calls_total{name=payments,outcome=failure}"),
        2
    );
    assert_eq!(
        counter("palisade_breaker_calls_total{name=payments,outcome=rejected}"),
        1
    );
    assert_eq!(
        counter("palisade_breaker_transitions_total{name=payments,from=closed,to=open}"),
        1
    );
    match seen.get("palisade_breaker_state{name=payments}") {
        Some(DebugValue::Gauge(v)) => assert_eq!(v.into_inner(), 1.0, "open"),
        other => panic!("state gauge: {other:?}"),
    }
}
