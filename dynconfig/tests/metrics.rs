//! `palisade_dynconfig_updates_total{source,result}` through the `metrics` facade.
#![cfg(feature = "metrics")]

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use palisade_dynconfig::Config;

#[test]
fn updates_are_counted_by_source_and_result() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let config = Config::builder()
            .defaults(serde_json::json!({"n": 1}))
            .build()
            .unwrap();
        let _n = config.property::<u32>("n", 0).unwrap();
        config.set_override("n", 2).unwrap();
        config.set_override("n", 2).unwrap();
        config.set_override("n", "x").unwrap_err();
        config.set_override("n", "y").unwrap_err();
    });
    let mut counts = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        assert_eq!(key.key().name(), "palisade_dynconfig_updates_total");
        let labels: Vec<String> = key
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let DebugValue::Counter(n) = value else {
            panic!("not a counter")
        };
        counts.insert(labels.join(","), n);
    }
    assert_eq!(counts.get("source=override,result=applied"), Some(&1));
    assert_eq!(counts.get("source=override,result=unchanged"), Some(&1));
    assert_eq!(counts.get("source=override,result=rejected"), Some(&2));
}
