//! Both directions with the Java originals (Spring Cloud 2025.1, Boot 4.0):
//! our client against the Java Eureka server, and the Java Eureka client against our server.
//! `scripts/services/registry-java.sh` builds both apps, starts the Java server and exports
//! `PALISADE_JAVA_EUREKA_URL` and `PALISADE_JAVA_EUREKA_CLIENT_JAR`; without them this test fails.

use std::process::Stdio;
use std::time::Duration;

use palisade_registry_client::model::{DataCenterInfo, InstanceInfo, InstanceStatus, PortInfo};
use palisade_registry_client::{ClientConfig, Refresh, RegistryClient, Renewal, ServiceUrl, xml};
use palisade_registry_server::{RegistryServer, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run this test through scripts/test.sh (scripts/services/registry-java.sh sets it)")
    })
}

fn inst(app: &str, id: &str, port: u16) -> InstanceInfo {
    let mut i = InstanceInfo {
        instance_id: id.into(),
        host_name: "127.0.0.1".into(),
        app: app.into(),
        ip_addr: "127.0.0.1".into(),
        status: InstanceStatus::Up,
        port: Some(PortInfo::enabled(port)),
        vip_address: Some(app.to_ascii_lowercase()),
        data_center_info: DataCenterInfo::my_own(),
        last_dirty_timestamp: 1_700_000_000_000,
        ..Default::default()
    };
    i.metadata.insert("lang".into(), "rust".into());
    i
}

/// A plain HTTP/1.0 GET without `Accept`, so a Eureka server answers XML.
async fn get_xml(url: &str) -> Vec<u8> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    buf[split + 4..].to_vec()
}

#[tokio::test]
async fn our_client_with_the_java_eureka_server() {
    let url = env("PALISADE_JAVA_EUREKA_URL");
    let c = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(&url)],
        ..Default::default()
    })
    .unwrap();
    let a = inst("rust-on-java", "rust-on-java-1", 9101);
    c.register(&a).await.unwrap();
    assert_eq!(c.renew(&a).await.unwrap(), Renewal::Renewed);
    assert_eq!(
        c.renew(&inst("rust-on-java", "ghost", 1)).await.unwrap(),
        Renewal::NotFound
    );
    // The Java server answers 404 to a heartbeat carrying a newer dirty timestamp.
    let mut newer = a.clone();
    newer.last_dirty_timestamp += 1000;
    assert_eq!(c.renew(&newer).await.unwrap(), Renewal::NotFound);

    assert_eq!(c.refresh().await.unwrap(), Refresh::Full);
    let apps = c.applications();
    let mine = &apps
        .application("RUST-ON-JAVA")
        .expect("registered on the Java server")
        .instances[0];
    assert_eq!(mine.id(), "rust-on-java-1");
    assert_eq!(mine.metadata["lang"], "rust");
    assert_eq!(apps.compute_hashcode(), apps.apps_hashcode);

    // A second instance and an override arrive through the Java server's delta, reconciled by hash.
    c.register(&inst("rust-on-java", "rust-on-java-2", 9102))
        .await
        .unwrap();
    c.set_status_override(
        "rust-on-java",
        "rust-on-java-1",
        InstanceStatus::OutOfService,
    )
    .await
    .unwrap();
    let kind = c.refresh().await.unwrap();
    assert_eq!(
        kind,
        Refresh::Delta,
        "Java's delta reconciles with our hash code"
    );
    let apps = c.applications();
    let app = apps.application("RUST-ON-JAVA").unwrap();
    assert_eq!(app.instances.len(), 2);
    let one = app
        .instances
        .iter()
        .find(|i| i.id() == "rust-on-java-1")
        .unwrap();
    assert_eq!(one.status, InstanceStatus::OutOfService);
    let mut disco = c.discover_app("rust-on-java");
    use futures::StreamExt;
    match disco.next().await.unwrap().unwrap() {
        tower::discover::Change::Insert(k, _) => {
            assert_eq!(k, "rust-on-java-2", "only UP instances")
        }
        tower::discover::Change::Remove(k) => panic!("unexpected remove {k}"),
    }

    c.delete_status_override("rust-on-java", "rust-on-java-1", Some(InstanceStatus::Up))
        .await
        .unwrap();
    c.update_metadata("rust-on-java", "rust-on-java-1", &[("weight", "5")])
        .await
        .unwrap();
    let app = c.fetch_application("rust-on-java").await.unwrap();
    let one = app
        .instances
        .iter()
        .find(|i| i.id() == "rust-on-java-1")
        .unwrap();
    assert_eq!(one.status, InstanceStatus::Up);
    assert_eq!(one.metadata["weight"], "5");

    // The Java server's XML, decoded by our XML codec.
    let base = url.trim_end_matches('/');
    let apps_xml = xml::decode_applications(&get_xml(&format!("{base}/apps/")).await).unwrap();
    assert_eq!(
        apps_xml
            .application("RUST-ON-JAVA")
            .unwrap()
            .instances
            .len(),
        2
    );
    let one_xml =
        xml::decode_instance(&get_xml(&format!("{base}/apps/RUST-ON-JAVA/rust-on-java-1")).await)
            .unwrap();
    assert_eq!(one_xml.metadata["weight"], "5");

    c.cancel("rust-on-java", "rust-on-java-1").await.unwrap();
    c.cancel("rust-on-java", "rust-on-java-2").await.unwrap();
    c.refresh().await.unwrap();
    assert!(c.applications().application("RUST-ON-JAVA").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_eureka_client_with_our_server() {
    let jar = env("PALISADE_JAVA_EUREKA_CLIENT_JAR");
    let server = RegistryServer::new(ServerConfig {
        use_read_only_response_cache: false,
        ..Default::default()
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.clone().serve(listener, async {
        let _ = stop_rx.await;
    }));
    let c = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(format!("http://127.0.0.1:{port}/eureka/"))],
        ..Default::default()
    })
    .unwrap();
    c.register(&inst("rust-demo", "rust-demo-1", 9201))
        .await
        .unwrap();

    let mut java = Command::new("java")
        .args(["-XX:TieredStopAtLevel=1", "-Xss512k", "-jar", &jar])
        .arg(format!(
            "--eureka.client.service-url.defaultZone=http://127.0.0.1:{port}/eureka/"
        ))
        .arg("--palisade.find=RUST-DEMO")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start java");
    let mut lines = BufReader::new(java.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    let mut next_with = async |prefix: &str, log: &mut Vec<String>| -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Ok(Ok(Some(l))) => {
                    log.push(l.clone());
                    if l.starts_with(prefix) {
                        return l;
                    }
                }
                _ => panic!(
                    "no {prefix:?} line from the Java client; output:\n{}",
                    log.join("\n")
                ),
            }
        }
    };
    let found = next_with("FOUND", &mut log).await;
    assert_eq!(found, "FOUND RUST-DEMO rust-demo-1 127.0.0.1:9201 rust");

    // The Java client registered and heartbeats (every second here).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let apps = server.applications();
        let renewed = apps.application("JAVA-DEMO").is_some_and(|a| {
            a.instances.iter().any(|i| {
                let l = i.lease_info.unwrap();
                i.id() == "java-demo-1"
                    && i.status == InstanceStatus::Up
                    && l.last_renewal_timestamp > l.registration_timestamp
            })
        });
        if renewed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat from the Java client: {apps:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let java_inst = server
        .applications()
        .application("JAVA-DEMO")
        .unwrap()
        .instances[0]
        .clone();
    assert_eq!(java_inst.metadata["lang"], "java");
    assert_eq!(java_inst.ip_addr, "127.0.0.1");

    // An instance registered after the Java client's first full fetch reaches it through its
    // delta fetches (reconciled against our apps__hashcode).
    let mut stdin = java.stdin.take().unwrap();
    c.register(&inst("rust-late", "rust-late-1", 9202))
        .await
        .unwrap();
    stdin.write_all(b"find RUST-LATE\n").await.unwrap();
    stdin.flush().await.unwrap();
    let late = next_with("FOUND RUST-LATE", &mut log).await;
    assert_eq!(late, "FOUND RUST-LATE rust-late-1 127.0.0.1:9202 rust");
    stdin.write_all(b"stop\n").await.unwrap();
    stdin.flush().await.unwrap();
    next_with("STOPPED", &mut log).await;
    let status = tokio::time::timeout(Duration::from_secs(60), java.wait())
        .await
        .expect("java exits")
        .unwrap();
    assert!(status.success(), "java exited with {status}");
    assert!(
        server.applications().application("JAVA-DEMO").is_none(),
        "the Java client deregistered on shutdown"
    );

    let _ = stop_tx.send(());
    serving.await.unwrap().unwrap();
}

/// Polls (bounded) until `ids` of application `app` on the server behind `c` are exactly `want`.
async fn converge_on(c: &RegistryClient, app: &str, want: &[&str], what: &str) {
    let mut last = None;
    for _ in 0..300 {
        match c.fetch_application(app).await {
            Ok(a) => {
                let mut ids: Vec<String> = a.instances.iter().map(|i| i.id().to_owned()).collect();
                ids.sort();
                if ids == want {
                    return;
                }
                last = Some(format!("{ids:?}"));
            }
            Err(e) if e.status() == Some(http::StatusCode::NOT_FOUND) && want.is_empty() => return,
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: never saw {want:?} for {app}; last: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_and_the_java_server_replicate_to_each_other() {
    let jar = env("PALISADE_JAVA_EUREKA_SERVER_JAR");
    let java_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let our_port = listener.local_addr().unwrap().port();
    let server = RegistryServer::new(ServerConfig {
        use_read_only_response_cache: false,
        peers: palisade_registry_server::PeerConfig {
            peer_urls: vec![format!("http://127.0.0.1:{java_port}/eureka/")],
            max_batch_delay: Duration::from_millis(50),
            retry_backoff: Duration::from_millis(200),
            sync_retries: 1,
            wait_time_when_sync_empty: Duration::ZERO,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.clone().serve(listener, async {
        let _ = stop_rx.await;
    }));

    // A stock Java server whose only peer is ours. Its own host name must differ from the peer
    // URL's host, or Java drops the URL as its own.
    let mut java = Command::new("java")
        .args(["-XX:TieredStopAtLevel=1", "-jar", &jar])
        .arg(format!("--server.port={java_port}"))
        .arg(format!(
            "--eureka.client.service-url.defaultZone=http://127.0.0.1:{our_port}/eureka/"
        ))
        .args([
            "--eureka.instance.hostname=java-peer",
            "--eureka.client.register-with-eureka=false",
            "--eureka.client.fetch-registry=true",
            "--eureka.client.registry-fetch-interval-seconds=1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Java Eureka server");
    let on_java = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(format!(
            "http://127.0.0.1:{java_port}/eureka/"
        ))],
        request_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap();
    let mut up = false;
    for _ in 0..1200 {
        if on_java.fetch_full().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the Java peer did not start within 120 s");
    let on_ours = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(format!(
            "http://127.0.0.1:{our_port}/eureka/"
        ))],
        ..Default::default()
    })
    .unwrap();

    // Ours to Java: our batch sender, Java's batch receiver.
    on_ours
        .register(&inst("peered", "from-ours", 9301))
        .await
        .unwrap();
    converge_on(
        &on_java,
        "PEERED",
        &["from-ours"],
        "Java receiving our replication",
    )
    .await;
    // Java to ours: Java's batch sender, our batch receiver.
    on_java
        .register(&inst("peered", "from-java", 9302))
        .await
        .unwrap();
    converge_on(
        &on_ours,
        "PEERED",
        &["from-java", "from-ours"],
        "ours receiving Java's replication",
    )
    .await;
    // Status overrides and cancels travel both ways too.
    on_java
        .set_status_override("peered", "from-ours", InstanceStatus::OutOfService)
        .await
        .unwrap();
    let mut replicated = false;
    for _ in 0..300 {
        let apps = server.applications();
        if apps
            .instances()
            .any(|i| i.id() == "from-ours" && i.status == InstanceStatus::OutOfService)
        {
            replicated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(replicated, "Java's StatusUpdate did not reach us");
    on_ours.cancel("peered", "from-java").await.unwrap();
    converge_on(
        &on_java,
        "PEERED",
        &["from-ours"],
        "Java receiving our cancel",
    )
    .await;
    on_java.cancel("peered", "from-ours").await.unwrap();
    converge_on(&on_ours, "PEERED", &[], "ours receiving Java's cancel").await;

    java.start_kill().unwrap();
    let _ = java.wait().await;
    let _ = stop_tx.send(());
    serving.await.unwrap().unwrap();
}
