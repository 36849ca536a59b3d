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
async fn tripped_breaker_gets_one_probe_at_a_time_in_half_open() {
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
    // Find the probe: send slow requests until one goes to endpoint 1, keeping it in flight.
    let mut probe = None;
    for _ in 0..2 {
        let fut = lb.ready().await.unwrap().call(2);
        let mut fut = tokio_test::task::spawn(fut);
        match fut.poll() {
            std::task::Poll::Ready(r) => assert_eq!(r.unwrap(), 0),
            std::task::Poll::Pending => probe = Some(fut),
        }
    }
    let probe = probe.expect("endpoint 1 got a probe");
    assert_eq!(bh.snapshot().half_open_probes, 1);
    // While the probe is out, everything goes to endpoint 0 (the breaker would allow 3 probes,
    // but the balancer sends one at a time).
    for _ in 0..10 {
        assert_eq!(lb.ready().await.unwrap().call(0).await.unwrap(), 0);
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    let mut probe = probe;
    assert!(probe.is_woken());
    match probe.poll() {
        std::task::Poll::Ready(r) => assert_eq!(r.unwrap(), 1),
        std::task::Poll::Pending => panic!("probe still pending after its latency"),
    }
    // One success of the three required: still half-open, no probe in flight.
    assert_eq!(bh.state(), State::HalfOpen);
    assert_eq!(bh.snapshot().half_open_successes, 1);
    let mut hits = [0; 2];
    for _ in 0..4 {
        hits[lb.ready().await.unwrap().call(0).await.unwrap()] += 1;
    }
    assert!(hits[1] > 0, "endpoint 1 is a candidate again: {hits:?}");
    // Sequential probes succeed one after the other until the breaker closes.
    for _ in 0..6 {
        let _ = lb.ready().await.unwrap().call(0).await.unwrap();
    }
    assert_eq!(bh.state(), State::Closed);
}
