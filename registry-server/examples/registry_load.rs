//! Load generator for a Eureka server (ours or Java's): registers N instances, keeps simulated
//! heartbeats going (N per 30 s), then hammers full fetches (JSON, gzip) and reports latency,
//! throughput and the server's RSS. Driven by `benches/registry/load.sh`.
//!
//! ```text
//! registry_load --url http://127.0.0.1:8761/eureka --instances 10000 --secs 10 --concurrency 4 --pid PID
//! ```

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use palisade_registry_client::json;
use palisade_registry_client::model::{DataCenterInfo, InstanceInfo, InstanceStatus, PortInfo};

type Http = Client<HttpConnector, Full<Bytes>>;

struct Args {
    url: String,
    instances: usize,
    secs: u64,
    concurrency: usize,
    pid: Option<u32>,
}

fn args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:8761/eureka".into(),
        instances: 10_000,
        secs: 10,
        concurrency: 4,
        pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--url" => a.url = v.trim_end_matches('/').to_owned(),
            "--instances" => a.instances = v.parse().expect("--instances N"),
            "--secs" => a.secs = v.parse().expect("--secs N"),
            "--concurrency" => a.concurrency = v.parse().expect("--concurrency N"),
            "--pid" => a.pid = Some(v.parse().expect("--pid PID")),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn instance(i: usize) -> InstanceInfo {
    let app = format!("LOAD-{:03}", i % 100);
    let mut inst = InstanceInfo {
        instance_id: format!(
            "10.{}.{}.{}:load:{}",
            i / 65536 % 256,
            i / 256 % 256,
            i % 256,
            8000 + i % 1000
        ),
        host_name: format!("host-{i}.load.internal"),
        app: app.clone(),
        ip_addr: format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256),
        status: InstanceStatus::Up,
        port: Some(PortInfo::enabled(8080)),
        secure_port: Some(PortInfo::disabled(8443)),
        vip_address: Some(app.to_ascii_lowercase()),
        secure_vip_address: Some(app.to_ascii_lowercase()),
        home_page_url: Some(format!("http://host-{i}.load.internal:8080/")),
        status_page_url: Some(format!("http://host-{i}.load.internal:8080/actuator/info")),
        health_check_url: Some(format!(
            "http://host-{i}.load.internal:8080/actuator/health"
        )),
        data_center_info: DataCenterInfo::my_own(),
        last_dirty_timestamp: 1_700_000_000_000,
        ..Default::default()
    };
    inst.metadata.insert("zone".into(), "zone-a".into());
    inst.metadata
        .insert("management.port".into(), "8081".into());
    inst
}

async fn send(http: &Http, method: Method, uri: &str, body: Option<Vec<u8>>) -> (u16, Bytes, bool) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("accept", "application/json")
        .header("accept-encoding", "gzip");
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let res = http.request(req).await.expect("request");
    let status = res.status().as_u16();
    let gz = res
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    (status, bytes, gz)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let http: Http = Client::builder(TokioExecutor::new()).build_http();

    // 1. Register.
    let t = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (http, next, url, n) = (http.clone(), next.clone(), a.url.clone(), a.instances);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    break;
                }
                let inst = instance(i);
                let uri = format!("{url}/apps/{}", inst.app);
                let (s, _, _) = send(
                    &http,
                    Method::POST,
                    &uri,
                    Some(json::encode_instance(&inst)),
                )
                .await;
                assert!(s == 204 || s == 200, "register answered {s}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let register_secs = t.elapsed().as_secs_f64();

    // 2. Simulated heartbeats: every instance once per 30 s, spread evenly, during the fetch phase.
    let stop = Arc::new(AtomicBool::new(false));
    let renewals = Arc::new(AtomicU64::new(0));
    let hb = {
        let (http, stop, renewals, url, n) = (
            http.clone(),
            stop.clone(),
            renewals.clone(),
            a.url.clone(),
            a.instances,
        );
        tokio::spawn(async move {
            let per_sec = (n as f64 / 30.0).max(1.0);
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_sec));
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let inst = instance(i % n);
                let uri = format!(
                    "{url}/apps/{}/{}?status=UP&lastDirtyTimestamp={}",
                    inst.app, inst.instance_id, inst.last_dirty_timestamp
                );
                let (http, renewals) = (http.clone(), renewals.clone());
                tokio::spawn(async move {
                    let (s, _, _) = send(&http, Method::PUT, &uri, None).await;
                    if s == 200 {
                        renewals.fetch_add(1, Ordering::Relaxed);
                    }
                });
                i += 1;
            }
        })
    };

    // 3. Check the full fetch is complete (servers with a read-only cache may need a refresh).
    let full = format!("{}/apps/", a.url);
    let deadline = Instant::now() + Duration::from_secs(90);
    let (body_bytes, gz) = loop {
        let (s, body, gz) = send(&http, Method::GET, &full, None).await;
        assert_eq!(s, 200, "full fetch answered {s}");
        let mut plain = Vec::new();
        if gz {
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut plain)
                .unwrap();
        } else {
            plain = body.to_vec();
        }
        let apps = json::decode_applications(&plain).expect("decodable full fetch");
        if apps.instances().count() == a.instances {
            break (body.len(), gz);
        }
        assert!(
            Instant::now() < deadline,
            "registry never showed all {} instances",
            a.instances
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // 4. Fetch phase.
    let end = Instant::now() + Duration::from_secs(a.secs);
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (http, full) = (http.clone(), full.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                let (s, body, _) = send(&http, Method::GET, &full, None).await;
                assert_eq!(s, 200);
                assert!(!body.is_empty());
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat: Vec<Duration> = Vec::new();
    for w in workers {
        lat.extend(w.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let _ = hb.await;
    lat.sort();
    let pct = |p: f64| {
        lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1].as_secs_f64() * 1000.0
    };
    let rss = a.pid.and_then(rss_kib);
    println!(
        "RESULT instances={} register_secs={:.2} fetches={} throughput_rps={:.1} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} body_bytes={} gzip={} renewals={} rss_mib={}",
        a.instances,
        register_secs,
        lat.len(),
        lat.len() as f64 / a.secs as f64,
        pct(0.50),
        pct(0.99),
        lat.last().unwrap().as_secs_f64() * 1000.0,
        body_bytes,
        gz,
        renewals.load(Ordering::Relaxed),
        rss.map(|k| format!("{:.1}", k as f64 / 1024.0))
            .unwrap_or_else(|| "n/a".into()),
    );
}
