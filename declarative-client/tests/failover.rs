//! The stack over a transport that picks among instances (what a `Discover`-fed balancer
//! does): no base URL, the transport routes; a retry fails over to the next instance.
#![allow(missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use common::Echo;
use palisade_client::stack::{BaseUrl, RetryPolicy, SetBaseUrl, SetBaseUrlLayer, StackBuilder};
use palisade_client::transport::{HttpTransport, TransportConfig};
use palisade_client::{Body, ClientError, Json, client};
use tower::{Layer, Service};

/// Round robin over fixed instances, starting with the first.
#[derive(Clone)]
struct RoundRobin {
    instances: Vec<SetBaseUrl<HttpTransport>>,
    next: Arc<AtomicUsize>,
}

impl Service<http::Request<Body>> for RoundRobin {
    type Response = <HttpTransport as Service<http::Request<Body>>>::Response;
    type Error = <HttpTransport as Service<http::Request<Body>>>::Error;
    type Future = <HttpTransport as Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        for i in &mut self.instances {
            if let Poll::Ready(Err(e)) = i.poll_ready(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let i = self.next.fetch_add(1, Ordering::SeqCst) % self.instances.len();
        self.instances[i].call(req)
    }
}

#[client(service = "catalog")]
pub trait Catalog {
    #[get("/titles/{id}")]
    async fn title(&self, #[path] id: u64) -> Result<Json<Echo>, ClientError>;
}

#[tokio::test]
async fn retry_fails_over_to_the_next_instance() {
    assert_eq!(CatalogClient::<()>::SERVICE, Some("catalog"));
    let live = common::start().await;
    // A port with nothing listening: bound, then released.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let transport = TransportConfig::default().build();
    let instance = |url: &str| {
        SetBaseUrlLayer::new(Some(BaseUrl::parse(url).unwrap())).layer(transport.clone())
    };
    let rr = RoundRobin {
        instances: vec![
            instance(&format!("http://127.0.0.1:{dead_port}")),
            instance(&live.url()),
        ],
        next: Arc::new(AtomicUsize::new(0)),
    };
    let next = rr.next.clone();
    let stack = StackBuilder::new("catalog")
        .retry(RetryPolicy::new(1))
        .build_with(rr)
        .unwrap();
    let c = CatalogClient::new(stack);

    let Json(e) = c.title(7).await.unwrap();
    assert_eq!(e.path, "/titles/7");
    assert_eq!(
        next.load(Ordering::SeqCst),
        2,
        "the dead instance, then the live one"
    );
    assert_eq!(live.seen.hits("/titles/7"), 1);

    // Without retries the dead instance's error surfaces as a transport error.
    let stack = StackBuilder::new("catalog2").build_with(RoundRobin {
        instances: vec![instance(&format!("http://127.0.0.1:{dead_port}"))],
        next: Arc::new(AtomicUsize::new(0)),
    });
    let err = CatalogClient::new(stack.unwrap())
        .title(7)
        .await
        .unwrap_err();
    assert!(err.is_transport(), "{err:?}");
}
