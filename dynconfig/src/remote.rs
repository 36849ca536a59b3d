//! The remote source: a Spring Cloud Config compatible server (ours, or Spring's own), polled for
//! a new `version`, refreshable on demand or by a webhook, with the last known good configuration
//! persisted to disk so a restart during a server outage starts with the right values.
//!
//! The layer is built the way a Spring Boot client binds: each property source is unflattened
//! (`a.b[0]` to a tree) and sources are merged lowest first, so a list from the most specific
//! source replaces lists below it whole.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Map, Value, json};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

use crate::{Config, ConfigError, SourceKind, UpdateOutcome, value};

const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'/')
    .add(b'?')
    .add(b'#')
    .add(b'%')
    .add(b'"')
    .add(b'<')
    .add(b'>');

/// Where and how to fetch the remote configuration.
#[derive(Clone)]
pub struct RemoteOptions {
    base_url: String,
    app: String,
    profiles: Vec<String>,
    label: Option<String>,
    poll_interval: Duration,
    timeout: Duration,
    auth: Option<(String, String)>,
    cache_file: Option<PathBuf>,
}

impl std::fmt::Debug for RemoteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteOptions")
            .field("base_url", &self.base_url)
            .field("app", &self.app)
            .field("profiles", &self.profiles)
            .field("label", &self.label)
            .field("poll_interval", &self.poll_interval)
            .field("auth", &self.auth.as_ref().map(|(u, _)| u))
            .field("cache_file", &self.cache_file)
            .finish()
    }
}

impl RemoteOptions {
    /// Fetch `app` with the `default` profile from the server at `base_url` (`http://host:port`,
    /// with an optional path prefix), polling every 30 s.
    pub fn new(base_url: impl Into<String>, app: impl Into<String>) -> Self {
        RemoteOptions {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            app: app.into(),
            profiles: vec!["default".into()],
            label: None,
            poll_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            auth: None,
            cache_file: None,
        }
    }
    /// The profiles, the last one wins.
    pub fn profiles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, profiles: I) -> Self {
        self.profiles = profiles.into_iter().map(Into::into).collect();
        self
    }
    /// The label (branch, tag or commit); `/` in it is sent as `(_)`.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
    /// How often to poll for a new version.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }
    /// How long one fetch may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// HTTP basic auth credentials.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some((user.into(), password.into()));
        self
    }
    /// Where to persist the last known good configuration (written atomically after each
    /// accepted fetch, read at start when the server cannot be reached).
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_file = Some(path.into());
        self
    }

    fn url(&self) -> String {
        let enc = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
        let profiles: Vec<String> = self.profiles.iter().map(|p| enc(p)).collect();
        let mut url = format!(
            "{}/{}/{}",
            self.base_url,
            enc(&self.app),
            profiles.join(",")
        );
        if let Some(l) = &self.label {
            url.push('/');
            url.push_str(&enc(&l.replace('/', "(_)")));
        }
        url
    }
}

/// A fetched environment, reduced to what the layer needs.
#[derive(Debug, Clone, PartialEq)]
struct Fetched {
    version: Option<String>,
    tree: Value,
}

/// Turns a Spring `Environment` JSON document into a tree (see the module docs).
fn environment_tree(env: &Value) -> Result<Fetched, String> {
    let sources = env
        .get("propertySources")
        .and_then(Value::as_array)
        .ok_or("the response has no propertySources list")?;
    let mut tree = Value::Object(Map::new());
    for s in sources.iter().rev() {
        let source = s
            .get("source")
            .and_then(Value::as_object)
            .ok_or("a property source has no source map")?;
        // The v2 media type wraps each value as {"value": ..., "origin": ...}.
        let pairs: Vec<(&str, &Value)> = source
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    v.get("value")
                        .filter(|_| v.get("origin").is_some())
                        .unwrap_or(v),
                )
            })
            .collect();
        value::merge(&mut tree, &value::unflatten(pairs));
    }
    let version = env
        .get("version")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Fetched { version, tree })
}

struct Shared {
    config: Config,
    opts: RemoteOptions,
    url: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    /// The version last applied; a poll that sees the same one does nothing.
    last_version: Mutex<Option<String>>,
    wake: Notify,
}

/// Keeps a remote source polling; dropping it stops the polling (and its webhook listener).
pub struct RemoteHandle {
    shared: Arc<Shared>,
    poller: JoinHandle<()>,
    webhook: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RemoteHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteHandle")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

impl Drop for RemoteHandle {
    fn drop(&mut self) {
        self.poller.abort();
        if let Some(w) = &self.webhook {
            w.abort();
        }
    }
}

/// How the first load of a remote source went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// The server answered; its configuration is in place.
    Fetched {
        /// The version the server reported.
        version: Option<String>,
    },
    /// The server could not be reached, or what it served was rejected by the validation; the
    /// last known good configuration from the cache file is in place, and polling goes on.
    FromCache {
        /// The fetch error.
        error: ConfigError,
        /// The version of the cached configuration.
        version: Option<String>,
    },
}

impl Shared {
    async fn fetch(&self) -> Result<Fetched, ConfigError> {
        let url = &self.url;
        let uri: http::Uri = url
            .parse()
            .map_err(|e| ConfigError::remote(url, format!("bad URL: {e}")))?;
        let mut req = http::Request::get(uri).header(http::header::ACCEPT, "application/json");
        if let Some((u, p)) = &self.opts.auth {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req = req.header(http::header::AUTHORIZATION, format!("Basic {token}"));
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| ConfigError::remote(url, e.to_string()))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| ConfigError::remote(url, format!("request failed: {e}")))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ConfigError::remote(url, format!("reading the body: {e}")))?
                .to_bytes();
            if !status.is_success() {
                return Err(ConfigError::remote(url, format!("HTTP {status}")));
            }
            let env: Value = serde_json::from_slice(&body)
                .map_err(|e| ConfigError::remote(url, format!("not JSON: {e}")))?;
            environment_tree(&env).map_err(|m| ConfigError::remote(url, m))
        };
        tokio::time::timeout(self.opts.timeout, work)
            .await
            .map_err(|_| ConfigError::remote(url, "timed out"))?
    }

    /// Fetches and applies when the version changed. `force` applies even on the same version.
    async fn refresh(&self, force: bool) -> Result<UpdateOutcome, ConfigError> {
        let fetched = match self.fetch().await {
            Ok(f) => f,
            Err(e) => {
                self.config
                    .report_rejected(SourceKind::Remote, &self.url, e.clone());
                return Err(e);
            }
        };
        let mut last = self.last_version.lock().await;
        if !force && fetched.version.is_some() && *last == fetched.version {
            return Ok(UpdateOutcome::Unchanged);
        }
        let outcome =
            self.config
                .apply_source(SourceKind::Remote, &self.url, fetched.tree.clone())?;
        *last = fetched.version.clone();
        drop(last);
        // Rewrite the cache only when something changed (or on the first fetch), not on every
        // poll of a server without versions.
        let changed = force || matches!(outcome, UpdateOutcome::Applied { .. });
        if let Some(path) = self.opts.cache_file.as_ref().filter(|_| changed) {
            persist(path, &self.url, &fetched).map_err(|e| {
                tracing::warn!(error = %e, "cannot persist the last known good configuration");
                e
            })?;
        }
        Ok(outcome)
    }
}

fn persist(path: &std::path::Path, url: &str, f: &Fetched) -> Result<(), ConfigError> {
    let name = path.display().to_string();
    let doc = json!({"url": url, "version": f.version, "tree": f.tree});
    let tmp = path.with_extension("tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ConfigError::io(&name, &e))?;
    }
    std::fs::write(&tmp, doc.to_string()).map_err(|e| ConfigError::io(&name, &e))?;
    std::fs::rename(&tmp, path).map_err(|e| ConfigError::io(&name, &e))
}

fn load_cache(path: &std::path::Path) -> Result<Fetched, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(&name, &e))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| {
        ConfigError::syntax(
            &name,
            crate::format::SyntaxError {
                message: e.to_string(),
                line: Some(e.line()),
            },
        )
    })?;
    Ok(Fetched {
        version: doc
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_owned),
        tree: doc
            .get("tree")
            .cloned()
            .unwrap_or(Value::Object(Map::new())),
    })
}

impl Config {
    /// Adds a remote layer fed by a Spring Cloud Config compatible server and starts polling it.
    ///
    /// The first fetch happens now. When it fails, or what it got is rejected, and a cache file
    /// holds a last known good configuration, that is used instead ([`Startup::FromCache`]) and
    /// polling goes on.
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// The first fetch failed or was rejected, and there is no usable cache.
    pub async fn attach_remote(
        &self,
        opts: RemoteOptions,
    ) -> Result<(RemoteHandle, Startup), ConfigError> {
        let url = opts.url();
        let shared = Arc::new(Shared {
            config: self.clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            url,
            last_version: Mutex::new(None),
            wake: Notify::new(),
            opts,
        });
        let startup = match shared.refresh(true).await {
            Ok(_) => Startup::Fetched {
                version: shared.last_version.lock().await.clone(),
            },
            // Unreachable, or answering with a configuration the validation rejects: start from
            // the last known good one when there is one.
            Err(error) => {
                let Some(path) = &shared.opts.cache_file else {
                    return Err(error);
                };
                let cached = load_cache(path).map_err(|_| error.clone())?;
                self.apply_source(SourceKind::Remote, &shared.url, cached.tree)
                    .map_err(|_| error.clone())?;
                tracing::warn!(error = %error, cache = %path.display(), "starting from the last known good remote configuration");
                Startup::FromCache {
                    error,
                    version: cached.version,
                }
            }
        };
        let s = shared.clone();
        let poller = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(s.opts.poll_interval) => {}
                    () = s.wake.notified() => {}
                }
                // Errors are broadcast as events and logged by the update path.
                let _ = s.refresh(false).await;
            }
        });
        Ok((
            RemoteHandle {
                shared,
                poller,
                webhook: None,
            },
            startup,
        ))
    }
}

impl RemoteHandle {
    /// Fetches now and applies the result if the version changed.
    ///
    /// # Errors
    /// The fetch failed or the new configuration was rejected (the last good one stays).
    pub async fn refresh(&self) -> Result<UpdateOutcome, ConfigError> {
        self.shared.refresh(false).await
    }

    /// Asks the poller to fetch now, without waiting for it.
    pub fn trigger(&self) {
        self.shared.wake.notify_one();
    }

    /// The URL polled.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// Serves a webhook on `listener`: a `POST` to `/monitor` (the path of Spring's
    /// config-monitor) or `/refresh` fetches now and answers `200` with the outcome as JSON
    /// (`{"outcome":"applied","version":N}`, `"unchanged"`, or `502` with the error). Point the
    /// git server's push hook at it. The body is ignored and there is no authentication: a call
    /// can only make the source fetch from its configured server, so bind it where only the
    /// hook can reach it.
    pub fn serve_webhook(&mut self, listener: tokio::net::TcpListener) {
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let shared = shared.clone();
                            async move { Ok::<_, Infallible>(webhook(&shared, &req).await) }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        if let Some(old) = self.webhook.replace(task) {
            old.abort();
        }
    }
}

async fn webhook<B>(shared: &Shared, req: &http::Request<B>) -> http::Response<Full<Bytes>> {
    let reply = |status: u16, body: Value| {
        let mut r = http::Response::new(Full::new(Bytes::from(body.to_string())));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    };
    let path = req.uri().path();
    if req.method() != http::Method::POST || !(path == "/monitor" || path == "/refresh") {
        return reply(404, json!({"error": "POST /monitor or /refresh"}));
    }
    match shared.refresh(false).await {
        Ok(UpdateOutcome::Applied { version }) => {
            reply(200, json!({"outcome": "applied", "version": version}))
        }
        Ok(_) => reply(200, json!({"outcome": "unchanged"})),
        Err(e) => reply(502, json!({"outcome": "rejected", "error": e.to_string()})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_documents_become_trees_like_a_spring_client_binds_them() {
        let env = json!({"name": "a", "version": "abc", "propertySources": [
            {"name": "a-prod.yml", "source": {"list[0]": "c", "server.port": 9090}},
            {"name": "a.yml", "source": {"list[0]": "a", "list[1]": "b", "server.port": 8080, "x": 1}}
        ]});
        let f = environment_tree(&env).unwrap();
        assert_eq!(f.version.as_deref(), Some("abc"));
        assert_eq!(
            f.tree,
            json!({"list": ["c"], "server": {"port": 9090}, "x": 1})
        );
        let v2 = json!({"propertySources": [{"name": "n", "source": {"a": {"value": 1, "origin": "n:1"}}}]});
        assert_eq!(environment_tree(&v2).unwrap().tree, json!({"a": 1}));
        assert!(environment_tree(&json!({})).is_err());
    }

    #[test]
    fn urls_encode_segments_and_labels() {
        let o = RemoteOptions::new("http://h:1/cfg/", "orders")
            .profiles(["prod", "eu"])
            .label("feature/x y");
        assert_eq!(o.url(), "http://h:1/cfg/orders/prod,eu/feature(_)x%20y");
    }
}
