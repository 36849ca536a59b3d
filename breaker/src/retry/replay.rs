//! How a request is kept for another attempt.

/// Keeps what another attempt of a request needs.
///
/// The retry calls [`prepare`](Self::prepare) once per call (with `retryable` from the
/// [`Policy`](super::Policy)) and [`replay`](Self::replay) before each retry. A request that
/// cannot be replayed ends the retries with [`GiveUp::NotReplayable`](super::GiveUp).
pub trait Replay<Req> {
    /// The request the inner service receives.
    type Request;
    /// What is kept for the next attempts.
    type Saved;

    /// Turns the caller's request into the first attempt, keeping a copy when `retryable`.
    fn prepare(&self, req: Req, retryable: bool) -> (Self::Request, Option<Self::Saved>);

    /// Another attempt, or why there cannot be one.
    fn replay(&self, saved: &Self::Saved) -> Result<Self::Request, &'static str>;
}

/// Replays `Clone` requests by cloning them (once per call, as tower's `Retry`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneReplay;

impl<Req: Clone> Replay<Req> for CloneReplay {
    type Request = Req;
    type Saved = Req;

    #[inline]
    fn prepare(&self, req: Req, retryable: bool) -> (Req, Option<Req>) {
        let saved = retryable.then(|| req.clone());
        (req, saved)
    }

    #[inline]
    fn replay(&self, saved: &Req) -> Result<Req, &'static str> {
        Ok(saved.clone())
    }
}
