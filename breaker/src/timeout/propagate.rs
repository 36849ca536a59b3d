//! Propagating the remaining deadline to the next hop, and reading it from inbound requests.

use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use http::header::HeaderName;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::deadline::{CarryDeadline, Deadline};
use super::error::Error;
use super::future::{Limit, ResponseFuture};

/// The HTTP header carrying the time left, in whole milliseconds, for plain HTTP hops:
/// `x-request-timeout-ms: 250`. (Envoy's `x-envoy-expected-rq-timeout-ms` has the same meaning.)
pub const HTTP_TIMEOUT_HEADER: &str = "x-request-timeout-ms";

/// Which header carries the remaining deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// `grpc-timeout`, in the gRPC wire format (`250m`, at most 8 digits and a unit).
    Grpc,
    /// [`HTTP_TIMEOUT_HEADER`] in milliseconds.
    Http,
}

/// Formats a duration as a `grpc-timeout` value: the finest unit that fits in 8 digits.
///
/// ```
/// use palisade_breaker::timeout::grpc_timeout;
/// use std::time::Duration;
/// assert_eq!(grpc_timeout(Duration::from_millis(250)), "250000u");
/// assert_eq!(grpc_timeout(Duration::from_secs(3600 * 24 * 365)), "31536000S");
/// ```
pub fn grpc_timeout(d: Duration) -> String {
    let mut buf = itoa_buf();
    let s = format_grpc_timeout(d, &mut buf);
    s.to_owned()
}

fn itoa_buf() -> [u8; 24] {
    [0; 24]
}

/// Writes `value` in decimal at the start of `buf`; returns the length.
fn write_decimal(mut value: u128, buf: &mut [u8; 24]) -> usize {
    let mut digits = [0u8; 40];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (value % 10) as u8;
        n += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    let n = n.min(buf.len() - 1);
    for i in 0..n {
        buf[i] = digits[n - 1 - i];
    }
    n
}

/// Writes the `grpc-timeout` value into `buf` without allocating.
fn format_grpc_timeout(d: Duration, buf: &mut [u8; 24]) -> &str {
    let nanos = d.as_nanos();
    let units: [(u128, u8); 6] = [
        (1, b'n'),
        (1_000, b'u'),
        (1_000_000, b'm'),
        (1_000_000_000, b'S'),
        (60_000_000_000, b'M'),
        (3_600_000_000_000, b'H'),
    ];
    let (mut value, mut unit) = (99_999_999u128, b'H');
    for (div, u) in units {
        // Round up so the callee never gets more time than the caller has.
        let v = nanos.div_ceil(div);
        if v <= 99_999_999 {
            (value, unit) = (v, u);
            break;
        }
    }
    let n = write_decimal(value, buf);
    buf[n] = unit;
    std::str::from_utf8(&buf[..=n]).expect("ASCII digits and unit")
}

/// Parses a `grpc-timeout` value (`"100m"`, `"5S"`).
///
/// ```
/// use palisade_breaker::timeout::parse_grpc_timeout;
/// use std::time::Duration;
/// assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
/// assert_eq!(parse_grpc_timeout("123456789S"), None); // more than 8 digits
/// ```
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Reads the deadline an inbound request carries in `grpc-timeout` or
/// [`HTTP_TIMEOUT_HEADER`], as an instant from now. Servers call it to honour their caller's
/// deadline (set it on the request with [`CarryDeadline::set_deadline`]).
pub fn inbound_deadline(headers: &http::HeaderMap) -> Option<Deadline> {
    let left = if let Some(v) = headers.get("grpc-timeout") {
        parse_grpc_timeout(v.to_str().ok()?)?
    } else {
        let v = headers.get(HTTP_TIMEOUT_HEADER)?.to_str().ok()?;
        Duration::from_millis(v.trim().parse().ok()?)
    };
    Some(Deadline(Instant::now() + left))
}

/// Writes the time left before the request's [`Deadline`] into a header for the next hop (put it
/// below the retry, so each attempt sends what is left at that moment). A request whose deadline
/// has passed fails at once without being sent.
#[derive(Debug, Clone, Copy)]
pub struct PropagateDeadlineLayer {
    how: Propagation,
}

impl PropagateDeadlineLayer {
    /// Propagates in the given header.
    pub const fn new(how: Propagation) -> Self {
        Self { how }
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline {
            inner,
            how: self.how,
        }
    }
}

/// A service that propagates request deadlines. Built by [`PropagateDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct PropagateDeadline<S> {
    inner: S,
    how: Propagation,
}

impl<S, B> Service<http::Request<B>> for PropagateDeadline<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::inner)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let Some(deadline) = req.deadline() else {
            return ResponseFuture::untimed(self.inner.call(req));
        };
        let left = deadline.remaining();
        if left.is_zero() {
            return ResponseFuture::expired();
        }
        let mut buf = itoa_buf();
        let text = match self.how {
            Propagation::Grpc => format_grpc_timeout(left, &mut buf),
            Propagation::Http => {
                let n = write_decimal(left.as_millis().max(1), &mut buf);
                std::str::from_utf8(&buf[..n]).expect("ASCII digits")
            }
        };
        let value =
            HeaderValue::from_str(text).expect("digits and a unit are a valid header value");
        let name = match self.how {
            Propagation::Grpc => HeaderName::from_static("grpc-timeout"),
            Propagation::Http => HeaderName::from_static(HTTP_TIMEOUT_HEADER),
        };
        req.headers_mut().insert(name, value);
        ResponseFuture::new(self.inner.call(req), Limit::At(deadline.0), true)
    }
}
