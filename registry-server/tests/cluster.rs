//! A three-server cluster on loopback: writes replicate through the batch endpoint, clients fail
//! over when a server dies, and a restarted server pulls the registry from its peers.

use std::net::SocketAddr;
use std::time::Duration;

use palisade_registry_client::model::{DataCenterInfo, InstanceInfo, InstanceStatus, PortInfo};
use palisade_registry_client::{ClientConfig, RegistryClient, ServiceUrl};
use palisade_registry_server::{PeerConfig, RegistryServer, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Node {
    server: RegistryServer,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Every node of the cluster requires basic auth; peers and clients carry it in their URLs.
fn url(addr: SocketAddr) -> String {
    format!("http://palisade:s3cret@{addr}/eureka/")
}

async fn start(listener: tokio::net::TcpListener, peers: Vec<String>) -> Node {
    let server = RegistryServer::new(ServerConfig {
        use_read_only_response_cache: false,
        peers: PeerConfig {
            peer_urls: peers,
            max_batch_delay: Duration::from_millis(50),
            request_timeout: Duration::from_secs(2),
            sync_retries: 3,
            sync_retry_wait: Duration::from_millis(100),
            wait_time_when_sync_empty: Duration::ZERO,
            ..Default::default()
        },
        basic_auth: Some(palisade_registry_server::BasicAuth {
            username: "palisade".into(),
            password: "s3cret".into(),
        }),
        ..Default::default()
    })
    .unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.clone().serve(listener, async {
        let _ = rx.await;
    }));
    Node { server, stop, task }
}

impl Node {
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

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Polls (bounded, 10 s) until every node holds exactly `want`.
async fn converge(nodes: &[&Node], want: &[&str]) {
    for _ in 0..500 {
        if nodes.iter().all(|n| n.ids() == want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got: Vec<Vec<String>> = nodes.iter().map(|n| n.ids()).collect();
    panic!("cluster did not converge on {want:?}: {got:?}");
}

/// One HTTP/1.0 request marked as replication (so the server does not forward it).
async fn raw(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Basic cGFsaXNhZGU6czNjcmV0\r\nx-netflix-discovery-replication: true\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf[9..12].parse().unwrap();
    (status, buf)
}

fn inst(id: &str) -> InstanceInfo {
    InstanceInfo {
        instance_id: id.into(),
        host_name: "localhost".into(),
        app: "ORDERS".into(),
        ip_addr: "127.0.0.1".into(),
        status: InstanceStatus::Up,
        port: Some(PortInfo::enabled(8080)),
        data_center_info: DataCenterInfo::my_own(),
        last_dirty_timestamp: 1,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_replicate_fail_over_and_resync() {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let peers_of =
        |i: usize| -> Vec<String> { (0..3).filter(|j| *j != i).map(|j| url(addrs[j])).collect() };
    let mut it = listeners.into_iter();
    let a = start(it.next().unwrap(), peers_of(0)).await;
    let b = start(it.next().unwrap(), peers_of(1)).await;
    let c = start(it.next().unwrap(), peers_of(2)).await;

    // Registered on A, visible on B and C.
    let on_a = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(url(addrs[0]))],
        ..Default::default()
    })
    .unwrap();
    on_a.register(&inst("i1")).await.unwrap();
    converge(&[&a, &b, &c], &["i1"]).await;

    // A status override made on C reaches A and B.
    let on_c = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(url(addrs[2]))],
        ..Default::default()
    })
    .unwrap();
    on_c.set_status_override("ORDERS", "i1", InstanceStatus::OutOfService)
        .await
        .unwrap();
    for _ in 0..500 {
        if [&a, &b].iter().all(|n| {
            n.server
                .applications()
                .instances()
                .all(|i| i.status == InstanceStatus::OutOfService)
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in [&a, &b] {
        assert_eq!(
            n.server.applications().instances().next().unwrap().status,
            InstanceStatus::OutOfService
        );
    }
    on_c.delete_status_override("ORDERS", "i1", Some(InstanceStatus::Up))
        .await
        .unwrap();

    // B dies; a client that prefers B fails over to A, and the write still reaches C.
    b.stop().await;
    let prefers_b = RegistryClient::new(ClientConfig {
        service_urls: vec![
            ServiceUrl::new(url(addrs[1])),
            ServiceUrl::new(url(addrs[0])),
            ServiceUrl::new(url(addrs[2])),
        ],
        ..Default::default()
    })
    .unwrap();
    prefers_b.register(&inst("i2")).await.unwrap();
    converge(&[&a, &c], &["i1", "i2"]).await;
    prefers_b.refresh().await.unwrap();
    assert_eq!(prefers_b.applications().instances().count(), 2);

    // B comes back on its port and pulls the registry from a peer.
    let listener = tokio::net::TcpListener::bind(addrs[1]).await.unwrap();
    let b = start(listener, peers_of(1)).await;
    converge(&[&a, &b, &c], &["i1", "i2"]).await;
    assert!(
        b.server
            .applications()
            .instances()
            .all(|i| i.status == InstanceStatus::Up)
    );

    // A cancel on the restarted B replicates to the others.
    let on_b = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(url(addrs[1]))],
        ..Default::default()
    })
    .unwrap();
    on_b.cancel("ORDERS", "i1").await.unwrap();
    converge(&[&a, &b, &c], &["i2"]).await;

    // A forgets i2 through a replicated cancel (not forwarded). The next heartbeat on C is
    // answered 404 by A, so C re-sends the registration.
    let (status, _) = raw(addrs[0], "DELETE", "/eureka/apps/ORDERS/i2", "").await;
    assert_eq!(status, 200);
    assert!(a.ids().is_empty());
    assert_eq!(c.ids(), ["i2"], "a replicated write is not forwarded again");
    assert_eq!(
        on_c.renew(&inst("i2")).await.unwrap(),
        palisade_registry_client::Renewal::Renewed
    );
    converge(&[&a, &b, &c], &["i2"]).await;

    // A holds a newer copy of i2 (registered there as a replica would): C's next heartbeat is
    // answered 409 with A's copy, which C adopts.
    let mut newer = inst("i2");
    newer.last_dirty_timestamp = 5;
    newer.metadata.insert("version".into(), "2".into());
    let body = String::from_utf8(palisade_registry_client::json::encode_instance(&newer)).unwrap();
    let (status, _) = raw(addrs[0], "POST", "/eureka/apps/ORDERS", &body).await;
    assert_eq!(status, 204);
    assert_eq!(
        on_c.renew(&inst("i2")).await.unwrap(),
        palisade_registry_client::Renewal::Renewed
    );
    for _ in 0..500 {
        if c.server
            .applications()
            .instances()
            .any(|i| i.metadata.contains_key("version"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let adopted = c.server.applications().instances().next().unwrap().clone();
    assert_eq!(adopted.last_dirty_timestamp, 5);
    assert_eq!(adopted.metadata["version"], "2");

    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test]
async fn fetches_answer_403_while_warming_up_after_an_empty_peer_sync() {
    // The only peer is dead, so the start-up sync finds nothing.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = url(dead.local_addr().unwrap());
    drop(dead);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = RegistryServer::new(ServerConfig {
        peers: PeerConfig {
            peer_urls: vec![dead_url],
            sync_retries: 1,
            wait_time_when_sync_empty: Duration::from_secs(3600),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    let mut last = 0;
    for _ in 0..250 {
        last = raw(addr, "GET", "/eureka/apps/", "").await.0;
        if last == 403 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, 403, "full fetch refused during warm-up");
    assert_eq!(raw(addr, "GET", "/eureka/apps/delta", "").await.0, 403);
    // Writes are still accepted.
    let body =
        String::from_utf8(palisade_registry_client::json::encode_instance(&inst("w1"))).unwrap();
    assert_eq!(raw(addr, "POST", "/eureka/apps/ORDERS", &body).await.0, 204);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_replication_is_retried_until_the_peer_answers() {
    // B's port is reserved but nothing listens yet; A replicates to it.
    let a_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let a_addr = a_listener.local_addr().unwrap();
    let server = RegistryServer::new(ServerConfig {
        use_read_only_response_cache: false,
        peers: PeerConfig {
            peer_urls: vec![format!("http://{b_addr}/eureka/")],
            max_batch_delay: Duration::from_millis(20),
            retry_backoff: Duration::from_millis(100),
            sync_retries: 1,
            wait_time_when_sync_empty: Duration::ZERO,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let (stop_a, rx) = oneshot::channel::<()>();
    let task_a = tokio::spawn(server.clone().serve(a_listener, async {
        let _ = rx.await;
    }));
    let on_a = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(format!("http://{a_addr}/eureka/"))],
        ..Default::default()
    })
    .unwrap();
    on_a.register(&inst("r1")).await.unwrap();
    // Let a few deliveries fail (connection refused) before B exists.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // B starts standalone (no peers, so no start-up pull): only A's retries can bring r1.
    let b_listener = tokio::net::TcpListener::bind(b_addr).await.unwrap();
    let b_server = RegistryServer::new(ServerConfig::default()).unwrap();
    let (stop_b, rx) = oneshot::channel::<()>();
    let task_b = tokio::spawn(b_server.clone().serve(b_listener, async {
        let _ = rx.await;
    }));
    for _ in 0..250 {
        if b_server.applications().instances().count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        b_server
            .applications()
            .instances()
            .map(|i| i.id().to_owned())
            .collect::<Vec<_>>(),
        ["r1"]
    );
    let _ = stop_a.send(());
    let _ = stop_b.send(());
    task_a.await.unwrap().unwrap();
    task_b.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_set_can_change_at_run_time() {
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (aa, ab) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    // Both start without peers (so without auth in the URLs: plain nodes).
    let plain = |l| async move {
        let server = RegistryServer::new(ServerConfig {
            use_read_only_response_cache: false,
            peers: PeerConfig {
                max_batch_delay: Duration::from_millis(20),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.clone().serve(l, async {
            let _ = rx.await;
        }));
        Node { server, stop, task }
    };
    let a = plain(la).await;
    let b = plain(lb).await;
    let on_a = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(format!("http://{aa}/eureka/"))],
        ..Default::default()
    })
    .unwrap();
    assert!(a.server.peers().is_empty());

    let b_url = format!("http://{ab}/eureka/");
    a.server.set_peers(vec![b_url.clone()]);
    assert_eq!(a.server.peers(), std::slice::from_ref(&b_url));
    on_a.register(&inst("p1")).await.unwrap();
    converge(&[&b], &["p1"]).await;

    // Peer removed: p2 stays on A. Peer added back: p3 reaches B, p2 never does.
    a.server.set_peers(vec![]);
    on_a.register(&inst("p2")).await.unwrap();
    a.server.set_peers(vec![b_url]);
    on_a.register(&inst("p3")).await.unwrap();
    converge(&[&b], &["p1", "p3"]).await;
    assert_eq!(a.ids(), ["p1", "p2", "p3"]);

    a.stop().await;
    b.stop().await;
}
