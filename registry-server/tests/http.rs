//! The REST resources driven in-process through the router: status codes, negotiation, gzip,
//! bad input, the response cache.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use palisade_registry_client::model::{ActionType, InstanceStatus};
use palisade_registry_client::{json, xml};
use palisade_registry_server::{RegistryServer, ServerConfig};
use tower::ServiceExt;

const ORDERS_JSON: &str = r#"{"instance":{"instanceId":"h1:orders:8080","hostName":"h1","app":"ORDERS",
  "ipAddr":"10.0.0.5","status":"UP","port":{"$":8080,"@enabled":"true"},"vipAddress":"orders",
  "secureVipAddress":"orders-secure",
  "dataCenterInfo":{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"},
  "lastDirtyTimestamp":"1000"}}"#;

fn immediate() -> RegistryServer {
    RegistryServer::new(ServerConfig {
        use_read_only_response_cache: false,
        ..Default::default()
    })
    .unwrap()
}

async fn call(
    server: &RegistryServer,
    req: Request<Body>,
) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let res: Response<Body> = server.router().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

fn req(method: &str, uri: &str) -> http::request::Builder {
    Request::builder().method(method).uri(uri)
}

async fn register(
    server: &RegistryServer,
    base: &str,
    app: &str,
    body: &str,
) -> (StatusCode, String) {
    let (s, _, b) = call(
        server,
        req("POST", &format!("{base}/apps/{app}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap(),
    )
    .await;
    (s, String::from_utf8(b).unwrap())
}

#[tokio::test]
async fn register_fetch_renew_cancel_on_both_base_paths() {
    for base in ["/eureka/v2", "/eureka"] {
        let server = immediate();
        let (s, body) = register(&server, base, "orders", ORDERS_JSON).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
        assert!(body.is_empty());

        // XML unless Accept asks for JSON.
        let (s, h, b) = call(
            &server,
            req("GET", &format!("{base}/apps/"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["content-type"], "application/xml");
        let apps = xml::decode_applications(&b).unwrap();
        assert_eq!(apps.apps_hashcode, "UP_1_");
        let i = &apps.application("ORDERS").unwrap().instances[0];
        assert_eq!(i.id(), "h1:orders:8080");
        assert!(i.lease_info.unwrap().registration_timestamp > 0);

        let (s, h, b) = call(
            &server,
            req("GET", &format!("{base}/apps"))
                .header("accept", "application/json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(json::decode_applications(&b).unwrap(), apps);

        // Percent-encoded id.
        let (s, _, _) = call(
            &server,
            req("PUT", &format!("{base}/apps/ORDERS/h1%3Aorders%3A8080"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _, _) = call(
            &server,
            req("PUT", &format!("{base}/apps/ORDERS/nope"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        let (s, _, b) = call(
            &server,
            req("GET", &format!("{base}/apps/orders/h1:orders:8080"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(xml::decode_instance(&b).unwrap().host_name, "h1");
        let (s, _, b) = call(
            &server,
            req("GET", &format!("{base}/instances/h1:orders:8080"))
                .header("accept", "application/json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(json::decode_instance(&b).unwrap().app, "ORDERS");
        let (s, _, b) = call(
            &server,
            req("GET", &format!("{base}/apps/ORDERS"))
                .header("accept", "application/json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(json::decode_application(&b).unwrap().instances.len(), 1);
        let (s, _, b) = call(
            &server,
            req("GET", &format!("{base}/vips/orders"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(xml::decode_applications(&b).unwrap().instances().count(), 1);
        let (s, _, _) = call(
            &server,
            req("GET", &format!("{base}/svips/orders-secure"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _, _) = call(
            &server,
            req("GET", &format!("{base}/vips/nothing"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        let (s, _, _) = call(
            &server,
            req("DELETE", &format!("{base}/apps/ORDERS/h1:orders:8080"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _, _) = call(
            &server,
            req("DELETE", &format!("{base}/apps/ORDERS/h1:orders:8080"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = call(
            &server,
            req("GET", &format!("{base}/apps/ORDERS"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = call(
            &server,
            req("GET", &format!("{base}/instances/h1:orders:8080"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn registers_from_an_xml_body() {
    let server = immediate();
    let inst = json::decode_instance(ORDERS_JSON.as_bytes()).unwrap();
    let (s, _, _) = call(
        &server,
        req("POST", "/eureka/v2/apps/ORDERS")
            .header("content-type", "application/xml")
            .body(Body::from(xml::encode_instance(&inst)))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(server.applications().instances().count(), 1);
}

#[tokio::test]
async fn gzip_when_accepted() {
    let server = immediate();
    register(&server, "/eureka", "ORDERS", ORDERS_JSON).await;
    let (s, h, b) = call(
        &server,
        req("GET", "/eureka/apps/")
            .header("accept", "application/json")
            .header("accept-encoding", "gzip, deflate")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-encoding"], "gzip");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&b[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(
        json::decode_applications(&plain)
            .unwrap()
            .instances()
            .count(),
        1
    );
}

#[tokio::test]
async fn bad_input_gets_400_with_a_reason_and_keeps_state() {
    let server = immediate();
    register(&server, "/eureka", "ORDERS", ORDERS_JSON).await;
    let before = server.applications();

    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "/eureka/apps/ORDERS",
            "application/json",
            "{not json".into(),
            "invalid JSON",
        ),
        (
            "/eureka/apps/ORDERS",
            "application/xml",
            "<instance><hostName>x</instance>".into(),
            "invalid XML",
        ),
        (
            "/eureka/apps/ORDERS",
            "application/json",
            r#"{"instance":{"port":{"$":"eighty"}}}"#.into(),
            "instance.port.$",
        ),
        (
            "/eureka/apps/ORDERS",
            "application/json",
            r#"{"instance":{"app":"ORDERS","ipAddr":"1.2.3.4","dataCenterInfo":{"name":"MyOwn"}}}"#
                .into(),
            "Missing instanceId",
        ),
        (
            "/eureka/apps/ORDERS",
            "application/json",
            r#"{"instance":{"hostName":"h","app":"ORDERS","dataCenterInfo":{"name":"MyOwn"}}}"#
                .into(),
            "Missing ip address",
        ),
        (
            "/eureka/apps/ORDERS",
            "application/json",
            r#"{"instance":{"hostName":"h","app":"ORDERS","ipAddr":"1.2.3.4"}}"#.into(),
            "Missing dataCenterInfo",
        ),
        (
            "/eureka/apps/PAYMENTS",
            "application/json",
            ORDERS_JSON.into(),
            "Mismatched appName, expecting PAYMENTS but was ORDERS",
        ),
        (
            "/eureka/apps/ORDERS",
            "application/json",
            format!(
                "{{\"instance\":{{\"hostName\":\"{}\"}}}}",
                "x".repeat(2 * 1024 * 1024)
            ),
            "larger than",
        ),
    ];
    for (uri, ct, body, reason) in cases {
        let (s, _, b) = call(
            &server,
            req("POST", uri)
                .header("content-type", ct)
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
        let b = String::from_utf8(b).unwrap();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri} {reason}: {b}");
        assert!(b.contains(reason), "expected {reason:?} in {b:?}");
    }
    for uri in [
        "/eureka/apps/ORDERS/h1:orders:8080/status?value=SIDEWAYS",
        "/eureka/apps/ORDERS/h1:orders:8080/status",
        "/eureka/apps/ORDERS/h1:orders:8080?lastDirtyTimestamp=yesterday",
    ] {
        let (s, _, b) = call(&server, req("PUT", uri).body(Body::empty()).unwrap()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}");
        assert!(!b.is_empty());
    }
    let (s, _, _) = call(
        &server,
        req("POST", "/eureka/peerreplication/batch/")
            .body(Body::from("[1,2"))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let mut after = server.applications();
    // Only the lease timestamps may move.
    after.versions_delta.clone_from(&before.versions_delta);
    assert_eq!(after, before);
}

#[tokio::test]
async fn heartbeat_dirty_timestamp_rules_and_replication_conflict() {
    let server = immediate();
    register(&server, "/eureka", "ORDERS", ORDERS_JSON).await;
    let put = |q: &'static str, replication: bool| {
        let mut b = req("PUT", &format!("/eureka/apps/ORDERS/h1:orders:8080{q}"));
        if replication {
            b = b.header("x-netflix-discovery-replication", "true");
        }
        b.body(Body::empty()).unwrap()
    };
    assert_eq!(
        call(&server, put("?status=UP&lastDirtyTimestamp=1000", false))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&server, put("?lastDirtyTimestamp=2000", false))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&server, put("?lastDirtyTimestamp=500", false)).await.0,
        StatusCode::OK
    );
    let (s, _, b) = call(&server, put("?lastDirtyTimestamp=500", true)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(xml::decode_instance(&b).unwrap().last_dirty_timestamp, 1000);
}

#[tokio::test]
async fn status_override_metadata_and_delta() {
    let server = immediate();
    register(&server, "/eureka/v2", "ORDERS", ORDERS_JSON).await;
    let (s, _, _) = call(&server, req("PUT", "/eureka/v2/apps/ORDERS/h1:orders:8080/status?value=OUT_OF_SERVICE&lastDirtyTimestamp=1").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(
        &server,
        req("PUT", "/eureka/v2/apps/ORDERS/zz/status?value=UP")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A re-registration saying UP does not beat the override.
    register(&server, "/eureka/v2", "ORDERS", ORDERS_JSON).await;
    let (_, _, b) = call(
        &server,
        req("GET", "/eureka/v2/apps/delta")
            .header("accept", "application/json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let delta = json::decode_applications(&b).unwrap();
    assert_eq!(delta.apps_hashcode, "OUT_OF_SERVICE_1_");
    assert_eq!(
        delta.applications[0].instances[0].status,
        InstanceStatus::OutOfService
    );
    let (_, _, b) = call(
        &server,
        req("GET", "/serverinfo/statusoverrides")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        String::from_utf8(b).unwrap(),
        r#"{"h1:orders:8080":"OUT_OF_SERVICE"}"#
    );

    let (s, _, _) = call(
        &server,
        req(
            "DELETE",
            "/eureka/v2/apps/ORDERS/h1:orders:8080/status?value=UP",
        )
        .body(Body::empty())
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(
        &server,
        req(
            "PUT",
            "/eureka/v2/apps/ORDERS/h1:orders:8080/metadata?zone=a&weight=3",
        )
        .body(Body::empty())
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, b) = call(
        &server,
        req("GET", "/eureka/v2/apps/delta")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let delta = xml::decode_applications(&b).unwrap();
    let i = &delta.applications[0].instances[0];
    assert_eq!(i.status, InstanceStatus::Up);
    assert_eq!(i.action_type, Some(ActionType::Modified));
    assert_eq!(i.metadata["weight"], "3");
    assert_eq!(delta.apps_hashcode, "UP_1_");
}

#[tokio::test]
async fn replication_batch_runs_each_item() {
    let server = immediate();
    let inst: serde_json::Value = serde_json::from_str(ORDERS_JSON).unwrap();
    let batch = serde_json::json!({"replicationList": [
        {"appName": "ORDERS", "id": "h1:orders:8080", "action": "Register", "lastDirtyTimestamp": 1000,
         "instanceInfo": inst["instance"]},
        {"appName": "ORDERS", "id": "h1:orders:8080", "action": "Heartbeat", "lastDirtyTimestamp": 1000},
        {"appName": "ORDERS", "id": "h1:orders:8080", "action": "Heartbeat", "lastDirtyTimestamp": 10},
        {"appName": "ORDERS", "id": "missing", "action": "Heartbeat"},
        {"appName": "ORDERS", "id": "h1:orders:8080", "action": "StatusUpdate", "status": "DOWN"},
        {"appName": "ORDERS", "id": "h1:orders:8080", "action": "Explode"},
    ]});
    let (s, _, b) = call(
        &server,
        req("POST", "/eureka/v2/peerreplication/batch/")
            .header("x-netflix-discovery-replication", "true")
            .header("content-type", "application/json")
            .body(Body::from(batch.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let codes: Vec<i64> = v["responseList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["statusCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, vec![200, 200, 409, 404, 200, 400]);
    assert_eq!(
        v["responseList"][2]["responseEntity"]["lastDirtyTimestamp"],
        "1000"
    );
    assert_eq!(
        server.applications().instances().next().unwrap().status,
        InstanceStatus::Down
    );
}

#[tokio::test(start_paused = true)]
async fn read_only_cache_serves_a_snapshot_until_it_is_refreshed() {
    let server = RegistryServer::new(ServerConfig::default()).unwrap();
    let count = |server: RegistryServer| async move {
        let (_, _, b) = call(
            &server,
            req("GET", "/eureka/apps/")
                .header("accept", "application/json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        json::decode_applications(&b).unwrap().instances().count()
    };
    assert_eq!(count(server.clone()).await, 0);
    register(&server, "/eureka", "ORDERS", ORDERS_JSON).await;
    assert_eq!(count(server.clone()).await, 0, "stale read-only snapshot");
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(count(server.clone()).await, 1);

    // Without the read-only cache, a write shows at once.
    let server = immediate();
    assert_eq!(count(server.clone()).await, 0);
    register(&server, "/eureka", "ORDERS", ORDERS_JSON).await;
    assert_eq!(count(server.clone()).await, 1);
}

#[tokio::test]
async fn delta_can_be_disabled_and_status_and_dashboard_render() {
    let server = RegistryServer::new(ServerConfig {
        disable_delta: true,
        ..Default::default()
    })
    .unwrap();
    let (s, _, _) = call(
        &server,
        req("GET", "/eureka/apps/delta")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    register(&server, "/eureka", "ORDERS", ORDERS_JSON).await;
    let (s, _, b) = call(&server, req("GET", "/").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    let page = String::from_utf8(b).unwrap();
    assert!(
        page.contains("h1:orders:8080") && page.contains("self-preservation"),
        "{page}"
    );
    let (_, _, b) = call(&server, req("GET", "/metrics").body(Body::empty()).unwrap()).await;
    let m = String::from_utf8(b).unwrap();
    assert!(
        m.contains("palisade_registry_instances{app=\"ORDERS\",status=\"UP\"} 1"),
        "{m}"
    );
    let (s, _, b) = call(
        &server,
        req("GET", "/eureka/v2/status")
            .header("accept", "application/json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["generalStats"]["registered-instances"], "1");
    let (s, _, _) = call(
        &server,
        req("PUT", "/eureka/asg/my-asg/status?value=ENABLED")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn compact_form_on_request() {
    let server = immediate();
    register(&server, "/eureka", "ORDERS", ORDERS_JSON).await;
    for uri in [
        "/eureka/apps/",
        "/eureka/apps/delta",
        "/eureka/apps/ORDERS",
        "/eureka/vips/orders",
    ] {
        let (s, _, full) = call(
            &server,
            req("GET", uri)
                .header("accept", "application/json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _, compact) = call(
            &server,
            req("GET", uri)
                .header("accept", "application/json")
                .header("x-eureka-accept", "compact")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let compact = String::from_utf8(compact).unwrap();
        assert!(compact.len() < full.len(), "{uri}");
        assert!(
            !compact.contains("leaseInfo") && !compact.contains("metadata"),
            "{compact}"
        );
        assert!(
            compact.contains(r#""instanceId":"h1:orders:8080""#),
            "{compact}"
        );
    }
    let (_, _, xml_compact) = call(
        &server,
        req("GET", "/eureka/apps/")
            .header("x-eureka-accept", "compact")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let apps = xml::decode_applications(&xml_compact).unwrap();
    assert_eq!(apps.instances().next().unwrap().lease_info, None);
    assert_eq!(apps.apps_hashcode, "UP_1_");
}
