use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::meta::MethodMeta;

/// Applies a timeout to each request: the method's own (`timeout = "..."` on the method or the
/// trait), else the layer's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer {
    default: Option<Duration>,
}

impl DeadlineLayer {
    /// A layer with `default` for requests whose method sets no timeout.
    pub const fn new(default: Option<Duration>) -> Self {
        Self { default }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;
    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            default: self.default,
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    default: Option<Duration>,
}

impl<S> Deadline<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<http::Request<B>> for Deadline<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = DeadlineError;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), DeadlineError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| DeadlineError::inner(e.into()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let timeout = MethodMeta::of(&req)
            .and_then(MethodMeta::get_timeout)
            .or(self.default);
        let fut = self.inner.call(req);
        match timeout {
            Some(t) => DeadlineFuture::timed(fut, tokio::time::sleep(t)),
            None => DeadlineFuture::plain(fut),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Deadline`].
    pub struct DeadlineFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Plain { #[pin] fut: F },
        Timed { #[pin] fut: F, #[pin] sleep: Sleep },
    }
}

impl<F> DeadlineFuture<F> {
    fn plain(fut: F) -> Self {
        Self {
            state: State::Plain { fut },
        }
    }

    fn timed(fut: F, sleep: Sleep) -> Self {
        Self {
            state: State::Timed { fut, sleep },
        }
    }
}

impl<F, T, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, DeadlineError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Plain { fut } => fut.poll(cx).map_err(|e| DeadlineError::inner(e.into())),
            StateProj::Timed { fut, sleep } => {
                if let Poll::Ready(r) = fut.poll(cx) {
                    return Poll::Ready(r.map_err(|e| DeadlineError::inner(e.into())));
                }
                match sleep.poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(DeadlineError {
                        kind: DeadlineKind::Elapsed(Elapsed),
                    })),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// The request took longer than its timeout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request timed out")
    }
}

impl StdError for Elapsed {}

/// The error of [`Deadline`]: the timeout elapsed, or the inner service failed.
///
/// The source chain holds [`Elapsed`] or the inner error, so that classifiers looking through
/// other layers' errors find them.
#[derive(Debug)]
pub struct DeadlineError {
    kind: DeadlineKind,
}

#[derive(Debug)]
enum DeadlineKind {
    Elapsed(Elapsed),
    Inner(BoxError),
}

impl DeadlineError {
    fn inner(e: BoxError) -> Self {
        Self {
            kind: DeadlineKind::Inner(e),
        }
    }

    /// Whether the timeout elapsed.
    pub fn is_elapsed(&self) -> bool {
        matches!(self.kind, DeadlineKind::Elapsed(_))
    }
}

impl fmt::Display for DeadlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DeadlineKind::Elapsed(e) => e.fmt(f),
            DeadlineKind::Inner(e) => e.fmt(f),
        }
    }
}

impl StdError for DeadlineError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            DeadlineKind::Elapsed(e) => Some(e),
            DeadlineKind::Inner(e) => Some(&**e),
        }
    }
}
