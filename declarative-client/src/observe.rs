//! Observability of generated calls: one `tracing` span per call and, with the `metrics`
//! feature, `palisade_client_calls_total{service,method,outcome}` and
//! `palisade_client_call_duration_seconds{service,method}`.

use crate::error::{CallError, ClientError};
use crate::meta::MethodMeta;

/// How a call ended: the `outcome` label and span field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Status,
    Timeout,
    Rejected,
    Transport,
    Decode,
    Encode,
    Fallback,
}

impl Outcome {
    #[cfg(feature = "metrics")]
    const ALL: [Outcome; 8] = [
        Outcome::Success,
        Outcome::Status,
        Outcome::Timeout,
        Outcome::Rejected,
        Outcome::Transport,
        Outcome::Decode,
        Outcome::Encode,
        Outcome::Fallback,
    ];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Status => "status",
            Outcome::Timeout => "timeout",
            Outcome::Rejected => "rejected",
            Outcome::Transport => "transport",
            Outcome::Decode => "decode",
            Outcome::Encode => "encode",
            Outcome::Fallback => "fallback",
        }
    }

    fn of(e: &ClientError) -> Self {
        if e.is_status() {
            Outcome::Status
        } else if e.is_timeout() {
            Outcome::Timeout
        } else if e.is_rejected() {
            Outcome::Rejected
        } else if e.is_decode() {
            Outcome::Decode
        } else if e.is_encode() {
            Outcome::Encode
        } else {
            Outcome::Transport
        }
    }
}

/// The metric labels of one method, built at compile time (they live in the method's `static`
/// [`MethodMeta`]) so that recording a call allocates nothing.
#[cfg(feature = "metrics")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallLabels {
    outcomes: [[metrics::Label; 3]; 8],
    method: [metrics::Label; 2],
}

#[cfg(feature = "metrics")]
impl CallLabels {
    pub(crate) const fn new(service: &'static str, method: &'static str) -> Self {
        use metrics::Label;
        const fn three(service: &'static str, method: &'static str, o: Outcome) -> [Label; 3] {
            [
                Label::from_static_parts("service", service),
                Label::from_static_parts("method", method),
                Label::from_static_parts("outcome", o.as_str()),
            ]
        }
        let a = Outcome::ALL;
        Self {
            outcomes: [
                three(service, method, a[0]),
                three(service, method, a[1]),
                three(service, method, a[2]),
                three(service, method, a[3]),
                three(service, method, a[4]),
                three(service, method, a[5]),
                three(service, method, a[6]),
                three(service, method, a[7]),
            ],
            method: [
                Label::from_static_parts("service", service),
                Label::from_static_parts("method", method),
            ],
        }
    }
}

#[cfg(feature = "metrics")]
static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// Watches one generated call: opens its span, records its status and outcome, and (with the
/// `metrics` feature) counts it and times it. A call dropped before it ends records nothing.
pub struct CallObserver {
    meta: &'static MethodMeta,
    span: tracing::Span,
    #[cfg(feature = "metrics")]
    start: tokio::time::Instant,
}

impl std::fmt::Debug for CallObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallObserver")
            .field("method", &self.meta.name())
            .finish_non_exhaustive()
    }
}

impl CallObserver {
    /// Starts watching a call of `meta`'s method.
    #[inline]
    pub fn start(meta: &'static MethodMeta) -> Self {
        let span = tracing::debug_span!(
            "palisade_client.call",
            method = meta.name(),
            service = meta.service(),
            http.method = meta.http_method(),
            http.status_code = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        Self {
            meta,
            span,
            #[cfg(feature = "metrics")]
            start: tokio::time::Instant::now(),
        }
    }

    /// The call's span (disabled unless a subscriber wants `debug` spans of this crate).
    pub fn span(&self) -> tracing::Span {
        self.span.clone()
    }

    /// A response came back with `status`.
    #[inline]
    pub fn status(&self, status: http::StatusCode) {
        if !self.span.is_disabled() {
            self.span.record("http.status_code", status.as_u16());
        }
    }

    /// The call failed with `err` and its fallback answers instead.
    pub fn fallback(&self, err: &ClientError) {
        tracing::debug!(parent: &self.span, method = self.meta.name(), error = %err, "calling the fallback");
        self.end(Outcome::Fallback);
    }

    /// The call failed with `err` before the method could decode a response.
    pub fn failed(&self, err: &ClientError) {
        self.end(Outcome::of(err));
    }

    /// The call ended with `result`.
    #[inline]
    pub fn finished<T, E: CallError>(&self, result: &Result<T, E>) {
        let outcome = match result {
            Ok(_) => Outcome::Success,
            Err(e) => match e.as_client_error() {
                Some(c) => Outcome::of(c),
                // A typed error body: the server answered with an error status.
                None => Outcome::Status,
            },
        };
        self.end(outcome);
    }

    #[inline]
    fn end(&self, outcome: Outcome) {
        if !self.span.is_disabled() {
            self.span.record("outcome", outcome.as_str());
        }
        #[cfg(feature = "metrics")]
        {
            let labels = &self.meta.labels;
            let elapsed = self.start.elapsed();
            let calls = metrics::Key::from_static_parts(
                "palisade_client_calls_total",
                &labels.outcomes[outcome as usize],
            );
            let duration = metrics::Key::from_static_parts(
                "palisade_client_call_duration_seconds",
                &labels.method,
            );
            metrics::with_recorder(|r| {
                r.register_counter(&calls, &METADATA).increment(1);
                r.register_histogram(&duration, &METADATA)
                    .record(elapsed.as_secs_f64());
            });
        }
    }
}
