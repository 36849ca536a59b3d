//! Consistent hashing (Maglev): stickiness, minimal disruption, fallback when the owner is out.

mod common;

use std::collections::HashMap;

use palisade_balancer::discover::channel;
use palisade_balancer::hash::key_of;
use palisade_balancer::rng::SmallRng;
use palisade_balancer::{Balance, Config, Endpoint, Metadata, Policy};
use palisade_breaker::circuit::{CircuitBreakerLayer, Config as BreakerConfig};
use tower::{Layer, Service, ServiceExt, service_fn};

fn maglev() -> Config {
    Config::with_policy(Policy::Maglev { table_size: 65_537 }).panic_threshold(0.0)
}

/// The request is its sticky key (`None`: not sticky).
fn key(req: &Option<u64>) -> Option<u64> {
    req.map(|k| key_of(&k))
}

async fn route<S>(lb: &mut S, keys: impl Iterator<Item = u64>) -> HashMap<u64, usize>
where
    S: Service<Option<u64>, Response = usize>,
    S::Error: std::fmt::Debug,
{
    let mut out = HashMap::new();
    for k in keys {
        let id = lb.ready().await.unwrap().call(Some(k)).await.unwrap();
        out.insert(k, id);
    }
    out
}

fn svc(
    id: usize,
) -> impl Service<Option<u64>, Response = usize, Error = std::io::Error, Future: Send> + Clone + Send
{
    service_fn(move |_: Option<u64>| async move { Ok::<_, std::io::Error>(id) })
}

#[tokio::test]
async fn same_key_same_endpoint_and_minimal_disruption() {
    let (tx, d) = channel();
    for id in 0..10usize {
        tx.insert(id, Endpoint::new(svc(id)));
    }
    let mut lb = Balance::builder(d)
        .config(maglev())
        .hash_key(key)
        .rng(SmallRng::seed_from_u64(1))
        .build()
        .unwrap();
    let before = route(&mut lb, 0..2000).await;
    let again = route(&mut lb, 0..2000).await;
    assert_eq!(before, again, "sticky");
    let mut per = [0usize; 10];
    for id in before.values() {
        per[*id] += 1;
    }
    for n in per {
        assert!((130..=270).contains(&n), "spread: {per:?}");
    }

    tx.remove(3);
    let after = route(&mut lb, 0..2000).await;
    let mut moved = 0;
    for (k, id) in &before {
        if *id == 3 {
            assert_ne!(after[k], 3);
        } else if after[k] != *id {
            moved += 1;
        }
    }
    assert!(moved < 2000 / 20, "{moved} keys of live endpoints moved");
    // Unkeyed requests still spread.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..100 {
        seen.insert(lb.ready().await.unwrap().call(None).await.unwrap());
    }
    assert!(seen.len() >= 5, "{seen:?}");
}

#[tokio::test]
async fn keys_of_an_open_breaker_fall_back_and_come_home() {
    let (tx, d) = channel();
    let mut handles = Vec::new();
    for id in 0..5usize {
        let layer = CircuitBreakerLayer::new(format!("ep{id}"), BreakerConfig::default()).unwrap();
        handles.push(layer.handle());
        let svc = layer.layer(svc(id));
        tx.insert(
            id,
            Endpoint::with_metadata(svc, Metadata::new().breaker(layer.handle())),
        );
    }
    let mut lb = Balance::builder(d)
        .config(maglev())
        .hash_key(key)
        .build()
        .unwrap();
    let home = route(&mut lb, 0..500).await;
    handles[2].force_open();
    let away = route(&mut lb, 0..500).await;
    let away2 = route(&mut lb, 0..500).await;
    assert_eq!(away, away2, "the fallback is stable too");
    for k in 0..500 {
        assert_ne!(away[&k], 2);
        if home[&k] != 2 {
            assert_eq!(away[&k], home[&k], "only the open endpoint's keys move");
        }
    }
    handles[2].close();
    assert_eq!(route(&mut lb, 0..500).await, home);
}

#[test]
fn table_size_must_be_prime() {
    let err = Config::with_policy(Policy::Maglev { table_size: 65_536 })
        .validate()
        .unwrap_err();
    assert_eq!(err.field(), "policy.table_size");
    let cfg: Config = serde_json::from_str(r#"{"policy": {"type": "maglev"}}"#).unwrap();
    assert_eq!(cfg.policy, Policy::Maglev { table_size: 65_537 });
}

/// With tower-test mocks (which panic when called without readiness): a busy owner's key goes to
/// a ready endpoint instead, every call is preceded by readiness, and the key returns home once
/// the owner is ready again.
#[tokio::test]
async fn busy_owner_falls_back_without_breaking_the_readiness_contract() {
    use tokio_test::{assert_pending, assert_ready_ok, task};

    let (tx, d) = channel();
    let mut handles = Vec::new();
    for id in 0..3usize {
        let (svc, h) = tower_test::mock::pair::<Option<u64>, usize>();
        handles.push(h);
        tx.insert(id, Endpoint::new(svc));
    }
    let mut lb = Balance::builder(d)
        .config(maglev())
        .hash_key(key)
        .rng(SmallRng::seed_from_u64(3))
        .build()
        .unwrap();
    let mut t = task::spawn(());

    // Nobody admits: not ready.
    for h in &mut handles {
        h.allow(0);
    }
    assert_pending!(t.enter(|cx, _| lb.poll_ready(cx)));

    // Everyone admits one call: key 7 goes to its owner.
    for h in &mut handles {
        h.allow(1);
    }
    assert_ready_ok!(t.enter(|cx, _| lb.poll_ready(cx)));
    let fut = lb.call(Some(7));
    let mut owner = None;
    for (id, h) in handles.iter_mut().enumerate() {
        if let std::task::Poll::Ready(Some((req, resp))) = task::spawn(h.next_request()).poll() {
            assert_eq!(req, Some(7));
            resp.send_response(id);
            owner = Some(id);
        }
    }
    let owner = owner.expect("one endpoint got the call");
    assert_eq!(fut.await.unwrap(), owner);

    // The owner is now out of permits; the others still have one each: key 7 falls back.
    assert_ready_ok!(t.enter(|cx, _| lb.poll_ready(cx)));
    let fut = lb.call(Some(7));
    let mut fallback = None;
    for (id, h) in handles.iter_mut().enumerate() {
        if let std::task::Poll::Ready(Some((_, resp))) = task::spawn(h.next_request()).poll() {
            resp.send_response(id);
            fallback = Some(id);
        }
    }
    let fallback = fallback.expect("a ready endpoint got the call");
    assert_ne!(fallback, owner);
    assert_eq!(fut.await.unwrap(), fallback);

    // The owner admits again: key 7 is back home.
    handles[owner].allow(1);
    assert_ready_ok!(t.enter(|cx, _| lb.poll_ready(cx)));
    let fut = lb.call(Some(7));
    let mut got = None;
    for (id, h) in handles.iter_mut().enumerate() {
        if let std::task::Poll::Ready(Some((_, resp))) = task::spawn(h.next_request()).poll() {
            resp.send_response(id);
            got = Some(id);
        }
    }
    assert_eq!(got, Some(owner));
    assert_eq!(fut.await.unwrap(), owner);
}
