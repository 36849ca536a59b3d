use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::config::Config;
use super::error::{Error, Rejected};
use super::future::ResponseFuture;
use super::gcra::Gcra;
use crate::util::InvalidConfig;

struct Keys<K> {
    map: RwLock<HashMap<K, Arc<Gcra>>>,
    cfg: RwLock<Config>,
    max_keys: usize,
    rejected_new_keys: std::sync::atomic::AtomicU64,
    epoch: Instant,
}

/// One rate limit per key (client id, API key, remote address...), extracted from each request.
/// Always sheds: the key is known only in `call`.
///
/// A key whose limiter is back to full (its theoretical arrival time is in the past) is in the
/// same state as a new key, so forgetting it loses nothing: when `max_keys` is reached such keys
/// are evicted. A new key that still finds no room is rejected.
///
/// ```
/// use palisade_breaker::ratelimit::{Config, KeyedRateLimitLayer};
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = KeyedRateLimitLayer::new(
///     Config::per(1, Duration::from_secs(1)),
///     10_000,
///     |req: &(&'static str, u32)| req.0,
/// ).unwrap();
/// let mut svc = ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|req: (&'static str, u32)| async move { Ok::<_, std::io::Error>(req.1) });
/// assert!(svc.ready().await.unwrap().call(("alice", 1)).await.is_ok());
/// assert!(svc.ready().await.unwrap().call(("bob", 2)).await.is_ok());
/// assert!(svc.ready().await.unwrap().call(("alice", 3)).await.unwrap_err().is_rejected());
/// # }
/// ```
pub struct KeyedRateLimitLayer<K, F> {
    keys: Arc<Keys<K>>,
    key_fn: F,
}

impl<K, F: Clone> Clone for KeyedRateLimitLayer<K, F> {
    fn clone(&self) -> Self {
        Self {
            keys: self.keys.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<K, F> fmt::Debug for KeyedRateLimitLayer<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimitLayer")
            .field("max_keys", &self.keys.max_keys)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq, F> KeyedRateLimitLayer<K, F> {
    /// A limit of `config` per key, at most `max_keys` keys, keys from `key_fn`.
    pub fn new(config: Config, max_keys: usize, key_fn: F) -> Result<Self, InvalidConfig> {
        config.validate()?;
        if max_keys == 0 {
            return Err(InvalidConfig::new(
                "keyed rate limit",
                "max_keys",
                "must be at least 1",
            ));
        }
        Ok(Self {
            keys: Arc::new(Keys {
                map: RwLock::new(HashMap::new()),
                cfg: RwLock::new(config),
                max_keys,
                rejected_new_keys: Default::default(),
                epoch: Instant::now(),
            }),
            key_fn,
        })
    }

    /// The handle of this layer's limiters.
    pub fn handle(&self) -> KeyedHandle<K> {
        KeyedHandle {
            keys: self.keys.clone(),
        }
    }
}

impl<S, K, F: Clone> Layer<S> for KeyedRateLimitLayer<K, F> {
    type Service = KeyedRateLimit<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedRateLimit {
            inner,
            keys: self.keys.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

/// A permit taken with [`KeyedHandle::try_acquire`]: what the key has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    remaining: u32,
    reset: std::time::Duration,
}

impl Acquired {
    /// Calls the key may still make right now, back to back.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// How long until the key is back to a full burst.
    pub fn reset(&self) -> std::time::Duration {
        self.reset
    }
}

/// Controls a keyed rate limiter.
pub struct KeyedHandle<K> {
    keys: Arc<Keys<K>>,
}

impl<K> Clone for KeyedHandle<K> {
    fn clone(&self) -> Self {
        Self {
            keys: self.keys.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyedHandle")
    }
}

impl<K: Hash + Eq> KeyedHandle<K> {
    /// Keys tracked now.
    pub fn keys(&self) -> usize {
        read(&self.keys.map).len()
    }

    /// New keys rejected because `max_keys` keys were all busy.
    pub fn rejected_new_keys(&self) -> u64 {
        self.keys
            .rejected_new_keys
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes a permit for `key` outside a service (a proxy that picks the limit per request),
    /// and says what is left, for `RateLimit-*` response headers. Same rules as the service:
    /// existing keys take a read lock and one CAS, a new key the write lock.
    ///
    /// ```
    /// use palisade_breaker::ratelimit::{Config, KeyedRateLimitLayer};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = KeyedRateLimitLayer::new(Config::per(2, Duration::from_secs(1)), 100, |k: &u64| *k)
    ///     .unwrap();
    /// let limits = layer.handle();
    /// assert_eq!(limits.try_acquire(7).unwrap().remaining(), 1);
    /// assert_eq!(limits.try_acquire(7).unwrap().remaining(), 0);
    /// assert!(limits.try_acquire(7).unwrap_err().retry_after() <= Duration::from_millis(500));
    /// assert_eq!(limits.try_acquire(8).unwrap().remaining(), 1); // another key
    /// # }
    /// ```
    pub fn try_acquire(&self, key: K) -> Result<Acquired, Rejected> {
        self.keys
            .acquire_with(key, Gcra::try_acquire_counted)
            .map(|(remaining, full_in)| Acquired {
                remaining,
                reset: std::time::Duration::from_nanos(full_in),
            })
    }

    /// Applies a new config to every key (and to keys seen later), keeping their state.
    pub fn reconfigure(&self, cfg: Config) -> Result<(), InvalidConfig> {
        cfg.validate()?;
        let map = read(&self.keys.map);
        for g in map.values() {
            g.store(&cfg);
        }
        *self.keys.cfg.write().unwrap_or_else(|e| e.into_inner()) = cfg;
        Ok(())
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// A service with one rate limit per key. Built by [`KeyedRateLimitLayer`].
pub struct KeyedRateLimit<S, K, F> {
    inner: S,
    keys: Arc<Keys<K>>,
    key_fn: F,
}

impl<S: Clone, K, F: Clone> Clone for KeyedRateLimit<S, K, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            keys: self.keys.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for KeyedRateLimit<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, F> KeyedRateLimit<S, K, F> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<K: Hash + Eq> Keys<K> {
    fn acquire(&self, key: K) -> Result<(), Rejected> {
        self.acquire_with(key, Gcra::try_acquire)
    }

    fn acquire_with<T>(
        &self,
        key: K,
        take: impl Fn(&Gcra) -> Result<T, u64>,
    ) -> Result<T, Rejected> {
        // Existing keys: a shared read lock and one CAS.
        if let Some(g) = read(&self.map).get(&key) {
            return take(g).map_err(|ns| g.reject(ns));
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let g = match map.get(&key) {
            Some(g) => g.clone(),
            None => {
                if map.len() >= self.max_keys {
                    let now = map.values().next().map_or(0, |g| g.now());
                    map.retain(|_, g| !g.is_idle_at(now));
                }
                if map.len() >= self.max_keys {
                    self.rejected_new_keys
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let cfg = read(&self.cfg);
                    return Err(Rejected {
                        retry_after: cfg.emission_interval(),
                    });
                }
                let g = Arc::new(Gcra::new(&read(&self.cfg), self.epoch));
                map.insert(key, g.clone());
                g
            }
        };
        drop(map);
        take(&g).map_err(|ns| g.reject(ns))
    }
}

impl<S, K, F, Req> Service<Req> for KeyedRateLimit<S, K, F>
where
    S: Service<Req>,
    K: Hash + Eq,
    F: Fn(&Req) -> K,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.keys.acquire((self.key_fn)(&req)) {
            Ok(()) => ResponseFuture::called(self.inner.call(req)),
            Err(r) => ResponseFuture::rejected(r),
        }
    }
}
