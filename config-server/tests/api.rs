//! The Spring Cloud Config API of our server over a real git repository.

mod common;

use common::*;
use palisade_config_server::{Cipher, ConfigServer, DirectoryBackend, V2_MEDIA_TYPE};

fn source_names(env: &serde_json::Value) -> Vec<String> {
    env["propertySources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["name"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn environment_lists_sources_by_precedence_with_the_commit_as_version() {
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(server.cipher(Cipher::from_hex(KEY).unwrap()), clone).await;

    let r = get(s.addr, "/orders/prod,eu/main").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let env = r.json();
    assert_eq!(env["name"], "orders");
    assert_eq!(
        env["profiles"],
        serde_json::json!(["prod,eu"]),
        "as the real server answers"
    );
    assert_eq!(env["state"], "");
    assert_eq!(env["label"], "main");
    assert_eq!(env["version"], repo.main_sha.as_str());
    assert_eq!(
        source_names(&env),
        [
            "orders-eu.yml",
            "orders-prod.yml",
            "application-prod.properties",
            "orders.yml (document #1)",
            "orders.yml (document #0)",
            "application.yml"
        ]
    );
    let first = &env["propertySources"][0];
    assert!(
        first["name"]
            .as_str()
            .unwrap()
            .starts_with(&repo.path().display().to_string())
    );
    let prod = &env["propertySources"][1]["source"];
    assert_eq!(prod["server.port"], 9090, "YAML numbers stay numbers");
    assert_eq!(prod["list[0]"], "c", "lists are flattened with indexes");
    assert_eq!(
        prod["secret"], "s3cret value",
        "{{cipher}} values are decrypted"
    );
    assert_eq!(
        prod["invalid.broken"], "<n/a>",
        "undecryptable values are marked as Spring does"
    );
    assert!(!r.body.contains(KEY), "the key never appears");
    assert_eq!(env["propertySources"][2]["source"]["feature.flag"], "true");

    // The comma may arrive %-encoded (cloud-config-client does that); no label = default label.
    let r = get(s.addr, "/orders/prod%2Ceu").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["propertySources"], env["propertySources"]);
    assert_eq!(
        r.json()["label"],
        serde_json::Value::Null,
        "no label asked, none answered"
    );
}

#[tokio::test]
async fn labels_are_branches_tags_and_commits() {
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(server, clone).await;
    let port = |env: serde_json::Value| env["propertySources"][0]["source"]["server.port"].clone();

    let r = get(s.addr, "/orders/prod/feature(_)x").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(port(r.json()), 9999, "(_) stands for / in a branch name");
    let r = get(s.addr, "/orders/default/v1").await;
    assert_eq!(r.json()["version"], repo.v1_sha.as_str());
    assert_eq!(
        r.json()["propertySources"][0]["source"]["greeting"],
        "hello orders"
    );
    let r = get(s.addr, &format!("/orders/default/{}", &repo.v1_sha[..12])).await;
    assert_eq!(r.json()["version"], repo.v1_sha.as_str());
    let r = get(s.addr, "/orders/default/main").await;
    assert_eq!(
        r.json()["propertySources"][0]["source"]["greeting"],
        "hello orders v2"
    );
    let r = get(s.addr, "/orders/prod/no-such-branch").await;
    assert_eq!(r.status, 404, "{}", r.body);

    // A new commit is served on the next request.
    repo.write("orders.yml", "greeting: hello orders v3\n");
    let sha = repo.commit("third");
    let r = get(s.addr, "/orders/default").await;
    assert_eq!(r.json()["version"], sha.as_str());
    assert_eq!(
        r.json()["propertySources"][0]["source"]["greeting"],
        "hello orders v3"
    );
}

#[tokio::test]
async fn the_v2_media_type_gives_each_value_its_origin() {
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(server, clone).await;
    let r = request(
        s.addr,
        "GET",
        "/orders/prod/main",
        &[("Accept", V2_MEDIA_TYPE)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(V2_MEDIA_TYPE));
    let env = r.json();
    let port = &env["propertySources"][0]["source"]["server.port"];
    assert_eq!(port["value"], 9090);
    assert_eq!(
        port["origin"], "2:9",
        "line:column of the value, as Spring writes it"
    );
}

#[tokio::test]
async fn flat_forms_merge_with_precedence_and_resolve_placeholders() {
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(server, clone).await;

    let r = get(s.addr, "/orders-prod.json").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["server"]["port"], 9090);
    assert_eq!(
        j["greeting"], "hello prod app",
        "application-prod beats orders.yml"
    );
    assert_eq!(
        j["db"]["url"], "jdbc://db-prod/orders",
        "placeholders resolved"
    );
    assert_eq!(
        j["list"],
        serde_json::json!(["c"]),
        "the most specific list replaces the others whole, as Spring does"
    );

    let r = get(s.addr, "/main/orders-prod.properties").await;
    assert_eq!(r.status, 200);
    let lines: Vec<&str> = r.body.lines().collect();
    assert!(
        lines.contains(&"db.url: jdbc://db-prod/orders"),
        "{}",
        r.body
    );
    assert!(lines.contains(&"server.port: 9090"), "{}", r.body);
    assert_eq!(
        lines[0], "greeting: hello prod app",
        "keys in merge order, lowest source first"
    );
    assert!(!r.body.ends_with('\n'));

    let r = get(s.addr, "/orders-prod.yml?resolvePlaceholders=false").await;
    assert_eq!(r.status, 200);
    let y: serde_json::Value = serde_yaml::from_str(&r.body).unwrap();
    assert_eq!(y["db"]["url"], "jdbc://${db.host}/orders");
    assert_eq!(y["server"]["port"], 9090);

    // The real server splits at the last hyphen: `order-service` with profile `prod`.
    let r = get(s.addr, "/order-service-prod.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["feature"]["flag"], "true");
}

#[tokio::test]
async fn resources_are_served_with_placeholders_and_profile_variants() {
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(server, clone).await;
    let r = get(s.addr, "/orders/prod/main/nginx.conf").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "server { listen 9090; } # ${unknown.key}\n");
    let r = get(s.addr, "/orders/eu/main/nginx.conf").await;
    assert_eq!(r.body, "eu { region eu; }\n");
    let r = get(s.addr, "/orders/prod/main/missing.conf").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn paths_that_try_to_leave_the_repository_are_rejected() {
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(server, clone).await;
    for path in [
        "/..%2F..%2Fetc/prod",
        "/orders/..%2Fx",
        "/orders/prod/..(_)..(_)etc",
        "/orders/prod/main/..%2F..%2Fetc%2Fpasswd",
        "/orders/prod/main/a/../../../etc/passwd",
        "/orders/prod/main/%2Fetc%2Fpasswd",
        "/..%2Fsecret-prod.yml",
    ] {
        let r = get(s.addr, path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
    }
    // The directory backend refuses them as well.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("application.yml"), "a: 1\n").unwrap();
    let s2 = start(
        ConfigServer::new(DirectoryBackend::new(dir.path()).unwrap()),
        tempfile::tempdir().unwrap(),
    )
    .await;
    assert_eq!(
        get(s2.addr, "/x/default/main/..%2F..%2Fetc%2Fpasswd")
            .await
            .status,
        400
    );
    assert_eq!(
        get(s2.addr, "/x/default").await.json()["propertySources"][0]["source"]["a"],
        1
    );
}

#[tokio::test]
async fn search_paths_take_precedence_in_order() {
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(server.search_paths(["other", ""]), clone).await;
    let env = get(s.addr, "/orders/default").await.json();
    assert_eq!(
        env["propertySources"][0]["source"]["greeting"],
        "from a search path"
    );
}

#[tokio::test]
async fn basic_auth_guards_everything_but_health_and_enables_crypto() {
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(
        server
            .basic_auth(USER, PASSWORD)
            .cipher(Cipher::from_hex(KEY).unwrap()),
        clone,
    )
    .await;
    let auth = basic(USER, PASSWORD);
    let r = get(s.addr, "/orders/prod").await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    let r = request(
        s.addr,
        "GET",
        "/orders/prod",
        &[("Authorization", &basic(USER, "wrong"))],
        "",
    )
    .await;
    assert_eq!(r.status, 401);
    let r = request(
        s.addr,
        "GET",
        "/orders/prod",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = get(s.addr, "/health").await;
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"status":"UP"}"#));

    assert_eq!(
        request(s.addr, "POST", "/encrypt", &[], "x").await.status,
        401
    );
    let enc = request(
        s.addr,
        "POST",
        "/encrypt",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        "top secret",
    )
    .await;
    assert_eq!(enc.status, 200);
    assert!(!enc.body.contains("top secret"));
    let dec = request(
        s.addr,
        "POST",
        "/decrypt",
        &[("Authorization", &auth)],
        &enc.body,
    )
    .await;
    assert_eq!((dec.status, dec.body.as_str()), (200, "top secret"));
    let bad = request(
        s.addr,
        "POST",
        "/decrypt",
        &[("Authorization", &auth)],
        "00ff",
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(!bad.body.contains(KEY));

    let m = request(s.addr, "GET", "/metrics", &[("Authorization", &auth)], "").await;
    assert_eq!(m.status, 200);
    assert!(
        m.body.contains(
            "palisade_config_server_requests_total{endpoint=\"environment\",code=\"200\"} 1"
        ),
        "{}",
        m.body
    );
    assert!(
        m.body.contains(
            "palisade_config_server_requests_total{endpoint=\"unauthorized\",code=\"401\"} 3"
        ),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("palisade_config_server_requests_total{endpoint=\"encrypt\",code=\"200\"} 1"),
        "{}",
        m.body
    );
}

#[tokio::test]
async fn crypto_endpoints_need_auth_and_a_key() {
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(server.clone().cipher(Cipher::from_hex(KEY).unwrap()), clone).await;
    assert_eq!(
        request(s.addr, "POST", "/encrypt", &[], "x").await.status,
        403,
        "no auth configured"
    );
    let s2 = start(
        server.basic_auth(USER, PASSWORD),
        tempfile::tempdir().unwrap(),
    )
    .await;
    let r = request(
        s2.addr,
        "POST",
        "/encrypt",
        &[("Authorization", &basic(USER, PASSWORD))],
        "x",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["status"], "NO_KEY");
}

#[tokio::test]
async fn health_is_down_when_the_repository_is_unreachable() {
    let clone = tempfile::tempdir().unwrap();
    let missing = clone.path().join("no-such-repo");
    let backend = palisade_config_server::GitBackend::new(
        missing.display().to_string(),
        clone.path().join("c"),
    );
    let s = start(ConfigServer::new(backend), tempfile::tempdir().unwrap()).await;
    let r = get(s.addr, "/health").await;
    assert_eq!((r.status, r.body.as_str()), (503, r#"{"status":"DOWN"}"#));
    assert_eq!(get(s.addr, "/orders/prod").await.status, 500);
}

#[tokio::test]
async fn a_prefix_moves_the_configuration_endpoints_but_not_health() {
    let repo = repo();
    let (server, clone) = git_server(&repo);
    let s = start(server.prefix("/config/"), clone).await;
    let r = get(s.addr, "/config/orders/prod").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["propertySources"][0]["source"]["server.port"],
        9090
    );
    assert_eq!(
        get(s.addr, "/config/orders-prod.json").await.json()["server"]["port"],
        9090
    );
    assert_eq!(get(s.addr, "/orders/prod").await.status, 404);
    assert_eq!(get(s.addr, "/configorders/prod").await.status, 404);
    assert_eq!(get(s.addr, "/health").await.status, 200);
}
