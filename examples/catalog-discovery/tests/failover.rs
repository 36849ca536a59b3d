//! `service = "catalog"` through the real registry and balancer: two instances registered in a
//! Eureka-compatible registry on 127.0.0.1, the client balancing over the registry's Discover
//! stream; one instance is killed mid-test and no idempotent request fails; after it is
//! deregistered, the balancer stops sending to it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use palisade_balancer::discover::WithMetadata;
use palisade_balancer::{Balance, Config as BalancerConfig, Metadata, Policy};
use palisade_client::Json;
use palisade_client::stack::{BaseUrl, RetryPolicy, SetBaseUrlLayer, StackBuilder};
use palisade_client::transport::TransportConfig;
use palisade_example_catalog_discovery::{Catalog, CatalogClient, Title};
use palisade_registry_client::{
    ClientConfig, DataCenterInfo, InstanceInfo, InstanceStatus, PortInfo, RegistryClient,
    ServiceUrl,
};
use palisade_registry_server::{RegistryServer, ServerConfig};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::Layer;
use tower::buffer::Buffer;
use tower::discover::Change;

/// A catalog instance: answers `/api/v1/titles/{id}` with its name. Dropping `conns` (abort)
/// kills it: the listener and every open connection go away.
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
        // The JoinSet is dropped with this task: aborting the task closes every connection.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_instance_is_failed_over_and_dropped_after_deregistration() {
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

    // Registry Discover -> one transport per instance -> balancer -> client stack.
    let transport = TransportConfig::default().build();
    // Attempts sent to each instance, counted below the balancer (so retries count too).
    let attempts: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
    let counted = attempts.clone();
    let transports = registry.discover_app("CATALOG").map(move |change| {
        change.map(|c| match c {
            Change::Insert(id, e) => {
                let addr = e.socket_addr().expect("UP instances have an address");
                let base = BaseUrl::parse(&format!("http://{addr}")).unwrap();
                let counted = counted.clone();
                let name = id.clone();
                let svc = tower::util::MapRequestLayer::new(move |req| {
                    *counted.lock().unwrap().entry(name.clone()).or_default() += 1;
                    req
                })
                .layer(SetBaseUrlLayer::new(Some(base)).layer(transport.clone()));
                Change::Insert(id, svc)
            }
            Change::Remove(id) => Change::Remove(id),
        })
    });
    let balance = Balance::builder(WithMetadata::new(transports, |_: &String, _: &_| {
        Metadata::new()
    }))
    .config(BalancerConfig::with_policy(Policy::RoundRobin))
    .build()
    .unwrap();
    // The buffer makes the balancer cloneable (the client's retry clones the stack per call).
    let balanced = Buffer::new(balance, 64);
    let stack = StackBuilder::new("catalog")
        .retry(RetryPolicy::new(2))
        .build_with(balanced.clone())
        .unwrap();
    let catalog = CatalogClient::new(stack);

    let mut served = std::collections::BTreeMap::<String, usize>::new();
    for id in 0..20 {
        let Json(t): Json<Title> = catalog.title(id).await.unwrap();
        assert_eq!(t.id, id);
        *served.entry(t.served_by).or_default() += 1;
    }
    assert_eq!(
        served.len(),
        2,
        "both registered instances serve: {served:?}"
    );

    // Kill instance a (listener and open connections). It is still registered: the balancer
    // keeps picking it, and every such call must fail over to b through the retry.
    a.task.abort();
    let _ = a.task.await;
    let b_before = b.hits.load(Ordering::SeqCst);
    let a_attempts_before = attempts.lock().unwrap().get("a").copied().unwrap_or(0);
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
    let a_attempts = attempts.lock().unwrap()["a"] - a_attempts_before;
    assert!(
        a_attempts >= 10,
        "{a_attempts} attempts went to the dead instance and were retried"
    );

    // a is deregistered: after the next fetch the Discover stream removes it, and the balancer
    // sends everything straight to b (no failed attempt, so no retry is needed).
    registry.cancel("CATALOG", "a").await.unwrap();
    registry.refresh().await.unwrap();
    let no_retry = CatalogClient::new(
        StackBuilder::new("catalog-no-retry")
            .build_with(balanced.clone())
            .unwrap(),
    );
    for id in 200..210 {
        let Json(t): Json<Title> = no_retry.title(id).await.unwrap();
        assert_eq!(t.served_by, "b");
    }

    let _ = stop.send(());
    registry_task.await.unwrap().unwrap();
    b.task.abort();
}
