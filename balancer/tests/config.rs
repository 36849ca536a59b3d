//! Config: serde with humantime, validation naming the field, live reconfiguration.

mod common;

use std::time::Duration;

use common::{balancer, id_svc};
use palisade_balancer::{Config, OutlierConfig, Policy};
use tower::{Service, ServiceExt};

#[test]
fn yaml_round_trip_with_humantime() {
    let yaml = r#"
policy: { type: least_outstanding }
outlier:
  interval: 5s
  base_ejection_time: 30s
  max_ejection_time: 5m
  max_ejection_percent: 0.2
  consecutive_failures: 3
  success_rate: { stdev_factor: 1.5, minimum_hosts: 3, request_volume: 20 }
  failure_percentage: { threshold: 0.5 }
panic_threshold: 0.3
"#;
    let cfg: Config = serde_yaml::from_str(yaml).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.policy, Policy::LeastOutstanding);
    let o = cfg.outlier.as_ref().unwrap();
    assert_eq!(o.max_ejection_time, Duration::from_secs(300));
    assert_eq!(o.success_rate.as_ref().unwrap().stdev_factor, 1.5);
    assert_eq!(
        o.failure_percentage.as_ref().unwrap().request_volume,
        50,
        "default kept"
    );
    let back: Config = serde_yaml::from_str(&serde_yaml::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
    assert!(
        serde_yaml::from_str::<Config>("polcy: {type: random}").is_err(),
        "unknown field"
    );
}

#[test]
fn validation_names_the_field() {
    let bad = |cfg: Config| cfg.validate().unwrap_err().field().to_owned();
    assert_eq!(
        bad(Config::default().panic_threshold(1.5)),
        "panic_threshold"
    );
    assert_eq!(
        bad(Config::with_policy(Policy::PeakEwma {
            default_rtt: Duration::ZERO,
            decay: Duration::from_secs(1)
        })),
        "policy.default_rtt"
    );
    let o = OutlierConfig {
        max_ejection_time: Duration::from_secs(1),
        ..OutlierConfig::default()
    };
    assert_eq!(
        bad(Config::default().outlier(o)),
        "outlier.max_ejection_time"
    );
    let o = OutlierConfig {
        consecutive_failures: Some(0),
        ..OutlierConfig::default()
    };
    assert_eq!(
        bad(Config::default().outlier(o)),
        "outlier.consecutive_failures"
    );
    let o = OutlierConfig {
        max_ejection_percent: -0.1,
        ..OutlierConfig::default()
    };
    assert_eq!(
        bad(Config::default().outlier(o)),
        "outlier.max_ejection_percent"
    );
    let err = palisade_balancer::Balance::builder(palisade_balancer::discover::StaticList::<
        usize,
        (),
    >::new([]))
    .config(Config::default().panic_threshold(2.0))
    .build::<()>()
    .unwrap_err();
    assert!(err.to_string().contains("panic_threshold"), "{err}");
}

#[tokio::test]
async fn reconfigure_applies_live_and_rejects_bad_config() {
    let mut lb = balancer(
        Config::with_policy(Policy::RoundRobin),
        vec![(id_svc(0), 3), (id_svc(1), 1)],
    );
    let handle = lb.handle();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(lb.ready().await.unwrap().call(()).await.unwrap());
    }
    assert_eq!(got, [0, 1, 0, 1]);

    handle
        .reconfigure(Config::with_policy(Policy::WeightedRoundRobin))
        .unwrap();
    let mut counts = [0; 2];
    for _ in 0..8 {
        counts[lb.ready().await.unwrap().call(()).await.unwrap()] += 1;
    }
    assert_eq!(counts, [6, 2], "weights 3:1 now apply");

    let err = handle
        .reconfigure(Config::default().panic_threshold(-1.0))
        .unwrap_err();
    assert_eq!(err.field(), "panic_threshold");
    assert_eq!(
        handle.config().policy,
        Policy::WeightedRoundRobin,
        "old config kept"
    );
}

#[tokio::test]
async fn snapshot_serialises_for_health_endpoints() {
    let mut lb = balancer(
        Config::with_policy(Policy::RoundRobin),
        vec![(id_svc(0), 2), (id_svc(1), 1)],
    );
    lb.ready().await.unwrap().call(()).await.unwrap();
    let snap = lb.handle().snapshot();
    let v = serde_json::to_value(&snap).unwrap();
    assert_eq!(v["name"], "default");
    assert_eq!(v["endpoints"][0]["key"], "0");
    assert_eq!(v["endpoints"][0]["weight"], 2);
    assert_eq!(v["endpoints"][0]["state"], "active");
    assert_eq!(v["endpoints"][1]["ejected_for"], serde_json::Value::Null);
    assert_eq!(v["panic"], false);
}
