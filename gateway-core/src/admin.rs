//! The admin listener: a separate port, bearer-token protected (except `/health`).
//!
//! | path | method | answer |
//! |---|---|---|
//! | `/health` | GET | `200 ok` (no token, for probes) |
//! | `/routes` | GET | the routes in use, in match order, with the routes version (JSON) |
//! | `/breakers` | GET | snapshots of the gateway's circuit breakers (JSON) |
//! | `/endpoints` | GET | snapshots of the `lb://` endpoints, one balancer per service: state, ejections, in-flight, latency estimate (JSON) |
//! | `/metrics` | GET | Prometheus text: `palisade_gateway_requests_total{route,code}` (code is the status class, `2xx`...) and `palisade_gateway_request_duration_seconds_sum{route}` |
//! | `/reload` | POST | reloads the routes file given to [`Admin::routes_file`]; `422` with the error if refused |

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::Gateway;

/// Admin API state.
#[derive(Debug, Clone)]
pub struct Admin {
    gateway: Gateway,
    token: Arc<str>,
    routes_file: Option<Arc<PathBuf>>,
}

impl Admin {
    /// Admin API over `gateway`, answering callers that present `Authorization: Bearer <token>`.
    pub fn new(gateway: Gateway, token: impl Into<String>) -> Self {
        Admin {
            gateway,
            token: Arc::from(token.into()),
            routes_file: None,
        }
    }

    /// Enables `POST /reload` from this file.
    pub fn routes_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.routes_file = Some(Arc::new(file.into()));
        self
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(v) = req.headers().get(AUTHORIZATION) else {
            return false;
        };
        let Some(given) = v.as_bytes().strip_prefix(b"Bearer ") else {
            return false;
        };
        let want = self.token.as_bytes();
        // Constant time in the token's content.
        given.len() == want.len()
            && !want.is_empty()
            && given.iter().zip(want).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    }

    /// Answers one admin request.
    pub fn handle(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() == "/health" {
            return text(StatusCode::OK, "ok\n".into());
        }
        if !self.authorized(req) {
            let mut r = text(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token\n".into(),
            );
            r.headers_mut()
                .insert("www-authenticate", HeaderValue::from_static("Bearer"));
            return r;
        }
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/routes") => {
                let router = self.gateway.router();
                let routes: Vec<_> = router
                    .routes()
                    .iter()
                    .map(|r| {
                        let c = r.config();
                        serde_json::json!({
                            "id": r.id(),
                            "upstream": c.upstream.to_string(),
                            "protocol": format!("{:?}", c.protocol).to_lowercase(),
                            "timeout_ms": c.timeout.map(|t| t.as_millis() as u64),
                            "filters": c.filters.len(),
                        })
                    })
                    .collect();
                json(&serde_json::json!({ "version": router.version(), "routes": routes }))
            }
            (&Method::GET, "/breakers") => json(&self.gateway.breakers().snapshots()),
            (&Method::GET, "/endpoints") => json(&self.gateway.endpoints()),
            (&Method::GET, "/metrics") => {
                let mut s = String::new();
                s.push_str("# TYPE palisade_gateway_requests_total counter\n");
                let stats = self.gateway.route_stats();
                for (id, classes, _) in &stats {
                    for (i, n) in classes.iter().enumerate() {
                        let _ = writeln!(
                            s,
                            "palisade_gateway_requests_total{{route=\"{id}\",code=\"{}xx\"}} {n}",
                            i + 1
                        );
                    }
                }
                s.push_str("# TYPE palisade_gateway_request_duration_seconds_sum counter\n");
                for (id, _, us) in &stats {
                    let _ = writeln!(
                        s,
                        "palisade_gateway_request_duration_seconds_sum{{route=\"{id}\"}} {}",
                        *us as f64 / 1e6
                    );
                }
                let _ = writeln!(
                    s,
                    "# TYPE palisade_gateway_routes_version gauge\npalisade_gateway_routes_version {}",
                    self.gateway.router().version()
                );
                let mut r = text(StatusCode::OK, s);
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                r
            }
            (&Method::POST, "/reload") => match &self.routes_file {
                None => text(StatusCode::NOT_FOUND, "no routes file configured\n".into()),
                Some(f) => match self.gateway.reload_file(f.as_path()) {
                    Ok(v) => json(&serde_json::json!({ "version": v })),
                    Err(e) => text(StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")),
                },
            },
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn json<T: serde::Serialize>(v: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Serves the admin API until `shutdown` resolves, then lets open admin calls finish.
pub async fn serve_admin(listener: TcpListener, admin: Admin, shutdown: impl Future<Output = ()>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            () = &mut shutdown => break,
        };
        let admin = admin.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let r = admin.handle(&req);
            async move { Ok::<_, Infallible>(r) }
        });
        let conn = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned(),
        );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    graceful.shutdown().await;
}
