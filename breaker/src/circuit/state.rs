//! The admission state machine: one packed `AtomicU64` shared by every clone of a breaker.
//!
//! Layout of the word (low to high bits):
//!
//! | bits   | field       | meaning                                                            |
//! |--------|-------------|--------------------------------------------------------------------|
//! | 0..3   | kind        | [`State`]                                                          |
//! | 3      | armed       | `Open`: a timer will move the breaker to `HalfOpen`                |
//! | 4      | timed       | calls must be timed (slow-call policy or time window configured)   |
//! | 5..17  | probes      | `HalfOpen`: probe permits handed out and not returned              |
//! | 17..29 | successes   | `HalfOpen`: probes that succeeded                                  |
//! | 29..64 | generation  | bumped on every transition; outcomes of older generations are void |
//!
//! Everything here is free of clocks and I/O so that `loom` can explore every interleaving
//! (`tests/loom.rs`).

#[cfg(not(palisade_loom))]
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(palisade_loom)]
use loom::sync::atomic::{AtomicU64, Ordering};

use super::State;

const KIND_MASK: u64 = 0b111;
const ARMED: u64 = 1 << 3;
const TIMED: u64 = 1 << 4;
const PROBES_SHIFT: u32 = 5;
const SUCC_SHIFT: u32 = 17;
const COUNT_MASK: u64 = (1 << 12) - 1;
const GEN_SHIFT: u32 = 29;

/// The largest number of half-open probes the word can count.
pub(crate) const MAX_PROBES: u32 = COUNT_MASK as u32;

/// A decoded snapshot of the state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(u64);

impl Word {
    pub(crate) fn new(kind: State, generation: u64, timed: bool) -> Self {
        let mut w = (kind as u64) | (generation << GEN_SHIFT);
        if timed {
            w |= TIMED;
        }
        Word(w)
    }

    #[inline]
    pub(crate) fn kind(self) -> State {
        const KINDS: [State; 8] = [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::Disabled,
            State::ForcedOpen,
            State::MetricsOnly,
            State::MetricsOnly,
            State::MetricsOnly,
        ];
        KINDS[(self.0 & KIND_MASK) as usize]
    }

    /// `Closed`, tested without decoding the kind: the hot path's only question.
    #[inline]
    pub(crate) fn is_closed(self) -> bool {
        self.0 & KIND_MASK == State::Closed as u64
    }

    #[inline]
    pub(crate) fn armed(self) -> bool {
        self.0 & ARMED != 0
    }

    #[inline]
    pub(crate) fn timed(self) -> bool {
        self.0 & TIMED != 0
    }

    #[inline]
    pub(crate) fn probes(self) -> u32 {
        ((self.0 >> PROBES_SHIFT) & COUNT_MASK) as u32
    }

    #[inline]
    pub(crate) fn successes(self) -> u32 {
        ((self.0 >> SUCC_SHIFT) & COUNT_MASK) as u32
    }

    #[inline]
    pub(crate) fn generation(self) -> u64 {
        self.0 >> GEN_SHIFT
    }

    /// The word after a transition to `kind`: next generation, counters cleared, `timed` kept.
    fn next(self, kind: State, armed: bool) -> Word {
        let mut w = Word::new(kind, self.generation().wrapping_add(1), self.timed());
        if armed {
            w.0 |= ARMED;
        }
        w
    }

    fn with_probes(self, probes: u32) -> Word {
        Word((self.0 & !(COUNT_MASK << PROBES_SHIFT)) | (u64::from(probes) << PROBES_SHIFT))
    }

    fn with_successes(self, n: u32) -> Word {
        Word((self.0 & !(COUNT_MASK << SUCC_SHIFT)) | (u64::from(n) << SUCC_SHIFT))
    }
}

/// What [`StateCell::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Go ahead; `probe` is set when the permit is a half-open probe that must be returned.
    Admit {
        generation: u64,
        probe: bool,
        timed: bool,
    },
    /// Rejected in the state of this word.
    Reject(Word),
    /// `Open` with no timer armed: the caller must read the clock and, if the open period is
    /// over, call [`StateCell::try_half_open`].
    OpenCheckClock(Word),
}

/// What a half-open probe's success did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeSuccess {
    /// Counted; more successes are needed.
    Counted,
    /// This success closed the breaker; the new word is returned.
    Closed(Word),
    /// The probe belonged to another generation; nothing changed.
    Stale,
}

/// The shared state word.
#[derive(Debug)]
pub(crate) struct StateCell {
    word: AtomicU64,
}

impl StateCell {
    pub(crate) fn new(kind: State, timed: bool) -> Self {
        Self {
            word: AtomicU64::new(Word::new(kind, 0, timed).0),
        }
    }

    #[inline]
    pub(crate) fn load(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    /// Admission: a single load in `Closed`, `Disabled`, `MetricsOnly` and armed `Open`; a CAS
    /// loop only in `HalfOpen`.
    #[inline]
    pub(crate) fn admit(&self, max_probes: impl Fn() -> u32) -> Admission {
        let mut w = self.load();
        if w.is_closed() {
            return Admission::Admit {
                generation: w.generation(),
                probe: false,
                timed: w.timed(),
            };
        }
        loop {
            match w.kind() {
                State::Closed | State::Disabled | State::MetricsOnly => {
                    return Admission::Admit {
                        generation: w.generation(),
                        probe: false,
                        timed: w.timed(),
                    };
                }
                State::ForcedOpen => return Admission::Reject(w),
                State::Open if w.armed() => return Admission::Reject(w),
                State::Open => return Admission::OpenCheckClock(w),
                State::HalfOpen => {
                    if w.probes() >= max_probes() {
                        return Admission::Reject(w);
                    }
                    let next = w.with_probes(w.probes() + 1);
                    match self.cas(w, next) {
                        Ok(()) => {
                            return Admission::Admit {
                                generation: w.generation(),
                                probe: true,
                                timed: w.timed(),
                            };
                        }
                        Err(cur) => w = cur,
                    }
                }
            }
        }
    }

    /// `Open` (generation of `from`) -> `HalfOpen` holding one probe for the caller. Exactly one
    /// caller wins; losers get the current word back.
    pub(crate) fn try_half_open(&self, from: Word, take_probe: bool) -> Result<Word, Word> {
        let next = from.next(State::HalfOpen, false);
        let next = if take_probe {
            next.with_probes(1)
        } else {
            next
        };
        self.cas(from, next).map(|()| next)
    }

    /// Counts a probe success; closes when `required` successes are reached. `before_close`
    /// runs before the closing CAS (it resets the window so that no call of the new `Closed`
    /// generation can record into stale counts).
    pub(crate) fn probe_success(
        &self,
        generation: u64,
        required: u32,
        before_close: impl Fn(),
    ) -> ProbeSuccess {
        let mut w = self.load();
        loop {
            if w.kind() != State::HalfOpen || w.generation() != generation {
                return ProbeSuccess::Stale;
            }
            let successes = w.successes() + 1;
            let (next, closes) = if successes >= required {
                before_close();
                (w.next(State::Closed, false), true)
            } else {
                (w.with_successes(successes), false)
            };
            match self.cas(w, next) {
                Ok(()) if closes => return ProbeSuccess::Closed(next),
                Ok(()) => return ProbeSuccess::Counted,
                Err(cur) => w = cur,
            }
        }
    }

    /// Returns a probe permit that produced no verdict (ignored outcome, cancelled and the policy
    /// ignores cancellations), so another call may probe. Returns whether it was returned.
    pub(crate) fn release_probe(&self, generation: u64) -> bool {
        let mut w = self.load();
        loop {
            if w.kind() != State::HalfOpen || w.generation() != generation || w.probes() == 0 {
                return false;
            }
            match self.cas(w, w.with_probes(w.probes() - 1)) {
                Ok(()) => return true,
                Err(cur) => w = cur,
            }
        }
    }

    /// A transition guarded by generation: succeeds only if the state is still `from_kind` in
    /// `generation`. Used for trips (`Closed` -> `Open`), probe failures and timeouts
    /// (`HalfOpen` -> `Open`), and timers (`Open` -> `HalfOpen`).
    pub(crate) fn transition_if(
        &self,
        from_kind: State,
        generation: u64,
        to: State,
        armed: bool,
    ) -> Option<(Word, Word)> {
        let mut w = self.load();
        loop {
            if w.kind() != from_kind || w.generation() != generation {
                return None;
            }
            let next = w.next(to, armed);
            match self.cas(w, next) {
                Ok(()) => return Some((w, next)),
                Err(cur) => w = cur,
            }
        }
    }

    /// An unconditional transition (manual control, reset). Returns (previous, new).
    pub(crate) fn force(&self, to: State, armed: bool) -> (Word, Word) {
        let mut w = self.load();
        loop {
            let next = w.next(to, armed);
            match self.cas(w, next) {
                Ok(()) => return (w, next),
                Err(cur) => w = cur,
            }
        }
    }

    /// Clears the armed bit of an `Open` word of `generation` (its timer was lost).
    pub(crate) fn disarm(&self, generation: u64) {
        let mut w = self.load();
        while w.kind() == State::Open && w.generation() == generation && w.armed() {
            match self.cas(w, Word(w.0 & !ARMED)) {
                Ok(()) => return,
                Err(cur) => w = cur,
            }
        }
    }

    /// Sets or clears the `timed` flag without a transition.
    pub(crate) fn set_timed(&self, timed: bool) {
        if timed {
            self.word.fetch_or(TIMED, Ordering::AcqRel);
        } else {
            self.word.fetch_and(!TIMED, Ordering::AcqRel);
        }
    }

    #[inline]
    fn cas(&self, current: Word, new: Word) -> Result<(), Word> {
        self.word
            .compare_exchange(current.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(Word)
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    #[test]
    fn word_fields_round_trip() {
        let w = Word::new(State::HalfOpen, 12345, true)
            .with_probes(MAX_PROBES)
            .with_successes(7);
        assert_eq!(w.kind(), State::HalfOpen);
        assert_eq!(w.generation(), 12345);
        assert!(w.timed());
        assert!(!w.armed());
        assert_eq!(w.probes(), MAX_PROBES);
        assert_eq!(w.successes(), 7);
        let n = w.next(State::Open, true);
        assert_eq!(n.kind(), State::Open);
        assert_eq!(n.generation(), 12346);
        assert!(n.armed() && n.timed());
        assert_eq!((n.probes(), n.successes()), (0, 0));
    }

    #[test]
    fn half_open_admits_exactly_max_probes() {
        let cell = StateCell::new(State::Open, false);
        let w = cell.load();
        let ho = cell.try_half_open(w, true).expect("first caller wins");
        assert!(cell.try_half_open(w, true).is_err(), "second caller loses");
        assert_eq!(ho.probes(), 1);
        assert!(matches!(
            cell.admit(|| 3),
            Admission::Admit { probe: true, .. }
        ));
        assert!(matches!(
            cell.admit(|| 3),
            Admission::Admit { probe: true, .. }
        ));
        assert!(matches!(cell.admit(|| 3), Admission::Reject(_)));
        assert!(cell.release_probe(ho.generation()));
        assert!(matches!(
            cell.admit(|| 3),
            Admission::Admit { probe: true, .. }
        ));
    }

    #[test]
    fn stale_generation_is_void() {
        let cell = StateCell::new(State::HalfOpen, false);
        let g = cell.load().generation();
        cell.force(State::Closed, false);
        assert_eq!(cell.probe_success(g, 1, || {}), ProbeSuccess::Stale);
        assert!(!cell.release_probe(g));
        assert!(
            cell.transition_if(State::HalfOpen, g, State::Open, false)
                .is_none()
        );
    }
}

/// Exhaustive interleavings of the admission state machine (run with
/// `RUSTFLAGS="--cfg palisade_loom" cargo test -p palisade-breaker --release --lib loom`).
#[cfg(all(test, palisade_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicU32;
    use loom::thread;

    /// Two callers race for one half-open probe while a third returns a cancelled probe: never
    /// more than `max` probes out, and once all are returned the breaker admits again.
    #[test]
    fn loom_half_open_probes_never_exceed_max() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let cell = Arc::new(StateCell::new(State::Open, false));
            let w = cell.load();
            let ho = cell.try_half_open(w, true).expect("single opener");
            let out = Arc::new(AtomicU32::new(1));
            let max = 2;
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let cell = cell.clone();
                    let out = out.clone();
                    thread::spawn(move || {
                        if let Admission::Admit {
                            probe: true,
                            generation,
                            ..
                        } = cell.admit(|| max)
                        {
                            let n = out.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(n <= max, "{n} probes out, max {max}");
                            out.fetch_sub(1, Ordering::SeqCst);
                            assert!(cell.release_probe(generation));
                        }
                    })
                })
                .collect();
            // The opener's own probe is cancelled concurrently.
            out.fetch_sub(1, Ordering::SeqCst);
            assert!(cell.release_probe(ho.generation()));
            for h in handles {
                h.join().unwrap();
            }
            let end = cell.load();
            assert_eq!(end.kind(), State::HalfOpen);
            assert_eq!(end.probes(), 0, "a probe leaked");
        });
    }

    /// Exactly one of two racing openers moves Open -> HalfOpen.
    #[test]
    fn loom_single_half_open_winner() {
        loom::model(|| {
            let cell = Arc::new(StateCell::new(State::Open, false));
            let w = cell.load();
            let wins = Arc::new(AtomicU32::new(0));
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let (cell, wins) = (cell.clone(), wins.clone());
                    thread::spawn(move || {
                        if cell.try_half_open(w, true).is_ok() {
                            wins.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(wins.load(Ordering::SeqCst), 1);
            assert_eq!(cell.load().probes(), 1);
        });
    }

    /// A probe success that closes races a probe failure that reopens and a stale release:
    /// exactly one verdict wins, the generation moves once, no probe count survives it.
    #[test]
    fn loom_probe_verdicts_are_exclusive() {
        loom::model(|| {
            let cell = Arc::new(StateCell::new(State::Open, false));
            let ho = cell.try_half_open(cell.load(), true).unwrap();
            assert!(matches!(
                cell.admit(|| 2),
                Admission::Admit { probe: true, .. }
            ));
            let g = ho.generation();
            let a = {
                let cell = cell.clone();
                thread::spawn(move || {
                    matches!(cell.probe_success(g, 1, || {}), ProbeSuccess::Closed(_))
                })
            };
            let b = {
                let cell = cell.clone();
                thread::spawn(move || {
                    cell.transition_if(State::HalfOpen, g, State::Open, false)
                        .is_some()
                })
            };
            let closed = a.join().unwrap();
            let opened = b.join().unwrap();
            assert!(closed ^ opened, "exactly one verdict");
            let end = cell.load();
            assert_eq!(end.generation(), g + 1);
            assert_eq!(end.kind(), if closed { State::Closed } else { State::Open });
            assert!(
                !cell.release_probe(g),
                "stale release must not touch the new state"
            );
            assert_eq!(cell.load(), end);
        });
    }
}
