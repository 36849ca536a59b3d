//! The etcd backend against Debian's etcd server (started by scripts/services/registry-etcd.sh,
//! which exports PALISADE_ETCD_ENDPOINT; without it these tests fail).
#![cfg(feature = "etcd")]

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use palisade_registry_client::etcd::{EtcdConfig, EtcdRegistry};
use palisade_registry_client::model::{DataCenterInfo, InstanceInfo, InstanceStatus, PortInfo};
use tower::discover::Change;

fn endpoint() -> String {
    std::env::var("PALISADE_ETCD_ENDPOINT").expect(
        "PALISADE_ETCD_ENDPOINT is not set: run through scripts/test.sh (scripts/services/registry-etcd.sh)",
    )
}

fn registry(test: &str, endpoints: Vec<String>) -> EtcdRegistry {
    EtcdRegistry::new(EtcdConfig {
        endpoints,
        // A prefix per test and per run keeps tests apart on the shared etcd.
        prefix: format!("/palisade-test/{test}/{}/", std::process::id()),
        lease_ttl: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap()
}

fn inst(app: &str, id: &str, port: u16) -> InstanceInfo {
    InstanceInfo {
        instance_id: id.into(),
        host_name: "localhost".into(),
        app: app.into(),
        ip_addr: "127.0.0.1".into(),
        status: InstanceStatus::Up,
        port: Some(PortInfo::enabled(port)),
        vip_address: Some(app.to_ascii_lowercase()),
        data_center_info: DataCenterInfo::my_own(),
        ..Default::default()
    }
}

#[tokio::test]
async fn register_list_discover_and_revoke() {
    let r = registry("basic", vec![endpoint()]);
    let a1 = r.register(inst("orders", "o1", 9001)).await.unwrap();
    let a2 = r.register(inst("orders", "o2", 9002)).await.unwrap();
    let mut down = inst("payments", "p1", 9003);
    down.status = InstanceStatus::Down;
    let p1 = r.register(down).await.unwrap();
    a1.keep_alive().await.unwrap();

    r.refresh().await.unwrap();
    let apps = r.applications();
    assert_eq!(apps.application("ORDERS").unwrap().instances.len(), 2);
    assert_eq!(apps.apps_hashcode, "DOWN_1_UP_2_");
    let mut disco = r.discover_app("orders");
    let mut keys = Vec::new();
    for _ in 0..2 {
        match disco.next().await.unwrap().unwrap() {
            Change::Insert(k, e) => {
                assert_eq!(e.socket_addr().unwrap().ip().to_string(), "127.0.0.1");
                keys.push(k);
            }
            Change::Remove(k) => panic!("unexpected remove {k}"),
        }
    }
    assert_eq!(keys, ["o1", "o2"]);
    assert!(
        r.discover_app("payments").next().now_or_never().is_none(),
        "a DOWN instance is not an endpoint"
    );

    // Revoking the lease deletes the key at once.
    a2.shutdown().await.unwrap();
    r.refresh().await.unwrap();
    assert_eq!(
        r.applications()
            .application("ORDERS")
            .unwrap()
            .instances
            .len(),
        1
    );
    match disco.next().await.unwrap().unwrap() {
        Change::Remove(k) => assert_eq!(k, "o2"),
        Change::Insert(k, _) => panic!("unexpected insert {k}"),
    }
    a1.shutdown().await.unwrap();
    p1.shutdown().await.unwrap();
    r.refresh().await.unwrap();
    assert!(r.applications().applications.is_empty());
}

#[tokio::test]
async fn an_abandoned_lease_expires_and_the_instance_disappears() {
    let r = registry("expiry", vec![endpoint()]);
    let reg = r.register(inst("orders", "o1", 9001)).await.unwrap();
    r.refresh().await.unwrap();
    assert_eq!(r.applications().instances().count(), 1);
    reg.abandon();
    // etcd expires the 2 s lease on its own clock: poll (bounded) on the real condition.
    let mut gone = false;
    for _ in 0..100 {
        r.refresh().await.unwrap();
        if r.applications().instances().count() == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the lease did not expire within 10 s");
}

#[tokio::test]
async fn a_kept_alive_lease_outlives_its_ttl() {
    let r = registry("keepalive", vec![endpoint()]);
    let reg = r.register(inst("orders", "o1", 9001)).await.unwrap();
    // Three TTLs of keep-alives from the background task (every TTL/3).
    tokio::time::sleep(Duration::from_secs(6)).await;
    reg.keep_alive().await.unwrap();
    r.refresh().await.unwrap();
    assert_eq!(r.applications().instances().count(), 1);
    reg.shutdown().await.unwrap();
}

#[tokio::test]
async fn fails_over_to_the_next_endpoint_and_keeps_the_cache() {
    let dead = "http://127.0.0.1:9".to_owned();
    let r = registry("failover", vec![dead.clone(), endpoint()]);
    let reg = r.register(inst("orders", "o1", 9001)).await.unwrap();
    r.refresh().await.unwrap();
    assert_eq!(r.applications().instances().count(), 1);
    // A registry whose only endpoint is dead keeps serving what it had (here: nothing yet) and
    // reports the outage.
    let only_dead = registry("failover", vec![dead]);
    let err = only_dead.refresh().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    reg.shutdown().await.unwrap();
}

async fn next_change(d: &mut palisade_registry_client::EndpointDiscover) -> String {
    match tokio::time::timeout(Duration::from_secs(10), d.next()).await {
        Ok(Some(Ok(Change::Insert(k, _)))) => format!("+{k}"),
        Ok(Some(Ok(Change::Remove(k)))) => format!("-{k}"),
        other => panic!("no change within 10 s: {other:?}"),
    }
}

#[tokio::test]
async fn a_watch_delivers_changes_without_polling() {
    let r = EtcdRegistry::new(EtcdConfig {
        endpoints: vec![endpoint()],
        prefix: format!("/palisade-test/watch/{}/", std::process::id()),
        lease_ttl: Duration::from_secs(2),
        // Far longer than the test: only the watch can deliver the changes in time.
        refresh_interval: Duration::from_secs(600),
        request_timeout: Duration::from_secs(2),
    })
    .unwrap();
    let watch = r.spawn_watch();
    let mut disco = r.discover_app("orders");
    let w1 = r.register(inst("orders", "w1", 9001)).await.unwrap();
    assert_eq!(next_change(&mut disco).await, "+w1");
    // Whether w1 came with the first listing or the watch, w2 can only come through the watch.
    let w2 = r.register(inst("orders", "w2", 9002)).await.unwrap();
    assert_eq!(next_change(&mut disco).await, "+w2");
    w1.shutdown().await.unwrap();
    assert_eq!(next_change(&mut disco).await, "-w1");
    // An expiring lease is a DELETE event too.
    w2.abandon();
    assert_eq!(next_change(&mut disco).await, "-w2");
    watch.abort();
}
