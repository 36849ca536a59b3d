use std::fmt;

use tower_layer::Layer;

use super::config::Config;
use super::core::{Handle, Listener, Shared};
use super::service::Bulkhead;
use crate::util::{InvalidConfig, SharedRef};

/// Applies one bulkhead to services: every service it wraps, and every clone of those, shares
/// the same slots.
pub struct BulkheadLayer<L: 'static = ()> {
    shared: SharedRef<Shared<L>>,
}

impl<L: 'static> Clone for BulkheadLayer<L> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<L: 'static> fmt::Debug for BulkheadLayer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("bulkhead", &self.shared)
            .finish()
    }
}

impl BulkheadLayer {
    /// A bulkhead named `name` with `config` and no listener.
    pub fn new(name: impl Into<String>, config: Config) -> Result<Self, InvalidConfig> {
        Self::with_listener(name, config, ())
    }

    /// Like [`new`](Self::new), for a bulkhead that lives as long as the process (most do: one
    /// per downstream, built at start-up). Its state is allocated once and never freed, so a
    /// call hands its slot to the response future without touching a reference count: two
    /// atomic operations fewer per call. Each call of this constructor leaks that allocation
    /// (a few hundred bytes): build these once, not per request or per reconfiguration (use
    /// [`Handle::reconfigure`] to change them).
    ///
    /// ```
    /// use palisade_breaker::bulkhead::{BulkheadLayer, Config};
    ///
    /// let db = BulkheadLayer::new_static("db", Config::builder().max_concurrent(64).build()?)?;
    /// let svc = tower::ServiceBuilder::new()
    ///     .layer(db.clone())
    ///     .service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) });
    /// # let _ = svc;
    /// assert_eq!(db.handle().snapshot().max_concurrent, 64);
    /// # Ok::<(), palisade_breaker::InvalidConfig>(())
    /// ```
    pub fn new_static(name: impl Into<String>, config: Config) -> Result<Self, InvalidConfig> {
        Self::with_listener_static(name, config, ())
    }
}

impl<L: Listener> BulkheadLayer<L> {
    /// A bulkhead with an event listener.
    pub fn with_listener(
        name: impl Into<String>,
        config: Config,
        listener: L,
    ) -> Result<Self, InvalidConfig> {
        config.validate()?;
        let name: String = name.into();
        Ok(Self {
            shared: SharedRef::new(Shared::new(name.into_boxed_str(), &config, listener)),
        })
    }

    /// [`with_listener`](Self::with_listener) with `'static` state, as in
    /// [`new_static`](BulkheadLayer::new_static) (leaked once).
    pub fn with_listener_static(
        name: impl Into<String>,
        config: Config,
        listener: L,
    ) -> Result<Self, InvalidConfig> {
        config.validate()?;
        let name: String = name.into();
        Ok(Self {
            shared: SharedRef::leak(Shared::new(name.into_boxed_str(), &config, listener)),
        })
    }

    /// The handle of this layer's bulkhead.
    pub fn handle(&self) -> Handle<L> {
        Handle {
            shared: self.shared.clone(),
        }
    }
}

impl<S, L: Listener> Layer<S> for BulkheadLayer<L> {
    type Service = Bulkhead<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::from_shared(inner, self.shared.clone())
    }
}
