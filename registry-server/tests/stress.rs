//! Concurrency stress: many tasks register, renew, override, cancel and fetch at once through the
//! router on a multi-threaded runtime. Every fetched document must be self-consistent (its
//! `apps__hashcode` matches its instances) and the final registry must be exactly what the
//! writers left.

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use palisade_registry_client::json;
use palisade_registry_client::model::{DataCenterInfo, InstanceInfo, InstanceStatus, PortInfo};
use palisade_registry_server::{RegistryServer, ServerConfig};
use tower::ServiceExt;

fn inst(app: &str, id: &str) -> InstanceInfo {
    InstanceInfo {
        instance_id: id.into(),
        host_name: "localhost".into(),
        app: app.into(),
        ip_addr: "127.0.0.1".into(),
        status: InstanceStatus::Up,
        port: Some(PortInfo::enabled(8080)),
        data_center_info: DataCenterInfo::my_own(),
        last_dirty_timestamp: 1,
        ..Default::default()
    }
}

async fn send(server: &RegistryServer, method: &str, uri: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Body::from(body))
        .unwrap();
    let res = server.router().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    (
        status,
        res.into_body().collect().await.unwrap().to_bytes().to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_readers_keep_the_registry_consistent() {
    let server = RegistryServer::new(ServerConfig {
        use_read_only_response_cache: false,
        ..Default::default()
    })
    .unwrap();
    let writers: usize = 8;
    let per_writer: usize = 50;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let app = format!("APP{}", w % 3);
            for i in 0..per_writer {
                let id = format!("w{w}-i{i}");
                let (s, _) = send(
                    &server,
                    "POST",
                    &format!("/eureka/apps/{app}"),
                    json::encode_instance(&inst(&app, &id)),
                )
                .await;
                assert_eq!(s, 204);
                let (s, _) =
                    send(&server, "PUT", &format!("/eureka/apps/{app}/{id}"), vec![]).await;
                assert_eq!(s, 200);
                match i % 5 {
                    // Every fifth instance is cancelled, every fifth+1 taken out of service.
                    0 => assert_eq!(
                        send(
                            &server,
                            "DELETE",
                            &format!("/eureka/apps/{app}/{id}"),
                            vec![]
                        )
                        .await
                        .0,
                        200
                    ),
                    1 => assert_eq!(
                        send(
                            &server,
                            "PUT",
                            &format!("/eureka/apps/{app}/{id}/status?value=OUT_OF_SERVICE"),
                            vec![]
                        )
                        .await
                        .0,
                        200
                    ),
                    _ => {}
                }
            }
        }));
    }
    let readers_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..4 {
        let (server, done) = (server.clone(), readers_done.clone());
        readers.push(tokio::spawn(async move {
            let mut fetches = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || fetches == 0 {
                let uri = if r % 2 == 0 {
                    "/eureka/apps/"
                } else {
                    "/eureka/apps/delta"
                };
                let (s, body) = send(&server, "GET", uri, vec![]).await;
                assert_eq!(s, 200);
                let apps = json::decode_applications(&body).unwrap();
                if uri == "/eureka/apps/" {
                    assert_eq!(
                        apps.compute_hashcode(),
                        apps.apps_hashcode,
                        "a torn full fetch"
                    );
                }
                fetches += 1;
                tokio::task::yield_now().await;
            }
            fetches
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    readers_done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut fetches = 0;
    for r in readers {
        fetches += r.await.unwrap();
    }
    assert!(fetches > 0);

    let apps = server.applications();
    let total = writers * per_writer;
    let cancelled = writers * per_writer.div_ceil(5);
    let oos = writers * (per_writer / 5);
    assert_eq!(apps.instances().count(), total - cancelled);
    assert_eq!(
        apps.instances()
            .filter(|i| i.status == InstanceStatus::OutOfService)
            .count(),
        oos
    );
    assert_eq!(
        apps.apps_hashcode,
        format!("OUT_OF_SERVICE_{}_UP_{}_", oos, total - cancelled - oos)
    );
    // The delta holds every change of the run (all within the 180 s window) and reconciles.
    let (_, body) = send(&server, "GET", "/eureka/apps/delta", vec![]).await;
    let delta = json::decode_applications(&body).unwrap();
    let mut rebuilt = palisade_registry_client::model::Applications::default();
    rebuilt.apply_delta(&delta);
    assert_eq!(rebuilt.compute_hashcode(), delta.apps_hashcode);
}
