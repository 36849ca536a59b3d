//! Fault injection: rates, latency, canned outcomes, runtime switch, seeded repeatability.

use std::time::Duration;

use palisade_breaker::chaos::{ChaosLayer, Config};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

fn echo() -> impl Service<u32, Response = u32, Error = std::io::Error, Future: Send> + Clone {
    tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) })
}

async fn run(seed: u64, cfg: Config, n: u32) -> Vec<bool> {
    let mut svc = ChaosLayer::with_seed(cfg, seed).unwrap().layer(echo());
    let mut v = Vec::new();
    for i in 0..n {
        v.push(svc.ready().await.unwrap().call(i).await.is_ok());
    }
    v
}

#[tokio::test(start_paused = true)]
async fn error_rate_is_respected_and_repeatable_with_a_seed() {
    let cfg = Config {
        error_rate: 0.3,
        ..Config::default()
    };
    let a = run(1, cfg.clone(), 10_000).await;
    let failed = a.iter().filter(|ok| !**ok).count();
    assert!((2_700..=3_300).contains(&failed), "{failed}");
    assert_eq!(a, run(1, cfg.clone(), 10_000).await);
    assert_ne!(a, run(2, cfg, 10_000).await);
}

#[tokio::test(start_paused = true)]
async fn latency_is_added_to_the_chosen_share_of_calls() {
    let cfg = Config {
        latency_rate: 1.0,
        latency: Duration::from_millis(250),
        ..Config::default()
    };
    let mut svc = ChaosLayer::new(cfg).unwrap().layer(echo());
    let start = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(5).await.unwrap(), 5);
    assert_eq!(start.elapsed(), Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn canned_outcomes_and_the_runtime_switch() {
    let layer = ChaosLayer::new(Config {
        outcome_rate: 1.0,
        enabled: false,
        ..Config::default()
    })
    .unwrap()
    .outcome(|| 503u32);
    let h = layer.handle();
    let mut svc = layer.layer(echo());
    assert_eq!(svc.ready().await.unwrap().call(200).await.unwrap(), 200);
    h.enable();
    assert!(h.is_enabled());
    assert_eq!(svc.ready().await.unwrap().call(200).await.unwrap(), 503);
    assert_eq!(h.injected_total(), 1);
    assert!(
        h.reconfigure(Config {
            error_rate: 2.0,
            ..Config::default()
        })
        .is_err()
    );
    h.reconfigure(Config {
        error_rate: 1.0,
        ..Config::default()
    })
    .unwrap();
    let err = svc.ready().await.unwrap().call(200).await.unwrap_err();
    assert!(err.is_injected());
    assert!(!palisade_breaker::is_rejection(&err));
    h.disable();
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
}
