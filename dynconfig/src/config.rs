//! The layered configuration: sources, the update pipeline (merge, resolve, validate, swap,
//! notify) and the snapshot readers see.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, watch};

use crate::format::Format;
use crate::property::{Cell, Decoder, Property, PropertyBuilder, PropertyCell, decode_at};
use crate::{ConfigError, placeholder, value};

/// Where a layer of configuration comes from. Layers are ordered lowest to highest priority in
/// the order of the variants: a key in a higher layer hides the same key below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    /// Defaults given to the builder.
    Defaults,
    /// Files (TOML, YAML, JSON, properties); a later file beats an earlier one.
    File,
    /// Environment variables with a prefix.
    Env,
    /// A Spring Cloud Config compatible server.
    Remote,
    /// Values set at run time with [`Config::set_override`].
    Override,
}

impl SourceKind {
    /// The label used in metrics and events: `defaults`, `file`, `env`, `remote`, `override`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Defaults => "defaults",
            SourceKind::File => "file",
            SourceKind::Env => "env",
            SourceKind::Remote => "remote",
            SourceKind::Override => "override",
        }
    }
}

/// An immutable view of the merged configuration, with placeholders resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    version: u64,
    tree: Value,
}

impl Snapshot {
    /// Increases by one with every applied update (0 for the first snapshot).
    pub fn version(&self) -> u64 {
        self.version
    }
    /// The merged tree.
    pub fn tree(&self) -> &Value {
        &self.tree
    }
    /// The raw value at a dotted key (`server.port`, `hosts[0]`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        value::lookup(&self.tree, key)
    }
    /// Decodes the value at `key` (`""` for the whole tree), leniently: `"5"` reads as a number.
    ///
    /// # Errors
    /// When the key is missing or the value does not decode.
    pub fn decode<T: DeserializeOwned>(&self, key: &str) -> Result<T, ConfigError> {
        let v = self
            .get(key)
            .ok_or_else(|| ConfigError::invalid(key.to_owned(), "missing".into()))?;
        decode_at(key, v)
    }
}

/// The result of one attempted update of a source.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    /// A new snapshot was swapped in.
    Applied {
        /// The new snapshot's version.
        version: u64,
    },
    /// The source was re-read but the merged configuration did not change.
    Unchanged,
    /// The update was rejected; the last good configuration stays.
    Rejected(ConfigError),
}

/// An update of one source, as broadcast by [`Config::events`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEvent {
    /// The kind of source that changed.
    pub kind: SourceKind,
    /// Its name: a file path, `env`, `override`, `defaults` or a remote URL.
    pub source: String,
    /// What happened.
    pub outcome: UpdateOutcome,
}

pub(crate) struct Layer {
    kind: SourceKind,
    name: String,
    tree: Value,
    /// The text of a file layer, kept to find the line of a bad key.
    text: Option<(Format, String)>,
}

#[derive(Debug, Clone)]
pub(crate) struct FileSpec {
    pub(crate) path: PathBuf,
    pub(crate) format: Format,
    pub(crate) required: bool,
}

enum CellRef {
    Weak(std::sync::Weak<dyn Cell>),
    Strong(Arc<dyn Cell>),
}

impl CellRef {
    fn get(&self) -> Option<Arc<dyn Cell>> {
        match self {
            CellRef::Weak(w) => w.upgrade(),
            CellRef::Strong(s) => Some(s.clone()),
        }
    }
}

struct State {
    /// Sorted by kind, then by insertion.
    layers: Vec<Layer>,
    overrides: Vec<(String, Value)>,
    cells: Vec<CellRef>,
}

pub(crate) struct Inner {
    current: ArcSwap<Snapshot>,
    state: Mutex<State>,
    /// Held while watchers and callbacks run, so notifications keep the order of updates.
    notify: Mutex<()>,
    events: broadcast::Sender<ConfigEvent>,
    version: watch::Sender<u64>,
    pub(crate) files: Vec<FileSpec>,
    env: Option<EnvSpec>,
}

#[derive(Clone, Debug)]
struct EnvSpec {
    prefix: String,
    vars: Option<Vec<(String, String)>>,
}

/// Layered, typed, live configuration. Cheap to clone; clones share everything.
///
/// Build one with [`Config::builder`], read typed [`Property`] handles from it, bind sections to
/// structs with [`Config::bind`], and keep it current with [`Config::watch_files`], a remote
/// source or [`Config::set_override`]. Every update goes through the same pipeline: the layers
/// are merged, `${...}` placeholders resolved, every live property and binding decoded against
/// the candidate (the validation), and only then is the new snapshot swapped in. A rejected update
/// keeps the last good configuration, is broadcast as an event with the file, line and key, and
/// counts in `palisade_dynconfig_updates_total{source,result}` (feature `metrics`).
#[derive(Clone)]
pub struct Config {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("version", &self.inner.current.load().version)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Config`]: add sources, then [`build`](ConfigBuilder::build) reads them all once.
#[derive(Debug, Default)]
pub struct ConfigBuilder {
    defaults: Value,
    files: Vec<FileSpec>,
    env: Option<EnvSpec>,
    bad_file: Option<PathBuf>,
}

impl ConfigBuilder {
    /// Sets the defaults layer from a tree (for example `serde_json::json!({...})`).
    pub fn defaults(mut self, tree: Value) -> Self {
        value::merge(&mut self.defaults, &tree);
        self
    }

    /// Sets one default at a dotted key.
    pub fn default_value(mut self, key: &str, v: impl Into<Value>) -> Self {
        if !self.defaults.is_object() {
            self.defaults = Value::Object(Map::new());
        }
        value::insert(&mut self.defaults, key, v.into());
        self
    }

    /// Adds a file that must exist; its format comes from the extension (`.toml`, `.yaml`,
    /// `.yml`, `.json`, `.properties`). Later files beat earlier ones.
    pub fn file(self, path: impl AsRef<Path>) -> Self {
        self.add_file(path.as_ref(), true)
    }

    /// Adds a file that may be missing (it then counts as empty, until it appears).
    pub fn optional_file(self, path: impl AsRef<Path>) -> Self {
        self.add_file(path.as_ref(), false)
    }

    fn add_file(mut self, path: &Path, required: bool) -> Self {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        match Format::from_path(&path) {
            Some(format) => self.files.push(FileSpec {
                path,
                format,
                required,
            }),
            None => self.bad_file = Some(path),
        }
        self
    }

    /// Reads environment variables starting with `{prefix}_`: the rest of the name, lower-cased,
    /// with `__` as the level separator, is the key (`APP_BREAKER__FAILURE_THRESHOLD=5` sets
    /// `breaker.failure_threshold`). Values are strings; typed reads coerce them.
    pub fn env(mut self, prefix: impl Into<String>) -> Self {
        self.env = Some(EnvSpec {
            prefix: prefix.into(),
            vars: None,
        });
        self
    }

    /// Like [`env`](ConfigBuilder::env), but from the given variables instead of the process
    /// environment (for tests and embedding).
    pub fn env_vars<I, K, V>(mut self, prefix: impl Into<String>, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.env = Some(EnvSpec {
            prefix: prefix.into(),
            vars: Some(vars),
        });
        self
    }

    /// Reads every source once and builds the first snapshot.
    ///
    /// # Errors
    /// A required file that is missing or does not parse, an unknown file extension, or an
    /// unresolvable placeholder; the error names the file, line and key.
    pub fn build(self) -> Result<Config, ConfigError> {
        if let Some(p) = self.bad_file {
            return Err(ConfigError::setup(
                "unknown file extension (use .toml, .yaml, .yml, .json or .properties)",
            )
            .with_source(&p.display().to_string()));
        }
        let mut layers = Vec::new();
        let defaults = match self.defaults {
            Value::Null => Value::Object(Map::new()),
            d => d,
        };
        layers.push(Layer {
            kind: SourceKind::Defaults,
            name: "defaults".into(),
            tree: defaults,
            text: None,
        });
        for spec in &self.files {
            layers.push(read_file(spec)?);
        }
        let env = self.env;
        if let Some(env) = &env {
            layers.push(env_layer(env));
        }
        let merged = merge_layers(layers.iter());
        let tree = placeholder::resolve(&merged).map_err(|e| locate(e, layers.iter()))?;
        let snapshot = Snapshot { version: 0, tree };
        let inner = Inner {
            current: ArcSwap::from_pointee(snapshot),
            state: Mutex::new(State {
                layers,
                overrides: Vec::new(),
                cells: Vec::new(),
            }),
            notify: Mutex::new(()),
            events: broadcast::channel(64).0,
            version: watch::Sender::new(0),
            files: self.files,
            env,
        };
        Ok(Config {
            inner: Arc::new(inner),
        })
    }
}

fn read_file(spec: &FileSpec) -> Result<Layer, ConfigError> {
    let name = spec.path.display().to_string();
    let text = match std::fs::read_to_string(&spec.path) {
        Ok(t) => t,
        // A missing optional file is an empty layer, whatever its format.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !spec.required => {
            return Ok(Layer {
                kind: SourceKind::File,
                name,
                tree: Value::Object(Map::new()),
                text: None,
            });
        }
        Err(e) => return Err(ConfigError::io(&name, &e)),
    };
    let tree = spec
        .format
        .parse(&text)
        .map_err(|e| ConfigError::syntax(&name, e))?;
    Ok(Layer {
        kind: SourceKind::File,
        name,
        tree,
        text: Some((spec.format, text)),
    })
}

fn env_layer(spec: &EnvSpec) -> Layer {
    let prefix = format!("{}_", spec.prefix);
    let vars: Vec<(String, String)> = match &spec.vars {
        Some(v) => v.clone(),
        None => std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    };
    let mut sorted: Vec<(String, String)> = vars
        .into_iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(&prefix)?;
            (!rest.is_empty()).then(|| (rest.to_ascii_lowercase().replace("__", "."), v))
        })
        .collect();
    sorted.sort();
    let mut tree = Value::Object(Map::new());
    for (k, v) in sorted {
        value::insert(&mut tree, &k, Value::String(v));
    }
    Layer {
        kind: SourceKind::Env,
        name: "env".into(),
        tree,
        text: None,
    }
}

fn merge_layers<'a>(layers: impl Iterator<Item = &'a Layer>) -> Value {
    let mut root = Value::Object(Map::new());
    for l in layers {
        value::merge(&mut root, &l.tree);
    }
    root
}

/// Adds the source name and line to an error about a key: the highest layer that holds the key
/// (or its nearest parent) is the one to blame.
fn locate<'a>(err: ConfigError, layers: impl DoubleEndedIterator<Item = &'a Layer>) -> ConfigError {
    if err.source_name().is_some() {
        return err;
    }
    let Some(key) = err.key().map(str::to_owned) else {
        return err;
    };
    let layers: Vec<&Layer> = layers.rev().collect();
    let mut probe = key.as_str();
    loop {
        if let Some(l) = layers
            .iter()
            .find(|l| !probe.is_empty() && value::lookup(&l.tree, probe).is_some())
        {
            let line = l.text.as_ref().and_then(|(f, t)| f.locate_key(t, probe));
            return err.with_source(&l.name).with_line(line);
        }
        match probe.rfind(['.', '[']) {
            Some(i) => probe = &probe[..i],
            None => return err,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registers a property cell, decoding its value from the current snapshot.
pub(crate) fn register<T>(
    inner: &Arc<Inner>,
    decoder: Decoder<T>,
    strong: bool,
) -> Result<Property<T>, ConfigError>
where
    T: PartialEq + Send + Sync + 'static,
{
    let mut state = lock(&inner.state);
    let snap = inner.current.load();
    let initial = decoder(&snap.tree).map_err(|e| locate(e, state.layers.iter()))?;
    let cell = Arc::new(PropertyCell::new(initial, decoder));
    let dyn_cell: Arc<dyn Cell> = cell.clone();
    state.cells.retain(|c| c.get().is_some());
    state.cells.push(if strong {
        CellRef::Strong(dyn_cell)
    } else {
        CellRef::Weak(Arc::downgrade(&dyn_cell))
    });
    Ok(Property::from_cell(cell, Arc::downgrade(inner)))
}

impl Config {
    /// Starts a builder.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    /// A typed property at `key` with a default for when the key is missing.
    ///
    /// # Errors
    /// When the current value does not decode to `T`.
    pub fn property<T>(&self, key: &str, default: T) -> Result<Property<T>, ConfigError>
    where
        T: DeserializeOwned + Clone + PartialEq + Send + Sync + 'static,
    {
        self.key(key).default_value(default).build()
    }

    /// A builder for a property with fallback keys and an optional default.
    pub fn key<T>(&self, key: &str) -> PropertyBuilder<T>
    where
        T: DeserializeOwned + Clone + PartialEq + Send + Sync + 'static,
    {
        PropertyBuilder {
            inner: self.inner.clone(),
            keys: vec![key.to_owned()],
            default: None,
        }
    }

    /// Binds the section at `prefix` (`""` for everything) to `T` and calls `on_change` with each
    /// new value. A missing section decodes as an empty map, so `#[serde(default)]` fields work.
    /// An update whose section does not decode is rejected before it is applied, so `on_change`
    /// only ever sees valid values. The binding lives as long as the `Config`.
    ///
    /// # Errors
    /// When the current section does not decode.
    pub fn bind<T, F>(&self, prefix: &str, on_change: F) -> Result<Property<T>, ConfigError>
    where
        T: DeserializeOwned + PartialEq + Send + Sync + 'static,
        F: Fn(&T) + Send + Sync + 'static,
    {
        self.bind_validated(prefix, |_| Ok(()), on_change)
    }

    /// Like [`bind`](Config::bind), with a validation run on each decoded candidate (for example a
    /// middleware config's own `validate`); a message from it rejects the update.
    ///
    /// # Errors
    /// When the current section does not decode or does not validate.
    pub fn bind_validated<T, V, F>(
        &self,
        prefix: &str,
        validate: V,
        on_change: F,
    ) -> Result<Property<T>, ConfigError>
    where
        T: DeserializeOwned + PartialEq + Send + Sync + 'static,
        V: Fn(&T) -> Result<(), String> + Send + Sync + 'static,
        F: Fn(&T) + Send + Sync + 'static,
    {
        let prefix = prefix.to_owned();
        let decoder: Decoder<T> = Arc::new(move |tree| {
            let v = value::lookup(tree, &prefix).unwrap_or(&Value::Null);
            let t: T = decode_at(&prefix, v)?;
            validate(&t).map_err(|m| ConfigError::invalid(prefix.clone(), m))?;
            Ok(t)
        });
        let prop = register(&self.inner, decoder, true)?;
        prop.subscribe(on_change);
        Ok(prop)
    }

    /// A receiver of every update attempt (applied, unchanged or rejected with its error).
    pub fn events(&self) -> broadcast::Receiver<ConfigEvent> {
        self.inner.events.subscribe()
    }

    /// A receiver of the snapshot version, changed after each applied update.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.version.subscribe()
    }

    /// Sets a runtime override (the highest layer) at a dotted key.
    ///
    /// # Errors
    /// When the new configuration is rejected; the override is then not kept.
    pub fn set_override(
        &self,
        key: &str,
        v: impl Into<Value>,
    ) -> Result<UpdateOutcome, ConfigError> {
        if value::segments(key).is_none_or(|s| s.is_empty()) {
            return Err(ConfigError::invalid(key.to_owned(), "malformed key".into())
                .with_source("override"));
        }
        let v = v.into();
        self.update_overrides(|o| {
            o.retain(|(k, _)| k != key);
            o.push((key.to_owned(), v));
        })
    }

    /// Removes a runtime override.
    ///
    /// # Errors
    /// When the configuration without it is rejected.
    pub fn clear_override(&self, key: &str) -> Result<UpdateOutcome, ConfigError> {
        self.update_overrides(|o| o.retain(|(k, _)| k != key))
    }

    fn update_overrides(
        &self,
        change: impl FnOnce(&mut Vec<(String, Value)>),
    ) -> Result<UpdateOutcome, ConfigError> {
        let mut overrides = lock(&self.inner.state).overrides.clone();
        change(&mut overrides);
        let tree = value::unflatten(overrides.iter().map(|(k, v)| (k.as_str(), v)));
        let layer = Layer {
            kind: SourceKind::Override,
            name: "override".into(),
            tree,
            text: None,
        };
        self.apply(layer, Some(overrides))
    }

    /// Re-reads every file now (the file watcher calls this per changed file). Each file is its
    /// own update.
    ///
    /// # Errors
    /// The first file whose update was rejected (the others are still applied).
    pub fn reload_files(&self) -> Result<(), ConfigError> {
        let mut first = None;
        for i in 0..self.inner.files.len() {
            if let Err(e) = self.reload_file(i) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    pub(crate) fn reload_file(&self, index: usize) -> Result<UpdateOutcome, ConfigError> {
        let spec = &self.inner.files[index];
        match read_file(spec) {
            Ok(layer) => self.apply(layer, None),
            Err(e) => {
                self.report_rejected(
                    SourceKind::File,
                    &spec.path.display().to_string(),
                    e.clone(),
                );
                Err(e)
            }
        }
    }

    /// Re-reads the environment variables.
    ///
    /// # Errors
    /// When the new configuration is rejected.
    pub fn reload_env(&self) -> Result<UpdateOutcome, ConfigError> {
        match &self.inner.env {
            Some(spec) => self.apply(env_layer(spec), None),
            None => Ok(UpdateOutcome::Unchanged),
        }
    }

    /// Replaces the layer named `name` of the given kind with `tree` (adding it if new), through
    /// the same validation as every update. This is how the remote source and custom sources feed
    /// the configuration.
    ///
    /// # Errors
    /// When the new configuration is rejected; the layer then keeps its last good tree.
    pub fn apply_source(
        &self,
        kind: SourceKind,
        name: &str,
        tree: Value,
    ) -> Result<UpdateOutcome, ConfigError> {
        self.apply(
            Layer {
                kind,
                name: name.to_owned(),
                tree,
                text: None,
            },
            None,
        )
    }

    pub(crate) fn report_rejected(&self, kind: SourceKind, name: &str, err: ConfigError) {
        tracing::warn!(source = name, error = %err, "configuration update rejected, keeping the last good one");
        record(kind, "rejected");
        let _ = self.inner.events.send(ConfigEvent {
            kind,
            source: name.to_owned(),
            outcome: UpdateOutcome::Rejected(err),
        });
    }

    fn apply(
        &self,
        layer: Layer,
        overrides: Option<Vec<(String, Value)>>,
    ) -> Result<UpdateOutcome, ConfigError> {
        let kind = layer.kind;
        let name = layer.name.clone();
        let mut state = lock(&self.inner.state);
        let pos = state
            .layers
            .iter()
            .position(|l| l.kind == layer.kind && l.name == layer.name);
        let insert_at = state.layers.partition_point(|l| l.kind <= layer.kind);
        // The candidate list: the layer replaced in place, or inserted after its kind's layers.
        let candidate: Vec<&Layer> = {
            let mut v: Vec<&Layer> = Vec::with_capacity(state.layers.len() + 1);
            for (i, l) in state.layers.iter().enumerate() {
                if Some(i) == pos {
                    v.push(&layer);
                } else {
                    if pos.is_none() && i == insert_at {
                        v.push(&layer);
                    }
                    v.push(l);
                }
            }
            if pos.is_none() && insert_at == state.layers.len() {
                v.push(&layer);
            }
            v
        };
        let merged = merge_layers(candidate.iter().copied());
        let checked = placeholder::resolve(&merged).and_then(|tree| {
            let current = self.inner.current.load();
            if tree == current.tree {
                return Ok(None);
            }
            let mut staged = Vec::new();
            for c in state.cells.iter().filter_map(CellRef::get) {
                if let Some(s) = c.stage(&tree)? {
                    staged.push(s);
                }
            }
            Ok(Some((tree, staged)))
        });
        let checked = match checked {
            Ok(c) => c,
            Err(e) => {
                let e = locate(e, candidate.iter().copied());
                drop(state);
                self.report_rejected(kind, &name, e.clone());
                return Err(e);
            }
        };
        match pos {
            Some(i) => state.layers[i] = layer,
            None => state.layers.insert(insert_at, layer),
        }
        if let Some(o) = overrides {
            state.overrides = o;
        }
        let Some((tree, staged)) = checked else {
            drop(state);
            record(kind, "unchanged");
            let _ = self.inner.events.send(ConfigEvent {
                kind,
                source: name,
                outcome: UpdateOutcome::Unchanged,
            });
            return Ok(UpdateOutcome::Unchanged);
        };
        let version = self.inner.current.load().version + 1;
        self.inner
            .current
            .store(Arc::new(Snapshot { version, tree }));
        for s in &staged {
            s.commit();
        }
        let order = lock(&self.inner.notify);
        drop(state);
        tracing::info!(source = %name, version, "configuration updated");
        record(kind, "applied");
        self.inner.version.send_replace(version);
        for s in &staged {
            s.notify();
        }
        let outcome = UpdateOutcome::Applied { version };
        let _ = self.inner.events.send(ConfigEvent {
            kind,
            source: name,
            outcome: outcome.clone(),
        });
        drop(order);
        Ok(outcome)
    }
}

#[cfg(feature = "metrics")]
fn record(kind: SourceKind, result: &'static str) {
    metrics::counter!("palisade_dynconfig_updates_total", "source" => kind.as_str(), "result" => result)
        .increment(1);
}

#[cfg(not(feature = "metrics"))]
fn record(_kind: SourceKind, _result: &'static str) {}
