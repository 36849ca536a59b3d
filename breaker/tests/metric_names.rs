//! Every metric the crate registers has a name and label keys from ARCHITECTURE.md, or is one
//! of the additions listed in the README ("Metrics"), named by the same scheme
//! (`palisade_<component>_<what>[_total]{name,...}`).
#![cfg(feature = "metrics")]

use std::collections::BTreeSet;

use metrics_util::debugging::DebuggingRecorder;

/// ARCHITECTURE.md's names for this crate, with their label keys.
const DOCUMENTED: &[&str] = &[
    "palisade_breaker_calls_total{name,outcome}",
    "palisade_breaker_state{name}",
    "palisade_breaker_transitions_total{name,from,to}",
    "palisade_bulkhead_in_flight{name}",
    "palisade_bulkhead_rejections_total{name}",
    "palisade_retry_attempts_total{name,result}",
];

/// Names ARCHITECTURE.md has none for (listed in the README).
const ADDITIONS: &[&str] = &["palisade_ratelimit_rejections_total{name}"];

#[test]
fn every_registered_metric_is_documented() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // This test binary holds this one test, so the process-wide recorder is ours.
    metrics::set_global_recorder(recorder).unwrap();
    // Every listener registers its handles up front (no per-call registration); a breaker
    // registers its transitions counter on the first transition, so force one.
    let _breaker = palisade_breaker::metrics::MetricsListener::new("a");
    let _bulkhead = palisade_breaker::bulkhead::MetricsListener::new("a");
    let _retry = palisade_breaker::retry::MetricsListener::new("a");
    let _ratelimit = palisade_breaker::ratelimit::MetricsListener::new("a");
    use palisade_breaker::circuit::{Listener, State, Transition};
    _breaker.on_transition(
        "a",
        &Transition {
            from: State::Closed,
            to: State::Open,
            reason: None,
        },
    );

    let seen: BTreeSet<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, ..)| {
            let k = key.key();
            let labels: Vec<&str> = k.labels().map(|l| l.key()).collect();
            format!("{}{{{}}}", k.name(), labels.join(","))
        })
        .collect();
    let allowed: BTreeSet<String> = DOCUMENTED
        .iter()
        .chain(ADDITIONS)
        .map(|s| s.to_string())
        .collect();
    let unknown: Vec<_> = seen.difference(&allowed).collect();
    assert!(unknown.is_empty(), "undocumented metrics: {unknown:?}");
    let missing: Vec<_> = allowed.difference(&seen).collect();
    assert!(missing.is_empty(), "never registered: {missing:?}");
}
