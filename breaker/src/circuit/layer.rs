use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::config::{Config, ConfigError};
use super::core::{Front, Handle, Shared};
use super::events::Listener;
use super::service::CircuitBreaker;
use crate::classify::AnyError;

/// Applies one circuit breaker to services.
///
/// The layer owns the breaker: every service it wraps (and every clone of those services) shares
/// the same state, which [`handle`](Self::handle) controls. Build one layer per protected
/// dependency.
pub struct CircuitBreakerLayer<C = AnyError, L: 'static = ()> {
    front: Arc<Front<L>>,
    classifier: C,
}

impl<C: Clone, L> Clone for CircuitBreakerLayer<C, L> {
    fn clone(&self) -> Self {
        Self {
            front: self.front.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<C: fmt::Debug, L> fmt::Debug for CircuitBreakerLayer<C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("breaker", &self.front.shared)
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl CircuitBreakerLayer {
    /// A breaker named `name` with `config`, the [`AnyError`] classifier and no listener.
    pub fn new(name: impl Into<String>, config: Config) -> Result<Self, ConfigError> {
        CircuitBreakerLayer::builder(name).config(config).build()
    }

    /// A builder for the classifier, listener and RNG seed.
    pub fn builder(name: impl Into<String>) -> LayerBuilder {
        LayerBuilder {
            name: name.into(),
            config: Config::default(),
            classifier: AnyError,
            listener: (),
            seed: None,
        }
    }
}

impl<C, L: Listener> CircuitBreakerLayer<C, L> {
    /// The handle of the breaker this layer applies.
    pub fn handle(&self) -> Handle<L> {
        Handle {
            shared: self.front.shared.clone(),
            front: Some(self.front.clone()),
        }
    }
}

impl<S, C: Clone, L: Listener> Layer<S> for CircuitBreakerLayer<C, L> {
    type Service = CircuitBreaker<S, C, L>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::from_front(inner, self.front.clone(), self.classifier.clone())
    }
}

/// Builds a [`CircuitBreakerLayer`].
#[derive(Debug)]
#[must_use]
pub struct LayerBuilder<C = AnyError, L = ()> {
    name: String,
    config: Config,
    classifier: C,
    listener: L,
    seed: Option<u64>,
}

impl<C, L> LayerBuilder<C, L> {
    /// The config (validated by [`build`](Self::build)).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The classifier that turns results into outcomes.
    pub fn classifier<C2>(self, classifier: C2) -> LayerBuilder<C2, L> {
        LayerBuilder {
            name: self.name,
            config: self.config,
            classifier,
            listener: self.listener,
            seed: self.seed,
        }
    }

    /// The event listener.
    pub fn listener<L2: Listener>(self, listener: L2) -> LayerBuilder<C, L2> {
        LayerBuilder {
            name: self.name,
            config: self.config,
            classifier: self.classifier,
            listener,
            seed: self.seed,
        }
    }

    /// Seeds the RNG behind open-duration jitter, for repeatable tests and simulations.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates the config and builds the layer.
    pub fn build(self) -> Result<CircuitBreakerLayer<C, L>, ConfigError>
    where
        L: Listener,
    {
        self.config.validate()?;
        let seed = self.seed.unwrap_or_else(random_seed);
        let shared = Shared::new(self.name.into_boxed_str(), self.config, self.listener, seed);
        Ok(CircuitBreakerLayer {
            front: Arc::new(Front::new(Arc::new(shared))),
            classifier: self.classifier,
        })
    }
}

impl<C, L: Listener> LayerBuilder<C, L> {
    /// Validates the config and builds a layer whose breaker lives as long as the process: its
    /// response futures hold a copied `&'static` reference instead of a reference-counted one,
    /// which saves two atomic read-modify-writes per call. The breaker is never freed (one
    /// allocation kept for the life of the process), and its window shape is fixed:
    /// [`Handle::reconfigure`](super::Handle::reconfigure) refuses a config that changes
    /// `window` and keeps the old one. For breakers built once at start-up.
    ///
    /// ```
    /// use palisade_breaker::circuit::{CircuitBreakerLayer, Config, State};
    ///
    /// let layer = CircuitBreakerLayer::builder("db")
    ///     .config(Config::default())
    ///     .build_static()?;
    /// assert_eq!(layer.handle().state(), State::Closed);
    /// # Ok::<(), palisade_breaker::circuit::ConfigError>(())
    /// ```
    pub fn build_static(self) -> Result<CircuitBreakerLayer<C, L>, ConfigError> {
        self.config.validate()?;
        let seed = self.seed.unwrap_or_else(random_seed);
        let shared =
            Shared::new_fixed(self.name.into_boxed_str(), self.config, self.listener, seed);
        Ok(CircuitBreakerLayer {
            front: Arc::new(Front::new_static(Arc::new(shared))),
            classifier: self.classifier,
        })
    }
}

pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5bd1_e995);
    h.finish()
}
