//! A generated `#[client]` against a hand-written hyper-util request doing the same thing
//! (GET with a path parameter, a query and a header; JSON response decoded with serde), on
//! loopback, in the same run.
//!
//! Latency comes from criterion; CPU per call is the client thread's on-CPU time
//! (`/proc/thread-self/schedstat`), so the server, which runs on its own threads, is not
//! counted. Rows are measured in alternating rounds so that machine noise hits them alike.
//! `generated-builder` is what `CatalogClient::builder()` gives (the full stack over the
//! `Transport` enum that also carries the discovery balancer).
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion};
use http_body_util::Empty;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_client::stack::{Stack, StackBuilder};
use palisade_client::transport::{HttpTransport, TransportConfig};
use palisade_client::{ClientError, Json, client};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::runtime::Runtime;

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

#[derive(Debug, serde::Deserialize)]
pub struct Title {
    pub id: u64,
    pub name: String,
}

#[client(base_path = "/api/v1")]
pub trait Catalog {
    #[get("/titles/{id}", headers("accept" = "application/json"))]
    async fn title(&self, #[path] id: u64, #[query] lang: &str)
    -> Result<Json<Title>, ClientError>;
}

const BODY: &[u8] = br#"{"id":7,"name":"Heat","year":1995,"genres":["crime","drama"]}"#;

fn start_server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let svc = service_fn(|_req| async {
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(BODY)))
                                .unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

struct Hand {
    client: Client<HttpConnector, Empty<Bytes>>,
    base: String,
}

impl Hand {
    async fn call(&self, id: u64, lang: &str) -> Title {
        let uri = format!("{}/api/v1/titles/{id}?lang={lang}", self.base);
        let req = http::Request::get(uri)
            .header("accept", "application/json")
            .body(Empty::new())
            .unwrap();
        let resp = self.client.request(req).await.unwrap();
        assert!(resp.status().is_success());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap()
    }
}

/// The hand-written request behind the same breaker and a `tokio::time::timeout`: what the
/// full stack does, without the generated code.
struct HandGuarded {
    svc: palisade_breaker::circuit::CircuitBreaker<
        Client<HttpConnector, Empty<Bytes>>,
        palisade_breaker::HttpClassifier,
    >,
    base: String,
}

impl HandGuarded {
    async fn call(&self, id: u64, lang: &str) -> Title {
        use tower::ServiceExt;
        let uri = format!("{}/api/v1/titles/{id}?lang={lang}", self.base);
        let req = http::Request::get(uri)
            .header("accept", "application/json")
            .body(Empty::new())
            .unwrap();
        let call = self.svc.clone().oneshot(req);
        let resp = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .unwrap()
            .unwrap();
        assert!(resp.status().is_success());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap()
    }
}

struct Rows {
    hand: Hand,
    guarded: HandGuarded,
    bare: CatalogClient<palisade_client::stack::SetBaseUrl<HttpTransport>>,
    full: CatalogClient<Stack<HttpTransport>>,
    built: CatalogClient<palisade_client::ClientStack>,
}

fn rows(addr: SocketAddr) -> Rows {
    let base = format!("http://{addr}");
    let base_url = base.clone();
    // The same connector and pool settings as the default transport.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let transport = Client::builder(TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(connector);
    let bare = tower::Layer::layer(
        &palisade_client::stack::SetBaseUrlLayer::new(Some(
            palisade_client::stack::BaseUrl::parse(&base).unwrap(),
        )),
        TransportConfig::default().build(),
    );
    let full = StackBuilder::new("catalog")
        .base_url(&base)
        .unwrap()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let breaker = palisade_breaker::circuit::CircuitBreakerLayer::builder("hand")
        .classifier(palisade_breaker::HttpClassifier::new())
        .build()
        .unwrap();
    Rows {
        guarded: HandGuarded {
            svc: tower::Layer::layer(&breaker, transport.clone()),
            base: base.clone(),
        },
        hand: Hand {
            client: transport,
            base,
        },
        bare: CatalogClient::new(bare),
        full: CatalogClient::new(full),
        // What `CatalogClient::builder()` gives: the full stack over the `Transport` enum.
        built: CatalogClient::builder()
            .base_url(&base_url)
            .unwrap()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    }
}

async fn call(rows: &Rows, which: &str) -> u64 {
    match which {
        "hyper-util" => rows.hand.call(7, "en").await.id,
        "generated-bare" => rows.bare.title(7, "en").await.unwrap().0.id,
        "generated-stack" => rows.full.title(7, "en").await.unwrap().0.id,
        "hyper-util-guarded" => rows.guarded.call(7, "en").await.id,
        "generated-builder" => rows.built.title(7, "en").await.unwrap().0.id,
        _ => unreachable!(),
    }
}

const ROWS: [&str; 5] = [
    "hyper-util",
    "generated-bare",
    "generated-stack",
    "hyper-util-guarded",
    "generated-builder",
];

fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn latency(c: &mut Criterion, rt: &Runtime, rows: &Rows) {
    let mut g = c.benchmark_group("client_call");
    for which in ROWS {
        g.bench_function(BenchmarkId::from_parameter(which), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(call(rows, which).await);
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

/// Wall time and client-thread CPU per call, in alternating rounds.
fn cpu(rt: &Runtime, rows: &Rows, calls: u64, rounds: u32) -> Vec<(&'static str, f64, f64)> {
    let mut wall = [0f64; ROWS.len()];
    let mut cpu = [0f64; ROWS.len()];
    for _ in 0..rounds {
        for (i, which) in ROWS.iter().enumerate() {
            rt.block_on(async {
                let c0 = thread_cpu_ns().unwrap_or(0);
                let t0 = Instant::now();
                for _ in 0..calls {
                    black_box(call(rows, which).await);
                }
                wall[i] += t0.elapsed().as_nanos() as f64;
                cpu[i] += thread_cpu_ns().unwrap_or(0).saturating_sub(c0) as f64;
            });
        }
    }
    let n = (calls * u64::from(rounds)) as f64;
    ROWS.iter()
        .enumerate()
        .map(|(i, w)| (*w, wall[i] / n, cpu[i] / n))
        .collect()
}

/// Allocations per call, process-wide (the server's are the same for every row, so the
/// differences between rows are the client's).
fn allocations(rt: &Runtime, rows: &Rows, calls: u64) -> Vec<(&'static str, f64)> {
    ROWS.iter()
        .map(|which| {
            rt.block_on(async {
                let region = Region::new(GLOBAL);
                for _ in 0..calls {
                    black_box(call(rows, which).await);
                }
                (*which, region.change().allocations as f64 / calls as f64)
            })
        })
        .collect()
}

fn main() {
    let addr = start_server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows = rows(addr);
    // Warm the pools and check that every row gets the same answer.
    for which in ROWS {
        assert_eq!(rt.block_on(call(&rows, which)), 7, "{which}");
    }
    // Instruction counts: `CLIENT_BENCH_ONLY=<row> CLIENT_BENCH_CALLS=<n>` makes `n` calls of
    // one row and exits, for `valgrind --tool=callgrind --separate-threads=yes` (the client
    // runtime is this thread; the server has its own). Two values of `n` give the per-call
    // count without the setup.
    if let Ok(only) = std::env::var("CLIENT_BENCH_ONLY") {
        let which = ROWS
            .into_iter()
            .find(|r| *r == only)
            .expect("CLIENT_BENCH_ONLY names a row");
        let n: u64 = std::env::var("CLIENT_BENCH_CALLS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        rt.block_on(async {
            for _ in 0..n {
                black_box(call(&rows, which).await);
            }
        });
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    latency(&mut c, &rt, &rows);
    c.final_summary();

    // `cargo test --benches` runs this binary with `--bench` absent: keep it short there.
    let full = std::env::args().any(|a| a == "--bench");
    let (calls, rounds) = if full { (5_000, 6) } else { (50, 1) };
    let allocs = allocations(&rt, &rows, calls);
    let res = cpu(&rt, &rows, calls, rounds);
    let (_, base_wall, base_cpu) = res[0];
    println!(
        "\nper call, {} calls x {} alternating rounds (client thread CPU from schedstat):",
        calls, rounds
    );
    println!(
        "{:<18} {:>12} {:>8} {:>12} {:>8} {:>12}",
        "row", "wall ns", "ratio", "cpu ns", "ratio", "allocs/call"
    );
    for ((name, wall, cpu), (_, allocs)) in res.iter().zip(&allocs) {
        let cpu_ratio = if base_cpu > 0.0 {
            cpu / base_cpu
        } else {
            f64::NAN
        };
        println!(
            "{name:<18} {wall:>12.0} {:>8.3} {cpu:>12.0} {cpu_ratio:>8.3} {allocs:>12.1}",
            wall / base_wall,
        );
    }
}
