//! Shared test fixtures: a real git repository made with the `git` CLI, our server started
//! in-process on 127.0.0.1, and a tiny HTTP/1.1 client.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use palisade_config_server::{Cipher, ConfigServer, GitBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const KEY: &str = "8f3c1a2b4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";
pub const USER: &str = "ops";
pub const PASSWORD: &str = "p4ss word";

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the git CLI runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub struct Repo {
    pub dir: tempfile::TempDir,
    pub main_sha: String,
    pub v1_sha: String,
}

impl Repo {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn write(&self, name: &str, text: &str) {
        let p = self.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    pub fn commit(&self, msg: &str) -> String {
        git(self.path(), &["add", "-A"]);
        git(self.path(), &["commit", "-qm", msg]);
        git(self.path(), &["rev-parse", "HEAD"])
    }
}

/// The repository every config-server test serves.
pub fn repo() -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let r = Repo {
        dir,
        main_sha: String::new(),
        v1_sha: String::new(),
    };
    git(r.path(), &["init", "-q"]);
    let cipher = Cipher::from_hex(KEY).unwrap();
    r.write(
        "application.yml",
        "greeting: hello\ndb:\n  host: db-default\n  url: jdbc://${db.host}/orders\nlist:\n  - a\n  - b\n",
    );
    r.write(
        "orders.yml",
        "greeting: hello orders\nserver:\n  port: 8080\n---\nspring:\n  config:\n    activate:\n      on-profile: eu\nregion: eu-doc\n",
    );
    r.write(
        "orders-prod.yml",
        &format!(
            "server:\n  port: 9090\ndb:\n  host: db-prod\nlist:\n  - c\nsecret: '{{cipher}}{}'\nbroken: '{{cipher}}00ff'\n",
            cipher.encrypt("s3cret value")
        ),
    );
    r.write(
        "application-prod.properties",
        "feature.flag=true\ngreeting=hello prod app\n",
    );
    r.write("orders-eu.yml", "region: eu\n");
    r.write(
        "nginx.conf",
        "server { listen ${server.port}; } # ${unknown.key}\n",
    );
    r.write("nginx-eu.conf", "eu { region ${region}; }\n");
    r.write("other/orders.yml", "greeting: from a search path\n");
    let v1 = r.commit("first");
    git(r.path(), &["tag", "v1"]);
    r.write("orders.yml", "greeting: hello orders v2\nserver:\n  port: 8080\n---\nspring:\n  config:\n    activate:\n      on-profile: eu\nregion: eu-doc\n");
    let main = r.commit("second");
    git(r.path(), &["checkout", "-qb", "feature/x"]);
    r.write("orders-prod.yml", "server:\n  port: 9999\n");
    r.commit("feature");
    git(r.path(), &["checkout", "-q", "main"]);
    Repo {
        main_sha: main,
        v1_sha: v1,
        ..r
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub clone_dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn git_server(repo: &Repo) -> (ConfigServer, tempfile::TempDir) {
    let clone = tempfile::tempdir().unwrap();
    let backend = GitBackend::new(repo.path().display().to_string(), clone.path().join("c"));
    (ConfigServer::new(backend), clone)
}

pub async fn start(server: ConfigServer, clone_dir: tempfile::TempDir) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server.router();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Running {
        addr,
        clone_dir,
        task,
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], "").await
}

pub fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

pub fn env_path(var: &str) -> PathBuf {
    std::env::var_os(var)
        .unwrap_or_else(|| panic!("{var} is not set: run the tests through scripts/test.sh (scripts/services/config-clients.sh sets it)"))
        .into()
}
