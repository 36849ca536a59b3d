//! Third-party Spring Cloud Config clients against our server: config-client 1.5.0 (PyPI) and
//! cloud-config-client 1.6.2 (npm), installed by scripts/services/config-clients.sh. These tests
//! fail (not skip) when the clients are not installed.

mod common;

use common::*;
use palisade_config_server::Cipher;

async fn run(program: &str, args: &[&str], envs: &[(&str, &std::path::Path)]) -> serde_json::Value {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("the client finishes within 60 s")
        .expect("the client starts");
    assert!(
        out.status.success(),
        "{program} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

const PY: &str = r#"
import json, sys
from config import ConfigClient
addr, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
c = ConfigClient(address=addr, app_name="orders", profile="prod", label="main", fail_fast=False)
c.get_config(auth=(user, password))
enc = c.encrypt("from python", auth=(user, password))
print(json.dumps({
    "port": c.get("server.port"),
    "greeting": c.get("greeting"),
    "db_host": c.get("db.host"),
    "secret": c.get("secret"),
    "list": c.get("list"),
    "file": c.get_file("nginx.conf", auth=(user, password)),
    "roundtrip": c.decrypt(enc, auth=(user, password)),
}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_config_client_reads_our_server() {
    let py_path = env_path("PALISADE_PY_CONFIG_CLIENT");
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(
        server
            .basic_auth(USER, PASSWORD)
            .cipher(Cipher::from_hex(KEY).unwrap()),
        clone,
    )
    .await;
    let addr = format!("http://{}", s.addr);
    let got = run(
        "python3",
        &["-c", PY, &addr, USER, PASSWORD],
        &[("PYTHONPATH", &py_path)],
    )
    .await;
    assert_eq!(got["port"], 9090);
    assert_eq!(got["greeting"], "hello prod app");
    assert_eq!(got["db_host"], "db-prod");
    assert_eq!(got["secret"], "s3cret value");
    assert_eq!(got["file"], "server { listen 9090; } # ${unknown.key}\n");
    assert_eq!(got["roundtrip"], "from python");
    // The client turns flattened `list[i]` keys back into lists; the most specific source's
    // list replaces the others whole.
    assert_eq!(got["list"], serde_json::json!(["c"]));
}

const JS: &str = r#"
const path = require('path');
const client = require(path.join(process.env.NODE_CLIENT_DIR, 'node_modules', 'cloud-config-client'));
const [endpoint, user, pass] = process.argv.slice(1);
client.load({ endpoint, name: 'orders', profiles: ['prod', 'eu'], label: 'main', auth: { user, pass } })
  .then((config) => {
    console.log(JSON.stringify({
      port: config.get('server.port'),
      greeting: config.get('greeting'),
      region: config.get('region'),
      list0: config.get('list[0]'),
      list1: config.get('list[1]'),
      secret: config.get('secret'),
      sources: config.raw.propertySources.length,
    }));
  })
  .catch((e) => { console.error(e); process.exit(1); });
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_cloud_config_client_reads_our_server() {
    let node_dir = env_path("PALISADE_NODE_CONFIG_CLIENT");
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(
        server
            .basic_auth(USER, PASSWORD)
            .cipher(Cipher::from_hex(KEY).unwrap()),
        clone,
    )
    .await;
    let endpoint = format!("http://{}", s.addr);
    let got = run(
        "node",
        &["-e", JS, &endpoint, USER, PASSWORD],
        &[("NODE_CLIENT_DIR", &node_dir)],
    )
    .await;
    assert_eq!(got["port"], 9090);
    assert_eq!(got["greeting"], "hello prod app");
    assert_eq!(got["region"], "eu", "the last profile wins");
    assert_eq!(got["list0"], "c", "the most specific source's list wins");
    assert_eq!(got["secret"], "s3cret value");
    assert_eq!(got["sources"], 6);
}
