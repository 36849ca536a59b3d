//! The Eureka registry client: register, renew, cancel, status and metadata updates, full and
//! delta fetches with `apps__hashcode` reconciliation, failover across servers (same zone first),
//! basic auth, gzip, and a local cache that keeps serving the last known registry when every
//! server is down.

use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::discover::{EndpointDiscover, Selector};
use crate::error::WireError;
use crate::json;
use crate::model::{Applications, InstanceInfo, InstanceStatus};

/// Characters escaped in a path segment (ids such as `host:app:8080` keep working everywhere).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b':')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Characters escaped in a query value.
const QUERY: &AsciiSet = &SEGMENT.add(b'&').add(b'=').add(b'+');

/// One Eureka server, e.g. `http://user:pass@eureka-a:8761/eureka/` (Spring) or
/// `http://eureka-a:8761/eureka/v2/` (Netflix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceUrl {
    /// The base URL; credentials in it are sent as basic auth.
    pub url: String,
    /// The server's zone, for same-zone-first ordering.
    #[serde(default)]
    pub zone: Option<String>,
}

impl ServiceUrl {
    /// A server with no zone.
    pub fn new(url: impl Into<String>) -> Self {
        ServiceUrl {
            url: url.into(),
            zone: None,
        }
    }

    /// A server in `zone`.
    pub fn in_zone(url: impl Into<String>, zone: impl Into<String>) -> Self {
        ServiceUrl {
            url: url.into(),
            zone: Some(zone.into()),
        }
    }
}

/// Client settings, with the Java client's defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientConfig {
    /// The servers, tried in order (same zone first) until one answers.
    pub service_urls: Vec<ServiceUrl>,
    /// This client's zone.
    pub zone: Option<String>,
    /// Timeout of one HTTP request (default 5 s).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often [`RegistryClient::spawn_refresh`] fetches (default 30 s).
    #[serde(with = "humantime_serde")]
    pub registry_fetch_interval: Duration,
    /// How often a [`Registration`] heartbeats (default 30 s).
    #[serde(with = "humantime_serde")]
    pub renewal_interval: Duration,
    /// Always do full fetches (default false: full once, then deltas).
    pub disable_delta: bool,
    /// Largest response body accepted, after decompression (default 64 MiB); a larger one
    /// counts as a failed server.
    pub max_response_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            service_urls: Vec::new(),
            zone: None,
            request_timeout: Duration::from_secs(5),
            registry_fetch_interval: Duration::from_secs(30),
            renewal_interval: Duration::from_secs(30),
            disable_delta: false,
            max_response_bytes: 64 << 20,
        }
    }
}

/// Why a registry call failed.
#[derive(Debug)]
pub struct ClientError {
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    Config(String),
    Unavailable(String),
    Status(StatusCode),
    Decode(WireError),
}

impl ClientError {
    /// Every server failed (connection refused, timeout, 5xx).
    pub fn is_unavailable(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable(_))
    }

    /// A server answered with an unexpected status; see [`ClientError::status`].
    pub fn is_status(&self) -> bool {
        matches!(self.kind, ErrorKind::Status(_))
    }

    /// The status a server answered with, if that is the error.
    pub fn status(&self) -> Option<StatusCode> {
        match self.kind {
            ErrorKind::Status(s) => Some(s),
            _ => None,
        }
    }

    /// A body could not be decoded.
    pub fn is_decode(&self) -> bool {
        matches!(self.kind, ErrorKind::Decode(_))
    }

    /// The configuration is invalid.
    pub fn is_config(&self) -> bool {
        matches!(self.kind, ErrorKind::Config(_))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Config(m) => write!(f, "invalid registry client config: {m}"),
            ErrorKind::Unavailable(m) => write!(f, "no registry server available: {m}"),
            ErrorKind::Status(s) => write!(f, "registry server answered {s}"),
            ErrorKind::Decode(e) => write!(f, "undecodable registry response: {e}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Decode(e) => Some(e),
            _ => None,
        }
    }
}

fn err(kind: ErrorKind) -> ClientError {
    ClientError { kind }
}

/// Constructors for the other backends of this crate.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
pub(crate) mod client_error {
    use super::{ClientError, ErrorKind, err};
    use crate::error::WireError;

    pub(crate) fn config(m: impl Into<String>) -> ClientError {
        err(ErrorKind::Config(m.into()))
    }

    pub(crate) fn unavailable(m: impl Into<String>) -> ClientError {
        err(ErrorKind::Unavailable(m.into()))
    }

    pub(crate) fn decode(m: impl Into<String>) -> ClientError {
        err(ErrorKind::Decode(WireError::new(m.into())))
    }

    pub(crate) fn status(s: http::StatusCode, body: &[u8]) -> ClientError {
        tracing::debug!(status = %s, body = %String::from_utf8_lossy(body), "unexpected answer");
        err(ErrorKind::Status(s))
    }
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// 200.
    Renewed,
    /// 404: the server does not know the instance (or holds an older copy): re-register.
    NotFound,
}

/// What [`RegistryClient::refresh`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// A full fetch (the first one, or deltas are disabled).
    Full,
    /// A delta, applied; the hash codes matched.
    Delta,
    /// A delta whose hash code did not match after applying it, so a full fetch followed.
    FullAfterHashMismatch,
}

#[derive(Debug)]
struct Server {
    base: String,
    auth: Option<HeaderValue>,
}

struct Inner {
    http: Client<HttpConnector, Full<Bytes>>,
    servers: Vec<Server>,
    preferred: AtomicUsize,
    config: ClientConfig,
    cache: watch::Sender<Arc<Applications>>,
    fetched_once: Mutex<bool>,
}

/// A Eureka client. Cheap to clone; clones share the connection pool and the local cache.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field(
                "servers",
                &self
                    .inner
                    .servers
                    .iter()
                    .map(|s| &s.base)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

pub(crate) fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (with or without padding); `None` on a bad character.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
pub(crate) fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in input.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The `Authorization` value for HTTP basic auth (`Basic base64(user:password)`), marked
/// sensitive so it does not show in logs.
pub fn basic_auth_value(user: &str, password: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!(
        "Basic {}",
        base64(format!("{user}:{password}").as_bytes())
    ))
    .expect("base64 is a valid header value");
    v.set_sensitive(true);
    v
}

/// Splits `user:pass@` out of a service URL: returns the URL without it, with no trailing slash,
/// and the basic auth value for the credentials, if any. Only `http://` URLs are accepted.
pub fn split_credentials(url: &str) -> Result<(String, Option<HeaderValue>), ClientError> {
    let s = parse_server(url)?;
    Ok((s.base, s.auth))
}

fn parse_server(url: &str) -> Result<Server, ClientError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| err(ErrorKind::Config(format!("bad service URL {url:?}: {e}"))))?;
    if uri.scheme_str() != Some("http") {
        return Err(err(ErrorKind::Config(format!(
            "service URL {url:?} must be http:// (TLS is not supported yet)"
        ))));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| {
            err(ErrorKind::Config(format!(
                "service URL {url:?} has no host"
            )))
        })?
        .as_str();
    let (auth, host) = match authority.rsplit_once('@') {
        Some((creds, host)) => {
            let decoded = percent_encoding::percent_decode_str(creds).decode_utf8_lossy();
            let value = format!("Basic {}", base64(decoded.as_bytes()));
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| err(ErrorKind::Config("bad credentials".into())))?;
            value.set_sensitive(true);
            (Some(value), host)
        }
        None => (None, authority),
    };
    let path = uri.path().trim_end_matches('/');
    Ok(Server {
        base: format!("http://{host}{path}"),
        auth,
    })
}

impl RegistryClient {
    /// A client for `config.service_urls`, ordered same zone first.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        if config.service_urls.is_empty() {
            return Err(err(ErrorKind::Config("no service URL".into())));
        }
        if config.max_response_bytes == 0 {
            return Err(err(ErrorKind::Config(
                "max_response_bytes must be positive".into(),
            )));
        }
        if config.request_timeout.is_zero()
            || config.registry_fetch_interval.is_zero()
            || config.renewal_interval.is_zero()
        {
            return Err(err(ErrorKind::Config(
                "intervals and timeouts must be positive".into(),
            )));
        }
        let mut urls = config.service_urls.clone();
        // Stable sort: same zone first, otherwise the configured order.
        urls.sort_by_key(|u| u.zone.is_none() || u.zone != config.zone);
        let servers = urls
            .iter()
            .map(|u| parse_server(&u.url))
            .collect::<Result<Vec<_>, _>>()?;
        let http = Client::builder(TokioExecutor::new()).build_http();
        let (cache, _) = watch::channel(Arc::new(Applications::default()));
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                servers,
                preferred: AtomicUsize::new(0),
                config,
                cache,
                fetched_once: Mutex::new(false),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Sends one request, failing over across servers: a connection error, a timeout or a 5xx
    /// moves to the next server; the server that answered becomes the first one tried next time.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let n = self.inner.servers.len();
        let start = self.inner.preferred.load(Ordering::Relaxed) % n;
        let mut last = String::new();
        for k in 0..n {
            let idx = (start + k) % n;
            let server = &self.inner.servers[idx];
            let uri = format!("{}{}", server.base, path_and_query);
            let mut req = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header(ACCEPT, "application/json")
                .header(ACCEPT_ENCODING, "gzip");
            if let Some(a) = &server.auth {
                req = req.header(AUTHORIZATION, a.clone());
            }
            if body.is_some() {
                req = req.header(CONTENT_TYPE, "application/json");
            }
            let req = req
                .body(Full::new(Bytes::from(body.clone().unwrap_or_default())))
                .map_err(|e| err(ErrorKind::Config(format!("bad request URI {uri:?}: {e}"))))?;
            let fut = async {
                let res = self
                    .inner
                    .http
                    .request(req)
                    .await
                    .map_err(|e| e.to_string())?;
                let status = res.status();
                let gz = res
                    .headers()
                    .get(CONTENT_ENCODING)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
                let limit = self.inner.config.max_response_bytes;
                let bytes = http_body_util::Limited::new(res.into_body(), limit)
                    .collect()
                    .await
                    .map_err(|e| format!("response body: {e}"))?
                    .to_bytes();
                let bytes = if gz {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&bytes[..])
                        .take(limit as u64 + 1)
                        .read_to_end(&mut out)
                        .map_err(|e| format!("bad gzip body: {e}"))?;
                    if out.len() > limit {
                        return Err(format!("response larger than {limit} bytes"));
                    }
                    Bytes::from(out)
                } else {
                    bytes
                };
                Ok::<_, String>((status, bytes))
            };
            match tokio::time::timeout(self.inner.config.request_timeout, fut).await {
                Ok(Ok((status, bytes))) if !status.is_server_error() => {
                    self.inner.preferred.store(idx, Ordering::Relaxed);
                    return Ok((status, bytes));
                }
                Ok(Ok((status, _))) => last = format!("{}: {status}", server.base),
                Ok(Err(e)) => last = format!("{}: {e}", server.base),
                Err(_) => last = format!("{}: timed out", server.base),
            }
            tracing::debug!(server = %server.base, error = %last, "registry request failed, trying the next server");
        }
        Err(err(ErrorKind::Unavailable(last)))
    }

    fn expect_status(status: StatusCode, ok: &[StatusCode]) -> Result<(), ClientError> {
        if ok.contains(&status) {
            Ok(())
        } else {
            Err(err(ErrorKind::Status(status)))
        }
    }

    fn instance_path(app: &str, id: &str) -> String {
        format!(
            "/apps/{}/{}",
            utf8_percent_encode(&app.to_ascii_uppercase(), SEGMENT),
            utf8_percent_encode(id, SEGMENT)
        )
    }

    /// `POST apps/{APP}`: registers `inst` (204 expected).
    pub async fn register(&self, inst: &InstanceInfo) -> Result<(), ClientError> {
        let path = format!(
            "/apps/{}",
            utf8_percent_encode(&inst.app.to_ascii_uppercase(), SEGMENT)
        );
        let (status, _) = self
            .send(Method::POST, &path, Some(json::encode_instance(inst)))
            .await?;
        Self::expect_status(status, &[StatusCode::NO_CONTENT, StatusCode::OK])
    }

    /// `PUT apps/{APP}/{ID}?status=…&lastDirtyTimestamp=…`: a heartbeat.
    pub async fn renew(&self, inst: &InstanceInfo) -> Result<Renewal, ClientError> {
        let path = format!(
            "{}?status={}&lastDirtyTimestamp={}",
            Self::instance_path(&inst.app, inst.id()),
            inst.status,
            inst.last_dirty_timestamp
        );
        let (status, _) = self.send(Method::PUT, &path, None).await?;
        match status {
            StatusCode::OK => Ok(Renewal::Renewed),
            StatusCode::NOT_FOUND => Ok(Renewal::NotFound),
            s => Err(err(ErrorKind::Status(s))),
        }
    }

    /// `DELETE apps/{APP}/{ID}`: deregisters. A 404 (already gone) is not an error.
    pub async fn cancel(&self, app: &str, id: &str) -> Result<(), ClientError> {
        let (status, _) = self
            .send(Method::DELETE, &Self::instance_path(app, id), None)
            .await?;
        Self::expect_status(status, &[StatusCode::OK, StatusCode::NOT_FOUND])
    }

    /// `PUT apps/{APP}/{ID}/status?value=`: an operator status override.
    pub async fn set_status_override(
        &self,
        app: &str,
        id: &str,
        status: InstanceStatus,
    ) -> Result<(), ClientError> {
        let path = format!("{}/status?value={status}", Self::instance_path(app, id));
        let (s, _) = self.send(Method::PUT, &path, None).await?;
        Self::expect_status(s, &[StatusCode::OK])
    }

    /// `DELETE apps/{APP}/{ID}/status[?value=]`: removes the override.
    pub async fn delete_status_override(
        &self,
        app: &str,
        id: &str,
        value: Option<InstanceStatus>,
    ) -> Result<(), ClientError> {
        let mut path = format!("{}/status", Self::instance_path(app, id));
        if let Some(v) = value {
            path.push_str(&format!("?value={v}"));
        }
        let (s, _) = self.send(Method::DELETE, &path, None).await?;
        Self::expect_status(s, &[StatusCode::OK])
    }

    /// `PUT apps/{APP}/{ID}/metadata?k=v…`: merges metadata.
    pub async fn update_metadata(
        &self,
        app: &str,
        id: &str,
        pairs: &[(&str, &str)],
    ) -> Result<(), ClientError> {
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, QUERY),
                    utf8_percent_encode(v, QUERY)
                )
            })
            .collect();
        let path = format!(
            "{}/metadata?{}",
            Self::instance_path(app, id),
            query.join("&")
        );
        let (s, _) = self.send(Method::PUT, &path, None).await?;
        Self::expect_status(s, &[StatusCode::OK])
    }

    async fn get_applications(&self, path: &str) -> Result<Applications, ClientError> {
        let (status, body) = self.send(Method::GET, path, None).await?;
        Self::expect_status(status, &[StatusCode::OK])?;
        json::decode_applications(&body).map_err(|e| err(ErrorKind::Decode(e)))
    }

    /// `GET apps/`: the full registry.
    pub async fn fetch_full(&self) -> Result<Applications, ClientError> {
        self.get_applications("/apps/").await
    }

    /// `GET apps/delta`: recent changes, with the full registry's hash code.
    pub async fn fetch_delta(&self) -> Result<Applications, ClientError> {
        self.get_applications("/apps/delta").await
    }

    /// `GET apps/{APP}`: one application.
    pub async fn fetch_application(
        &self,
        app: &str,
    ) -> Result<crate::model::Application, ClientError> {
        let path = format!(
            "/apps/{}",
            utf8_percent_encode(&app.to_ascii_uppercase(), SEGMENT)
        );
        let (status, body) = self.send(Method::GET, &path, None).await?;
        Self::expect_status(status, &[StatusCode::OK])?;
        json::decode_application(&body).map_err(|e| err(ErrorKind::Decode(e)))
    }

    /// Updates the local cache: a full fetch the first time (or when deltas are disabled), then a
    /// delta, applied and checked against `apps__hashcode`, with a full fetch on mismatch. On
    /// error the cache keeps the last known registry.
    pub async fn refresh(&self) -> Result<Refresh, ClientError> {
        let first = !*self
            .inner
            .fetched_once
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if first || self.inner.config.disable_delta {
            let full = self.fetch_full().await?;
            self.publish(full);
            return Ok(Refresh::Full);
        }
        let delta = self.fetch_delta().await?;
        let mut merged = Applications::clone(&self.inner.cache.borrow());
        merged.apply_delta(&delta);
        if merged.compute_hashcode() == delta.apps_hashcode {
            merged.apps_hashcode = delta.apps_hashcode;
            self.publish(merged);
            Ok(Refresh::Delta)
        } else {
            tracing::debug!(
                local = %merged.compute_hashcode(),
                remote = %delta.apps_hashcode,
                "hash code mismatch after delta, fetching the full registry"
            );
            let full = self.fetch_full().await?;
            self.publish(full);
            Ok(Refresh::FullAfterHashMismatch)
        }
    }

    fn publish(&self, apps: Applications) {
        *self
            .inner
            .fetched_once
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        self.inner.cache.send_if_modified(|current| {
            if **current == apps {
                false
            } else {
                *current = Arc::new(apps);
                true
            }
        });
    }

    /// The local cache: the last registry fetched (empty before the first fetch).
    pub fn applications(&self) -> Arc<Applications> {
        self.inner.cache.borrow().clone()
    }

    /// Refreshes every `registry_fetch_interval` until the handle is aborted. Failures are logged
    /// and the cache keeps serving the last known registry.
    pub fn spawn_refresh(&self) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.inner.config.registry_fetch_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = this.refresh().await {
                    tracing::debug!(error = %e, "registry refresh failed; serving the cached registry");
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

    /// Registers `instance` and keeps it registered: see [`Registration`].
    pub fn start_registration(&self, instance: InstanceInfo) -> Registration {
        Registration::start(self.clone(), instance)
    }
}

/// A registered instance kept alive by heartbeats, as the Java client's `DiscoveryClient` does:
/// register, renew every `renewal_interval`, re-register on 404 or after a local change, and
/// deregister on [`Registration::shutdown`].
pub struct Registration {
    state: Arc<RegistrationState>,
    task: JoinHandle<()>,
}

struct RegistrationState {
    client: RegistryClient,
    instance: Mutex<(InstanceInfo, bool)>,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration").finish_non_exhaustive()
    }
}

/// What one heartbeat cycle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// Registered (first time, after a local change, or after a 404).
    Registered,
    /// Renewed.
    Renewed,
}

impl RegistrationState {
    fn snapshot(&self) -> (InstanceInfo, bool) {
        let g = self.instance.lock().unwrap_or_else(|e| e.into_inner());
        (g.0.clone(), g.1)
    }

    fn mark_clean(&self, registered: &InstanceInfo) {
        let mut g = self.instance.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.last_dirty_timestamp == registered.last_dirty_timestamp {
            g.1 = false;
        }
    }

    async fn heartbeat(&self) -> Result<Heartbeat, ClientError> {
        let (inst, dirty) = self.snapshot();
        if !dirty {
            match self.client.renew(&inst).await? {
                Renewal::Renewed => return Ok(Heartbeat::Renewed),
                Renewal::NotFound => {
                    tracing::info!(app = %inst.app, id = %inst.id(), "registry does not know this instance; re-registering");
                }
            }
        }
        self.client.register(&inst).await?;
        self.mark_clean(&inst);
        Ok(Heartbeat::Registered)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Registration {
    fn start(client: RegistryClient, mut instance: InstanceInfo) -> Self {
        instance.app = instance.app.to_ascii_uppercase();
        if instance.last_dirty_timestamp == 0 {
            instance.last_dirty_timestamp = now_ms();
        }
        let interval = client.inner.config.renewal_interval;
        let state = Arc::new(RegistrationState {
            client,
            instance: Mutex::new((instance, true)),
        });
        let bg = state.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = bg.heartbeat().await {
                    tracing::debug!(error = %e, "heartbeat failed; retrying next interval");
                }
            }
        });
        Registration { state, task }
    }

    /// Runs one heartbeat cycle now (the background task runs one every `renewal_interval`).
    pub async fn heartbeat(&self) -> Result<Heartbeat, ClientError> {
        self.state.heartbeat().await
    }

    /// The instance as this client last changed it.
    pub fn instance(&self) -> InstanceInfo {
        self.state.snapshot().0
    }

    /// Changes the reported status; the next heartbeat re-registers with it.
    pub fn set_status(&self, status: InstanceStatus) {
        self.update(|i| i.status = status);
    }

    /// Changes the local instance (metadata, ports…); the next heartbeat re-registers with it.
    pub fn update(&self, change: impl FnOnce(&mut InstanceInfo)) {
        let mut g = self
            .state
            .instance
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        change(&mut g.0);
        g.0.last_dirty_timestamp = now_ms().max(g.0.last_dirty_timestamp + 1);
        g.1 = true;
    }

    /// Stops heartbeating and deregisters (`DELETE apps/{APP}/{ID}`).
    pub async fn shutdown(self) -> Result<(), ClientError> {
        self.task.abort();
        let (inst, _) = self.state.snapshot();
        self.state.client.cancel(&inst.app, inst.id()).await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_deserialises_with_humantime_durations() {
        let c: ClientConfig = serde_json::from_str(
            r#"{"service_urls":[{"url":"http://a:8761/eureka/","zone":"z1"},{"url":"http://b:8761/eureka/"}],
                "registry_fetch_interval":"10s"}"#,
        )
        .unwrap();
        assert_eq!(
            c.service_urls[0],
            ServiceUrl::in_zone("http://a:8761/eureka/", "z1")
        );
        assert_eq!(c.service_urls[1].zone, None);
        assert_eq!(c.registry_fetch_interval, Duration::from_secs(10));
        assert_eq!(c.renewal_interval, Duration::from_secs(30));
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pa ss"), "dXNlcjpwYSBzcw==");
        for s in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\x00\x10"] {
            assert_eq!(base64_decode(&base64(s)).unwrap(), s);
        }
        assert_eq!(base64_decode("!"), None);
    }

    #[test]
    fn service_urls_split_credentials_and_trailing_slash() {
        let s = parse_server("http://user:secret@127.0.0.1:8761/eureka/").unwrap();
        assert_eq!(s.base, "http://127.0.0.1:8761/eureka");
        assert_eq!(s.auth.unwrap(), "Basic dXNlcjpzZWNyZXQ=");
        let s = parse_server("http://h:1/eureka/v2").unwrap();
        assert_eq!(s.base, "http://h:1/eureka/v2");
        assert!(s.auth.is_none());
        assert!(parse_server("https://h/eureka").unwrap_err().is_config());
        assert!(parse_server("not a url").unwrap_err().is_config());
    }

    #[tokio::test]
    async fn same_zone_servers_come_first() {
        let c = RegistryClient::new(ClientConfig {
            service_urls: vec![
                ServiceUrl::in_zone("http://a:1/eureka", "z1"),
                ServiceUrl::new("http://b:1/eureka"),
                ServiceUrl::in_zone("http://c:1/eureka", "z2"),
                ServiceUrl::in_zone("http://d:1/eureka", "z2"),
            ],
            zone: Some("z2".into()),
            ..Default::default()
        })
        .unwrap();
        let order: Vec<&str> = c.inner.servers.iter().map(|s| s.base.as_str()).collect();
        assert_eq!(
            order,
            [
                "http://c:1/eureka",
                "http://d:1/eureka",
                "http://a:1/eureka",
                "http://b:1/eureka"
            ]
        );
        assert!(
            RegistryClient::new(ClientConfig::default())
                .unwrap_err()
                .is_config()
        );
    }

    #[test]
    fn ids_are_percent_encoded_in_paths() {
        assert_eq!(
            RegistryClient::instance_path("orders", "h1:orders:8080"),
            "/apps/ORDERS/h1%3Aorders%3A8080"
        );
    }
}
