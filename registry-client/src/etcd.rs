//! A second discovery backend on etcd v3 (feature `etcd`), through etcd's JSON gateway
//! (`/v3/kv/*`, `/v3/lease/*`), so it needs no gRPC stack.
//!
//! Each instance is a key `{prefix}{APP}/{id}` whose value is the instance in Eureka's JSON form,
//! attached to a lease: the registration keeps the lease alive, and when the process dies the lease
//! expires and etcd deletes the key, so liveness needs no server-side eviction. Reading lists the
//! prefix into an [`Applications`] cache that keeps serving when etcd is unreachable, with the same
//! [`EndpointDiscover`] streams as the Eureka client.

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
        let prefix = self.inner.config.prefix.as_bytes();
        let res = self
            .call(
                "/v3/kv/range",
                json!({ "key": base64(prefix), "range_end": base64(&prefix_end(prefix)) }),
            )
            .await?;
        let mut apps: Vec<Application> = Vec::new();
        for kv in res
            .get("kvs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(value) = kv.get("value").and_then(Value::as_str) else {
                continue;
            };
            let bytes = base64_decode(value)
                .ok_or_else(|| client_error::decode("etcd value is not base64"))?;
            let inst = match wire::decode_instance(&bytes) {
                Ok(i) => i,
                Err(e) => {
                    // A foreign or corrupt key must not hide the rest of the registry.
                    tracing::debug!(error = %e, "skipping an undecodable etcd registry entry");
                    continue;
                }
            };
            match apps.iter_mut().find(|a| a.name == inst.app) {
                Some(a) => a.instances.push(inst),
                None => apps.push(Application {
                    name: inst.app.clone(),
                    instances: vec![inst],
                }),
            }
        }
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        let revision = res
            .get("header")
            .and_then(|h| int_field(h, "revision"))
            .unwrap_or(0);
        let mut out = Applications {
            versions_delta: revision.to_string(),
            apps_hashcode: String::new(),
            applications: apps,
        };
        out.apps_hashcode = out.compute_hashcode();
        Ok(out)
    }

    /// Fetches and publishes to the local cache; on error the cache keeps the last registry.
    pub async fn refresh(&self) -> Result<(), ClientError> {
        let apps = self.fetch().await?;
        self.inner.cache.send_if_modified(|current| {
            // The revision moves with every keep-alive-free write; compare the content only.
            if current.applications == apps.applications {
                false
            } else {
                *current = Arc::new(apps);
                true
            }
        });
        Ok(())
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
