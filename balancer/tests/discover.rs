//! Endpoint sets from a `Discover`: static list, channel, readiness fallbacks.

mod common;

use std::io;
use std::task::{Context, Poll};

use common::id_svc;
use palisade_balancer::balance::error::NoEndpoints;
use palisade_balancer::discover::{WatchDiscover, WithMetadata, channel};
use palisade_balancer::rng::SmallRng;
use palisade_balancer::{Balance, Config, Endpoint, Metadata, Policy};
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::discover::ServiceList;
use tower::{Service, ServiceExt};

fn rr() -> Config {
    Config::with_policy(Policy::RoundRobin)
}

#[tokio::test]
async fn channel_discover_adds_replaces_and_removes() {
    let (tx, d) = channel();
    let mut lb = Balance::builder(d)
        .config(rr())
        .rng(SmallRng::seed_from_u64(3))
        .build()
        .unwrap();
    let handle = lb.handle();

    // No endpoint yet: not ready, and woken by the first insert.
    let mut ready = task::spawn(());
    assert_pending!(ready.enter(|cx, _| lb.poll_ready(cx)));
    tx.insert("a", Endpoint::new(id_svc(1)));
    assert!(ready.is_woken());
    assert_ready_ok!(ready.enter(|cx, _| lb.poll_ready(cx)));
    assert_eq!(lb.call(()).await.unwrap(), 1);

    tx.insert(
        "b",
        Endpoint::with_metadata(id_svc(2), Metadata::new().zone("z")),
    );
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(lb.ready().await.unwrap().call(()).await.unwrap());
    }
    seen.sort();
    assert_eq!(seen, [1, 1, 2, 2]);
    let snap = handle.snapshot();
    assert_eq!(snap.endpoints.len(), 2);
    assert_eq!(snap.endpoint("\"b\"").unwrap().zone.as_deref(), Some("z"));

    // Re-inserting a key replaces its service.
    tx.insert("a", Endpoint::new(id_svc(3)));
    tx.remove("b");
    for _ in 0..3 {
        assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), 3);
    }
    assert_eq!(lb.len(), 1);

    // Once the source ends with no endpoint left, the balancer fails instead of hanging.
    tx.remove("a");
    drop(tx);
    let Err(err) = lb.ready().await.map(|_| ()) else {
        panic!("ready with no endpoints")
    };
    assert!(err.is::<NoEndpoints>(), "{err}");
}

#[tokio::test]
async fn static_list_end_keeps_serving() {
    let d = WithMetadata::new(
        ServiceList::new(vec![id_svc(5), id_svc(6)]),
        |_: &usize, _: &_| Metadata::new().weight(1),
    );
    let mut lb = Balance::builder(d).config(rr()).build().unwrap();
    for want in [5, 6, 5, 6] {
        assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), want);
    }
}

/// A service whose readiness is scripted.
#[derive(Clone)]
struct Gate {
    id: usize,
    open: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

impl Service<()> for Gate {
    type Response = usize;
    type Error = io::Error;
    type Future = std::future::Ready<Result<usize, io::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        match self.open.load(std::sync::atomic::Ordering::SeqCst) {
            0 => {
                // Pending: wake when the gate changes (the test wakes through `woken` below).
                WAKERS.with(|w| w.borrow_mut().push(cx.waker().clone()));
                Poll::Pending
            }
            1 => Poll::Ready(Ok(())),
            _ => Poll::Ready(Err(io::Error::other("broken"))),
        }
    }

    fn call(&mut self, (): ()) -> Self::Future {
        std::future::ready(Ok(self.id))
    }
}

thread_local! {
    static WAKERS: std::cell::RefCell<Vec<std::task::Waker>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[tokio::test]
async fn not_ready_endpoints_are_skipped_and_failed_ones_removed() {
    let gates: Vec<_> = (0..3)
        .map(|id| Gate {
            id,
            open: std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0)),
        })
        .collect();
    let list = palisade_balancer::discover::StaticList::new(
        gates
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, g)| (i, Endpoint::new(g))),
    );
    let mut lb = Balance::builder(list)
        .config(Config::with_policy(Policy::Random))
        .rng(SmallRng::seed_from_u64(9))
        .build()
        .unwrap();

    // Nobody ready: pending, with every candidate's waker registered.
    let mut t = task::spawn(());
    assert_pending!(t.enter(|cx, _| lb.poll_ready(cx)));
    assert_eq!(WAKERS.with(|w| w.borrow().len()), 3);

    // Only endpoint 2 becomes ready: every request goes there whatever the policy picks.
    gates[2].open.store(1, std::sync::atomic::Ordering::SeqCst);
    WAKERS.with(|w| w.borrow_mut().drain(..).for_each(|w| w.wake()));
    assert!(t.is_woken());
    for _ in 0..10 {
        assert_ready_ok!(t.enter(|cx, _| lb.poll_ready(cx)));
        assert_eq!(lb.call(()).await.unwrap(), 2);
    }

    // Endpoint 2's readiness fails: it is removed; endpoint 1 opens and takes the traffic.
    gates[2].open.store(2, std::sync::atomic::Ordering::SeqCst);
    gates[1].open.store(1, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..10 {
        assert_ready_ok!(t.enter(|cx, _| lb.poll_ready(cx)));
        assert_eq!(lb.call(()).await.unwrap(), 1);
    }
    assert_eq!(lb.len(), 2);
}

#[tokio::test]
async fn watch_discover_diffs_whole_lists() {
    let (tx, rx) = tokio::sync::watch::channel(vec![(0usize, Endpoint::new(id_svc(0)))]);
    let mut lb = Balance::builder(WatchDiscover::new(rx))
        .config(rr())
        .build()
        .unwrap();
    let handle = lb.handle();
    assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), 0);

    // A new list with 0 kept and 1, 2 added: 0 keeps its counters.
    tx.send_replace(vec![
        (0, Endpoint::new(id_svc(0))),
        (1, Endpoint::new(id_svc(1))),
        (2, Endpoint::new(id_svc(2))),
    ]);
    let mut hits = [0; 3];
    for _ in 0..9 {
        hits[lb.ready().await.unwrap().call(()).await.unwrap()] += 1;
    }
    assert_eq!(hits, [3, 3, 3]);
    assert_eq!(
        handle.snapshot().endpoint("0").unwrap().successes,
        0,
        "outlier detection off: nothing classified"
    );
    assert_eq!(lb.len(), 3);

    // 0 and 2 leave.
    tx.send_replace(vec![(1, Endpoint::new(id_svc(1)))]);
    for _ in 0..3 {
        assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), 1);
    }
    assert_eq!(lb.len(), 1);

    // The sender goes away: the set stays as it was.
    drop(tx);
    assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), 1);
}
