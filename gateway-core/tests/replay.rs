//! Retries of requests with bodies: a real backend fails the first attempt after reading the
//! whole body, and the retry must carry the same bytes; bodies over the replay limit are
//! streamed once and not retried.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Every request the backend saw: (method, body). The first `fail_first` requests get `503`
/// (after the body was read in full), the others `200` with the body echoed.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, Bytes)>>>,
}

async fn recorder(fail_first: usize) -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let s = s.clone();
                        async move {
                            let method = req.method().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let n = {
                                let mut v = s.lock().unwrap();
                                v.push((method, body.clone()));
                                v.len()
                            };
                            let mut r = http::Response::new(Full::new(body));
                            if n <= fail_first {
                                *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Recorder { addr, seen }
}

fn routes(b: SocketAddr) -> String {
    format!(
        r#"
routes:
  - id: put
    upstream: http://{b}
    predicates: {{ path_prefix: /put }}
    retry: {{ attempts: 2, max_replay_bytes: 65536 }}
  - id: post-retried
    upstream: http://{b}
    predicates: {{ path_prefix: /post-retried }}
    retry: {{ attempts: 2, methods: [POST] }}
  - id: post
    upstream: http://{b}
    predicates: {{ path_prefix: /post }}
    retry: {{ attempts: 2 }}
"#
    )
}

fn body_of(n: usize) -> Bytes {
    (0..n)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<u8>>()
        .into()
}

async fn send_body(addr: SocketAddr, method: &str, path: &str, body: Bytes) -> Reply {
    send(
        http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(Full::new(body))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn put_body_is_replayed_on_retry() {
    let b = recorder(1).await;
    let gw = start(&routes(b.addr)).await;
    let body = body_of(40_000);
    let r = send_body(gw.addr, "PUT", "/put", body.clone()).await;
    assert_eq!(r.status, 200);
    assert!(r.body.as_bytes() == &body[..], "the answer echoes the body");
    let seen = b.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one failed attempt, one retry");
    for (m, got) in &seen {
        assert_eq!(m, "PUT");
        assert!(got == &body, "the retry must carry the same bytes");
    }
}

#[tokio::test]
async fn post_is_retried_only_when_listed() {
    let b = recorder(1).await;
    let gw = start(&routes(b.addr)).await;
    let r = send_body(gw.addr, "POST", "/post", Bytes::from_static(b"once")).await;
    assert_eq!(r.status, 503, "POST is not idempotent: not retried");
    assert_eq!(b.seen.lock().unwrap().len(), 1);

    let b = recorder(1).await;
    let gw = start(&routes(b.addr)).await;
    let r = send_body(
        gw.addr,
        "POST",
        "/post-retried",
        Bytes::from_static(b"twice"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "twice");
    let seen = b.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|(_, body)| body == "twice"));
}

#[tokio::test]
async fn bodies_over_the_limit_are_streamed_once_and_not_retried() {
    // Known length over the limit.
    let b = recorder(1).await;
    let gw = start(&routes(b.addr)).await;
    let big = body_of(100_000);
    let r = send_body(gw.addr, "PUT", "/put", big.clone()).await;
    assert_eq!(r.status, 503);
    let seen = b.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].1 == big, "streamed through whole");

    // Unknown length (chunked) that grows past the limit while streaming.
    let b = recorder(1).await;
    let gw = start(&routes(b.addr)).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let client: Client<_, ChannelBody> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::put(format!("http://{}/put", gw.addr))
        .body(ChannelBody(rx))
        .unwrap();
    let feed = tokio::spawn(async move {
        for i in 0..5u8 {
            tx.send(Bytes::from(vec![i; 20_000])).await.unwrap();
        }
    });
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .unwrap()
        .unwrap();
    feed.await.unwrap();
    assert_eq!(resp.status(), 503);
    let seen = b.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "not retried");
    assert_eq!(seen[0].1.len(), 100_000);

    // Chunked and under the limit: replayed.
    let b = recorder(1).await;
    let gw = start(&routes(b.addr)).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let req = http::Request::put(format!("http://{}/put", gw.addr))
        .body(ChannelBody(rx))
        .unwrap();
    let feed = tokio::spawn(async move {
        for i in 0..3u8 {
            tx.send(Bytes::from(vec![i; 1000])).await.unwrap();
        }
    });
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .unwrap()
        .unwrap();
    feed.await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = b.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let want: Vec<u8> = (0..3u8).flat_map(|i| vec![i; 1000]).collect();
    assert!(seen.iter().all(|(_, body)| body[..] == want[..]));
}
