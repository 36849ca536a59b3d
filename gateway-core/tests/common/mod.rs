//! Shared test harness: a real hyper backend and a gateway, both on 127.0.0.1 ephemeral ports.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_gateway::Gateway;
use palisade_gateway::config::GatewayConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};

pub const WAIT: Duration = Duration::from_secs(10);

type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// A backend that echoes what it received as JSON, with a few special paths.
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// Releases the second chunk of `/stream-down`.
    pub release: Arc<Notify>,
    /// First chunk seen by `/stream-up`.
    pub first_chunk: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Bytes>>>,
    /// Requests that reached `/hang` (they never get an answer).
    pub hung: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>>,
}

struct BackendState {
    flaky: AtomicUsize,
    name: String,
    hits: Arc<AtomicUsize>,
    release: Arc<Notify>,
    first_tx: mpsc::UnboundedSender<Bytes>,
    hung_tx: mpsc::UnboundedSender<()>,
}

fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).boxed_unsync()
}

async fn handle(
    st: Arc<BackendState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    st.hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    if path == "/stream-down" {
        let release = st.release.clone();
        let (tx, rx) = mpsc::channel::<Bytes>(2);
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from_static(b"first;")).await;
            release.notified().await;
            let _ = tx.send(Bytes::from_static(b"second")).await;
        });
        return Ok(Response::new(ChannelBody(rx).boxed_unsync()));
    }
    if path == "/stream-up" {
        let mut body = req.into_body();
        let mut total = 0usize;
        let mut first = true;
        while let Some(f) = body.frame().await {
            let Ok(f) = f else { break };
            if let Some(d) = f.data_ref() {
                total += d.len();
                if first {
                    first = false;
                    let _ = st.first_tx.send(d.clone());
                }
            }
        }
        return Ok(Response::new(full(format!("received {total}"))));
    }
    if let Some(n) = path.strip_prefix("/flaky/") {
        // The first `n` calls answer 503, later ones 200.
        let seen = st.flaky.fetch_add(1, Ordering::SeqCst);
        let n: usize = n.parse().unwrap();
        let mut r = Response::new(full(format!("flaky call {seen}")));
        if seen < n {
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        return Ok(r);
    }
    if path == "/upgrade" {
        // A raw echo protocol after `101`: enough to prove the tunnel both ways.
        let proto = req.headers().get("upgrade").cloned();
        let on = hyper::upgrade::on(req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut out = b"echo:".to_vec();
                            out.extend_from_slice(&buf[..n]);
                            if io.write_all(&out).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        if let Some(p) = proto {
            r.headers_mut().insert("upgrade", p);
        }
        return Ok(r);
    }
    if path == "/hang" {
        let _ = st.hung_tx.send(());
        std::future::pending::<()>().await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(format!("status {code}")));
        *r.status_mut() = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        return Ok(r);
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let version = format!("{:?}", req.version());
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let e = headers
            .entry(k.as_str().to_owned())
            .or_insert_with(|| serde_json::Value::Array(vec![]));
        e.as_array_mut().unwrap().push(serde_json::Value::String(
            v.to_str().unwrap_or("<bin>").to_owned(),
        ));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let j = serde_json::json!({
        "backend": st.name,
        "peer": peer.to_string(),
        "method": method,
        "uri": uri,
        "version": version,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut r = Response::new(full(j.to_string()));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    if path == "/hop" {
        r.headers_mut()
            .insert("connection", "x-hop-secret".parse().unwrap());
        r.headers_mut().insert("x-hop-secret", "1".parse().unwrap());
        r.headers_mut()
            .insert("keep-alive", "timeout=5".parse().unwrap());
        r.headers_mut()
            .insert("x-backend-header", "kept".parse().unwrap());
    }
    Ok(r)
}

/// A body fed through a channel, one data frame per message.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

pub async fn backend(name: &str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let (first_tx, first_rx) = mpsc::unbounded_channel();
    let (hung_tx, hung_rx) = mpsc::unbounded_channel();
    let st = Arc::new(BackendState {
        flaky: AtomicUsize::new(0),
        name: name.to_owned(),
        hits: hits.clone(),
        release: release.clone(),
        first_tx,
        hung_tx,
    });
    tokio::spawn(async move {
        loop {
            let Ok((s, peer)) = listener.accept().await else {
                return;
            };
            let st = st.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |r| handle(st.clone(), peer, r));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Backend {
        addr,
        hits,
        release,
        first_chunk: Arc::new(tokio::sync::Mutex::new(first_rx)),
        hung: Arc::new(tokio::sync::Mutex::new(hung_rx)),
    }
}

pub struct Gw {
    pub addr: SocketAddr,
    pub gateway: Gateway,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<std::io::Result<usize>>>,
}

impl Gw {
    /// Signals graceful shutdown; returns the serve task.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<std::io::Result<usize>> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap()
    }
}

pub fn parse(yaml: &str) -> GatewayConfig {
    GatewayConfig::from_yaml(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

pub async fn start(yaml: &str) -> Gw {
    start_with(parse(yaml), |b| b).await
}

pub async fn start_with(
    cfg: GatewayConfig,
    f: impl FnOnce(palisade_gateway::GatewayBuilder) -> palisade_gateway::GatewayBuilder,
) -> Gw {
    let gateway = f(Gateway::builder(cfg.clone()).rng_seed(7))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    serve(gateway, cfg).await
}

pub async fn serve(gateway: Gateway, cfg: GatewayConfig) -> Gw {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let g = gateway.clone();
    let task = tokio::spawn(async move {
        palisade_gateway::serve(
            listener,
            g,
            cfg.limits,
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(5),
        )
        .await
    });
    Gw {
        addr,
        gateway,
        stop: Some(tx),
        task: Some(task),
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// A request header as the backend saw it (first value).
    pub fn seen(&self, name: &str) -> Option<String> {
        self.json()["headers"][name][0].as_str().map(str::to_owned)
    }
}

pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn send(req: Request<Full<Bytes>>) -> Reply {
    send_with(&client(), req).await
}

pub async fn send_with(
    c: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Reply {
    let r = tokio::time::timeout(WAIT, c.request(req))
        .await
        .expect("timed out")
        .expect("request failed");
    let (p, b) = r.into_parts();
    let body = tokio::time::timeout(WAIT, b.collect())
        .await
        .expect("body timed out")
        .unwrap()
        .to_bytes();
    Reply {
        status: p.status,
        headers: p.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub fn get(addr: SocketAddr, path: &str) -> http::request::Builder {
    Request::get(format!("http://{addr}{path}"))
}

pub async fn get_path(addr: SocketAddr, path: &str) -> Reply {
    send(get(addr, path).body(Full::default()).unwrap()).await
}

/// Writes raw bytes and reads the answer until the server closes or `WAIT` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("server kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}

/// Status code of a raw response.
pub fn raw_status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {resp:?}"))
}
