//! Peer replication: every client write is sent to the other servers of the cluster through
//! `POST {peer}/peerreplication/batch/` (batches of at most 250 tasks, at most 500 ms late, one
//! heartbeat per instance per batch), and a starting server pulls the registry from a peer.
//!
//! Answers are handled as in Java: a heartbeat the peer does not know (404) is followed by a
//! register with our copy; a 409 carries the peer's newer copy, which we adopt. A batch that
//! cannot be delivered (peer down, timeout) is retried every `retry_backoff` for `task_expiry`,
//! heartbeats excepted (the next one replaces them); after that the tasks are dropped, and the
//! peer catches up through the 404-then-register path or its start-up pull.

use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use palisade_registry_client::model::{InstanceInfo, InstanceStatus};
use palisade_registry_client::{ClientConfig, RegistryClient, ServiceUrl, json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::http::{REPLICATION_HEADER, Shared};

/// A replicated action, as Java names it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Register,
    Heartbeat,
    Cancel,
    StatusUpdate,
    DeleteStatusOverride,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Register => "Register",
            Action::Heartbeat => "Heartbeat",
            Action::Cancel => "Cancel",
            Action::StatusUpdate => "StatusUpdate",
            Action::DeleteStatusOverride => "DeleteStatusOverride",
        }
    }
}

/// One write to replicate.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub(crate) action: Action,
    pub(crate) app: String,
    pub(crate) id: String,
    /// Our copy after the write (absent for a cancel).
    pub(crate) info: Option<InstanceInfo>,
    /// For `DeleteStatusOverride`: the status set after removal.
    pub(crate) status: Option<InstanceStatus>,
}

impl Task {
    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("appName".into(), Value::String(self.app.clone()));
        m.insert("id".into(), Value::String(self.id.clone()));
        m.insert("action".into(), Value::String(self.action.as_str().into()));
        if let Some(i) = &self.info {
            m.insert(
                "lastDirtyTimestamp".into(),
                Value::from(i.last_dirty_timestamp),
            );
            m.insert(
                "overriddenStatus".into(),
                Value::String(i.overridden_status.as_str().into()),
            );
            m.insert("status".into(), Value::String(i.status.as_str().into()));
            if self.action == Action::Register {
                let v: Value = serde_json::from_slice(&json::encode_instance_object(i))
                    .expect("our encoder writes valid JSON");
                m.insert("instanceInfo".into(), v);
            }
        }
        if let Some(s) = self.status {
            m.insert("status".into(), Value::String(s.as_str().into()));
        }
        Value::Object(m)
    }
}

/// Replication settings (part of [`crate::ServerConfig`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerConfig {
    /// Base URLs of the other servers, e.g. `http://10.0.0.2:8761/eureka/`. Empty: standalone.
    pub peer_urls: Vec<String>,
    /// Tasks per batch (default 250).
    pub batch_size: usize,
    /// Longest a task waits for its batch (default 500 ms).
    #[serde(with = "humantime_serde")]
    pub max_batch_delay: Duration,
    /// Timeout of one replication request (default 5 s).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Wait before re-sending a batch that could not be delivered (default 1 s).
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// How long an undeliverable task keeps being retried (default 30 s, a renewal interval).
    #[serde(with = "humantime_serde")]
    pub task_expiry: Duration,
    /// Start-up pulls tried while they return no instance (default 5).
    pub sync_retries: u32,
    /// Wait between start-up pulls (default 30 s).
    #[serde(with = "humantime_serde")]
    pub sync_retry_wait: Duration,
    /// After a start-up pull that found nothing, `GET apps` answers 403 for this long
    /// (default 5 min, like Java's `waitTimeInMsWhenSyncEmpty`).
    #[serde(with = "humantime_serde")]
    pub wait_time_when_sync_empty: Duration,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            peer_urls: Vec::new(),
            batch_size: 250,
            max_batch_delay: Duration::from_millis(500),
            request_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_secs(1),
            task_expiry: Duration::from_secs(30),
            sync_retries: 5,
            sync_retry_wait: Duration::from_secs(30),
            wait_time_when_sync_empty: Duration::from_secs(300),
        }
    }
}

/// The senders to each peer's batching worker; the peer set can change at run time.
pub(crate) struct Replicator {
    peers: std::sync::Mutex<Vec<(String, mpsc::UnboundedSender<Task>)>>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Replicator {
    /// A replicator with no peer.
    pub(crate) fn new() -> Self {
        Replicator {
            peers: std::sync::Mutex::new(Vec::new()),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, Vec<(String, mpsc::UnboundedSender<Task>)>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether there is any peer to replicate to.
    pub(crate) fn has_peers(&self) -> bool {
        !self.peers().is_empty()
    }

    /// The peer URLs in force.
    pub(crate) fn peer_urls(&self) -> Vec<String> {
        self.peers().iter().map(|(u, _)| u.clone()).collect()
    }

    /// Replaces the peer set: a batching worker starts for each new URL; a removed peer's worker
    /// stops once its queue and retries are done. Must run inside a Tokio runtime.
    pub(crate) fn set_peers(&self, shared: Weak<Shared>, config: &PeerConfig, urls: &[String]) {
        let mut peers = self.peers();
        peers.retain(|(u, _)| urls.contains(u));
        for url in urls {
            if peers.iter().any(|(u, _)| u == url) {
                continue;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let (base, auth) = match palisade_registry_client::split_credentials(url) {
                Ok(v) => v,
                Err(e) => {
                    tracing::info!(peer = %url, error = %e, "unusable peer URL; not replicating to it");
                    continue;
                }
            };
            tokio::spawn(peer_worker(
                base,
                auth,
                rx,
                tx.downgrade(),
                shared.clone(),
                self.http.clone(),
                config.clone(),
            ));
            tracing::info!(peer = %url, "replicating to a new peer");
            peers.push((url.clone(), tx));
        }
    }

    /// Queues `task` for every peer.
    pub(crate) fn replicate(&self, task: Task) {
        for (_, p) in self.peers().iter() {
            let _ = p.send(task.clone());
        }
    }
}

async fn peer_worker(
    base: String,
    auth: Option<http::HeaderValue>,
    mut rx: mpsc::UnboundedReceiver<Task>,
    requeue: mpsc::WeakUnboundedSender<Task>,
    shared: Weak<Shared>,
    http: Client<HttpConnector, Full<Bytes>>,
    config: PeerConfig,
) {
    let url = format!("{base}/peerreplication/batch/");
    // Tasks of undelivered batches, with the time of their first failure.
    let mut retry: std::collections::VecDeque<(tokio::time::Instant, Task)> =
        std::collections::VecDeque::new();
    loop {
        let now = tokio::time::Instant::now();
        let before = retry.len();
        retry.retain(|(failed, _)| now.saturating_duration_since(*failed) <= config.task_expiry);
        if retry.len() < before {
            tracing::debug!(peer = %base, dropped = before - retry.len(), "replication tasks expired undelivered");
        }
        let mut batch: Vec<(Option<tokio::time::Instant>, Task)> = Vec::new();
        while batch.len() < config.batch_size {
            match retry.pop_front() {
                Some((failed, t)) => batch.push((Some(failed), t)),
                None => break,
            }
        }
        if batch.is_empty() {
            match rx.recv().await {
                Some(t) => batch.push((None, t)),
                None => return,
            }
        }
        let deadline = tokio::time::Instant::now() + config.max_batch_delay;
        while batch.len() < config.batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(t)) => batch.push((None, t)),
                Ok(None) | Err(_) => break,
            }
        }
        // One heartbeat per instance per batch: keep the last.
        let mut seen = std::collections::HashSet::new();
        let mut deduped: Vec<(Option<tokio::time::Instant>, Task)> = batch
            .into_iter()
            .rev()
            .filter(|(_, t)| {
                t.action != Action::Heartbeat || seen.insert((t.app.clone(), t.id.clone()))
            })
            .collect();
        deduped.reverse();
        let body = serde_json::json!({
            "replicationList": deduped.iter().map(|(_, t)| t.to_json()).collect::<Vec<_>>()
        });
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header(CONTENT_TYPE, "application/json")
            .header(REPLICATION_HEADER, "true");
        if let Some(a) = &auth {
            req = req.header(http::header::AUTHORIZATION, a.clone());
        }
        let req = req.body(Full::new(Bytes::from(body.to_string())));
        let Ok(req) = req else {
            tracing::info!(peer = %base, "bad peer URL; dropping replication batch");
            continue;
        };
        let sent = tokio::time::timeout(config.request_timeout, async {
            let res = http.request(req).await.map_err(|e| e.to_string())?;
            let status = res.status();
            let bytes = res
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("peer answered {status}"));
            }
            serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string())
        })
        .await;
        let answer = match sent {
            Ok(Ok(v)) => v,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e,
                    _ => "timed out".to_owned(),
                };
                tracing::debug!(peer = %base, error = %error, tasks = deduped.len(), "replication batch failed; will retry");
                let now = tokio::time::Instant::now();
                for (first_failure, task) in deduped {
                    if task.action != Action::Heartbeat {
                        retry.push_back((first_failure.unwrap_or(now), task));
                    }
                }
                tokio::time::sleep(config.retry_backoff).await;
                continue;
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let responses = answer
            .get("responseList")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for ((_, task), res) in deduped.iter().zip(responses.iter()) {
            let code = res.get("statusCode").and_then(Value::as_u64).unwrap_or(0);
            match (task.action, code) {
                (Action::Heartbeat, 404) => {
                    // The peer does not know the instance: send it our registration.
                    let ours = shared.registry().instance(&task.app, &task.id);
                    if let (Some(info), Some(tx)) = (ours, requeue.upgrade()) {
                        let _ = tx.send(Task {
                            action: Action::Register,
                            app: task.app.clone(),
                            id: task.id.clone(),
                            info: Some(info),
                            status: None,
                        });
                    }
                }
                (Action::Heartbeat, 409) => {
                    // The peer holds a newer copy: adopt it.
                    if let Some(entity) = res.get("responseEntity").filter(|v| !v.is_null())
                        && let Ok(mut info) = json::instance_from_json_value(entity)
                    {
                        info.app = info.app.to_ascii_uppercase();
                        shared.registry().register(info, true);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Pulls the registry from the peers (retrying while it comes back empty) and registers every
/// instance as a replicated registration. Returns how many instances it got.
pub(crate) async fn sync_from_peers(shared: &Shared, config: &PeerConfig) -> usize {
    let client = match RegistryClient::new(ClientConfig {
        service_urls: config.peer_urls.iter().map(ServiceUrl::new).collect(),
        request_timeout: config.request_timeout,
        ..Default::default()
    }) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(error = %e, "cannot sync from peers");
            return 0;
        }
    };
    let mut count = 0;
    for attempt in 0..config.sync_retries {
        if attempt > 0 {
            tokio::time::sleep(config.sync_retry_wait).await;
        }
        match client.fetch_full().await {
            Ok(apps) => {
                let mut reg = shared.registry();
                for inst in apps.instances() {
                    let mut info = inst.clone();
                    info.app = info.app.to_ascii_uppercase();
                    if info.validate_for_registration().is_ok() {
                        reg.register(info, true);
                        count += 1;
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, attempt, "start-up sync from peers failed"),
        }
        if count > 0 {
            break;
        }
    }
    tracing::info!(instances = count, "start-up sync from peers done");
    count
}
