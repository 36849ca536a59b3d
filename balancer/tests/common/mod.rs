#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use palisade_balancer::discover::StaticList;
use palisade_balancer::rng::SmallRng;
use palisade_balancer::{Balance, Config, Endpoint, Metadata, Policy};
use tower::Service;
use tower::service_fn;

/// An endpoint that answers its own id at once.
pub fn id_svc(
    id: usize,
) -> impl Service<
    (),
    Response = usize,
    Error = Infallible,
    Future = impl Future<Output = Result<usize, Infallible>>,
> + Clone {
    service_fn(move |()| async move { Ok::<_, Infallible>(id) })
}

/// An endpoint that answers its id after `latency` and fails when `fail(n)` says so for its
/// `n`-th call.
pub fn sim_svc(
    id: usize,
    latency: Duration,
    fail: fn(u64) -> bool,
) -> impl Service<
    (),
    Response = usize,
    Error = io::Error,
    Future = impl Future<Output = Result<usize, io::Error>>,
> + Clone {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    service_fn(move |()| {
        let k = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            tokio::time::sleep(latency).await;
            if fail(k) {
                Err(io::Error::other("endpoint failed"))
            } else {
                Ok(id)
            }
        }
    })
}

/// A balancer over `services` (keys 0..n, weight from `weights` or 1) with a seeded RNG.
pub fn balancer<S>(config: Config, services: Vec<(S, u32)>) -> Balance<StaticList<usize, S>, ()> {
    let list = StaticList::new(
        services
            .into_iter()
            .enumerate()
            .map(|(i, (s, w))| (i, Endpoint::with_metadata(s, Metadata::new().weight(w)))),
    );
    Balance::builder(list)
        .config(config)
        .rng(SmallRng::seed_from_u64(7))
        .build()
        .unwrap()
}

pub fn peak_ewma() -> Policy {
    Policy::PeakEwma {
        default_rtt: Duration::from_millis(1),
        decay: Duration::from_secs(1),
    }
}
