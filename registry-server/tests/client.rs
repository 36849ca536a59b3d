//! `palisade-registry-client` against our server over real loopback sockets: every call, delta
//! reconciliation, the cache that outlives the servers, failover, registration and Discover.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use palisade_registry_client::model::{DataCenterInfo, InstanceInfo, InstanceStatus, PortInfo};
use palisade_registry_client::{
    ClientConfig, Heartbeat, Refresh, RegistryClient, Renewal, ServiceUrl,
};
use palisade_registry_server::{RegistryServer, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::discover::Change;

struct Running {
    server: RegistryServer,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    async fn start(config: ServerConfig) -> Self {
        let server = RegistryServer::new(config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/eureka/",
            listener.local_addr().unwrap().port()
        );
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.clone().serve(listener, async {
            let _ = rx.await;
        }));
        Running {
            server,
            url,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn immediate() -> Self {
        Self::start(ServerConfig {
            use_read_only_response_cache: false,
            ..Default::default()
        })
        .await
    }

    async fn stop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .server
            .applications()
            .instances()
            .map(|i| i.id().to_owned())
            .collect();
        v.sort();
        v
    }
}

fn inst(app: &str, id: &str) -> InstanceInfo {
    InstanceInfo {
        instance_id: id.into(),
        host_name: "localhost".into(),
        app: app.into(),
        ip_addr: "127.0.0.1".into(),
        status: InstanceStatus::Up,
        port: Some(PortInfo::enabled(8080)),
        vip_address: Some(app.to_ascii_lowercase()),
        data_center_info: DataCenterInfo::my_own(),
        last_dirty_timestamp: 1,
        ..Default::default()
    }
}

fn client(urls: &[&str]) -> RegistryClient {
    RegistryClient::new(ClientConfig {
        service_urls: urls.iter().map(|u| ServiceUrl::new(*u)).collect(),
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn every_call_reaches_the_server() {
    let s = Running::immediate().await;
    let c = client(&[&s.url]);
    let a = inst("orders", "h1:orders:8080");
    c.register(&a).await.unwrap();
    assert_eq!(s.ids(), ["h1:orders:8080"]);
    assert_eq!(c.renew(&a).await.unwrap(), Renewal::Renewed);
    assert_eq!(
        c.renew(&inst("orders", "ghost")).await.unwrap(),
        Renewal::NotFound
    );
    c.set_status_override("orders", "h1:orders:8080", InstanceStatus::OutOfService)
        .await
        .unwrap();
    assert_eq!(
        s.server.applications().instances().next().unwrap().status,
        InstanceStatus::OutOfService
    );
    c.delete_status_override("orders", "h1:orders:8080", Some(InstanceStatus::Up))
        .await
        .unwrap();
    assert_eq!(
        s.server.applications().instances().next().unwrap().status,
        InstanceStatus::Up
    );
    c.update_metadata("orders", "h1:orders:8080", &[("zone", "a b&c")])
        .await
        .unwrap();
    assert_eq!(
        s.server.applications().instances().next().unwrap().metadata["zone"],
        "a b&c"
    );
    let app = c.fetch_application("orders").await.unwrap();
    assert_eq!(app.instances.len(), 1);
    let err = c
        .set_status_override("orders", "ghost", InstanceStatus::Down)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::NOT_FOUND));
    c.cancel("orders", "h1:orders:8080").await.unwrap();
    assert!(s.ids().is_empty());
    c.cancel("orders", "h1:orders:8080").await.unwrap();
    let mut bad = inst("orders", "x");
    bad.ip_addr.clear();
    let err = c.register(&bad).await.unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::BAD_REQUEST));
}

#[tokio::test]
async fn basic_auth_credentials_from_the_url_are_sent() {
    let s = Running::start(ServerConfig {
        use_read_only_response_cache: false,
        basic_auth: Some(palisade_registry_server::BasicAuth {
            username: "eureka".into(),
            password: "p@ss:word".into(),
        }),
        ..Default::default()
    })
    .await;
    let anonymous = client(&[&s.url]);
    let err = anonymous.register(&inst("A", "a1")).await.unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::UNAUTHORIZED));
    let wrong = client(&[&s.url.replace("http://", "http://eureka:nope@")]);
    assert_eq!(
        wrong.fetch_full().await.unwrap_err().status(),
        Some(http::StatusCode::UNAUTHORIZED)
    );
    // Reserved characters in the password are percent-encoded in the URL.
    let authed = client(&[&s.url.replace("http://", "http://eureka:p%40ss%3Aword@")]);
    authed.register(&inst("A", "a1")).await.unwrap();
    assert_eq!(authed.refresh().await.unwrap(), Refresh::Full);
    assert_eq!(authed.applications().instances().count(), 1);
    assert!(s.ids() == ["a1"]);
}

#[tokio::test]
async fn full_fetch_then_deltas_with_hash_reconciliation() {
    let s = Running::immediate().await;
    let c = client(&[&s.url]);
    c.register(&inst("A", "a1")).await.unwrap();
    assert_eq!(c.refresh().await.unwrap(), Refresh::Full);
    assert_eq!(c.applications().instances().count(), 1);
    c.register(&inst("B", "b1")).await.unwrap();
    c.cancel("A", "a1").await.unwrap();
    assert_eq!(c.refresh().await.unwrap(), Refresh::Delta);
    let apps = c.applications();
    assert_eq!(apps.instances().map(|i| i.id()).collect::<Vec<_>>(), ["b1"]);
    assert_eq!(apps.apps_hashcode, "UP_1_");

    // A server whose delta queue forgets at once: the delta cannot reconcile, so the client falls
    // back to a full fetch.
    let s2 = Running::start(ServerConfig {
        use_read_only_response_cache: false,
        delta_retention: Duration::from_nanos(1),
        ..Default::default()
    })
    .await;
    let c2 = client(&[&s2.url]);
    c2.register(&inst("A", "a1")).await.unwrap();
    assert_eq!(c2.refresh().await.unwrap(), Refresh::Full);
    c2.register(&inst("B", "b1")).await.unwrap();
    assert_eq!(c2.refresh().await.unwrap(), Refresh::FullAfterHashMismatch);
    assert_eq!(c2.applications().instances().count(), 2);
}

#[tokio::test]
async fn the_cache_keeps_serving_when_every_server_is_down() {
    let mut s = Running::immediate().await;
    let c = client(&[&s.url]);
    c.register(&inst("A", "a1")).await.unwrap();
    c.refresh().await.unwrap();
    let mut disco = c.discover_app("a");
    match disco.next().await.unwrap().unwrap() {
        Change::Insert(k, e) => {
            assert_eq!(k, "a1");
            assert_eq!(e.socket_addr(), Some("127.0.0.1:8080".parse().unwrap()));
        }
        Change::Remove(k) => panic!("unexpected remove {k}"),
    }
    s.stop().await;
    let err = c.refresh().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(
        c.applications()
            .instances()
            .map(|i| i.id())
            .collect::<Vec<_>>(),
        ["a1"]
    );
    assert!(
        disco.next().now_or_never().is_none(),
        "no change while the servers are down"
    );
    assert_eq!(disco.endpoints().count(), 1);
}

#[tokio::test]
async fn fails_over_to_the_next_server_same_zone_first() {
    let a = Running::immediate().await;
    let mut b = Running::immediate().await;
    let c = RegistryClient::new(ClientConfig {
        service_urls: vec![
            ServiceUrl::in_zone(&a.url, "zone-a"),
            ServiceUrl::in_zone(&b.url, "zone-b"),
        ],
        zone: Some("zone-b".into()),
        ..Default::default()
    })
    .unwrap();
    c.register(&inst("A", "first")).await.unwrap();
    assert_eq!(b.ids(), ["first"], "same zone first");
    assert!(a.ids().is_empty());
    b.stop().await;
    c.register(&inst("A", "second")).await.unwrap();
    assert_eq!(a.ids(), ["second"], "failed over");
    // A dead first server is skipped for fetches too.
    let dead_first = client(&[&b.url, &a.url]);
    assert_eq!(dead_first.refresh().await.unwrap(), Refresh::Full);
    assert_eq!(dead_first.applications().instances().count(), 1);
}

#[tokio::test]
async fn registration_heartbeats_reregisters_and_deregisters() {
    let s = Running::immediate().await;
    let c = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(&s.url)],
        renewal_interval: Duration::from_secs(3600),
        ..Default::default()
    })
    .unwrap();
    let reg = c.start_registration(inst("orders", "o1"));
    // The background task registers at once; wait for it (bounded, 10 s).
    for _ in 0..1000 {
        if !s.ids().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.ids(), ["o1"]);
    assert_eq!(reg.heartbeat().await.unwrap(), Heartbeat::Renewed);
    // The server forgets the instance (restart, eviction): the next heartbeat gets 404 and
    // registers again.
    c.cancel("orders", "o1").await.unwrap();
    assert_eq!(reg.heartbeat().await.unwrap(), Heartbeat::Registered);
    assert_eq!(s.ids(), ["o1"]);
    // A local change re-registers with a newer dirty timestamp.
    let before = reg.instance().last_dirty_timestamp;
    reg.set_status(InstanceStatus::Down);
    assert!(reg.instance().last_dirty_timestamp > before);
    assert_eq!(reg.heartbeat().await.unwrap(), Heartbeat::Registered);
    assert_eq!(
        s.server.applications().instances().next().unwrap().status,
        InstanceStatus::Down
    );
    assert_eq!(reg.heartbeat().await.unwrap(), Heartbeat::Renewed);
    reg.shutdown().await.unwrap();
    assert!(s.ids().is_empty(), "deregistered on shutdown");
}

#[tokio::test]
async fn discover_follows_up_instances_of_an_app_or_vip() {
    let s = Running::immediate().await;
    let c = client(&[&s.url]);
    for (app, id) in [("A", "a1"), ("A", "a2"), ("B", "b1")] {
        c.register(&inst(app, id)).await.unwrap();
    }
    c.refresh().await.unwrap();
    let mut by_app = c.discover_app("A");
    let mut by_vip = c.discover_vip("b");
    let key = |c: Change<String, palisade_registry_client::Endpoint>| match c {
        Change::Insert(k, _) => format!("+{k}"),
        Change::Remove(k) => format!("-{k}"),
    };
    let mut got = Vec::new();
    while let Some(Some(Ok(ch))) = by_app.next().now_or_never() {
        got.push(key(ch));
    }
    assert_eq!(got, ["+a1", "+a2"]);
    assert_eq!(key(by_vip.next().await.unwrap().unwrap()), "+b1");

    c.set_status_override("A", "a2", InstanceStatus::OutOfService)
        .await
        .unwrap();
    c.cancel("A", "a1").await.unwrap();
    c.register(&inst("A", "a3")).await.unwrap();
    assert_eq!(c.refresh().await.unwrap(), Refresh::Delta);
    let mut got = Vec::new();
    while let Some(Some(Ok(ch))) = by_app.next().now_or_never() {
        got.push(key(ch));
    }
    assert_eq!(got, ["-a1", "-a2", "+a3"]);
    assert!(by_vip.next().now_or_never().is_none(), "B did not change");
}

/// A seeded splitmix64, so the balancer's choices are the same on every run.
struct SeededRng(u64);

impl tower::util::rng::Rng for SeededRng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[tokio::test]
async fn a_tower_balancer_follows_the_discover_stream() {
    use std::collections::BTreeSet;
    use std::convert::Infallible;

    use tower::balance::p2c::Balance;
    use tower::load::Constant;
    use tower::{Service, ServiceExt, service_fn};

    let s = Running::immediate().await;
    let c = client(&[&s.url]);
    for (id, port) in [("b1", 7001u16), ("b2", 7002)] {
        let mut i = inst("B", id);
        i.port = Some(PortInfo::enabled(port));
        c.register(&i).await.unwrap();
    }
    c.refresh().await.unwrap();

    // Each discovered endpoint becomes a service answering with its port.
    let discover = c.discover_app("B").map(|change| {
        change.map(|c| match c {
            Change::Insert(id, e) => {
                let port = e.port.expect("enabled port");
                let svc = service_fn(move |_: ()| async move { Ok::<_, Infallible>(port) });
                Change::Insert(id, Constant::new(svc, 0usize))
            }
            Change::Remove(id) => Change::Remove(id),
        })
    });
    let mut balance = Balance::from_rng(discover, SeededRng(7));
    let mut seen = BTreeSet::new();
    for _ in 0..50 {
        seen.insert(balance.ready().await.unwrap().call(()).await.unwrap());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [7001, 7002]);

    // b1 leaves the registry: after the next refresh the balancer only uses b2.
    c.cancel("B", "b1").await.unwrap();
    assert_eq!(c.refresh().await.unwrap(), Refresh::Delta);
    for _ in 0..20 {
        assert_eq!(balance.ready().await.unwrap().call(()).await.unwrap(), 7002);
    }
}

#[tokio::test]
async fn an_oversized_answer_counts_as_a_failed_server() {
    let s = Running::immediate().await;
    let setup = client(&[&s.url]);
    for i in 0..20 {
        setup.register(&inst("A", &format!("a{i}"))).await.unwrap();
    }
    let small = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(&s.url)],
        max_response_bytes: 2_000,
        ..Default::default()
    })
    .unwrap();
    let err = small.fetch_full().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("2000"), "{err}");
    // The cache is untouched.
    assert!(small.refresh().await.is_err());
    assert!(small.applications().applications.is_empty());
}
