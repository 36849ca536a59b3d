//! Statically dispatched listeners: zero cost when unused (`()`), composable as tuples.

use super::{State, TripReason};
use crate::classify::Outcome;

/// A state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// Why the breaker opened (set on transitions to `Open`).
    pub reason: Option<TripReason>,
}

/// Receives a breaker's events. Every method has an empty default, and the listener is a type
/// parameter of the breaker, so an unused event compiles to nothing.
///
/// Methods run on the request path (outcomes, rejections) or inside a transition: keep them
/// short and never block.
///
/// ```
/// use palisade_breaker::circuit::{Listener, Transition};
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// #[derive(Clone, Default)]
/// struct CountOpens(Arc<AtomicUsize>);
///
/// impl Listener for CountOpens {
///     fn on_transition(&self, _name: &str, t: &Transition) {
///         if t.to == palisade_breaker::State::Open {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
/// ```
pub trait Listener: Send + Sync + 'static {
    /// The breaker changed state.
    fn on_transition(&self, _name: &str, _transition: &Transition) {}
    /// A call was turned away in `state`.
    fn on_rejection(&self, _name: &str, _state: State) {}
    /// A call finished; `slow` when it exceeded the slow-call threshold.
    fn on_outcome(&self, _name: &str, _outcome: Outcome, _slow: bool) {}
    /// A call's response future was dropped before it finished.
    fn on_cancelled(&self, _name: &str) {}
}

impl Listener for () {}

impl<A: Listener, B: Listener> Listener for (A, B) {
    fn on_transition(&self, name: &str, t: &Transition) {
        self.0.on_transition(name, t);
        self.1.on_transition(name, t);
    }
    fn on_rejection(&self, name: &str, state: State) {
        self.0.on_rejection(name, state);
        self.1.on_rejection(name, state);
    }
    fn on_outcome(&self, name: &str, o: Outcome, slow: bool) {
        self.0.on_outcome(name, o, slow);
        self.1.on_outcome(name, o, slow);
    }
    fn on_cancelled(&self, name: &str) {
        self.0.on_cancelled(name);
        self.1.on_cancelled(name);
    }
}
