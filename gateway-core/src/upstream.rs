//! Upstreams: fixed URLs (HTTP/1.1 over the worker thread's own pool, h2c over one shared
//! hyper-util pool), or a named service behind a `tower::Service` hook (how `lb://name` plugs
//! into a registry client and balancer).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::HeaderValue;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::util::BoxCloneSyncService;

use crate::body::{BoxError, RequestBody, UpstreamBody};
use crate::config::{Protocol, UpstreamUrl};
use crate::pool::{self, ConnectFuture, Sender, UpstreamKey};

/// The service a `lb://name` route calls: it receives the request with the path (and query)
/// already rewritten as an origin-form URI (`/a/b?c`) and picks the instance itself.
pub type UpstreamService = BoxCloneSyncService<Request<RequestBody>, Response<Incoming>, BoxError>;

/// Resolves `lb://name` upstreams when routes are loaded.
///
/// A registry client plus balancer implements this by returning, per service name, a
/// `palisade-balancer` service over the registry's `Discover` stream whose endpoints send with
/// [`Gateway::http_client`](crate::Gateway::http_client) (the shared pool).
pub trait UpstreamResolver: Send + Sync + 'static {
    /// The service for `name`, or `None` if it is unknown (the routes file is refused).
    fn resolve(&self, name: &str) -> Option<UpstreamService>;

    /// Snapshots of the endpoints behind the services resolved so far, one balancer each, for the
    /// admin listener's `/endpoints`. The default (a resolver without a balancer) has none.
    fn endpoints(&self) -> Vec<palisade_balancer::Snapshot> {
        Vec::new()
    }
}

/// Where a compiled route sends requests.
#[derive(Clone)]
pub(crate) enum Upstream {
    /// A fixed `http(s)://authority/base`.
    Fixed {
        authority: Authority,
        base_path: String,
        /// The `Host` header HTTP/1.1 requests carry (the authority, without a default port).
        host: HeaderValue,
        tls: bool,
    },
    /// A named service.
    Service { name: String, svc: UpstreamService },
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Fixed {
                authority,
                base_path,
                tls,
                ..
            } => {
                let scheme = if *tls { "https" } else { "http" };
                write!(f, "{scheme}://{authority}{base_path}")
            }
            Upstream::Service { name, .. } => write!(f, "lb://{name}"),
        }
    }
}

impl Upstream {
    pub(crate) fn from_url(
        url: &UpstreamUrl,
        resolver: Option<&dyn UpstreamResolver>,
    ) -> Result<Self, String> {
        match url {
            UpstreamUrl::Fixed {
                authority,
                base_path,
                tls,
            } => {
                let host = match authority.port_u16() {
                    Some(80) if !*tls => authority.host(),
                    _ => authority.as_str(),
                };
                Ok(Upstream::Fixed {
                    authority: authority.clone(),
                    base_path: base_path.clone(),
                    host: HeaderValue::from_str(host)
                        .map_err(|_| format!("`{authority}` is not a valid Host header"))?,
                    tls: *tls,
                })
            }
            UpstreamUrl::Service(name) => {
                let resolver = resolver.ok_or_else(|| {
                    format!("`lb://{name}` needs a service resolver (registry + balancer), and none is configured")
                })?;
                let svc = resolver
                    .resolve(name)
                    .ok_or_else(|| format!("unknown service `{name}`"))?;
                Ok(Upstream::Service {
                    name: name.clone(),
                    svc,
                })
            }
        }
    }
}

/// The pooled HTTP client type (HTTP/1.1 or h2c).
pub type HttpClient = Client<HttpConnector, RequestBody>;

/// The shared hyper-util pools: one speaks HTTP/1.1 (handed to `lb://` resolvers by
/// [`Gateway::http_client`](crate::Gateway::http_client)), one h2c with prior knowledge (used by
/// `protocol: h2c` routes). Fixed HTTP/1.1 routes use the per-thread pool instead.
#[derive(Clone, Debug)]
pub(crate) struct Clients {
    pub(crate) h1: HttpClient,
    pub(crate) h2c: HttpClient,
    /// gwsec: pools for https upstreams, by TLS settings.
    pub(crate) tls: crate::tls::ClientCache,
}

impl Clients {
    pub(crate) fn new() -> Arc<Self> {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(5)));
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90));
        let h1 = b.build(conn.clone());
        let mut b2 = Client::builder(TokioExecutor::new());
        b2.pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_only(true);
        let h2c = b2.build(conn);
        Arc::new(Clients {
            h1,
            h2c,
            tls: Default::default(),
        })
    }
}

/// The upstream's response head did not arrive within the route's `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTimeout;

impl fmt::Display for UpstreamTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream timed out")
    }
}

impl std::error::Error for UpstreamTimeout {}

#[derive(Clone)]
enum Target {
    /// HTTP/1.1 over the worker thread's own pool (see `pool`).
    Pooled(UpstreamKey),
    /// h2c over the shared hyper-util pool (HTTP/2 multiplexes: one connection serves all).
    H2c(Arc<Clients>),
    Service(UpstreamService),
    /// gwsec: an https upstream's pool (in an `Arc`: a per-request clone is one increment).
    Https(Arc<crate::tls::HttpsClient>),
}

/// One route's call to its upstream, with the route's timeout: a `tower::Service`, so the
/// route's resilience layers (the circuit breaker) wrap it.
///
/// HTTP/1.1 requests go out as written: origin-form URI and the `Host` header the proxy set.
#[derive(Clone)]
pub struct UpstreamCall {
    target: Target,
    timeout: Option<Duration>,
}

impl fmt::Debug for UpstreamCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamCall")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl UpstreamCall {
    pub(crate) fn new(
        upstream: &Upstream,
        clients: &Arc<Clients>,
        protocol: Protocol,
        timeout: Option<Duration>,
    ) -> Self {
        let target = match (upstream, protocol) {
            (Upstream::Fixed { authority, .. }, Protocol::Http1) => {
                Target::Pooled(UpstreamKey::of(authority))
            }
            (Upstream::Fixed { .. }, Protocol::H2c) => Target::H2c(clients.clone()),
            (Upstream::Service { svc, .. }, _) => Target::Service(svc.clone()),
        };
        UpstreamCall { target, timeout }
    }

    /// Sends `req` (what `Service::call` does, without needing `&mut self`).
    pub(crate) fn send(&self, req: Request<RequestBody>) -> UpstreamFuture {
        use tower::ServiceExt;
        let state = match &self.target {
            Target::Pooled(key) => match pool::checkout(*key) {
                Some(tx) => CallState::Ready {
                    tx: Some(tx),
                    req: Some(req),
                    key: *key,
                    reused: true,
                },
                None => CallState::Connect {
                    fut: pool::connect(*key),
                    req: Some(req),
                    key: *key,
                },
            },
            Target::H2c(c) => CallState::Client {
                fut: c.h2c.request(req),
            },
            Target::Https(c) => CallState::Client {
                fut: c.request(req),
            },
            Target::Service(s) => CallState::Service {
                fut: s.clone().oneshot(req),
            },
        };
        UpstreamFuture {
            state,
            sleep: self.timeout.map(tokio::time::sleep),
        }
    }

    /// gwsec: sends through an https pool instead (for `https://` upstreams).
    pub(crate) fn with_https(mut self, client: Option<crate::tls::HttpsClient>) -> Self {
        if let Some(c) = client {
            self.target = Target::Https(Arc::new(c));
        }
        self
    }
}

/// hyper's `try_send_request` future cannot be named, so it is boxed: one allocation per
/// request (hyper-util's legacy client boxes its whole response future too).
type SendFuture = Pin<
    Box<
        dyn Future<
                Output = Result<
                    Response<Incoming>,
                    hyper::client::conn::TrySendError<Request<RequestBody>>,
                >,
            > + Send,
    >,
>;

pin_project_lite::pin_project! {
    #[project = CallProj]
    enum CallState {
        /// A pooled HTTP/1.1 connection, until it can take the request.
        Ready { tx: Option<Sender>, req: Option<Request<RequestBody>>, key: UpstreamKey, reused: bool },
        /// A new HTTP/1.1 connection being opened.
        Connect { fut: ConnectFuture, req: Option<Request<RequestBody>>, key: UpstreamKey },
        /// The request is written; waiting for the response head.
        Send { fut: SendFuture, tx: Option<Sender>, key: UpstreamKey, reused: bool },
        Client { #[pin] fut: hyper_util::client::legacy::ResponseFuture },
        Service { #[pin] fut: tower::util::Oneshot<UpstreamService, Request<RequestBody>> },
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`UpstreamCall`].
    pub struct UpstreamFuture {
        #[pin]
        state: CallState,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
    }
}

impl UpstreamFuture {
    fn poll_call(
        mut state: Pin<&mut CallState>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response<UpstreamBody>, BoxError>> {
        loop {
            let next = match state.as_mut().project() {
                CallProj::Ready {
                    tx,
                    req,
                    key,
                    reused,
                } => {
                    let sender = tx.as_mut().expect("polled after completion");
                    match ready!(sender.poll_ready(cx)) {
                        Ok(()) => {
                            let mut sender = tx.take().expect("polled after completion");
                            let req = req.take().expect("polled after completion");
                            CallState::Send {
                                fut: Box::pin(sender.try_send_request(req)),
                                tx: Some(sender),
                                key: *key,
                                reused: *reused,
                            }
                        }
                        // Closed while idle (the upstream hung up): nothing was sent, so a
                        // new connection takes the request.
                        Err(_) => CallState::Connect {
                            fut: pool::connect(*key),
                            req: req.take(),
                            key: *key,
                        },
                    }
                }
                CallProj::Connect { fut, req, key } => match ready!(fut.as_mut().poll(cx)) {
                    Ok(tx) => CallState::Ready {
                        tx: Some(tx),
                        req: req.take(),
                        key: *key,
                        reused: false,
                    },
                    Err(e) => return Poll::Ready(Err(e)),
                },
                CallProj::Send {
                    fut,
                    tx,
                    key,
                    reused,
                } => match ready!(fut.as_mut().poll(cx)) {
                    Ok(resp) => {
                        let tx = tx.take().expect("polled after completion");
                        // A switched connection belongs to the tunnel now.
                        let body = if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                            UpstreamBody::plain
                        } else {
                            let key = *key;
                            return Poll::Ready(Ok(resp.map(|b| UpstreamBody::pooled(b, key, tx))));
                        };
                        return Poll::Ready(Ok(resp.map(body)));
                    }
                    Err(mut e) => match e.take_message() {
                        // A reused connection closed before the request went out: safe to
                        // send on a new one (what hyper-util's pool does too).
                        Some(req) if *reused => CallState::Connect {
                            fut: pool::connect(*key),
                            req: Some(req),
                            key: *key,
                        },
                        _ => return Poll::Ready(Err(e.into_error().into())),
                    },
                },
                CallProj::Client { fut } => {
                    return fut
                        .poll(cx)
                        .map(|r| r.map(|r| r.map(UpstreamBody::plain)).map_err(Into::into));
                }
                CallProj::Service { fut } => {
                    return fut.poll(cx).map(|r| r.map(|r| r.map(UpstreamBody::plain)));
                }
            };
            state.set(next);
        }
    }
}

impl Future for UpstreamFuture {
    type Output = Result<Response<UpstreamBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match Self::poll_call(this.state, cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => match this.sleep.as_pin_mut() {
                Some(s) => s
                    .poll(cx)
                    .map(|()| Err(Box::new(UpstreamTimeout) as BoxError)),
                None => Poll::Pending,
            },
        }
    }
}

impl tower_service::Service<Request<RequestBody>> for UpstreamCall {
    type Response = Response<UpstreamBody>;
    type Error = BoxError;
    type Future = UpstreamFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The pools are always ready; a plugged-in service is driven to readiness by
        // `Oneshot` in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> UpstreamFuture {
        self.send(req)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http::Request;
    use http_body::{Body, Frame};
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;

    use super::*;
    use crate::pool;

    /// A response body that sends one chunk and then stalls (a long download).
    struct Stalled(bool);

    impl Body for Stalled {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Pending
            } else {
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first")))))
            }
        }
    }

    /// A hyper backend on loopback that counts the connections it accepted. `/stall` sends a
    /// first chunk and never ends; `/close` answers with `Connection: close`; anything else
    /// answers `hello`.
    async fn backend() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: Request<hyper::body::Incoming>| async move {
                            let body = match req.uri().path() {
                                "/stall" => Stalled(false).boxed(),
                                _ => Full::new(Bytes::from_static(b"hello")).boxed(),
                            };
                            let mut r = http::Response::new(body);
                            if req.uri().path() == "/close" {
                                r.headers_mut().insert(
                                    http::header::CONNECTION,
                                    http::HeaderValue::from_static("close"),
                                );
                            }
                            Ok::<_, Infallible>(r)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn call_for(addr: SocketAddr) -> (UpstreamCall, UpstreamKey) {
        let authority: Authority = addr.to_string().parse().unwrap();
        let key = UpstreamKey::of(&authority);
        let call = UpstreamCall {
            target: Target::Pooled(key),
            timeout: None,
        };
        (call, key)
    }

    fn get(addr: SocketAddr, path: &str) -> Request<RequestBody> {
        Request::builder()
            .uri(path)
            .header(http::header::HOST, addr.to_string())
            .body(RequestBody::empty())
            .unwrap()
    }

    async fn text(call: &UpstreamCall, addr: SocketAddr, path: &str) -> String {
        let resp = call.send(get(addr, path)).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sequential_requests_reuse_one_connection() {
        let (addr, accepted) = backend().await;
        let (call, key) = call_for(addr);
        for _ in 0..20 {
            assert_eq!(text(&call, addr, "/").await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool::idle_count(key), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_requests_open_connections_then_all_come_back() {
        let (addr, accepted) = backend().await;
        let (call, key) = call_for(addr);
        let bodies = futures::future::join_all((0..8).map(|_| text(&call, addr, "/"))).await;
        assert!(bodies.iter().all(|b| b == "hello"));
        let opened = accepted.load(Ordering::SeqCst);
        assert!((1..=8).contains(&opened), "{opened} connections");
        assert_eq!(pool::idle_count(key), opened);
        // The next round reuses them all: no new connection.
        futures::future::join_all((0..opened).map(|_| text(&call, addr, "/"))).await;
        assert_eq!(accepted.load(Ordering::SeqCst), opened);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_body_dropped_before_its_end_does_not_go_back() {
        let (addr, accepted) = backend().await;
        let (call, key) = call_for(addr);
        let resp = call.send(get(addr, "/stall")).await.unwrap();
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "first");
        drop(body);
        assert_eq!(pool::idle_count(key), 0);
        // A new request must not wait behind the stalled download: it gets a new connection.
        assert_eq!(text(&call, addr, "/").await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_the_upstream_closed_is_replaced() {
        let (addr, accepted) = backend().await;
        let (call, _key) = call_for(addr);
        for _ in 0..5 {
            // Each answer closes its connection; the next request must not fail on it.
            assert_eq!(text(&call, addr, "/close").await, "hello");
        }
        assert_eq!(text(&call, addr, "/").await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 6);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connect_errors_are_reported() {
        // Bind then drop: nothing listens on that port any more.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (call, key) = call_for(addr);
        assert!(call.send(get(addr, "/")).await.is_err());
        assert_eq!(pool::idle_count(key), 0);
    }
}
