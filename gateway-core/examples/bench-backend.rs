//! The bench backend of `reference/gateway-bench-baseline.md`: `200 "Hello, World!"` over
//! HTTP/1.1 keep-alive. Usage: `bench-backend ADDR [WORKER_THREADS]`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args
        .next()
        .expect("usage: bench-backend ADDR [WORKER_THREADS]")
        .parse()
        .expect("ADDR is host:port");
    let workers: usize = args
        .next()
        .map_or(1, |w| w.parse().expect("WORKER_THREADS is a number"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(s), hyper::service::service_fn(hello))
                    .await;
            });
        }
    });
}
