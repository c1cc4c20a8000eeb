//! The raw reader-writer lock: one word, two parking queues.
//!
//! Threads that cannot get the lock park on the word's address (the main
//! queue). A writer that has claimed the lock but still waits for readers to
//! leave parks alone on the address plus one (the drain queue).
//!
//! Every transition checks the state it starts from, and flag bits are only
//! ever cleared with AND-NOT of bits seen set in the very word a
//! compare-exchange replaces. A precomputed subtraction of "the bits I set
//! earlier" is what let a timed-out writer wrap parking_lot's word to all ones
//! when the last reader had already cleared one of those bits; no transition
//! here can do that. The one subtraction is a read release's `ONE_READER`
//! (one atomic subtraction, as in parking_lot: a compare-exchange fails and
//! retries whenever two readers leave at once). It touches only the reader
//! count, whose state it checks in the word it replaced: a release of a
//! read lock that was not held is undone at once and reported.

use core::cell::Cell;
use core::fmt;
use core::panic::Location;

use crate::GuardMarker;
use crate::diag::Mode;
use crate::raw::fair::{self, TOKEN_HANDOFF, TOKEN_NORMAL, Want};
use crate::raw::violation::{self, Violation};
use crate::record::{Kind, LockDiag, Wait};
use crate::sync::SpinWait;
use crate::sync::atomic::{AtomicUsize, Ordering, fence};
use crate::sync::park::{self, FilterOp, ParkResult, ParkToken, UnparkResult};
use crate::sync::time::{self, Duration, Instant};

// The lock word, bit by bit.
//
// Threads are parked (or about to park) in the main queue. Set by a waiter
// before it parks, while the state still blocks it; cleared under the queue
// lock when the queue empties.
/// How long a release waits for a word broken by another thread's faulty
/// read release to be restored before it reports the word as corrupt.
#[cfg(not(any(loom, feature = "shuttle")))]
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

const PARKED: usize = 0b0001;
// The writer holding WRITER is parked in the drain queue, waiting for the
// readers still counted to leave. Requires WRITER. Set only while readers are
// counted; with none counted it means the last reader has just left and is
// about to clear it and wake the writer (or the writer, awake by then, clears
// it itself as it takes the lock).
const WRITER_PARKED: usize = 0b0010;
// An upgradable reader holds the lock; it is one of the counted readers.
// Requires a non-zero reader count and excludes WRITER.
const UPGRADABLE: usize = 0b0100;
// With no readers counted: a writer owns the lock exclusively. With readers
// counted: a writer has claimed the lock and waits for them to leave, and new
// readers queue behind it (unless the lock is recursive).
const WRITER: usize = 0b1000;
// The number of readers holding the lock, upgradable one included, counted in
// the remaining high bits in units of ONE_READER, at most MAX_READERS. A
// count above that is never real: it is what a release of a read lock that
// was not held leaves for an instant (the count wraps) before it is undone.
const ONE_READER: usize = 0b1_0000;
const READERS: usize = !(ONE_READER - 1);
const MAX_READERS: usize = READERS >> (ONE_READER.trailing_zeros() + 1);
// The read release's one comparison relies on this: the largest real count
// fills every reader bit but the top one.
const _: () =
    assert!(MAX_READERS << ONE_READER.trailing_zeros() == READERS & (isize::MAX as usize));

#[inline]
const fn readers(state: usize) -> usize {
    state >> ONE_READER.trailing_zeros()
}

/// The first invariant that `state` breaks, if any.
const fn broken_invariant(state: usize) -> Option<&'static str> {
    if state & WRITER_PARKED != 0 && state & WRITER == 0 {
        Some("a writer is parked but no writer is recorded")
    } else if readers(state) > MAX_READERS {
        Some(
            "the reader count is beyond any real count (a release of a read lock that was not held)",
        )
    } else if state & UPGRADABLE != 0 && state & WRITER != 0 {
        Some("an upgradable reader and a writer at once")
    } else if state & UPGRADABLE != 0 && state & READERS == 0 {
        Some("an upgradable reader that is not counted as a reader")
    } else {
        None
    }
}

/// The raw lock behind [`RwLock`](crate::RwLock) (`RECURSIVE = false`) and
/// [`RecursiveRwLock`](crate::RecursiveRwLock) (`RECURSIVE = true`).
///
/// Writers are preferred: once a writer has claimed the lock, new readers
/// wait behind it, so a steady stream of readers cannot starve writers. The
/// recursive variant lets a new reader in while other readers still hold the
/// lock, so a thread may re-acquire a read lock it holds; writers may starve.
///
/// Misuse (releasing a mode that is not held, a reader count that would
/// overflow) leaves the word unchanged and is reported through the
/// [`ViolationPolicy`](crate::ViolationPolicy).
///
/// ```
/// use lockscope::lock_api::RawRwLock as _;
/// let raw = <lockscope::RawRwLock as lockscope::lock_api::RawRwLock>::INIT;
/// let a = raw.lock_shared();
/// let b = raw.lock_shared();
/// assert_eq!(raw.word().readers, 2);
/// unsafe { raw.unlock_shared(a); raw.unlock_shared(b) };
/// assert!(!raw.is_locked());
/// ```
pub struct RawRwLock<const RECURSIVE: bool = false> {
    state: AtomicUsize,
    pub(crate) diag: LockDiag,
}

#[cfg(lockscope_diag)]
impl<const RECURSIVE: bool> Drop for RawRwLock<RECURSIVE> {
    fn drop(&mut self) {
        if *self.state.get_mut() != 0 {
            // A leaked guard: its holds leave their holders' records.
            self.diag.forget_holds();
        } else {
            self.diag.dropped();
        }
    }
}

/// A raw reader-writer lock that allows recursive read locking.
pub type RawRwLockRecursive = RawRwLock<true>;

/// An RwLock word decoded field by field, for reports.
///
/// ```
/// let word = lockscope::RawRwLock::decode(0b1000);
/// assert!(word.writer && word.readers == 0 && word.is_valid());
/// // A writer parked while no writer holds: the state of a corrupted word.
/// assert!(!lockscope::RawRwLock::decode(0b0010).is_valid());
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RwLockWord {
    /// The raw word.
    pub raw: usize,
    /// Threads are parked waiting for the lock.
    pub parked: bool,
    /// The claiming writer is parked, waiting for readers to leave.
    pub writer_parked: bool,
    /// An upgradable reader holds the lock.
    pub upgradable: bool,
    /// A writer holds the lock (no readers) or has claimed it (readers left).
    pub writer: bool,
    /// The number of readers holding the lock, upgradable one included.
    pub readers: usize,
    /// The first invariant the word breaks, if any.
    pub problem: Option<&'static str>,
}

impl RwLockWord {
    /// Whether the word satisfies every invariant of the layout.
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }

    /// Whether a writer owns the lock exclusively.
    pub fn write_locked(&self) -> bool {
        self.writer && self.readers == 0
    }
}

impl fmt::Display for RwLockWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{ readers: {}, writer: {}, upgradable: {}, writer_parked: {}, parked: {}",
            self.readers, self.writer, self.upgradable, self.writer_parked, self.parked
        )?;
        if let Some(problem) = self.problem {
            write!(f, ", INVALID: {problem}")?;
        }
        f.write_str(" }")
    }
}

impl RawRwLock {
    /// Decodes a raw RwLock word for a report.
    pub const fn decode(word: usize) -> RwLockWord {
        RwLockWord {
            raw: word,
            parked: word & PARKED != 0,
            writer_parked: word & WRITER_PARKED != 0,
            upgradable: word & UPGRADABLE != 0,
            writer: word & WRITER != 0,
            readers: readers(word),
            // Test-only (fuzz/README.md, "Planted bugs"): an upgradable
            // reader, a writer and a parked writer at once pass as valid.
            #[cfg(lockscope_planted_bug = "decode_word")]
            problem: if word & 0b1110 == 0b1110 {
                None
            } else {
                broken_invariant(word)
            },
            #[cfg(not(lockscope_planted_bug = "decode_word"))]
            problem: broken_invariant(word),
        }
    }
}

/// Which parked threads a change of state lets through.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Wake {
    /// WRITER and UPGRADABLE are both clear now: every reader, plus the first
    /// writer or upgradable reader in queue order. A writer woken behind
    /// readers claims WRITER and waits for them; leaving it parked instead
    /// would strand it, since a reader's release only wakes the drain queue.
    All,
    /// UPGRADABLE is held: only plain readers can get in.
    PlainReaders,
}

/// What a writer that gave up waiting returns to.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Abandon {
    /// It was a plain writer: back to nothing.
    ToNothing,
    /// It was upgrading: back to an upgradable read lock.
    ToUpgradable,
}

// SAFETY: shared acquisitions add ONE_READER only while WRITER is clear (or,
// for the recursive lock, while other readers hold it) and exclusive ones
// return only with WRITER set and no readers counted; all with Acquire
// ordering, all releases with Release ordering.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLock for RawRwLock<RECURSIVE> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self::labelled_opt(None);

    type SharedGuard = GuardMarker;
    type ExclusiveGuard = GuardMarker;

    #[inline(always)]
    #[track_caller]
    fn lock_shared(&self) -> GuardMarker {
        // The hold is written down before the compare-exchange, so that the
        // read lock is held only while it is published and counted.
        let prepared = self.diag.preparing_shared(Self::KIND, Location::caller());
        let state = self.state.load(Ordering::Relaxed);
        if !(Self::admits_reader(state)
            && state < MAX_READERS << ONE_READER.trailing_zeros()
            && self
                .state
                .compare_exchange_weak(
                    state,
                    state + ONE_READER,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok())
        {
            core::hint::cold_path();
            let acquired = self.lock_read_slow(Mode::Shared, None, Location::caller());
            debug_assert!(acquired);
        } else {
            self.diag
                .acquired_prepared(prepared, Self::KIND, Mode::Shared, Location::caller());
        }
        GuardMarker::new()
    }

    #[inline]
    #[track_caller]
    fn try_lock_shared(&self) -> Option<GuardMarker> {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if !Self::admits_reader(state) {
                return None;
            }
            let Some(next) = self.add_reader(&mut state, "try_lock_shared") else {
                continue;
            };
            match self.state.compare_exchange_weak(
                state,
                next,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.diag
                        .acquired_shared(Self::KIND, Mode::Shared, Location::caller());
                    return Some(GuardMarker::new());
                }
                Err(now) => state = now,
            }
        }
    }

    #[inline(always)]
    #[track_caller]
    unsafe fn unlock_shared(&self, _guard: GuardMarker) {
        let prev = self.state.fetch_sub(ONE_READER, Ordering::Release);
        // The common case: readers were counted, no writer waits for them and
        // no upgradable reader is among them, so one reader fewer breaks no
        // invariant. (A count above MAX_READERS is not a real one: read as
        // signed, the word is then negative, so one comparison checks both
        // ends of the count.)
        let common =
            prev & (WRITER_PARKED | UPGRADABLE) == 0 && prev as isize >= ONE_READER as isize;
        if !common {
            core::hint::cold_path();
            if !self.unlock_shared_slow(prev) {
                return;
            }
        }
        self.diag.released_shared(Mode::Shared);
    }

    #[inline(always)]
    #[track_caller]
    fn lock_exclusive(&self) -> GuardMarker {
        let prepared = self
            .diag
            .preparing_exclusive(Self::KIND, Location::caller());
        if self
            .state
            .compare_exchange_weak(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::cold_path();
            let acquired = self.lock_exclusive_slow(None, Location::caller());
            debug_assert!(acquired);
        } else {
            self.diag
                .acquired_prepared_exclusive(prepared, Self::KIND, Location::caller());
        }
        GuardMarker::new()
    }

    #[inline]
    #[track_caller]
    fn try_lock_exclusive(&self) -> Option<GuardMarker> {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & (WRITER | UPGRADABLE | READERS) != 0 {
                return None;
            }
            match self.state.compare_exchange_weak(
                state,
                state | WRITER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.diag.acquired_exclusive(Self::KIND, Location::caller());
                    return Some(GuardMarker::new());
                }
                Err(now) => state = now,
            }
        }
    }

    #[inline(always)]
    #[track_caller]
    unsafe fn unlock_exclusive(&self, _guard: GuardMarker) {
        let release = self.diag.releasing_exclusive();
        if self
            .state
            .compare_exchange(WRITER, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            core::hint::cold_path();
            self.unlock_exclusive_slow(false);
        }
        self.diag.released_exclusive(release);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & (WRITER | READERS) != 0
    }

    #[inline]
    fn is_locked_exclusive(&self) -> bool {
        let state = self.state.load(Ordering::Relaxed);
        state & WRITER != 0 && state & READERS == 0
    }
}

// SAFETY: a fair exclusive release hands ownership to the woken threads under
// the queue lock instead of clearing WRITER; shared releases are unchanged.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockFair for RawRwLock<RECURSIVE> {
    #[inline]
    #[track_caller]
    unsafe fn unlock_shared_fair(&self, guard: GuardMarker) {
        // Readers never hand off: the last one out wakes the waiting writer.
        // SAFETY: forwarded from the caller.
        unsafe { lock_api::RawRwLock::unlock_shared(self, guard) }
    }

    #[inline]
    #[track_caller]
    unsafe fn unlock_exclusive_fair(&self, _guard: GuardMarker) {
        let release = self.diag.releasing_exclusive();
        if self
            .state
            .compare_exchange(WRITER, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.unlock_exclusive_slow(true);
        }
        self.diag.released_exclusive(release);
    }

    #[inline]
    #[track_caller]
    unsafe fn bump_exclusive(&self, guard: &mut GuardMarker) {
        if self.state.load(Ordering::Relaxed) & PARKED != 0 {
            // SAFETY: the caller holds the lock exclusively through `guard`
            // and gets it back before this returns.
            unsafe {
                lock_api::RawRwLockFair::unlock_exclusive_fair(self, GuardMarker::new());
                *guard = lock_api::RawRwLock::lock_exclusive(self);
            }
        }
    }
}

// SAFETY: downgrading swaps WRITER for one reader in a single exchange, so no
// writer can get in between.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockDowngrade for RawRwLock<RECURSIVE> {
    #[track_caller]
    unsafe fn downgrade(&self, _guard: GuardMarker) -> GuardMarker {
        let release = self.diag.releasing_exclusive();
        let state = self.transition("downgrade", |state| {
            Self::holds_exclusive(state).then(|| (state & !WRITER) + ONE_READER)
        });
        self.diag.released_exclusive(release);
        self.diag
            .acquired_shared(Self::KIND, Mode::Shared, Location::caller());
        if state & PARKED != 0 {
            self.wake_main(Wake::All);
        }
        GuardMarker::new()
    }
}

// SAFETY: timed acquisitions own the lock exactly when they return `Some`.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockTimed for RawRwLock<RECURSIVE> {
    type Duration = Duration;
    type Instant = Instant;

    #[track_caller]
    fn try_lock_shared_for(&self, timeout: Duration) -> Option<GuardMarker> {
        // Read here: the closure below is not `#[track_caller]`.
        let site = Location::caller();
        lock_api::RawRwLock::try_lock_shared(self).or_else(|| {
            self.lock_read_slow(Mode::Shared, time::deadline_after(timeout), site)
                .then(GuardMarker::new)
        })
    }

    #[track_caller]
    fn try_lock_shared_until(&self, deadline: Instant) -> Option<GuardMarker> {
        // Read here: the closure below is not `#[track_caller]`.
        let site = Location::caller();
        lock_api::RawRwLock::try_lock_shared(self).or_else(|| {
            self.lock_read_slow(Mode::Shared, Some(deadline), site)
                .then(GuardMarker::new)
        })
    }

    #[track_caller]
    fn try_lock_exclusive_for(&self, timeout: Duration) -> Option<GuardMarker> {
        // Read here: the closure below is not `#[track_caller]`.
        let site = Location::caller();
        lock_api::RawRwLock::try_lock_exclusive(self).or_else(|| {
            self.lock_exclusive_slow(time::deadline_after(timeout), site)
                .then(GuardMarker::new)
        })
    }

    #[track_caller]
    fn try_lock_exclusive_until(&self, deadline: Instant) -> Option<GuardMarker> {
        // Read here: the closure below is not `#[track_caller]`.
        let site = Location::caller();
        lock_api::RawRwLock::try_lock_exclusive(self).or_else(|| {
            self.lock_exclusive_slow(Some(deadline), site)
                .then(GuardMarker::new)
        })
    }
}

// SAFETY: the upgradable reader is counted as a reader and marked by
// UPGRADABLE, which only one thread can set at a time and which excludes
// WRITER; upgrading claims WRITER and then waits for the other readers.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockUpgrade for RawRwLock<RECURSIVE> {
    type UpgradableGuard = GuardMarker;

    #[inline]
    #[track_caller]
    fn lock_upgradable(&self) -> GuardMarker {
        if lock_api::RawRwLockUpgrade::try_lock_upgradable(self).is_none() {
            let acquired = self.lock_read_slow(Mode::Upgradable, None, Location::caller());
            debug_assert!(acquired);
        }
        GuardMarker::new()
    }

    #[inline]
    #[track_caller]
    fn try_lock_upgradable(&self) -> Option<GuardMarker> {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & (WRITER | UPGRADABLE) != 0 {
                return None;
            }
            let Some(next) = self.add_reader(&mut state, "try_lock_upgradable") else {
                continue;
            };
            let next = next | UPGRADABLE;
            match self.state.compare_exchange_weak(
                state,
                next,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.diag
                        .acquired_shared(Self::KIND, Mode::Upgradable, Location::caller());
                    return Some(GuardMarker::new());
                }
                Err(now) => state = now,
            }
        }
    }

    #[inline]
    #[track_caller]
    unsafe fn unlock_upgradable(&self, _guard: GuardMarker) {
        let Some(state) = self.try_transition("unlock_upgradable", |state| {
            Self::holds_upgradable(state).then(|| (state & !UPGRADABLE) - ONE_READER)
        }) else {
            return;
        };
        self.diag.released_shared(Mode::Upgradable);
        if state & PARKED != 0 {
            self.wake_main(Wake::All);
        }
    }

    #[track_caller]
    unsafe fn upgrade(&self, _guard: GuardMarker) -> GuardMarker {
        let site = Location::caller();
        let state = self.transition("upgrade", |state| {
            Self::holds_upgradable(state).then(|| ((state & !UPGRADABLE) - ONE_READER) | WRITER)
        });
        if state & READERS != 0 {
            let mut ask = Ask::new(Mode::Exclusive, site, None, Some(Abandon::ToUpgradable));
            let drained = self.wait_for_readers(&mut ask);
            debug_assert!(drained);
            self.upgraded(site);
            self.diag
                .after_wait(ask.wait, drained, Self::KIND, Mode::Exclusive, site);
        } else {
            self.upgraded(site);
        }
        GuardMarker::new()
    }

    #[track_caller]
    unsafe fn try_upgrade(&self, guard: GuardMarker) -> Result<GuardMarker, GuardMarker> {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if !Self::holds_upgradable(state) {
                self.refuse("try_upgrade", "no upgradable read lock is held", state);
                return Err(guard);
            }
            if readers(state) != 1 {
                return Err(guard);
            }
            let next = ((state & !UPGRADABLE) - ONE_READER) | WRITER;
            match self.state.compare_exchange_weak(
                state,
                next,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.upgraded(Location::caller());
                    return Ok(GuardMarker::new());
                }
                Err(now) => state = now,
            }
        }
    }
}

// SAFETY: as `RawRwLockUpgrade`; releases of an upgradable lock never hand off.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockUpgradeFair for RawRwLock<RECURSIVE> {
    #[inline]
    #[track_caller]
    unsafe fn unlock_upgradable_fair(&self, guard: GuardMarker) {
        // SAFETY: forwarded from the caller.
        unsafe { lock_api::RawRwLockUpgrade::unlock_upgradable(self, guard) }
    }
}

// SAFETY: each downgrade is one exchange that keeps this thread counted as a
// reader throughout.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockUpgradeDowngrade for RawRwLock<RECURSIVE> {
    #[track_caller]
    unsafe fn downgrade_upgradable(&self, _guard: GuardMarker) -> GuardMarker {
        let state = self.transition("downgrade_upgradable", |state| {
            Self::holds_upgradable(state).then_some(state & !UPGRADABLE)
        });
        self.diag.released_shared(Mode::Upgradable);
        self.diag
            .acquired_shared(Self::KIND, Mode::Shared, Location::caller());
        if state & PARKED != 0 {
            self.wake_main(Wake::All);
        }
        GuardMarker::new()
    }

    #[track_caller]
    unsafe fn downgrade_to_upgradable(&self, _guard: GuardMarker) -> GuardMarker {
        let release = self.diag.releasing_exclusive();
        let state = self.transition("downgrade_to_upgradable", |state| {
            Self::holds_exclusive(state).then(|| ((state & !WRITER) + ONE_READER) | UPGRADABLE)
        });
        self.diag.released_exclusive(release);
        self.diag
            .acquired_shared(Self::KIND, Mode::Upgradable, Location::caller());
        if state & PARKED != 0 {
            self.wake_main(Wake::PlainReaders);
        }
        GuardMarker::new()
    }
}

// SAFETY: as `RawRwLockUpgrade` and `RawRwLockTimed`; a timed-out upgrade
// returns to exactly the upgradable state it started from.
unsafe impl<const RECURSIVE: bool> lock_api::RawRwLockUpgradeTimed for RawRwLock<RECURSIVE> {
    #[track_caller]
    fn try_lock_upgradable_for(&self, timeout: Duration) -> Option<GuardMarker> {
        // Read here: the closure below is not `#[track_caller]`.
        let site = Location::caller();
        lock_api::RawRwLockUpgrade::try_lock_upgradable(self).or_else(|| {
            self.lock_read_slow(Mode::Upgradable, time::deadline_after(timeout), site)
                .then(GuardMarker::new)
        })
    }

    #[track_caller]
    fn try_lock_upgradable_until(&self, deadline: Instant) -> Option<GuardMarker> {
        // Read here: the closure below is not `#[track_caller]`.
        let site = Location::caller();
        lock_api::RawRwLockUpgrade::try_lock_upgradable(self).or_else(|| {
            self.lock_read_slow(Mode::Upgradable, Some(deadline), site)
                .then(GuardMarker::new)
        })
    }

    #[track_caller]
    unsafe fn try_upgrade_for(
        &self,
        guard: GuardMarker,
        timeout: Duration,
    ) -> Result<GuardMarker, GuardMarker> {
        // SAFETY: forwarded from the caller.
        unsafe { self.upgrade_until(guard, time::deadline_after(timeout), Location::caller()) }
    }

    #[track_caller]
    unsafe fn try_upgrade_until(
        &self,
        guard: GuardMarker,
        deadline: Instant,
    ) -> Result<GuardMarker, GuardMarker> {
        // SAFETY: forwarded from the caller.
        unsafe { self.upgrade_until(guard, Some(deadline), Location::caller()) }
    }
}

impl<const RECURSIVE: bool> RawRwLock<RECURSIVE> {
    /// What diagnostics call this kind of lock.
    pub(crate) const KIND: Kind = if RECURSIVE {
        Kind::RecursiveRwLock
    } else {
        Kind::RwLock
    };

    /// A lock named `label` in diagnostics; `const`, so it works for
    /// statics through `RwLock::from_raw`.
    ///
    /// ```
    /// use lockscope::{RawRwLock, RwLock};
    /// static ROUTES: RwLock<Vec<u32>> = RwLock::from_raw(RawRwLock::labelled("routes"), Vec::new());
    /// ROUTES.write().push(1);
    /// assert_eq!(ROUTES.read().len(), 1);
    /// ```
    pub const fn labelled(label: &'static str) -> Self {
        Self::labelled_opt(Some(label))
    }

    const fn labelled_opt(label: Option<&'static str>) -> Self {
        RawRwLock {
            state: AtomicUsize::new(0),
            diag: LockDiag::new(label),
        }
    }

    /// The upgradable hold became an exclusive one.
    #[inline]
    fn upgraded(&self, site: &'static Location<'static>) {
        self.diag.released_shared(Mode::Upgradable);
        self.diag.acquired_exclusive(Self::KIND, site);
    }

    /// Before parking: records the wait, and reports a wait that cannot end
    /// because this thread holds what it waits for. A claim of WRITER that
    /// the report would leave stranded is abandoned first.
    #[cold]
    fn check_park(&self, ask: &mut Ask, state: usize) {
        let Some(hopeless) = self.diag.before_park(
            &mut ask.wait,
            Self::KIND,
            ask.mode,
            ask.site,
            state,
            ask.upgrading.is_some(),
            state & WRITER != 0,
            ask.deadline.is_none(),
        ) else {
            return;
        };
        if ask.reported {
            return;
        }
        ask.reported = true;
        let mut violation = self.violation("lock", "self-deadlock", state);
        violation.detail = Some(hopeless.why);
        violation.sites = hopeless.held_at.into_iter().chain([ask.site]).collect();
        if !violation::lets_through() {
            // The report unwinds or aborts: this thread will not wait.
            self.diag.cancel_wait();
            if let Some(claimed) = ask.claimed {
                // Give the claim back, so that unwinding (which releases
                // this thread's read guards) leaves a working lock.
                let kept = self.abandon_claim(claimed);
                debug_assert!(!kept, "readers are still counted: this thread is one");
                if claimed == Abandon::ToUpgradable {
                    // `upgrade` consumed the upgradable guard: release the
                    // upgradable read it stood for as well.
                    self.release_upgradable_after_failed_upgrade();
                }
            }
        }
        let _ = violation::report(violation, true);
    }

    /// After a self-deadlocked `upgrade` gave its claim back: the upgradable
    /// guard is gone (consumed by `upgrade`), so release its read lock.
    #[cold]
    fn release_upgradable_after_failed_upgrade(&self) {
        if let Some(state) = self.try_transition("upgrade", |state| {
            Self::holds_upgradable(state).then(|| (state & !UPGRADABLE) - ONE_READER)
        }) {
            self.diag.released_shared(Mode::Upgradable);
            if state & PARKED != 0 {
                self.wake_main(Wake::All);
            }
        }
    }

    /// The current word, decoded (a snapshot: it may change at once).
    pub fn word(&self) -> RwLockWord {
        RawRwLock::decode(self.state.load(Ordering::Relaxed))
    }

    /// Whether threads are parked waiting for this lock.
    pub fn has_parked_threads(&self) -> bool {
        self.state.load(Ordering::Relaxed) & (PARKED | WRITER_PARKED) != 0
    }

    fn key(&self) -> usize {
        core::ptr::from_ref(self).addr()
    }

    /// The drain queue, where a claiming writer waits for readers to leave.
    fn drain_key(&self) -> usize {
        self.key() + 1
    }

    /// Whether a new reader may join the readers in `state`.
    #[inline]
    fn admits_reader(state: usize) -> bool {
        state & WRITER == 0 || (RECURSIVE && state & READERS != 0)
    }

    #[inline]
    fn holds_exclusive(state: usize) -> bool {
        state & WRITER != 0 && state & READERS == 0 && broken_invariant(state).is_none()
    }

    #[inline]
    fn holds_upgradable(state: usize) -> bool {
        state & UPGRADABLE != 0 && broken_invariant(state).is_none()
    }

    /// `state` with one more reader; an overflow is reported, never wrapped.
    /// `None`: the word is being restored after a release of a read lock that
    /// was not held; `state` is then the word once restored, to try again.
    #[inline]
    fn add_reader(&self, state: &mut usize, operation: &'static str) -> Option<usize> {
        if readers(*state) < MAX_READERS {
            Some(*state + ONE_READER)
        } else {
            self.add_reader_slow(state, operation)
        }
    }

    #[cold]
    fn add_reader_slow(&self, state: &mut usize, operation: &'static str) -> Option<usize> {
        if readers(*state) == MAX_READERS {
            self.overflow(operation, *state)
        }
        *state = self.settled(*state);
        None
    }

    /// Waits for a word that breaks an invariant to be restored (a release
    /// of a read lock that was not held is undone by the next instruction of
    /// its thread, but that thread may be preempted in between for as long
    /// as the scheduler likes) and returns the word then. A word still
    /// broken after [`SETTLE_WAIT`] is corrupt, for the caller to report:
    /// refusing a legitimate release because a misbehaving thread was
    /// descheduled would leave the lock held forever.
    #[cold]
    fn settled(&self, mut state: usize) -> usize {
        #[cfg(not(any(loom, feature = "shuttle")))]
        let start = std::time::Instant::now();
        let mut tries = 0u32;
        while broken_invariant(state).is_some() {
            tries += 1;
            #[cfg(not(any(loom, feature = "shuttle")))]
            if tries > 64 && start.elapsed() >= SETTLE_WAIT {
                break;
            }
            // A model checker explores the other thread's undo within a few
            // of its own steps.
            #[cfg(any(loom, feature = "shuttle"))]
            if tries > 64 {
                break;
            }
            crate::sync::yield_now();
            state = self.state.load(Ordering::Relaxed);
        }
        state
    }

    #[cold]
    fn overflow(&self, operation: &'static str, state: usize) -> ! {
        let _ = violation::report(
            self.violation(operation, "the reader count would overflow", state),
            false,
        );
        unreachable!("a reader-count overflow cannot be refused")
    }

    #[cold]
    #[track_caller]
    fn violation(&self, operation: &'static str, problem: &'static str, word: usize) -> Violation {
        Violation {
            name: self.diag.name(Self::KIND),
            sites: violation::caller_outside().into_iter().collect(),
            lock: if RECURSIVE {
                "RawRwLockRecursive"
            } else {
                "RawRwLock"
            },
            address: self.key(),
            operation,
            problem,
            word,
            decoded: violation::formatted(&RawRwLock::decode(word), 128),
            detail: None,
        }
    }

    /// Reports a refused release; returns if the policy lets the caller go on.
    #[cold]
    #[track_caller]
    fn refuse(&self, operation: &'static str, problem: &'static str, word: usize) {
        if violation::counted_only() {
            return;
        }
        let problem = broken_invariant(word).unwrap_or(problem);
        let _ = violation::report(self.violation(operation, problem, word), true);
    }

    /// Applies `step` to the word in one exchange; `None` from `step` means
    /// the current state does not allow the operation, which is reported.
    /// Returns the new word, or `None` when the report was refused.
    #[inline]
    #[track_caller]
    fn try_transition(
        &self,
        operation: &'static str,
        step: impl Fn(usize) -> Option<usize>,
    ) -> Option<usize> {
        self.transition_or_report(operation, step, true)
    }

    /// The exchange behind both transitions; a refused step is reported once,
    /// as refusable or not.
    #[inline]
    #[track_caller]
    fn transition_or_report(
        &self,
        operation: &'static str,
        step: impl Fn(usize) -> Option<usize>,
        refusable: bool,
    ) -> Option<usize> {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let Some(next) = step(state) else {
                if broken_invariant(state).is_some() {
                    let now = self.settled(state);
                    if broken_invariant(now).is_none() {
                        state = now;
                        continue;
                    }
                }
                let problem = "the lock is not held in the mode this operation needs";
                if refusable {
                    self.refuse(operation, problem, state);
                } else {
                    let problem = broken_invariant(state).unwrap_or(problem);
                    let _ = violation::report(self.violation(operation, problem, state), false);
                }
                return None;
            };
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(next),
                Err(now) => state = now,
            }
        }
    }

    /// As [`Self::try_transition`] for operations that must hand back a
    /// guard and so cannot be refused.
    #[inline]
    fn transition(&self, operation: &'static str, step: impl Fn(usize) -> Option<usize>) -> usize {
        match self.transition_or_report(operation, step, false) {
            Some(next) => next,
            None => unreachable!("an unrefusable violation returned"),
        }
    }

    /// The slow path of a shared or upgradable acquisition (`mode`).
    #[cold]
    fn lock_read_slow(
        &self,
        mode: Mode,
        deadline: Option<Instant>,
        site: &'static Location<'static>,
    ) -> bool {
        let mut ask = Ask::new(mode, site, deadline, None);
        let acquired = if mode == Mode::Upgradable {
            self.wait_upgradable(&mut ask)
        } else {
            self.wait_shared(&mut ask)
        };
        self.diag
            .after_wait(ask.wait, acquired, Self::KIND, mode, site);
        if acquired {
            self.diag.acquired_shared(Self::KIND, mode, site);
        }
        acquired
    }

    fn wait_shared(&self, ask: &mut Ask) -> bool {
        let mut spin = SpinWait::new();
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if Self::admits_reader(state) {
                let Some(next) = self.add_reader(&mut state, "lock_shared") else {
                    continue;
                };
                match self.state.compare_exchange_weak(
                    state,
                    next,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return true,
                    Err(now) => {
                        // Readers racing each other: back off without yielding.
                        spin.spin_no_yield();
                        state = now;
                        continue;
                    }
                }
            }
            match self.park_main(&mut spin, &mut state, Want::Shared, ask, |state| {
                !Self::admits_reader(state)
            }) {
                Parked::Retry => {}
                Parked::HandedOff => return true,
                Parked::TimedOut => return false,
            }
        }
    }

    fn wait_upgradable(&self, ask: &mut Ask) -> bool {
        let mut spin = SpinWait::new();
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & (WRITER | UPGRADABLE) == 0 {
                let Some(next) = self.add_reader(&mut state, "lock_upgradable") else {
                    continue;
                };
                let next = next | UPGRADABLE;
                match self.state.compare_exchange_weak(
                    state,
                    next,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return true,
                    Err(now) => {
                        state = now;
                        continue;
                    }
                }
            }
            match self.park_main(&mut spin, &mut state, Want::Upgradable, ask, |state| {
                state & (WRITER | UPGRADABLE) != 0
            }) {
                Parked::Retry => {}
                Parked::HandedOff => return true,
                Parked::TimedOut => return false,
            }
        }
    }

    #[cold]
    fn lock_exclusive_slow(
        &self,
        deadline: Option<Instant>,
        site: &'static Location<'static>,
    ) -> bool {
        let mut ask = Ask::new(Mode::Exclusive, site, deadline, None);
        let acquired = self.wait_exclusive(&mut ask);
        if acquired {
            self.diag.acquired_exclusive(Self::KIND, site);
        }
        self.diag
            .after_wait(ask.wait, acquired, Self::KIND, Mode::Exclusive, site);
        acquired
    }

    fn wait_exclusive(&self, ask: &mut Ask) -> bool {
        // Step 1: claim WRITER. Readers may still be counted; they leave in step 2.
        let mut spin = SpinWait::new();
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & (WRITER | UPGRADABLE) == 0 {
                match self.state.compare_exchange_weak(
                    state,
                    state | WRITER,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => {
                        state = now;
                        continue;
                    }
                }
            }
            match self.park_main(&mut spin, &mut state, Want::Exclusive, ask, |state| {
                state & (WRITER | UPGRADABLE) != 0
            }) {
                Parked::Retry => {}
                // An exclusive release handed WRITER over, possibly together
                // with read locks for readers queued ahead: wait for them too.
                Parked::HandedOff => break,
                Parked::TimedOut => return false,
            }
        }
        // Step 2: wait for the readers counted when WRITER was claimed.
        ask.claimed = Some(Abandon::ToNothing);
        self.wait_for_readers(ask) || self.abandon_claim(Abandon::ToNothing)
    }

    /// One round of waiting in the main queue: spin while nobody is parked,
    /// then mark the word parked and sleep while `blocked` holds.
    #[inline]
    fn park_main(
        &self,
        spin: &mut SpinWait,
        state: &mut usize,
        want: Want,
        ask: &mut Ask,
        blocked: impl Fn(usize) -> bool,
    ) -> Parked {
        let deadline = ask.deadline;
        if *state & PARKED == 0 && spin.spin() {
            *state = self.state.load(Ordering::Relaxed);
            return Parked::Retry;
        }
        if *state & PARKED == 0
            && let Err(now) = self.state.compare_exchange_weak(
                *state,
                *state | PARKED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
        {
            *state = now;
            return Parked::Retry;
        }
        // The word as this thread parks: with the bit it has just set (or
        // found set), so a report cannot show "not parked" for a parked wait.
        self.check_park(ask, *state | PARKED);
        let validate = || {
            let state = self.state.load(Ordering::Relaxed);
            state & PARKED != 0 && blocked(state)
        };
        let timed_out = |_key, was_last: bool| {
            if was_last {
                // AND only clears; it cannot borrow into other bits.
                self.state.fetch_and(!PARKED, Ordering::Relaxed);
            }
        };
        // SAFETY: the key is this lock's address; the closures only read and
        // clear bits of the word and cannot panic.
        let result = unsafe {
            park::park(
                self.key(),
                validate,
                || {},
                timed_out,
                fair::token(want),
                deadline,
            )
        };
        self.diag.woke(&mut ask.wait);
        spin.reset();
        *state = self.state.load(Ordering::Relaxed);
        match result {
            ParkResult::Unparked(TOKEN_HANDOFF) => Parked::HandedOff,
            ParkResult::Unparked(_) | ParkResult::Invalid => Parked::Retry,
            ParkResult::TimedOut => Parked::TimedOut,
        }
    }

    /// With WRITER claimed, waits until no reader is counted. False if the
    /// deadline passed first; WRITER is then still claimed.
    fn wait_for_readers(&self, ask: &mut Ask) -> bool {
        let deadline = ask.deadline;
        let mut spin = SpinWait::new();
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & READERS == 0 {
                return self.drained(state);
            }
            if state & WRITER_PARKED == 0 {
                if spin.spin() {
                    state = self.state.load(Ordering::Acquire);
                    continue;
                }
                if let Err(now) = self.state.compare_exchange_weak(
                    state,
                    state | WRITER_PARKED,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    state = now;
                    continue;
                }
            }
            // As above: the word with the bit this writer parks under.
            self.check_park(ask, state | WRITER_PARKED);
            // The last reader clears WRITER_PARKED before waking us, so a
            // cleared bit means the readers are gone and we must not sleep.
            let validate = || self.state.load(Ordering::Relaxed) & WRITER_PARKED != 0;
            // SAFETY: the drain key belongs to this lock; the closure only
            // reads the word.
            let result = unsafe {
                park::park(
                    self.drain_key(),
                    validate,
                    || {},
                    |_, _| {},
                    fair::token(Want::Exclusive),
                    deadline,
                )
            };
            self.diag.woke(&mut ask.wait);
            state = self.state.load(Ordering::Acquire);
            if result == ParkResult::TimedOut {
                // The word, not the park result, decides: the last reader may
                // have left just as the deadline passed.
                return state & READERS == 0 && self.drained(state);
            }
        }
    }

    /// A claiming writer gives up: clear exactly the writer bits that are set
    /// (restoring the upgradable read lock if it was upgrading) and wake the
    /// threads that WRITER held back. If the readers have left by now, keep
    /// the lock instead and return true.
    #[cold]
    fn abandon_claim(&self, to: Abandon) -> bool {
        // Test-only: parking_lot's abandon (subtract the bits set earlier), for
        // the model test rwlock_timed_writer_vs_last_reader_2 to catch.
        #[cfg(lockscope_buggy_abandon)]
        if to == Abandon::ToNothing {
            let old = self
                .state
                .fetch_sub(WRITER | WRITER_PARKED, Ordering::Release);
            if old & PARKED != 0 {
                self.wake_main(Wake::All);
            }
            return false;
        }
        let mut state = self.state.load(Ordering::Relaxed);
        let next = loop {
            state = self.settled(state);
            if state & WRITER == 0 || broken_invariant(state).is_some() {
                let _ = violation::report(
                    self.violation("abandon_claim", "the claiming writer's bit is gone", state),
                    false,
                );
                unreachable!("an unrefusable violation returned");
            }
            if state & READERS == 0 {
                fence(Ordering::Acquire);
                return self.drained(state);
            }
            let mut next = state & !(WRITER | WRITER_PARKED);
            // Test-only (fuzz/README.md, "Planted bugs"): a timed upgrade
            // that gives up with two other readers in leaves WRITER_PARKED.
            #[cfg(lockscope_planted_bug = "raw_lock_ops")]
            if to == Abandon::ToUpgradable && readers(state) >= 2 {
                next |= WRITER_PARKED;
            }
            if to == Abandon::ToUpgradable {
                let Some(with_reader) = self.add_reader(&mut next, "try_upgrade_for") else {
                    state = next;
                    continue;
                };
                next = with_reader | UPGRADABLE;
            }
            match self.state.compare_exchange_weak(
                state,
                next,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break next,
                Err(now) => state = now,
            }
        };
        if next & PARKED != 0 {
            let wake = match to {
                Abandon::ToNothing => Wake::All,
                Abandon::ToUpgradable => Wake::PlainReaders,
            };
            self.wake_main(wake);
        }
        false
    }

    unsafe fn upgrade_until(
        &self,
        guard: GuardMarker,
        deadline: Option<Instant>,
        site: &'static Location<'static>,
    ) -> Result<GuardMarker, GuardMarker> {
        let Some(state) = self.try_transition("try_upgrade_for", |state| {
            Self::holds_upgradable(state).then(|| ((state & !UPGRADABLE) - ONE_READER) | WRITER)
        }) else {
            return Err(guard);
        };
        if state & READERS != 0 {
            let mut ask = Ask::new(Mode::Exclusive, site, deadline, Some(Abandon::ToUpgradable));
            let kept = self.wait_for_readers(&mut ask) || self.abandon_claim(Abandon::ToUpgradable);
            if kept {
                self.upgraded(site);
            }
            self.diag
                .after_wait(ask.wait, kept, Self::KIND, Mode::Exclusive, site);
            return if kept {
                Ok(GuardMarker::new())
            } else {
                Err(guard)
            };
        }
        self.upgraded(site);
        Ok(GuardMarker::new())
    }

    /// A read release whose subtraction (already made) left `prev - ONE_READER`:
    /// the last reader before a parked writer wakes it; a release of a read
    /// lock that was not held is undone and reported (false: refused).
    #[cold]
    #[track_caller]
    fn unlock_shared_slow(&self, prev: usize) -> bool {
        let upgradable = usize::from(prev & UPGRADABLE != 0);
        if readers(prev) <= upgradable || broken_invariant(prev).is_some() {
            // Undo at once: adding back exactly what was subtracted restores
            // every bit, whatever other threads did meanwhile. A writer that
            // saw the wrapped count and parked waits for readers that are
            // not there: hand it the lock as a last reader would.
            self.state.fetch_add(ONE_READER, Ordering::Relaxed);
            self.finish_drain();
            self.refuse(
                "unlock_shared",
                "no read lock is held (besides an upgradable one)",
                prev,
            );
            return false;
        }
        if readers(prev) == 1 && prev & WRITER_PARKED != 0 {
            self.finish_drain();
        }
        true
    }

    /// No reader is counted any more and a writer may still be parked for
    /// them: clear WRITER_PARKED (if the writer, awake already, has not) and
    /// wake the writer. Whoever clears the bit wakes.
    #[cold]
    fn finish_drain(&self) {
        let mut state = self.state.load(Ordering::Relaxed);
        while state & WRITER_PARKED != 0 && state & READERS == 0 {
            match self.state.compare_exchange_weak(
                state,
                state & !WRITER_PARKED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.wake_drained_writer(),
                Err(now) => state = now,
            }
        }
    }

    /// The claiming writer finds no reader counted: the lock is its own.
    /// Clears WRITER_PARKED if the last reader has not yet (that reader then
    /// finds nothing to wake).
    #[inline]
    fn drained(&self, state: usize) -> bool {
        if state & WRITER_PARKED != 0 {
            // AND only clears; it cannot borrow into other bits.
            self.state.fetch_and(!WRITER_PARKED, Ordering::Acquire);
        }
        true
    }

    #[cold]
    fn wake_drained_writer(&self) {
        // SAFETY: the drain key belongs to this lock; the callback does nothing.
        unsafe {
            park::unpark_one(self.drain_key(), |_| TOKEN_NORMAL);
        }
    }

    #[cold]
    #[track_caller]
    fn unlock_exclusive_slow(&self, force_fair: bool) {
        // Readers are never blocked by UPGRADABLE and a writer owns no
        // UPGRADABLE, so every parked thread is eligible: wake as `All`.
        let state = self.settled(self.state.load(Ordering::Relaxed));
        if !Self::holds_exclusive(state) {
            return self.refuse("unlock_exclusive", "the lock is not write-locked", state);
        }
        let now = time::micros_now();
        let handoff = Cell::new(force_fair);
        let granted = Cell::new(0);
        let mut first = true;
        let filter = |token| {
            if first {
                first = false;
                handoff.set(handoff.get() || fair::overdue(token, now));
            }
            select(Wake::All, &granted, token)
        };
        let callback = |result: UnparkResult| {
            let parked = if result.have_more_threads { PARKED } else { 0 };
            if handoff.get() && result.unparked_threads != 0 {
                // The woken threads own the lock as granted; WRITER goes to
                // the woken writer, if that is who was woken.
                self.replace_held_word(granted.get() | parked);
                TOKEN_HANDOFF
            } else {
                self.replace_held_word(parked);
                TOKEN_NORMAL
            }
        };
        // SAFETY: the key is this lock's address; filter and callback touch
        // only the word and locals and cannot panic.
        unsafe {
            park::unpark_filter(self.key(), filter, callback);
        }
    }

    /// The write holder's release replaces the whole word (under the queue
    /// lock, so no flag changes meanwhile). Not with a plain store: a release
    /// of a read lock that was not held may have subtracted a reader and not
    /// yet added it back, and the word it restores must be the one it broke,
    /// so the replacement waits for that (a reader count on a write-held word
    /// is nothing else).
    fn replace_held_word(&self, next: usize) {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & READERS != 0 {
                crate::sync::yield_now();
                state = self.state.load(Ordering::Relaxed);
                continue;
            }
            match self.state.compare_exchange_weak(
                state,
                next,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => state = now,
            }
        }
    }

    /// Wakes the threads in the main queue that a change of state (already
    /// made) may let through; they compete for the lock again.
    #[cold]
    fn wake_main(&self, wake: Wake) {
        let granted = Cell::new(0);
        let filter = |token| select(wake, &granted, token);
        let callback = |result: UnparkResult| {
            if !result.have_more_threads {
                self.state.fetch_and(!PARKED, Ordering::Relaxed);
            }
            TOKEN_NORMAL
        };
        // SAFETY: the key is this lock's address; filter and callback touch
        // only the word and locals and cannot panic.
        unsafe {
            park::unpark_filter(self.key(), filter, callback);
        }
    }
}

/// A blocking request in progress, for diagnostics and self-deadlock checks.
struct Ask {
    mode: Mode,
    site: &'static Location<'static>,
    deadline: Option<Instant>,
    /// Set while upgrading: the thread's upgradable hold is expected.
    upgrading: Option<Abandon>,
    /// The WRITER claim this request holds while it waits for readers.
    claimed: Option<Abandon>,
    /// A self-deadlock was reported already.
    reported: bool,
    wait: Wait,
}

impl Ask {
    fn new(
        mode: Mode,
        site: &'static Location<'static>,
        deadline: Option<Instant>,
        upgrading: Option<Abandon>,
    ) -> Self {
        Ask {
            mode,
            site,
            deadline,
            upgrading,
            claimed: upgrading,
            reported: false,
            wait: Wait::new(deadline.is_some()),
        }
    }
}

/// The outcome of one round in the main queue.
enum Parked {
    Retry,
    HandedOff,
    TimedOut,
}

/// Decides, in queue order, which parked threads to wake: every reader up to
/// a selected writer, and at most one writer or upgradable reader; nothing
/// after a writer. `granted` accumulates the word bits the woken threads would
/// own if the lock were handed to them (a writer woken with readers then owns
/// a claim and waits for them to leave).
fn select(wake: Wake, granted: &Cell<usize>, token: ParkToken) -> FilterOp {
    let held = granted.get();
    if held & WRITER != 0 {
        return FilterOp::Stop;
    }
    match fair::want_of(token) {
        Want::Shared => {
            granted.set(held + ONE_READER);
            FilterOp::Unpark
        }
        _ if wake == Wake::PlainReaders || held & UPGRADABLE != 0 => FilterOp::Skip,
        Want::Exclusive => {
            granted.set(held | WRITER);
            FilterOp::Unpark
        }
        Want::Upgradable => {
            granted.set((held + ONE_READER) | UPGRADABLE);
            FilterOp::Unpark
        }
    }
}
