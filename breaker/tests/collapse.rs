//! Request collapsing: one batch call per key and window, results fanned out in order, item
//! errors isolated, batch errors shared by the batch, full batches sent at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_breaker::collapse::CollapseLayer;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

#[derive(Debug, PartialEq)]
struct NotFound(u32);
impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} not found", self.0)
    }
}
impl std::error::Error for NotFound {}

type Batches = Arc<Mutex<Vec<(Instant, Vec<(char, u32)>)>>>;

/// Looks up (shard, id) pairs in one call; ids over 100 are not found; shard 'x' fails whole.
fn batch_service(
    seen: Batches,
) -> impl Service<
    Vec<(char, u32)>,
    Response = Vec<Result<u32, NotFound>>,
    Error = std::io::Error,
    Future: Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |reqs: Vec<(char, u32)>| {
        seen.lock().unwrap().push((Instant::now(), reqs.clone()));
        async move {
            if reqs.iter().any(|(shard, _)| *shard == 'x') {
                return Err(std::io::Error::other("shard down"));
            }
            Ok(reqs
                .into_iter()
                .map(|(_, id)| {
                    if id > 100 {
                        Err(NotFound(id))
                    } else {
                        Ok(id * 2)
                    }
                })
                .collect())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_become_one_batch_per_key() {
    let seen = Batches::default();
    let svc = CollapseLayer::new(Duration::from_millis(10), 100, |r: &(char, u32)| r.0)
        .layer(batch_service(seen.clone()));
    let start = Instant::now();
    let calls: Vec<_> = [('a', 1), ('b', 2), ('a', 3), ('a', 101), ('b', 4)]
        .into_iter()
        .map(|r| tokio::spawn(svc.clone().oneshot(r)))
        .collect();
    let mut results = Vec::new();
    for c in calls {
        results.push(c.await.unwrap());
    }
    assert_eq!(results[0].as_ref().unwrap(), &2);
    assert_eq!(results[1].as_ref().unwrap(), &4);
    assert_eq!(results[2].as_ref().unwrap(), &6);
    // Only the caller whose item failed sees the error.
    assert_eq!(
        results[3].as_ref().unwrap_err().item_error(),
        Some(&NotFound(101))
    );
    assert_eq!(results[4].as_ref().unwrap(), &8);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let mut shards: Vec<_> = seen.iter().map(|(_, b)| b.clone()).collect();
    shards.sort();
    assert_eq!(
        shards,
        vec![
            vec![('a', 1), ('a', 3), ('a', 101)],
            vec![('b', 2), ('b', 4)]
        ]
    );
    assert!(
        seen.iter()
            .all(|(t, _)| *t - start == Duration::from_millis(10))
    );
    assert_eq!(svc.batches_total(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_at_once_and_a_batch_error_fails_only_its_batch() {
    let seen = Batches::default();
    let svc = CollapseLayer::new(Duration::from_secs(1), 2, |r: &(char, u32)| r.0)
        .layer(batch_service(seen.clone()));
    let start = Instant::now();
    let a = tokio::spawn(svc.clone().oneshot(('x', 1)));
    let b = tokio::spawn(svc.clone().oneshot(('x', 2)));
    let c = tokio::spawn(svc.clone().oneshot(('y', 3)));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    // Sent when full, not after the 1 s window.
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(a.unwrap_err().batch_error().is_some());
    assert!(b.unwrap_err().batch_error().is_some());
    // The other key's batch is unaffected; it waits for its window.
    assert_eq!(c.await.unwrap().unwrap(), 6);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn requests_in_different_windows_are_separate_batches() {
    let seen = Batches::default();
    let mut svc = CollapseLayer::new(Duration::from_millis(5), 10, |_: &(char, u32)| ())
        .layer(batch_service(seen.clone()));
    assert_eq!(svc.ready().await.unwrap().call(('a', 1)).await.unwrap(), 2);
    assert_eq!(svc.ready().await.unwrap().call(('a', 2)).await.unwrap(), 4);
    assert_eq!(seen.lock().unwrap().len(), 2);
}
