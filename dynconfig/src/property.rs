//! Typed live properties: a decoded value per snapshot, read lock-free.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;

use crate::config::{Inner, register};
use crate::lenient::Lenient;
use crate::scalar;
use crate::{ConfigError, value};

/// Turns a resolved snapshot tree into a property's value.
pub(crate) type Decoder<T> = Arc<dyn Fn(&Value) -> Result<T, ConfigError> + Send + Sync>;

type Callback<T> = Box<dyn Fn(&T) + Send + Sync>;

/// The shared state of one property: its current value, how to decode it and who to tell.
pub(crate) struct PropertyCell<T> {
    value: ArcSwap<T>,
    /// The value's 64-bit image when it has one (see `scalar`), valid while `fast` is set.
    bits: AtomicU64,
    fast: AtomicBool,
    decoder: Decoder<T>,
    tx: watch::Sender<Arc<T>>,
    callbacks: Mutex<Vec<Callback<T>>>,
}

/// A property the update path decodes against each candidate snapshot before it is swapped in.
pub(crate) trait Cell: Send + Sync {
    /// Decodes the candidate; `Ok(None)` when the value did not change.
    fn stage(self: Arc<Self>, tree: &Value) -> Result<Option<Box<dyn Staged>>, ConfigError>;
}

/// A decoded new value waiting for the snapshot swap.
pub(crate) trait Staged: Send {
    /// Publishes the value to readers.
    fn commit(&self);
    /// Tells watchers and runs callbacks (after the swap, outside the state lock).
    fn notify(&self);
}

impl<T: 'static> PropertyCell<T> {
    pub(crate) fn new(initial: T, decoder: Decoder<T>) -> Self {
        let bits = scalar::to_bits(&initial);
        let initial = Arc::new(initial);
        PropertyCell {
            value: ArcSwap::new(initial.clone()),
            bits: AtomicU64::new(bits.unwrap_or(0)),
            fast: AtomicBool::new(bits.is_some()),
            decoder,
            tx: watch::Sender::new(initial),
            callbacks: Mutex::new(Vec::new()),
        }
    }
}

struct StagedValue<T> {
    cell: Arc<PropertyCell<T>>,
    new: Arc<T>,
}

impl<T: PartialEq + Send + Sync + 'static> Cell for PropertyCell<T> {
    fn stage(self: Arc<Self>, tree: &Value) -> Result<Option<Box<dyn Staged>>, ConfigError> {
        let new = (self.decoder)(tree)?;
        if *self.value.load().as_ref() == new {
            return Ok(None);
        }
        Ok(Some(Box::new(StagedValue {
            cell: self,
            new: Arc::new(new),
        })))
    }
}

impl<T: Send + Sync + 'static> Staged for StagedValue<T> {
    fn commit(&self) {
        let cell = &self.cell;
        match scalar::to_bits(&*self.new) {
            Some(b) => {
                cell.value.store(self.new.clone());
                cell.bits.store(b, Ordering::Release);
                cell.fast.store(true, Ordering::Release);
            }
            None => {
                cell.fast.store(false, Ordering::Release);
                cell.value.store(self.new.clone());
            }
        }
    }
    fn notify(&self) {
        self.cell.tx.send_replace(self.new.clone());
        let callbacks = self
            .cell
            .callbacks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for cb in callbacks.iter() {
            cb(&self.new);
        }
    }
}

/// A typed, live configuration value.
///
/// Reads are lock-free and allocate nothing: the value is decoded once per snapshot, when the
/// snapshot is built, and [`get`](Property::get) loads it from an `ArcSwap`. A snapshot in which
/// a live property's value does not decode is rejected before it is swapped in, so a property
/// always holds a value of its type. Clones share the same value and callbacks.
pub struct Property<T> {
    cell: Arc<PropertyCell<T>>,
    config: Weak<Inner>,
}

impl<T> Clone for Property<T> {
    fn clone(&self) -> Self {
        Property {
            cell: self.cell.clone(),
            config: self.config.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Property<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Property")
            .field(&self.cell.value.load())
            .finish()
    }
}

impl<T: Send + Sync + PartialEq + 'static> Property<T> {
    pub(crate) fn from_cell(cell: Arc<PropertyCell<T>>, config: Weak<Inner>) -> Self {
        Property { cell, config }
    }

    /// The current value, cloned. For integers, floats, bools, chars and durations this is one
    /// atomic load; for other types an `ArcSwap` load and a clone.
    #[inline]
    pub fn get(&self) -> T
    where
        T: Clone,
    {
        if self.cell.fast.load(Ordering::Acquire)
            && let Some(v) = scalar::from_bits::<T>(self.cell.bits.load(Ordering::Acquire))
        {
            return v;
        }
        T::clone(&self.cell.value.load())
    }

    /// The current value as a shared pointer, without cloning `T`.
    #[inline]
    pub fn load(&self) -> Arc<T> {
        self.cell.value.load_full()
    }

    /// Runs `f` on the current value without cloning it.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.cell.value.load())
    }

    /// A receiver that sees each new value (only changes: an update that leaves this property's
    /// value equal does not wake it).
    pub fn watch(&self) -> watch::Receiver<Arc<T>> {
        self.cell.tx.subscribe()
    }

    /// Calls `f` with each new value, on the thread or task that applied the update (the file
    /// watcher, the remote poller, or the caller of `set_override`). `f` must not update the same
    /// `Config` synchronously; spawn a task for that.
    pub fn subscribe(&self, f: impl Fn(&T) + Send + Sync + 'static) {
        self.cell
            .callbacks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Box::new(f));
    }

    /// A derived property: `f` applied to this one's value, recomputed with each snapshot.
    ///
    /// # Errors
    /// Fails if the `Config` is gone.
    pub fn map<U, F>(&self, f: F) -> Result<Property<U>, ConfigError>
    where
        U: PartialEq + Send + Sync + 'static,
        F: Fn(&T) -> U + Send + Sync + 'static,
    {
        let parent = self.cell.decoder.clone();
        let decoder: Decoder<U> = Arc::new(move |tree| parent(tree).map(|t| f(&t)));
        let inner = self
            .config
            .upgrade()
            .ok_or_else(|| ConfigError::setup("the Config behind this property was dropped"))?;
        register(&inner, decoder, false)
    }
}

/// Decodes the value at `key` leniently, naming the full key of any error.
pub(crate) fn decode_at<T: DeserializeOwned>(key: &str, v: &Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(Lenient(v)).map_err(|e| {
        let inner_path = e.path().to_string();
        let full = join_key(key, &inner_path);
        ConfigError::invalid(full, e.into_inner().to_string())
    })
}

fn join_key(key: &str, inner: &str) -> String {
    if inner == "." || inner.is_empty() {
        key.to_owned()
    } else if key.is_empty() {
        inner.to_owned()
    } else if inner.starts_with('[') {
        format!("{key}{inner}")
    } else {
        format!("{key}.{inner}")
    }
}

/// A decoder for the first of `keys` that is present and not null, else `default`.
pub(crate) fn key_decoder<T>(keys: Vec<String>, default: Option<T>) -> Decoder<T>
where
    T: DeserializeOwned + Clone + Send + Sync + 'static,
{
    Arc::new(move |tree| {
        for k in &keys {
            if let Some(v) = value::lookup(tree, k).filter(|v| !v.is_null()) {
                return decode_at(k, v);
            }
        }
        default
            .clone()
            .ok_or_else(|| ConfigError::invalid(keys.join(" or "), "missing and no default".into()))
    })
}

/// A builder for a property read from one key with fallbacks, see [`Config::key`](crate::Config::key).
pub struct PropertyBuilder<T> {
    pub(crate) inner: Arc<Inner>,
    pub(crate) keys: Vec<String>,
    pub(crate) default: Option<T>,
}

impl<T> fmt::Debug for PropertyBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropertyBuilder")
            .field("keys", &self.keys)
            .finish()
    }
}

impl<T> PropertyBuilder<T>
where
    T: DeserializeOwned + Clone + PartialEq + Send + Sync + 'static,
{
    /// Reads `key` when the keys before it are missing (Archaius' `orElseGet(key)`).
    pub fn or_key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// The value when every key is missing. Without one, a missing key is an error at
    /// [`build`](PropertyBuilder::build) and makes later snapshots without it invalid.
    pub fn default_value(mut self, value: T) -> Self {
        self.default = Some(value);
        self
    }

    /// Registers the property and decodes its current value.
    ///
    /// # Errors
    /// When the current value does not decode to `T` (or is missing without a default).
    pub fn build(self) -> Result<Property<T>, ConfigError> {
        register(&self.inner, key_decoder(self.keys, self.default), false)
    }
}

#[cfg(test)]
mod tests {
    use super::join_key;

    #[test]
    fn keys_join_with_inner_paths() {
        assert_eq!(join_key("a.b", "."), "a.b");
        assert_eq!(join_key("a", "c"), "a.c");
        assert_eq!(join_key("a", "[0].c"), "a[0].c");
        assert_eq!(join_key("", "c"), "c");
    }
}
