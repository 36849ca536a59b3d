use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::time::Sleep;
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};

use crate::body::Body;
use crate::meta::{MethodMeta, RetrySpec};

/// The retry policy of a client stack.
///
/// It retries only requests of idempotent methods whose body is buffered, on transport errors,
/// timeouts and `502`/`503`/`504`; never a circuit breaker rejection. Retries draw on a budget
/// shared by every clone, so that a failing dependency is not hit with a multiple of its load.
/// A method's `retry = N` attribute overrides the number of retries; `retry = "never"` turns
/// them off.
///
/// ```
/// use palisade_client::stack::RetryPolicy;
/// use std::time::Duration;
/// let policy = RetryPolicy::new(2).backoff(Duration::from_millis(10), Duration::from_secs(1));
/// assert_eq!(policy.max_retries(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_retries: u32,
    base: Duration,
    max_backoff: Duration,
    budget: Arc<TpsBudget>,
    attempts: u32,
}

impl Default for RetryPolicy {
    /// No retries unless a method asks for them.
    fn default() -> Self {
        Self::new(0)
    }
}

impl RetryPolicy {
    /// Up to `max_retries` retries after the first attempt, no backoff, and a budget of 10
    /// retries a second plus 20% of requests over 10 seconds.
    pub fn new(max_retries: u32) -> Self {
        Self {
            max_retries,
            base: Duration::ZERO,
            max_backoff: Duration::ZERO,
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
            attempts: 0,
        }
    }

    /// Exponential backoff: `base`, `2 * base`, ... at most `max`.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base = base;
        self.max_backoff = max.max(base);
        self
    }

    /// The retry budget (see [`TpsBudget::new`]).
    pub fn budget(mut self, budget: TpsBudget) -> Self {
        self.budget = Arc::new(budget);
        self
    }

    /// The default number of retries.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    fn allowed<B>(&self, req: &Request<B>) -> u32 {
        match MethodMeta::of(req) {
            Some(m) if !m.is_idempotent() => 0,
            Some(m) => match m.get_retry() {
                RetrySpec::Default => self.max_retries,
                RetrySpec::Never => 0,
                RetrySpec::Max(n) => n,
            },
            // Not from a generated client: only the methods HTTP calls idempotent.
            None if req.method().is_idempotent() => self.max_retries,
            None => 0,
        }
    }
}

fn retryable_status(s: StatusCode) -> bool {
    matches!(
        s,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
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
        let retry = match result {
            Ok(resp) => retryable_status(resp.status()),
            Err(e) => palisade_breaker::find_rejection(e).is_none(),
        };
        if !retry {
            self.budget.deposit();
            return None;
        }
        if self.attempts >= self.allowed(req) || !self.budget.withdraw() {
            return None;
        }
        let delay = if self.base.is_zero() {
            Duration::ZERO
        } else {
            self.base
                .saturating_mul(1u32 << self.attempts.min(16))
                .min(self.max_backoff)
        };
        self.attempts += 1;
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
