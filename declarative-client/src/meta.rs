//! Per-method metadata that generated clients attach to each request.

use std::time::Duration;

/// What the stack needs to know about the trait method a request comes from. Generated code
/// puts a `&'static MethodMeta` in each request's extensions; the timeout and retry layers read
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodMeta {
    name: &'static str,
    service: &'static str,
    http_method: &'static str,
    idempotent: bool,
    timeout: Option<Duration>,
    retry: RetrySpec,
    #[cfg(feature = "metrics")]
    pub(crate) labels: crate::observe::CallLabels,
}

/// A method's retry setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrySpec {
    /// Use the stack's retry policy (idempotent methods with replayable bodies only).
    Default,
    /// Never retry this method.
    Never,
    /// Up to this many retries (after the first attempt), with the stack's budget and backoff.
    Max(u32),
}

impl MethodMeta {
    /// Metadata for the method `name` (`"Trait::method"`) of `service` (the `service = "..."`
    /// name, else the trait's name), sending `http_method` (`"GET"`), not idempotent, with no
    /// timeout or retry of its own.
    pub const fn new(name: &'static str, service: &'static str, http_method: &'static str) -> Self {
        Self {
            name,
            service,
            http_method,
            idempotent: false,
            timeout: None,
            retry: RetrySpec::Default,
            #[cfg(feature = "metrics")]
            labels: crate::observe::CallLabels::new(service, name),
        }
    }

    /// Marks the method idempotent (GET, HEAD, PUT and DELETE are, unless told otherwise).
    pub const fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }

    /// The method's own timeout.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The method's own retry setting.
    pub const fn retry(mut self, retry: RetrySpec) -> Self {
        self.retry = retry;
        self
    }

    /// `"Trait::method"`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The service the method calls: `service = "..."`, else the trait's name.
    pub const fn service(&self) -> &'static str {
        self.service
    }

    /// The HTTP method (`"GET"`, `"POST"`...).
    pub const fn http_method(&self) -> &'static str {
        self.http_method
    }

    /// Whether the method may be retried.
    pub const fn is_idempotent(&self) -> bool {
        self.idempotent
    }

    /// The method's own timeout, if it has one.
    pub const fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The method's retry setting.
    pub const fn get_retry(&self) -> RetrySpec {
        self.retry
    }

    /// The metadata of a request, if a generated client sent it.
    pub fn of<B>(req: &http::Request<B>) -> Option<&'static MethodMeta> {
        req.extensions().get::<&'static MethodMeta>().copied()
    }
}
