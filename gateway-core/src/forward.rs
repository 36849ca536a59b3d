//! Proxy headers: hop-by-hop stripping, `X-Forwarded-*`/`Forwarded`, request id, and trace
//! context (W3C `traceparent` and Zipkin B3).

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static B3: HeaderName = HeaderName::from_static("b3");
static B3_TRACE: HeaderName = HeaderName::from_static("x-b3-traceid");
static B3_SPAN: HeaderName = HeaderName::from_static("x-b3-spanid");
static B3_PARENT: HeaderName = HeaderName::from_static("x-b3-parentspanid");
static B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");

fn is_hop_by_hop(n: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ]
    .contains(n)
        || *n == KEEP_ALIVE
        || *n == PROXY_CONNECTION
}

/// Removes hop-by-hop headers: those named by `Connection`, and the standard list.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Usually there is none: one pass over the few headers present costs less than hashing the
    // nine names to look each up.
    if !h.keys().any(is_hop_by_hop) {
        return;
    }
    if h.contains_key(header::CONNECTION) {
        // Collect names first: `Connection` may list several, and the map can't be borrowed
        // while removing. Rare (clients seldom list extra names), so the Vec is off the hot path.
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
        h.remove(header::CONNECTION);
    }
    for n in [&KEEP_ALIVE, &PROXY_CONNECTION] {
        h.remove(n);
    }
    for n in [
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        h.remove(n);
    }
}

/// Removes the client's `X-Forwarded-For`, `-Proto`, `-Host` and `Forwarded` (they are the
/// client's claims, not facts, at the edge).
pub fn drop_forwarded(h: &mut HeaderMap) {
    let forwarded = [
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_HOST,
        &FORWARDED,
    ];
    if !h.keys().any(|k| forwarded.contains(&k)) {
        return;
    }
    for n in [
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_HOST,
        &FORWARDED,
    ] {
        h.remove(n);
    }
}

/// The client's address as the proxy headers carry it, formatted once per connection so a
/// request pays no formatting for it.
#[derive(Clone, Debug)]
pub struct ClientAddr {
    ip: std::net::IpAddr,
    /// The address alone: `X-Forwarded-For` when the client sent none.
    xff: HeaderValue,
    /// `for=1.2.3.4` or `for="[::1]"`.
    forwarded_for: Box<str>,
}

impl ClientAddr {
    /// Formats `client` for the proxy headers.
    pub fn new(client: SocketAddr) -> Self {
        let ip = client.ip();
        let text = ip.to_string();
        let forwarded_for = if ip.is_ipv6() {
            format!("for=\"[{text}]\"")
        } else {
            format!("for={text}")
        };
        let xff = HeaderValue::from_maybe_shared(Bytes::from(text))
            .expect("an IP address is a valid header value");
        // The first clone of a `Bytes` made from a `String` moves it to a shared buffer; do it
        // now, so each request's clone is a reference count increment.
        drop(xff.clone());
        ClientAddr {
            ip,
            xff,
            forwarded_for: forwarded_for.into_boxed_str(),
        }
    }
}

/// Appends the client to `X-Forwarded-For` and `Forwarded`, and sets `X-Forwarded-Proto` and
/// `X-Forwarded-Host` (the latter only if absent).
pub fn add_forwarded(
    h: &mut HeaderMap,
    client: SocketAddr,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    add_forwarded_for(h, &ClientAddr::new(client), proto, host);
}

/// [`add_forwarded`] with the client's address formatted beforehand (once per connection).
pub fn add_forwarded_for(
    h: &mut HeaderMap,
    client: &ClientAddr,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::try_from(format!("{prev}, {}", client.ip)).ok(),
        None => Some(client.xff.clone()),
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = host
        && !h.contains_key(&X_FORWARDED_HOST)
    {
        h.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    // Quoted-string: a host may hold ':'; refuse any quote or backslash rather than escape.
    let host = host
        .map(HeaderValue::as_bytes)
        .filter(|h| !h.contains(&b'"') && !h.contains(&b'\\'));
    let mut fwd = Vec::with_capacity(
        client.forwarded_for.len() + 7 + proto.len() + host.map_or(0, |h| h.len() + 8),
    );
    fwd.extend_from_slice(client.forwarded_for.as_bytes());
    fwd.extend_from_slice(b";proto=");
    fwd.extend_from_slice(proto.as_bytes());
    if let Some(host) = host {
        fwd.extend_from_slice(b";host=\"");
        fwd.extend_from_slice(host);
        fwd.push(b'"');
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(fwd)) {
        h.append(FORWARDED.clone(), v);
    }
}

fn hex_into(out: &mut [u8], mut v: u128, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out[i] = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

fn is_hex(s: &[u8], len: usize) -> bool {
    s.len() == len
        && s.iter()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A header value owning a fixed-size buffer: one allocation, and clones share it.
fn owned_value<const N: usize>(buf: [u8; N]) -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from_owner(buf)).expect("hex digits and dashes")
}

/// Keeps a sane incoming request id, or makes one (32 hex digits). Returns it for the response.
pub fn ensure_request_id(h: &mut HeaderMap, rng: &mut fastrand::Rng) -> HeaderValue {
    if let Some(v) = h.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    let mut buf = [0u8; 32];
    hex_into(&mut buf, rng.u128(..), 32);
    let v = owned_value(buf);
    h.insert(X_REQUEST_ID.clone(), v.clone());
    v
}

/// A trace id in lowercase hex (64-bit B3 ids are left-padded with zeros).
type TraceId = [u8; 32];
/// A span id in lowercase hex.
type SpanId = [u8; 16];

fn trace_id_from(hex: &[u8]) -> TraceId {
    let mut t = [b'0'; 32];
    t[32 - hex.len()..].copy_from_slice(hex);
    t
}

fn span_id_from(hex: &[u8]) -> SpanId {
    let mut s = [0u8; 16];
    s.copy_from_slice(hex);
    s
}

/// Continues the caller's trace (W3C `traceparent`, else B3 single or multi header) with a new
/// span id for the hop to the upstream, or starts a trace. Always writes `traceparent`; writes B3
/// back in the form it came in.
pub fn propagate_trace(h: &mut HeaderMap, rng: &mut fastrand::Rng) {
    // (trace id, parent span, sampled)
    let mut trace: Option<(TraceId, Option<SpanId>, bool)> = None;
    // A client without trace headers (most) costs one pass, not four lookups.
    let incoming = h
        .keys()
        .any(|k| *k == TRACEPARENT || *k == B3 || *k == B3_TRACE);
    let get = |name: &HeaderName| if incoming { h.get(name) } else { None };
    if let Some(tp) = get(&TRACEPARENT) {
        let mut parts = tp.as_bytes().split(|b| *b == b'-');
        if let (Some(ver), Some(tid), Some(sid), Some(flags)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
            && is_hex(ver, 2)
            && ver != b"ff"
            && is_hex(tid, 32)
            && tid.iter().any(|b| *b != b'0')
            && is_hex(sid, 16)
            && sid.iter().any(|b| *b != b'0')
            && is_hex(flags, 2)
        {
            let flags = std::str::from_utf8(flags)
                .ok()
                .and_then(|f| u8::from_str_radix(f, 16).ok())
                .unwrap_or(0);
            trace = Some((trace_id_from(tid), Some(span_id_from(sid)), flags & 1 == 1));
        }
    }
    let mut b3_single = false;
    let mut b3_multi = false;
    if let Some(b3) = get(&B3) {
        let mut p = b3.as_bytes().split(|b| *b == b'-');
        if let (Some(tid), Some(sid)) = (p.next(), p.next())
            && (is_hex(tid, 32) || is_hex(tid, 16))
            && is_hex(sid, 16)
        {
            b3_single = true;
            if trace.is_none() {
                let sampled = p.next().is_none_or(|s| s == b"1" || s == b"d");
                trace = Some((trace_id_from(tid), Some(span_id_from(sid)), sampled));
            }
        }
    } else if let (Some(t), Some(s)) = (get(&B3_TRACE), get(&B3_SPAN))
        && (is_hex(t.as_bytes(), 32) || is_hex(t.as_bytes(), 16))
        && is_hex(s.as_bytes(), 16)
    {
        b3_multi = true;
        if trace.is_none() {
            let sampled = h.get(&B3_SAMPLED).is_none_or(|v| v.as_bytes() == b"1");
            trace = Some((
                trace_id_from(t.as_bytes()),
                Some(span_id_from(s.as_bytes())),
                sampled,
            ));
        }
    }
    let mut span: SpanId = [0u8; 16];
    hex_into(&mut span, u128::from(rng.u64(1..)), 16);
    let (trace_id, parent, sampled) = trace.unwrap_or_else(|| {
        let mut t: TraceId = [0u8; 32];
        hex_into(&mut t, rng.u128(1..), 32);
        (t, None, true)
    });
    // `00-{trace}-{span}-{flags}`, built on the stack: one allocation for the value.
    let mut tp = [0u8; 55];
    tp[..3].copy_from_slice(b"00-");
    tp[3..35].copy_from_slice(&trace_id);
    tp[35] = b'-';
    tp[36..52].copy_from_slice(&span);
    tp[52..].copy_from_slice(if sampled { b"-01" } else { b"-00" });
    h.insert(TRACEPARENT.clone(), owned_value(tp));
    if !(b3_single || b3_multi) {
        return;
    }
    let text = |b: &[u8]| std::str::from_utf8(b).expect("hex digits").to_owned();
    let (trace_id, span) = (text(&trace_id), text(&span));
    let parent = parent.map_or_else(String::new, |p| text(&p));
    let s = if sampled { "1" } else { "0" };
    if b3_single {
        if let Ok(v) = HeaderValue::try_from(format!("{trace_id}-{span}-{s}-{parent}")) {
            h.insert(B3.clone(), v);
        }
    } else {
        let pairs = [
            (&B3_TRACE, trace_id.as_str()),
            (&B3_SPAN, span.as_str()),
            (&B3_PARENT, parent.as_str()),
            (&B3_SAMPLED, s),
        ];
        for (n, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(n.clone(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_w3c() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        propagate_trace(&mut h, &mut fastrand::Rng::with_seed(1));
        let tp = h["traceparent"].to_str().unwrap();
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!tp.contains("00f067aa0ba902b7"));
        assert!(tp.ends_with("-01"));
    }

    #[test]
    fn continues_b3_multi() {
        let mut h = HeaderMap::new();
        h.insert("x-b3-traceid", HeaderValue::from_static("80f198ee56343ba8"));
        h.insert("x-b3-spanid", HeaderValue::from_static("e457b5a2e4d86bd1"));
        h.insert("x-b3-sampled", HeaderValue::from_static("1"));
        propagate_trace(&mut h, &mut fastrand::Rng::with_seed(1));
        assert_eq!(h["x-b3-traceid"], "000000000000000080f198ee56343ba8");
        assert_eq!(h["x-b3-parentspanid"], "e457b5a2e4d86bd1");
        assert_ne!(h["x-b3-spanid"], "e457b5a2e4d86bd1");
        assert!(
            h["traceparent"]
                .to_str()
                .unwrap()
                .contains("80f198ee56343ba8")
        );
    }

    #[test]
    fn rejects_bad_traceparent_and_starts_new() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-xyz-00f067aa0ba902b7-01"),
        );
        propagate_trace(&mut h, &mut fastrand::Rng::with_seed(1));
        let tp = h["traceparent"].to_str().unwrap();
        assert_eq!(tp.len(), 55);
        assert!(!tp.contains("xyz"));
    }

    #[test]
    fn strips_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none() && h.get("keep-alive").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("x-kept").is_some());
    }
}
