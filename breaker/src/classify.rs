//! Classification of call results into [`Outcome`]s.
//!
//! Every middleware in this crate that judges calls (the circuit breaker today, the adaptive limits
//! and retries later) asks a [`Classify`] what a result means, so one classifier serves the whole
//! stack.

use std::time::Duration;

/// What a finished call means for the health of the dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The dependency did its job.
    Success,
    /// The dependency failed (a 5xx, a transport error, an `UNAVAILABLE` status...).
    Failure,
    /// The result says nothing about the dependency's health (a 4xx, a cancelled request that the
    /// policy ignores). It is not counted in any window.
    Ignored,
}

/// Decides the [`Outcome`] of a call from its result.
///
/// `elapsed` is `Some` when the middleware measured the call's latency (for example because a
/// slow-call threshold is configured); classifiers must not assume it is present.
///
/// Closures `Fn(Result<&Res, &Err>, Option<Duration>) -> Outcome` implement this trait.
///
/// ```
/// use palisade_breaker::{Classify, Outcome};
/// use std::time::Duration;
///
/// // Count only errors, and successful responses above 100 as failures.
/// let classify = |r: Result<&u32, &std::io::Error>, _elapsed: Option<Duration>| match r {
///     Ok(code) if *code > 100 => Outcome::Failure,
///     Ok(_) => Outcome::Success,
///     Err(_) => Outcome::Failure,
/// };
/// assert_eq!(classify.classify(Ok(&200), None), Outcome::Failure);
/// ```
pub trait Classify<Res, Err> {
    /// Classifies one call result.
    fn classify(&self, result: Result<&Res, &Err>, elapsed: Option<Duration>) -> Outcome;
}

impl<Res, Err, F> Classify<Res, Err> for F
where
    F: Fn(Result<&Res, &Err>, Option<Duration>) -> Outcome,
{
    fn classify(&self, result: Result<&Res, &Err>, elapsed: Option<Duration>) -> Outcome {
        self(result, elapsed)
    }
}

/// The default classifier: any `Err` is a failure, any `Ok` a success.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyError;

impl<Res, Err> Classify<Res, Err> for AnyError {
    #[inline]
    fn classify(&self, result: Result<&Res, &Err>, _elapsed: Option<Duration>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(feature = "http")]
pub use self::http_classify::HttpClassifier;

#[cfg(feature = "http")]
mod http_classify {
    use super::{Classify, Outcome};
    use std::time::Duration;

    /// Classifies `http::Response`s: 5xx and transport errors fail, 4xx do not count, 429
    /// counts as a failure only when asked to (it usually means *we* are too fast, not that the
    /// dependency is unhealthy).
    ///
    /// ```
    /// use palisade_breaker::{Classify, HttpClassifier, Outcome};
    ///
    /// let c = HttpClassifier::new().count_too_many_requests(true);
    /// let resp = http::Response::builder().status(429).body(()).unwrap();
    /// let r: Result<&http::Response<()>, &std::io::Error> = Ok(&resp);
    /// assert_eq!(c.classify(r, None), Outcome::Failure);
    /// ```
    #[derive(Debug, Clone, Copy, Default)]
    pub struct HttpClassifier {
        count_429: bool,
    }

    impl HttpClassifier {
        /// 5xx and errors fail; 4xx (including 429) are ignored.
        pub const fn new() -> Self {
            Self { count_429: false }
        }

        /// Whether `429 Too Many Requests` counts as a failure.
        pub const fn count_too_many_requests(mut self, yes: bool) -> Self {
            self.count_429 = yes;
            self
        }

        /// Classifies a status code alone.
        pub fn classify_status(&self, status: http::StatusCode) -> Outcome {
            if status.is_server_error() {
                Outcome::Failure
            } else if status == http::StatusCode::TOO_MANY_REQUESTS {
                if self.count_429 {
                    Outcome::Failure
                } else {
                    Outcome::Ignored
                }
            } else if status.is_client_error() {
                Outcome::Ignored
            } else {
                Outcome::Success
            }
        }
    }

    impl<B, E> Classify<http::Response<B>, E> for HttpClassifier {
        #[inline]
        fn classify(
            &self,
            result: Result<&http::Response<B>, &E>,
            _elapsed: Option<Duration>,
        ) -> Outcome {
            match result {
                Ok(resp) => self.classify_status(resp.status()),
                Err(_) => Outcome::Failure,
            }
        }
    }
}

#[cfg(feature = "tonic")]
pub use self::grpc_classify::GrpcClassifier;

#[cfg(feature = "tonic")]
mod grpc_classify {
    use super::{Classify, Outcome};
    use std::time::Duration;
    use tonic::Code;

    /// Classifies gRPC results by status code.
    ///
    /// By default `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN`, `DATA_LOSS` and
    /// `RESOURCE_EXHAUSTED` are failures; other codes (`NOT_FOUND`, `INVALID_ARGUMENT`...) are the
    /// caller's problem and are ignored. It reads `grpc-status` from the response headers
    /// (trailers-only responses, which is how servers send most errors), and classifies
    /// `tonic::Status` errors and transport errors.
    ///
    /// ```
    /// use palisade_breaker::{Classify, GrpcClassifier, Outcome};
    ///
    /// let c = GrpcClassifier::new();
    /// let status = tonic::Status::unavailable("down");
    /// let r: Result<&(), &tonic::Status> = Err(&status);
    /// assert_eq!(c.classify(r, None), Outcome::Failure);
    /// ```
    #[derive(Debug, Clone, Copy)]
    pub struct GrpcClassifier {
        failures: u32,
    }

    impl Default for GrpcClassifier {
        fn default() -> Self {
            Self::new()
        }
    }

    impl GrpcClassifier {
        /// The default set of failure codes.
        pub const fn new() -> Self {
            Self { failures: 0 }
                .with_failure(Code::Unavailable)
                .with_failure(Code::DeadlineExceeded)
                .with_failure(Code::Internal)
                .with_failure(Code::Unknown)
                .with_failure(Code::DataLoss)
                .with_failure(Code::ResourceExhausted)
        }

        /// Also counts `code` as a failure.
        pub const fn with_failure(mut self, code: Code) -> Self {
            self.failures |= 1 << (code as u32);
            self
        }

        /// Stops counting `code` as a failure.
        pub const fn without_failure(mut self, code: Code) -> Self {
            self.failures &= !(1 << (code as u32));
            self
        }

        /// Classifies a status code alone.
        pub fn classify_code(&self, code: Code) -> Outcome {
            if code == Code::Ok {
                Outcome::Success
            } else if self.failures & (1 << (code as u32)) != 0 {
                Outcome::Failure
            } else {
                Outcome::Ignored
            }
        }
    }

    impl<T> Classify<tonic::Response<T>, tonic::Status> for GrpcClassifier {
        fn classify(
            &self,
            result: Result<&tonic::Response<T>, &tonic::Status>,
            _elapsed: Option<Duration>,
        ) -> Outcome {
            match result {
                Ok(_) => Outcome::Success,
                Err(status) => self.classify_code(status.code()),
            }
        }
    }

    impl Classify<(), tonic::Status> for GrpcClassifier {
        fn classify(&self, result: Result<&(), &tonic::Status>, _e: Option<Duration>) -> Outcome {
            match result {
                Ok(()) => Outcome::Success,
                Err(status) => self.classify_code(status.code()),
            }
        }
    }

    impl<B, E> Classify<http::Response<B>, E> for GrpcClassifier {
        fn classify(
            &self,
            result: Result<&http::Response<B>, &E>,
            _elapsed: Option<Duration>,
        ) -> Outcome {
            match result {
                Ok(resp) => match resp.headers().get("grpc-status") {
                    // Trailers-only response: the status is in the headers.
                    Some(v) => {
                        let code = v
                            .to_str()
                            .ok()
                            .and_then(|s| s.parse::<i32>().ok())
                            .map(Code::from_i32)
                            .unwrap_or(Code::Unknown);
                        self.classify_code(code)
                    }
                    None if resp.status().is_server_error() => Outcome::Failure,
                    None => Outcome::Success,
                },
                Err(_) => Outcome::Failure,
            }
        }
    }
}
