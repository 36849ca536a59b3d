//! W3C trace context (`traceparent`) propagation.

use std::cell::Cell;
use std::fmt::Write as _;
use std::future::Future;

use http::{HeaderValue, Request};

use crate::body::Body;
use crate::stack::Interceptor;

/// A W3C trace context: trace id, parent span id and flags.
///
/// ```
/// use palisade_client::trace::TraceContext;
/// let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let ctx = TraceContext::parse(tp).unwrap();
/// assert_eq!(ctx.to_header(), tp);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id (never zero).
    pub trace_id: u128,
    /// The span id of the caller (never zero).
    pub span_id: u64,
    /// Trace flags (`0x01`: sampled).
    pub flags: u8,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

fn next_id() -> u64 {
    RNG.with(|s| {
        let mut x = s.get();
        if x == 0 {
            // Ids need to be unique across processes, not unpredictable: seed from the
            // randomly keyed std hasher.
            use std::hash::BuildHasher;
            x = std::hash::RandomState::new().hash_one(std::thread::current().id()) | 1;
        }
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1
    })
}

impl TraceContext {
    /// Parses a `traceparent` header value (version `00`).
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.trim().split('-');
        let (v, t, p, f) = (it.next()?, it.next()?, it.next()?, it.next()?);
        if v != "00" || t.len() != 32 || p.len() != 16 || f.len() != 2 || it.next().is_some() {
            return None;
        }
        let ctx = Self {
            trace_id: u128::from_str_radix(t, 16).ok()?,
            span_id: u64::from_str_radix(p, 16).ok()?,
            flags: u8::from_str_radix(f, 16).ok()?,
        };
        (ctx.trace_id != 0 && ctx.span_id != 0).then_some(ctx)
    }

    /// Reads the `traceparent` header of an incoming request.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        Self::parse(headers.get("traceparent")?.to_str().ok()?)
    }

    /// A new sampled trace with a random trace id.
    pub fn new_root() -> Self {
        Self {
            trace_id: (u128::from(next_id()) << 64) | u128::from(next_id()),
            span_id: next_id(),
            flags: 1,
        }
    }

    /// The same trace with a new span id: the context of an outgoing call.
    pub fn child(&self) -> Self {
        Self {
            span_id: next_id(),
            ..*self
        }
    }

    /// The `traceparent` header value.
    pub fn to_header(&self) -> String {
        let mut s = String::with_capacity(55);
        let _ = write!(
            s,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        );
        s
    }

    /// Runs `fut` with `self` as the current trace context, which [`Traceparent`] propagates
    /// on the calls that `fut` makes.
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, fut)
    }

    /// The current trace context, if the task runs inside [`scope`](Self::scope).
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|c| *c).ok()
    }
}

/// Propagates the current [`TraceContext`] as a W3C `traceparent` header, with a new span id
/// per outgoing request. Outside a [`TraceContext::scope`] it starts a new trace unless told
/// not to.
#[derive(Debug, Clone, Copy)]
pub struct Traceparent {
    start_root: bool,
}

impl Traceparent {
    /// Propagates the current context, and starts a new trace when there is none.
    pub const fn new() -> Self {
        Self { start_root: true }
    }

    /// Propagates only: no header outside a [`TraceContext::scope`].
    pub const fn propagate_only() -> Self {
        Self { start_root: false }
    }
}

impl Default for Traceparent {
    fn default() -> Self {
        Self::new()
    }
}

impl Interceptor for Traceparent {
    fn intercept(&self, req: &mut Request<Body>) {
        let ctx = match TraceContext::current() {
            Some(c) => c.child(),
            None if self.start_root => TraceContext::new_root(),
            None => return,
        };
        if let Ok(v) = HeaderValue::try_from(ctx.to_header()) {
            req.headers_mut().insert("traceparent", v);
        }
    }
}

/// Propagates the current [`TraceContext`] as a Zipkin B3 single header
/// (`b3: {trace}-{span}-{sampled}-{parent}`), with a new span id per outgoing request. Outside a
/// [`TraceContext::scope`] it starts a new trace (`b3: {trace}-{span}-1`).
#[derive(Debug, Clone, Copy, Default)]
pub struct B3;

impl Interceptor for B3 {
    fn intercept(&self, req: &mut Request<Body>) {
        let (ctx, parent) = match TraceContext::current() {
            Some(c) => (c.child(), Some(c.span_id)),
            None => (TraceContext::new_root(), None),
        };
        let mut s = String::with_capacity(70);
        let _ = write!(
            s,
            "{:032x}-{:016x}-{}",
            ctx.trace_id,
            ctx.span_id,
            ctx.flags & 1
        );
        if let Some(p) = parent {
            let _ = write!(s, "-{p:016x}");
        }
        if let Ok(v) = HeaderValue::try_from(s) {
            req.headers_mut().insert("b3", v);
        }
    }
}
