use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, RwLock, Weak};

use serde::Serialize;

use super::core::{Handle, Shared, Snapshot};
use super::events::Listener;
use super::keyed::KeyedHandle;

/// Anything that can list breaker snapshots.
pub(crate) trait Source: Send + Sync {
    fn collect(&self, out: &mut Vec<NamedSnapshot>);
}

impl<L: Listener> Source for Shared<L> {
    fn collect(&self, out: &mut Vec<NamedSnapshot>) {
        out.push(NamedSnapshot {
            name: self.name().to_owned(),
            key: None,
            snapshot: self.snapshot(),
        });
    }
}

/// One breaker's snapshot with its name (and key, for keyed breakers).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedSnapshot {
    /// The breaker's (or keyed layer's) name.
    pub name: String,
    /// The key, for a keyed breaker.
    pub key: Option<String>,
    /// The snapshot.
    pub snapshot: Snapshot,
}

/// Enumerates breakers for health endpoints and dashboards. Holds them weakly: a dropped breaker
/// disappears from the listing.
///
/// ```
/// use palisade_breaker::circuit::{BreakerRegistry, CircuitBreakerLayer, Config};
///
/// let registry = BreakerRegistry::new();
/// let payments = CircuitBreakerLayer::new("payments", Config::default()).unwrap();
/// registry.register(&payments.handle());
/// let all = registry.snapshots();
/// assert_eq!(all[0].name, "payments");
/// ```
#[derive(Clone, Default)]
pub struct BreakerRegistry {
    sources: Arc<RwLock<Vec<Weak<dyn Source>>>>,
}

impl fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry").finish_non_exhaustive()
    }
}

impl BreakerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&self, source: Weak<dyn Source>) {
        let mut v = self.sources.write().unwrap_or_else(|p| p.into_inner());
        v.retain(|s| s.strong_count() > 0);
        v.push(source);
    }

    /// Lists a breaker.
    pub fn register<L: Listener>(&self, handle: &Handle<L>) {
        let shared: Arc<dyn Source> = handle.shared.clone();
        self.push(Arc::downgrade(&shared));
    }

    /// Lists every breaker of a keyed layer, present and future.
    pub fn register_keyed<K, L>(&self, handle: &KeyedHandle<K, L>)
    where
        K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
        L: Listener + Clone,
    {
        let shared: Arc<dyn Source> = handle.shared.clone();
        self.push(Arc::downgrade(&shared));
    }

    /// Snapshots of every live breaker.
    pub fn snapshots(&self) -> Vec<NamedSnapshot> {
        let v = self.sources.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for s in v.iter().filter_map(Weak::upgrade) {
            s.collect(&mut out);
        }
        out
    }
}
