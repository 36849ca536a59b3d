use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Request, Response, StatusCode};
use tokio::time::Sleep;
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};

use crate::body::Body;
use crate::meta::{MethodMeta, RetrySpec};

/// The retry policy of a client stack, as Feign and Resilience4j users expect it.
///
/// - **What is retried**: transport errors, timeouts and the retryable statuses (default `502`,
///   `503`, `504`, and `429` when it carries `Retry-After`); never a circuit breaker rejection.
/// - **Which requests**: only those of idempotent methods (GET, HEAD, PUT, DELETE, or a method
///   marked `idempotent`) whose body is buffered. A method's `retry = N` overrides the number of
///   retries; `retry = "never"` turns them off.
/// - **When**: exponential backoff with full jitter (a uniform delay in `[0, min(max, base *
///   2^n)]`, from a seeded generator shared by every clone), unless the response says
///   `Retry-After` (seconds or an HTTP date), which is honoured as is up to
///   [`max_retry_after`](Self::max_retry_after); a longer wait is not retried.
/// - **How much**: retries draw on a budget shared by every clone (default: 10 retries a
///   second plus 20% of requests over 10 seconds), so that a failing dependency is not hit
///   with a multiple of its load.
///
/// ```
/// use palisade_client::stack::RetryPolicy;
/// use std::time::Duration;
/// let policy = RetryPolicy::new(2)
///     .backoff(Duration::from_millis(10), Duration::from_secs(1))
///     .retry_statuses(&[500, 502, 503, 504])
///     .unwrap()
///     .seed(42);
/// assert_eq!(policy.max_retries(), 2);
/// assert!(policy.is_retryable_status(500, false));
/// assert!(!policy.is_retryable_status(429, false));
/// assert!(policy.is_retryable_status(429, true)); // with Retry-After
///
/// let err = RetryPolicy::new(1).retry_statuses(&[200]).unwrap_err();
/// assert_eq!(err.to_string(), "retry status 200 is not an error status (expected 400 to 599)");
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    shared: Arc<Shared>,
    attempts: u32,
}

#[derive(Clone)]
struct Shared {
    max_retries: u32,
    base: Duration,
    max_backoff: Duration,
    max_retry_after: Duration,
    statuses: Vec<StatusCode>,
    retry_429_with_retry_after: bool,
    budget: Arc<TpsBudget>,
    rng: Arc<Jitter>,
    clock: fn() -> SystemTime,
    #[cfg(feature = "metrics")]
    metrics: Option<Arc<metrics_impl::RetryMetrics>>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("RetryPolicy")
            .field("max_retries", &s.max_retries)
            .field("base", &s.base)
            .field("max_backoff", &s.max_backoff)
            .field("max_retry_after", &s.max_retry_after)
            .field("statuses", &s.statuses)
            .field("retry_429_with_retry_after", &s.retry_429_with_retry_after)
            .finish_non_exhaustive()
    }
}

/// An invalid retry setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRetryPolicy(String);

impl fmt::Display for InvalidRetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for InvalidRetryPolicy {}

/// A splitmix64 generator shared by every clone of a policy: one atomic add per draw, so the
/// sequence of delays is repeatable for a seed and clones do not jitter in lockstep.
struct Jitter(AtomicU64);

impl Jitter {
    fn next(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max]`.
    fn below(&self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        // Multiply-shift: unbiased enough for jitter, no division.
        let r = (u128::from(self.next()) * (u128::from(nanos) + 1)) >> 64;
        Duration::from_nanos(r as u64)
    }
}

impl Default for RetryPolicy {
    /// No retries unless a method asks for them.
    fn default() -> Self {
        Self::new(0)
    }
}

impl RetryPolicy {
    /// Up to `max_retries` retries after the first attempt, full-jitter backoff from 50 ms up
    /// to 5 s, `Retry-After` honoured up to 30 s, retrying 502/503/504 (and 429 with
    /// `Retry-After`), within a budget of 10 retries a second plus 20% of requests over
    /// 10 seconds. The jitter is seeded from the process's random state; [`seed`](Self::seed)
    /// makes it repeatable.
    pub fn new(max_retries: u32) -> Self {
        use std::hash::BuildHasher;
        let seed = std::hash::RandomState::new().hash_one(0x5eed_u64);
        Self {
            shared: Arc::new(Shared {
                max_retries,
                base: Duration::from_millis(50),
                max_backoff: Duration::from_secs(5),
                max_retry_after: Duration::from_secs(30),
                statuses: vec![
                    StatusCode::BAD_GATEWAY,
                    StatusCode::SERVICE_UNAVAILABLE,
                    StatusCode::GATEWAY_TIMEOUT,
                ],
                retry_429_with_retry_after: true,
                budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
                rng: Arc::new(Jitter(AtomicU64::new(seed))),
                clock: SystemTime::now,
                #[cfg(feature = "metrics")]
                metrics: None,
            }),
            attempts: 0,
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// Exponential backoff with full jitter: the `n`th retry waits a uniform delay in
    /// `[0, min(max, base * 2^n)]`. A zero `base` retries at once.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        let s = self.shared_mut();
        s.base = base;
        s.max_backoff = max.max(base);
        self
    }

    /// Seeds the jitter, for repeatable delays.
    pub fn seed(mut self, seed: u64) -> Self {
        self.shared_mut().rng = Arc::new(Jitter(AtomicU64::new(seed)));
        self
    }

    /// The longest `Retry-After` honoured; a response asking for a longer wait is not retried.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.shared_mut().max_retry_after = max;
        self
    }

    /// The statuses that are retried (replacing the default 502, 503, 504). Each must be an
    /// error status (400 to 599).
    pub fn retry_statuses(mut self, statuses: &[u16]) -> Result<Self, InvalidRetryPolicy> {
        let mut out = Vec::with_capacity(statuses.len());
        for &s in statuses {
            let code = StatusCode::from_u16(s)
                .ok()
                .filter(|c| c.is_client_error() || c.is_server_error())
                .ok_or_else(|| {
                    InvalidRetryPolicy(format!(
                        "retry status {s} is not an error status (expected 400 to 599)"
                    ))
                })?;
            out.push(code);
        }
        self.shared_mut().statuses = out;
        Ok(self)
    }

    /// Whether `429 Too Many Requests` with a `Retry-After` header is retried (default: yes).
    /// A 429 listed in [`retry_statuses`](Self::retry_statuses) is retried with or without one.
    pub fn retry_429_with_retry_after(mut self, yes: bool) -> Self {
        self.shared_mut().retry_429_with_retry_after = yes;
        self
    }

    /// The retry budget (see [`TpsBudget::new`]).
    pub fn budget(mut self, budget: TpsBudget) -> Self {
        self.shared_mut().budget = Arc::new(budget);
        self
    }

    /// The wall clock used to turn a `Retry-After` HTTP date into a delay (tests pin it).
    pub fn wall_clock(mut self, now: fn() -> SystemTime) -> Self {
        self.shared_mut().clock = now;
        self
    }

    /// The default number of retries.
    pub fn max_retries(&self) -> u32 {
        self.shared.max_retries
    }

    /// Whether a response with `status` is retried (`retry_after`: it carries `Retry-After`).
    pub fn is_retryable_status(&self, status: u16, retry_after: bool) -> bool {
        StatusCode::from_u16(status).is_ok_and(|s| self.retryable(s, retry_after))
    }

    /// Exports `palisade_retry_attempts_total{name,result}` under `name` (the stack's name):
    /// `result` is `retried`, `exhausted`, `budget_exhausted`, `not_retryable` or
    /// `retry_after_too_long`. [`StackBuilder`](super::StackBuilder) calls it.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, name: &str) -> Self {
        self.shared_mut().metrics = Some(Arc::new(metrics_impl::RetryMetrics::new(name)));
        self
    }

    fn retryable(&self, status: StatusCode, retry_after: bool) -> bool {
        self.shared.statuses.contains(&status)
            || (status == StatusCode::TOO_MANY_REQUESTS
                && retry_after
                && self.shared.retry_429_with_retry_after)
    }

    fn allowed<B>(&self, req: &Request<B>) -> u32 {
        match MethodMeta::of(req) {
            Some(m) if !m.is_idempotent() => 0,
            Some(m) => match m.get_retry() {
                RetrySpec::Default => self.shared.max_retries,
                RetrySpec::Never => 0,
                RetrySpec::Max(n) => n,
            },
            // Not from a generated client: only the methods HTTP calls idempotent.
            None if req.method().is_idempotent() => self.shared.max_retries,
            None => 0,
        }
    }

    /// The delay before retry number `self.attempts + 1` without `Retry-After`.
    fn backoff_delay(&self) -> Duration {
        let s = &self.shared;
        if s.base.is_zero() {
            return Duration::ZERO;
        }
        let ceiling = s
            .base
            .saturating_mul(1u32 << self.attempts.min(20))
            .min(s.max_backoff);
        s.rng.below(ceiling)
    }

    #[inline]
    fn count(&self, _result: RetryResult) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.shared.metrics {
            m.count(_result);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum RetryResult {
    Retried,
    Exhausted,
    BudgetExhausted,
    NotRetryable,
    RetryAfterTooLong,
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3), relative to `now`.
/// A date in the past means "now".
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

impl<B, E> Policy<Request<Body>, Response<B>, E> for RetryPolicy
where
    E: StdError + 'static,
{
    type Future = Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<B>, E>,
    ) -> Option<Sleep> {
        let mut retry_after = None;
        let retry = match result {
            Ok(resp) if resp.status().is_success() => false,
            Ok(resp) => {
                retry_after = parse_retry_after(resp.headers(), (self.shared.clock)());
                self.retryable(resp.status(), retry_after.is_some())
            }
            Err(e) => palisade_breaker::find_rejection(e).is_none(),
        };
        if !retry {
            self.shared.budget.deposit();
            if !matches!(result, Ok(r) if r.status().is_success()) {
                self.count(RetryResult::NotRetryable);
            }
            return None;
        }
        let allowed = self.allowed(req);
        if allowed == 0 {
            self.count(RetryResult::NotRetryable);
            return None;
        }
        if self.attempts >= allowed {
            self.count(RetryResult::Exhausted);
            return None;
        }
        let delay = match retry_after {
            Some(d) if d > self.shared.max_retry_after => {
                self.count(RetryResult::RetryAfterTooLong);
                return None;
            }
            Some(d) => d,
            None => self.backoff_delay(),
        };
        if !self.shared.budget.withdraw() {
            self.count(RetryResult::BudgetExhausted);
            return None;
        }
        self.attempts += 1;
        self.count(RetryResult::Retried);
        tracing::debug!(
            method = MethodMeta::of(req).map_or("", |m| m.name()),
            retry = self.attempts,
            delay_ms = delay.as_millis() as u64,
            "retrying"
        );
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        if self.allowed(req) == 0 {
            return None;
        }
        let body = req.body().try_clone()?;
        let mut clone = Request::new(body);
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.version_mut() = req.version();
        *clone.headers_mut() = req.headers().clone();
        *clone.extensions_mut() = req.extensions().clone();
        Some(clone)
    }
}

#[cfg(feature = "metrics")]
mod metrics_impl {
    use metrics::{Counter, counter};

    use super::RetryResult;

    pub(super) struct RetryMetrics([Counter; 5]);

    impl RetryMetrics {
        pub(super) fn new(name: &str) -> Self {
            let c = |result: &'static str| counter!("palisade_retry_attempts_total", "name" => name.to_owned(), "result" => result);
            Self([
                c("retried"),
                c("exhausted"),
                c("budget_exhausted"),
                c("not_retryable"),
                c("retry_after_too_long"),
            ])
        }

        pub(super) fn count(&self, r: RetryResult) {
            self.0[r as usize].increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::Elapsed;

    type Res = Result<Response<()>, Elapsed>;

    fn get() -> Request<Body> {
        static META: MethodMeta = MethodMeta::new("T::get", "svc", "GET").idempotent(true);
        let mut r = Request::new(Body::empty());
        r.extensions_mut().insert(&META);
        r
    }

    fn post() -> Request<Body> {
        static META: MethodMeta = MethodMeta::new("T::post", "svc", "POST");
        let mut r = Request::new(Body::empty());
        *r.method_mut() = http::Method::POST;
        r.extensions_mut().insert(&META);
        r
    }

    fn status(code: u16, retry_after: Option<&str>) -> Res {
        let mut b = Response::builder().status(code);
        if let Some(v) = retry_after {
            b = b.header("retry-after", v);
        }
        Ok(b.body(()).unwrap())
    }

    /// The delay the policy waits, measured on the paused clock; `None`: no retry.
    async fn delay(p: &mut RetryPolicy, req: &mut Request<Body>, mut res: Res) -> Option<Duration> {
        let sleep = Policy::<_, _, Elapsed>::retry(p, req, &mut res)?;
        let start = tokio::time::Instant::now();
        sleep.await;
        Some(start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn full_jitter_stays_under_the_exponential_ceiling_and_is_seeded() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let run = |seed| async move {
            let mut p = RetryPolicy::new(6).backoff(base, max).seed(seed);
            let mut req = get();
            let mut out = Vec::new();
            for _ in 0..6 {
                out.push(delay(&mut p, &mut req, status(503, None)).await.unwrap());
            }
            // The seventh failure is past `max_retries`.
            assert_eq!(delay(&mut p, &mut req, status(503, None)).await, None);
            out
        };
        let a = run(7).await;
        for (n, d) in a.iter().enumerate() {
            let ceiling = (base * (1 << n)).min(max);
            assert!(*d <= ceiling, "retry {n}: {d:?} > {ceiling:?}");
        }
        assert_eq!(a, run(7).await, "same seed, same delays");
        assert_ne!(a, run(8).await, "another seed, other delays");
        // Full jitter spreads delays: not all at the ceiling, not all zero.
        assert!(a.iter().any(|d| *d < max / 2) && a.iter().any(|d| *d > Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_seconds_and_http_date_are_honoured() {
        fn fixed_now() -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        }
        let mut p = RetryPolicy::new(5)
            .backoff(Duration::from_millis(10), Duration::from_millis(10))
            .wall_clock(fixed_now);
        let mut req = get();
        assert_eq!(
            delay(&mut p, &mut req, status(503, Some("3"))).await,
            Some(Duration::from_secs(3))
        );
        let date = httpdate::fmt_http_date(fixed_now() + Duration::from_secs(7));
        assert_eq!(
            delay(&mut p, &mut req, status(503, Some(&date))).await,
            Some(Duration::from_secs(7))
        );
        // A date in the past: retry at once.
        let past = httpdate::fmt_http_date(fixed_now() - Duration::from_secs(60));
        assert_eq!(
            delay(&mut p, &mut req, status(503, Some(&past))).await,
            Some(Duration::ZERO)
        );
        // Longer than max_retry_after (30 s): not retried.
        assert_eq!(delay(&mut p, &mut req, status(503, Some("31"))).await, None);
        // Garbage: ignored, the backoff applies.
        let d = delay(&mut p, &mut req, status(503, Some("soon")))
            .await
            .unwrap();
        assert!(d <= Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn statuses_are_configurable_and_429_needs_retry_after() {
        let mut p = RetryPolicy::new(10).backoff(Duration::ZERO, Duration::ZERO);
        let mut req = get();
        assert!(delay(&mut p, &mut req, status(502, None)).await.is_some());
        assert!(delay(&mut p, &mut req, status(504, None)).await.is_some());
        assert!(delay(&mut p, &mut req, status(500, None)).await.is_none());
        assert!(delay(&mut p, &mut req, status(429, None)).await.is_none());
        assert_eq!(
            delay(&mut p, &mut req, status(429, Some("2"))).await,
            Some(Duration::from_secs(2))
        );
        assert!(delay(&mut p, &mut req, status(404, None)).await.is_none());
        assert!(delay(&mut p, &mut req, status(200, None)).await.is_none());

        let mut p = RetryPolicy::new(10)
            .backoff(Duration::ZERO, Duration::ZERO)
            .retry_statuses(&[500, 429])
            .unwrap();
        assert!(delay(&mut p, &mut req, status(500, None)).await.is_some());
        assert!(delay(&mut p, &mut req, status(429, None)).await.is_some());
        assert!(delay(&mut p, &mut req, status(503, None)).await.is_none());

        let p = RetryPolicy::new(1).retry_429_with_retry_after(false);
        assert!(!p.is_retryable_status(429, true));
        assert_eq!(
            RetryPolicy::new(1)
                .retry_statuses(&[503, 99])
                .unwrap_err()
                .0,
            "retry status 99 is not an error status (expected 400 to 599)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn non_idempotent_methods_are_never_retried() {
        let mut p = RetryPolicy::new(3);
        let mut req = post();
        assert!(delay(&mut p, &mut req, status(503, None)).await.is_none());
        assert!(Policy::<_, Response<()>, Elapsed>::clone_request(&mut p, &req).is_none());
        let mut res: Res = Err(Elapsed);
        assert!(Policy::<_, _, Elapsed>::retry(&mut p, &mut req, &mut res).is_none());
    }

    #[test]
    fn jitter_draws_are_distinct_across_threads_and_in_bounds() {
        // Clones share one generator: concurrent draws never repeat a state, so two clones
        // retrying at the same moment do not wait the same delay.
        let rng = Arc::new(Jitter(AtomicU64::new(3)));
        let max = Duration::from_millis(250);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let rng = rng.clone();
                std::thread::spawn(move || {
                    (0..20_000)
                        .map(|_| {
                            assert!(rng.below(max) <= max);
                            rng.next()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a state was drawn twice");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_caps_retries_across_clones() {
        // No reserve and 1% of deposits: one deposit does not buy a retry.
        let policy = RetryPolicy::new(3)
            .backoff(Duration::ZERO, Duration::ZERO)
            .budget(TpsBudget::new(Duration::from_secs(10), 0, 0.01));
        let mut req = get();
        let mut a = policy.clone();
        assert!(delay(&mut a, &mut req, status(503, None)).await.is_none());
        // 200 successful requests deposit enough for two retries, shared by every clone.
        for _ in 0..200 {
            let mut c = policy.clone();
            assert!(delay(&mut c, &mut req, status(200, None)).await.is_none());
        }
        let mut b = policy.clone();
        assert!(delay(&mut b, &mut req, status(503, None)).await.is_some());
        let mut c = policy.clone();
        assert!(delay(&mut c, &mut req, status(503, None)).await.is_some());
        let mut d = policy.clone();
        assert!(delay(&mut d, &mut req, status(503, None)).await.is_none());
    }
}
