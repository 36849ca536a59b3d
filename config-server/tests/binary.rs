//! The `palisade-config-server` binary: options, environment variables, and serving a folder.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn the_binary_serves_a_folder_with_auth_and_a_key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("application.yml"), "greeting: hello\n").unwrap();
    std::fs::write(
        dir.path().join("orders-prod.properties"),
        "greeting=hello prod\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_palisade-config-server"))
        .args(["--bind", &format!("127.0.0.1:{port}"), "--native"])
        .arg(dir.path())
        .args(["--user", USER])
        .env("PALISADE_CONFIG_PASSWORD", PASSWORD)
        .env("PALISADE_ENCRYPT_KEY", KEY)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the server says it listens")
        .unwrap()
        .unwrap();
    assert!(line.contains("listening on 127.0.0.1"), "{line}");
    assert!(!line.contains(KEY));
    let addr = ([127, 0, 0, 1], port).into();
    let auth = basic(USER, PASSWORD);
    assert_eq!(get(addr, "/orders/prod").await.status, 401);
    let r = request(addr, "GET", "/orders/prod", &[("Authorization", &auth)], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["propertySources"][0]["source"]["greeting"],
        "hello prod"
    );
    assert_eq!(
        r.json()["version"],
        serde_json::Value::Null,
        "a folder has no version"
    );
    let enc = request(addr, "POST", "/encrypt", &[("Authorization", &auth)], "x").await;
    let dec = request(
        addr,
        "POST",
        "/decrypt",
        &[("Authorization", &auth)],
        &enc.body,
    )
    .await;
    assert_eq!(dec.body, "x");
    child.kill().await.unwrap();

    // A bad key is refused at start, with a message that does not echo it.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_palisade-config-server"))
        .args(["--bind", "127.0.0.1:0", "--native"])
        .arg(dir.path())
        .env("PALISADE_ENCRYPT_KEY", "not-a-key-123")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("64 hex digits") && !err.contains("not-a-key-123"),
        "{err}"
    );
}
