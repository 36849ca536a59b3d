//! Outlier detection: consecutive failures, success rate, failure percentage, growing ejection
//! time, max ejection percent, panic threshold. Paused time, seeded RNG.

mod common;

use std::time::Duration;

use common::{balancer, sim_svc};
use palisade_balancer::{
    Config, EjectionReason, EndpointState, FailurePercentage, OutlierConfig, Policy, SuccessRate,
};
use tower::{Service, ServiceExt};

fn never(_: u64) -> bool {
    false
}
fn always(_: u64) -> bool {
    true
}
fn every_other(n: u64) -> bool {
    n.is_multiple_of(2)
}
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn consecutive_only(n: u32) -> OutlierConfig {
    OutlierConfig {
        consecutive_failures: Some(n),
        success_rate: None,
        failure_percentage: None,
        base_ejection_time: Duration::from_secs(10),
        max_ejection_time: Duration::from_secs(25),
        max_ejection_percent: 1.0,
        ..OutlierConfig::default()
    }
}

/// Sends `n` requests one at a time; returns how many reached each endpoint (failures count).
async fn send<S>(lb: &mut S, n: usize, endpoints: usize) -> (Vec<usize>, usize)
where
    S: Service<(), Response = usize, Error = palisade_balancer::BoxError>,
{
    let mut hits = vec![0; endpoints];
    let mut failures = 0;
    for _ in 0..n {
        match lb.ready().await.unwrap().call(()).await {
            Ok(id) => hits[id] += 1,
            Err(_) => failures += 1,
        }
    }
    (hits, failures)
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_eject_for_growing_time_then_return() {
    let cfg = Config::with_policy(Policy::RoundRobin)
        .outlier(consecutive_only(3))
        .panic_threshold(0.0);
    let mut lb = balancer(
        cfg,
        vec![
            (sim_svc(0, ms(1), never), 1),
            (sim_svc(1, ms(1), never), 1),
            (sim_svc(2, ms(1), always), 1),
        ],
    );
    let handle = lb.handle();
    // Round robin: endpoint 2 fails its 3rd call on the 9th request.
    let (_, failures) = send(&mut lb, 9, 3).await;
    assert_eq!(failures, 3);
    let (hits, failures) = send(&mut lb, 30, 3).await;
    assert_eq!(failures, 0, "ejected endpoint got traffic: {hits:?}");
    let snap = handle.snapshot();
    let e = snap.endpoint("2").unwrap();
    assert_eq!(e.state, EndpointState::Ejected);
    assert_eq!(e.last_ejection, Some(EjectionReason::ConsecutiveFailures));
    assert_eq!(e.ejections, 1);
    assert!(e.ejected_for.unwrap() <= Duration::from_secs(10));

    // After the base ejection time it is back, fails 3 more times and is out for twice as long.
    tokio::time::advance(Duration::from_secs(10)).await;
    let (_, failures) = send(&mut lb, 9, 3).await;
    assert_eq!(failures, 3);
    let _ = send(&mut lb, 1, 3).await;
    let e = handle.snapshot().endpoint("2").cloned().unwrap();
    assert_eq!(e.ejections, 2);
    let left = e.ejected_for.unwrap();
    assert!(
        left > Duration::from_secs(19) && left <= Duration::from_secs(20),
        "{left:?}"
    );

    // The third ejection is capped at max_ejection_time (25 s, not 30 s).
    tokio::time::advance(Duration::from_secs(20)).await;
    let _ = send(&mut lb, 10, 3).await;
    let e = handle.snapshot().endpoint("2").cloned().unwrap();
    assert_eq!(e.ejections, 3);
    let left = e.ejected_for.unwrap();
    assert!(
        left > Duration::from_secs(24) && left <= Duration::from_secs(25),
        "{left:?}"
    );
    // The history keeps all three, oldest first, with their set durations.
    let durations: Vec<u64> = e.history.iter().map(|h| h.duration.as_secs()).collect();
    assert_eq!(durations, [10, 20, 25]);
    assert!(e.history[0].ago > e.history[2].ago);
    assert!(
        e.history
            .iter()
            .all(|h| h.reason == EjectionReason::ConsecutiveFailures)
    );
}

#[tokio::test(start_paused = true)]
async fn success_rate_ejects_the_statistical_outlier_only() {
    let cfg = Config::with_policy(Policy::RoundRobin).outlier(OutlierConfig {
        interval: Duration::from_secs(1),
        consecutive_failures: None,
        success_rate: Some(SuccessRate {
            stdev_factor: 1.9,
            minimum_hosts: 5,
            request_volume: 10,
        }),
        max_ejection_percent: 0.5,
        ..OutlierConfig::default()
    });
    let mut services: Vec<_> = (0..5).map(|i| (sim_svc(i, ms(1), never), 1)).collect();
    services.push((sim_svc(5, ms(1), every_other), 1));
    let mut lb = balancer(cfg, services);
    let handle = lb.handle();
    // 20 calls per endpoint in the first interval (each call takes 1 ms of virtual time).
    let (_, failures) = send(&mut lb, 120, 6).await;
    assert_eq!(failures, 10);
    assert_eq!(
        handle.snapshot().count(EndpointState::Ejected),
        0,
        "judged only per interval"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let (hits, failures) = send(&mut lb, 50, 6).await;
    assert_eq!(failures, 0);
    assert_eq!(hits[5], 0);
    let snap = handle.snapshot();
    assert_eq!(snap.count(EndpointState::Ejected), 1);
    assert_eq!(
        snap.endpoint("5").unwrap().last_ejection,
        Some(EjectionReason::SuccessRate)
    );
}

#[tokio::test(start_paused = true)]
async fn success_rate_needs_minimum_hosts() {
    let cfg = Config::with_policy(Policy::RoundRobin).outlier(OutlierConfig {
        interval: Duration::from_secs(1),
        consecutive_failures: None,
        success_rate: Some(SuccessRate {
            stdev_factor: 1.0,
            minimum_hosts: 5,
            request_volume: 10,
        }),
        max_ejection_percent: 1.0,
        ..OutlierConfig::default()
    });
    // Only 3 endpoints: below minimum_hosts, so nobody is judged.
    let services = vec![
        (sim_svc(0, ms(1), never), 1),
        (sim_svc(1, ms(1), never), 1),
        (sim_svc(2, ms(1), every_other), 1),
    ];
    let mut lb = balancer(cfg, services);
    let handle = lb.handle();
    let _ = send(&mut lb, 60, 3).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let _ = send(&mut lb, 3, 3).await;
    assert_eq!(handle.snapshot().count(EndpointState::Ejected), 0);
}

#[tokio::test(start_paused = true)]
async fn failure_percentage_ejects_above_threshold() {
    let cfg = Config::with_policy(Policy::RoundRobin).outlier(OutlierConfig {
        interval: Duration::from_secs(1),
        consecutive_failures: None,
        success_rate: None,
        failure_percentage: Some(FailurePercentage {
            threshold: 0.4,
            minimum_hosts: 3,
            request_volume: 10,
        }),
        max_ejection_percent: 1.0,
        ..OutlierConfig::default()
    });
    let services = vec![
        (sim_svc(0, ms(1), never), 1),
        (sim_svc(1, ms(1), |n| n.is_multiple_of(4)), 1), // 25 %: stays
        (sim_svc(2, ms(1), every_other), 1),             // 50 %: ejected
    ];
    let mut lb = balancer(cfg, services);
    let handle = lb.handle();
    let _ = send(&mut lb, 60, 3).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let _ = send(&mut lb, 3, 3).await;
    let snap = handle.snapshot();
    assert_eq!(snap.endpoint("2").unwrap().state, EndpointState::Ejected);
    assert_eq!(
        snap.endpoint("2").unwrap().last_ejection,
        Some(EjectionReason::FailurePercentage)
    );
    assert_eq!(snap.endpoint("1").unwrap().state, EndpointState::Active);
}

#[tokio::test(start_paused = true)]
async fn max_ejection_percent_caps_ejections() {
    let mut o = consecutive_only(2);
    o.max_ejection_percent = 0.25;
    let cfg = Config::with_policy(Policy::RoundRobin)
        .outlier(o)
        .panic_threshold(0.0);
    let services = vec![
        (sim_svc(0, ms(1), never), 1),
        (sim_svc(1, ms(1), never), 1),
        (sim_svc(2, ms(1), always), 1),
        (sim_svc(3, ms(1), always), 1),
    ];
    let mut lb = balancer(cfg, services);
    let handle = lb.handle();
    let _ = send(&mut lb, 40, 4).await;
    let snap = handle.snapshot();
    // 25 % of 4 endpoints: one ejection at a time, though both failing endpoints qualify.
    assert_eq!(snap.count(EndpointState::Ejected), 1, "{snap:?}");
    let (hits, _) = send(&mut lb, 30, 4).await;
    assert_eq!(
        hits[0] + hits[1],
        20,
        "the other failing endpoint still gets traffic"
    );
}

#[tokio::test(start_paused = true)]
async fn panic_threshold_ignores_health_when_too_few_are_healthy() {
    let mut o = consecutive_only(1);
    o.max_ejection_percent = 1.0;
    let services = || {
        vec![
            (sim_svc(0, ms(1), never), 1),
            (sim_svc(1, ms(1), always), 1),
            (sim_svc(2, ms(1), always), 1),
            (sim_svc(3, ms(1), always), 1),
        ]
    };
    // Threshold 0.5: three of four ejected leaves 25 % healthy, so every endpoint is used.
    let mut lb = balancer(
        Config::with_policy(Policy::RoundRobin)
            .outlier(o.clone())
            .panic_threshold(0.5),
        services(),
    );
    let handle = lb.handle();
    let _ = send(&mut lb, 8, 4).await;
    let snap = handle.snapshot();
    assert_eq!(snap.count(EndpointState::Ejected), 3);
    assert!(snap.panic);
    let (_, failures) = send(&mut lb, 40, 4).await;
    assert_eq!(failures, 30, "panic mode routes to ejected endpoints too");

    // Threshold 0: no panic, all traffic to the one healthy endpoint.
    let mut lb = balancer(
        Config::with_policy(Policy::RoundRobin)
            .outlier(o)
            .panic_threshold(0.0),
        services(),
    );
    let handle = lb.handle();
    let _ = send(&mut lb, 8, 4).await;
    let (hits, failures) = send(&mut lb, 40, 4).await;
    assert_eq!((hits[0], failures), (40, 0));
    assert!(!handle.snapshot().panic);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_do_not_count() {
    // A classifier that ignores every error: no ejection however often an endpoint fails.
    let cfg = Config::with_policy(Policy::RoundRobin)
        .outlier(consecutive_only(1))
        .panic_threshold(0.0);
    let list = palisade_balancer::discover::StaticList::new([
        (
            0usize,
            palisade_balancer::Endpoint::new(sim_svc(0, ms(1), never)),
        ),
        (
            1usize,
            palisade_balancer::Endpoint::new(sim_svc(1, ms(1), always)),
        ),
    ]);
    let mut lb = palisade_balancer::Balance::builder(list)
        .config(cfg)
        .classifier(
            |r: Result<&usize, &std::io::Error>, _: Option<Duration>| match r {
                Ok(_) => palisade_breaker::Outcome::Success,
                Err(_) => palisade_breaker::Outcome::Ignored,
            },
        )
        .build()
        .unwrap();
    let handle = lb.handle();
    let (_, failures) = send(&mut lb, 20, 2).await;
    assert_eq!(failures, 10);
    assert_eq!(handle.snapshot().count(EndpointState::Ejected), 0);
}
