//! What to retry: policies.

use std::time::Duration;

use crate::classify::{Classify, Outcome};

/// What a policy says about a finished attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Return this result to the caller.
    Return,
    /// Retry, after the backoff.
    Retry,
    /// Retry after this long (a server's `Retry-After`), if the config honours it.
    RetryAfter(Duration),
}

/// Decides whether a request may be retried and whether a result should be.
///
/// Policies must never retry a Palisade rejection (breaker open, bulkhead full, rate limited):
/// the call never reached the dependency, and retrying it only burns the budget.
/// [`is_rejection`](crate::is_rejection) finds one in an error chain.
pub trait Policy<Req, Res, E> {
    /// Whether this request may be retried at all (e.g. only idempotent HTTP methods). Asked
    /// before the request is saved for replay, so a request that may not be retried costs no
    /// copy.
    fn retryable(&self, _req: &Req) -> bool {
        true
    }

    /// What to do with an attempt's result.
    fn decide(&self, result: Result<&Res, &E>) -> Decision;

    /// The request's deadline, if it carries one: a retry whose backoff would end after it is
    /// not made ([`GiveUp::DeadlineTooClose`](super::GiveUp)). Default: none.
    fn deadline(&self, _req: &Req) -> Option<tokio::time::Instant> {
        None
    }
}

/// Retries every error except rejections; never retries an `Ok`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryErrors;

impl<Req, Res, E: std::error::Error + 'static> Policy<Req, Res, E> for RetryErrors {
    #[inline]
    fn decide(&self, result: Result<&Res, &E>) -> Decision {
        match result {
            Ok(_) => Decision::Return,
            Err(e) if crate::is_rejection(e) => Decision::Return,
            Err(_) => Decision::Retry,
        }
    }
}

/// Retries what a [`Classify`] calls a failure (so one classifier serves the breaker and the
/// retry), except rejections.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryFailures<C>(pub C);

impl<Req, Res, E, C> Policy<Req, Res, E> for RetryFailures<C>
where
    E: std::error::Error + 'static,
    C: Classify<Res, E>,
{
    fn decide(&self, result: Result<&Res, &E>) -> Decision {
        if let Err(e) = result
            && crate::is_rejection(e)
        {
            return Decision::Return;
        }
        match self.0.classify(result, None) {
            Outcome::Failure => Decision::Retry,
            Outcome::Success | Outcome::Ignored => Decision::Return,
        }
    }
}

#[cfg(feature = "http")]
pub use self::http_policy::HttpPolicy;

#[cfg(feature = "http")]
mod http_policy {
    use super::{Decision, Policy};
    use std::time::Duration;

    /// The HTTP retry policy: retries transport errors (not rejections), `502`, `503`, `504`
    /// and `429`, honouring `Retry-After` (delay in seconds) on `429` and `503`. Only idempotent
    /// methods (`GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT`, `DELETE`) are retried unless
    /// [`retry_non_idempotent`](Self::retry_non_idempotent) says otherwise. A request carrying a
    /// [`Deadline`](crate::timeout::Deadline) is not retried when the backoff would outlast it.
    ///
    /// ```
    /// use palisade_breaker::retry::{Decision, HttpPolicy, Policy};
    /// use std::time::Duration;
    ///
    /// let p = HttpPolicy::new();
    /// let post = http::Request::post("/orders").body(()).unwrap();
    /// assert!(!Policy::<_, http::Response<()>, std::io::Error>::retryable(&p, &post));
    /// let busy = http::Response::builder().status(503).header("retry-after", "2").body(()).unwrap();
    /// let d = Policy::<http::Request<()>, _, std::io::Error>::decide(&p, Ok(&busy));
    /// assert_eq!(d, Decision::RetryAfter(Duration::from_secs(2)));
    /// ```
    #[derive(Debug, Clone, Copy, Default)]
    pub struct HttpPolicy {
        non_idempotent: bool,
    }

    impl HttpPolicy {
        /// Idempotent methods only.
        pub const fn new() -> Self {
            Self {
                non_idempotent: false,
            }
        }

        /// Also retry `POST`, `PATCH` and other non-idempotent methods (only when the server
        /// is known to deduplicate them, e.g. with idempotency keys).
        pub const fn retry_non_idempotent(mut self, yes: bool) -> Self {
            self.non_idempotent = yes;
            self
        }
    }

    fn retry_after<B>(resp: &http::Response<B>) -> Option<Duration> {
        let v = resp
            .headers()
            .get(http::header::RETRY_AFTER)?
            .to_str()
            .ok()?;
        v.trim().parse::<u64>().ok().map(Duration::from_secs)
    }

    impl<B, RB, E: std::error::Error + 'static> Policy<http::Request<B>, http::Response<RB>, E>
        for HttpPolicy
    {
        fn retryable(&self, req: &http::Request<B>) -> bool {
            self.non_idempotent || req.method().is_idempotent()
        }

        /// The [`Deadline`](crate::timeout::Deadline) in the request's extensions (set by
        /// [`DeadlineLayer`](crate::timeout::DeadlineLayer)).
        fn deadline(&self, req: &http::Request<B>) -> Option<tokio::time::Instant> {
            req.extensions()
                .get::<crate::timeout::Deadline>()
                .map(|d| d.0)
        }

        fn decide(&self, result: Result<&http::Response<RB>, &E>) -> Decision {
            match result {
                Err(e) if crate::is_rejection(e) => Decision::Return,
                Err(_) => Decision::Retry,
                Ok(resp) => match resp.status().as_u16() {
                    429 | 503 => retry_after(resp).map_or(Decision::Retry, Decision::RetryAfter),
                    502 | 504 => Decision::Retry,
                    _ => Decision::Return,
                },
            }
        }
    }
}
