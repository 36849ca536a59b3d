//! Each predicate and each filter, through a real gateway to a real backend.

mod common;

use common::*;
use http::Request;
use http_body_util::Full;

fn cfg(backend: std::net::SocketAddr, routes: &str) -> String {
    routes.replace("BACKEND", &format!("http://{backend}"))
}

#[tokio::test]
async fn path_prefix_matches_on_segment_boundary() {
    let b = backend("b").await;
    let gw = start(&cfg(
        b.addr,
        r#"
routes:
  - id: api
    upstream: BACKEND
    predicates: { path_prefix: /api }
"#,
    ))
    .await;
    assert_eq!(get_path(gw.addr, "/api").await.status, 200);
    assert_eq!(
        get_path(gw.addr, "/api/x?q=1").await.json()["uri"],
        "/api/x?q=1"
    );
    assert_eq!(get_path(gw.addr, "/apix").await.status, 404);
}

#[tokio::test]
async fn path_pattern_captures_feed_set_path() {
    let b = backend("b").await;
    let gw = start(&cfg(
        b.addr,
        r#"
routes:
  - id: users
    upstream: BACKEND
    predicates: { path: "/users/{id}/files/{*rest}" }
    filters: [ { set_path: "/v2/u/{id}/f/{rest}" } ]
"#,
    ))
    .await;
    assert_eq!(
        get_path(gw.addr, "/users/42/files/a/b.txt?x=1")
            .await
            .json()["uri"],
        "/v2/u/42/f/a/b.txt?x=1"
    );
    assert_eq!(get_path(gw.addr, "/users/42").await.status, 404);
    assert_eq!(
        get_path(gw.addr, "/users//files/a").await.status,
        404,
        "empty segment is not a capture"
    );
}

#[tokio::test]
async fn host_predicate_exact_and_wildcard() {
    let b = backend("b").await;
    let gw = start(&cfg(
        b.addr,
        r#"
routes:
  - id: wild
    upstream: BACKEND
    predicates: { host: ["*.example.com"] }
    filters: [ { add_request_header: { name: x-route, value: wild } } ]
  - id: exact
    upstream: BACKEND
    predicates: { host: ["api.test"] }
    filters: [ { add_request_header: { name: x-route, value: exact } } ]
"#,
    ))
    .await;
    let r = send(
        get(gw.addr, "/")
            .header("host", "a.Example.com:8080")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.seen("x-route").as_deref(), Some("wild"));
    let r = send(
        get(gw.addr, "/")
            .header("host", "API.test")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.seen("x-route").as_deref(), Some("exact"));
    let r = send(
        get(gw.addr, "/")
            .header("host", "example.com")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.status, 404,
        "the wildcard needs a label before the suffix"
    );
}

#[tokio::test]
async fn method_header_query_cookie_predicates() {
    let b = backend("b").await;
    let gw = start(&cfg(
        b.addr,
        r#"
routes:
  - id: all
    upstream: BACKEND
    predicates:
      method: [POST, PUT]
      headers: [ { name: x-canary, regex: "yes|true" } ]
      query: [ { name: debug }, { name: v, regex: "[0-9]+" } ]
      cookies: [ { name: session, regex: "s-[a-z]+" } ]
"#,
    ))
    .await;
    let ok = || {
        Request::post(format!("http://{}/p?debug&v=12", gw.addr))
            .header("x-canary", "yes")
            .header("cookie", "a=1; session=s-abc")
    };
    assert_eq!(send(ok().body(Full::default()).unwrap()).await.status, 200);
    let get = Request::get(format!("http://{}/p?debug&v=12", gw.addr))
        .header("x-canary", "yes")
        .header("cookie", "session=s-abc");
    assert_eq!(
        send(get.body(Full::default()).unwrap()).await.status,
        404,
        "method"
    );
    let r = ok().header("x-canary", "yess");
    // Two values: one matches, so the route still matches.
    assert_eq!(send(r.body(Full::default()).unwrap()).await.status, 200);
    let r = Request::post(format!("http://{}/p?debug&v=12", gw.addr))
        .header("x-canary", "yess")
        .header("cookie", "session=s-abc");
    assert_eq!(
        send(r.body(Full::default()).unwrap()).await.status,
        404,
        "regex is anchored"
    );
    let r = Request::post(format!("http://{}/p?v=12", gw.addr))
        .header("x-canary", "yes")
        .header("cookie", "session=s-abc");
    assert_eq!(
        send(r.body(Full::default()).unwrap()).await.status,
        404,
        "query debug missing"
    );
    let r = Request::post(format!("http://{}/p?debug&v=x", gw.addr))
        .header("x-canary", "yes")
        .header("cookie", "session=s-abc");
    assert_eq!(
        send(r.body(Full::default()).unwrap()).await.status,
        404,
        "query v not numeric"
    );
    let r = Request::post(format!("http://{}/p?debug&v=1", gw.addr))
        .header("x-canary", "yes")
        .header("cookie", "session=S-ABC");
    assert_eq!(
        send(r.body(Full::default()).unwrap()).await.status,
        404,
        "cookie regex"
    );
}

#[tokio::test]
async fn weighted_split_follows_weights() {
    let blue = backend("blue").await;
    let green = backend("green").await;
    let yaml = format!(
        r#"
routes:
  - id: blue
    upstream: http://{}
    predicates: {{ path_prefix: /, weight: {{ group: g, weight: 80 }} }}
  - id: green
    upstream: http://{}
    predicates: {{ path_prefix: /, weight: {{ group: g, weight: 20 }} }}
"#,
        blue.addr, green.addr
    );
    let gw = start(&yaml).await;
    let c = client();
    let mut green_hits = 0;
    for _ in 0..400 {
        let r = send_with(&c, get(gw.addr, "/").body(Full::default()).unwrap()).await;
        assert_eq!(r.status, 200, "every request lands in the group");
        if r.json()["backend"] == "green" {
            green_hits += 1;
        }
    }
    // 20% of 400 = 80; a seeded draw, bounds wide enough for any fair RNG (p < 1e-6).
    assert!(
        (40..=125).contains(&green_hits),
        "green got {green_hits} of 400"
    );
    assert_eq!(
        blue.hits.load(std::sync::atomic::Ordering::SeqCst) + green_hits,
        400
    );
}

#[tokio::test]
async fn first_matching_route_wins() {
    let b = backend("b").await;
    let gw = start(&cfg(
        b.addr,
        r#"
routes:
  - id: specific
    upstream: BACKEND
    predicates: { path_prefix: /a/b }
    filters: [ { add_request_header: { name: x-route, value: specific } } ]
  - id: general
    upstream: BACKEND
    predicates: { path_prefix: /a }
    filters: [ { add_request_header: { name: x-route, value: general } } ]
"#,
    ))
    .await;
    assert_eq!(
        get_path(gw.addr, "/a/b/c").await.seen("x-route").as_deref(),
        Some("specific")
    );
    assert_eq!(
        get_path(gw.addr, "/a/c").await.seen("x-route").as_deref(),
        Some("general")
    );
}

#[tokio::test]
async fn header_filters_on_request_and_response() {
    let b = backend("b").await;
    let gw = start(&cfg(
        b.addr,
        r#"
routes:
  - id: h
    upstream: BACKEND
    filters:
      - add_request_header: { name: x-add, value: added }
      - set_request_header: { name: x-set, value: replaced }
      - remove_request_header: x-remove
      - add_response_header: { name: x-resp-add, value: r1 }
      - set_response_header: { name: content-type, value: text/x-set }
      - remove_response_header: x-backend-header
"#,
    ))
    .await;
    let r = send(
        get(gw.addr, "/hop")
            .header("x-add", "original")
            .header("x-set", "original")
            .header("x-remove", "gone")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let j = r.json();
    assert_eq!(
        j["headers"]["x-add"],
        serde_json::json!(["original", "added"])
    );
    assert_eq!(j["headers"]["x-set"], serde_json::json!(["replaced"]));
    assert!(j["headers"].get("x-remove").is_none());
    assert_eq!(r.headers["x-resp-add"], "r1");
    assert_eq!(r.headers["content-type"], "text/x-set");
    assert!(r.headers.get("x-backend-header").is_none());
}

#[tokio::test]
async fn path_filters_strip_prefix_and_rewrite() {
    let b = backend("b").await;
    let gw = start(&cfg(
        b.addr,
        r#"
routes:
  - id: strip
    upstream: BACKEND
    predicates: { path_prefix: /strip }
    filters: [ { strip_prefix: 2 } ]
  - id: prefix
    upstream: BACKEND
    predicates: { path_prefix: /pre }
    filters: [ { prefix_path: /base } ]
  - id: rewrite
    upstream: BACKEND
    predicates: { path_prefix: /old }
    filters: [ { rewrite_path: { regex: "^/old/(?P<rest>.*)$", replacement: "/new/$rest" } } ]
"#,
    ))
    .await;
    assert_eq!(
        get_path(gw.addr, "/strip/v1/items?x=1").await.json()["uri"],
        "/items?x=1"
    );
    assert_eq!(get_path(gw.addr, "/strip/v1").await.json()["uri"], "/");
    assert_eq!(
        get_path(gw.addr, "/pre/x").await.json()["uri"],
        "/base/pre/x"
    );
    assert_eq!(
        get_path(gw.addr, "/old/a/b").await.json()["uri"],
        "/new/a/b"
    );
}

#[tokio::test]
async fn redirect_and_fixed_response_answer_without_upstream() {
    let b = backend("b").await;
    let gw = start(&cfg(b.addr, r#"
routes:
  - id: moved
    upstream: BACKEND
    predicates: { path_prefix: /old-site }
    filters:
      - redirect: { status: 301, location: "https://new.example/" }
      - add_response_header: { name: x-note, value: moved }
  - id: teapot
    upstream: BACKEND
    predicates: { path_prefix: /tea }
    filters:
      - fixed_response: { status: 418, body: "short and stout", headers: [ { name: x-fixed, value: "1" } ] }
"#)).await;
    let r = get_path(gw.addr, "/old-site/page").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://new.example/");
    assert_eq!(
        r.headers["x-note"], "moved",
        "response filters apply to answers"
    );
    let r = get_path(gw.addr, "/tea").await;
    assert_eq!(r.status, 418);
    assert_eq!(r.body, "short and stout");
    assert_eq!(r.headers["x-fixed"], "1");
    assert_eq!(
        b.hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the backend was never called"
    );
}

#[tokio::test]
async fn api_key_filter_guards_a_route_and_is_not_forwarded() {
    let b = backend("b").await;
    let gw = start(&cfg(
        b.addr,
        r#"
routes:
  - id: keyed
    upstream: BACKEND
    filters: [ { api_key: { keys: [ "k-one", "k-two" ] } } ]
"#,
    ))
    .await;
    assert_eq!(get_path(gw.addr, "/").await.status, 401);
    let bad = send(
        get(gw.addr, "/")
            .header("x-api-key", "k-on")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.headers["www-authenticate"], "ApiKey");
    let ok = send(
        get(gw.addr, "/")
            .header("x-api-key", "k-two")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert!(
        ok.seen("x-api-key").is_none(),
        "the key must not reach the upstream"
    );
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

fn hs256(secret: &[u8], claims: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::Mac;
    let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(claims);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{h}.{p}").as_bytes());
    format!(
        "{h}.{p}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn jwt_filter_accepts_valid_tokens_only() {
    let b = backend("b").await;
    let gw = start(&cfg(b.addr, r#"
routes:
  - id: jwt
    upstream: BACKEND
    filters: [ { jwt: { secret: "0123456789abcdef-route-secret", issuer: palisade, audience: api } } ]
"#)).await;
    let secret = b"0123456789abcdef-route-secret";
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let good = hs256(
        secret,
        &format!(r#"{{"iss":"palisade","aud":"api","exp":{exp}}}"#),
    );
    let bearer = |t: &str| {
        send(
            get(gw.addr, "/")
                .header("authorization", format!("Bearer {t}"))
                .body(Full::default())
                .unwrap(),
        )
    };
    assert_eq!(bearer(&good).await.status, 200);
    let expired = hs256(secret, r#"{"iss":"palisade","aud":"api","exp":1000}"#);
    assert_eq!(bearer(&expired).await.status, 401);
    let wrong_key = hs256(
        b"another-secret-of-enough-len",
        &format!(r#"{{"iss":"palisade","aud":"api","exp":{exp}}}"#),
    );
    assert_eq!(bearer(&wrong_key).await.status, 401);
    let wrong_aud = hs256(
        secret,
        &format!(r#"{{"iss":"palisade","aud":"web","exp":{exp}}}"#),
    );
    assert_eq!(bearer(&wrong_aud).await.status, 401);
    // alg=none with the signature dropped.
    let none = format!("eyJhbGciOiJub25lIn0.{}.", good.split('.').nth(1).unwrap());
    let r = bearer(&none).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(get_path(gw.addr, "/").await.status, 401);
    assert_eq!(
        b.hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the valid token got through"
    );
}
