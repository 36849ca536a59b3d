//! Endpoint sources: anything that implements tower's [`Discover`] with [`Endpoint`] services,
//! plus two small sources for tests and static setups.
//!
//! The registry client's `Discover` stream, a static list and a channel fed by dynamic config
//! all plug in the same way. A source of plain services becomes one of endpoints with
//! [`WithMetadata`].
//!
//! [`Discover`]: tower::discover::Discover

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;
use tower::discover::{Change, Discover};

use crate::endpoint::{Endpoint, Metadata};

/// A fixed set of endpoints: yields one `Insert` per endpoint, then ends.
///
/// ```
/// use palisade_balancer::discover::StaticList;
/// use palisade_balancer::{Endpoint, Metadata};
/// let list = StaticList::new([
///     ("a", Endpoint::with_metadata((), Metadata::new().weight(2))),
///     ("b", Endpoint::new(())),
/// ]);
/// assert_eq!(list.len(), 2);
/// ```
#[derive(Debug)]
pub struct StaticList<K, S> {
    items: VecDeque<(K, Endpoint<S>)>,
}

impl<K, S> StaticList<K, S> {
    /// The endpoints to insert, in order.
    pub fn new(items: impl IntoIterator<Item = (K, Endpoint<S>)>) -> Self {
        Self {
            items: items.into_iter().collect(),
        }
    }

    /// Endpoints not yet yielded.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether every endpoint has been yielded.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl<K, S> Unpin for StaticList<K, S> {}

impl<K, S> Stream for StaticList<K, S> {
    type Item = Result<Change<K, Endpoint<S>>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(
            self.items
                .pop_front()
                .map(|(k, e)| Ok(Change::Insert(k, e))),
        )
    }
}

/// Sends endpoint changes to a [`ChannelDiscover`]. Cloneable; the discover ends when every
/// sender is dropped.
#[derive(Debug)]
pub struct DiscoverSender<K, S> {
    tx: mpsc::UnboundedSender<Change<K, Endpoint<S>>>,
}

impl<K, S> Clone for DiscoverSender<K, S> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<K, S> DiscoverSender<K, S> {
    /// Adds (or replaces) the endpoint under `key`. Returns `false` if the discover was dropped.
    pub fn insert(&self, key: K, endpoint: Endpoint<S>) -> bool {
        self.tx.send(Change::Insert(key, endpoint)).is_ok()
    }

    /// Removes the endpoint under `key`. Returns `false` if the discover was dropped.
    pub fn remove(&self, key: K) -> bool {
        self.tx.send(Change::Remove(key)).is_ok()
    }
}

/// A [`Discover`] fed through a channel (by a registry watcher, dynamic config, a test).
#[derive(Debug)]
pub struct ChannelDiscover<K, S> {
    rx: mpsc::UnboundedReceiver<Change<K, Endpoint<S>>>,
}

/// A connected sender / discover pair.
///
/// ```
/// use palisade_balancer::discover::channel;
/// use palisade_balancer::Endpoint;
/// let (tx, _discover) = channel::<&str, ()>();
/// assert!(tx.insert("a", Endpoint::new(())));
/// ```
pub fn channel<K, S>() -> (DiscoverSender<K, S>, ChannelDiscover<K, S>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (DiscoverSender { tx }, ChannelDiscover { rx })
}

impl<K, S> Stream for ChannelDiscover<K, S> {
    type Item = Result<Change<K, Endpoint<S>>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(Ok))
    }
}

pin_project_lite::pin_project! {
    /// Wraps a [`Discover`] of plain services so that each becomes an [`Endpoint`] with the
    /// metadata a closure gives it (for example zone and weight read from a registry record).
    ///
    /// ```
    /// use palisade_balancer::discover::WithMetadata;
    /// use palisade_balancer::{Balance, Metadata};
    /// use tower::discover::ServiceList;
    /// use tower::{service_fn, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let svc = |id: u32| service_fn(move |()| async move { Ok::<_, std::io::Error>(id) });
    /// let d = WithMetadata::new(ServiceList::new(vec![svc(1), svc(2)]), |key: &usize, _: &_| {
    ///     Metadata::new().zone("eu-west-1a").weight(*key as u32 + 1)
    /// });
    /// let mut lb = Balance::new(d);
    /// let id = lb.ready().await.unwrap().call(()).await.unwrap();
    /// assert!(id == 1 || id == 2);
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct WithMetadata<D, F> {
        #[pin]
        inner: D,
        metadata: F,
    }
}

impl<D, F> WithMetadata<D, F> {
    /// Wraps `inner`; `metadata(key, service)` is called once per inserted service.
    pub fn new(inner: D, metadata: F) -> Self {
        Self { inner, metadata }
    }
}

impl<D, F> Stream for WithMetadata<D, F>
where
    D: Discover,
    F: FnMut(&D::Key, &D::Service) -> Metadata,
{
    type Item = Result<Change<D::Key, Endpoint<D::Service>>, D::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        this.inner.poll_discover(cx).map(|c| {
            c.map(|r| {
                r.map(|change| match change {
                    Change::Insert(k, s) => {
                        let m = (this.metadata)(&k, &s);
                        Change::Insert(k, Endpoint::with_metadata(s, m))
                    }
                    Change::Remove(k) => Change::Remove(k),
                })
            })
        })
    }
}

/// What a [`WatchDiscover`]'s channel holds: the whole endpoint list.
pub type EndpointList<K, S> = Vec<(K, Endpoint<S>)>;

type ListRx<K, S> = tokio::sync::watch::Receiver<EndpointList<K, S>>;

type Changed<K, S> = Pin<
    Box<
        dyn std::future::Future<
                Output = (
                    Result<(), tokio::sync::watch::error::RecvError>,
                    ListRx<K, S>,
                ),
            > + Send,
    >,
>;

/// A [`Discover`] that follows a `tokio::sync::watch` channel holding the whole endpoint list
/// (what dynamic config publishes): each new list is diffed by key into `Remove`s for keys that
/// left and `Insert`s for keys that arrived. An endpoint whose key stays is kept as it is (its
/// counters and ejection state too); to replace it, remove it in one list and add it in the next.
///
/// The channel's current list is yielded first. The discover ends when the sender is dropped.
///
/// ```
/// use palisade_balancer::discover::WatchDiscover;
/// use palisade_balancer::Endpoint;
/// let (tx, rx) = tokio::sync::watch::channel(vec![("a", Endpoint::new(()))]);
/// let d = WatchDiscover::new(rx);
/// tx.send_replace(vec![("a", Endpoint::new(())), ("b", Endpoint::new(()))]);
/// # drop(d);
/// ```
pub struct WatchDiscover<K, S> {
    current: std::collections::HashSet<K>,
    pending: VecDeque<Change<K, Endpoint<S>>>,
    changed: Option<Changed<K, S>>,
    first: Option<ListRx<K, S>>,
}

impl<K, S> std::fmt::Debug for WatchDiscover<K, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchDiscover")
            .field("endpoints", &self.current.len())
            .field("pending_changes", &self.pending.len())
            .finish()
    }
}

impl<K, S> Unpin for WatchDiscover<K, S> {}

impl<K, S> WatchDiscover<K, S>
where
    K: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
    S: Clone + Send + Sync + 'static,
{
    /// Follows `rx`.
    pub fn new(rx: ListRx<K, S>) -> Self {
        Self {
            current: std::collections::HashSet::new(),
            pending: VecDeque::new(),
            changed: None,
            first: Some(rx),
        }
    }

    fn diff(&mut self, rx: &mut ListRx<K, S>) {
        let list = rx.borrow_and_update();
        let next: std::collections::HashSet<&K> = list.iter().map(|(k, _)| k).collect();
        let gone: Vec<K> = self
            .current
            .iter()
            .filter(|k| !next.contains(k))
            .cloned()
            .collect();
        for k in gone {
            self.current.remove(&k);
            self.pending.push_back(Change::Remove(k));
        }
        for (k, e) in list.iter() {
            if self.current.insert(k.clone()) {
                self.pending.push_back(Change::Insert(k.clone(), e.clone()));
            }
        }
    }

    fn wait(rx: ListRx<K, S>) -> Changed<K, S> {
        Box::pin(async move {
            let mut rx = rx;
            let r = rx.changed().await;
            (r, rx)
        })
    }
}

impl<K, S> Stream for WatchDiscover<K, S>
where
    K: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
    S: Clone + Send + Sync + 'static,
{
    type Item = Result<Change<K, Endpoint<S>>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(c) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(c)));
            }
            if let Some(mut rx) = this.first.take() {
                this.diff(&mut rx);
                this.changed = Some(Self::wait(rx));
                continue;
            }
            let Some(fut) = this.changed.as_mut() else {
                return Poll::Ready(None);
            };
            let (r, mut rx) = std::task::ready!(fut.as_mut().poll(cx));
            if r.is_err() {
                this.changed = None;
                return Poll::Ready(None);
            }
            this.diff(&mut rx);
            this.changed = Some(Self::wait(rx));
        }
    }
}
