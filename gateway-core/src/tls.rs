//! TLS with rustls (ring provider): the listener's certificate (ALPN `h2` and `http/1.1`,
//! reloadable without a restart) and `https://` upstreams (verified against a CA file and/or the
//! webpki roots, SNI from the upstream host, ALPN `h2`/`http/1.1`).
//!
//! ```no_run
//! use palisade_gateway::tls::{ServerTls, TlsListenerConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = ServerTls::new(&TlsListenerConfig {
//!     cert: "/etc/palisade/cert.pem".into(),
//!     key: "/etc/palisade/key.pem".into(),
//! })?;
//! // ... serve with `palisade_gateway::serve_tls(listener, gateway, limits, tls.clone(), ..)`;
//! // after the files were replaced:
//! if let Err(e) = tls.reload() {
//!     eprintln!("certificate kept: {e}"); // e.g. "/etc/palisade/key.pem: the private key does not match ..."
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::body::RequestBody;

/// `tls:` in the routes file: the listener's certificate chain and private key, PEM files.
/// Read at start; [`ServerTls::reload`] (SIGHUP for the binary) reads them again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

/// An ALPN protocol offered to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Alpn {
    /// HTTP/2.
    #[serde(rename = "h2")]
    H2,
    /// HTTP/1.1.
    #[serde(rename = "http/1.1")]
    Http11,
}

/// `routes[].upstream_tls:` how an `https://` upstream is verified. Without it: the webpki
/// (Mozilla) roots, ALPN `h2` and `http/1.1`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM file of CA certificates to trust (read when the routes load).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Also trust the webpki roots (default: `true` without `ca_file`, `false` with it).
    #[serde(default)]
    pub webpki_roots: Option<bool>,
    /// ALPN protocols offered (default both, `h2` preferred; the upstream picks). Routes that
    /// tunnel `Upgrade` (WebSocket) need `[http/1.1]`.
    #[serde(default)]
    pub alpn: Option<Vec<Alpn>>,
}

/// A certificate, key or CA file that was refused: which file, and why.
#[derive(Debug, Clone)]
pub struct TlsError {
    file: PathBuf,
    message: String,
}

impl TlsError {
    fn new(file: &Path, message: impl Into<String>) -> Self {
        TlsError {
            file: file.to_owned(),
            message: message.into(),
        }
    }
    /// The file at fault.
    pub fn file(&self) -> &Path {
        &self.file
    }
    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for TlsError {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::new(path, format!("cannot read {what}: {e}")))
}

/// Reads every `CERTIFICATE` block of a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, "certificate file")?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::new(
            path,
            "no `-----BEGIN CERTIFICATE-----` block found",
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, "private key file")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::new(
            path,
            "no private key block found (PKCS#8 `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)",
        ),
        e => TlsError::new(path, format!("bad PEM: {e}")),
    })
}

/// Loads and checks a certificate chain and its key.
fn certified_key(cfg: &TlsListenerConfig) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = read_certs(&cfg.cert)?;
    let key = read_key(&cfg.key)?;
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::new(&cfg.key, format!("unusable private key: {e}")))?;
    let ck = CertifiedKey::new(certs, signer);
    ck.keys_match().map_err(|e| {
        TlsError::new(
            &cfg.key,
            format!(
                "the private key does not match the certificate in {} ({e})",
                cfg.cert.display()
            ),
        )
    })?;
    Ok(Arc::new(ck))
}

#[derive(Debug)]
struct CertStore(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// The listener's TLS: a rustls server config whose certificate can be swapped while serving.
/// Cheap to clone (shared).
#[derive(Clone)]
pub struct ServerTls {
    files: TlsListenerConfig,
    store: Arc<CertStore>,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.files.cert)
            .field("key", &self.files.key)
            .finish()
    }
}

impl ServerTls {
    /// Reads the certificate chain and key (TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`).
    pub fn new(files: &TlsListenerConfig) -> Result<Self, TlsError> {
        let store = Arc::new(CertStore(ArcSwap::new(certified_key(files)?)));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(store.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            files: files.clone(),
            store,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again; new handshakes use the new certificate, established connections
    /// are untouched. On error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = certified_key(&self.files)?;
        self.store.0.store(ck);
        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// The acceptor for the listener.
    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    /// Watches the certificate and key files and calls [`ServerTls::reload`] once they have
    /// been quiet for `debounce` after a change (a rotation that writes both files reloads once).
    /// A refused pair is logged at WARN and the certificate in use stays; the next change tries
    /// again. Dropping the returned guard stops the watching. Must be called inside a tokio
    /// runtime.
    pub fn watch_files(&self, debounce: Duration) -> Result<CertWatcher, notify::Error> {
        use notify::{RecursiveMode, Watcher};
        let files: Vec<PathBuf> = [&self.files.cert, &self.files.key]
            .into_iter()
            .map(std::path::absolute)
            .collect::<Result<_, _>>()
            .map_err(notify::Error::io)?;
        let names: Vec<_> = files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_owned()))
            .collect();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res
                    && !ev.kind.is_access()
                    && ev
                        .paths
                        .iter()
                        .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)))
                {
                    let _ = tx.send(());
                }
            })?;
        let mut dirs: Vec<PathBuf> = files
            .iter()
            .map(|f| {
                f.parent()
                    .map_or_else(|| PathBuf::from("/"), Path::to_owned)
            })
            .collect();
        dirs.dedup();
        for d in &dirs {
            watcher.watch(d, RecursiveMode::NonRecursive)?;
        }
        let tls = self.clone();
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                loop {
                    match tokio::time::timeout(debounce, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                if let Err(e) = tls.reload() {
                    tracing::warn!(error = %e, "TLS certificate refused; previous one kept");
                }
            }
        });
        Ok(CertWatcher {
            _watcher: watcher,
            task,
        })
    }
}

/// Keeps the listener's certificate files watched ([`ServerTls::watch_files`]); dropping it
/// stops the watching.
#[derive(Debug)]
pub struct CertWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CertWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The pooled client for `https://` upstreams.
pub(crate) type HttpsClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

type CacheKey = (Vec<u8>, bool, Vec<Alpn>);

/// One pool per distinct (CA file content, webpki roots, ALPN) so reloads that keep a route's
/// TLS settings keep its connections.
#[derive(Default, Clone)]
pub(crate) struct ClientCache {
    map: Arc<Mutex<HashMap<CacheKey, HttpsClient>>>,
}

impl fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCache").finish_non_exhaustive()
    }
}

impl ClientCache {
    /// The client for an `https://` upstream with these settings. The error names the file.
    pub(crate) fn get(&self, cfg: &UpstreamTlsConfig) -> Result<HttpsClient, String> {
        let ca_pem = match &cfg.ca_file {
            Some(p) => read(p, "CA file").map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let webpki = cfg.webpki_roots.unwrap_or(cfg.ca_file.is_none());
        let alpn = cfg.alpn.clone().unwrap_or(vec![Alpn::H2, Alpn::Http11]);
        if alpn.is_empty() {
            return Err("upstream_tls.alpn must name at least one protocol".into());
        }
        let key = (ca_pem, webpki, alpn);
        let mut map = self.map.lock().expect("TLS client cache poisoned");
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let mut roots = RootCertStore::empty();
        if let Some(p) = &cfg.ca_file {
            let certs = read_certs(p).map_err(|e| e.to_string())?;
            for (i, c) in certs.into_iter().enumerate() {
                roots.add(c).map_err(|e| {
                    format!(
                        "{}: certificate {} is not a usable CA: {e}",
                        p.display(),
                        i + 1
                    )
                })?;
            }
        }
        if webpki {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if roots.is_empty() {
            return Err("upstream_tls trusts no CA: give `ca_file` or `webpki_roots: true`".into());
        }
        let (h1, h2) = (key.2.contains(&Alpn::Http11), key.2.contains(&Alpn::H2));
        let tls = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let b = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only();
        // Both: ALPN offers `h2` then `http/1.1` (the server picks). HTTP/1.1 only: no ALPN
        // (hyper-rustls leaves it empty), which servers take as HTTP/1.1.
        let connector = match (h1, h2) {
            (true, true) => b.enable_all_versions().wrap_connector(http),
            (true, false) => b.enable_http1().wrap_connector(http),
            _ => b.enable_http2().wrap_connector(http),
        };
        let mut cb = Client::builder(TokioExecutor::new());
        cb.pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90));
        if !h1 {
            cb.http2_only(true);
        }
        let client = cb.build(connector);
        map.insert(key, client.clone());
        Ok(client)
    }
}

/// The route's https client, if its upstream is `https://`; checks the combination.
pub(crate) fn route_client(
    cache: &ClientCache,
    rc: &crate::config::RouteConfig,
) -> Result<Option<HttpsClient>, String> {
    use crate::config::{Protocol, UpstreamUrl};
    match (&rc.upstream, &rc.upstream_tls) {
        (UpstreamUrl::Fixed { tls: true, .. }, cfg) => {
            if rc.protocol == Protocol::H2c {
                return Err("`protocol: h2c` is cleartext; an https:// upstream negotiates h2 through `upstream_tls.alpn`".into());
            }
            cache.get(&cfg.clone().unwrap_or_default()).map(Some)
        }
        (_, Some(_)) => Err("`upstream_tls` needs an https:// upstream".into()),
        (_, None) => Ok(None),
    }
}

/// If a TLS failure caused `e`, what it was (`invalid peer certificate: UnknownIssuer`).
/// rustls errors reach the client wrapped in `io::Error`, whose `source()` skips them, so
/// the chain is walked through `io::Error::get_ref` too.
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                return Some(t.to_string());
            }
            cur = Some(inner);
            continue;
        }
        cur = e.source();
    }
    None
}
