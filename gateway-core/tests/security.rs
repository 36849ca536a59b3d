//! Hostile requests: smuggling, oversized heads and bodies, and path tricks that try to slip
//! past a route.

mod common;

use common::*;

/// `/admin` is closed (a fixed 403 stands in for an auth filter); `/public` goes to the backend.
fn guarded(backend: std::net::SocketAddr) -> String {
    format!(
        r#"
limits:
  max_header_count: 20
  max_header_bytes: 8192
  max_body_bytes: 1000
routes:
  - id: admin
    upstream: http://{backend}
    predicates: {{ path_prefix: /admin }}
    filters: [ {{ fixed_response: {{ status: 403, body: "forbidden" }} }} ]
  - id: public
    upstream: http://{backend}
    predicates: {{ path_prefix: / }}
"#
    )
}

fn req(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn encoded_dot_segments_cannot_bypass_a_route() {
    let b = backend("b").await;
    let gw = start(&guarded(b.addr)).await;
    for path in [
        "/public/../admin/secret",
        "/public/%2e%2e/admin/secret",
        "/public/%2E%2E/admin/secret",
        "/public/.%2e/admin/secret",
        "//admin/secret",
        "/./admin/secret",
        "/%61dmin/secret",
        "/public/./../admin",
    ] {
        let resp = raw(gw.addr, &req(path)).await;
        assert_eq!(
            raw_status(&resp),
            403,
            "{path} slipped past the admin route: {resp}"
        );
    }
    for path in [
        "/public/..%2fadmin",
        "/public/%2e%2e%2fadmin",
        "/public%5c..%5cadmin",
        "/a%00b",
        "/../admin",
        "/%2e%2e/admin",
    ] {
        let resp = raw(gw.addr, &req(path)).await;
        assert_eq!(raw_status(&resp), 400, "{path}: {resp}");
    }
    assert_eq!(
        b.hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing reached the backend"
    );
    // The backend receives the normalised path.
    let resp = raw(gw.addr, &req("/public/a//b/./c/../d")).await;
    assert!(resp.contains("\"uri\":\"/public/a/b/d\""), "{resp}");
}

#[tokio::test]
async fn conflicting_content_length_and_transfer_encoding_cannot_smuggle() {
    let b = backend("b").await;
    let gw = start(&guarded(b.addr)).await;
    // hyper's parser resolves CL+TE as RFC 9112 6.3 allows: it drops Content-Length, decodes
    // the chunked body and closes the connection after answering, so the request hidden after
    // the chunked terminator is never parsed.
    let smuggle = b"POST /public/first HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let resp = raw(gw.addr, smuggle).await;
    assert_eq!(
        resp.matches("HTTP/1.1 ").count(),
        1,
        "exactly one response: {resp}"
    );
    assert!(
        resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );
    assert!(!resp.contains("smuggled"), "{resp}");
    let body = resp.split_once("\r\n\r\n").unwrap().1;
    let j: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(j["uri"], "/public/first");
    assert!(
        j["headers"].get("content-length").is_none() || j["headers"]["content-length"][0] == "0",
        "{j}"
    );
    assert_eq!(j["body"], "");
    assert_eq!(
        b.hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the smuggled request never reached the backend"
    );

    let dup = b"POST /public HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde";
    assert_eq!(raw_status(&raw(gw.addr, dup).await), 400);
    let bad_te = b"POST /public HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, identity\r\nConnection: close\r\n\r\n0\r\n\r\n";
    assert_eq!(raw_status(&raw(gw.addr, bad_te).await), 400);
    let two_te = b"POST /public HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n";
    assert_eq!(raw_status(&raw(gw.addr, two_te).await), 400);
    let te_10 = b"POST /public HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(raw_status(&raw(gw.addr, te_10).await), 400);
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_refused() {
    let b = backend("b").await;
    let gw = start(&guarded(b.addr)).await;
    let mut many = String::from("GET /public HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..30 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(raw_status(&raw(gw.addr, many.as_bytes()).await), 431);
    let big = format!(
        "GET /public HTTP/1.1\r\nHost: x\r\nx-big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20_000)
    );
    let resp = raw(gw.addr, big.as_bytes()).await;
    assert_eq!(raw_status(&resp), 431, "{}", &resp[..resp.len().min(200)]);
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// The default limit (100 headers) is hyper's own, so the server leaves it to hyper: check that
/// it still holds.
#[tokio::test]
async fn the_default_header_count_limit_is_100() {
    let b = backend("b").await;
    let gw = start(&format!(
        "routes:\n  - id: r\n    upstream: http://{}\n",
        b.addr
    ))
    .await;
    let with_headers = |n: usize| {
        // Host and Connection count too.
        let mut r = String::from("GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for i in 0..n - 2 {
            r.push_str(&format!("x-h{i}: v\r\n"));
        }
        r.push_str("\r\n");
        r
    };
    // (90: the gateway adds its own headers, and the test backend has hyper's limit too.)
    assert_eq!(
        raw_status(&raw(gw.addr, with_headers(90).as_bytes()).await),
        200
    );
    assert_eq!(
        raw_status(&raw(gw.addr, with_headers(101).as_bytes()).await),
        431
    );
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let b = backend("b").await;
    let gw = start(&guarded(b.addr)).await;
    let declared =
        b"POST /public HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(&raw(gw.addr, declared).await), 413);
    assert_eq!(
        b.hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "refused before any upstream call"
    );
    // Chunked: no length up front; cut off once the stream passes the limit.
    let mut chunked = b"POST /public HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 600, "z".repeat(600)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let resp = raw(gw.addr, &chunked).await;
    assert_eq!(raw_status(&resp), 413, "{resp}");
    // Within the limit is fine.
    let ok =
        b"POST /public HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
    let resp = raw(gw.addr, ok).await;
    assert_eq!(raw_status(&resp), 200);
    assert!(resp.contains("\"body\":\"abc\""));
}

#[tokio::test]
async fn absolute_form_and_garbage_request_lines() {
    let b = backend("b").await;
    let gw = start(&guarded(b.addr)).await;
    // Absolute-form targets are matched on their path too.
    let resp = raw(
        gw.addr,
        b"GET http://evil.example/admin/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 403, "{resp}");
    let resp = raw(gw.addr, b"GET /pub lic HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(raw_status(&resp), 400, "{resp}");
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn slow_header_senders_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = backend("b").await;
    let yaml = format!(
        "limits: {{ header_read_timeout: 300ms }}\nroutes:\n  - id: r\n    upstream: http://{}\n",
        b.addr
    );
    let gw = start(&yaml).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // Half a request head, then silence.
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("the gateway kept a slow client's connection open");
    assert!(n.is_ok() || buf.is_empty());
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250),
        "closed too early"
    );
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}
