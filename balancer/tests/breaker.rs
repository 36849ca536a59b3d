//! An endpoint whose circuit breaker does not admit calls is routed around.

use std::io;
use std::time::Duration;

use palisade_balancer::discover::StaticList;
use palisade_balancer::rng::SmallRng;
use palisade_balancer::{Balance, Config, Endpoint, EndpointState, Metadata, Policy};
use palisade_breaker::State;
use palisade_breaker::circuit::{
    CircuitBreakerLayer, Config as BreakerConfig, OpenDuration, TripPolicy,
};
use tower::{Layer, Service, ServiceExt, service_fn};

fn breaker_config() -> BreakerConfig {
    BreakerConfig::builder()
        .trip(TripPolicy::consecutive_failures(2))
        .open_duration(OpenDuration::constant(Duration::from_secs(5)))
        .half_open_probes(3)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn open_breaker_is_routed_around_and_rejoins_when_closed() {
    let mut handles = Vec::new();
    let endpoints: Vec<_> = (0..3usize)
        .map(|i| {
            let layer = CircuitBreakerLayer::new(format!("ep{i}"), breaker_config()).unwrap();
            let h = layer.handle();
            handles.push(h.clone());
            let svc = layer.layer(service_fn(move |fail: bool| async move {
                if fail {
                    Err(io::Error::other("down"))
                } else {
                    Ok(i)
                }
            }));
            (i, Endpoint::with_metadata(svc, Metadata::new().breaker(h)))
        })
        .collect();
    let mut lb = Balance::builder(StaticList::new(endpoints))
        .config(Config::with_policy(Policy::RoundRobin).panic_threshold(0.0))
        .rng(SmallRng::seed_from_u64(1))
        .build()
        .unwrap();
    let handle = lb.handle();

    handles[1].force_open();
    let mut hits = [0; 3];
    for _ in 0..30 {
        let id = lb.ready().await.unwrap().call(false).await.unwrap();
        hits[id] += 1;
    }
    assert_eq!(hits, [15, 0, 15], "no request reached the open breaker");
    let snap = handle.snapshot();
    assert_eq!(
        snap.endpoint("1").unwrap().state,
        EndpointState::BreakerOpen
    );
    assert_eq!(snap.endpoint("1").unwrap().breaker, Some(State::ForcedOpen));

    handles[1].close();
    let mut hits = [0; 3];
    for _ in 0..30 {
        let id = lb.ready().await.unwrap().call(false).await.unwrap();
        hits[id] += 1;
    }
    assert_eq!(hits, [10, 10, 10]);
}

#[tokio::test(start_paused = true)]
async fn half_open_breaker_gets_exactly_its_probe_slots_and_no_rejection() {
    let layer = CircuitBreakerLayer::new("flaky", breaker_config()).unwrap();
    let bh = layer.handle();
    // Endpoint 1 fails fast or hangs for 1 s, by request.
    let flaky = layer.layer(service_fn(|mode: u8| async move {
        match mode {
            1 => Err(io::Error::other("down")),
            2 => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(1usize)
            }
            _ => Ok(1usize),
        }
    }));
    let steady = CircuitBreakerLayer::new("steady", breaker_config())
        .unwrap()
        .layer(service_fn(
            |_: u8| async move { Ok::<_, io::Error>(0usize) },
        ));
    let list = StaticList::new([
        (0usize, Endpoint::new(tower::util::Either::Left(steady))),
        (
            1usize,
            Endpoint::with_metadata(
                tower::util::Either::Right(flaky),
                Metadata::new().breaker(bh.clone()),
            ),
        ),
    ]);
    let mut lb = Balance::builder(list)
        .config(Config::with_policy(Policy::RoundRobin).panic_threshold(0.0))
        .build()
        .unwrap();
    // Trip endpoint 1: round robin sends it every other request.
    for _ in 0..4 {
        let _ = lb.ready().await.unwrap().call(1).await;
    }
    assert_eq!(bh.state(), State::Open);
    tokio::time::advance(Duration::from_secs(6)).await;
    tokio::task::yield_now().await;
    assert_eq!(bh.state(), State::HalfOpen);
    // Slow requests: endpoint 0 answers at once, endpoint 1 holds each for 1 s. Round robin
    // would send half of them to endpoint 1; the balancer sends it exactly the 3 probes its
    // breaker admits, then routes around it, so no request meets a rejection.
    let mut probes = Vec::new();
    for _ in 0..10 {
        let fut = lb.ready().await.unwrap().call(2);
        let mut fut = tokio_test::task::spawn(fut);
        match fut.poll() {
            std::task::Poll::Ready(r) => assert_eq!(r.unwrap(), 0),
            std::task::Poll::Pending => probes.push(fut),
        }
    }
    assert_eq!(probes.len(), 3, "exactly the breaker's probe slots");
    assert_eq!(bh.snapshot().half_open_probes, 3);
    assert!(!bh.admits());
    tokio::time::advance(Duration::from_secs(1)).await;
    for mut probe in probes {
        assert!(probe.is_woken());
        match probe.poll() {
            std::task::Poll::Ready(r) => assert_eq!(r.unwrap(), 1),
            std::task::Poll::Pending => panic!("probe still pending after its latency"),
        }
    }
    // Three successes of three required: closed, and endpoint 1 is back in the rotation.
    assert_eq!(bh.state(), State::Closed);
    let mut hits = [0; 2];
    for _ in 0..4 {
        hits[lb.ready().await.unwrap().call(0).await.unwrap()] += 1;
    }
    assert_eq!(hits, [2, 2]);
}
