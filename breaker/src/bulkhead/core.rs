//! The bulkhead's shared state: the slot counter, the wait queue and the handle.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use super::config::{Config, Mode};
use super::error::{RejectReason, Rejected};
use crate::util::{CachePadded, InvalidConfig, SharedRef};

pub(crate) const MAX_LIMIT: u32 = 1 << 30;

/// Receives a bulkhead's events; statically dispatched, free when unused (`()`).
pub trait Listener: Send + Sync + 'static {
    /// A call was turned away.
    fn on_rejection(&self, _name: &str, _rejected: &Rejected) {}
    /// A caller started waiting for a slot.
    fn on_queued(&self, _name: &str) {}
    /// The number of calls in flight changed (a slot was taken or given back). Runs on the
    /// request path: keep it to an atomic store.
    fn on_in_flight(&self, _name: &str, _in_flight: u32) {}
}

impl Listener for () {}

/// Waiters, touched only when the bulkhead is full (never on the fast path, never held across a
/// call).
#[derive(Default)]
struct Queue {
    next_id: u64,
    waiting: VecDeque<(u64, Waker)>,
    // Waiters that were handed a slot and have not yet picked it up.
    granted: Vec<u64>,
}

pub(crate) struct Shared<L> {
    in_flight: CachePadded<AtomicU32>,
    limit: AtomicU32,
    // Waiters in `queue.waiting`, readable without the lock.
    queued: AtomicU32,
    max_queue: AtomicU32,
    max_wait: AtomicU64,
    mode: AtomicU8,
    rejected: AtomicU64,
    queue: Mutex<Queue>,
    pub(crate) name: Box<str>,
    pub(crate) listener: L,
}

impl<L> fmt::Debug for Shared<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.name)
            .field("in_flight", &self.in_flight.load(Relaxed))
            .field("limit", &self.limit.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// The result of asking to wait.
pub(crate) enum Wait {
    Acquired,
    Pending,
    Rejected(Rejected),
}

impl<L: Listener> Shared<L> {
    pub(crate) fn new(name: Box<str>, cfg: &Config, listener: L) -> Self {
        let s = Shared {
            in_flight: CachePadded(AtomicU32::new(0)),
            limit: AtomicU32::new(cfg.max_concurrent),
            queued: AtomicU32::new(0),
            max_queue: AtomicU32::new(0),
            max_wait: AtomicU64::new(0),
            mode: AtomicU8::new(0),
            rejected: AtomicU64::new(0),
            queue: Mutex::new(Queue::default()),
            name,
            listener,
        };
        s.store(cfg);
        s
    }

    fn store(&self, cfg: &Config) {
        self.max_queue.store(cfg.max_queue, Relaxed);
        self.max_wait.store(cfg.max_wait_nanos(), Relaxed);
        self.mode.store(cfg.mode as u8, Relaxed);
        self.limit.store(cfg.max_concurrent, SeqCst);
    }

    pub(crate) fn mode(&self) -> Mode {
        if self.mode.load(Relaxed) == Mode::Shed as u8 {
            Mode::Shed
        } else {
            Mode::Backpressure
        }
    }

    /// Whether a full bulkhead rejects at once (`max_wait` zero): one load, no conversion.
    #[inline]
    pub(crate) fn fails_fast(&self) -> bool {
        self.max_wait.load(Relaxed) == 0
    }

    /// The longest wait, `None` for forever.
    pub(crate) fn max_wait(&self) -> Option<Duration> {
        match self.max_wait.load(Relaxed) {
            u64::MAX => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    #[inline]
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    #[inline]
    pub(crate) fn queued_is_empty(&self) -> bool {
        self.queued.load(SeqCst) == 0
    }

    /// Takes a slot if one is free: one load and one CAS.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        let limit = self.limit.load(Relaxed);
        let mut cur = self.in_flight.load(Relaxed);
        loop {
            if cur >= limit {
                return false;
            }
            match self
                .in_flight
                .compare_exchange_weak(cur, cur + 1, SeqCst, Relaxed)
            {
                Ok(_) => {
                    self.listener.on_in_flight(&self.name, cur + 1);
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Gives a slot back, handing it to the oldest waiter if there is one.
    #[inline]
    pub(crate) fn release(&self) {
        let before = self.in_flight.fetch_sub(1, SeqCst);
        self.listener.on_in_flight(&self.name, before - 1);
        // SeqCst pairs with `enqueue`: either we see the waiter, or it sees the free slot.
        if self.queued.load(SeqCst) != 0 {
            self.grant_waiters();
        }
    }

    /// Hands free slots to waiters, oldest first.
    fn grant_waiters(&self) {
        let mut q = self.lock();
        while !q.waiting.is_empty() && self.try_acquire() {
            let (id, waker) = q.waiting.pop_front().expect("checked non-empty");
            self.queued.fetch_sub(1, SeqCst);
            q.granted.push(id);
            waker.wake();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue inconsistent (every change is one
        // push/pop), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn reject(&self, reason: RejectReason) -> Rejected {
        self.rejected.fetch_add(1, Relaxed);
        let r = Rejected {
            reason,
            limit: self.limit.load(Relaxed),
        };
        self.listener.on_rejection(&self.name, &r);
        r
    }

    /// Joins the queue (or is rejected when it is full). `Acquired` when a slot came free
    /// while joining.
    pub(crate) fn enqueue(&self, waker: &Waker) -> Result<u64, Wait> {
        let mut q = self.lock();
        if q.waiting.len() as u32 >= self.max_queue.load(Relaxed) {
            drop(q);
            return Err(Wait::Rejected(self.reject(RejectReason::QueueFull)));
        }
        let id = q.next_id;
        q.next_id += 1;
        q.waiting.push_back((id, waker.clone()));
        self.queued.fetch_add(1, SeqCst);
        drop(q);
        self.listener.on_queued(&self.name);
        // A slot freed between our failed attempt and `queued` becoming visible is not lost:
        // look again, as a waiter.
        if self.in_flight.load(SeqCst) < self.limit.load(SeqCst) {
            self.grant_waiters();
        }
        Ok(id)
    }

    /// Checks on a queued waiter: `Acquired` once a slot was handed to it.
    pub(crate) fn poll_waiter(&self, id: u64, waker: &Waker) -> Wait {
        let mut q = self.lock();
        if let Some(i) = q.granted.iter().position(|g| *g == id) {
            q.granted.swap_remove(i);
            return Wait::Acquired;
        }
        match q.waiting.iter_mut().find(|(w, _)| *w == id) {
            Some((_, w)) => {
                if !w.will_wake(waker) {
                    *w = waker.clone();
                }
                Wait::Pending
            }
            // Removed by a reconfigure that shrank the queue.
            None => Wait::Rejected(Rejected {
                reason: RejectReason::QueueFull,
                limit: self.limit.load(Relaxed),
            }),
        }
    }

    /// A waiter gives up (timeout or drop): leaves the queue, or gives back a slot handed to it.
    pub(crate) fn cancel_waiter(&self, id: u64) {
        let mut q = self.lock();
        if let Some(i) = q.granted.iter().position(|g| *g == id) {
            q.granted.swap_remove(i);
            drop(q);
            self.release();
        } else if let Some(i) = q.waiting.iter().position(|(w, _)| *w == id) {
            q.waiting.remove(i);
            self.queued.fetch_sub(1, SeqCst);
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            in_flight: self.in_flight.load(Relaxed),
            max_concurrent: self.limit.load(Relaxed),
            queued: self.queued.load(Relaxed),
            rejected_total: self.rejected.load(Relaxed),
        }
    }

    /// Changes the limit (used by adaptive limits and `reconfigure`); wakes waiters when it
    /// grows. Calls above a lowered limit finish normally.
    pub(crate) fn set_limit(&self, limit: u32) {
        self.limit.store(limit.clamp(1, MAX_LIMIT), SeqCst);
        if self.queued.load(SeqCst) != 0 {
            self.grant_waiters();
        }
    }
}

/// A point-in-time view of a bulkhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Calls holding a slot now.
    pub in_flight: u32,
    /// The current limit.
    pub max_concurrent: u32,
    /// Callers waiting for a slot.
    pub queued: u32,
    /// Calls rejected since the bulkhead was built.
    pub rejected_total: u64,
}

/// Controls a bulkhead: snapshot and live reconfiguration. Cheap to clone.
pub struct Handle<L: 'static = ()> {
    pub(crate) shared: SharedRef<Shared<L>>,
}

impl<L: 'static> Clone for Handle<L> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<L: 'static> fmt::Debug for Handle<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl<L: Listener> Handle<L> {
    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// In-flight calls, limit, waiters, rejections.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Applies a new config live. Calls in flight keep their slots (a lowered limit admits no
    /// new call until enough of them finish); waiters are woken when the limit grows. A bad
    /// config is refused and the old one kept.
    pub fn reconfigure(&self, cfg: Config) -> Result<(), InvalidConfig> {
        cfg.validate()?;
        self.shared.store(&cfg);
        {
            // A shorter queue sheds its newest waiters; they see `QueueFull` on their next poll.
            let mut q = self.shared.lock();
            while q.waiting.len() as u32 > cfg.max_queue {
                if let Some((_, w)) = q.waiting.pop_back() {
                    self.shared.queued.fetch_sub(1, SeqCst);
                    w.wake();
                }
            }
        }
        self.shared.set_limit(cfg.max_concurrent);
        Ok(())
    }
}
