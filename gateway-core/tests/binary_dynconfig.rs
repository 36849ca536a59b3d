//! gw2: the binary takes its routes from a dynconfig key (`dynconfig: { files, key }` in its
//! config file): spawned as a process, it serves the document's routes, follows changes of the
//! dynconfig file, refuses a bad document with its line (old routes kept) and refuses to start
//! on a bad one.

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

fn app_doc(upstream: &str, prefix: &str) -> String {
    format!(
        "app:\n  name: edge\ngateway:\n  routes: |\n    routes:\n      - id: api\n        upstream: {upstream}\n        predicates: {{ path_prefix: {prefix} }}\n"
    )
}

/// Replaces the file whole (a rename), so the watcher never reads half a document.
fn put(file: &Path, text: &str) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

fn gateway_yaml(dir: &Path, app: &Path) -> std::path::PathBuf {
    let cfg = dir.join("gateway.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\ndynconfig: {{ files: [{}], key: gateway.routes, debounce: 50ms }}\n",
            app.display()
        ),
    )
    .unwrap();
    cfg
}

/// The running binary and its stderr lines.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(cfg: &Path) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
            .arg(cfg)
            .args(["--workers", "1"])
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stderr).lines() {
                let Ok(l) = l else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Proc { child, lines }
    }

    /// The first stderr line containing `needle`, within `WAIT`.
    fn line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!("no stderr line with {needle:?}"),
            }
        }
    }

    fn addr(&self) -> SocketAddr {
        let l = self.line_with("gateway started");
        let a = l.split("listen=").nth(1).expect("listen field");
        a.split_whitespace().next().unwrap().parse().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_follows_routes_in_a_dynconfig_key() {
    let b = backend("b").await;
    let up = format!("http://{}", b.addr);
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.yaml");
    std::fs::write(&app, app_doc(&up, "/v1")).unwrap();
    let gw = Proc::spawn(&gateway_yaml(dir.path(), &app));
    let addr = gw.addr();
    assert_eq!(get_path(addr, "/v1/x").await.status, 200);
    assert_eq!(get_path(addr, "/v2/x").await.status, 404);

    // A bad document: refused with the line inside the document; /v1 keeps working.
    put(&app, &app_doc("ftp://nowhere", "/v3"));
    let refused = gw.line_with("routes document refused");
    assert!(
        refused.contains("dynconfig:gateway.routes:3:") && refused.contains("routes[0].upstream"),
        "{refused}"
    );
    assert!(
        refused.contains("unsupported upstream scheme `ftp`"),
        "{refused}"
    );
    assert_eq!(get_path(addr, "/v1/x").await.status, 200);

    // A good one goes live.
    put(&app, &app_doc(&up, "/v2"));
    gw.line_with("routes reloaded");
    assert_eq!(get_path(addr, "/v2/x").await.status, 200);
    assert_eq!(get_path(addr, "/v1/x").await.status, 404);
}

fn run_to_exit(cfg: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .arg(cfg)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (st.code(), String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway started on a bad configuration");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_binary_refuses_to_start_on_a_bad_dynconfig_document() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.yaml");
    std::fs::write(&app, app_doc("ftp://nowhere", "/v1")).unwrap();
    let (code, err) = run_to_exit(&gateway_yaml(dir.path(), &app));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("error: dynconfig:gateway.routes:3:")
            && err.contains("routes[0].upstream: unsupported upstream scheme `ftp`"),
        "{err}"
    );

    // No document under the key.
    std::fs::write(&app, "app: { name: edge }\n").unwrap();
    let (code, err) = run_to_exit(&gateway_yaml(dir.path(), &app));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("error: dynconfig:gateway.routes: no routes document under this key"),
        "{err}"
    );

    // Routes in both places.
    let cfg = dir.path().join("both.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\nroutes:\n  - {{ id: a, upstream: http://127.0.0.1:1 }}\ndynconfig: {{ files: [{}], key: gateway.routes }}\n",
            app.display()
        ),
    )
    .unwrap();
    let (code, err) = run_to_exit(&cfg);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "error: {}:4: dynconfig: the routes come from dynconfig: remove this file's `routes`",
            cfg.display()
        )),
        "{err}"
    );
}
