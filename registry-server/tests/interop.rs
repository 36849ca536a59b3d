//! Our server with the real third-party clients: py_eureka_client 0.13.3 (fetches XML) and
//! eureka-js-client 4.5.0 (fetches JSON, uses deltas). `scripts/services/registry-clients.sh`
//! installs them and exports where they are; without those variables this test fails.

use std::process::Stdio;
use std::time::Duration;

use palisade_registry_client::model::InstanceStatus;
use palisade_registry_client::{ClientConfig, RegistryClient, ServiceUrl};
use palisade_registry_server::{RegistryServer, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run this test through scripts/test.sh (scripts/services/registry-clients.sh sets it)")
    })
}

fn script(name: &str) -> String {
    format!("{}/tests/interop/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Forwards every stdout and stderr line of `child`, tagged, to `tx`.
fn forward(
    child: &mut Child,
    tag: &'static str,
    tx: mpsc::UnboundedSender<(&'static str, String)>,
) {
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = tx.send((tag, l));
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(err).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = tx2.send((tag, format!("stderr: {l}")));
        }
    });
}

/// Returns the line from `tag` starting with `prefix`, already received or arriving within a
/// bounded wait.
async fn wait_line(
    rx: &mut mpsc::UnboundedReceiver<(&'static str, String)>,
    log: &mut Vec<String>,
    tag: &str,
    prefix: &str,
) -> String {
    let wanted = format!("[{tag}] {prefix}");
    if let Some(l) = log.iter().find(|l| l.starts_with(&wanted)) {
        return l[tag.len() + 3..].to_owned();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((t, line))) => {
                log.push(format!("[{t}] {line}"));
                if t == tag && line.starts_with(prefix) {
                    return line;
                }
            }
            _ => panic!(
                "no {prefix:?} line from {tag} within 90 s; output:\n{}",
                log.join("\n")
            ),
        }
    }
}

/// Polls `cond` every 100 ms until it holds or `limit` passes (real processes are involved).
async fn poll(limit: Duration, mut cond: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if cond() { Ok(()) } else { Err(()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_clients_register_find_each_other_and_deregister() {
    let python = env("PALISADE_PY_EUREKA_PYTHON");
    let node_path = env("PALISADE_EUREKA_JS_NODE_PATH");

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

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut py = Command::new(&python)
        .arg(script("py_client.py"))
        .arg(format!("http://127.0.0.1:{port}/eureka"))
        .arg("js-demo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start python");
    forward(&mut py, "py", tx.clone());
    let mut js = Command::new("node")
        .arg(script("js_client.js"))
        .arg(port.to_string())
        .arg("py-demo")
        .env("NODE_PATH", &node_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    forward(&mut js, "js", tx);

    let mut log = Vec::new();
    let py_found = wait_line(&mut rx, &mut log, "py", "FOUND").await;
    assert_eq!(py_found, "FOUND JS-DEMO js-demo-1 127.0.0.1:7070");
    let py_vip = wait_line(&mut rx, &mut log, "py", "VIP").await;
    assert_eq!(py_vip, "VIP 127.0.0.1:py-demo:9090 UP python");
    let py_inst = wait_line(&mut rx, &mut log, "py", "INSTANCE").await;
    assert_eq!(py_inst, "INSTANCE 127.0.0.1:py-demo:9090 9090");
    let py_app = wait_line(&mut rx, &mut log, "py", "APP").await;
    assert_eq!(py_app, "APP JS-DEMO 1 localhost");
    let js_found = wait_line(&mut rx, &mut log, "js", "FOUND").await;
    assert_eq!(
        js_found,
        "FOUND PY-DEMO 127.0.0.1:py-demo:9090 127.0.0.1:9090"
    );
    let js_vip = wait_line(&mut rx, &mut log, "js", "VIP").await;
    assert_eq!(js_vip, "VIP 1");

    // Both heartbeat: each lease gets renewed after registration (bounded wait on the real clients).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let apps = server.applications();
        let renewed = |app: &str| {
            apps.application(app).is_some_and(|a| {
                a.instances.iter().any(|i| {
                    let l = i.lease_info.unwrap();
                    i.status == InstanceStatus::Up
                        && l.last_renewal_timestamp > l.registration_timestamp
                })
            })
        };
        if renewed("PY-DEMO") && renewed("JS-DEMO") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeats seen: {apps:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // py_eureka_client's status override round trip: OUT_OF_SERVICE through the override, then
    // the override deleted without a value (status UNKNOWN), so its next heartbeat is answered
    // 404 and it registers again (py_eureka_client registers with UP).
    let mut py_in = py.stdin.take().unwrap();
    py_in.write_all(b"oos\n").await.unwrap();
    py_in.flush().await.unwrap();
    wait_line(&mut rx, &mut log, "py", "OOS").await;
    let py_now = || {
        server
            .applications()
            .application("PY-DEMO")
            .unwrap()
            .instances[0]
            .clone()
    };
    assert_eq!(py_now().status, InstanceStatus::OutOfService);
    assert_eq!(py_now().overridden_status, InstanceStatus::OutOfService);
    let oos_at = py_now().last_updated_timestamp;
    py_in.write_all(b"restore\n").await.unwrap();
    py_in.flush().await.unwrap();
    wait_line(&mut rx, &mut log, "py", "RESTORED").await;
    poll(Duration::from_secs(30), || {
        let i = py_now();
        i.status == InstanceStatus::Up
            && i.overridden_status == InstanceStatus::Unknown
            && i.action_type == Some(palisade_registry_client::ActionType::Added)
            && i.last_updated_timestamp > oos_at
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "py did not re-register after its override was deleted: {:?}",
            py_now()
        )
    });

    // eureka-js-client re-registers after a heartbeat answered 404.
    let ours = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(format!("http://127.0.0.1:{port}/eureka/"))],
        ..Default::default()
    })
    .unwrap();
    ours.cancel("JS-DEMO", "js-demo-1").await.unwrap();
    assert!(server.applications().application("JS-DEMO").is_none());
    poll(Duration::from_secs(30), || {
        server.applications().application("JS-DEMO").is_some()
    })
    .await
    .expect("eureka-js-client did not re-register after a 404 heartbeat");

    py_in.write_all(b"stop\n").await.unwrap();
    py_in.flush().await.unwrap();
    for child in [&mut js] {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"stop\n").await.unwrap();
        stdin.flush().await.unwrap();
    }
    wait_line(&mut rx, &mut log, "py", "STOPPED").await;
    wait_line(&mut rx, &mut log, "js", "STOPPED").await;
    for (name, child) in [("py", &mut py), ("js", &mut js)] {
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} did not exit"))
            .unwrap();
        assert!(
            status.success(),
            "{name} exited with {status}; output:\n{}",
            log.join("\n")
        );
    }
    let left = server.applications();
    assert!(
        left.applications.is_empty(),
        "both deregistered, left: {left:?}"
    );

    let _ = stop_tx.send(());
    serving.await.unwrap().unwrap();
}
