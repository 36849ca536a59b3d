//! `palisade-balancer` in front of hyper-util's legacy client.
//!
//! Three local HTTP/1.1 servers stand in for the instances of one service; the third answers
//! `503` to everything. Each endpoint is the shared hyper-util `Client` with the request URI
//! pointed at one server; the balancer picks with P2C least outstanding, classifies responses with the
//! breaker crate's `HttpClassifier` (5xx fail), and outlier detection ejects the failing server
//! after five failures in a row.
//!
//! Run it with `cargo run -p example-balancer-hyper`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_balancer::discover::StaticList;
use palisade_balancer::{Balance, Config, Endpoint, OutlierConfig, Policy, Snapshot, SuccessRate};
use palisade_breaker::HttpClassifier;
use tokio::net::TcpListener;
use tower::{Service, ServiceExt};

/// Starts a server that answers `endpoint {id}` (or `503` when `healthy` is false).
pub async fn serve(id: usize, healthy: bool) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: Request<hyper::body::Incoming>| async move {
                        let mut resp =
                            Response::new(Full::new(Bytes::from(format!("endpoint {id}"))));
                        if !healthy {
                            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        }
                        Ok::<_, Infallible>(resp)
                    },
                );
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// What the run saw.
#[derive(Debug)]
pub struct Summary {
    /// Responses per server (index = server id), counting 503s.
    pub per_server: [usize; 3],
    /// Responses that were 5xx.
    pub server_errors: usize,
    /// The balancer's snapshot at the end.
    pub snapshot: Snapshot,
}

/// Sends `requests` GETs through the balancer and tallies where they went.
pub async fn run(requests: usize) -> Result<Summary, palisade_balancer::BoxError> {
    let addrs = [
        serve(0, true).await?,
        serve(1, true).await?,
        serve(2, false).await?,
    ];
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();

    let endpoints = addrs.iter().enumerate().map(|(i, addr)| {
        let authority = addr.to_string();
        // The endpoint: the shared client, with requests pointed at this server.
        let svc = client
            .clone()
            .map_request(move |mut req: Request<Empty<Bytes>>| {
                let path = req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                *req.uri_mut() = Uri::builder()
                    .scheme("http")
                    .authority(authority.as_str())
                    .path_and_query(path)
                    .build()
                    .expect("valid URI");
                req
            });
        (i, Endpoint::new(svc))
    });
    // Least outstanding rather than Peak-EWMA here: the requests below are sequential, and with
    // Peak-EWMA one slow first request (connection setup on a loaded machine) would make that
    // server look slow for several seconds of a sub-second demo.
    let config = Config::with_policy(Policy::LeastOutstanding).outlier(OutlierConfig {
        consecutive_failures: Some(5),
        success_rate: Some(SuccessRate::default()),
        max_ejection_percent: 0.34,
        ..OutlierConfig::default()
    });
    let mut lb = Balance::builder(StaticList::new(endpoints))
        .name("hello")
        .config(config)
        .classifier(HttpClassifier::new())
        .build()?;
    let handle = lb.handle();

    let mut per_server = [0; 3];
    let mut server_errors = 0;
    for _ in 0..requests {
        let req = Request::get("/hello").body(Empty::<Bytes>::new())?;
        let resp = lb.ready().await?.call(req).await?;
        if resp.status().is_server_error() {
            server_errors += 1;
        }
        let body = resp.into_body().collect().await?.to_bytes();
        let id: usize = std::str::from_utf8(&body)?
            .trim_start_matches("endpoint ")
            .parse()?;
        per_server[id] += 1;
    }
    Ok(Summary {
        per_server,
        server_errors,
        snapshot: handle.snapshot(),
    })
}
