//! The HTTP API: Spring Cloud Config's environment, flat-file and resource endpoints,
//! `/encrypt` and `/decrypt`, `/health` and `/metrics`, behind optional basic auth.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use crate::backend::{Backend, BackendError, Request, check_name, check_relative_path};
use crate::cipher::Cipher;
use crate::environment::{Environment, find};

/// The media type Spring clients ask for: values carry their origin.
pub const V2_MEDIA_TYPE: &str = "application/vnd.spring-cloud.config-server.v2+json";

/// A Spring Cloud Config compatible server over a [`Backend`]. Build it, then take its
/// [`router`](ConfigServer::router) and serve it with axum.
#[derive(Clone)]
pub struct ConfigServer {
    backend: Arc<dyn Backend>,
    search_paths: Vec<String>,
    auth: Option<(String, String)>,
    cipher: Option<Cipher>,
    prefix: String,
}

impl std::fmt::Debug for ConfigServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigServer")
            .field("backend", &"dyn Backend")
            .field("search_paths", &self.search_paths)
            .field("auth", &self.auth.as_ref().map(|(u, _)| u))
            .field("cipher", &self.cipher.is_some())
            .finish()
    }
}

struct Shared {
    server: ConfigServer,
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl ConfigServer {
    /// A server over `backend`, searching the repository root, without auth or encryption.
    pub fn new(backend: impl Backend) -> Self {
        ConfigServer {
            backend: Arc::new(backend),
            search_paths: vec![String::new()],
            auth: None,
            cipher: None,
            prefix: String::new(),
        }
    }

    /// Folders of the repository to search, first wins (Spring's `search-paths`); they may
    /// contain `{application}` and `{profile}`.
    ///
    /// # Panics
    /// On a search path that leaves the repository (`..`, absolute).
    pub fn search_paths<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.search_paths = paths
            .into_iter()
            .map(Into::into)
            .inspect(|p: &String| {
                assert!(
                    p.is_empty() || check_relative_path("search path", p).is_ok(),
                    "search path {p:?} leaves the repository"
                );
            })
            .collect();
        if self.search_paths.is_empty() {
            self.search_paths.push(String::new());
        }
        self
    }

    /// Requires HTTP basic auth on every endpoint but `/health`. `/encrypt` and `/decrypt` are
    /// only served when auth is set.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some((user.into(), password.into()));
        self
    }

    /// Decrypts `{cipher}` values with this key and enables `/encrypt` and `/decrypt`.
    pub fn cipher(mut self, cipher: Cipher) -> Self {
        self.cipher = Some(cipher);
        self
    }

    /// Serves the configuration endpoints (environment, flat forms, resources, `/encrypt`,
    /// `/decrypt`) under a path prefix such as `/config` (Spring's
    /// `spring.cloud.config.server.prefix`); `/health` and `/metrics` stay at the root.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = format!("/{}", prefix.trim_matches('/'));
        if self.prefix == "/" {
            self.prefix.clear();
        }
        self
    }

    /// The axum router serving the whole API.
    pub fn router(self) -> Router {
        let shared = Arc::new(Shared {
            server: self,
            requests: Mutex::new(BTreeMap::new()),
        });
        Router::new().fallback(handle).with_state(shared)
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (endpoint, response) = route(&shared, &method, &uri, &headers, body).await;
    *shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry((endpoint, response.status().as_u16()))
        .or_default() += 1;
    response
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn error(status: StatusCode, message: &str, path: &str) -> Response {
    let body = json!({
        "status": status.as_u16(),
        "error": status.canonical_reason().unwrap_or(""),
        "message": message,
        "path": path,
    });
    respond(status, "application/json", body.to_string())
}

fn backend_error(e: &BackendError, path: &str) -> Response {
    let status = match e {
        BackendError::NoSuchLabel(_) => StatusCode::NOT_FOUND,
        BackendError::Rejected(_) => StatusCode::BAD_REQUEST,
        BackendError::Unavailable(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string(), path)
}

fn authorized(auth: &(String, String), headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
    else {
        return false;
    };
    let want = format!("{}:{}", auth.0, auth.1);
    // Compare without an early exit, so timing does not reveal the matching prefix.
    given.len() == want.len()
        && given
            .iter()
            .zip(want.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> (&'static str, Response) {
    let s = &shared.server;
    let path = uri.path();
    if method == Method::GET && (path == "/health" || path == "/actuator/health") {
        let backend = s.backend.clone();
        let health = tokio::task::spawn_blocking(move || backend.healthy()).await;
        return match health {
            Ok(Ok(())) => (
                "health",
                respond(StatusCode::OK, "application/json", r#"{"status":"UP"}"#),
            ),
            _ => (
                "health",
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    r#"{"status":"DOWN"}"#,
                ),
            ),
        };
    }
    if let Some(auth) = &s.auth
        && !authorized(auth, headers)
    {
        let mut r = error(StatusCode::UNAUTHORIZED, "authentication required", path);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"palisade-config-server\""),
        );
        return ("unauthorized", r);
    }
    if method == Method::GET && path == "/metrics" {
        return ("metrics", metrics(shared));
    }
    let full_path = path;
    let path = match path.strip_prefix(s.prefix.as_str()) {
        Some(rest) if rest.starts_with('/') => rest,
        _ => {
            return (
                "other",
                error(StatusCode::NOT_FOUND, "no such endpoint", full_path),
            );
        }
    };
    if method == Method::POST && (path == "/encrypt" || path == "/decrypt") {
        let endpoint = if path == "/encrypt" {
            "encrypt"
        } else {
            "decrypt"
        };
        if s.auth.is_none() {
            return (
                endpoint,
                error(
                    StatusCode::FORBIDDEN,
                    "encryption endpoints need basic auth configured",
                    path,
                ),
            );
        }
        let Some(cipher) = &s.cipher else {
            let body = json!({"description": "No key was installed for encryption service", "status": "NO_KEY"});
            return (
                endpoint,
                respond(StatusCode::NOT_FOUND, "application/json", body.to_string()),
            );
        };
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        let out = if endpoint == "encrypt" {
            Ok(cipher.encrypt(text))
        } else {
            cipher.decrypt(text.strip_prefix("{cipher}").unwrap_or(text))
        };
        return match out {
            Ok(t) => (endpoint, respond(StatusCode::OK, "text/plain", t)),
            Err(e) => (
                endpoint,
                error(StatusCode::BAD_REQUEST, &e.to_string(), path),
            ),
        };
    }
    if method != Method::GET {
        return (
            "other",
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", path),
        );
    }
    let segs: Result<Vec<String>, _> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8().map(|c| c.into_owned()))
        .collect();
    let Ok(segs) = segs else {
        return (
            "other",
            error(StatusCode::BAD_REQUEST, "path is not UTF-8", path),
        );
    };
    let query = uri.query().unwrap_or("");
    let resolve = !query
        .split('&')
        .any(|kv| kv.eq_ignore_ascii_case("resolvePlaceholders=false"));
    match segs.as_slice() {
        [file] if flat_ext(file).is_some() => ("flat", flat(s, None, file, resolve, path).await),
        [label, file] if flat_ext(file).is_some() => {
            ("flat", flat(s, Some(label), file, resolve, path).await)
        }
        [app, profiles] => (
            "environment",
            environment(s, app, profiles, None, headers, path).await,
        ),
        [app, profiles, label] => (
            "environment",
            environment(s, app, profiles, Some(label), headers, path).await,
        ),
        [app, profiles, label, rest @ ..] => (
            "resource",
            resource(s, app, profiles, label, &rest.join("/"), path).await,
        ),
        _ => (
            "other",
            error(StatusCode::NOT_FOUND, "no such endpoint", path),
        ),
    }
}

fn flat_ext(file: &str) -> Option<&str> {
    let (_, ext) = file.rsplit_once('.')?;
    matches!(ext, "yml" | "yaml" | "properties" | "json").then_some(ext)
}

fn parse_request(
    app: &str,
    profiles: &str,
    label: Option<&str>,
) -> Result<(String, Vec<String>, Option<String>), BackendError> {
    check_name("application", app)?;
    let profiles: Vec<String> = profiles.split(',').map(|p| p.trim().to_owned()).collect();
    for p in &profiles {
        check_name("profile", p)?;
    }
    let label = match label {
        Some(l) => {
            let l = l.replace("(_)", "/");
            check_relative_path("label", &l)?;
            Some(l)
        }
        None => None,
    };
    Ok((app.to_owned(), profiles, label))
}

async fn load(
    s: &ConfigServer,
    app: &str,
    profiles: &str,
    label: Option<&str>,
) -> Result<Environment, BackendError> {
    let (app, profiles, label) = parse_request(app, profiles, label)?;
    let backend = s.backend.clone();
    let cipher = s.cipher.clone();
    let search = s.search_paths.clone();
    tokio::task::spawn_blocking(move || {
        find(
            &*backend,
            cipher.as_ref(),
            &app,
            &profiles,
            label.as_deref(),
            &search,
        )
    })
    .await
    .map_err(|e| BackendError::Unavailable(e.to_string()))?
}

async fn environment(
    s: &ConfigServer,
    app: &str,
    profiles: &str,
    label: Option<&str>,
    headers: &HeaderMap,
    path: &str,
) -> Response {
    match load(s, app, profiles, label).await {
        Ok(env) => {
            let v2 = headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains(V2_MEDIA_TYPE));
            let ct = if v2 {
                V2_MEDIA_TYPE
            } else {
                "application/json"
            };
            respond(StatusCode::OK, ct, env.to_json(v2).to_string())
        }
        Err(e) => backend_error(&e, path),
    }
}

async fn flat(
    s: &ConfigServer,
    label: Option<&str>,
    file: &str,
    resolve: bool,
    path: &str,
) -> Response {
    let (stem, ext) = file.rsplit_once('.').expect("flat_ext checked the dot");
    let Some((app, profiles)) = stem.rsplit_once('-') else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected {application}-{profile}.{ext}",
            path,
        );
    };
    let env = match load(s, app, profiles, label).await {
        Ok(e) => e,
        Err(e) => return backend_error(&e, path),
    };
    let tree = match env.merged_tree(resolve) {
        Ok(t) => t,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m, path),
    };
    match ext {
        "json" => respond(StatusCode::OK, "application/json", tree.to_string()),
        "properties" => {
            // Keys in merge order (lowest source first, as Spring's LinkedHashMap keeps them),
            // values with placeholders resolved.
            let lines: Vec<String> = env
                .merged()
                .into_iter()
                .map(|(k, raw)| {
                    let v = palisade_dynconfig::value::lookup(&tree, &k).unwrap_or(&raw);
                    match v {
                        Value::String(s) => format!("{k}: {s}"),
                        other => format!("{k}: {other}"),
                    }
                })
                .collect();
            respond(StatusCode::OK, "text/plain", lines.join("\n"))
        }
        _ => match serde_yaml::to_string(&tree) {
            Ok(y) => respond(StatusCode::OK, "text/plain", y),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), path),
        },
    }
}

async fn resource(
    s: &ConfigServer,
    app: &str,
    profiles: &str,
    label: &str,
    rel: &str,
    path: &str,
) -> Response {
    if let Err(e) = check_relative_path("resource path", rel) {
        return backend_error(&e, path);
    }
    let env = match load(s, app, profiles, Some(label)).await {
        Ok(e) => e,
        Err(e) => return backend_error(&e, path),
    };
    // Profile-specific variants first (`nginx-prod.conf`), last profile first, then the file.
    let (dir, file) = rel.rsplit_once('/').map_or(("", rel), |(d, f)| (d, f));
    let (stem, ext) = file
        .rsplit_once('.')
        .map_or((file, None), |(s, e)| (s, Some(e)));
    let mut names = Vec::new();
    for p in env.profiles.iter().rev() {
        let f = match ext {
            Some(e) => format!("{stem}-{p}.{e}"),
            None => format!("{stem}-{p}"),
        };
        names.push(if dir.is_empty() {
            f
        } else {
            format!("{dir}/{f}")
        });
    }
    names.push(rel.to_owned());
    let mut candidates = Vec::new();
    for sp in &s.search_paths {
        let sp = sp.replace("{application}", app);
        for n in &names {
            candidates.push(if sp.is_empty() {
                n.clone()
            } else {
                format!("{sp}/{n}")
            });
        }
    }
    let backend = s.backend.clone();
    let label = Some(label.replace("(_)", "/"));
    let app = app.to_owned();
    let profiles = env.profiles.clone();
    let read = tokio::task::spawn_blocking(move || {
        let request = Request {
            application: &app,
            profiles: &profiles,
            label: label.as_deref(),
        };
        backend.read(&request, &candidates)
    })
    .await;
    let files = match read {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return backend_error(&e, path),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), path),
    };
    let Some(bytes) = files.contents.into_iter().flatten().next() else {
        return error(StatusCode::NOT_FOUND, "no such resource", path);
    };
    match String::from_utf8(bytes) {
        Ok(text) => {
            let tree = env.merged_tree(false).unwrap_or(Value::Null);
            let text = palisade_dynconfig::expand_placeholders(&tree, &text);
            respond(StatusCode::OK, "text/plain", text)
        }
        Err(e) => respond(StatusCode::OK, "application/octet-stream", e.into_bytes()),
    }
}

fn metrics(shared: &Shared) -> Response {
    let mut out = String::from(
        "# HELP palisade_config_server_requests_total Requests served, by endpoint and status code.\n\
         # TYPE palisade_config_server_requests_total counter\n",
    );
    let counts = shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for ((endpoint, code), n) in counts.iter() {
        out.push_str(&format!(
            "palisade_config_server_requests_total{{endpoint=\"{endpoint}\",code=\"{code}\"}} {n}\n"
        ));
    }
    respond(StatusCode::OK, "text/plain; version=0.0.4", out)
}
