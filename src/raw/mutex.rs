//! The raw mutex: one byte of lock word, parking on its address.

use core::fmt;
use core::panic::Location;

use crate::GuardMarker;
use crate::diag::Mode;
use crate::raw::fair::{self, TOKEN_HANDOFF, TOKEN_NORMAL, Want};
use crate::raw::violation::{self, Violation};
use crate::record::{Kind, LockDiag, Wait};
use crate::sync::SpinWait;
use crate::sync::atomic::{AtomicU8, Ordering};
use crate::sync::park::{self, FilterOp, ParkResult, UnparkResult};
use crate::sync::time::{self, Duration, Instant};

// The lock word, bit by bit.
//
// A thread owns the mutex. Set only by a successful acquisition (or by an
// unlocker handing the mutex to a parked thread); cleared only by the owner's
// release, which first checks that it is set.
const LOCKED: u8 = 0b01;
// At least one thread is parked (or about to park) on this mutex's address.
// Set by a waiter before it parks, while LOCKED is set, or by a condvar that
// requeues its waiters onto a mutex (which may be free by then); cleared under
// the parking queue's lock when the queue empties.
const PARKED: u8 = 0b10;
// No other bit is ever set: a word with any of them is corrupt.
const UNKNOWN: u8 = !(LOCKED | PARKED);

/// What diagnostics call a mutex (fair and reentrant ones too).
pub(crate) const KIND: Kind = Kind::Mutex;

/// The raw mutex behind [`Mutex`](crate::Mutex): a parking_lot-compatible
/// word lock (spin briefly, then park), whose every transition is checked.
///
/// Misuse is reported, not absorbed: releasing a mutex that is not locked
/// leaves the word as it was and hands a [`Violation`] to the
/// [`ViolationPolicy`](crate::ViolationPolicy).
///
/// ```
/// use lockscope::lock_api::RawMutex as _;
/// let raw = <lockscope::RawMutex as lockscope::lock_api::RawMutex>::INIT;
/// let guard = raw.lock();
/// assert!(raw.is_locked());
/// unsafe { raw.unlock(guard) };
/// assert!(!raw.is_locked());
/// ```
pub struct RawMutex {
    /// The lock word; with diagnostics on it lives in `diag`'s padding
    /// (see [`Self::state`]).
    #[cfg(not(lockscope_diag))]
    state: AtomicU8,
    pub(crate) diag: LockDiag,
}

#[cfg(lockscope_diag)]
impl Drop for RawMutex {
    fn drop(&mut self) {
        if self.state().load(Ordering::Relaxed) & LOCKED != 0 {
            // A leaked guard: its hold leaves the holder's record.
            self.diag.forget_holds();
        } else {
            self.diag.dropped();
        }
    }
}

/// A mutex lock word decoded field by field, for reports.
///
/// ```
/// let word = lockscope::RawMutex::decode(0b11);
/// assert!(word.locked && word.parked && word.is_valid());
/// assert!(!lockscope::RawMutex::decode(0x80).is_valid());
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MutexWord {
    /// The raw word.
    pub raw: u8,
    /// Some thread owns the mutex.
    pub locked: bool,
    /// Threads are parked waiting for it.
    pub parked: bool,
    /// Bits that no valid word has.
    pub unknown_bits: u8,
}

impl MutexWord {
    /// Whether the word satisfies every invariant of the layout: no unknown
    /// bits. (Parked threads on an unlocked mutex are valid: a release woke
    /// one of them and the others stay queued.)
    pub fn is_valid(&self) -> bool {
        self.unknown_bits == 0
    }
}

impl fmt::Display for MutexWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{ locked: {}, parked: {}", self.locked, self.parked)?;
        if self.unknown_bits != 0 {
            write!(f, ", unknown bits: {:#04x}", self.unknown_bits)?;
        }
        f.write_str(" }")
    }
}

// SAFETY: the mutex is exclusive: `lock` and `try_lock` return a guard only
// after moving LOCKED from clear to set with Acquire ordering (or after an
// unlocker handed ownership over under the queue lock), and `unlock` clears it
// with Release ordering.
unsafe impl lock_api::RawMutex for RawMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawMutex = RawMutex::labelled_opt(None);

    type Guard = GuardMarker;

    // Always inlined, as parking_lot's fast paths are: with the diagnostics
    // in them the compiler would otherwise leave them as calls.
    #[inline(always)]
    #[track_caller]
    fn lock(&self) -> GuardMarker {
        self.lock_at(Location::caller());
        GuardMarker::new()
    }

    #[inline]
    #[track_caller]
    fn try_lock(&self) -> Option<GuardMarker> {
        let mut state = self.state().load(Ordering::Relaxed);
        loop {
            if state & LOCKED != 0 {
                return None;
            }
            match self.state().compare_exchange_weak(
                state,
                state | LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.diag.acquired_exclusive(KIND, Location::caller());
                    return Some(GuardMarker::new());
                }
                Err(now) => state = now,
            }
        }
    }

    #[inline(always)]
    #[track_caller]
    unsafe fn unlock(&self, _guard: GuardMarker) {
        let release = self.diag.releasing_exclusive();
        if self
            .state()
            .compare_exchange(LOCKED, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            core::hint::cold_path();
            self.unlock_slow(false);
        }
        self.diag.released_exclusive(release);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.state().load(Ordering::Relaxed) & LOCKED != 0
    }
}

// SAFETY: a fair unlock either releases like `unlock` or hands ownership to
// exactly one parked thread without ever clearing LOCKED.
unsafe impl lock_api::RawMutexFair for RawMutex {
    #[inline]
    #[track_caller]
    unsafe fn unlock_fair(&self, _guard: GuardMarker) {
        let release = self.diag.releasing_exclusive();
        if self
            .state()
            .compare_exchange(LOCKED, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.unlock_slow(true);
        }
        self.diag.released_exclusive(release);
    }

    #[inline]
    #[track_caller]
    unsafe fn bump(&self, guard: &mut GuardMarker) {
        if self.state().load(Ordering::Relaxed) & PARKED != 0 {
            // SAFETY: the caller owns the mutex through `guard`, and takes it
            // back before returning.
            unsafe {
                lock_api::RawMutexFair::unlock_fair(self, GuardMarker::new());
                *guard = lock_api::RawMutex::lock(self);
            }
        }
    }
}

// SAFETY: timed acquisitions own the lock exactly when they return `Some`.
unsafe impl lock_api::RawMutexTimed for RawMutex {
    type Duration = Duration;
    type Instant = Instant;

    #[inline]
    #[track_caller]
    fn try_lock_for(&self, timeout: Duration) -> Option<GuardMarker> {
        if let Some(guard) = lock_api::RawMutex::try_lock(self) {
            return Some(guard);
        }
        self.lock_slow(time::deadline_after(timeout), Location::caller())
            .then(GuardMarker::new)
    }

    #[inline]
    #[track_caller]
    fn try_lock_until(&self, deadline: Instant) -> Option<GuardMarker> {
        if let Some(guard) = lock_api::RawMutex::try_lock(self) {
            return Some(guard);
        }
        self.lock_slow(Some(deadline), Location::caller())
            .then(GuardMarker::new)
    }
}

impl RawMutex {
    /// A mutex named `label` in diagnostics; `const`, so it works for
    /// statics through `Mutex::from_raw`.
    ///
    /// ```
    /// use lockscope::{Mutex, RawMutex};
    /// static SESSIONS: Mutex<Vec<u32>> = Mutex::from_raw(RawMutex::labelled("sessions"), Vec::new());
    /// SESSIONS.lock().push(1);
    /// ```
    pub const fn labelled(label: &'static str) -> Self {
        Self::labelled_opt(Some(label))
    }

    const fn labelled_opt(label: Option<&'static str>) -> Self {
        RawMutex {
            #[cfg(not(lockscope_diag))]
            state: AtomicU8::new(0),
            diag: LockDiag::new(label),
        }
    }

    /// The lock word.
    #[inline(always)]
    fn state(&self) -> &AtomicU8 {
        #[cfg(lockscope_diag)]
        {
            &self.diag.word
        }
        #[cfg(not(lockscope_diag))]
        {
            &self.state
        }
    }

    /// Locks, recording `site` as the caller.
    #[inline(always)]
    pub(crate) fn lock_at(&self, site: &'static Location<'static>) {
        let prepared = self.diag.preparing_exclusive(KIND, site);
        if self
            .state()
            .compare_exchange_weak(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.diag.acquired_prepared_exclusive(prepared, KIND, site);
        } else {
            core::hint::cold_path();
            // Without a deadline the slow path returns only once it owns the lock.
            let acquired = self.lock_slow(None, site);
            debug_assert!(acquired);
        }
    }

    /// Decodes a raw mutex word for a report.
    pub const fn decode(word: u8) -> MutexWord {
        MutexWord {
            raw: word,
            locked: word & LOCKED != 0,
            parked: word & PARKED != 0,
            unknown_bits: word & UNKNOWN,
        }
    }

    /// The current word, decoded (a snapshot: it may change at once).
    pub fn word(&self) -> MutexWord {
        Self::decode(self.state().load(Ordering::Relaxed))
    }

    /// Whether threads are parked waiting for this mutex.
    pub fn has_parked_threads(&self) -> bool {
        self.state().load(Ordering::Relaxed) & PARKED != 0
    }

    pub(crate) fn key(&self) -> usize {
        core::ptr::from_ref(self).addr()
    }

    #[cold]
    #[track_caller]
    fn violation(&self, operation: &'static str, problem: &'static str, word: u8) {
        if violation::counted_only() {
            return;
        }
        let sites = violation::caller_outside().into_iter().collect();
        let _ = violation::report(
            self.violation_report(operation, problem, word, None, sites),
            true,
        );
    }

    #[cold]
    fn violation_report(
        &self,
        operation: &'static str,
        problem: &'static str,
        word: u8,
        detail: Option<String>,
        sites: Vec<&'static Location<'static>>,
    ) -> Violation {
        Violation {
            name: self.diag.name(KIND),
            sites,
            lock: "RawMutex",
            address: self.key(),
            operation,
            problem,
            word: word as usize,
            decoded: violation::formatted(&Self::decode(word), 128),
            detail,
        }
    }

    /// A thread asks for a mutex it holds: report instead of hanging. Under
    /// `ViolationPolicy::Log` the thread goes on to wait (and hangs, logged).
    #[cold]
    fn self_deadlock(
        &self,
        hopeless: crate::record::Hopeless,
        word: u8,
        site: &'static Location<'static>,
    ) {
        if !violation::lets_through() {
            // The report unwinds or aborts: this thread will not wait.
            self.diag.cancel_wait();
        }
        let _ = violation::report(
            self.violation_report(
                "lock",
                "self-deadlock",
                word,
                Some(hopeless.why),
                hopeless.held_at.into_iter().chain([site]).collect(),
            ),
            true,
        );
    }

    /// Called by the condvar with its queue locked: if the mutex is held, mark
    /// it parked so that its release will wake the threads requeued onto it.
    pub(crate) fn mark_parked_if_locked(&self) -> bool {
        let mut state = self.state().load(Ordering::Relaxed);
        loop {
            if state & LOCKED == 0 {
                return false;
            }
            match self.state().compare_exchange_weak(
                state,
                state | PARKED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
    }

    /// Called by the condvar with its queue locked, after requeueing threads
    /// onto this mutex while it was unlocked.
    pub(crate) fn mark_parked(&self) {
        self.state().fetch_or(PARKED, Ordering::Relaxed);
    }

    /// Called with this mutex's queue locked by the last parked thread that
    /// leaves it without being woken (a timeout).
    pub(crate) fn clear_parked(&self) {
        // AND only clears; it cannot borrow into other bits.
        self.state().fetch_and(!PARKED, Ordering::Relaxed);
    }

    /// Waits for the mutex until `deadline`; true once it is owned.
    #[cold]
    pub(crate) fn lock_slow(
        &self,
        deadline: Option<Instant>,
        site: &'static Location<'static>,
    ) -> bool {
        let mut wait = Wait::new(deadline.is_some());
        let acquired = self.wait_for_lock(deadline, site, &mut wait);
        if acquired {
            self.diag.acquired_exclusive(KIND, site);
        }
        self.diag
            .after_wait(wait, acquired, KIND, Mode::Exclusive, site);
        acquired
    }

    fn wait_for_lock(
        &self,
        deadline: Option<Instant>,
        site: &'static Location<'static>,
        wait: &mut Wait,
    ) -> bool {
        let mut spin = SpinWait::new();
        let mut state = self.state().load(Ordering::Relaxed);
        loop {
            if state & LOCKED == 0 {
                match self.state().compare_exchange_weak(
                    state,
                    state | LOCKED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return true,
                    Err(now) => state = now,
                }
                continue;
            }
            if state & PARKED == 0 && spin.spin() {
                state = self.state().load(Ordering::Relaxed);
                continue;
            }
            if state & PARKED == 0
                && let Err(now) = self.state().compare_exchange_weak(
                    state,
                    state | PARKED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
            {
                state = now;
                continue;
            }
            if let Some(hopeless) = self.diag.before_park(
                wait,
                KIND,
                Mode::Exclusive,
                site,
                // The word as this thread parks: with PARKED, which it has
                // just set or found set.
                usize::from(state | PARKED),
                false,
                false,
                deadline.is_none(),
            ) {
                self.self_deadlock(hopeless, state, site);
            }
            let validate = || self.state().load(Ordering::Relaxed) == LOCKED | PARKED;
            let timed_out = |_key, was_last: bool| {
                if was_last {
                    self.clear_parked();
                }
            };
            // SAFETY: the key is this mutex's address; the closures only touch
            // the word and cannot panic.
            let parked = unsafe {
                park::park(
                    self.key(),
                    validate,
                    || {},
                    timed_out,
                    fair::token(Want::Exclusive),
                    deadline,
                )
            };
            self.diag.woke(wait);
            match parked {
                ParkResult::Unparked(TOKEN_HANDOFF) => return true,
                ParkResult::Unparked(_) | ParkResult::Invalid => {}
                ParkResult::TimedOut => return false,
            }
            spin.reset();
            state = self.state().load(Ordering::Relaxed);
        }
    }

    /// Releases with parked threads, or reports a release of a free mutex.
    #[cold]
    #[track_caller]
    fn unlock_slow(&self, force_fair: bool) {
        let state = self.state().load(Ordering::Relaxed);
        if state & LOCKED == 0 || state & UNKNOWN != 0 {
            let problem = if state & LOCKED == 0 {
                "the mutex is not locked"
            } else {
                "the word has bits no mutex state uses"
            };
            return self.violation("unlock", problem, state);
        }
        let now = time::micros_now();
        let handoff = core::cell::Cell::new(force_fair);
        let mut first = true;
        let filter = |token| {
            if !first {
                return FilterOp::Stop;
            }
            first = false;
            handoff.set(handoff.get() || fair::overdue(token, now));
            FilterOp::Unpark
        };
        let callback = |result: UnparkResult| {
            let parked = if result.have_more_threads { PARKED } else { 0 };
            if handoff.get() && result.unparked_threads != 0 {
                // Ownership passes to the woken thread: LOCKED stays set.
                self.state().store(LOCKED | parked, Ordering::Relaxed);
                TOKEN_HANDOFF
            } else {
                self.state().store(parked, Ordering::Release);
                TOKEN_NORMAL
            }
        };
        // SAFETY: the key is this mutex's address; filter and callback only
        // touch the word and locals, and cannot panic.
        unsafe {
            park::unpark_filter(self.key(), filter, callback);
        }
    }
}

/// The raw lock behind [`FairMutex`](crate::FairMutex): a [`RawMutex`] that
/// always hands the lock to the next waiter on release.
///
/// ```
/// let m = lockscope::FairMutex::new(1);
/// *m.lock() += 1;
/// assert_eq!(*m.lock(), 2);
/// ```
pub struct RawFairMutex(RawMutex);

// SAFETY: delegates to `RawMutex`, whose fair release keeps exclusivity.
unsafe impl lock_api::RawMutex for RawFairMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawFairMutex(<RawMutex as lock_api::RawMutex>::INIT);
    type Guard = GuardMarker;

    #[inline(always)]
    #[track_caller]
    fn lock(&self) -> GuardMarker {
        lock_api::RawMutex::lock(&self.0)
    }

    #[inline]
    #[track_caller]
    fn try_lock(&self) -> Option<GuardMarker> {
        lock_api::RawMutex::try_lock(&self.0)
    }

    #[inline]
    #[track_caller]
    unsafe fn unlock(&self, guard: GuardMarker) {
        // SAFETY: forwarded from the caller.
        unsafe { lock_api::RawMutexFair::unlock_fair(&self.0, guard) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        lock_api::RawMutex::is_locked(&self.0)
    }
}

// SAFETY: delegates to `RawMutex`.
unsafe impl lock_api::RawMutexFair for RawFairMutex {
    #[inline]
    #[track_caller]
    unsafe fn unlock_fair(&self, guard: GuardMarker) {
        // SAFETY: forwarded from the caller.
        unsafe { lock_api::RawMutexFair::unlock_fair(&self.0, guard) }
    }

    #[inline]
    #[track_caller]
    unsafe fn bump(&self, guard: &mut GuardMarker) {
        // SAFETY: forwarded from the caller.
        unsafe { lock_api::RawMutexFair::bump(&self.0, guard) }
    }
}

// SAFETY: delegates to `RawMutex`.
unsafe impl lock_api::RawMutexTimed for RawFairMutex {
    type Duration = Duration;
    type Instant = Instant;

    #[inline]
    #[track_caller]
    fn try_lock_for(&self, timeout: Duration) -> Option<GuardMarker> {
        lock_api::RawMutexTimed::try_lock_for(&self.0, timeout)
    }

    #[inline]
    #[track_caller]
    fn try_lock_until(&self, deadline: Instant) -> Option<GuardMarker> {
        lock_api::RawMutexTimed::try_lock_until(&self.0, deadline)
    }
}

impl RawFairMutex {
    /// The underlying raw mutex (for its word and decoder).
    pub fn inner(&self) -> &RawMutex {
        &self.0
    }
}
