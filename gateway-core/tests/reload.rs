//! The routes file: precise errors, hot reload (direct, watched, under load), the admin API and
//! graceful shutdown.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use http_body_util::Full;
use palisade_gateway::config::GatewayConfig;

fn routes(backend: std::net::SocketAddr, tag: &str) -> String {
    format!(
        "routes:\n  - id: main\n    upstream: http://{backend}\n    filters:\n      - add_response_header: {{ name: x-version, value: {tag} }}\n"
    )
}

#[test]
fn errors_name_file_line_and_key() {
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "routes:\n  - id: a\n    upstream: ftp://x\n",
            3,
            "routes[0].upstream",
            "unsupported upstream scheme",
        ),
        (
            "routes:\n  - id: a\n    upstream: http://h:1\n    predicates:\n      path: \"users/{id}\"\n",
            5,
            "routes[0].predicates.path",
            "must start with `/`",
        ),
        (
            "routes:\n  - id: a\n    upstream: http://h:1\n    filters:\n      - add_request_header: { name: \"bad name\", value: v }\n",
            5,
            "routes[0].filters[0].add_request_header.name",
            "invalid header name",
        ),
        (
            "routes:\n  - id: a\n    upstream: http://h:1\n    predicates:\n      headers: [ { name: x, regex: \"(\" } ]\n",
            5,
            "routes[0].predicates.headers[0].regex",
            "invalid regex",
        ),
        (
            "routes:\n  - id: a\n    upstream: http://h:1\n    timeuot: 1s\n",
            4,
            "routes[0].timeuot",
            "unknown field `timeuot`",
        ),
        (
            "routes:\n  - id: a\n    upstream: http://h:1\n  - id: a\n    upstream: http://h:2\n",
            2,
            "routes[1].id",
            "duplicate route id `a`",
        ),
        (
            "routes:\n  - id: a\n    upstream: http://h:1\n    predicates: { path: \"/u/{id}\" }\n    filters: [ { set_path: \"/v/{uid}\" } ]\n",
            2,
            "routes[0].filters[0].set_path",
            "does not capture",
        ),
        (
            "routes:\n  - id: a\n    upstream: http://h:1\n    filters: [ { strip_prefix: -1 } ]\n",
            4,
            "routes[0].filters[0].strip_prefix",
            "expected usize",
        ),
    ];
    for (yaml, line, key, msg) in cases {
        let e = GatewayConfig::from_yaml(yaml, "conf/routes.yaml").unwrap_err();
        assert_eq!(e.file(), std::path::Path::new("conf/routes.yaml"));
        assert_eq!(e.line(), Some(*line), "{e}");
        assert_eq!(e.key(), *key, "{e}");
        assert!(e.message().contains(msg), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("conf/routes.yaml:{line}")),
            "{e}"
        );
    }
}

#[tokio::test]
async fn bad_file_is_refused_and_old_routes_stay() {
    let b = backend("b").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, routes(b.addr, "v1")).unwrap();
    let cfg = GatewayConfig::from_file(&file).unwrap();
    let gw = serve(
        palisade_gateway::Gateway::builder(cfg.clone())
            .file(&file)
            .build()
            .unwrap(),
        cfg,
    )
    .await;
    let c = client();
    assert_eq!(
        send_with(&c, get(gw.addr, "/").body(Full::default()).unwrap())
            .await
            .headers["x-version"],
        "v1"
    );

    std::fs::write(&file, "routes:\n  - id: main\n    upstream: http://{nope\n").unwrap();
    let e = gw.gateway.reload_file(&file).unwrap_err();
    assert_eq!(e.line(), Some(3));
    assert_eq!(e.key(), "routes[0].upstream");
    let status = gw.gateway.reload_status().borrow().clone();
    assert_eq!(status.version, 0);
    assert!(status.last_error.unwrap().contains("routes[0].upstream"));
    // Same connection, old routes.
    assert_eq!(
        send_with(&c, get(gw.addr, "/").body(Full::default()).unwrap())
            .await
            .headers["x-version"],
        "v1"
    );

    std::fs::write(&file, routes(b.addr, "v2")).unwrap();
    assert_eq!(gw.gateway.reload_file(&file).unwrap(), 1);
    assert_eq!(
        send_with(&c, get(gw.addr, "/").body(Full::default()).unwrap())
            .await
            .headers["x-version"],
        "v2"
    );
}

#[tokio::test]
async fn watched_file_reloads_without_dropping_connections() {
    let b = backend("b").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, routes(b.addr, "v1")).unwrap();
    let cfg = GatewayConfig::from_file(&file).unwrap();
    let gw = serve(
        palisade_gateway::Gateway::builder(cfg.clone())
            .file(&file)
            .build()
            .unwrap(),
        cfg,
    )
    .await;
    let _watch = palisade_gateway::reload::watch_routes_file(
        gw.gateway.clone(),
        &file,
        std::time::Duration::from_millis(20),
    )
    .unwrap();
    let mut status = gw.gateway.reload_status();

    // Load: four keep-alive clients hammer the gateway during the reloads.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (stop, failures, done, addr) = (stop.clone(), failures.clone(), done.clone(), gw.addr);
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::SeqCst) {
                match c
                    .request(get(addr, "/").body(Full::default()).unwrap())
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        seen.insert(r.headers()["x-version"].to_str().unwrap().to_owned());
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            seen
        }));
    }

    // A bad edit: refused, reported, the old routes stay.
    std::fs::write(
        &file,
        "routes:\n  - id: main\n    upstream: http://x:1\n    oops: 1\n",
    )
    .unwrap();
    tokio::time::timeout(WAIT, status.wait_for(|s| s.last_error.is_some()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.borrow().version, 0);
    assert!(
        status
            .borrow()
            .last_error
            .as_ref()
            .unwrap()
            .contains("routes.yaml:4"),
        "{:?}",
        status.borrow()
    );

    // A good edit (written by rename, as editors and deploy tools do).
    let tmp = dir.path().join("routes.yaml.tmp");
    std::fs::write(&tmp, routes(b.addr, "v2")).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    tokio::time::timeout(WAIT, status.wait_for(|s| s.version == 1))
        .await
        .unwrap()
        .unwrap();
    assert!(status.borrow().last_error.is_none());

    // Let the load see the new routes, then stop.
    let before = done.load(Ordering::SeqCst);
    tokio::time::timeout(WAIT, async {
        while done.load(Ordering::SeqCst) < before + 50 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    let mut versions = std::collections::BTreeSet::new();
    for t in tasks {
        versions.extend(t.await.unwrap());
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "requests failed during reloads"
    );
    assert!(versions.contains("v2"), "{versions:?}");
    assert!(done.load(Ordering::SeqCst) > 50);
}

#[tokio::test]
async fn admin_api_is_token_protected() {
    let b = backend("b").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, routes(b.addr, "v1")).unwrap();
    let gw = start(&routes(b.addr, "v1")).await;
    let _ = get_path(gw.addr, "/").await;
    let _ = get_path(gw.addr, "/").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = listener.local_addr().unwrap();
    let admin =
        palisade_gateway::admin::Admin::new(gw.gateway.clone(), "s3cret").routes_file(&file);
    tokio::spawn(palisade_gateway::admin::serve_admin(
        listener,
        admin,
        std::future::pending(),
    ));

    assert_eq!(get_path(admin_addr, "/health").await.body, "ok\n");
    assert_eq!(get_path(admin_addr, "/routes").await.status, 401);
    let wrong = send(
        get(admin_addr, "/routes")
            .header("authorization", "Bearer s3cre7")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let authed = |p: &str| {
        get(admin_addr, p)
            .header("authorization", "Bearer s3cret")
            .body(Full::default())
            .unwrap()
    };
    let r = send(authed("/routes")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["routes"][0]["id"], "main");
    assert_eq!(
        r.json()["routes"][0]["upstream"],
        format!("http://{}", b.addr)
    );
    let m = send(authed("/metrics")).await;
    assert!(
        m.body
            .contains("palisade_gateway_requests_total{route=\"main\",code=\"2xx\"} 2"),
        "{}",
        m.body
    );
    let br = send(authed("/breakers")).await;
    assert_eq!(br.status, 200);
    assert!(br.json().is_array());

    std::fs::write(&file, routes(b.addr, "v9")).unwrap();
    let mut req = authed("/reload");
    *req.method_mut() = http::Method::POST;
    let r = send(req).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get_path(gw.addr, "/").await.headers["x-version"], "v9");
    std::fs::write(&file, "routes: [ { id: x } ]").unwrap();
    let mut req = authed("/reload");
    *req.method_mut() = http::Method::POST;
    let r = send(req).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("missing field `upstream`"), "{}", r.body);
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let b = backend("b").await;
    let mut gw = start(&routes(b.addr, "v1")).await;
    let c = client();
    let in_flight = tokio::spawn({
        let c = c.clone();
        let addr = gw.addr;
        async move { send_with(&c, get(addr, "/stream-down").body(Full::default()).unwrap()).await }
    });
    // Wait until the request is inside the backend (its first chunk is held back).
    tokio::time::timeout(WAIT, async {
        while b.hits.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    let serve_task = gw.shutdown();
    // New connections are refused once the accept loop has stopped.
    tokio::time::timeout(WAIT, async {
        while tokio::net::TcpStream::connect(gw.addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("listener still accepting after shutdown");
    assert!(!serve_task.is_finished(), "a request is still in flight");
    b.release.notify_one();
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "first;second");
    let left = tokio::time::timeout(WAIT, serve_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(left, 0, "drained cleanly");
}
