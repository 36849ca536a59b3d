//! Proxy behaviour: proxy headers, trace context, streaming, protocols, upstream failures and the
//! `lb://` service hook.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade_gateway::upstream::{UpstreamResolver, UpstreamService};
use tokio::sync::mpsc;

fn one_route(backend: std::net::SocketAddr, extra: &str) -> String {
    format!("routes:\n  - id: r\n    upstream: http://{backend}\n{extra}")
}

#[tokio::test]
async fn forwarded_headers_and_request_id() {
    let b = backend("b").await;
    let gw = start(&one_route(b.addr, "")).await;
    let r = send(
        get(gw.addr, "/x")
            .header("host", "front.example:8443")
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-host", "spoofed.example")
            .header("forwarded", "for=203.0.113.9")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    // At the edge the client's claims are dropped, not extended.
    assert_eq!(r.seen("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.seen("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        r.seen("x-forwarded-host").as_deref(),
        Some("front.example:8443")
    );
    assert_eq!(
        r.json()["headers"]["forwarded"],
        serde_json::json!(["for=127.0.0.1;proto=http;host=\"front.example:8443\""])
    );
    assert_eq!(
        r.seen("host"),
        Some(b.addr.to_string()),
        "upstream authority by default"
    );
    let id = r.seen("x-request-id").expect("a request id is generated");
    assert_eq!(id.len(), 32);
    assert_eq!(
        r.headers["x-request-id"],
        id.as_str(),
        "and echoed to the client"
    );

    let r = send(
        get(gw.addr, "/x")
            .header("x-request-id", "abc-123")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.seen("x-request-id").as_deref(),
        Some("abc-123"),
        "a sane incoming id is kept"
    );
    assert_eq!(r.headers["x-request-id"], "abc-123");
}

#[tokio::test]
async fn trusted_forwarded_headers_are_appended_to() {
    let b = backend("b").await;
    let gw = start(&format!("trust_forwarded: true\n{}", one_route(b.addr, ""))).await;
    let r = send(
        get(gw.addr, "/x")
            .header("x-forwarded-for", "203.0.113.9")
            .header("forwarded", "for=203.0.113.9")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.seen("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(r.json()["headers"]["forwarded"][0], "for=203.0.113.9");
    assert!(
        r.json()["headers"]["forwarded"][1]
            .as_str()
            .unwrap()
            .starts_with("for=127.0.0.1;proto=http")
    );
}

#[tokio::test]
async fn preserve_host_sends_the_client_host() {
    let b = backend("b").await;
    let gw = start(&one_route(b.addr, "    preserve_host: true\n")).await;
    let r = send(
        get(gw.addr, "/")
            .header("host", "front.example")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.seen("host").as_deref(), Some("front.example"));
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let b = backend("b").await;
    let gw = start(&one_route(b.addr, "")).await;
    let resp = raw(
        gw.addr,
        b"GET /hop HTTP/1.1\r\nHost: x\r\nConnection: close, x-private\r\nx-private: secret\r\nKeep-Alive: timeout=9\r\nProxy-Authorization: Basic Zm9v\r\nTE: trailers\r\nUpgrade: foo\r\nx-kept: yes\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let j: serde_json::Value = serde_json::from_str(body).unwrap();
    for h in [
        "x-private",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert!(
            j["headers"].get(h).is_none(),
            "{h} reached the backend: {j}"
        );
    }
    assert_eq!(j["headers"]["x-kept"][0], "yes");
    let head = head.to_ascii_lowercase();
    assert!(
        !head.contains("x-hop-secret"),
        "response header named by Connection leaked: {head}"
    );
    assert!(!head.contains("keep-alive: timeout=5"), "{head}");
    assert!(head.contains("x-backend-header: kept"));
}

#[tokio::test]
async fn trace_context_w3c_and_b3_is_continued() {
    let b = backend("b").await;
    let gw = start(&one_route(b.addr, "")).await;
    let r = send(
        get(gw.addr, "/")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("tracestate", "vendor=1")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let tp = r.seen("traceparent").unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(tp.ends_with("-01"));
    assert_ne!(&tp[36..52], "00f067aa0ba902b7", "a new span id for the hop");
    assert_eq!(r.seen("tracestate").as_deref(), Some("vendor=1"));

    let r = send(
        get(gw.addr, "/")
            .header("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let b3 = r.seen("b3").unwrap();
    let parts: Vec<&str> = b3.split('-').collect();
    assert_eq!(parts[0], "80f198ee56343ba864fe8b2a57d3eff7");
    assert_ne!(parts[1], "e457b5a2e4d86bd1");
    assert_eq!(parts[2], "1");
    assert_eq!(
        parts[3], "e457b5a2e4d86bd1",
        "the caller's span becomes the parent"
    );
    assert!(
        r.seen("traceparent")
            .unwrap()
            .contains("80f198ee56343ba864fe8b2a57d3eff7")
    );

    let r = get_path(gw.addr, "/").await;
    let tp = r.seen("traceparent").expect("a trace is started");
    assert_eq!(tp.len(), 55);
}

#[tokio::test]
async fn response_body_streams_before_the_upstream_finishes() {
    let b = backend("b").await;
    let gw = start(&one_route(b.addr, "")).await;
    let resp = tokio::time::timeout(
        WAIT,
        client().request(get(gw.addr, "/stream-down").body(Full::default()).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let mut body = resp.into_body();
    let first = tokio::time::timeout(WAIT, body.frame())
        .await
        .expect("first chunk held back")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first;");
    // Only now does the backend send the rest: a buffering proxy would have deadlocked above.
    b.release.notify_one();
    let rest = tokio::time::timeout(WAIT, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(rest, "second");
}

#[tokio::test]
async fn request_body_streams_to_the_upstream() {
    let b = backend("b").await;
    let gw = start(&one_route(b.addr, "")).await;
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let c: Client<_, ChannelBody> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(format!("http://{}/stream-up", gw.addr))
        .body(ChannelBody(rx))
        .unwrap();
    let pending = tokio::spawn(async move { c.request(req).await });
    tx.send(Bytes::from_static(b"hello ")).await.unwrap();
    let first = tokio::time::timeout(WAIT, async { b.first_chunk.lock().await.recv().await })
        .await
        .expect("backend saw no chunk while the client was still sending")
        .unwrap();
    assert_eq!(first, "hello ");
    tx.send(Bytes::from_static(b"world")).await.unwrap();
    drop(tx);
    let resp = tokio::time::timeout(WAIT, pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "received 11");
}

#[tokio::test]
async fn post_body_is_forwarded() {
    let b = backend("b").await;
    let gw = start(&one_route(b.addr, "")).await;
    let r = send(
        Request::post(format!("http://{}/echo", gw.addr))
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["body"], "payload");
    assert_eq!(r.json()["method"], "POST");
}

#[tokio::test]
async fn h2c_upstream_and_h2c_client() {
    let b = backend("b").await;
    let gw = start(&one_route(b.addr, "    protocol: h2c\n")).await;
    // HTTP/1.1 in, h2c out.
    let r = get_path(gw.addr, "/v").await;
    assert_eq!(r.json()["version"], "HTTP/2.0");
    // h2c in (prior knowledge), h2c out.
    let c: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let r = send_with(&c, get(gw.addr, "/v").body(Full::default()).unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], "HTTP/2.0");

    // h2c in, HTTP/1.1 out.
    let b1 = backend("b1").await;
    let gw1 = start(&one_route(b1.addr, "")).await;
    let r = send_with(&c, get(gw1.addr, "/v").body(Full::default()).unwrap()).await;
    assert_eq!(r.json()["version"], "HTTP/1.1");
    assert_eq!(r.seen("host"), Some(b1.addr.to_string()));
}

#[tokio::test]
async fn upstream_connections_are_pooled_across_client_connections() {
    let b = backend("b").await;
    let gw = start(&one_route(b.addr, "")).await;
    let mut peers = std::collections::BTreeSet::new();
    // Sequential requests from three separate client connections: one upstream connection.
    for _ in 0..3 {
        let c = client();
        for _ in 0..5 {
            let r = send_with(&c, get(gw.addr, "/").body(Full::default()).unwrap()).await;
            assert_eq!(r.status, 200);
            peers.insert(r.json()["peer"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(peers.len(), 1, "upstream connections used: {peers:?}");
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), 15);
}

#[tokio::test]
async fn slow_upstream_times_out_with_504() {
    let b = backend("b").await;
    let gw = start(&one_route(b.addr, "    timeout: 200ms\n")).await;
    let started = std::time::Instant::now();
    let r = get_path(gw.addr, "/hang").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(
        b.hung.lock().await.try_recv().is_ok(),
        "the request did reach the backend"
    );
    let stats = gw.gateway.route_stats();
    assert_eq!(stats[0].1[4], 1, "counted as a 5xx");
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    // A port that was just free: bind, read the port, drop.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = start(&one_route(port, "")).await;
    let r = get_path(gw.addr, "/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn upstream_status_is_passed_through() {
    let b = backend("b").await;
    let gw = start(&one_route(b.addr, "")).await;
    let r = get_path(gw.addr, "/status/503").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "status 503");
}

/// What a registry client + balancer will provide: a service per name. Here it forwards to a
/// fixed backend with the gateway's shared pool.
struct StaticResolver {
    client: palisade_gateway::upstream::HttpClient,
    target: std::net::SocketAddr,
}

impl UpstreamResolver for StaticResolver {
    fn resolve(&self, name: &str) -> Option<UpstreamService> {
        if name != "catalog" {
            return None;
        }
        let client = self.client.clone();
        let target = self.target;
        Some(UpstreamService::new(tower::service_fn(
            move |mut req: Request<palisade_gateway::body::RequestBody>| {
                let client = client.clone();
                async move {
                    let pq = req
                        .uri()
                        .path_and_query()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default();
                    *req.uri_mut() = format!("http://{target}{pq}").parse().unwrap();
                    let r: Response<Incoming> = client.request(req).await?;
                    Ok(r)
                }
            },
        )))
    }
}

#[tokio::test]
async fn lb_upstream_goes_through_the_resolver_service() {
    let b = backend("b").await;
    let yaml =
        "routes:\n  - id: c\n    upstream: lb://catalog\n    filters: [ { strip_prefix: 1 } ]\n";
    let cfg = parse(yaml);
    // Without a resolver, lb:// is refused with the key.
    let err = palisade_gateway::Gateway::builder(cfg.clone())
        .build()
        .unwrap_err();
    assert_eq!(err.key(), "routes[0].upstream");
    assert!(err.message().contains("resolver"), "{err}");

    let probe = palisade_gateway::Gateway::builder(parse("routes: []"))
        .build()
        .unwrap();
    let resolver = Arc::new(StaticResolver {
        client: probe.http_client(),
        target: b.addr,
    });
    let gw = start_with(cfg, |bld| bld.resolver(resolver.clone())).await;
    let r = get_path(gw.addr, "/api/items?x=1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["uri"], "/items?x=1");

    let bad = parse("routes:\n  - id: c\n    upstream: lb://nope\n");
    let err = palisade_gateway::Gateway::builder(bad)
        .resolver(resolver)
        .build()
        .unwrap_err();
    assert!(err.message().contains("unknown service `nope`"), "{err}");
}

#[tokio::test]
async fn upgrade_is_tunnelled_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = backend("b").await;
    let gw = start(&one_route(b.addr, "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, s.read_exact(&mut byte))
            .await
            .expect("no 101")
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    for msg in [&b"ping"[..], b"second frame"] {
        s.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; 5 + msg.len()];
        tokio::time::timeout(WAIT, s.read_exact(&mut buf))
            .await
            .expect("no echo")
            .unwrap();
        assert_eq!(&buf[..5], b"echo:");
        assert_eq!(&buf[5..], msg);
    }
}

#[tokio::test]
async fn upgrade_without_connection_upgrade_is_not_forwarded() {
    let b = backend("b").await;
    let gw = start(&one_route(b.addr, "")).await;
    // `Upgrade` alone is hop-by-hop noise: stripped, so the backend sees a plain request.
    let resp = raw(
        gw.addr,
        b"GET /plain HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(!resp.contains("\"upgrade\""), "{resp}");
}

/// Thread per core: two workers, each a single-threaded runtime on its own `SO_REUSEPORT`
/// listener of one port, both serve; the kernel spreads connections between them.
#[tokio::test]
async fn reuseport_workers_share_one_port() {
    let b = backend("b").await;
    let first = palisade_gateway::reuseport_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = first.local_addr().unwrap();
    let second = palisade_gateway::reuseport_listener(addr).unwrap();
    let mut stops = Vec::new();
    let mut workers = Vec::new();
    for (name, listener) in [("one", first), ("two", second)] {
        // Each worker tags its answers, so the test sees which one served.
        let cfg = parse(&one_route(
            b.addr,
            &format!(
                "    filters: [ {{ set_response_header: {{ name: x-worker, value: {name} }} }} ]\n"
            ),
        ));
        let gateway = palisade_gateway::Gateway::builder(cfg.clone())
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(tx);
        workers.push(std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let stop = async move {
                        let _ = rx.await;
                    };
                    palisade_gateway::serve(listener, gateway, cfg.limits, stop, WAIT).await
                })
        }));
    }
    let mut served = std::collections::HashMap::<String, usize>::new();
    // A new connection per request (`raw` closes it): 64 four-tuples, so the chance that the
    // kernel's hash sends them all to one listener is 2^-63.
    for _ in 0..64 {
        let resp = raw(
            addr,
            b"GET /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(raw_status(&resp), 200, "{resp}");
        let worker = resp
            .lines()
            .find_map(|l| l.strip_prefix("x-worker: "))
            .expect("tagged by a worker")
            .to_owned();
        *served.entry(worker).or_default() += 1;
    }
    assert_eq!(served.len(), 2, "both workers served: {served:?}");
    for tx in stops {
        let _ = tx.send(());
    }
    for w in workers {
        assert_eq!(w.join().unwrap().unwrap(), 0, "drained cleanly");
    }
}
