//! The cost of reading a property (target: at most 5 ns, no allocation) and the time from a file
//! write to the change callback (target: p99 at most 100 ms).
//!
//! `cargo bench -p palisade-dynconfig --bench property`; figures in the crate README.

use std::alloc::System;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use palisade_dynconfig::Config;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn config() -> Config {
    Config::builder()
        .defaults(serde_json::json!({"n": 5, "s": "hello", "flag": true}))
        .build()
        .expect("valid defaults")
}

fn read_cost(c: &mut Criterion) {
    let config = config();
    let n = config.property::<u64>("n", 0).expect("decodes");
    let flag = config.property::<bool>("flag", false).expect("decodes");
    let s = config
        .property::<String>("s", String::new())
        .expect("decodes");
    let baseline = AtomicU64::new(5);
    let mut g = c.benchmark_group("property_read");
    g.bench_function("atomic_u64_load_baseline", |b| {
        b.iter(|| black_box(baseline.load(Ordering::Acquire)))
    });
    g.bench_function("get_u64", |b| b.iter(|| black_box(n.get())));
    g.bench_function("get_bool", |b| b.iter(|| black_box(flag.get())));
    g.bench_function("with_string_len", |b| {
        b.iter(|| s.with(|v| black_box(v.len())))
    });
    g.bench_function("load_arc_string", |b| b.iter(|| black_box(s.load())));
    g.finish();
}

/// Allocations made by `reads` property reads after a warm-up (ArcSwap sets up a per-thread
/// slot on first use).
fn allocations_per_reads(reads: u64) -> (usize, usize) {
    let config = config();
    let n = config.property::<u64>("n", 0).expect("decodes");
    let s = config
        .property::<String>("s", String::new())
        .expect("decodes");
    black_box(n.get());
    s.with(|v| black_box(v.len()));
    let region = Region::new(GLOBAL);
    for _ in 0..reads {
        black_box(n.get());
        s.with(|v| black_box(v.len()));
    }
    let change = region.change();
    (change.allocations, change.reallocations)
}

/// Times from the write of a file (atomic replace) to the property's change callback.
fn write_to_callback(samples: usize, debounce: Duration) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, "n: 0\n").expect("write");
    let config = Config::builder().file(&file).build().expect("valid file");
    let n = config.property::<u64>("n", 0).expect("decodes");
    let (tx, rx) = std::sync::mpsc::channel();
    n.subscribe(move |v| {
        let _ = tx.send((*v, Instant::now()));
    });
    let _watcher = rt
        .block_on(async { config.watch_files(debounce) })
        .expect("watcher");
    let tmp = dir.path().join("app.yaml.tmp");
    let mut out = Vec::with_capacity(samples);
    for i in 1..=samples as u64 {
        let start = Instant::now();
        std::fs::write(&tmp, format!("n: {i}\n")).expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
        let (v, at) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the callback runs within 5 s");
        assert_eq!(v, i);
        out.push(at - start);
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");

    let reads = if bench_mode { 10_000_000 } else { 10_000 };
    let (allocs, reallocs) = allocations_per_reads(reads);
    println!(
        "property reads: {reads} u64 + {reads} string reads made {allocs} allocations, {reallocs} reallocations"
    );
    assert_eq!(
        (allocs, reallocs),
        (0, 0),
        "a property read must not allocate"
    );

    let debounce = Duration::from_millis(20);
    let samples = if bench_mode { 200 } else { 3 };
    let mut lat = write_to_callback(samples, debounce);
    lat.sort();
    println!(
        "file write to callback, debounce {debounce:?}, {samples} samples: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );

    let mut c = Criterion::default().configure_from_args();
    read_cost(&mut c);
    c.final_summary();
}
