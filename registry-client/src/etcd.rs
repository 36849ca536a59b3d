//! A second discovery backend on etcd v3 (feature `etcd`), through etcd's JSON gateway
//! (`/v3/kv/*`, `/v3/lease/*`), so it needs no gRPC stack.
//!
//! Each instance is a key `{prefix}{APP}/{id}` whose value is the instance in Eureka's JSON form,
//! attached to a lease: the registration keeps the lease alive, and when the process dies the lease
//! expires and etcd deletes the key, so liveness needs no server-side eviction. Reading lists the
//! prefix (polling with [`EtcdRegistry::spawn_refresh`], or following an etcd watch with
//! [`EtcdRegistry::spawn_watch`]) into an [`Applications`] cache that keeps serving when etcd is
//! unreachable, with the same [`EndpointDiscover`] streams as the Eureka client.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{ClientError, base64, base64_decode, client_error};
use crate::discover::{EndpointDiscover, Selector};
use crate::json as wire;
use crate::model::{Application, Applications, InstanceInfo};

/// Settings of the etcd backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EtcdConfig {
    /// etcd client URLs (`http://127.0.0.1:2379`), tried in order until one answers.
    pub endpoints: Vec<String>,
    /// Key prefix of the registry (default `/palisade/registry/`).
    pub prefix: String,
    /// Lease TTL: how long an instance outlives its last keep-alive (default 30 s).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often [`EtcdRegistry::spawn_refresh`] lists the registry (default 5 s).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Timeout of one request (default 5 s).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/palisade/registry/".into(),
            lease_ttl: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }
}

struct Inner {
    http: Client<HttpConnector, Full<Bytes>>,
    config: EtcdConfig,
    preferred: AtomicUsize,
    cache: watch::Sender<Arc<Applications>>,
}

/// A registry on etcd. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct EtcdRegistry {
    inner: Arc<Inner>,
}

impl fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("endpoints", &self.inner.config.endpoints)
            .field("prefix", &self.inner.config.prefix)
            .finish_non_exhaustive()
    }
}

/// The key right after every key that starts with `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn int_field(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// Decodes one key-value of the registry; `None` (logged) for a foreign or corrupt entry, which
/// must not hide the rest of the registry.
fn decode_kv(kv: &Value) -> Option<(String, InstanceInfo)> {
    let key = String::from_utf8(base64_decode(kv.get("key")?.as_str()?)?).ok()?;
    let value = base64_decode(kv.get("value")?.as_str()?)?;
    match wire::decode_instance(&value) {
        Ok(inst) => Some((key, inst)),
        Err(e) => {
            tracing::debug!(key = %key, error = %e, "skipping an undecodable etcd registry entry");
            None
        }
    }
}

fn apps_from_entries(entries: &BTreeMap<String, InstanceInfo>, revision: i64) -> Applications {
    let mut apps: Vec<Application> = Vec::new();
    for inst in entries.values() {
        match apps.iter_mut().find(|a| a.name == inst.app) {
            Some(a) => a.instances.push(inst.clone()),
            None => apps.push(Application {
                name: inst.app.clone(),
                instances: vec![inst.clone()],
            }),
        }
    }
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Applications {
        versions_delta: revision.to_string(),
        apps_hashcode: String::new(),
        applications: apps,
    };
    out.apps_hashcode = out.compute_hashcode();
    out
}

impl EtcdRegistry {
    /// A registry on `config.endpoints`.
    pub fn new(config: EtcdConfig) -> Result<Self, ClientError> {
        if config.endpoints.is_empty() {
            return Err(client_error::config("no etcd endpoint"));
        }
        if config.lease_ttl < Duration::from_secs(1)
            || config.refresh_interval.is_zero()
            || config.request_timeout.is_zero()
        {
            return Err(client_error::config(
                "lease_ttl must be at least 1 s; intervals and timeouts positive",
            ));
        }
        if !config.prefix.ends_with('/') {
            return Err(client_error::config("the etcd prefix must end with '/'"));
        }
        let (cache, _) = watch::channel(Arc::new(Applications::default()));
        Ok(EtcdRegistry {
            inner: Arc::new(Inner {
                http: Client::builder(TokioExecutor::new()).build_http(),
                config,
                preferred: AtomicUsize::new(0),
                cache,
            }),
        })
    }

    async fn call(&self, path: &str, body: Value) -> Result<Value, ClientError> {
        let eps = &self.inner.config.endpoints;
        let start = self.inner.preferred.load(Ordering::Relaxed) % eps.len();
        let mut last = String::new();
        for k in 0..eps.len() {
            let idx = (start + k) % eps.len();
            let uri = format!("{}{path}", eps[idx].trim_end_matches('/'));
            let req = Request::builder()
                .method(Method::POST)
                .uri(&uri)
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| client_error::config(format!("bad etcd URL {uri:?}: {e}")))?;
            let fut = async {
                let res = self
                    .inner
                    .http
                    .request(req)
                    .await
                    .map_err(|e| e.to_string())?;
                let status = res.status();
                let bytes = res
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                Ok::<_, String>((status, bytes))
            };
            match tokio::time::timeout(self.inner.config.request_timeout, fut).await {
                Ok(Ok((status, bytes))) if status.is_success() => {
                    self.inner.preferred.store(idx, Ordering::Relaxed);
                    // Streaming endpoints (keep-alive) answer one JSON object per line.
                    let first = bytes.split(|b| *b == b'\n').next().unwrap_or(&[]);
                    return serde_json::from_slice(first).map_err(|e| {
                        client_error::decode(format!("etcd answered invalid JSON: {e}"))
                    });
                }
                Ok(Ok((status, bytes))) if status.is_client_error() => {
                    return Err(client_error::status(status, &bytes));
                }
                Ok(Ok((status, _))) => last = format!("{uri}: {status}"),
                Ok(Err(e)) => last = format!("{uri}: {e}"),
                Err(_) => last = format!("{uri}: timed out"),
            }
        }
        Err(client_error::unavailable(last))
    }

    fn key(&self, inst: &InstanceInfo) -> String {
        format!(
            "{}{}/{}",
            self.inner.config.prefix,
            inst.app.to_ascii_uppercase(),
            inst.id()
        )
    }

    /// Registers `instance` under a new lease and keeps the lease alive in the background
    /// (every third of the TTL) until [`EtcdRegistration::shutdown`].
    pub async fn register(
        &self,
        mut instance: InstanceInfo,
    ) -> Result<EtcdRegistration, ClientError> {
        instance.app = instance.app.to_ascii_uppercase();
        if let Err(reason) = instance.validate_for_registration() {
            return Err(client_error::config(reason));
        }
        let ttl = self.inner.config.lease_ttl.as_secs();
        let grant = self.call("/v3/lease/grant", json!({ "TTL": ttl })).await?;
        let lease = int_field(&grant, "ID")
            .ok_or_else(|| client_error::decode("etcd lease grant without ID"))?;
        let key = self.key(&instance);
        self.call(
            "/v3/kv/put",
            json!({
                "key": base64(key.as_bytes()),
                "value": base64(&wire::encode_instance(&instance)),
                "lease": lease.to_string(),
            }),
        )
        .await?;
        tracing::info!(key = %key, lease, "registered in etcd");
        let this = self.clone();
        let every = self.inner.config.lease_ttl / 3;
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = this.keep_alive(lease).await {
                    tracing::debug!(lease, error = %e, "etcd keep-alive failed");
                }
            }
        });
        Ok(EtcdRegistration {
            registry: self.clone(),
            lease,
            key,
            task,
        })
    }

    async fn keep_alive(&self, lease: i64) -> Result<(), ClientError> {
        let res = self
            .call("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
            .await?;
        let ttl = res
            .get("result")
            .and_then(|r| int_field(r, "TTL"))
            .unwrap_or(0);
        if ttl <= 0 {
            return Err(client_error::decode("etcd lease expired"));
        }
        Ok(())
    }

    /// Lists the registry from etcd.
    pub async fn fetch(&self) -> Result<Applications, ClientError> {
        let (entries, revision) = self.fetch_entries().await?;
        Ok(apps_from_entries(&entries, revision))
    }

    /// Every registry key with its instance, and the store revision of the listing.
    async fn fetch_entries(&self) -> Result<(BTreeMap<String, InstanceInfo>, i64), ClientError> {
        let prefix = self.inner.config.prefix.as_bytes();
        let res = self
            .call(
                "/v3/kv/range",
                json!({ "key": base64(prefix), "range_end": base64(&prefix_end(prefix)) }),
            )
            .await?;
        let mut entries = BTreeMap::new();
        for kv in res
            .get("kvs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some((key, inst)) = decode_kv(kv) {
                entries.insert(key, inst);
            }
        }
        let revision = res
            .get("header")
            .and_then(|h| int_field(h, "revision"))
            .unwrap_or(0);
        Ok((entries, revision))
    }

    fn publish(&self, apps: Applications) {
        self.inner.cache.send_if_modified(|current| {
            // The revision moves with unrelated writes; compare the content only.
            if current.applications == apps.applications {
                false
            } else {
                *current = Arc::new(apps);
                true
            }
        });
    }

    /// Fetches and publishes to the local cache; on error the cache keeps the last registry.
    pub async fn refresh(&self) -> Result<(), ClientError> {
        let apps = self.fetch().await?;
        self.publish(apps);
        Ok(())
    }

    /// Follows the registry through an etcd watch instead of polling: a listing, then every
    /// change as etcd reports it, published to the cache at once. When the stream breaks (etcd
    /// restarted, revision compacted) it lists and watches again after `refresh_interval`; the
    /// cache keeps serving meanwhile.
    pub fn spawn_watch(&self) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = this.watch_once().await {
                    tracing::debug!(error = %e, "etcd watch ended; listing and watching again");
                }
                tokio::time::sleep(this.inner.config.refresh_interval).await;
            }
        })
    }

    async fn watch_once(&self) -> Result<(), ClientError> {
        let (mut entries, revision) = self.fetch_entries().await?;
        self.publish(apps_from_entries(&entries, revision));
        let eps = &self.inner.config.endpoints;
        let ep = &eps[self.inner.preferred.load(Ordering::Relaxed) % eps.len()];
        let prefix = self.inner.config.prefix.as_bytes();
        let body = json!({ "create_request": {
            "key": base64(prefix),
            "range_end": base64(&prefix_end(prefix)),
            "start_revision": (revision + 1).to_string(),
        }});
        let uri = format!("{}/v3/watch", ep.trim_end_matches('/'));
        let req = Request::builder()
            .method(Method::POST)
            .uri(&uri)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| client_error::config(format!("bad etcd URL {uri:?}: {e}")))?;
        let res = tokio::time::timeout(
            self.inner.config.request_timeout,
            self.inner.http.request(req),
        )
        .await
        .map_err(|_| client_error::unavailable(format!("{uri}: timed out")))?
        .map_err(|e| client_error::unavailable(format!("{uri}: {e}")))?;
        if !res.status().is_success() {
            return Err(client_error::status(res.status(), b""));
        }
        let mut body = res.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| client_error::unavailable(format!("{uri}: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            // The gateway writes one JSON message per line.
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let msg: Value = serde_json::from_slice(&line).map_err(|e| {
                    client_error::decode(format!("etcd watch sent invalid JSON: {e}"))
                })?;
                let Some(result) = msg.get("result") else {
                    return Err(client_error::unavailable(format!(
                        "etcd watch failed: {msg}"
                    )));
                };
                if result.get("canceled").and_then(Value::as_bool) == Some(true) {
                    return Err(client_error::unavailable(format!(
                        "etcd canceled the watch: {result}"
                    )));
                }
                let events = result.get("events").and_then(Value::as_array);
                if events.is_none_or(|e| e.is_empty()) {
                    continue;
                }
                for ev in events.into_iter().flatten() {
                    let Some(kv) = ev.get("kv") else { continue };
                    if ev.get("type").and_then(Value::as_str) == Some("DELETE") {
                        if let Some(key) = kv
                            .get("key")
                            .and_then(Value::as_str)
                            .and_then(base64_decode)
                            .and_then(|k| String::from_utf8(k).ok())
                        {
                            entries.remove(&key);
                        }
                    } else if let Some((key, inst)) = decode_kv(kv) {
                        entries.insert(key, inst);
                    }
                }
                let rev = result
                    .get("header")
                    .and_then(|h| int_field(h, "revision"))
                    .unwrap_or(revision);
                self.publish(apps_from_entries(&entries, rev));
            }
        }
        Err(client_error::unavailable(format!(
            "{uri}: watch stream ended"
        )))
    }

    /// The local cache.
    pub fn applications(&self) -> Arc<Applications> {
        self.inner.cache.borrow().clone()
    }

    /// Refreshes every `refresh_interval` until the handle is aborted.
    pub fn spawn_refresh(&self) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.inner.config.refresh_interval);
            loop {
                tick.tick().await;
                if let Err(e) = this.refresh().await {
                    tracing::debug!(error = %e, "etcd refresh failed; serving the cached registry");
                }
            }
        })
    }

    /// A `tower::discover::Discover` stream of the `UP` instances of application `app`.
    pub fn discover_app(&self, app: &str) -> EndpointDiscover {
        EndpointDiscover::new(
            self.inner.cache.subscribe(),
            Selector::App(app.to_ascii_uppercase()),
        )
    }

    /// A `tower::discover::Discover` stream of the `UP` instances with VIP address `vip`.
    pub fn discover_vip(&self, vip: &str) -> EndpointDiscover {
        EndpointDiscover::new(self.inner.cache.subscribe(), Selector::Vip(vip.to_owned()))
    }
}

/// An instance registered in etcd, kept alive by its lease.
pub struct EtcdRegistration {
    registry: EtcdRegistry,
    lease: i64,
    key: String,
    task: JoinHandle<()>,
}

impl fmt::Debug for EtcdRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistration")
            .field("key", &self.key)
            .field("lease", &self.lease)
            .finish()
    }
}

impl EtcdRegistration {
    /// The lease id.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// Renews the lease now; fails if it already expired.
    pub async fn keep_alive(&self) -> Result<(), ClientError> {
        self.registry.keep_alive(self.lease).await
    }

    /// Stops the keep-alives without deleting the key: the instance disappears when the lease
    /// expires, as if the process had died.
    pub fn abandon(self) {
        self.task.abort();
    }

    /// Revokes the lease, which deletes the key at once.
    pub async fn shutdown(self) -> Result<(), ClientError> {
        self.task.abort();
        self.registry
            .call("/v3/lease/revoke", json!({ "ID": self.lease.to_string() }))
            .await
            .map(|_| ())
    }
}

impl Drop for EtcdRegistration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bumps_the_last_byte() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }

    #[test]
    fn config_is_validated() {
        assert!(EtcdRegistry::new(EtcdConfig::default()).is_ok());
        let bad = EtcdConfig {
            prefix: "/no-slash".into(),
            ..Default::default()
        };
        assert!(EtcdRegistry::new(bad).unwrap_err().is_config());
        let bad = EtcdConfig {
            endpoints: vec![],
            ..Default::default()
        };
        assert!(EtcdRegistry::new(bad).unwrap_err().is_config());
    }
}
