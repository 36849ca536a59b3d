//! Zone-aware routing and slow start.

mod common;

use std::time::Duration;

use common::{id_svc, sim_svc};
use palisade_balancer::discover::{StaticList, channel};
use palisade_balancer::rng::SmallRng;
use palisade_balancer::{
    Balance, Config, Endpoint, Metadata, OutlierConfig, Policy, SlowStart, ZoneAware,
};
use tower::{Service, ServiceExt};

fn never(_: u64) -> bool {
    false
}
fn always(_: u64) -> bool {
    true
}

#[tokio::test(start_paused = true)]
async fn local_zone_first_then_spill_over() {
    let ms = Duration::from_millis(1);
    // Zone a: endpoints 0, 1 (1 fails always); zone b: 2, 3.
    let zone = |z: &str| Metadata::new().zone(z.to_owned());
    let list = StaticList::new([
        (
            0usize,
            Endpoint::with_metadata(sim_svc(0, ms, never), zone("a")),
        ),
        (
            1,
            Endpoint::with_metadata(sim_svc(1, ms, always), zone("a")),
        ),
        (2, Endpoint::with_metadata(sim_svc(2, ms, never), zone("b"))),
        (3, Endpoint::with_metadata(sim_svc(3, ms, never), zone("b"))),
    ]);
    let cfg = Config::with_policy(Policy::RoundRobin)
        .zone_aware(ZoneAware {
            local_zone: "a".into(),
            min_healthy_share: 0.6,
        })
        .outlier(OutlierConfig {
            consecutive_failures: Some(2),
            success_rate: None,
            max_ejection_percent: 0.5,
            ..OutlierConfig::default()
        })
        .panic_threshold(0.0);
    let mut lb = Balance::builder(list)
        .config(cfg)
        .rng(SmallRng::seed_from_u64(5))
        .build()
        .unwrap();
    let handle = lb.handle();
    let mut hits = [0; 4];
    let mut failures = 0;
    for _ in 0..4 {
        match lb.ready().await.unwrap().call(()).await {
            Ok(i) => hits[i] += 1,
            Err(_) => failures += 1,
        }
    }
    assert_eq!(
        (hits, failures),
        ([2, 0, 0, 0], 2),
        "zone a only while healthy"
    );
    assert!(handle.snapshot().local_zone_only);
    // Endpoint 1 was ejected after 2 failures: zone a is 50 % healthy (< 60 %): spill over.
    let mut hits = [0; 4];
    for _ in 0..30 {
        hits[lb.ready().await.unwrap().call(()).await.unwrap()] += 1;
    }
    assert_eq!(hits, [10, 0, 10, 10]);
    assert!(!handle.snapshot().local_zone_only);
}

#[tokio::test]
async fn local_zone_only_when_healthy() {
    let list = StaticList::new([
        (
            0usize,
            Endpoint::with_metadata(id_svc(0), Metadata::new().zone("b")),
        ),
        (
            1,
            Endpoint::with_metadata(id_svc(1), Metadata::new().zone("a")),
        ),
        (
            2,
            Endpoint::with_metadata(id_svc(2), Metadata::new().zone("a")),
        ),
        (3, Endpoint::new(id_svc(3))),
    ]);
    let mut lb = Balance::builder(list)
        .config(Config::with_policy(Policy::Random).zone_aware(ZoneAware::new("a")))
        .rng(SmallRng::seed_from_u64(5))
        .build()
        .unwrap();
    let handle = lb.handle();
    let mut hits = [0; 4];
    for _ in 0..100 {
        hits[lb.ready().await.unwrap().call(()).await.unwrap()] += 1;
    }
    assert_eq!(hits[0] + hits[3], 0, "{hits:?}");
    assert!(hits[1] > 30 && hits[2] > 30, "{hits:?}");
    assert!(handle.snapshot().local_zone_only);
}

#[test]
fn slow_start_scale_follows_envoy_formula() {
    let ss = SlowStart {
        window: Duration::from_secs(10),
        aggression: 2.0,
        min_weight_percent: 0.1,
    };
    assert_eq!(ss.scale(Duration::ZERO), 0.1);
    assert!((ss.scale(Duration::from_millis(2500)) - 0.5).abs() < 1e-9); // sqrt(0.25)
    assert_eq!(ss.scale(Duration::from_secs(10)), 1.0);
    let linear = SlowStart::default();
    assert!((linear.scale(Duration::from_secs(15)) - 0.5).abs() < 1e-9);
}

async fn share<S>(lb: &mut S) -> f64
where
    S: Service<(), Response = usize>,
    S::Error: std::fmt::Debug,
{
    let mut hits = [0u32; 2];
    for _ in 0..1000 {
        hits[lb.ready().await.unwrap().call(()).await.unwrap()] += 1;
    }
    f64::from(hits[1]) / 1000.0
}

#[tokio::test(start_paused = true)]
async fn new_endpoint_ramps_up_under_weighted_round_robin() {
    let (tx, d) = channel();
    tx.insert(0usize, Endpoint::new(id_svc(0)));
    let cfg = Config::with_policy(Policy::WeightedRoundRobin).slow_start(SlowStart {
        window: Duration::from_secs(10),
        aggression: 1.0,
        min_weight_percent: 0.1,
    });
    let mut lb = Balance::builder(d).config(cfg).build().unwrap();
    // The first batch is at full weight.
    assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), 0);
    tx.insert(1, Endpoint::new(id_svc(1)));
    // At t=0 the newcomer has 10 % weight: 0.1 / 1.1 of the traffic.
    let s0 = share(&mut lb).await;
    assert!((s0 - 0.1 / 1.1).abs() < 0.01, "{s0}");
    tokio::time::advance(Duration::from_secs(5)).await;
    let s5 = share(&mut lb).await;
    assert!((s5 - 0.5 / 1.5).abs() < 0.01, "{s5}");
    tokio::time::advance(Duration::from_secs(5)).await;
    let s10 = share(&mut lb).await;
    assert!((s10 - 0.5).abs() < 0.01, "{s10}");
}
