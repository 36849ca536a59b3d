use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::config::Config;
use super::core::{Handle, Listener, Shared};
use super::service::Bulkhead;
use crate::util::InvalidConfig;

/// Applies one bulkhead to services: every service it wraps, and every clone of those, shares
/// the same slots.
pub struct BulkheadLayer<L = ()> {
    shared: Arc<Shared<L>>,
}

impl<L> Clone for BulkheadLayer<L> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<L> fmt::Debug for BulkheadLayer<L> {
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
            shared: Arc::new(Shared::new(name.into_boxed_str(), &config, listener)),
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
