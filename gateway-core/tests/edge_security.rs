//! Edge security through a real gateway and backend on loopback: JWT RS256/ES256 from a JWKS
//! file (tokens signed with real keys), CORS answered at the edge, and trusted proxies.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use palisade_gateway::Gateway;
use palisade_gateway::config::GatewayConfig;
use palisade_gateway::jwt::{Jwks, JwtError, JwtValidator};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use std::sync::atomic::Ordering;

const NOW: u64 = 2_000_000_000;

struct Keys {
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    /// A second EC key that is not in the JWKS.
    ec_stranger: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Keys {
    fn new() -> Self {
        let rng = SystemRandom::new();
        // ring cannot generate RSA keys: a 2048-bit key made with `openssl genpkey` for these
        // tests. The EC keys are generated here.
        let pem = PrivatePkcs8KeyDer::from_pem_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/jwt-rsa2048.pk8.pem"
        ))
        .unwrap();
        let rsa = RsaKeyPair::from_pkcs8(pem.secret_pkcs8_der()).unwrap();
        let ec = |rng: &SystemRandom| {
            let pk8 =
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, rng)
                    .unwrap();
            EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                pk8.as_ref(),
                rng,
            )
            .unwrap()
        };
        Keys {
            ec: ec(&rng),
            ec_stranger: ec(&rng),
            rsa,
            rng,
        }
    }

    fn jwks(&self) -> String {
        let pc = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(self.rsa.public());
        let point = self.ec.public_key().as_ref();
        serde_json::json!({ "keys": [
            { "kty": "RSA", "kid": "rsa1", "use": "sig", "alg": "RS256",
              "n": URL_SAFE_NO_PAD.encode(&pc.n), "e": URL_SAFE_NO_PAD.encode(&pc.e) },
            { "kty": "EC", "kid": "ec1", "crv": "P-256",
              "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]) },
            { "kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" },
            { "kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB" }
        ]})
        .to_string()
    }

    fn token(&self, header: serde_json::Value, claims: serde_json::Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let msg = format!("{h}.{p}");
        let sig = match header["alg"].as_str().unwrap() {
            "RS256" => {
                let mut s = vec![0; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(
                        &signature::RSA_PKCS1_SHA256,
                        &self.rng,
                        msg.as_bytes(),
                        &mut s,
                    )
                    .unwrap();
                s
            }
            "ES256" if header["kid"] == "stranger" => self
                .ec_stranger
                .sign(&self.rng, msg.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            "ES256" => self
                .ec
                .sign(&self.rng, msg.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            "HS256" => {
                // Algorithm confusion: HMAC keyed with the public JWKS text.
                use hmac::Mac;
                let mut m =
                    hmac::Hmac::<sha2::Sha256>::new_from_slice(self.jwks().as_bytes()).unwrap();
                m.update(msg.as_bytes());
                m.finalize().into_bytes().to_vec()
            }
            _ => Vec::new(),
        };
        format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

fn claims() -> serde_json::Value {
    serde_json::json!({ "iss": "idp", "aud": ["api"], "exp": NOW + 60, "sub": "u1" })
}

#[test]
fn jwks_tokens_are_checked_by_key_type_kid_and_claims() {
    let k = Keys::new();
    let v = JwtValidator::with_jwks(
        Jwks::from_json(&k.jwks()).unwrap(),
        Some("idp".into()),
        Some("api".into()),
        true,
        0,
    );
    let t = |h: serde_json::Value, c: serde_json::Value| v.validate(&k.token(h, c), NOW);
    use serde_json::json;
    assert_eq!(t(json!({"alg":"RS256","kid":"rsa1"}), claims()), Ok(()));
    assert_eq!(t(json!({"alg":"ES256","kid":"ec1"}), claims()), Ok(()));
    // Without a kid, the keys of the algorithm's type are tried.
    assert_eq!(t(json!({"alg":"RS256"}), claims()), Ok(()));
    assert_eq!(t(json!({"alg":"ES256"}), claims()), Ok(()));

    assert_eq!(
        t(json!({"alg":"RS256","kid":"nope"}), claims()),
        Err(JwtError::UnknownKey)
    );
    // Skipped keys (OKP, use=enc) are unknown too.
    assert_eq!(
        t(json!({"alg":"ES256","kid":"ed"}), claims()),
        Err(JwtError::UnknownKey)
    );
    assert_eq!(
        t(json!({"alg":"RS256","kid":"enc"}), claims()),
        Err(JwtError::UnknownKey)
    );
    // alg must fit the key the kid names.
    assert_eq!(
        t(json!({"alg":"ES256","kid":"rsa1"}), claims()),
        Err(JwtError::Algorithm)
    );
    assert_eq!(
        t(json!({"alg":"RS256","kid":"ec1"}), claims()),
        Err(JwtError::Algorithm)
    );
    // HS256 with the public keys as the HMAC secret, and `none`, are refused.
    assert_eq!(
        t(json!({"alg":"HS256","kid":"rsa1"}), claims()),
        Err(JwtError::Algorithm)
    );
    assert_eq!(
        t(json!({"alg":"HS256"}), claims()),
        Err(JwtError::Algorithm)
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"rsa1"}"#),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    assert_eq!(v.validate(&none, NOW), Err(JwtError::Algorithm));
    // A key not in the set, claiming a kid that is.
    let forged = k.token(json!({"alg":"ES256","kid":"stranger"}), claims());
    let (h_stranger, rest) = forged.split_once('.').unwrap();
    let _ = h_stranger;
    let relabelled = format!(
        "{}.{rest}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"ec1"}"#)
    );
    assert_eq!(v.validate(&relabelled, NOW), Err(JwtError::Signature));
    // Payload swapped under a valid RS256 signature.
    let good = k.token(json!({"alg":"RS256","kid":"rsa1"}), claims());
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = claims();
    c["sub"] = json!("admin");
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    assert_eq!(v.validate(&swapped, NOW), Err(JwtError::Signature));
    // Claims are checked as for HS256.
    let mut c = claims();
    c["exp"] = json!(NOW - 1);
    assert_eq!(
        t(json!({"alg":"ES256","kid":"ec1"}), c),
        Err(JwtError::Expired)
    );
    let mut c = claims();
    c["nbf"] = json!(NOW + 10);
    assert_eq!(
        t(json!({"alg":"RS256","kid":"rsa1"}), c),
        Err(JwtError::Expired)
    );
    let mut c = claims();
    c["iss"] = json!("evil");
    assert_eq!(
        t(json!({"alg":"RS256","kid":"rsa1"}), c),
        Err(JwtError::Claims)
    );
    let mut c = claims();
    c["aud"] = json!("other");
    assert_eq!(
        t(json!({"alg":"ES256","kid":"ec1"}), c),
        Err(JwtError::Claims)
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        t(json!({"alg":"ES256","kid":"ec1"}), c),
        Err(JwtError::Expired)
    );
}

#[test]
fn bad_jwks_files_are_precise_errors() {
    let e = |j: &str| Jwks::from_json(j).unwrap_err();
    assert_eq!(
        e(r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#),
        "keys[0].n: RSA modulus of 24 bits, at least 2048 needed"
    );
    assert_eq!(
        e(r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}"#),
        "keys[0]: P-256 x and y must be 32 bytes each"
    );
    assert!(
        e(r#"{"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]}"#)
            .starts_with("keys[0].n: not base64url")
    );
    assert_eq!(
        e(r#"{"keys":[{"kty":"EC","x":"AA"}]}"#),
        "keys[0].crv: missing"
    );
    assert_eq!(e(r#"{"keys":[{"n":"AA"}]}"#), "keys[0].kty: missing");
    assert_eq!(e(r#"{"nokeys":1}"#), "no `keys` array");
    assert_eq!(
        e(r#"{"keys":[{"kty":"oct","k":"AA"}]}"#),
        "no RSA or EC P-256 signature key in `keys`"
    );
    assert!(e("{").starts_with("not JSON"));
    let k = Keys::new();
    let mut j: serde_json::Value = serde_json::from_str(&k.jwks()).unwrap();
    j["keys"][0]["alg"] = "ES256".into();
    assert!(e(&j.to_string()).starts_with("keys[0].alg: `ES256` does not fit the key"));

    // Through the routes file: the route, the filter, the file and the key.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(
        &path,
        r#"{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]}"#,
    )
    .unwrap();
    let yaml = format!(
        "routes:\n  - id: a\n    upstream: http://127.0.0.1:1\n    filters:\n      - jwt: {{ jwks_file: {} }}\n",
        path.display()
    );
    let cfg = GatewayConfig::from_yaml(&yaml, "r.yaml").unwrap();
    let err = Gateway::builder(cfg)
        .file("r.yaml")
        .build()
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "r.yaml: routes[0].filters: jwt.jwks_file: {}: keys[0].crv: `P-384` is not supported (only P-256)",
            path.display()
        )
    );
    let yaml = format!(
        "routes:\n  - id: a\n    upstream: http://127.0.0.1:1\n    filters:\n      - jwt: {{ jwks_file: {}, secret: aaaaaaaaaaaaaaaaaaaa }}\n",
        path.display()
    );
    let cfg = GatewayConfig::from_yaml(&yaml, "r.yaml").unwrap();
    let err = Gateway::builder(cfg).build().unwrap_err().to_string();
    assert!(
        err.contains("exactly one of `secret`, `secret_env` and `jwks_file`"),
        "{err}"
    );
}

#[tokio::test]
async fn gateway_accepts_rs256_and_es256_and_refuses_hostile_tokens() {
    let k = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, k.jwks()).unwrap();
    let b = backend("b").await;
    let gw = start(&format!(
        r#"
routes:
  - id: api
    upstream: http://{}
    filters:
      - jwt: {{ jwks_file: {}, issuer: idp, audience: api }}
"#,
        b.addr,
        path.display()
    ))
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut c = claims();
    c["exp"] = (now + 300).into();
    let call = |token: String| {
        send(
            get(gw.addr, "/x")
                .header("authorization", format!("Bearer {token}"))
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
    };
    use serde_json::json;
    let r = call(k.token(json!({"alg":"RS256","kid":"rsa1"}), c.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(k.token(json!({"alg":"ES256","kid":"ec1"}), c.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(b.hits.load(Ordering::SeqCst), 2);
    for (what, token) in [
        (
            "HS256 keyed with the JWKS",
            k.token(json!({"alg":"HS256","kid":"rsa1"}), c.clone()),
        ),
        (
            "unknown kid",
            k.token(json!({"alg":"RS256","kid":"zzz"}), c.clone()),
        ),
        (
            "ES256 under an RSA kid",
            k.token(json!({"alg":"ES256","kid":"rsa1"}), c.clone()),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                URL_SAFE_NO_PAD.encode(c.to_string())
            ),
        ),
        ("expired", {
            let mut c = c.clone();
            c["exp"] = (now - 3600).into();
            k.token(json!({"alg":"RS256","kid":"rsa1"}), c)
        }),
    ] {
        let r = call(token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
        assert_eq!(
            r.headers["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
    }
    assert_eq!(
        b.hits.load(Ordering::SeqCst),
        2,
        "a refused token reached the backend"
    );
}

fn cors_gateway_yaml(backend: std::net::SocketAddr) -> String {
    format!(
        r#"
cors:
  allowed_origin_patterns: ["https://*.example.org"]
routes:
  - id: api
    upstream: http://{backend}
    predicates: {{ path_prefix: /api, method: [GET, PUT] }}
    cors:
      allowed_origins: [https://app.example.com]
      allowed_methods: [GET, PUT]
      allowed_headers: [content-type, x-token]
      exposed_headers: [x-request-id, x-total]
      allow_credentials: true
      max_age: 10m
  - id: global
    upstream: http://{backend}
    predicates: {{ path_prefix: /global }}
"#
    )
}

fn preflight(
    addr: std::net::SocketAddr,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> Request<Full<Bytes>> {
    let mut r = Request::builder()
        .method(Method::OPTIONS)
        .uri(format!("http://{addr}{path}"))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if !headers.is_empty() {
        r = r.header("access-control-request-headers", headers);
    }
    r.body(Full::default()).unwrap()
}

#[tokio::test]
async fn cors_preflight_is_answered_at_the_edge() {
    let b = backend("b").await;
    let gw = start(&cors_gateway_yaml(b.addr)).await;
    // Allowed: the route matches as the PUT it announces (its predicates exclude OPTIONS).
    let r = send(preflight(
        gw.addr,
        "/api/items",
        "https://app.example.com",
        "PUT",
        "Content-Type, X-Token",
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let h = &r.headers;
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-methods"], "GET, PUT");
    assert_eq!(h["access-control-allow-headers"], "content-type, x-token");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h["vary"].to_str().unwrap().contains("Origin"));

    // Refused: origin, method, header. 403 and not one CORS header.
    for (origin, method, headers) in [
        ("https://evil.example.com", "PUT", ""),
        ("https://app.example.com.evil.net", "GET", ""),
        ("null", "GET", ""),
        ("https://app.example.com", "DELETE", ""),
        ("https://app.example.com", "PUT", "content-type, x-admin"),
    ] {
        let r = send(preflight(gw.addr, "/api/items", origin, method, headers)).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{origin} {method} {headers}"
        );
        assert!(
            !r.headers
                .keys()
                .any(|k| k.as_str().starts_with("access-control-")),
            "{origin} {method} {headers}: {:?}",
            r.headers
        );
    }
    // The top-level policy covers routes without their own (pattern origins, default methods).
    let r = send(preflight(
        gw.addr,
        "/global",
        "https://a.b.example.org",
        "POST",
        "",
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://a.b.example.org"
    );
    assert_eq!(r.headers["access-control-allow-methods"], "GET, HEAD, POST");
    assert!(r.headers.get("access-control-allow-credentials").is_none());
    let r = send(preflight(
        gw.addr,
        "/global",
        "https://example.org",
        "GET",
        "",
    ))
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        b.hits.load(Ordering::SeqCst),
        0,
        "a preflight reached the upstream"
    );
}

#[tokio::test]
async fn cors_headers_on_actual_requests() {
    let b = backend("b").await;
    let gw = start(&cors_gateway_yaml(b.addr)).await;
    let call = |origin: Option<&str>| {
        let mut r = get(gw.addr, "/api/x");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        send(r.body(Full::default()).unwrap())
    };
    let r = call(Some("https://app.example.com")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    assert_eq!(
        r.headers["access-control-expose-headers"],
        "x-request-id, x-total"
    );
    assert_eq!(r.headers["vary"], "Origin");

    // A stranger's request is served (the browser refuses it), without CORS headers.
    let r = call(Some("https://evil.example.com")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    assert!(r.headers.get("access-control-allow-credentials").is_none());
    assert_eq!(r.headers["vary"], "Origin");

    let r = call(None).await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
    assert_eq!(b.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn without_cors_a_preflight_is_proxied() {
    let b = backend("b").await;
    let gw = start(&format!(
        "routes:\n  - id: r\n    upstream: http://{}\n",
        b.addr
    ))
    .await;
    let r = send(preflight(gw.addr, "/x", "https://a.com", "PUT", "")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["method"], "OPTIONS");
    assert_eq!(b.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn bad_cors_is_refused_with_its_key() {
    let build = |yaml: &str| {
        let cfg = GatewayConfig::from_yaml(yaml, "r.yaml").unwrap();
        Gateway::builder(cfg)
            .file("r.yaml")
            .build()
            .unwrap_err()
            .to_string()
    };
    let e = build(
        "routes:\n  - id: a\n    upstream: http://127.0.0.1:1\n    cors: { allowed_origins: ['*'], allow_credentials: true }\n",
    );
    assert!(
        e.starts_with("r.yaml: routes[0].cors: allowed_origins: `*` cannot be combined"),
        "{e}"
    );
    let e = build(
        "cors: { allowed_origins: ['https://a.com/x'] }\nroutes:\n  - id: a\n    upstream: http://127.0.0.1:1\n",
    );
    assert!(
        e.starts_with("r.yaml: cors: allowed_origins: origin `https://a.com/x` must be"),
        "{e}"
    );
}

fn spoofed(addr: std::net::SocketAddr) -> Request<Full<Bytes>> {
    get(addr, "/x")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-host", "spoofed.example")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=203.0.113.9;proto=https")
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn forwarded_headers_are_kept_only_from_trusted_proxies() {
    let b = backend("b").await;
    let route = format!("routes:\n  - id: r\n    upstream: http://{}\n", b.addr);
    // The test client is 127.0.0.1: trusted here...
    let gw = start(&format!(
        "trusted_proxies: [10.0.0.0/8, 127.0.0.0/8]\n{route}"
    ))
    .await;
    let r = send(spoofed(gw.addr)).await;
    assert_eq!(
        r.seen("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(
        r.seen("x-forwarded-host").as_deref(),
        Some("spoofed.example")
    );
    let fwd = &r.json()["headers"]["forwarded"];
    assert_eq!(fwd[0], "for=203.0.113.9;proto=https");
    assert!(
        fwd[1]
            .as_str()
            .unwrap()
            .starts_with("for=127.0.0.1;proto=http")
    );

    // ...and not here: every client claim is replaced by the gateway's own facts.
    let gw = start(&format!("trusted_proxies: [10.0.0.0/8, '::1']\n{route}")).await;
    let r = send(spoofed(gw.addr)).await;
    assert_eq!(r.seen("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.seen("x-forwarded-proto").as_deref(), Some("http"));
    assert_ne!(
        r.seen("x-forwarded-host").as_deref(),
        Some("spoofed.example")
    );
    let fwd = r.json()["headers"]["forwarded"].as_array().unwrap().clone();
    assert_eq!(fwd.len(), 1, "{fwd:?}");
    assert!(
        fwd[0]
            .as_str()
            .unwrap()
            .starts_with("for=127.0.0.1;proto=http")
    );
}

#[test]
fn bad_trusted_proxy_is_refused_with_its_line() {
    let e = GatewayConfig::from_yaml(
        "trusted_proxies:\n  - 10.0.0.0/8\n  - 10.0.0.0/40\nroutes: []\n",
        "r.yaml",
    )
    .unwrap_err();
    assert_eq!(e.key(), "trusted_proxies[1]");
    // serde_yaml places the error at the start of the sequence, not at the bad element.
    assert_eq!(e.line(), Some(2));
    assert!(
        e.message().contains("bad prefix length in `10.0.0.0/40`"),
        "{e}"
    );
}
