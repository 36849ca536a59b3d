//! Proxy headers: hop-by-hop stripping, `X-Forwarded-*`/`Forwarded`, request id, and trace
//! context (W3C `traceparent` and Zipkin B3).

use std::net::SocketAddr;

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

/// Removes hop-by-hop headers: those named by `Connection`, and the standard list.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
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
    for n in [
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_HOST,
        &FORWARDED,
    ] {
        h.remove(n);
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
    let ip = client.ip();
    let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip.to_string(),
    };
    if let Ok(v) = HeaderValue::try_from(xff) {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = host
        && !h.contains_key(&X_FORWARDED_HOST)
    {
        h.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    let node = if ip.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip.to_string()
    };
    let mut fwd = format!("for={node};proto={proto}");
    if let Some(host) = host.and_then(|v| v.to_str().ok()) {
        // Quoted-string: a host may hold ':'; refuse any quote or backslash rather than escape.
        if !host.contains(['"', '\\']) {
            fwd.push_str(";host=\"");
            fwd.push_str(host);
            fwd.push('"');
        }
    }
    if let Ok(v) = HeaderValue::try_from(fwd) {
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

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
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
    let v = HeaderValue::from_bytes(&buf).expect("hex digits are a valid header value");
    h.insert(X_REQUEST_ID.clone(), v.clone());
    v
}

/// Continues the caller's trace (W3C `traceparent`, else B3 single or multi header) with a new
/// span id for the hop to the upstream, or starts a trace. Always writes `traceparent`; writes B3
/// back in the form it came in.
pub fn propagate_trace(h: &mut HeaderMap, rng: &mut fastrand::Rng) {
    let mut trace: Option<(String, String, bool)> = None; // (32-hex trace id, parent span, sampled)
    if let Some(tp) = h.get(&TRACEPARENT).and_then(|v| v.to_str().ok()) {
        let parts: Vec<&str> = tp.split('-').collect();
        if parts.len() >= 4
            && is_hex(parts[0], 2)
            && parts[0] != "ff"
            && is_hex(parts[1], 32)
            && parts[1] != "0".repeat(32)
            && is_hex(parts[2], 16)
            && parts[2] != "0".repeat(16)
            && is_hex(parts[3], 2)
        {
            let flags = u8::from_str_radix(parts[3], 16).unwrap_or(0);
            trace = Some((parts[1].to_owned(), parts[2].to_owned(), flags & 1 == 1));
        }
    }
    let mut b3_single = false;
    let mut b3_multi = false;
    if let Some(b3) = h.get(&B3).and_then(|v| v.to_str().ok()) {
        let p: Vec<&str> = b3.split('-').collect();
        if p.len() >= 2 && (is_hex(p[0], 32) || is_hex(p[0], 16)) && is_hex(p[1], 16) {
            b3_single = true;
            if trace.is_none() {
                let sampled = p.get(2).is_none_or(|s| *s == "1" || *s == "d");
                trace = Some((format!("{:0>32}", p[0]), p[1].to_owned(), sampled));
            }
        }
    } else if let (Some(t), Some(s)) = (
        h.get(&B3_TRACE).and_then(|v| v.to_str().ok()),
        h.get(&B3_SPAN).and_then(|v| v.to_str().ok()),
    ) && (is_hex(t, 32) || is_hex(t, 16))
        && is_hex(s, 16)
    {
        b3_multi = true;
        if trace.is_none() {
            let sampled = h.get(&B3_SAMPLED).is_none_or(|v| v.as_bytes() == b"1");
            trace = Some((format!("{t:0>32}"), s.to_owned(), sampled));
        }
    }
    let mut span = [0u8; 16];
    hex_into(&mut span, u128::from(rng.u64(1..)), 16);
    let span = std::str::from_utf8(&span).expect("hex digits");
    let (trace_id, parent, sampled) = trace.unwrap_or_else(|| {
        let mut t = [0u8; 32];
        hex_into(&mut t, rng.u128(1..), 32);
        (
            String::from_utf8_lossy(&t).into_owned(),
            String::new(),
            true,
        )
    });
    let flags = if sampled { "01" } else { "00" };
    if let Ok(v) = HeaderValue::try_from(format!("00-{trace_id}-{span}-{flags}")) {
        h.insert(TRACEPARENT.clone(), v);
    }
    let s = if sampled { "1" } else { "0" };
    if b3_single {
        if let Ok(v) = HeaderValue::try_from(format!("{trace_id}-{span}-{s}-{parent}")) {
            h.insert(B3.clone(), v);
        }
    } else if b3_multi {
        let pairs = [
            (&B3_TRACE, trace_id.as_str()),
            (&B3_SPAN, span),
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
