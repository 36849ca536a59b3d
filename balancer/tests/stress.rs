//! Many tasks on a multi-threaded runtime share one balancer (behind a `Buffer`) while endpoints
//! fail at random and snapshots are taken: the counts add up and nothing stays in flight.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_balancer::discover::channel;
use palisade_balancer::rng::SmallRng;
use palisade_balancer::{Balance, Config, Endpoint, OutlierConfig, Policy};
use tower::buffer::Buffer;
use tower::{Service, ServiceExt, service_fn};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_churn_and_snapshots() {
    for policy in [
        Policy::RoundRobin,
        Policy::WeightedRoundRobin,
        Policy::LeastOutstanding,
        Policy::PeakEwma {
            default_rtt: Duration::from_micros(100),
            decay: Duration::from_millis(100),
        },
        Policy::Maglev { table_size: 251 },
    ] {
        let (tx, d) = channel();
        let served: Arc<Vec<AtomicU64>> = Arc::new((0..8).map(|_| AtomicU64::new(0)).collect());
        let served2 = served.clone();
        let make = move |id: usize| {
            let served = served2.clone();
            service_fn(move |n: u64| {
                served[id].fetch_add(1, Ordering::Relaxed);
                async move {
                    if n.is_multiple_of(3) {
                        tokio::task::yield_now().await;
                    }
                    if (n + id as u64).is_multiple_of(7) {
                        Err(io::Error::other("x"))
                    } else {
                        Ok(id)
                    }
                }
            })
        };
        for id in 0..6 {
            tx.insert(id, Endpoint::new(make(id)));
        }
        let cfg = Config::with_policy(policy.clone()).outlier(OutlierConfig {
            interval: Duration::from_millis(5),
            base_ejection_time: Duration::from_millis(5),
            max_ejection_time: Duration::from_millis(20),
            max_ejection_percent: 0.5,
            ..OutlierConfig::default()
        });
        let lb = Balance::builder(d)
            .config(cfg)
            .rng(SmallRng::seed_from_u64(11))
            .hash_key(|n: &u64| Some(n % 16))
            .build()
            .unwrap();
        let handle = lb.handle();
        let svc = Buffer::new(lb, 64);
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let mut svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut err) = (0u64, 0u64);
                for n in 0..500u64 {
                    match svc.ready().await.unwrap().call(n * 8 + t).await {
                        Ok(_) => ok += 1,
                        Err(_) => err += 1,
                    }
                }
                (ok, err)
            }));
        }
        // Churn: endpoints 6 and 7 come and go while traffic flows; snapshots race with it.
        let churn = {
            let handle = handle.clone();
            tokio::spawn(async move {
                for round in 0..50 {
                    let id = 6 + round % 2;
                    tx.insert(id, Endpoint::new(make(id)));
                    let snap = handle.snapshot();
                    assert!(snap.endpoints.len() <= 8);
                    tokio::task::yield_now().await;
                    tx.remove(id);
                }
                tx
            })
        };
        let (mut ok, mut err) = (0, 0);
        for t in tasks {
            let (o, e) = t.await.unwrap();
            ok += o;
            err += e;
        }
        let _tx = churn.await.unwrap();
        assert_eq!(ok + err, 8 * 500, "{policy:?}");
        let total_served: u64 = served.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        assert_eq!(
            total_served,
            8 * 500,
            "every call reached exactly one endpoint"
        );
        // Let the balancer publish a final view, then check nothing is left in flight.
        let mut svc = svc.clone();
        let _ = svc.ready().await.unwrap().call(1).await;
        let snap = handle.snapshot();
        for e in &snap.endpoints {
            assert_eq!(e.in_flight, 0, "{policy:?}: {e:?}");
        }
        let recorded: u64 = snap
            .endpoints
            .iter()
            .map(|e| e.successes + e.failures)
            .sum();
        assert!(recorded <= 8 * 500 + 1 && recorded > 0, "{recorded}");
        assert!(err > 0 && ok > err, "{policy:?}: ok {ok} err {err}");
    }
}
