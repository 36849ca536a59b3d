//! `tower::discover::Discover` streams over the client's local cache.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::BoxStream;
use tokio::sync::watch;
use tower::discover::Change;

use crate::model::{Applications, InstanceInfo, InstanceStatus};

/// Which instances a stream follows.
#[derive(Debug, Clone)]
pub(crate) enum Selector {
    App(String),
    Vip(String),
}

impl Selector {
    fn matches(&self, app: &str, inst: &InstanceInfo) -> bool {
        match self {
            Selector::App(name) => app.eq_ignore_ascii_case(name),
            Selector::Vip(vip) => inst.has_vip(vip),
        }
    }
}

/// Where to reach one `UP` instance; the value of [`Change::Insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The instance id (the key of the changes).
    pub instance_id: String,
    /// The application.
    pub app: String,
    /// The host name.
    pub host_name: String,
    /// The IP address.
    pub ip_addr: String,
    /// The plain port, when enabled.
    pub port: Option<u16>,
    /// The TLS port, when enabled.
    pub secure_port: Option<u16>,
    /// The instance metadata (zone, weights…).
    pub metadata: BTreeMap<String, String>,
}

impl Endpoint {
    fn from_instance(inst: &InstanceInfo) -> Self {
        Endpoint {
            instance_id: inst.id().to_owned(),
            app: inst.app.clone(),
            host_name: inst.host_name.clone(),
            ip_addr: inst.ip_addr.clone(),
            port: inst.port.filter(|p| p.enabled).map(|p| p.port),
            secure_port: inst.secure_port.filter(|p| p.enabled).map(|p| p.port),
            metadata: inst.metadata.clone(),
        }
    }

    /// The IP address and plain port, when both are usable.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.ip_addr.parse().ok()?;
        Some(SocketAddr::new(ip, self.port?))
    }
}

/// A stream of [`Change`]s of the `UP` instances of one application or VIP, keyed by instance
/// id. It is a `tower::discover::Discover`; it never fails and ends when the client is dropped.
///
/// Every registry the client publishes (after a fetch that changed something) is diffed against
/// what the stream already yielded: new or changed instances give `Insert`, instances gone or no
/// longer `UP` give `Remove`. While every server is down the cache does not change, so the stream
/// keeps the last known endpoints.
pub struct EndpointDiscover {
    updates: BoxStream<'static, Arc<Applications>>,
    selector: Selector,
    known: HashMap<String, Endpoint>,
    pending: VecDeque<Change<String, Endpoint>>,
}

impl std::fmt::Debug for EndpointDiscover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointDiscover")
            .field("selector", &self.selector)
            .field("known", &self.known.len())
            .finish_non_exhaustive()
    }
}

impl EndpointDiscover {
    pub(crate) fn new(rx: watch::Receiver<Arc<Applications>>, selector: Selector) -> Self {
        let updates = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let apps = rx.borrow_and_update().clone();
            Some((apps, (rx, false)))
        });
        EndpointDiscover {
            updates: Box::pin(updates),
            selector,
            known: HashMap::new(),
            pending: VecDeque::new(),
        }
    }

    /// The endpoints yielded so far and not removed.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.known.values()
    }

    fn diff(&mut self, apps: &Applications) {
        let mut now: HashMap<String, Endpoint> = HashMap::new();
        for app in &apps.applications {
            for inst in &app.instances {
                if inst.status == InstanceStatus::Up && self.selector.matches(&app.name, inst) {
                    let e = Endpoint::from_instance(inst);
                    now.insert(e.instance_id.clone(), e);
                }
            }
        }
        let mut gone: Vec<String> = self
            .known
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect();
        gone.sort();
        for k in gone {
            self.known.remove(&k);
            self.pending.push_back(Change::Remove(k));
        }
        let mut fresh: Vec<(String, Endpoint)> = now
            .into_iter()
            .filter(|(k, e)| self.known.get(k) != Some(e))
            .collect();
        fresh.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, e) in fresh {
            self.known.insert(k.clone(), e.clone());
            self.pending.push_back(Change::Insert(k, e));
        }
    }
}

impl Stream for EndpointDiscover {
    type Item = Result<Change<String, Endpoint>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(c) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(c)));
            }
            match self.updates.as_mut().poll_next(cx) {
                Poll::Ready(Some(apps)) => self.diff(&apps),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
