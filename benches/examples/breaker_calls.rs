//! Runs N closed-state calls through one circuit breaker implementation, for instruction counting
//! with callgrind (`benches/scripts/breaker-instructions.sh`): instruction counts do not depend on
//! what else the machine is doing, unlike criterion's wall-clock medians.
//!
//! Usage: `breaker_calls <bare|palisade|tower-resilience|recloser|recloser-async|failsafe|failsafe-async> N`

use std::future::{Ready, ready};
use std::task::Context;

use palisade_benches::{Fail, drive, op, poll_once};

use palisade_breaker::circuit::{CircuitBreakerLayer, Config};
use tower::Layer;

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
