//! The REST resources, on both `/eureka/v2` and `/eureka`, with content negotiation and gzip.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use bytes::Bytes;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use http::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use palisade_registry_client::model::{Applications, InstanceInfo, InstanceStatus};
use palisade_registry_client::{json, xml};
use serde_json::Value;
use tokio::time::Instant;
use tower::ServiceBuilder;

use crate::config::ServerConfig;
use crate::registry::{Registry, RenewOutcome};
use crate::replication::{Action, Replicator, Task};

/// The header peers put on replicated writes.
pub const REPLICATION_HEADER: &str = "x-netflix-discovery-replication";

/// The header a Java client sets to ask for the compact form.
pub const X_EUREKA_ACCEPT: &str = "x-eureka-accept";

/// The base paths every resource is served under.
pub const BASE_PATHS: [&str; 2] = ["/eureka/v2", "/eureka"];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Entity {
    Full,
    Delta,
    App(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    entity: Entity,
    json: bool,
    gzip: bool,
    compact: bool,
}

struct CacheEntry {
    version: u64,
    built: Instant,
    body: Bytes,
}

/// State shared by every request. Each lock is held for one synchronous step, never across an
/// await.
pub(crate) struct Shared {
    pub(crate) registry: Mutex<Registry>,
    cache: Mutex<HashMap<CacheKey, CacheEntry>>,
    pub(crate) config: ServerConfig,
    /// Sends client writes to the peers (none until `serve` or `set_peers`).
    pub(crate) replicator: Replicator,
    /// Fetches answer 403 until then (start-up sync from peers found nothing).
    pub(crate) warm_up_until: Mutex<Option<Instant>>,
}

impl Shared {
    pub(crate) fn new(config: ServerConfig, wall_ms: i64) -> Self {
        Shared {
            registry: Mutex::new(Registry::new(config.clone(), wall_ms)),
            cache: Mutex::new(HashMap::new()),
            config,
            replicator: Replicator::new(),
            warm_up_until: Mutex::new(None),
        }
    }

    /// Sends a client write to the peers (no-op when standalone or for replicated writes).
    fn replicate(
        &self,
        replicated: bool,
        action: Action,
        app: &str,
        id: &str,
        status: Option<InstanceStatus>,
    ) {
        if replicated {
            return;
        }
        if self.replicator.has_peers() {
            let info = self.registry().instance(app, id);
            self.replicator.replicate(Task {
                action,
                app: app.to_ascii_uppercase(),
                id: id.to_owned(),
                info,
                status,
            });
        }
    }

    fn warming_up(&self) -> bool {
        let until = *self.warm_up_until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|t| Instant::now() < t)
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves consistent data (every operation mutates
        // after its checks), so a poisoned lock is still usable.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<CacheKey, CacheEntry>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cached body, or a fresh one (then cached). `None` when the entity does not exist.
    fn cached(&self, key: CacheKey) -> Option<Bytes> {
        let now = Instant::now();
        let version = self.registry().version();
        if let Some(e) = self.cache().get(&key) {
            let fresh = if self.config.use_read_only_response_cache {
                now.saturating_duration_since(e.built) < self.config.response_cache_update_interval
            } else {
                e.version == version
            };
            if fresh {
                return Some(e.body.clone());
            }
        }
        let (apps, version) = {
            let mut reg = self.registry();
            let apps = match &key.entity {
                Entity::Full => Payload::Apps(reg.applications()),
                Entity::Delta => Payload::Apps(reg.delta()),
                Entity::App(name) => match reg.application(name) {
                    Some(app) => Payload::App(app),
                    None => {
                        drop(reg);
                        // The application is gone: forget its bodies so the cache stays bounded
                        // by the applications that exist.
                        self.cache().remove(&key);
                        return None;
                    }
                },
            };
            (apps, reg.version())
        };
        let raw = match (&apps, key.json, key.compact) {
            (Payload::Apps(a), true, false) => json::encode_applications(a),
            (Payload::Apps(a), false, false) => xml::encode_applications(a),
            (Payload::App(a), true, false) => json::encode_application(a),
            (Payload::App(a), false, false) => xml::encode_application(a),
            (Payload::Apps(a), true, true) => json::encode_applications_compact(a),
            (Payload::Apps(a), false, true) => xml::encode_applications_compact(a),
            (Payload::App(a), true, true) => json::encode_application_compact(a),
            (Payload::App(a), false, true) => xml::encode_application_compact(a),
        };
        // A cached body is compressed once per cache period, so spend more CPU for a smaller
        // body in read-only mode; when every write invalidates, compress fast.
        let level = if self.config.use_read_only_response_cache {
            Compression::default()
        } else {
            Compression::fast()
        };
        let body = Bytes::from(if key.gzip { gzip(&raw, level) } else { raw });
        self.cache().insert(
            key,
            CacheEntry {
                version,
                built: now,
                body: body.clone(),
            },
        );
        Some(body)
    }
}

enum Payload {
    Apps(Applications),
    App(palisade_registry_client::model::Application),
}

fn gzip(raw: &[u8], level: Compression) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(raw.len() / 4 + 64), level);
    enc.write_all(raw).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

type AppState = Arc<Shared>;

/// How the client wants its answer.
#[derive(Clone, Copy)]
struct Negotiated {
    json: bool,
    gzip: bool,
    /// `X-Eureka-Accept: compact` (applications, application, delta and VIP resources).
    compact: bool,
}

fn negotiate(headers: &HeaderMap) -> Negotiated {
    let has = |name, needle: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains(needle))
    };
    Negotiated {
        json: has(ACCEPT, "application/json"),
        gzip: has(ACCEPT_ENCODING, "gzip"),
        compact: has(http::HeaderName::from_static(X_EUREKA_ACCEPT), "compact"),
    }
}

fn is_replication(headers: &HeaderMap) -> bool {
    headers
        .get(REPLICATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn body_response(body: Bytes, n: Negotiated) -> Response {
    let mut res = Response::new(Body::from(body));
    let ct = if n.json {
        "application/json"
    } else {
        "application/xml"
    };
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if n.gzip {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    res
}

fn encode_fresh(raw: Vec<u8>, n: Negotiated) -> Response {
    let body = if n.gzip {
        gzip(&raw, Compression::fast())
    } else {
        raw
    };
    body_response(Bytes::from(body), n)
}

fn instance_response(inst: &InstanceInfo, n: Negotiated) -> Response {
    encode_fresh(
        if n.json {
            json::encode_instance(inst)
        } else {
            xml::encode_instance(inst)
        },
        n,
    )
}

/// A 400 with its reason as a plain-text body.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.0,
        )
            .into_response()
    }
}

fn bad(reason: impl Into<String>) -> BadRequest {
    BadRequest(reason.into())
}

fn bad_request(reason: impl Into<String>) -> Response {
    bad(reason).into_response()
}

fn status_only(code: StatusCode) -> Response {
    code.into_response()
}

/// Reads a request body within the size limit, undoing `Content-Encoding: gzip`.
async fn read_body(shared: &Shared, headers: &HeaderMap, body: Body) -> Result<Bytes, BadRequest> {
    let limit = shared.config.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        bad(format!(
            "request body unreadable or larger than {limit} bytes"
        ))
    })?;
    let gzipped = headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzipped {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    GzDecoder::new(&bytes[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err(bad(format!(
            "request body larger than {limit} bytes after decompression"
        )));
    }
    Ok(Bytes::from(out))
}

fn decode_instance_body(headers: &HeaderMap, body: &[u8]) -> Result<InstanceInfo, BadRequest> {
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let xml_body = if ct.contains("xml") {
        true
    } else if ct.contains("json") {
        false
    } else {
        body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
    };
    let res = if xml_body {
        xml::decode_instance(body)
    } else {
        json::decode_instance(body)
    };
    res.map_err(|e| bad(e.reason().to_owned()))
}

type Params = Query<Vec<(String, String)>>;

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn timestamp_param(params: &[(String, String)]) -> Result<Option<i64>, BadRequest> {
    match param(params, "lastDirtyTimestamp") {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("lastDirtyTimestamp must be a number, got {v:?}"))),
    }
}

fn status_param(
    params: &[(String, String)],
    name: &str,
) -> Result<Option<InstanceStatus>, BadRequest> {
    match param(params, name) {
        None => Ok(None),
        Some(v) => InstanceStatus::parse(v).map(Some).ok_or_else(|| {
            bad(format!(
                "{name} must be one of UP, DOWN, STARTING, OUT_OF_SERVICE, UNKNOWN; got {v:?}"
            ))
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn register(
    State(shared): State<AppState>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_body(&shared, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let mut info = match decode_instance_body(&headers, &bytes) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    info.app = info.app.to_ascii_uppercase();
    if let Err(reason) = info.validate_for_registration() {
        return bad_request(reason);
    }
    let app = app.to_ascii_uppercase();
    if info.app != app {
        return bad_request(format!(
            "Mismatched appName, expecting {app} but was {}",
            info.app
        ));
    }
    let replicated = is_replication(&headers);
    let id = info.id().to_owned();
    shared.registry().register(info, replicated);
    shared.replicate(replicated, Action::Register, &app, &id, None);
    status_only(StatusCode::NO_CONTENT)
}

async fn renew(
    State(shared): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let last_dirty = match timestamp_param(&params) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let overridden = match status_param(&params, "overriddenstatus") {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let replication = is_replication(&headers);
    let outcome = shared
        .registry()
        .renew(&app, &id, last_dirty, overridden, replication);
    match outcome {
        RenewOutcome::Renewed => {
            shared.replicate(replication, Action::Heartbeat, &app, &id, None);
            status_only(StatusCode::OK)
        }
        RenewOutcome::NotFound => status_only(StatusCode::NOT_FOUND),
        RenewOutcome::Conflict(info) => {
            let mut res = instance_response(&info, negotiate(&headers));
            *res.status_mut() = StatusCode::CONFLICT;
            res
        }
    }
}

async fn cancel(
    State(shared): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if shared.registry().cancel(&app, &id) {
        shared.replicate(is_replication(&headers), Action::Cancel, &app, &id, None);
        status_only(StatusCode::OK)
    } else {
        status_only(StatusCode::NOT_FOUND)
    }
}

async fn put_status(
    State(shared): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let value = match status_param(&params, "value") {
        Ok(Some(v)) => v,
        Ok(None) => return bad_request("missing query parameter value"),
        Err(r) => return r.into_response(),
    };
    let last_dirty = match timestamp_param(&params) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    if shared
        .registry()
        .set_status_override(&app, &id, value, last_dirty)
    {
        shared.replicate(
            is_replication(&headers),
            Action::StatusUpdate,
            &app,
            &id,
            None,
        );
        status_only(StatusCode::OK)
    } else {
        status_only(StatusCode::NOT_FOUND)
    }
}

async fn delete_status(
    State(shared): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let value = match status_param(&params, "value") {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let last_dirty = match timestamp_param(&params) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    if shared
        .registry()
        .delete_status_override(&app, &id, value, last_dirty)
    {
        let replicated = is_replication(&headers);
        shared.replicate(replicated, Action::DeleteStatusOverride, &app, &id, value);
        status_only(StatusCode::OK)
    } else {
        status_only(StatusCode::NOT_FOUND)
    }
}

async fn put_metadata(
    State(shared): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if shared.registry().update_metadata(&app, &id, &params) {
        // Java re-registers after a metadata change; peers get the whole instance.
        shared.replicate(is_replication(&headers), Action::Register, &app, &id, None);
        status_only(StatusCode::OK)
    } else {
        status_only(StatusCode::NOT_FOUND)
    }
}

async fn get_apps(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    if shared.warming_up() {
        return status_only(StatusCode::FORBIDDEN);
    }
    let n = negotiate(&headers);
    let key = CacheKey {
        entity: Entity::Full,
        json: n.json,
        gzip: n.gzip,
        compact: n.compact,
    };
    match shared.cached(key) {
        Some(b) => body_response(b, n),
        None => status_only(StatusCode::NOT_FOUND),
    }
}

async fn get_delta(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    if shared.config.disable_delta || shared.warming_up() {
        return status_only(StatusCode::FORBIDDEN);
    }
    let n = negotiate(&headers);
    let key = CacheKey {
        entity: Entity::Delta,
        json: n.json,
        gzip: n.gzip,
        compact: n.compact,
    };
    match shared.cached(key) {
        Some(b) => body_response(b, n),
        None => status_only(StatusCode::NOT_FOUND),
    }
}

async fn get_app(
    State(shared): State<AppState>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    let n = negotiate(&headers);
    let key = CacheKey {
        entity: Entity::App(app.to_ascii_uppercase()),
        json: n.json,
        gzip: n.gzip,
        compact: n.compact,
    };
    match shared.cached(key) {
        Some(b) => body_response(b, n),
        None => status_only(StatusCode::NOT_FOUND),
    }
}

async fn get_app_instance(
    State(shared): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let found = shared.registry().instance(&app, &id);
    match found {
        Some(i) => instance_response(&i, negotiate(&headers)),
        None => status_only(StatusCode::NOT_FOUND),
    }
}

async fn get_instance(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let found = shared.registry().instance_by_id(&id);
    match found {
        Some(i) => instance_response(&i, negotiate(&headers)),
        None => status_only(StatusCode::NOT_FOUND),
    }
}

fn vip_response(shared: &Shared, vip: &str, secure: bool, headers: &HeaderMap) -> Response {
    let apps = shared.registry().by_vip(vip, secure);
    if apps.applications.is_empty() {
        return status_only(StatusCode::NOT_FOUND);
    }
    let n = negotiate(headers);
    let raw = match (n.json, n.compact) {
        (true, false) => json::encode_applications(&apps),
        (false, false) => xml::encode_applications(&apps),
        (true, true) => json::encode_applications_compact(&apps),
        (false, true) => xml::encode_applications_compact(&apps),
    };
    encode_fresh(raw, n)
}

async fn get_vip(
    State(shared): State<AppState>,
    Path(vip): Path<String>,
    headers: HeaderMap,
) -> Response {
    vip_response(&shared, &vip, false, &headers)
}

async fn get_svip(
    State(shared): State<AppState>,
    Path(vip): Path<String>,
    headers: HeaderMap,
) -> Response {
    vip_response(&shared, &vip, true, &headers)
}

async fn put_asg_status(Query(params): Params) -> Response {
    // AWS auto-scaling groups do not exist off AWS; accept the call like a non-AWS Java server.
    match param(&params, "value") {
        Some(v) if v.eq_ignore_ascii_case("ENABLED") || v.eq_ignore_ascii_case("DISABLED") => {
            status_only(StatusCode::OK)
        }
        _ => bad_request("value must be ENABLED or DISABLED"),
    }
}

async fn get_status(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    let (count, sp, uptime) = {
        let mut r = shared.registry();
        let uptime = r.wall_ms(Instant::now());
        (r.len(), r.self_preservation(), uptime)
    };
    let n = negotiate(&headers);
    let raw = if n.json {
        serde_json::json!({
            "generalStats": {
                "environment": "palisade",
                "registered-instances": count.to_string(),
                "renewals-last-minute": sp.renewals_last_minute.to_string(),
                "renewals-threshold": sp.renewals_threshold.to_string(),
                "self-preservation-active": (!sp.lease_expiration_enabled).to_string(),
                "server-time-ms": uptime.to_string(),
            },
            "applicationStats": {
                "registered-replicas": "",
                "available-replicas": "",
                "unavailable-replicas": "",
            },
            "instanceInfo": null,
        })
        .to_string()
        .into_bytes()
    } else {
        format!(
            "<statusInfo><generalStats><environment>palisade</environment><registered-instances>{count}</registered-instances><renewals-last-minute>{}</renewals-last-minute><renewals-threshold>{}</renewals-threshold><self-preservation-active>{}</self-preservation-active><server-time-ms>{uptime}</server-time-ms></generalStats><applicationStats><registered-replicas></registered-replicas><available-replicas></available-replicas><unavailable-replicas></unavailable-replicas></applicationStats></statusInfo>",
            sp.renewals_last_minute, sp.renewals_threshold, !sp.lease_expiration_enabled
        )
        .into_bytes()
    };
    encode_fresh(raw, n)
}

async fn get_status_overrides(State(shared): State<AppState>) -> Response {
    let map: serde_json::Map<String, Value> = shared
        .registry()
        .status_overrides()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v.as_str().to_owned())))
        .collect();
    (
        [(CONTENT_TYPE, "application/json")],
        Value::Object(map).to_string(),
    )
        .into_response()
}

/// One item of a replication batch, run through the same logic as the direct call.
fn replicate_item(shared: &Shared, item: &Value) -> Value {
    let result = (|| -> Result<(u16, Option<InstanceInfo>), String> {
        let m = item
            .as_object()
            .ok_or("replication item must be an object")?;
        let text = |k: &str| m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let action = text("action").ok_or("missing action")?;
        let app = text("appName").ok_or("missing appName")?;
        let id = text("id").ok_or("missing id")?;
        let last_dirty = match m.get("lastDirtyTimestamp") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        let status = text("status").and_then(InstanceStatus::parse);
        let overridden = text("overriddenStatus").and_then(InstanceStatus::parse);
        let mut reg = shared.registry();
        Ok(match action {
            "Register" => {
                let v = m
                    .get("instanceInfo")
                    .ok_or("Register without instanceInfo")?;
                let mut info =
                    json::instance_from_json_value(v).map_err(|e| e.reason().to_owned())?;
                info.app = info.app.to_ascii_uppercase();
                info.validate_for_registration()?;
                reg.register(info, true);
                (200, None)
            }
            "Heartbeat" => match reg.renew(app, id, last_dirty, overridden, true) {
                RenewOutcome::Renewed => (200, None),
                RenewOutcome::NotFound => (404, None),
                RenewOutcome::Conflict(info) => (409, Some(*info)),
            },
            "Cancel" => (if reg.cancel(app, id) { 200 } else { 404 }, None),
            "StatusUpdate" => {
                let s = status.ok_or("StatusUpdate without a valid status")?;
                let ok = reg.set_status_override(app, id, s, last_dirty);
                (if ok { 200 } else { 404 }, None)
            }
            "DeleteStatusOverride" => {
                let ok = reg.delete_status_override(app, id, status, last_dirty);
                (if ok { 200 } else { 404 }, None)
            }
            other => return Err(format!("unknown action {other:?}")),
        })
    })();
    match result {
        Ok((code, entity)) => {
            let entity = entity
                .map(|i| {
                    serde_json::from_slice(&json::encode_instance_object(&i))
                        .expect("our encoder writes valid JSON")
                })
                .unwrap_or(Value::Null);
            serde_json::json!({"statusCode": code, "responseEntity": entity})
        }
        Err(reason) => {
            serde_json::json!({"statusCode": 400, "responseEntity": null, "reason": reason})
        }
    }
}

async fn replication_batch(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_body(&shared, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let doc: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("invalid JSON: {e}")),
    };
    let Some(list) = doc.get("replicationList").and_then(Value::as_array) else {
        return bad_request("missing replicationList array");
    };
    let responses: Vec<Value> = list.iter().map(|i| replicate_item(&shared, i)).collect();
    (
        [(CONTENT_TYPE, "application/json")],
        serde_json::json!({ "responseList": responses }).to_string(),
    )
        .into_response()
}

fn resources() -> Router<AppState> {
    Router::new()
        .route("/apps", get(get_apps))
        .route("/apps/delta", get(get_delta))
        .route("/apps/{app}", post(register).get(get_app))
        .route(
            "/apps/{app}/{id}",
            put(renew).delete(cancel).get(get_app_instance),
        )
        .route(
            "/apps/{app}/{id}/status",
            put(put_status).delete(delete_status),
        )
        .route("/apps/{app}/{id}/metadata", put(put_metadata))
        .route("/instances/{id}", get(get_instance))
        .route("/vips/{vip}", get(get_vip))
        .route("/svips/{vip}", get(get_svip))
        .route("/asg/{asg}/status", put(put_asg_status))
        .route("/peerreplication/batch", post(replication_batch))
        .route("/status", get(get_status))
        .route("/serverinfo/statusoverrides", get(get_status_overrides))
}

/// Strips one trailing slash so `apps/` and `peerreplication/batch/` reach their resources.
fn strip_trailing_slash<B>(mut req: Request<B>) -> Request<B> {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = &path[..path.len() - 1];
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// Equal length and equal bytes, in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_basic_auth(
    State(expected): State<Arc<HeaderValue>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let ok = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| constant_time_eq(v.as_bytes(), expected.as_bytes()));
    if ok {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(http::header::WWW_AUTHENTICATE, "Basic realm=\"eureka\"")],
        )
            .into_response()
    }
}

pub(crate) fn router(shared: AppState) -> Router {
    let mut inner = Router::new()
        .route("/serverinfo/statusoverrides", get(get_status_overrides))
        .merge(crate::dashboard::routes());
    for base in BASE_PATHS {
        inner = inner.nest(base, resources());
    }
    let auth = shared.config.basic_auth.clone();
    let mut inner = inner.with_state(shared);
    if let Some(a) = auth {
        let expected = Arc::new(palisade_registry_client::basic_auth_value(
            &a.username,
            &a.password,
        ));
        inner = inner.layer(axum::middleware::from_fn_with_state(
            expected,
            require_basic_auth,
        ));
    }
    let normalized = ServiceBuilder::new()
        .map_request(strip_trailing_slash::<Body>)
        .service(inner);
    Router::new().fallback_service(normalized)
}
