//! Interop with the Java originals, built by scripts/services/spring-config.sh: a Spring Boot
//! config client reads our server, and the real Spring Cloud Config Server 5.0.x serves the same
//! git repository as ours with the same answers (values, precedence, version, flat forms, v2
//! origins), so the dynconfig remote source builds the same configuration from either. These
//! tests fail (not skip) when the jars are not built.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use palisade_config_server::{Cipher, V2_MEDIA_TYPE};
use palisade_dynconfig::Config;
use palisade_dynconfig::remote::RemoteOptions;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const JVM_START: Duration = Duration::from_secs(120);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real Spring Cloud Config Server, stopped when dropped.
struct SpringServer {
    _child: Child,
    addr: std::net::SocketAddr,
    _basedir: tempfile::TempDir,
}

async fn start_spring_server(repo: &Repo) -> SpringServer {
    let jar = env_path("PALISADE_SPRING_CONFIG_SERVER_JAR");
    let port = free_port();
    let basedir = tempfile::tempdir().unwrap();
    let mut child = Command::new("java")
        .args(["-XX:TieredStopAtLevel=1", "-Xshare:auto", "-jar"])
        .arg(&jar)
        .arg(format!("--server.port={port}"))
        .arg(format!(
            "--spring.cloud.config.server.git.uri=file://{}",
            repo.path().display()
        ))
        .arg(format!(
            "--spring.cloud.config.server.git.basedir={}",
            basedir.path().join("clone").display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("java starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = tokio::time::timeout(JVM_START, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("Started ConfigServerApp") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        started,
        Ok(true),
        "the Spring Cloud Config Server did not start"
    );
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    SpringServer {
        _child: child,
        addr: ([127, 0, 0, 1], port).into(),
        _basedir: basedir,
    }
}

/// `orders.yml (document #1)` from either server's source name.
fn short_name(name: &str) -> String {
    let tail = name.rsplit('/').next().unwrap();
    tail.replace("' via location ''", "")
}

fn normalized(env: &Value) -> Value {
    let mut env = env.clone();
    for s in env["propertySources"].as_array_mut().unwrap() {
        s["name"] = Value::String(short_name(s["name"].as_str().unwrap()));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_spring_server_and_ours_answer_the_same() {
    let repo = repo();
    let spring = start_spring_server(&repo).await;
    let (server, clone) = git_server(&repo);
    let ours = start(server, clone).await;

    for path in [
        "/orders/prod,eu/main",
        "/orders/prod",
        "/orders/eu,prod/main",
        "/orders/default/v1",
        "/orders/prod/feature(_)x",
        &format!("/orders/prod/{}", repo.main_sha),
        "/application/default/main",
        "/unknown/prod/main",
    ] {
        let a = get(spring.addr, path).await;
        let b = get(ours.addr, path).await;
        assert_eq!(
            (a.status, b.status),
            (200, 200),
            "{path}: {} / {}",
            a.body,
            b.body
        );
        assert_eq!(normalized(&b.json()), normalized(&a.json()), "{path}");
    }
    for path in ["/orders/prod/no-such-label"] {
        assert_eq!(get(spring.addr, path).await.status, 404);
        assert_eq!(get(ours.addr, path).await.status, 404);
    }

    // The v2 media type: the same values and the same `line:column` origins.
    let h = [("Accept", V2_MEDIA_TYPE)];
    let a = request(spring.addr, "GET", "/orders/prod,eu/main", &h, "").await;
    let b = request(ours.addr, "GET", "/orders/prod,eu/main", &h, "").await;
    assert_eq!(normalized(&b.json()), normalized(&a.json()));

    // The flat forms.
    for path in [
        "/orders-prod.json",
        "/main/orders-prod.json",
        "/order-service-prod.json",
    ] {
        let (a, b) = (get(spring.addr, path).await, get(ours.addr, path).await);
        assert_eq!(b.json(), a.json(), "{path}");
    }
    let (a, b) = (
        get(spring.addr, "/orders-prod.properties").await,
        get(ours.addr, "/orders-prod.properties").await,
    );
    assert_eq!(b.body, a.body);
    let (a, b) = (
        get(spring.addr, "/orders-prod.yml").await,
        get(ours.addr, "/orders-prod.yml").await,
    );
    let (ya, yb): (Value, Value) = (
        serde_yaml::from_str(&a.body).unwrap(),
        serde_yaml::from_str(&b.body).unwrap(),
    );
    assert_eq!(yb, ya);

    // Plain resources, placeholders resolved the same way.
    let (a, b) = (
        get(spring.addr, "/orders/prod/main/nginx.conf").await,
        get(ours.addr, "/orders/prod/main/nginx.conf").await,
    );
    assert_eq!((b.status, b.body.as_str()), (a.status, a.body.as_str()));

    // The dynconfig remote source builds the same configuration from either server.
    let mut trees = Vec::new();
    for addr in [spring.addr, ours.addr] {
        let config = Config::builder().default_value("local", 1).build().unwrap();
        let opts = RemoteOptions::new(format!("http://{addr}"), "orders")
            .profiles(["prod", "eu"])
            .label("main");
        let (_remote, _) = config.attach_remote(opts).await.unwrap();
        trees.push(config.snapshot().tree().clone());
    }
    assert_eq!(trees[1], trees[0]);
    assert_eq!(trees[0]["server"]["port"], 9090);
    assert_eq!(trees[0]["db"]["url"], "jdbc://db-prod/orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spring_boot_client_reads_our_server() {
    let jar = env_path("PALISADE_SPRING_CONFIG_CLIENT_JAR");
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let ours = start(
        server
            .basic_auth(USER, PASSWORD)
            .cipher(Cipher::from_hex(KEY).unwrap()),
        clone,
    )
    .await;
    let keys = "server.port,greeting,region,db.url,list[0],secret,feature.flag";
    let out = Command::new("java")
        .args(["-XX:TieredStopAtLevel=1", "-jar"])
        .arg(&jar)
        .arg("--spring.application.name=orders")
        .arg("--spring.profiles.active=prod,eu")
        .arg(format!(
            "--spring.config.import=configserver:http://{}",
            ours.addr
        ))
        .arg("--spring.cloud.config.label=main")
        .arg(format!("--spring.cloud.config.username={USER}"))
        .arg(format!("--spring.cloud.config.password={PASSWORD}"))
        .arg("--spring.cloud.config.fail-fast=true")
        .arg(format!("--palisade.keys={keys}"))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(JVM_START, out)
        .await
        .expect("the client finishes")
        .expect("java starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PALISADE-RESULT "))
        .unwrap_or_else(|| panic!("no result line: {stdout}"));
    let got: Value = serde_json::from_str(line).unwrap();
    assert_eq!(got["server.port"], "9090");
    assert_eq!(got["greeting"], "hello prod app");
    assert_eq!(got["region"], "eu", "the last profile wins");
    assert_eq!(got["db.url"], "jdbc://db-prod/orders");
    assert_eq!(got["list[0]"], "c");
    assert_eq!(got["secret"], "s3cret value", "decrypted by our server");
    assert_eq!(got["feature.flag"], "true");
    let m = request(
        ours.addr,
        "GET",
        "/metrics",
        &[("Authorization", &basic(USER, PASSWORD))],
        "",
    )
    .await;
    assert!(
        m.body.contains("endpoint=\"environment\",code=\"200\""),
        "the client fetched: {}",
        m.body
    );
}
