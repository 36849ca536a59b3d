//! Accept loop with limits and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};

use crate::config::Limits;
use crate::proxy::Gateway;

/// hyper's default header count limit (`DEFAULT_MAX_HEADERS` in `hyper::proto::h1::role`).
const HYPER_MAX_HEADERS: usize = 100;

/// Serves the gateway on `listener` (HTTP/1.1 and h2c) until `shutdown` resolves, then stops
/// accepting and waits up to `drain` for requests in flight to finish. Returns how many
/// connections were still open when the drain ended (0 = clean).
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<usize> {
    let builder = conn_builder(&limits);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = gateway.connection(remote);
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drain_connections(graceful, drain).await
}

/// The per-connection HTTP/1.1 + HTTP/2 server settings.
fn conn_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .header_read_timeout(limits.header_read_timeout);
    // hyper's own limit is 100 headers, parsed into stack arrays; an explicit limit (even 100)
    // makes it fill two heap vectors of that length per request.
    if limits.max_header_count != HYPER_MAX_HEADERS {
        builder.http1().max_headers(limits.max_header_count);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    builder
}

async fn drain_connections(graceful: GracefulShutdown, drain: Duration) -> std::io::Result<usize> {
    let open = graceful.count();
    tracing::info!(open, "draining connections");
    let left = tokio::select! {
        () = graceful.shutdown() => 0,
        () = tokio::time::sleep(drain) => open.max(1),
    };
    Ok(left)
}

/// Binds `addr` with `SO_REUSEPORT` (and `SO_REUSEADDR`), so several listeners (one per worker
/// thread, each on its own runtime) share the port and the kernel spreads new connections
/// between them. Call it again with the first listener's address for each further worker.
///
/// Must be called within a Tokio runtime; the returned listener is a std one, to be
/// registered with the worker's runtime by `TcpListener::from_std`.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let first = palisade_gateway::reuseport_listener("127.0.0.1:0".parse().unwrap())?;
/// let second = palisade_gateway::reuseport_listener(first.local_addr()?)?;
/// assert_eq!(first.local_addr()?, second.local_addr()?);
/// # Ok(()) }
/// ```
pub fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(4096)?.into_std()?;
    Ok(listener)
}

// gwsec: the TLS listener. Integration point: each accepted `TcpStream` is wrapped by the
// rustls acceptor (in the connection's own task, bounded by `header_read_timeout`) before
// hyper serves it; ALPN `h2` selects HTTP/2, anything else HTTP/1.1.

/// Like [`serve`], over TLS: HTTP/2 or HTTP/1.1 as the client's ALPN chose. `tls` may be
/// reloaded ([`ServerTls::reload`](crate::tls::ServerTls::reload)) while serving. Requests
/// are forwarded with `X-Forwarded-Proto: https`.
pub async fn serve_tls(
    listener: TcpListener,
    gateway: Gateway,
    limits: Limits,
    tls: crate::tls::ServerTls,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<usize> {
    let builder = conn_builder(&limits);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = gateway.connection_tls(remote);
        let acceptor = tls.acceptor().clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drain_connections(graceful, drain).await
}
