//! `lb://` routes through a real registry (our Eureka-compatible `registry-server`, in process
//! on 127.0.0.1) and the balancer: requests spread over the registered instances, one instance
//! is killed under concurrent load and no idempotent request fails (retried on another
//! instance, the dead one ejected), and an unknown service gets a clear `503`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use palisade_balancer::EndpointState;
use palisade_gateway::lb::RegistryResolver;
use palisade_registry_client::{
    ClientConfig, DataCenterInfo, InstanceInfo, InstanceStatus, PortInfo, RegistryClient,
    ServiceUrl,
};
use palisade_registry_server::{RegistryServer, ServerConfig};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// An instance answering its name; aborting `task` kills the listener and every connection.
struct Instance {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

async fn instance(name: &'static str) -> Instance {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let h = h.clone();
            conns.spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    h.fetch_add(1, Ordering::SeqCst);
                    async move {
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(name))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Instance { addr, hits, task }
}

async fn registry() -> (String, tokio::sync::oneshot::Sender<()>) {
    let server = RegistryServer::new(ServerConfig {
        use_read_only_response_cache: false,
        ..Default::default()
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/eureka/",
        listener.local_addr().unwrap().port()
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    (url, tx)
}

fn record(app: &str, id: &str, addr: SocketAddr) -> InstanceInfo {
    InstanceInfo {
        instance_id: id.into(),
        host_name: "localhost".into(),
        app: app.into(),
        ip_addr: addr.ip().to_string(),
        status: InstanceStatus::Up,
        port: Some(PortInfo::enabled(addr.port())),
        data_center_info: DataCenterInfo::my_own(),
        last_dirty_timestamp: 1,
        ..Default::default()
    }
}

async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_spreads_over_registry_and_survives_a_killed_instance() {
    let (url, _stop) = registry().await;
    let names = ["a", "b", "c"];
    let mut instances = Vec::new();
    let registrar = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(url.clone())],
        ..Default::default()
    })
    .unwrap();
    for n in names {
        let i = instance(n).await;
        registrar
            .register(&record("ORDERS", &format!("orders-{n}"), i.addr))
            .await
            .unwrap();
        instances.push(i);
    }

    let cfg = parse(&format!(
        r#"
registry:
  urls: [ "{url}" ]
  refresh_interval: 100ms
  balancer:
    policy: {{ type: round_robin }}
    outlier: {{ consecutive_failures: 1, base_ejection_time: 60s, max_ejection_percent: 0.5, success_rate: null }}
routes:
  - id: orders
    upstream: lb://orders
    predicates: {{ path_prefix: /orders }}
    retry: {{ attempts: 3 }}
  - id: ghost
    upstream: lb://nosuch
    predicates: {{ path_prefix: /ghost }}
"#
    ));
    let resolver = RegistryResolver::new(cfg.registry.as_ref().unwrap()).unwrap();
    let gw = start_with(cfg, |b| b.resolver(Arc::new(resolver.clone()))).await;

    // Unknown service: a clear 503, at once.
    let r = get_path(gw.addr, "/ghost/1").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "no instance of service `nosuch` is up\n");

    // Every instance gets traffic once the registry copy arrived.
    let c = client();
    let addr = gw.addr;
    wait_for("all three instances served", async || {
        let r = send_with(&c, get(addr, "/orders/1").body(Full::default()).unwrap()).await;
        assert!(r.status == 200 || r.status == 503, "{}", r.status);
        instances.iter().all(|i| i.hits.load(Ordering::SeqCst) > 0)
    })
    .await;

    // Concurrent load; `b` dies in the middle of it.
    let ok = Arc::new(AtomicUsize::new(0));
    let mut load = JoinSet::new();
    for _ in 0..8 {
        let c = c.clone();
        let ok = ok.clone();
        load.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..60 {
                let r = send_with(&c, get(addr, "/orders/42").body(Full::default()).unwrap()).await;
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                statuses.push((r.status.as_u16(), r.body));
            }
            statuses
        });
    }
    wait_for("some load went through", async || {
        ok.load(Ordering::SeqCst) >= 100
    })
    .await;
    instances[1].task.abort();
    let mut total = 0;
    while let Some(r) = load.join_next().await {
        for (status, body) in r.unwrap() {
            assert_eq!(status, 200, "an idempotent request failed: {body}");
            total += 1;
        }
    }
    assert_eq!(total, 8 * 60);
    // The dead instance is ejected and gets nothing more; the others carry the load.
    let snap = resolver.balancer("orders").unwrap().snapshot();
    assert_eq!(
        snap.endpoint("\"orders-b\"").unwrap().state,
        EndpointState::Ejected,
        "{snap:?}"
    );
    // The admin listener shows the same: `/endpoints` (token-protected) lists the service's
    // balancer with `orders-b` ejected and the other two routable.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = listener.local_addr().unwrap();
    tokio::spawn(palisade_gateway::admin::serve_admin(
        listener,
        palisade_gateway::admin::Admin::new(gw.gateway.clone(), "s3cret"),
        std::future::pending(),
    ));
    assert_eq!(get_path(admin_addr, "/endpoints").await.status, 401);
    let r = send(
        get(admin_addr, "/endpoints")
            .header("authorization", "Bearer s3cret")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let services = v.as_array().expect("a list of balancers");
    let orders = services
        .iter()
        .find(|b| b["name"] == "orders")
        .unwrap_or_else(|| panic!("no orders balancer in {v}"));
    let states: std::collections::BTreeMap<String, String> = orders["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_owned(),
                e["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(states.len(), 3, "{v}");
    assert_eq!(states["\"orders-b\""], "ejected", "{v}");
    assert_eq!(states["\"orders-a\""], "active", "{v}");

    let b_hits = instances[1].hits.load(Ordering::SeqCst);
    for _ in 0..20 {
        let r = send_with(&c, get(addr, "/orders/7").body(Full::default()).unwrap()).await;
        assert_eq!(r.status, 200);
        assert_ne!(r.body, "b");
    }
    assert_eq!(instances[1].hits.load(Ordering::SeqCst), b_hits);

    // Deregistered in the registry: the balancer drops the instance (it follows the registry's
    // Discover stream; picks drive it).
    registrar.cancel("ORDERS", "orders-b").await.unwrap();
    let balancer = resolver.balancer("orders").unwrap();
    wait_for("orders-b removed from the balancer", async || {
        let r = send_with(&c, get(addr, "/orders/9").body(Full::default()).unwrap()).await;
        assert_eq!(r.status, 200);
        balancer.snapshot().endpoints.len() == 2
    })
    .await;
    assert!(balancer.snapshot().endpoint("\"orders-b\"").is_none());
    let rest: usize = [0, 2]
        .iter()
        .map(|&i| instances[i].hits.load(Ordering::SeqCst))
        .sum();
    assert!(rest >= 8 * 60 + 20 - b_hits, "{rest}");
}

/// gw2: an instance that speaks HTTP/2 only (prior knowledge), answering with the version it got.
async fn h2c_instance() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| {
                        let v = format!("{:?}", req.version());
                        async move {
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(v))))
                        }
                    });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_speaks_h2c_to_instances_whose_metadata_says_so() {
    let (url, _stop) = registry().await;
    let registrar = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(url.clone())],
        ..Default::default()
    })
    .unwrap();
    let h2 = h2c_instance().await;
    let mut rec = record("GRPCISH", "grpcish-1", h2);
    rec.metadata.insert("protocol".into(), "h2c".into());
    registrar.register(&rec).await.unwrap();
    // An unknown protocol: the instance is left out.
    let mut odd = record("ODD", "odd-1", h2);
    odd.metadata.insert("protocol".into(), "h3".into());
    registrar.register(&odd).await.unwrap();

    let cfg = parse(&format!(
        r#"
registry: {{ urls: [ "{url}" ], refresh_interval: 100ms }}
routes:
  - {{ id: g, upstream: "lb://grpcish", predicates: {{ path_prefix: /g }} }}
  - {{ id: o, upstream: "lb://odd", predicates: {{ path_prefix: /o }} }}
"#
    ));
    let resolver = RegistryResolver::new(cfg.registry.as_ref().unwrap()).unwrap();
    let gw = start_with(cfg, |b| b.resolver(Arc::new(resolver.clone()))).await;
    let addr = gw.addr;
    let c = client();
    // The HTTP/2-only instance answers (an HTTP/1.1 request would fail on its connection).
    wait_for("the h2c instance answered", async || {
        let r = send_with(&c, get(addr, "/g/1").body(Full::default()).unwrap()).await;
        assert!(
            r.status == 200 || r.status == 503,
            "{} {}",
            r.status,
            r.body
        );
        r.status == 200
    })
    .await;
    for _ in 0..5 {
        let r = send_with(&c, get(addr, "/g/2").body(Full::default()).unwrap()).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "HTTP/2.0");
    }
    // The registry copy holding `grpcish` holds `odd` too: left out, so no instance is up.
    let r = send_with(&c, get(addr, "/o/1").body(Full::default()).unwrap()).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "no instance of service `odd` is up\n");
}
