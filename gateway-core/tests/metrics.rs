//! The `metrics` feature: requests, durations and rejections per route, and `lb://` endpoint
//! health, through the `metrics` facade with ARCHITECTURE.md's names; the admin `/metrics`
//! page counts the same requests.
#![cfg(feature = "metrics")]

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use palisade_gateway::lb::RegistryResolver;
use palisade_registry_client::{
    ClientConfig, DataCenterInfo, InstanceInfo, InstanceStatus, PortInfo, RegistryClient,
    ServiceUrl,
};
use palisade_registry_server::{RegistryServer, ServerConfig};
use tokio::net::TcpListener;

fn seen(s: &Snapshotter) -> HashMap<String, DebugValue> {
    let mut out = HashMap::new();
    for (key, _, _, value) in s.snapshot().into_vec() {
        let k = key.key();
        let mut labels: Vec<String> = k
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        out.insert(format!("{}{{{}}}", k.name(), labels.join(",")), value);
    }
    out
}

async fn instance() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_and_endpoint_metrics_through_the_facade() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // This test binary holds this one test, so the process-wide recorder is ours.
    metrics::set_global_recorder(recorder).unwrap();

    // A registry with two instances of ORDERS.
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
    tokio::spawn(server.serve(listener, std::future::pending()));
    let registrar = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(url.clone())],
        ..Default::default()
    })
    .unwrap();
    for n in 0..2 {
        let addr = instance().await;
        registrar
            .register(&InstanceInfo {
                instance_id: format!("orders-{n}"),
                host_name: "localhost".into(),
                app: "ORDERS".into(),
                ip_addr: "127.0.0.1".into(),
                status: InstanceStatus::Up,
                port: Some(PortInfo::enabled(addr.port())),
                data_center_info: DataCenterInfo::my_own(),
                last_dirty_timestamp: 1,
                ..Default::default()
            })
            .await
            .unwrap();
    }

    let b = backend("b").await;
    let cfg = parse(&format!(
        r#"
registry: {{ urls: [ "{url}" ], refresh_interval: 100ms }}
routes:
  - id: orders
    upstream: lb://orders
    predicates: {{ path_prefix: /orders }}
  - id: narrow
    upstream: http://{b}
    predicates: {{ path_prefix: /hang }}
    bulkhead: {{ max_concurrent: 1, max_wait: 0s }}
  - id: limited
    upstream: http://{b}
    local_rate_limit: {{ rate: 1, period: 1h }}
    bulkhead: {{ max_concurrent: 1, max_wait: 0s }}
"#,
        b = b.addr
    ));
    let resolver = RegistryResolver::new(cfg.registry.as_ref().unwrap()).unwrap();
    let gw = start_with(cfg, |g| g.resolver(Arc::new(resolver))).await;

    assert_eq!(get_path(gw.addr, "/x").await.status, 200);
    assert_eq!(get_path(gw.addr, "/x").await.status, 429);
    assert_eq!(get_path(gw.addr, "/x").await.status, 429);
    // One request holds the `narrow` route's only slot; the next is turned away.
    let addr = gw.addr;
    let held = tokio::spawn(async move { get_path(addr, "/hang").await });
    tokio::time::timeout(WAIT, b.hung.lock().await.recv())
        .await
        .expect("the held request reached the backend")
        .unwrap();
    assert_eq!(get_path(gw.addr, "/hang").await.status, 503);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut orders_ok = 0;
    while orders_ok < 4 {
        assert!(tokio::time::Instant::now() < deadline, "lb:// never served");
        let r = get_path(gw.addr, "/orders/1").await;
        if r.status == 200 {
            orders_ok += 1;
        } else {
            assert_eq!(r.status, 503, "{}", r.body); // before the first registry fetch
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    let m = seen(&snapshotter);
    let get = |k: &str| m.get(k);
    assert_eq!(
        get("palisade_gateway_requests_total{code=2xx,route=limited}"),
        Some(&DebugValue::Counter(1)),
        "{m:?}"
    );
    assert_eq!(
        get("palisade_gateway_requests_total{code=4xx,route=limited}"),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        get("palisade_gateway_rejections_total{reason=rate_limit,route=limited}"),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        get("palisade_gateway_requests_total{code=2xx,route=orders}"),
        Some(&DebugValue::Counter(4))
    );
    match get("palisade_gateway_request_duration_seconds{route=limited}") {
        Some(DebugValue::Histogram(v)) => {
            assert_eq!(v.len(), 3);
            assert!(v.iter().all(|d| d.0 > 0.0 && d.0 < 10.0), "{v:?}");
        }
        other => panic!("no duration histogram: {other:?}"),
    }
    assert_eq!(
        get("palisade_balancer_endpoints{service=orders,state=active}"),
        Some(&DebugValue::Gauge(2.0.into())),
        "{m:?}"
    );

    assert_eq!(
        get("palisade_bulkhead_rejections_total{name=narrow}"),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        get("palisade_gateway_rejections_total{reason=bulkhead,route=narrow}"),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        get("palisade_bulkhead_in_flight{name=narrow}"),
        Some(&DebugValue::Gauge(1.0.into()))
    );
    assert_eq!(
        get("palisade_bulkhead_in_flight{name=limited}"),
        Some(&DebugValue::Gauge(0.0.into()))
    );
    held.abort();

    // The admin renderer counts the same answers.
    let stats = gw.gateway.route_stats();
    let limited = stats.iter().find(|(id, _, _)| id == "limited").unwrap();
    assert_eq!(limited.1[1], 1);
    assert_eq!(limited.1[3], 2);
}
