//! Keyed breakers and the registry.

use std::time::Duration;

use palisade_breaker::State;
use palisade_breaker::circuit::{
    BreakerRegistry, CircuitBreakerLayer, Config, KeyedCircuitBreakerLayer, TripPolicy,
};
use tower::{Service, ServiceBuilder, ServiceExt};

fn cfg() -> Config {
    Config::builder()
        .trip(TripPolicy::consecutive_failures(2))
        .build()
        .unwrap()
}

#[derive(Clone, Debug)]
struct Req {
    host: &'static str,
    fail: bool,
}

#[tokio::test(start_paused = true)]
async fn one_breaker_per_key() {
    let layer = KeyedCircuitBreakerLayer::new("hosts", cfg(), |r: &Req| r.host).unwrap();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|r: Req| async move { if r.fail { Err("down") } else { Ok(r.host) } });
    for _ in 0..2 {
        let _ = svc
            .ready()
            .await
            .unwrap()
            .call(Req {
                host: "a",
                fail: true,
            })
            .await;
    }
    assert_eq!(handle.get(&"a").unwrap().state(), State::Open);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Req {
            host: "a",
            fail: false,
        })
        .await
        .unwrap_err();
    assert!(err.is_rejected());
    assert_eq!(
        svc.ready()
            .await
            .unwrap()
            .call(Req {
                host: "b",
                fail: false
            })
            .await
            .unwrap(),
        "b"
    );
    assert_eq!(handle.get(&"b").unwrap().state(), State::Closed);
    let mut snaps = handle.snapshots();
    snaps.sort_by_key(|(k, _)| *k);
    assert_eq!(snaps.len(), 2);
    assert_eq!((snaps[0].0, snaps[0].1.state), ("a", State::Open));
    assert_eq!(handle.get(&"a").unwrap().name(), "hosts/a");

    handle.force_open_all();
    assert_eq!(handle.get(&"b").unwrap().state(), State::ForcedOpen);
}

#[tokio::test(start_paused = true)]
async fn cap_and_idle_eviction() {
    let layer = KeyedCircuitBreakerLayer::new("users", cfg(), |k: &u32| *k)
        .unwrap()
        .max_keys(3)
        .idle_timeout(Duration::from_secs(60));
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|k: u32| async move { Ok::<_, &str>(k) });
    for k in 0..3 {
        svc.ready().await.unwrap().call(k).await.unwrap();
    }
    assert_eq!(handle.len(), 3);
    // At the cap: a fourth key evicts one, the total never exceeds the cap.
    svc.ready().await.unwrap().call(3).await.unwrap();
    assert_eq!(handle.len(), 3);
    assert!(handle.get(&3).is_some());

    // Key 3 stays busy; the others go idle and are evicted after the idle timeout.
    for _ in 0..4 {
        tokio::time::advance(Duration::from_secs(30)).await;
        svc.ready().await.unwrap().call(3).await.unwrap();
        handle.evict_idle();
    }
    assert_eq!(handle.len(), 1);
    assert!(handle.get(&3).is_some(), "the busy key survives");
}

#[tokio::test(start_paused = true)]
async fn keyed_reconfigure_applies_to_existing_and_new_keys() {
    let layer = KeyedCircuitBreakerLayer::new("k", cfg(), |k: &u32| *k).unwrap();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|k: u32| async move { Ok::<_, &str>(k) });
    svc.ready().await.unwrap().call(1).await.unwrap();
    let new = Config::builder()
        .trip(TripPolicy::consecutive_failures(9))
        .build()
        .unwrap();
    handle.reconfigure(new.clone()).unwrap();
    svc.ready().await.unwrap().call(2).await.unwrap();
    assert_eq!(handle.get(&1).unwrap().config(), new);
    assert_eq!(handle.get(&2).unwrap().config(), new);
    let mut bad = new.clone();
    bad.trip.clear();
    assert!(handle.reconfigure(bad).is_err());
    assert_eq!(
        handle.get(&1).unwrap().config(),
        new,
        "bad config changed nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn registry_lists_plain_and_keyed_breakers() {
    let registry = BreakerRegistry::new();
    let single = CircuitBreakerLayer::new("single", cfg()).unwrap();
    registry.register(&single.handle());
    let keyed = KeyedCircuitBreakerLayer::new("keyed", cfg(), |k: &u32| *k).unwrap();
    registry.register_keyed(&keyed.handle());
    let mut svc = ServiceBuilder::new()
        .layer(keyed)
        .service_fn(|k: u32| async move { Ok::<_, &str>(k) });
    svc.ready().await.unwrap().call(7).await.unwrap();
    let snaps = registry.snapshots();
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[0].name, "single");
    assert_eq!(
        (snaps[1].name.as_str(), snaps[1].key.as_deref()),
        ("keyed", Some("7"))
    );
    let json = serde_json::to_value(&snaps).unwrap();
    assert_eq!(json[1]["snapshot"]["state"], "closed");
    drop(single);
    drop(svc);
    assert_eq!(registry.snapshots().len(), 0, "dropped breakers disappear");
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn http_classifier_ignores_4xx_and_counts_5xx() {
    use palisade_breaker::HttpClassifier;
    let layer = CircuitBreakerLayer::builder("http")
        .config(cfg())
        .classifier(HttpClassifier::new())
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|code: u16| async move {
            Ok::<_, std::io::Error>(http::Response::builder().status(code).body(()).unwrap())
        });
    for code in [404, 429, 400, 404] {
        svc.ready().await.unwrap().call(code).await.unwrap();
    }
    assert_eq!(h.snapshot().calls, 0, "4xx do not count");
    svc.ready().await.unwrap().call(503).await.unwrap();
    svc.ready().await.unwrap().call(500).await.unwrap();
    assert_eq!(h.state(), State::Open);
}
