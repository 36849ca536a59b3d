//! Runs N closed-state calls through one circuit breaker implementation, for instruction counting
//! with callgrind (`benches/scripts/breaker-instructions.sh`): instruction counts do not depend on
//! what else the machine is doing, unlike criterion's wall-clock medians.
//!
//! Usage: `breaker_calls <bare|palisade|tower-resilience|recloser|recloser-async|failsafe|failsafe-async> N`

use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll};

use palisade_breaker::circuit::{CircuitBreakerLayer, Config};
use tower::{Layer, Service};

#[derive(Debug)]
struct Fail;

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fail")
    }
}

impl std::error::Error for Fail {}

fn op(x: u64) -> Result<u64, Fail> {
    if x == u64::MAX {
        Err(Fail)
    } else {
        Ok(std::hint::black_box(x))
    }
}

fn poll_once<F: Future>(fut: F, cx: &mut Context<'_>) -> F::Output {
    match pin!(fut).poll(cx) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("future pending"),
    }
}

fn drive<S: Service<u64>>(svc: &mut S, x: u64, cx: &mut Context<'_>) -> bool {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => poll_once(svc.call(x), cx).is_ok(),
        _ => panic!("not ready"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().expect("implementation name");
    let n: u64 = args
        .next()
        .map_or(1_000_000, |s| s.parse().expect("a count"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _rt = rt.enter();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let backend: fn(u64) -> Ready<Result<u64, Fail>> = |x| ready(op(x));
    let mut ok = 0u64;
    match which.as_str() {
        "bare" => {
            let mut s = tower::service_fn(backend);
            (0..n).for_each(|i| ok += u64::from(drive(&mut s, i, &mut cx)));
        }
        "palisade" => {
            let layer = CircuitBreakerLayer::new("b", Config::default()).expect("config");
            let mut s = layer.layer(tower::service_fn(backend));
            (0..n).for_each(|i| ok += u64::from(drive(&mut s, i, &mut cx)));
        }
        "tower-resilience" => {
            let layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .build()
                .expect("config");
            let mut s = layer.layer(tower::service_fn(backend));
            (0..n).for_each(|i| ok += u64::from(drive(&mut s, i, &mut cx)));
        }
        "recloser" => {
            let r = recloser::Recloser::custom().build();
            (0..n).for_each(|i| ok += u64::from(r.call(|| op(i)).is_ok()));
        }
        "recloser-async" => {
            let r = recloser::AsyncRecloser::from(recloser::Recloser::custom().build());
            (0..n).for_each(|i| ok += u64::from(poll_once(r.call(ready(op(i))), &mut cx).is_ok()));
        }
        "failsafe" => {
            use failsafe::CircuitBreaker;
            let f = failsafe::Config::new().build();
            (0..n).for_each(|i| ok += u64::from(f.call(|| op(i)).is_ok()));
        }
        "failsafe-async" => {
            use failsafe::futures::CircuitBreaker;
            let f = failsafe::Config::new().build();
            (0..n).for_each(|i| ok += u64::from(poll_once(f.call(ready(op(i))), &mut cx).is_ok()));
        }
        other => panic!("unknown implementation {other}"),
    }
    assert_eq!(ok, n, "every call succeeded");
}
