//! One breaker per key (authority, endpoint, route...), with a cap on keys and eviction of idle
//! ones.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::config::{Config, ConfigError};
use super::core::{Handle, Shared, Snapshot};
use super::error::Error;
use super::events::Listener;
use super::future::{Owner, Permit, ResponseFuture};
use super::layer::random_seed;
use super::registry::{NamedSnapshot, Source};
use crate::classify::{AnyError, Classify};

const SHARDS: usize = 16;

struct Entry<L> {
    breaker: Arc<Shared<L>>,
    // Set by every call (a load, and a store only when it was clear); cleared by sweeps.
    touched: AtomicBool,
    // When a sweep last found the entry untouched-since-previous-sweep began (nanos since start).
    idle_since: AtomicU64,
}

pub(crate) struct KeyedShared<K, L> {
    name: String,
    config: RwLock<Config>,
    listener: L,
    shards: [RwLock<HashMap<K, Entry<L>>>; SHARDS],
    hasher: RandomState,
    len: AtomicUsize,
    max_keys: usize,
    idle_timeout: Duration,
    start: Instant,
    last_sweep: Mutex<Instant>,
    seed: AtomicU64,
}

impl<K, L> fmt::Debug for KeyedShared<K, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("name", &self.name)
            .field("keys", &self.len.load(Ordering::Relaxed))
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl<K, L> KeyedShared<K, L>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    L: Listener + Clone,
{
    fn shard(&self, key: &K) -> &RwLock<HashMap<K, Entry<L>>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// The breaker for `key`: a read lock and an `Arc` clone on a hit; inserts on a miss.
    #[inline]
    fn breaker(&self, key: &K) -> Arc<Shared<L>> {
        let shard = self.shard(key);
        {
            let map = shard.read().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = map.get(key) {
                if !e.touched.load(Ordering::Relaxed) {
                    e.touched.store(true, Ordering::Relaxed);
                }
                return e.breaker.clone();
            }
        }
        self.insert(key)
    }

    #[cold]
    fn insert(&self, key: &K) -> Arc<Shared<L>> {
        let now = Instant::now();
        let due = {
            let last = *self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            now.saturating_duration_since(last) >= self.idle_timeout / 2
        };
        if due || self.len.load(Ordering::Relaxed) >= self.max_keys {
            self.sweep(now);
        }
        if self.len.load(Ordering::Relaxed) >= self.max_keys {
            self.evict_oldest();
        }
        let shard = self.shard(key);
        let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get(key) {
            return e.breaker.clone();
        }
        let cfg = self
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let seed = self
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let name = format!("{}/{}", self.name, key).into_boxed_str();
        let breaker = Arc::new(Shared::new(name, cfg, self.listener.clone(), seed));
        map.insert(
            key.clone(),
            Entry {
                breaker: breaker.clone(),
                touched: AtomicBool::new(true),
                idle_since: AtomicU64::new(self.nanos(now)),
            },
        );
        self.len.fetch_add(1, Ordering::Relaxed);
        breaker
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_nanos() as u64
    }

    /// Evicts entries nobody used for at least `idle_timeout`. Returns how many went.
    fn sweep(&self, now: Instant) -> usize {
        *self.last_sweep.lock().unwrap_or_else(|p| p.into_inner()) = now;
        let now_n = self.nanos(now);
        let idle = self.idle_timeout.as_nanos() as u64;
        let mut evicted = 0;
        for shard in &self.shards {
            let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, e| {
                if e.touched.swap(false, Ordering::Relaxed) {
                    e.idle_since.store(now_n, Ordering::Relaxed);
                    true
                } else if now_n.saturating_sub(e.idle_since.load(Ordering::Relaxed)) >= idle {
                    evicted += 1;
                    false
                } else {
                    true
                }
            });
        }
        self.len.fetch_sub(evicted, Ordering::Relaxed);
        evicted
    }

    /// At the cap with nothing idle: drop the entry idle the longest.
    fn evict_oldest(&self) {
        let mut oldest: Option<(usize, K, u64)> = None;
        for (i, shard) in self.shards.iter().enumerate() {
            let map = shard.read().unwrap_or_else(|p| p.into_inner());
            for (k, e) in map.iter() {
                let since = e.idle_since.load(Ordering::Relaxed);
                if oldest.as_ref().is_none_or(|(_, _, s)| since < *s) {
                    oldest = Some((i, k.clone(), since));
                }
            }
        }
        if let Some((i, k, _)) = oldest {
            let mut map = self.shards[i].write().unwrap_or_else(|p| p.into_inner());
            if map.remove(&k).is_some() {
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn for_each(&self, mut f: impl FnMut(&K, &Arc<Shared<L>>)) {
        for shard in &self.shards {
            let map = shard.read().unwrap_or_else(|p| p.into_inner());
            for (k, e) in map.iter() {
                f(k, &e.breaker);
            }
        }
    }
}

impl<K, L> Source for KeyedShared<K, L>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    L: Listener + Clone,
{
    fn collect(&self, out: &mut Vec<NamedSnapshot>) {
        self.for_each(|k, b| {
            out.push(NamedSnapshot {
                name: self.name.clone(),
                key: Some(k.to_string()),
                snapshot: b.snapshot(),
            })
        });
    }
}

/// A layer that keeps one circuit breaker per key extracted from the request.
///
/// ```
/// use palisade_breaker::circuit::{Config, KeyedCircuitBreakerLayer};
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // One breaker per host.
/// let layer = KeyedCircuitBreakerLayer::new("per-host", Config::default(), |req: &(String, u32)| {
///     req.0.clone()
/// })
/// .unwrap()
/// .max_keys(1024);
/// let handle = layer.handle();
/// let mut svc = ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|req: (String, u32)| async move { Ok::<_, std::io::Error>(req.1) });
/// svc.ready().await.unwrap().call(("a.example".into(), 1)).await.unwrap();
/// svc.ready().await.unwrap().call(("b.example".into(), 2)).await.unwrap();
/// assert_eq!(handle.len(), 2);
/// # }
/// ```
pub struct KeyedCircuitBreakerLayer<K, F, C = AnyError, L = ()> {
    shared: Arc<KeyedShared<K, L>>,
    key_fn: F,
    classifier: C,
}

impl<K, F: Clone, C: Clone, L> Clone for KeyedCircuitBreakerLayer<K, F, C, L> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            key_fn: self.key_fn.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<K, F, C: fmt::Debug, L> fmt::Debug for KeyedCircuitBreakerLayer<K, F, C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("breakers", &self.shared)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<K, F> KeyedCircuitBreakerLayer<K, F>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    /// One breaker per `key_fn(&request)`, each with `config`. Defaults: at most 10,000 keys,
    /// keys idle for 10 minutes are evicted.
    pub fn new(name: impl Into<String>, config: Config, key_fn: F) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(KeyedShared {
                name: name.into(),
                config: RwLock::new(config),
                listener: (),
                shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
                hasher: RandomState::new(),
                len: AtomicUsize::new(0),
                max_keys: 10_000,
                idle_timeout: Duration::from_secs(600),
                start: Instant::now(),
                last_sweep: Mutex::new(Instant::now()),
                seed: AtomicU64::new(random_seed()),
            }),
            key_fn,
            classifier: AnyError,
        })
    }
}

impl<K, F, C, L> KeyedCircuitBreakerLayer<K, F, C, L>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    L: Listener + Clone,
{
    fn map_shared<L2>(
        self,
        f: impl FnOnce(KeyedShared<K, L>) -> KeyedShared<K, L2>,
    ) -> KeyedCircuitBreakerLayer<K, F, C, L2> {
        let shared = Arc::try_unwrap(self.shared).unwrap_or_else(|_| {
            panic!("configure a KeyedCircuitBreakerLayer before cloning it or taking its handle")
        });
        KeyedCircuitBreakerLayer {
            shared: Arc::new(f(shared)),
            key_fn: self.key_fn,
            classifier: self.classifier,
        }
    }

    /// The most keys kept at once; inserting past it evicts idle keys first, then the key idle
    /// the longest.
    ///
    /// # Panics
    /// If the layer was already cloned or its handle taken.
    pub fn max_keys(self, n: usize) -> Self {
        self.map_shared(|mut s| {
            s.max_keys = n.max(1);
            s
        })
    }

    /// How long a key may go unused before it is evicted.
    ///
    /// # Panics
    /// If the layer was already cloned or its handle taken.
    pub fn idle_timeout(self, d: Duration) -> Self {
        self.map_shared(|mut s| {
            s.idle_timeout = d.max(Duration::from_millis(1));
            s
        })
    }

    /// A listener shared by every key's breaker (each event names the key's breaker as
    /// `"{name}/{key}"`).
    ///
    /// # Panics
    /// If the layer was already cloned or its handle taken.
    pub fn listener<L2: Listener + Clone>(
        self,
        listener: L2,
    ) -> KeyedCircuitBreakerLayer<K, F, C, L2> {
        self.map_shared(|s| KeyedShared {
            name: s.name,
            config: s.config,
            listener,
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
            hasher: s.hasher,
            len: AtomicUsize::new(0),
            max_keys: s.max_keys,
            idle_timeout: s.idle_timeout,
            start: s.start,
            last_sweep: s.last_sweep,
            seed: s.seed,
        })
    }

    /// Seeds the jitter RNGs of the breakers, for repeatable tests.
    pub fn rng_seed(self, seed: u64) -> Self {
        self.shared.seed.store(seed, Ordering::Relaxed);
        self
    }

    /// The classifier.
    pub fn classifier<C2>(self, classifier: C2) -> KeyedCircuitBreakerLayer<K, F, C2, L> {
        KeyedCircuitBreakerLayer {
            shared: self.shared,
            key_fn: self.key_fn,
            classifier,
        }
    }

    /// A handle over every key's breaker.
    pub fn handle(&self) -> KeyedHandle<K, L> {
        KeyedHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<S, K, F: Clone, C: Clone, L> Layer<S> for KeyedCircuitBreakerLayer<K, F, C, L> {
    type Service = KeyedCircuitBreaker<S, K, F, C, L>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreaker {
            inner,
            shared: self.shared.clone(),
            key_fn: self.key_fn.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// A service with one circuit breaker per request key. `poll_ready` only polls the inner
/// service (the key is not known yet); the key's breaker decides in `call`, and a rejected call
/// does not use the inner service's readiness.
pub struct KeyedCircuitBreaker<S, K, F, C = AnyError, L = ()> {
    inner: S,
    shared: Arc<KeyedShared<K, L>>,
    key_fn: F,
    classifier: C,
}

impl<S: Clone, K, F: Clone, C: Clone, L> Clone for KeyedCircuitBreaker<S, K, F, C, L> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            key_fn: self.key_fn.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F, C, L> fmt::Debug for KeyedCircuitBreaker<S, K, F, C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("inner", &self.inner)
            .field("breakers", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, C, L, Req> Service<Req> for KeyedCircuitBreaker<S, K, F, C, L>
where
    S: Service<Req>,
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    F: Fn(&Req) -> K,
    C: Classify<S::Response, S::Error> + Clone,
    L: Listener + Clone,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future, C, L>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let breaker = self.shared.breaker(&(self.key_fn)(&req));
        match breaker.admit() {
            Ok(ticket) => {
                let classifier = self.classifier.clone();
                ResponseFuture::called(
                    self.inner.call(req),
                    Permit::new(Owner::Shared(breaker), ticket, classifier),
                )
            }
            Err(w) => ResponseFuture::rejected(breaker.rejection(w)),
        }
    }
}

/// Controls every breaker of a [`KeyedCircuitBreakerLayer`].
pub struct KeyedHandle<K, L = ()> {
    pub(crate) shared: Arc<KeyedShared<K, L>>,
}

impl<K, L> Clone for KeyedHandle<K, L> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K, L> fmt::Debug for KeyedHandle<K, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl<K, L> KeyedHandle<K, L>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    L: Listener + Clone,
{
    /// Number of keys with a breaker.
    pub fn len(&self) -> usize {
        self.shared.len.load(Ordering::Relaxed)
    }

    /// Whether no key has a breaker yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The handle of `key`'s breaker, if it exists.
    pub fn get(&self, key: &K) -> Option<Handle<L>> {
        let map = self
            .shared
            .shard(key)
            .read()
            .unwrap_or_else(|p| p.into_inner());
        map.get(key).map(|e| Handle::of(e.breaker.clone()))
    }

    /// Every key with its breaker's snapshot.
    pub fn snapshots(&self) -> Vec<(K, Snapshot)> {
        let mut out = Vec::with_capacity(self.len());
        self.shared
            .for_each(|k, b| out.push((k.clone(), b.snapshot())));
        out
    }

    /// Evicts keys idle for at least the idle timeout now (it also happens on inserts).
    /// Returns how many were evicted.
    pub fn evict_idle(&self) -> usize {
        self.shared.sweep(Instant::now())
    }

    /// Opens every key's breaker (`ForcedOpen`), e.g. to take a whole host out.
    pub fn force_open_all(&self) {
        self.shared
            .for_each(|_, b| Handle::of(b.clone()).force_open());
    }

    /// Applies `config` to every existing breaker and to breakers created from now on. A config
    /// that fails validation changes nothing.
    pub fn reconfigure(&self, config: Config) -> Result<(), ConfigError> {
        config.validate()?;
        *self
            .shared
            .config
            .write()
            .unwrap_or_else(|p| p.into_inner()) = config.clone();
        let mut result = Ok(());
        self.shared.for_each(|_, b| {
            if let Err(e) = Handle::of(b.clone()).reconfigure(config.clone()) {
                result = Err(e);
            }
        });
        result
    }
}
