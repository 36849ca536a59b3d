//! The cluster again, as three `palisade-registry` processes: one is killed with SIGKILL, clients
//! fail over, and the restarted process pulls the registry from its peers.

use std::path::Path;
use std::time::Duration;

use palisade_registry_client::model::{DataCenterInfo, InstanceInfo, InstanceStatus, PortInfo};
use palisade_registry_client::{ClientConfig, RegistryClient, ServiceUrl};
use tokio::process::{Child, Command};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/eureka/")
}

fn spawn(port: u16, peers: &[u16], dir: &Path) -> Child {
    let config = serde_json::json!({
        "use_read_only_response_cache": false,
        "peers": {
            "peer_urls": peers.iter().map(|p| url(*p)).collect::<Vec<_>>(),
            "max_batch_delay": "50ms",
            "request_timeout": "2s",
            "sync_retries": 3,
            "sync_retry_wait": "200ms",
            "wait_time_when_sync_empty": "0s",
        }
    });
    let path = dir.join(format!("server-{port}.json"));
    std::fs::write(&path, config.to_string()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_palisade-registry"))
        .args(["--bind", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&path)
        .kill_on_drop(true)
        .spawn()
        .expect("start palisade-registry")
}

fn client(ports: &[u16]) -> RegistryClient {
    RegistryClient::new(ClientConfig {
        service_urls: ports.iter().map(|p| ServiceUrl::new(url(*p))).collect(),
        request_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap()
}

/// Polls (bounded, 15 s) until the server on `port` lists exactly `want`.
async fn converge(port: u16, want: &[&str]) {
    let c = client(&[port]);
    let mut last = None;
    for _ in 0..300 {
        if let Ok(apps) = c.fetch_full().await {
            let mut ids: Vec<String> = apps.instances().map(|i| i.id().to_owned()).collect();
            ids.sort();
            if ids == want {
                return;
            }
            last = Some(ids);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server on port {port} never listed {want:?}; last saw {last:?}");
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
async fn killed_server_process_is_failed_over_and_resyncs_on_restart() {
    let dir = std::env::temp_dir().join(format!("palisade-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let peers = |i: usize| -> Vec<u16> { (0..3).filter(|j| *j != i).map(|j| ports[j]).collect() };
    let mut nodes: Vec<Child> = (0..3).map(|i| spawn(ports[i], &peers(i), &dir)).collect();
    for p in ports {
        converge(p, &[]).await;
    }

    client(&[ports[0]]).register(&inst("i1")).await.unwrap();
    for p in ports {
        converge(p, &["i1"]).await;
    }

    // SIGKILL the second server.
    nodes[1].start_kill().unwrap();
    nodes[1].wait().await.unwrap();
    let prefers_b = client(&[ports[1], ports[0], ports[2]]);
    prefers_b.register(&inst("i2")).await.unwrap();
    converge(ports[0], &["i1", "i2"]).await;
    converge(ports[2], &["i1", "i2"]).await;
    prefers_b.refresh().await.unwrap();
    assert_eq!(prefers_b.applications().instances().count(), 2);

    // Restarted on its port, it pulls the registry from a peer.
    nodes[1] = spawn(ports[1], &peers(1), &dir);
    converge(ports[1], &["i1", "i2"]).await;

    for mut n in nodes {
        n.start_kill().unwrap();
        n.wait().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
