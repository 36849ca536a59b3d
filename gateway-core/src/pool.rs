//! The HTTP/1.1 upstream pool: one per thread, so a checkout takes no lock and touches no
//! shared cache line (Pingora's model). Each worker thread of the gateway keeps its own idle
//! connections per upstream authority; a connection goes back to the pool of the thread that
//! finished reading its response, once the body has ended.
//!
//! Unlike hyper-util's legacy pool, returning a connection spawns nothing: the response body
//! ([`crate::body::UpstreamBody`]) carries the sender and puts it back when it is dropped after
//! its end. A checkout then waits (one poll) for hyper's connection task to accept the next
//! request.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use http::uri::Authority;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::body::{BoxError, RequestBody};

/// A sender on one upstream HTTP/1.1 connection.
pub(crate) type Sender = SendRequest<RequestBody>;

/// How long an idle connection is kept (as the legacy pool was configured).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per upstream and thread; more are closed when they come back.
const MAX_IDLE_PER_UPSTREAM: usize = 1024;
/// Time allowed to open a TCP connection and start HTTP/1.1 on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Idle {
    tx: Sender,
    since: Instant,
}

/// An upstream authority, numbered once when routes are compiled, so a request indexes its
/// thread's pool without hashing or reference counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UpstreamKey(usize);

impl UpstreamKey {
    /// The key of `authority` (the same for every route and reload naming it).
    pub(crate) fn of(authority: &Authority) -> Self {
        let mut keys = keys();
        if let Some(i) = keys.iter().position(|a| a == authority) {
            return UpstreamKey(i);
        }
        keys.push(authority.clone());
        UpstreamKey(keys.len() - 1)
    }

    /// The authority this key stands for (when a connection must be opened).
    pub(crate) fn authority(self) -> Authority {
        keys()[self.0].clone()
    }
}

/// Every authority ever numbered: a handful, read only to open connections.
fn keys() -> std::sync::MutexGuard<'static, Vec<Authority>> {
    static KEYS: OnceLock<Mutex<Vec<Authority>>> = OnceLock::new();
    KEYS.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

thread_local! {
    static IDLE: RefCell<Vec<VecDeque<Idle>>> = const { RefCell::new(Vec::new()) };
}

/// Takes the most recently used open connection to `key` from this thread's pool.
pub(crate) fn checkout(key: UpstreamKey) -> Option<Sender> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(key.0)?;
        let now = Instant::now();
        while let Some(c) = list.pop_back() {
            if now.duration_since(c.since) > IDLE_TIMEOUT {
                // LIFO: everything below is older still.
                list.clear();
                return None;
            }
            if !c.tx.is_closed() {
                return Some(c.tx);
            }
        }
        None
    })
}

/// Returns a connection whose last response has ended to this thread's pool.
pub(crate) fn checkin(key: UpstreamKey, tx: Sender) {
    if tx.is_closed() {
        return;
    }
    // A thread being torn down has no pool left: the connection just closes.
    let _ = IDLE.try_with(|idle| {
        let Ok(mut idle) = idle.try_borrow_mut() else {
            return;
        };
        let now = Instant::now();
        if idle.len() <= key.0 {
            idle.resize_with(key.0 + 1, VecDeque::new);
        }
        let list = &mut idle[key.0];
        // Connections idle too long sit at the front: drop them as new ones come back.
        while list
            .front()
            .is_some_and(|c| c.tx.is_closed() || now.duration_since(c.since) > IDLE_TIMEOUT)
        {
            list.pop_front();
        }
        if list.len() < MAX_IDLE_PER_UPSTREAM {
            list.push_back(Idle { tx, since: now });
        }
    });
}

/// Idle connections to `authority` in this thread's pool (for tests).
#[cfg(test)]
pub(crate) fn idle_count(key: UpstreamKey) -> usize {
    IDLE.with(|idle| idle.borrow().get(key.0).map_or(0, VecDeque::len))
}

/// The future of a new connection (rare: boxed).
pub(crate) type ConnectFuture = Pin<Box<dyn Future<Output = Result<Sender, BoxError>> + Send>>;

/// Opens a new HTTP/1.1 connection to `authority` and spawns its connection task (with
/// upgrades, so a `101` can hand the socket over).
pub(crate) fn connect(key: UpstreamKey) -> ConnectFuture {
    Box::pin(async move {
        let authority = key.authority();
        let port = authority.port_u16().unwrap_or(80);
        // `[::1]` in an authority is `::1` to the resolver.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| -> BoxError { format!("connect to {authority} timed out").into() })??;
        stream.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::trace!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(tx)
    })
}
