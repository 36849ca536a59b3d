//! Small pieces shared by the middleware of this crate: the config error, a lock-free RNG, cache
//! padding.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A configuration that failed validation: names the field and the rule. Returned by the
/// `validate`/`build`/`reconfigure` of every middleware other than the circuit breaker (which
/// has its own [`circuit::ConfigError`](crate::circuit::ConfigError)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    middleware: &'static str,
    field: &'static str,
    message: &'static str,
}

impl InvalidConfig {
    pub(crate) const fn new(
        middleware: &'static str,
        field: &'static str,
        message: &'static str,
    ) -> Self {
        Self {
            middleware,
            field,
            message,
        }
    }

    /// The offending field (`max_concurrent`).
    pub fn field(&self) -> &str {
        self.field
    }

    /// The middleware whose config it is (`bulkhead`).
    pub fn middleware(&self) -> &str {
        self.middleware
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} config: {}: {}",
            self.middleware, self.field, self.message
        )
    }
}

impl std::error::Error for InvalidConfig {}

/// A lock-free SplitMix64 stream, seedable so that simulations and tests repeat.
#[derive(Debug)]
pub(crate) struct Rng(AtomicU64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(AtomicU64::new(seed))
    }

    pub(crate) fn from_entropy() -> Self {
        Self::new(random_seed())
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5bd1_e995);
    h.finish()
}

/// Keeps a hot atomic on its own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// State shared by every clone of a middleware and by its response futures: reference-counted,
/// or `'static` (allocated once and never freed), in which case handing it to a response future
/// is a copy instead of two atomic reference-count operations per call.
pub(crate) enum SharedRef<T: 'static> {
    Counted(std::sync::Arc<T>),
    Static(&'static T),
}

impl<T> SharedRef<T> {
    pub(crate) fn new(value: T) -> Self {
        Self::Counted(std::sync::Arc::new(value))
    }

    /// Leaks `value`: for state that lives as long as the process.
    pub(crate) fn leak(value: T) -> Self {
        Self::Static(Box::leak(Box::new(value)))
    }
}

impl<T> Clone for SharedRef<T> {
    #[inline]
    fn clone(&self) -> Self {
        match self {
            Self::Counted(a) => Self::Counted(a.clone()),
            Self::Static(r) => Self::Static(r),
        }
    }
}

impl<T> std::ops::Deref for SharedRef<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match self {
            Self::Counted(a) => a,
            Self::Static(r) => r,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for SharedRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}
