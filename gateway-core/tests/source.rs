//! Routes from dynconfig: the routes document is one key of a dynconfig file source, watched
//! by dynconfig's own file watcher; a bad document is refused with its line and the old routes
//! keep serving.

mod common;

use std::time::Duration;

use common::*;
use palisade_gateway::Gateway;
use palisade_gateway::source::follow_dynconfig;

fn doc(upstream: &str, prefix: &str) -> String {
    // The routes document as a YAML block scalar under `gateway.routes`.
    format!(
        "app:\n  name: edge\ngateway:\n  routes: |\n    routes:\n      - id: api\n        upstream: {upstream}\n        predicates: {{ path_prefix: {prefix} }}\n"
    )
}

/// Replaces the file whole (a rename), so the watcher never reads half a document.
fn put(file: &std::path::Path, text: &str) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_a_dynconfig_file_and_bad_documents_are_refused() {
    let b = backend("b").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, doc(&format!("http://{}", b.addr), "/v1")).unwrap();
    let config = palisade_dynconfig::Config::builder()
        .file(&file)
        .build()
        .unwrap();
    let _watcher = config.watch_files(Duration::from_millis(20)).unwrap();

    let gateway = Gateway::builder(parse("routes: []")).build().unwrap();
    let routes = follow_dynconfig(&gateway, &config, "gateway.routes").unwrap();
    assert_eq!(routes.label(), "dynconfig:gateway.routes");
    assert_eq!(
        gateway.router().version(),
        1,
        "the document was loaded at once"
    );
    let gw = serve(gateway.clone(), parse("routes: []")).await;
    assert_eq!(get_path(gw.addr, "/v1/x").await.status, 200);
    assert_eq!(get_path(gw.addr, "/v2/x").await.status, 404);

    // A new document through the watcher (replaced whole by a rename): the new prefix is live.
    put(&file, &doc(&format!("http://{}", b.addr), "/v2"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while gateway.router().version() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "update not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get_path(gw.addr, "/v2/x").await.status, 200);
    assert_eq!(get_path(gw.addr, "/v1/x").await.status, 404);

    // A bad document: refused with the line inside the document, routes kept.
    put(&file, &doc("ftp://nowhere", "/v3"));
    config.reload_files().unwrap(); // dynconfig accepts the string; the gateway refuses it
    let status = gateway.reload_status().borrow().clone();
    let err = status.last_error.expect("refused");
    assert!(
        err.starts_with("dynconfig:gateway.routes:3:") && err.contains("routes[0].upstream"),
        "{err}"
    );
    assert!(err.contains("unsupported upstream scheme `ftp`"), "{err}");
    assert_eq!(gateway.router().version(), 2);
    assert_eq!(get_path(gw.addr, "/v2/x").await.status, 200);

    // And a fixed document goes through again.
    put(&file, &doc(&format!("http://{}", b.addr), "/v4"));
    config.reload_files().unwrap();
    assert_eq!(gateway.router().version(), 3);
    assert_eq!(get_path(gw.addr, "/v4/x").await.status, 200);
}
