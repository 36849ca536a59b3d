//! Errors of generated clients.

use std::error::Error as StdError;
use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use palisade_breaker::circuit::Rejected;

use crate::BoxError;
use crate::stack::Elapsed;

/// The error of a generated client method.
///
/// It tells apart a transport failure, a timeout, a rejection (circuit breaker open), an HTTP
/// error status (with the status, headers and body), a response that could not be decoded and
/// a request that could not be encoded. Every error names the trait method that failed
/// (`"CatalogApi::title"`).
pub struct ClientError {
    method: &'static str,
    kind: Kind,
}

enum Kind {
    Transport(BoxError),
    Timeout,
    Rejected(Rejected),
    Status(Box<StatusError>),
    Decode(BoxError),
    Encode(BoxError),
}

struct StatusError {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl ClientError {
    /// Classifies an error from the service stack: a breaker rejection or a timeout anywhere in
    /// the source chain, else a transport error.
    pub fn from_service(method: &'static str, err: BoxError) -> Self {
        if let Some(r) = palisade_breaker::find_rejection(&*err) {
            return Self::new(method, Kind::Rejected(*r));
        }
        let mut cur: Option<&(dyn StdError + 'static)> = Some(&*err);
        while let Some(e) = cur {
            if e.is::<Elapsed>() || e.is::<tower::timeout::error::Elapsed>() {
                return Self::new(method, Kind::Timeout);
            }
            cur = e.source();
        }
        Self::new(method, Kind::Transport(err))
    }

    /// A transport error (connection refused, reset, a body that failed mid-stream...).
    pub fn transport(method: &'static str, err: impl Into<BoxError>) -> Self {
        Self::new(method, Kind::Transport(err.into()))
    }

    /// An HTTP error status.
    pub fn status(
        method: &'static str,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        Self::new(
            method,
            Kind::Status(Box::new(StatusError {
                status,
                headers,
                body,
            })),
        )
    }

    /// A response that could not be decoded.
    pub fn decode(method: &'static str, err: impl Into<BoxError>) -> Self {
        Self::new(method, Kind::Decode(err.into()))
    }

    /// A request that could not be encoded.
    pub fn encode(method: &'static str, err: impl Into<BoxError>) -> Self {
        Self::new(method, Kind::Encode(err.into()))
    }

    fn new(method: &'static str, kind: Kind) -> Self {
        Self { method, kind }
    }

    /// The method that failed, as `"Trait::method"`.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// Whether the transport failed.
    pub fn is_transport(&self) -> bool {
        matches!(self.kind, Kind::Transport(_))
    }

    /// Whether the call timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout)
    }

    /// Whether a circuit breaker turned the call away.
    pub fn is_rejected(&self) -> bool {
        matches!(self.kind, Kind::Rejected(_))
    }

    /// Whether the server answered with an error status.
    pub fn is_status(&self) -> bool {
        matches!(self.kind, Kind::Status(_))
    }

    /// Whether the response could not be decoded.
    pub fn is_decode(&self) -> bool {
        matches!(self.kind, Kind::Decode(_))
    }

    /// Whether the request could not be encoded.
    pub fn is_encode(&self) -> bool {
        matches!(self.kind, Kind::Encode(_))
    }

    /// The rejection, if a circuit breaker turned the call away.
    pub fn rejection(&self) -> Option<&Rejected> {
        match &self.kind {
            Kind::Rejected(r) => Some(r),
            _ => None,
        }
    }

    /// The error status, if the server answered with one.
    pub fn status_code(&self) -> Option<StatusCode> {
        match &self.kind {
            Kind::Status(s) => Some(s.status),
            _ => None,
        }
    }

    /// The body of an error response.
    pub fn body(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Status(s) => Some(&s.body),
            _ => None,
        }
    }

    /// The headers of an error response.
    pub fn headers(&self) -> Option<&HeaderMap> {
        match &self.kind {
            Kind::Status(s) => Some(&s.headers),
            _ => None,
        }
    }
}

impl fmt::Debug for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClientError");
        d.field("method", &self.method);
        match &self.kind {
            Kind::Transport(e) => d.field("transport", e),
            Kind::Timeout => d.field("timeout", &true),
            Kind::Rejected(r) => d.field("rejected", r),
            Kind::Status(s) => d.field("status", &s.status).field("body", &s.body),
            Kind::Decode(e) => d.field("decode", e),
            Kind::Encode(e) => d.field("encode", e),
        };
        d.finish()
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.method)?;
        match &self.kind {
            Kind::Transport(e) => write!(f, "transport error: {e}"),
            Kind::Timeout => f.write_str("timed out"),
            Kind::Rejected(r) => write!(f, "rejected: {r}"),
            Kind::Status(s) => write!(f, "HTTP status {}", s.status),
            Kind::Decode(e) => write!(f, "cannot decode the response: {e}"),
            Kind::Encode(e) => write!(f, "cannot encode the request: {e}"),
        }
    }
}

impl StdError for ClientError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            Kind::Transport(e) | Kind::Decode(e) | Kind::Encode(e) => Some(&**e),
            Kind::Rejected(r) => Some(r),
            Kind::Timeout | Kind::Status(_) => None,
        }
    }
}

/// A typed error body: `Result<Json<T>, ApiError<E>>` decodes the body of an error response as
/// JSON `E` (like Feign's `ErrorDecoder`); other failures, and error bodies that are not an `E`,
/// stay [`ClientError`]s.
#[derive(Debug)]
pub enum ApiError<E> {
    /// The server answered with an error status and a body that decoded as `E`.
    Api {
        /// The status.
        status: StatusCode,
        /// The decoded error body.
        error: E,
    },
    /// Any other failure.
    Client(ClientError),
}

impl<E> ApiError<E> {
    /// The decoded error body, if there is one.
    pub fn api(&self) -> Option<&E> {
        match self {
            ApiError::Api { error, .. } => Some(error),
            ApiError::Client(_) => None,
        }
    }

    /// The client error, if the failure was not a typed error body.
    pub fn client(&self) -> Option<&ClientError> {
        match self {
            ApiError::Api { .. } => None,
            ApiError::Client(e) => Some(e),
        }
    }
}

impl<E> From<ClientError> for ApiError<E> {
    fn from(e: ClientError) -> Self {
        ApiError::Client(e)
    }
}

impl<E: fmt::Debug> fmt::Display for ApiError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Api { status, error } => write!(f, "API error {status}: {error:?}"),
            ApiError::Client(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug> StdError for ApiError<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ApiError::Api { .. } => None,
            ApiError::Client(e) => e.source(),
        }
    }
}

/// The error type of a client method: [`ClientError`] or [`ApiError<E>`].
pub trait CallError: From<ClientError> + Send {
    /// Builds the error for an error status (`err.is_status()`).
    fn from_status(err: ClientError) -> Self;

    /// The client error inside, if any (fallbacks look for rejections there).
    fn as_client_error(&self) -> Option<&ClientError>;
}

impl CallError for ClientError {
    fn from_status(err: ClientError) -> Self {
        err
    }

    fn as_client_error(&self) -> Option<&ClientError> {
        Some(self)
    }
}

impl<E: serde::de::DeserializeOwned + Send> CallError for ApiError<E> {
    fn from_status(err: ClientError) -> Self {
        if let (Some(status), Some(body)) = (err.status_code(), err.body())
            && let Ok(error) = serde_json::from_slice(body)
        {
            return ApiError::Api { status, error };
        }
        ApiError::Client(err)
    }

    fn as_client_error(&self) -> Option<&ClientError> {
        self.client()
    }
}
