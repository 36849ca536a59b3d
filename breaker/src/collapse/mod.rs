//! Request collapsing (Hystrix's `HystrixCollapser`): concurrent requests with the same batch key,
//! arriving within a window (or until a batch is full), become one call to a batch service;
//! its results fan back out to each caller. An item's error fails only that caller; an error of
//! the whole batch call fails the callers in that batch.
//!
//! The batch service takes `Vec<Req>` and answers `Vec<Result<Res, ItemError>>` in the same order.
//!
//! Collapsing trades latency (up to one window) for fewer, larger calls, and coordinates callers,
//! so unlike the other layers it allocates per call (the batch vector and a one-shot channel per
//! caller) and takes a short lock to join a batch (never held across a call). Each batch is sent
//! by a spawned task, so it needs a tokio runtime.
//!
//! ```
//! use palisade_breaker::collapse::CollapseLayer;
//! use std::time::Duration;
//! use tower::{Service, ServiceExt, Layer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // The batch service looks up many ids in one go.
//! let batch = tower::service_fn(|ids: Vec<u32>| async move {
//!     Ok::<_, std::io::Error>(ids.into_iter().map(|id| Ok::<_, std::io::Error>(id * 100)).collect::<Vec<_>>())
//! });
//! let svc = CollapseLayer::new(Duration::from_millis(10), 100, |_: &u32| ()).layer(batch);
//! let calls = (1..=3).map(|id| svc.clone().oneshot(id));
//! let results = futures::future::join_all(calls).await;
//! assert_eq!(results.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(), vec![100, 200, 300]);
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tower_layer::Layer;
use tower_service::Service;

type Reply<Res, E, IE> = oneshot::Sender<Result<Res, Error<E, IE>>>;

struct Batch<Req, Res, E, IE> {
    id: u64,
    items: Vec<(Req, Reply<Res, E, IE>)>,
}

struct Shared<K, Req, Res, E, IE> {
    open: Mutex<HashMap<K, Batch<Req, Res, E, IE>>>,
    next_id: AtomicU64,
}

/// Collapses requests into batch calls.
pub struct CollapseLayer<F> {
    window: Duration,
    max_batch: usize,
    key: F,
}

impl<F: Clone> Clone for CollapseLayer<F> {
    fn clone(&self) -> Self {
        Self {
            window: self.window,
            max_batch: self.max_batch,
            key: self.key.clone(),
        }
    }
}

impl<F> fmt::Debug for CollapseLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollapseLayer")
            .field("window", &self.window)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl<F> CollapseLayer<F> {
    /// Batches of up to `max_batch` requests (at least 1) with the same `key`, sent `window`
    /// after the first one arrives or as soon as they are full. Each service built by `layer`
    /// has its own batches (clones of that service share them).
    pub fn new(window: Duration, max_batch: usize, key: F) -> Self {
        Self {
            window,
            max_batch: max_batch.max(1),
            key,
        }
    }
}

impl<S, F: Clone> Layer<S> for CollapseLayer<F> {
    type Service = Collapse<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Collapse {
            inner,
            window: self.window,
            max_batch: self.max_batch,
            key: self.key.clone(),
            shared: Arc::new(SharedSlot::default()),
        }
    }
}

/// The batches of a [`Collapse`] service, type-erased until the first call fixes the types.
#[derive(Default)]
struct SharedSlot {
    open: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
    batches: AtomicU64,
}

/// A collapsing service. Built by [`CollapseLayer`].
pub struct Collapse<S, F> {
    inner: S,
    window: Duration,
    max_batch: usize,
    key: F,
    shared: Arc<SharedSlot>,
}

impl<S: Clone, F: Clone> Clone for Collapse<S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            window: self.window,
            max_batch: self.max_batch,
            key: self.key.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, F> fmt::Debug for Collapse<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collapse")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, F> Collapse<S, F> {
    /// Batch calls made so far by this service and its clones.
    pub fn batches_total(&self) -> u64 {
        self.shared.batches.load(Relaxed)
    }
}

/// Why a collapsed call failed.
pub struct Error<E, IE> {
    kind: Kind<E, IE>,
}

enum Kind<E, IE> {
    Batch(Arc<E>),
    Item(IE),
    Mismatch,
    Lost,
}

impl<E, IE> Error<E, IE> {
    /// The batch call failed (for every caller in the batch).
    pub fn batch_error(&self) -> Option<&E> {
        match &self.kind {
            Kind::Batch(e) => Some(e),
            _ => None,
        }
    }

    /// This caller's own item failed.
    pub fn item_error(&self) -> Option<&IE> {
        match &self.kind {
            Kind::Item(e) => Some(e),
            _ => None,
        }
    }

    /// The batch service answered with the wrong number of results.
    pub fn is_mismatch(&self) -> bool {
        matches!(self.kind, Kind::Mismatch)
    }

    /// The batch was dropped before it answered (runtime shutting down).
    pub fn is_lost(&self) -> bool {
        matches!(self.kind, Kind::Lost)
    }
}

impl<E: fmt::Debug, IE: fmt::Debug> fmt::Debug for Error<E, IE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Batch(e) => f.debug_tuple("Batch").field(e).finish(),
            Kind::Item(e) => f.debug_tuple("Item").field(e).finish(),
            Kind::Mismatch => f.write_str("Mismatch"),
            Kind::Lost => f.write_str("Lost"),
        }
    }
}

impl<E: fmt::Display, IE: fmt::Display> fmt::Display for Error<E, IE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Batch(e) => write!(f, "batch call failed: {e}"),
            Kind::Item(e) => e.fmt(f),
            Kind::Mismatch => f.write_str("batch service answered the wrong number of results"),
            Kind::Lost => f.write_str("batch dropped before it answered"),
        }
    }
}

impl<E, IE> std::error::Error for Error<E, IE>
where
    E: std::error::Error + 'static,
    IE: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Batch(e) => Some(&**e),
            Kind::Item(e) => Some(e),
            _ => None,
        }
    }
}

async fn dispatch<S, Req, Res, E, IE>(mut svc: S, items: Vec<(Req, Reply<Res, E, IE>)>)
where
    S: Service<Vec<Req>, Response = Vec<Result<Res, IE>>, Error = E>,
{
    let (reqs, replies): (Vec<_>, Vec<_>) = items.into_iter().unzip();
    let result = match std::future::poll_fn(|cx| svc.poll_ready(cx)).await {
        Ok(()) => svc.call(reqs).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(results) if results.len() == replies.len() => {
            for (r, tx) in results.into_iter().zip(replies) {
                let _ = tx.send(r.map_err(|e| Error {
                    kind: Kind::Item(e),
                }));
            }
        }
        Ok(_) => {
            for tx in replies {
                let _ = tx.send(Err(Error {
                    kind: Kind::Mismatch,
                }));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for tx in replies {
                let _ = tx.send(Err(Error {
                    kind: Kind::Batch(e.clone()),
                }));
            }
        }
    }
}

impl<S, F, K, Req, Res, IE> Service<Req> for Collapse<S, F>
where
    S: Service<Vec<Req>, Response = Vec<Result<Res, IE>>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + Sync + 'static,
    F: Fn(&Req) -> K,
    K: Hash + Eq + Clone + Send + 'static,
    Req: Send + 'static,
    Res: Send + 'static,
    IE: Send + 'static,
{
    type Response = Res;
    type Error = Error<S::Error, IE>;
    type Future = ResponseFuture<Res, S::Error, IE>;

    /// Always ready: the batch service is polled when a batch is sent.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        type Sh<K, Req, Res, E, IE> = Shared<K, Req, Res, E, IE>;
        let any = self.shared.open.get_or_init(|| {
            Box::new(Sh::<K, Req, Res, S::Error, IE> {
                open: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            })
        });
        let shared = any
            .downcast_ref::<Sh<K, Req, Res, S::Error, IE>>()
            .expect("one service always calls with the same types");
        let key = (self.key)(&req);
        let (tx, rx) = oneshot::channel();
        let mut open = shared.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut new_batch = None;
        let batch = open.entry(key.clone()).or_insert_with(|| {
            let id = shared.next_id.fetch_add(1, Relaxed);
            new_batch = Some(id);
            Batch {
                id,
                items: Vec::new(),
            }
        });
        batch.items.push((req, tx));
        let full = (batch.items.len() >= self.max_batch)
            .then(|| open.remove(&key))
            .flatten();
        drop(open);
        if let Some(batch) = full {
            self.shared.batches.fetch_add(1, Relaxed);
            tokio::spawn(dispatch(self.inner.clone(), batch.items));
        } else if let Some(id) = new_batch {
            let (svc, window, slot) = (self.inner.clone(), self.window, self.shared.clone());
            tokio::spawn(async move {
                tokio::time::sleep(window).await;
                let Some(shared) = slot
                    .open
                    .get()
                    .and_then(|b| b.downcast_ref::<Sh<K, Req, Res, S::Error, IE>>())
                else {
                    return;
                };
                let batch = {
                    let mut open = shared.open.lock().unwrap_or_else(|e| e.into_inner());
                    match open.get(&key) {
                        // The same batch (not one that replaced it after it filled up).
                        Some(b) if b.id == id => open.remove(&key),
                        _ => None,
                    }
                };
                if let Some(batch) = batch {
                    slot.batches.fetch_add(1, Relaxed);
                    dispatch(svc, batch.items).await;
                }
            });
        }
        ResponseFuture { rx }
    }
}

pin_project! {
    /// Waits for this caller's share of the batch result.
    pub struct ResponseFuture<Res, E, IE> {
        #[pin]
        rx: oneshot::Receiver<Result<Res, Error<E, IE>>>,
    }
}

impl<Res, E, IE> fmt::Debug for ResponseFuture<Res, E, IE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<Res, E, IE> Future for ResponseFuture<Res, E, IE> {
    type Output = Result<Res, Error<E, IE>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.project().rx.poll(cx)) {
            Ok(r) => r,
            Err(_) => Err(Error { kind: Kind::Lost }),
        })
    }
}
