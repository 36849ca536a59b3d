//! A real hyper server on 127.0.0.1 for the client tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

type Resp = Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>;

/// What the server saw, shared with the test.
#[derive(Default)]
pub struct Seen {
    /// Requests per path.
    pub hits: Mutex<HashMap<String, usize>>,
    /// Total requests.
    pub total: AtomicUsize,
}

impl Seen {
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn full(status: u16, body: impl Into<Bytes>, ct: &str) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", ct)
        .body(Full::new(body.into()).boxed())
        .unwrap()
}

async fn handle(req: Request<Incoming>, seen: Arc<Seen>) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_owned();
    let n = {
        let mut hits = seen.hits.lock().unwrap();
        let e = hits.entry(path.clone()).or_default();
        *e += 1;
        *e
    };
    seen.total.fetch_add(1, Ordering::SeqCst);
    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let query = req.uri().query().unwrap_or("").to_owned();
    let raw_path = req.uri().path().to_owned();
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let v = v.to_str().unwrap_or("").to_owned();
        match headers.get_mut(k.as_str()) {
            Some(serde_json::Value::Array(a)) => a.push(v.into()),
            _ => {
                headers.insert(
                    k.as_str().to_owned(),
                    serde_json::Value::Array(vec![v.into()]),
                );
            }
        }
    }
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let echo = || {
        serde_json::json!({
            "method": method,
            "path": raw_path,
            "query": query,
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
            "version": version,
        })
        .to_string()
    };
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Ok(match seg.as_slice() {
        ["status", code] => full(
            code.parse().unwrap(),
            r#"{"code":"E42","message":"no such title"}"#,
            "application/json",
        ),
        ["text-error"] => full(500, "plain failure", "text/plain"),
        ["malformed"] => full(200, "{\"id\": 1, \"name\": ", "application/json"),
        ["text"] => full(200, "hello, world", "text/plain"),
        ["empty"] => full(204, "", "text/plain"),
        // `code` with `Retry-After: after` until the nth request to it, then echoes. `after`
        // is delay-seconds, `dateN` (an HTTP date N seconds from now) or `-` (no header).
        ["retry-after", fails, code, after] if n <= fails.parse::<usize>().unwrap() => {
            let mut r = full(code.parse().unwrap(), "try later", "text/plain");
            let value = match *after {
                "-" => None,
                a if a.starts_with("date") => {
                    let secs: u64 = a[4..].parse().unwrap();
                    Some(httpdate::fmt_http_date(
                        std::time::SystemTime::now() + std::time::Duration::from_secs(secs),
                    ))
                }
                a => Some(a.to_owned()),
            };
            if let Some(v) = value {
                r.headers_mut().insert("retry-after", v.parse().unwrap());
            }
            r
        }
        // Fails with 503 until the nth request to it, then echoes.
        ["flaky", fails] if n <= fails.parse::<usize>().unwrap() => full(503, "busy", "text/plain"),
        ["hang"] => std::future::pending().await,
        ["stream"] => {
            let chunks =
                (0..3).map(|i| Ok::<_, Infallible>(Frame::data(Bytes::from(format!("chunk{i};")))));
            Response::builder()
                .status(200)
                .body(StreamBody::new(futures::stream::iter(chunks)).boxed())
                .unwrap()
        }
        _ => full(200, echo(), "application/json"),
    })
}

/// Starts the server on an ephemeral port; it serves HTTP/1.1 and HTTP/2 (prior knowledge).
pub async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(req, s.clone()));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Server { addr, seen }
}

/// The echo response.
#[derive(Debug, serde::Deserialize)]
pub struct Echo {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, Vec<String>>,
    pub body: String,
    pub version: String,
}

impl Echo {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}
