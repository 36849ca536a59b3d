//! `service = "catalog"` through the real registry and balancer, assembled by the client's
//! builder: two instances registered in a Eureka-compatible registry on 127.0.0.1,
//! `CatalogClient::builder().discovery(registry)`; one instance is killed mid-test and no
//! idempotent request fails; after it is deregistered, the balancer stops sending to it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use palisade_client::Json;
use palisade_client::stack::RetryPolicy;
use palisade_example_catalog_discovery::{Catalog, CatalogClient, Title};
use palisade_registry_client::{
    ClientConfig, DataCenterInfo, InstanceInfo, InstanceStatus, PortInfo, RegistryClient,
    ServiceUrl,
};
use palisade_registry_server::{RegistryServer, ServerConfig};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// A catalog instance: answers `/api/v1/titles/{id}` with its name. Aborting `task` kills it:
/// the listener and every open connection go away.
struct Instance {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_instance(name: &'static str) -> Instance {
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
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let id: u64 = req
                        .uri()
                        .path()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    let body = serde_json::json!({ "id": id, "served_by": name }).to_string();
                    async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Instance { addr, hits, task }
}

fn instance_info(id: &str, addr: SocketAddr) -> InstanceInfo {
    InstanceInfo {
        instance_id: id.into(),
        host_name: "localhost".into(),
        app: "CATALOG".into(),
        ip_addr: addr.ip().to_string(),
        status: InstanceStatus::Up,
        port: Some(PortInfo::enabled(addr.port())),
        vip_address: Some("catalog".into()),
        data_center_info: DataCenterInfo::my_own(),
        last_dirty_timestamp: 1,
        ..Default::default()
    }
}

/// The counters recorded since the last snapshot (the debugging recorder resets them), as
/// `(name, sorted labels) -> value`.
fn deltas(snapshotter: &Snapshotter) -> Counters {
    let mut out = Counters::new();
    for (k, _, _, v) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(c) = v {
            let mut labels: Vec<String> = k
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            out.insert(format!("{}{{{}}}", k.key().name(), labels.join(",")), c);
        }
    }
    out
}

type Counters = std::collections::BTreeMap<String, u64>;

const RETRIED: &str = "palisade_retry_attempts_total{name=catalog,result=retried}";
const SUCCESS: &str =
    "palisade_client_calls_total{method=Catalog::title,outcome=success,service=catalog}";

fn get(c: &Counters, key: &str) -> u64 {
    c.get(key).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_discovers_instances_fails_over_a_killed_one_and_drops_it_after_deregistration() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).unwrap();

    // The registry, with the response cache off so a registration is visible at once.
    let server = RegistryServer::new(ServerConfig {
        use_read_only_response_cache: false,
        ..Default::default()
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry_url = format!("http://{}/eureka/", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let registry_task = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));

    let a = start_instance("a").await;
    let b = start_instance("b").await;
    let registry = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new(&registry_url)],
        ..Default::default()
    })
    .unwrap();
    registry
        .register(&instance_info("a", a.addr))
        .await
        .unwrap();
    registry
        .register(&instance_info("b", b.addr))
        .await
        .unwrap();
    registry.refresh().await.unwrap();

    // The whole wiring: the service name comes from `#[client(service = "catalog")]`.
    let catalog = CatalogClient::builder()
        .discovery(registry.clone())
        .retry(RetryPolicy::new(2).backoff(Duration::from_millis(1), Duration::from_millis(5)))
        .timeout(Duration::from_secs(5))
        .balancer_seed(7)
        .build()
        .unwrap();

    let mut served = std::collections::BTreeMap::<String, usize>::new();
    for id in 0..20 {
        let Json(t): Json<Title> = catalog.title(id).await.unwrap();
        assert_eq!(t.id, id);
        *served.entry(t.served_by).or_default() += 1;
    }
    assert_eq!(
        served,
        [("a".to_owned(), 10), ("b".to_owned(), 10)].into(),
        "round robin over both registered instances"
    );
    let phase1 = deltas(&snapshotter);
    assert_eq!(get(&phase1, RETRIED), 0, "{phase1:#?}");
    assert_eq!(get(&phase1, SUCCESS), 20, "{phase1:#?}");

    // Kill instance a (listener and open connections). It is still registered: the balancer
    // keeps picking it until outlier detection ejects it, and every such call must fail over
    // to b through the retry.
    a.task.abort();
    let _ = a.task.await;
    let b_before = b.hits.load(Ordering::SeqCst);
    for id in 100..130 {
        let Json(t): Json<Title> = catalog
            .title(id)
            .await
            .unwrap_or_else(|e| panic!("request {id} failed after the kill: {e:?}"));
        assert_eq!((t.id, t.served_by.as_str()), (id, "b"));
    }
    assert_eq!(
        b.hits.load(Ordering::SeqCst) - b_before,
        30,
        "b served every request once"
    );
    let phase2 = deltas(&snapshotter);
    assert!(
        get(&phase2, RETRIED) >= 1,
        "attempts went to the dead instance and were retried on b: {phase2:#?}"
    );
    assert_eq!(
        get(&phase2, SUCCESS),
        30,
        "every call succeeded: {phase2:#?}"
    );

    // a is deregistered: after the next fetch the Discover stream removes it, and the balancer
    // sends everything straight to b, with no failed attempt and so no retry.
    registry.cancel("CATALOG", "a").await.unwrap();
    registry.refresh().await.unwrap();
    for id in 200..210 {
        let Json(t): Json<Title> = catalog.title(id).await.unwrap();
        assert_eq!(t.served_by, "b");
    }
    let phase3 = deltas(&snapshotter);
    assert_eq!(
        get(&phase3, RETRIED),
        0,
        "no retry once a is gone: {phase3:#?}"
    );
    assert_eq!(get(&phase3, SUCCESS), 10, "{phase3:#?}");

    let _ = stop.send(());
    registry_task.await.unwrap().unwrap();
    b.task.abort();
}

#[tokio::test]
async fn discovery_needs_a_service_name_and_one_destination() {
    #[palisade_client::client]
    pub trait Nameless {
        #[get("/x")]
        async fn x(&self) -> Result<String, palisade_client::ClientError>;
    }
    let registry = RegistryClient::new(ClientConfig {
        service_urls: vec![ServiceUrl::new("http://127.0.0.1:1/eureka/")],
        ..Default::default()
    })
    .unwrap();
    let err = NamelessClient::builder()
        .discovery(registry.clone())
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "client `Nameless`: discovery needs the service name: add `service = \"...\"` to `#[client]`"
    );
    let err = CatalogClient::builder()
        .base_url("http://127.0.0.1:1")
        .unwrap()
        .discovery(registry)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "client `Catalog` (service `catalog`): both `base_url(..)` and `discovery(..)`: pick one"
    );
}
