//! Shared pieces of the Palisade benches (`benches/`, `examples/`); see `README.md`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll};

use tower::Service;

/// The error of the benches' protected operation.
#[derive(Debug)]
pub struct Fail;

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fail")
    }
}

impl std::error::Error for Fail {}

/// The protected operation of every breaker bench: returns its argument, fails for `u64::MAX`.
#[inline]
pub fn op(x: u64) -> Result<u64, Fail> {
    if x == u64::MAX {
        Err(Fail)
    } else {
        Ok(std::hint::black_box(x))
    }
}

/// Polls a future that completes at once.
///
/// # Panics
/// If the future is pending.
#[inline]
pub fn poll_once<F: Future>(fut: F, cx: &mut Context<'_>) -> F::Output {
    match pin!(fut).poll(cx) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("future pending"),
    }
}

/// poll_ready + call + poll with the given context. Under contention a peer's async mutex can
/// return `Pending`; this spins on it as an executor would re-poll. Returns whether the call
/// succeeded.
#[inline]
pub fn drive<S: Service<u64>>(svc: &mut S, x: u64, cx: &mut Context<'_>) -> bool {
    loop {
        match svc.poll_ready(cx) {
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(_)) => return false,
            Poll::Pending => std::hint::spin_loop(),
        }
    }
    let mut fut = pin!(svc.call(x));
    loop {
        match fut.as_mut().poll(cx) {
            Poll::Ready(r) => return r.is_ok(),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
}

/// Where criterion writes its estimates: `$CARGO_TARGET_DIR/criterion`, or the workspace's
/// `target/criterion`.
pub fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// The median (ns) of the latest run of the benchmark at `path` below [`criterion_dir`]
/// (`group/name`, or `group/name/parameter`), if it ran.
pub fn median_ns(path: &[&str]) -> Option<f64> {
    let mut p = criterion_dir();
    p.extend(path);
    let text = std::fs::read_to_string(p.join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// Allocations per call of `call`, over `n` calls: the least of three passes. The counter of
/// `stats_alloc` is process-wide, so another thread's stray allocation during a pass would be
/// charged to the code measured; an allocation on that code's own path shows up in every pass.
/// Warm up lazily created state before calling this.
pub fn allocations_per_call(
    global: &'static stats_alloc::StatsAlloc<std::alloc::System>,
    n: usize,
    mut call: impl FnMut(usize),
) -> f64 {
    let least = (0..3)
        .map(|_| {
            let region = stats_alloc::Region::new(global);
            for i in 0..n {
                call(i);
            }
            region.change().allocations
        })
        .min()
        .unwrap_or(0);
    least as f64 / n as f64
}
