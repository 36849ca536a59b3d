//! The response future of [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::core::{GiveUp, Listener, Shared};
use super::policy::{Decision, Policy};
use super::replay::Replay;
use crate::util::SharedRef;

pin_project! {
    /// The response future of [`Retry`](super::Retry): runs attempts, sleeping between them,
    /// until one is returned. Dropping it cancels the attempt in flight (and whatever permits
    /// that attempt holds further down the stack).
    pub struct ResponseFuture<S, Req, P, R, L>
    where
        S: Service<R::Request>,
        R: Replay<Req>,
        L: 'static,
    {
        #[pin]
        state: State<S::Future>,
        svc: S,
        saved: Option<R::Saved>,
        next: Option<R::Request>,
        attempt: u32,
        deadline: Option<tokio::time::Instant>,
        policy: P,
        replay: R,
        shared: SharedRef<Shared<L>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] fut: F },
        Backoff { #[pin] sleep: Sleep },
        Ready,
    }
}

impl<S, Req, P, R, L> ResponseFuture<S, Req, P, R, L>
where
    S: Service<R::Request>,
    R: Replay<Req>,
{
    pub(crate) fn new(
        fut: S::Future,
        svc: S,
        saved: Option<R::Saved>,
        deadline: Option<tokio::time::Instant>,
        policy: P,
        replay: R,
        shared: SharedRef<Shared<L>>,
    ) -> Self {
        Self {
            state: State::Calling { fut },
            svc,
            saved,
            next: None,
            attempt: 1,
            deadline,
            policy,
            replay,
            shared,
        }
    }
}

impl<S, Req, P, R, L> fmt::Debug for ResponseFuture<S, Req, P, R, L>
where
    S: Service<R::Request>,
    R: Replay<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl<S, Req, P, R, L> Future for ResponseFuture<S, Req, P, R, L>
where
    S: Service<R::Request>,
    R: Replay<Req>,
    P: Policy<Req, S::Response, S::Error>,
    L: Listener,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { fut } => {
                    let result = ready!(fut.poll(cx));
                    let retry_after = match this.policy.decide(result.as_ref()) {
                        Decision::Return => return Poll::Ready(result),
                        Decision::Retry => None,
                        Decision::RetryAfter(d) => Some(d),
                    };
                    let plan = match this.saved.as_ref() {
                        None => Err(GiveUp::NotRetryable),
                        Some(saved) => this
                            .shared
                            .plan(*this.attempt, retry_after, *this.deadline)
                            .and_then(|delay| {
                                let req =
                                    this.replay.replay(saved).map_err(GiveUp::NotReplayable)?;
                                this.shared.withdraw()?;
                                Ok((delay, req))
                            }),
                    };
                    let (delay, req) = match plan {
                        Ok(p) => p,
                        Err(reason) => {
                            this.shared.give_up(reason);
                            return Poll::Ready(result);
                        }
                    };
                    // The failed result is dropped here: nothing of it outlives the decision.
                    drop(result);
                    this.shared.retrying(*this.attempt, delay);
                    *this.attempt += 1;
                    *this.next = Some(req);
                    if delay.is_zero() {
                        this.state.set(State::Ready);
                    } else {
                        this.state.set(State::Backoff {
                            sleep: tokio::time::sleep(delay),
                        });
                    }
                }
                StateProj::Backoff { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    ready!(this.svc.poll_ready(cx))?;
                    let req = this
                        .next
                        .take()
                        .expect("a retry request is set before Ready");
                    let fut = this.svc.call(req);
                    this.state.set(State::Calling { fut });
                }
            }
        }
    }
}
