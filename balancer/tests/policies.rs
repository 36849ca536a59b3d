//! Each policy's selection, deterministic (seeded RNG, paused time).

mod common;

use std::time::Duration;

use common::{balancer, id_svc, peak_ewma, sim_svc};
use futures::StreamExt;
use palisade_balancer::{Config, Policy};
use tower::limit::ConcurrencyLimit;
use tower::{Service, ServiceExt};

async fn picks<S>(lb: &mut S, n: usize) -> Vec<usize>
where
    S: Service<(), Response = usize>,
    S::Error: std::fmt::Debug,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(lb.ready().await.unwrap().call(()).await.unwrap());
    }
    out
}

fn counts(picks: &[usize], n: usize) -> Vec<usize> {
    let mut c = vec![0; n];
    for &p in picks {
        c[p] += 1;
    }
    c
}

#[tokio::test]
async fn round_robin_cycles_in_order() {
    let mut lb = balancer(
        Config::with_policy(Policy::RoundRobin),
        (0..3).map(|i| (id_svc(i), 1)).collect(),
    );
    assert_eq!(picks(&mut lb, 7).await, [0, 1, 2, 0, 1, 2, 0]);
}

#[tokio::test]
async fn random_is_repeatable_and_uniform() {
    let run = || async {
        let mut lb = balancer(
            Config::with_policy(Policy::Random),
            (0..4).map(|i| (id_svc(i), 1)).collect(),
        );
        picks(&mut lb, 4000).await
    };
    let a = run().await;
    let b = run().await;
    assert_eq!(a, b, "same seed, same picks");
    for (i, c) in counts(&a, 4).into_iter().enumerate() {
        assert!((850..1150).contains(&c), "endpoint {i}: {c} of 4000");
    }
    assert_ne!(a[..20], [a[0]; 20], "not stuck on one endpoint");
}

#[tokio::test]
async fn weighted_round_robin_is_smooth_and_proportional() {
    let mut lb = balancer(
        Config::with_policy(Policy::WeightedRoundRobin),
        vec![(id_svc(0), 5), (id_svc(1), 1), (id_svc(2), 1)],
    );
    // nginx's smooth WRR for weights 5, 1, 1 interleaves instead of sending 5 in a row.
    let p = picks(&mut lb, 14).await;
    assert_eq!(&p[..7], [0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(&p[7..], &p[..7], "the sequence repeats every total weight");
    let p = picks(&mut lb, 7000).await;
    assert_eq!(counts(&p, 3), [5000, 1000, 1000]);
}

/// Runs `total` requests at concurrency `conc` through the balancer over endpoints with the
/// given latencies; returns per-endpoint counts and the elapsed (virtual) time.
async fn run_latencies(policy: Policy, latencies: &[u64], total: usize, conc: usize) -> Vec<usize> {
    let lb = balancer(
        Config::with_policy(policy),
        latencies
            .iter()
            .enumerate()
            .map(|(i, ms)| (sim_svc(i, Duration::from_millis(*ms), |_| false), 1))
            .collect(),
    );
    let svc = ConcurrencyLimit::new(lb, conc);
    let responses: Vec<usize> = svc
        .call_all(futures::stream::repeat(()).take(total))
        .unordered()
        .map(|r| r.unwrap())
        .collect()
        .await;
    counts(&responses, latencies.len())
}

#[tokio::test(start_paused = true)]
async fn least_outstanding_avoids_the_slow_endpoint() {
    let c = run_latencies(Policy::LeastOutstanding, &[1, 1, 1, 100], 2000, 8).await;
    // Round robin would send it 500; in-flight counts pile up on it and P2C steers away.
    assert!(c[3] < 150, "slow endpoint got {} of 2000: {c:?}", c[3]);
    let rr = run_latencies(Policy::RoundRobin, &[1, 1, 1, 100], 2000, 8).await;
    assert_eq!(rr, [500, 500, 500, 500]);
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_avoids_the_slow_endpoint() {
    let c = run_latencies(peak_ewma(), &[1, 1, 1, 100], 2000, 8).await;
    assert!(c[3] < 60, "slow endpoint got {} of 2000: {c:?}", c[3]);
    // ... yet still probes it now and then (the estimate decays), so it is not starved forever.
    assert!(c[3] > 0, "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn p2c_divides_load_by_weight() {
    // Equal latency, weights 3:1: the heavy endpoint takes most of the traffic.
    let lb = balancer(
        Config::with_policy(Policy::LeastOutstanding),
        vec![
            (sim_svc(0, Duration::from_millis(10), |_| false), 3),
            (sim_svc(1, Duration::from_millis(10), |_| false), 1),
        ],
    );
    let svc = ConcurrencyLimit::new(lb, 8);
    let r: Vec<usize> = svc
        .call_all(futures::stream::repeat(()).take(800))
        .unordered()
        .map(|r| r.unwrap())
        .collect()
        .await;
    let c = counts(&r, 2);
    assert!(c[0] > 2 * c[1], "weights 3:1 gave {c:?}");
}
