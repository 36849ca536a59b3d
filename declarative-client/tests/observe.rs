//! A `tracing` span per call (method, service, http.method, status, outcome) and the metrics
//! of ARCHITECTURE.md through the `metrics` facade, checked with a capturing subscriber and
//! metrics-util's `DebuggingRecorder`, against a real hyper server.
#![cfg(feature = "metrics")]
#![allow(missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use palisade_breaker::circuit::{Config, TripPolicy};
use palisade_client::stack::{RetryPolicy, StackBuilder};
use palisade_client::{ClientError, Json, client};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type Fields = BTreeMap<String, String>;

/// Records every span's name and fields.
#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<Fields>>>,
    next: Arc<AtomicU64>,
}

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut f = Fields::new();
        f.insert("name".into(), attrs.metadata().name().into());
        attrs.record(&mut Visitor(&mut f));
        let mut spans = self.spans.lock().unwrap();
        spans.push(f);
        self.next.fetch_add(1, Ordering::SeqCst);
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap();
        values.record(&mut Visitor(&mut spans[span.into_u64() as usize - 1]));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn snapshot(s: &Snapshotter) -> (BTreeMap<String, u64>, BTreeMap<String, usize>) {
    let mut counters = BTreeMap::new();
    let mut histograms = BTreeMap::new();
    for (k, _, _, v) in s.snapshot().into_vec() {
        let mut labels: Vec<String> = k
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", k.key().name(), labels.join(","));
        match v {
            DebugValue::Counter(c) => {
                counters.insert(name, c);
            }
            DebugValue::Histogram(h) => {
                histograms.insert(name, h.len());
            }
            DebugValue::Gauge(_) => {}
        }
    }
    (counters, histograms)
}

#[client(service = "shop", fallback = Cached)]
pub trait Shop {
    #[get("/status/{code}")]
    async fn status(&self, #[path] code: u16) -> Result<String, ClientError>;

    #[get("/malformed", fallback = false)]
    async fn malformed(&self) -> Result<Json<common::Echo>, ClientError>;

    #[get("/flaky/{fails}")]
    async fn flaky(&self, #[path] fails: u32) -> Result<String, ClientError>;
}

pub struct Cached;

impl Shop for Cached {
    async fn status(&self, _code: u16) -> Result<String, ClientError> {
        Ok("cached".into())
    }
    async fn malformed(&self) -> Result<Json<common::Echo>, ClientError> {
        unreachable!("fallback = false")
    }
    async fn flaky(&self, _fails: u32) -> Result<String, ClientError> {
        Ok("cached".into())
    }
}

#[tokio::test]
async fn spans_and_metrics_per_call() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).unwrap();
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let s = common::start().await;
    let config = Config::builder()
        .trip(TripPolicy::consecutive_failures(3))
        .build()
        .unwrap();
    let stack = StackBuilder::new("shop")
        .base_url(&s.url())
        .unwrap()
        .retry(RetryPolicy::new(1).backoff(Default::default(), Default::default()))
        .breaker_config(config)
        .build()
        .unwrap();
    let breaker = stack.get_ref().handle();
    let c = ShopClient::new(stack, Cached);

    assert!(c.status(200).await.unwrap().contains("E42"));
    assert_eq!(c.status(404).await.unwrap_err().status_code().unwrap(), 404);
    let err = c.malformed().await.unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    // One 503, retried, then the echo.
    assert!(c.flaky(1).await.is_ok());

    let spans: Vec<Fields> = capture
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "palisade_client.call")
        .cloned()
        .collect();
    let summary: Vec<(&str, &str, &str, &str, &str)> = spans
        .iter()
        .map(|f| {
            (
                f["method"].as_str(),
                f["service"].as_str(),
                f["http.method"].as_str(),
                f.get("http.status_code").map_or("", String::as_str),
                f.get("outcome").map_or("", String::as_str),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("Shop::status", "shop", "GET", "200", "success"),
            ("Shop::status", "shop", "GET", "404", "status"),
            ("Shop::malformed", "shop", "GET", "200", "decode"),
            ("Shop::flaky", "shop", "GET", "200", "success"),
        ]
    );

    let (counters, histograms) = snapshot(&snapshotter);
    let call = |m: &str, o: &str| {
        counters
            .get(&format!(
                "palisade_client_calls_total{{method=Shop::{m},outcome={o},service=shop}}"
            ))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(call("status", "success"), 1, "{counters:#?}");
    assert_eq!(call("status", "status"), 1, "{counters:#?}");
    assert_eq!(call("malformed", "decode"), 1, "{counters:#?}");
    assert_eq!(call("flaky", "success"), 1, "{counters:#?}");
    assert_eq!(
        counters["palisade_retry_attempts_total{name=shop,result=retried}"], 1,
        "{counters:#?}"
    );
    assert_eq!(
        histograms["palisade_client_call_duration_seconds{method=Shop::status,service=shop}"],
        2
    );
    // Open the breaker: the fallback answers, and the call is counted as such.
    breaker.force_open();
    assert_eq!(c.status(200).await.unwrap(), "cached");
    let (counters, _) = snapshot(&snapshotter);
    assert_eq!(
        counters["palisade_client_calls_total{method=Shop::status,outcome=fallback,service=shop}"],
        1
    );
    let last = capture.spans.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last["outcome"], "fallback");
}
