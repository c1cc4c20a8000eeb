//! What each lock records: the inline part ([`LockDiag`], in the raw lock)
//! and the per-lock [`LockRecord`] on the heap, created at the first
//! acquisition and listed in the registry.
//!
//! Cost on an uncontended acquisition and release, by mode:
//! - exclusive: the holder's thread id, call site, context and coarse time
//!   are stored in the record's exclusive line (one cache line, which only
//!   the holder writes), in the tenure that a tag bit of the lock's record
//!   pointer names (the parity of the count of ended tenures); the release
//!   ends the tenure, flips the tag and
//!   counts it (exactly: the holder is alone), so the ended tenure stays as
//!   the last holder. One exclusive tenure in 256 of each lock (spread by a
//!   hash of its count) reads the precise clock for the hold-time histogram.
//!   The globals these paths read share one static (`hot::HOT`).
//! - shared and upgradable: a hold slot in the thread's own record; no write
//!   to any line other readers touch. One shared acquisition in 64 per thread
//!   (random gaps) is sampled: it adds its gap to the lock's shared count, and
//!   one such sample in four also times its hold.
//! - waiting (slow path, about to park): precise clock, wait slot, counters,
//!   wait-time histogram, self-deadlock check; timeouts also list the holders
//!   and emit a `tracing` event.

use core::hint;
use core::panic::Location;
use core::ptr;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Mode;
use super::clock::{self, elapsed_ms};
use super::histogram::Histogram;
use super::hot::HOT;
use super::thread::{self, ThreadRecord};
use super::{Holder, LastHolder, LockStats, Snapshot, TimeoutRecord, Waiter};

/// Timeouts kept per lock for snapshots.
const RECENT_TIMEOUTS: usize = 8;

/// `held_ms` of a tenure while it lasts is `HELD - flags`, with these flags.
const HELD: u32 = u32::MAX;
/// The holder parked for the lock: its release records the wait
/// (`StatsLine::holder_waited_ns`).
const WAITED: u32 = 1;
/// The tenure is sampled for the hold-time histogram
/// (`StatsLine::holder_sampled_at`).
const SAMPLED: u32 = 2;
/// The lowest `held_ms` of a lasting tenure.
const LASTING: u32 = HELD - (WAITED | SAMPLED);
/// The longest hold a tenure records (49 days); longer ones read as this.
pub(crate) const LONGEST_HOLD: u32 = LASTING - 1;

/// The tag bit of `LockDiag::record`: which of the two tenures the next
/// exclusive acquisition writes, always the parity of the count of ended
/// tenures. The record is 64-byte aligned, so the low bits of its address
/// are free.
const NEXT_TENURE: usize = 1;

/// One exclusive tenure in this many (of each lock) is sampled for the
/// hold-time histogram, on average.
const SAMPLED_TENURES: u64 = 256;

/// Whether the exclusive tenure that follows `ended` ended ones is sampled
/// for the hold-time histogram: a multiplicative hash of the count (a Weyl
/// sequence), so that about one tenure in [`SAMPLED_TENURES`] is, with gaps
/// that fall in step with no short period of a workload (a lock whose every
/// other hold is long has both kinds sampled alike). It costs the acquisition
/// a multiply and a compare, and no store.
#[inline(always)]
fn sampled_tenure(ended: u64) -> bool {
    ended.wrapping_mul(0x9E37_79B9_7F4A_7C15) < u64::MAX / SAMPLED_TENURES
}

/// Written only by the thread holding the lock exclusively: the current and
/// the previous exclusive tenure, alternating between two buffers (so that a
/// release writes one field instead of copying the holder to a "last
/// holder"), and the count of ended tenures, which says which buffer is
/// which: with `n` ended, tenure `n % 2` is the current one (if it lasts)
/// and `(n - 1) % 2` the last one.
///
/// An acquisition learns which buffer to write from a tag bit of the
/// record pointer in the lock itself ([`NEXT_TENURE`], always the count's
/// parity), whose line it owns after its compare-exchange: after a handoff,
/// when this line is still on the previous holder's core, the addresses of
/// its stores do not wait for the line to arrive. (It reads the count too,
/// for the sampling test, but no store waits for that.) With the parity
/// read from the count instead, `mutex_counter` at 2 threads measured about
/// 0.04 lower.
///
/// Exactly one cache line, field arrays rather than an array of structs:
/// every exclusive acquisition of a contended lock takes this line from the
/// previous holder's core, and a second line (the tenures of 32 bytes each
/// after an 8-byte count straddle one) cost a second transfer per handoff.
#[repr(C, align(64))]
pub(crate) struct ExclusiveLine {
    /// Exclusive tenures that have ended.
    pub(crate) ended: AtomicU64,
    sites: [AtomicPtr<Location<'static>>; 2],
    contexts: [AtomicU64; 2],
    /// The holder's thread record id (`ThreadRecord::id`, never 0).
    threads: [AtomicU32; 2],
    since: [AtomicU32; 2],
    /// How long the tenure lasted; `HELD - flags` (at least [`LASTING`])
    /// until it ends.
    held_ms: [AtomicU32; 2],
}

const _: () = assert!(size_of::<ExclusiveLine>() == 64);

/// One exclusive acquisition, as its holder recorded it: a view of one of
/// the two tenures of an [`ExclusiveLine`].
#[derive(Clone, Copy)]
pub(crate) struct Tenure<'a> {
    line: &'a ExclusiveLine,
    i: usize,
}

impl Tenure<'_> {
    /// The holder's thread record, if it still exists under that id.
    pub(crate) fn thread(&self) -> Option<&'static ThreadRecord> {
        thread::by_id(self.thread_id())
    }

    pub(crate) fn thread_id(&self) -> u32 {
        self.line.threads[self.i].load(Ordering::Relaxed)
    }

    pub(crate) fn site(&self) -> *mut Location<'static> {
        self.line.sites[self.i].load(Ordering::Relaxed)
    }

    pub(crate) fn context(&self) -> u64 {
        self.line.contexts[self.i].load(Ordering::Relaxed)
    }

    /// Coarse time of the acquisition.
    pub(crate) fn since(&self) -> u32 {
        self.line.since[self.i].load(Ordering::Relaxed)
    }

    fn held_ms(&self) -> u32 {
        self.line.held_ms[self.i].load(Ordering::Acquire)
    }

    fn lasts(&self) -> bool {
        self.held_ms() >= LASTING
    }
}

impl ExclusiveLine {
    const fn new() -> Self {
        ExclusiveLine {
            ended: AtomicU64::new(0),
            sites: [const { AtomicPtr::new(ptr::null_mut()) }; 2],
            contexts: [const { AtomicU64::new(0) }; 2],
            threads: [const { AtomicU32::new(0) }; 2],
            since: [const { AtomicU32::new(0) }; 2],
            held_ms: [const { AtomicU32::new(0) }; 2],
        }
    }

    /// The current holder's tenure, if the lock is held exclusively.
    #[inline]
    pub(crate) fn current(&self) -> Option<Tenure<'_>> {
        let n = self.ended.load(Ordering::Acquire);
        let tenure = Tenure {
            line: self,
            i: (n % 2) as usize,
        };
        tenure.lasts().then_some(tenure)
    }

    /// The last ended tenure, if any.
    #[inline]
    fn last(&self) -> Option<Tenure<'_>> {
        let n = self.ended.load(Ordering::Acquire);
        (n > 0).then(|| Tenure {
            line: self,
            i: ((n - 1) % 2) as usize,
        })
    }

    /// Exclusive acquisitions so far (the current one included).
    pub(crate) fn acquisitions(&self) -> u64 {
        self.ended.load(Ordering::Acquire) + u64::from(self.current().is_some())
    }
}

/// Counters bumped by waiters and sampled acquisitions.
#[repr(align(64))]
pub(crate) struct StatsLine {
    pub(crate) shared_acquisitions: AtomicU64,
    pub(crate) contended: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    /// Written only by the exclusive holder, and only when its tenure is
    /// sampled for the hold-time histogram: the precise acquisition time.
    pub(crate) holder_sampled_at: AtomicU64,
    /// Written only by the exclusive holder, right after it parked for the
    /// lock: how long it waited, for its release to record outside the
    /// critical section (its tenure has the [`WAITED`] flag).
    pub(crate) holder_waited_ns: AtomicU64,
    pub(crate) wait: Histogram,
    pub(crate) hold: Histogram,
    /// Wait time per waiting call site (for the contention profile).
    pub(crate) sites: super::sites::WaitSites,
}

/// The heap part of a lock's diagnostics.
pub(crate) struct LockRecord {
    pub(crate) excl: ExclusiveLine,
    pub(crate) stats: StatsLine,
    pub(crate) kind: &'static str,
    /// Where the lock was first acquired: its name when it has no label.
    pub(crate) first_site: &'static Location<'static>,
    pub(crate) label: Mutex<Option<Arc<str>>>,
    pub(crate) recent_timeouts: Mutex<VecDeque<TimeoutRecord>>,
    /// The last lock word a thread saw before it parked.
    pub(crate) parked_word: AtomicUsize,
    pub(crate) alive: AtomicBool,
    pub(crate) next: AtomicPtr<LockRecord>,
}

/// The inline part of a lock's diagnostics: a pointer to its record, and
/// the label given at construction.
pub(crate) struct LockDiag {
    record: AtomicPtr<LockRecord>,
    label: Option<&'static str>,
}

/// Whether an exclusive release left work for once the lock is free (in the
/// releasing thread's record, [`ThreadRecord::after_release`]), so that no
/// histogram update or precise clock read lengthens the critical section.
#[must_use]
pub(crate) struct Release {
    after: bool,
}

/// A shared acquisition prepared before its compare-exchange
/// ([`LockDiag::preparing_shared`]): the lock's record, and the thread whose
/// first hold slot is filled in, if it was free.
pub(crate) struct Prepared<'a> {
    record: &'a LockRecord,
    me: Option<&'static ThreadRecord>,
}

/// A wait in progress on a slow path.
///
/// An untimed wait is timed from its first park (the spinning before it,
/// tens of microseconds at most, is not counted, so that a contended
/// acquisition that never parks reads no clock). A timed one is timed from
/// the call, like its timeout.
pub(crate) struct Wait {
    start_ns: u64,
    /// When the thread last woke, so that the wait ends before the lock is
    /// taken rather than after.
    woke_ns: u64,
    parked: bool,
}

impl Wait {
    pub(crate) fn new(timed: bool) -> Self {
        Wait {
            start_ns: if timed { clock::precise_ns() } else { 0 },
            woke_ns: 0,
            parked: false,
        }
    }
}

#[inline]
fn site_ptr(site: &'static Location<'static>) -> *mut Location<'static> {
    ptr::from_ref(site).cast_mut()
}

/// `file:line` of a recorded call site, for a report.
#[cold]
fn site_text(site: *mut Location<'static>) -> String {
    site_ref(site).map_or_else(
        || "an unknown site".to_string(),
        |s| format!("{}:{}", s.file(), s.line()),
    )
}

#[inline]
fn site_ref(site: *mut Location<'static>) -> Option<&'static Location<'static>> {
    // SAFETY: site pointers only ever come from `&'static Location`.
    unsafe { site.cast_const().as_ref() }
}

impl LockDiag {
    pub(crate) const fn new(label: Option<&'static str>) -> Self {
        LockDiag {
            record: AtomicPtr::new(ptr::null_mut()),
            label,
        }
    }

    /// The record, if the lock has been acquired (or labelled) yet.
    #[inline(always)]
    pub(crate) fn get(&self) -> Option<&LockRecord> {
        // SAFETY: a non-null record stays allocated until this lock drops
        // (`retire`), and `&self` proves it has not; the tag bit is not part
        // of its address.
        unsafe {
            self.record
                .load(Ordering::Acquire)
                .map_addr(|a| a & !NEXT_TENURE)
                .as_ref()
        }
    }

    #[inline(always)]
    fn record(&self, kind: &'static str, site: &'static Location<'static>) -> &LockRecord {
        match self.get() {
            Some(record) => record,
            None => {
                hint::cold_path();
                self.create(kind, site)
            }
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn create(
        &self,
        kind: &'static str,
        site: &'static Location<'static>,
    ) -> &LockRecord {
        let fresh = Box::into_raw(Box::new(LockRecord {
            excl: ExclusiveLine::new(),
            stats: StatsLine {
                shared_acquisitions: AtomicU64::new(0),
                contended: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
                holder_sampled_at: AtomicU64::new(0),
                holder_waited_ns: AtomicU64::new(0),
                wait: Histogram::new(),
                hold: Histogram::new(),
                sites: super::sites::WaitSites::new(),
            },
            kind,
            first_site: site,
            label: Mutex::new(self.label.map(Arc::from)),
            recent_timeouts: Mutex::new(VecDeque::new()),
            parked_word: AtomicUsize::new(0),
            alive: AtomicBool::new(true),
            next: AtomicPtr::new(ptr::null_mut()),
        }));
        match self.record.compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                super::registry::register(fresh);
                // SAFETY: just published; freed only after this lock drops.
                unsafe { &*fresh }
            }
            Err(winner) => {
                // SAFETY: `fresh` was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: as in `get`.
                unsafe { &*winner.map_addr(|a| a & !NEXT_TENURE) }
            }
        }
    }

    /// The lock is being dropped: its record leaves the registry.
    pub(crate) fn retire(&mut self) {
        let record = self.record.get_mut().map_addr(|a| a & !NEXT_TENURE);
        if !record.is_null() {
            super::order::retired(record);
            super::registry::retire(record);
        }
    }

    /// The calling thread now holds the lock exclusively.
    ///
    /// Shaped for the critical section it opens: what it loads is the
    /// thread's own record, the lock's record line and one global (`HOT`),
    /// and its rare cases (a sampled tenure, lock-order checking) share one
    /// test and one cold call.
    #[inline(always)]
    pub(crate) fn acquired_exclusive(&self, kind: &'static str, site: &'static Location<'static>) {
        let record = self.record(kind, site);
        let Some(me) = thread::current() else {
            hint::cold_path();
            return;
        };
        let mut now = HOT.now_ms.load(Ordering::Relaxed);
        if now == 0 {
            hint::cold_path();
            now = clock::now_ms();
        }
        let line = &record.excl;
        // Only the exclusive holder writes the tag, the count and the tenures.
        let i = self.record.load(Ordering::Relaxed).addr() & NEXT_TENURE;
        let ended = line.ended.load(Ordering::Relaxed);
        line.threads[i].store(me.id, Ordering::Relaxed);
        line.sites[i].store(site_ptr(site), Ordering::Relaxed);
        line.since[i].store(now, Ordering::Relaxed);
        line.contexts[i].store(me.context.load(Ordering::Relaxed), Ordering::Relaxed);
        if sampled_tenure(ended) | HOT.order_on.load(Ordering::Relaxed) {
            hint::cold_path();
            return record.acquired_rare(i, sampled_tenure(ended), site);
        }
        line.held_ms[i].store(HELD, Ordering::Release);
    }

    /// The exclusive holder is about to release the lock. Hand the result to
    /// [`Self::released_exclusive`] once the lock word is released.
    ///
    /// The common case ends the tenure with two stores and no call; every
    /// rare case (the holder parked for the lock, the tenure is sampled, the
    /// hold was slow or the coarse clock has no ticker) passes one test to
    /// [`LockRecord::release_rare`].
    #[inline(always)]
    pub(crate) fn releasing_exclusive(&self) -> Release {
        let nothing = Release { after: false };
        let Some(record) = self.get() else {
            hint::cold_path();
            return nothing;
        };
        let line = &record.excl;
        let tagged = self.record.load(Ordering::Relaxed);
        let i = tagged.addr() & NEXT_TENURE;
        let ended = line.ended.load(Ordering::Relaxed);
        let state = line.held_ms[i].load(Ordering::Relaxed);
        if state < LASTING {
            // No tenure was recorded (the thread had no record), or this is
            // a misuse the lock word will refuse.
            hint::cold_path();
            return nothing;
        }
        // The acquisition started the coarse clock; without a ticker,
        // `rare_hold_ms` is 0 and the cold path reads the time properly.
        let held = clock::raw_elapsed_ms(
            line.since[i].load(Ordering::Relaxed),
            HOT.now_ms.load(Ordering::Relaxed),
        );
        // The next tenure goes to the other buffer (the count's parity, once
        // the count is stored below or by the cold path).
        self.record
            .store(tagged.map_addr(|a| a ^ NEXT_TENURE), Ordering::Relaxed);
        if state != HELD || held >= HOT.rare_hold_ms.load(Ordering::Relaxed) {
            hint::cold_path();
            return Release {
                after: record.release_rare(i, ended, state),
            };
        }
        line.held_ms[i].store(held, Ordering::Release);
        // Only the holder writes the count, so a load and a store count
        // exactly without a locked instruction.
        line.ended.store(ended + 1, Ordering::Release);
        nothing
    }

    /// The lock word is released: record what the release left.
    #[inline(always)]
    pub(crate) fn released_exclusive(&self, release: Release) {
        if release.after {
            hint::cold_path();
            after_release();
        }
    }

    /// The thread woke from a park.
    #[inline]
    pub(crate) fn woke(&self, wait: &mut Wait) {
        if wait.parked {
            wait.woke_ns = clock::precise_ns();
        }
    }

    /// The calling thread now holds the lock in `mode` (shared or upgradable).
    #[inline(always)]
    pub(crate) fn acquired_shared(
        &self,
        kind: &'static str,
        mode: Mode,
        site: &'static Location<'static>,
    ) {
        let record = self.record(kind, site);
        let Some(me) = thread::current() else { return };
        let stands_for = me.hold(
            ptr::from_ref(record).cast_mut(),
            mode,
            site,
            clock::now_ms(),
        );
        record.after_shared_acquisition(stands_for, mode, site);
    }

    /// Before a shared acquisition's compare-exchange: fills in the
    /// thread's first hold slot, if it is free, without publishing it, so
    /// that once the lock is taken [`Self::acquired_prepared`] has only to
    /// count and publish. Nothing here is visible to other threads (a slot
    /// is read only once its hold word is set), so a compare-exchange that
    /// fails leaves nothing to undo: the slow path records the hold afresh.
    #[inline(always)]
    pub(crate) fn preparing_shared(
        &self,
        kind: &'static str,
        site: &'static Location<'static>,
    ) -> Prepared<'_> {
        let record = self.record(kind, site);
        let me = thread::current().filter(|me| me.prepare_first(site));
        Prepared { record, me }
    }

    /// The shared acquisition prepared as `prepared` has taken the lock in
    /// `mode`.
    #[inline(always)]
    pub(crate) fn acquired_prepared(
        &self,
        prepared: Prepared<'_>,
        kind: &'static str,
        mode: Mode,
        site: &'static Location<'static>,
    ) {
        let Prepared { record, me } = prepared;
        let Some(me) = me else {
            hint::cold_path();
            return self.acquired_shared(kind, mode, site);
        };
        let stands_for = me.publish_first(ptr::from_ref(record).cast_mut(), mode);
        record.after_shared_acquisition(stands_for, mode, site);
    }

    /// The calling thread released a hold in `mode` (shared or upgradable).
    ///
    /// Shaped for the release path: every call it may make is its last act
    /// (a tail call), so that it saves no registers, and the two rare cases,
    /// a sampled hold and a slow one, share one test.
    #[inline(always)]
    pub(crate) fn released_shared(&self, mode: Mode) {
        let Some(record) = self.get() else {
            hint::cold_path();
            return;
        };
        let lock = ptr::from_ref(record).cast_mut();
        // A thread with no record has recorded no hold: the guard was sent
        // from another thread.
        let Some(me) = thread::existing() else {
            hint::cold_path();
            return record.release_foreign(lock, mode);
        };
        // Most threads hold one read lock at a time: it is in the first slot.
        let word = me.holds[0].load(Ordering::Relaxed);
        if word & !thread::SAMPLED == thread::tag(lock, mode) {
            return record.release_slot(me, 0, word, mode);
        }
        hint::cold_path();
        record.release_elsewhere(me, lock, mode);
    }

    /// The calling thread is about to park for the lock. The first call of a
    /// wait records it; every call checks for a self-deadlock, which is
    /// returned as a description of the hold that makes the wait hopeless.
    ///
    /// `upgrading`: the thread holds the upgradable lock and waits to upgrade
    /// it, so that hold is expected. `writer_ahead`: a writer has claimed the
    /// lock, so a thread that already reads it cannot get a second read.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn before_park(
        &self,
        wait: &mut Wait,
        kind: &'static str,
        mode: Mode,
        site: &'static Location<'static>,
        word: usize,
        upgrading: bool,
        writer_ahead: bool,
        untimed: bool,
    ) -> Option<String> {
        let record = self.record(kind, site);
        let me = thread::current()?;
        if !wait.parked {
            wait.parked = true;
            if wait.start_ns == 0 {
                wait.start_ns = clock::precise_ns();
            }
            record.stats.contended.fetch_add(1, Ordering::Relaxed);
            let slot = &me.wait;
            slot.mode.store(mode.code(), Ordering::Relaxed);
            slot.since_ms.store(clock::now_ms(), Ordering::Relaxed);
            slot.site.store(site_ptr(site), Ordering::Relaxed);
            slot.lock
                .store(ptr::from_ref(record).cast_mut(), Ordering::Release);
        }
        record.parked_word.store(word, Ordering::Relaxed);
        if !untimed {
            return None;
        }
        // Formatted only for a report: every park passes here.
        let here = format_args!("{}:{}", site.file(), site.line());
        // A tenure older than this thread's claim on its record is that of
        // an exited thread (a leaked guard) whose record this one reuses.
        if let Some(tenure) = record.excl.current()
            && tenure.thread_id() == me.id
            && me.alive_since(tenure.since())
        {
            let held_at = site_text(tenure.site());
            return Some(format!(
                "this thread already holds it exclusively (acquired at {held_at}) and asks for it again ({mode:?}) at {here}"
            ));
        }
        let lock = ptr::from_ref(record).cast_mut();
        for i in 0..thread::HOLD_SLOTS {
            let (held_lock, held) = thread::untag(me.holds[i].load(Ordering::Relaxed));
            if held_lock != lock.addr() {
                continue;
            }
            let hopeless = match (held, mode) {
                (Mode::Upgradable, _) if upgrading => false,
                (_, Mode::Exclusive | Mode::Upgradable) => true,
                (Mode::Shared, Mode::Shared) => writer_ahead,
                _ => false,
            };
            if hopeless {
                let held_at = site_text(me.slots[i].site.load(Ordering::Relaxed));
                let why = if mode == Mode::Shared {
                    ", and a writer is queued behind that read"
                } else {
                    ""
                };
                return Some(format!(
                    "this thread holds it ({held:?}, acquired at {held_at}{why}) and asks for it ({mode:?}) at {here}"
                ));
            }
        }
        None
    }

    /// The wait ended: acquired, or gave up at its deadline.
    #[cold]
    pub(crate) fn after_wait(
        &self,
        wait: Wait,
        acquired: bool,
        mode: Mode,
        site: &'static Location<'static>,
    ) {
        if !wait.parked {
            return;
        }
        let Some(record) = self.get() else { return };
        let end = if wait.woke_ns != 0 {
            wait.woke_ns
        } else {
            clock::precise_ns()
        };
        let waited = end.saturating_sub(wait.start_ns).max(1);
        if let Some(me) = thread::current() {
            me.wait.lock.store(ptr::null_mut(), Ordering::Release);
        }
        if !acquired {
            record.stats.wait.record(waited);
            record.stats.sites.add(site, waited);
            record.timed_out(mode, site, Duration::from_nanos(waited));
        } else if mode == Mode::Exclusive
            && let Some(tenure) = record.excl.current()
        {
            // Called right after the acquisition, by the holder: recorded
            // after its release, outside the critical section.
            record
                .stats
                .holder_waited_ns
                .store(waited, Ordering::Relaxed);
            let held = &record.excl.held_ms[tenure.i];
            held.store(held.load(Ordering::Relaxed) - WAITED, Ordering::Relaxed);
        } else {
            record.stats.wait.record(waited);
            record.stats.sites.add(site, waited);
        }
    }

    /// The waiting thread leaves without waiting (a self-deadlock report
    /// that unwinds).
    #[cold]
    pub(crate) fn cancel_wait(&self) {
        if let Some(me) = thread::current() {
            me.wait.lock.store(ptr::null_mut(), Ordering::Release);
        }
    }

    /// Labels the lock, creating its record if it has none yet.
    pub(crate) fn set_label(
        &self,
        kind: &'static str,
        site: &'static Location<'static>,
        label: &str,
    ) {
        self.record(kind, site).set_label(label);
    }

    /// Snapshot of this lock's diagnostics (`None` before its first use).
    pub(crate) fn snapshot(&self, word: String) -> Option<Snapshot> {
        self.get().map(|record| {
            let mut snapshot = record.snapshot();
            snapshot.word = Some(word);
            snapshot
        })
    }
}

impl Drop for LockDiag {
    fn drop(&mut self) {
        self.retire();
    }
}

/// Records what an exclusive release left in the releasing thread's record,
/// now that the lock is free.
#[cold]
#[inline(never)]
fn after_release() {
    let Some(me) = thread::existing() else { return };
    let after = &me.after_release;
    // Only this thread writes or reads its `after_release`: a load and a
    // store, no locked exchange.
    let record = after.record.load(Ordering::Relaxed);
    after.record.store(ptr::null_mut(), Ordering::Relaxed);
    // SAFETY: set by this thread's `release_rare` during the release that
    // has just ended, inside `unlock(&self)` of the lock that owns the
    // record, which therefore has not been dropped.
    let Some(record) = (unsafe { record.as_ref() }) else {
        return;
    };
    record.record_after(
        after.wait_ns.load(Ordering::Relaxed),
        after.sampled_at.load(Ordering::Relaxed),
        after.site.load(Ordering::Relaxed),
    );
}

impl LockRecord {
    /// What follows a shared acquisition recorded in a hold slot: its
    /// sample's count (`stands_for`, 0 when it is not sampled) and the
    /// lock-order check.
    #[inline(always)]
    fn after_shared_acquisition(
        &self,
        stands_for: u32,
        mode: Mode,
        site: &'static Location<'static>,
    ) {
        if stands_for != 0 {
            hint::cold_path();
            self.stats
                .shared_acquisitions
                .fetch_add(u64::from(stands_for), Ordering::Relaxed);
        }
        if HOT.order_on.load(Ordering::Relaxed) {
            hint::cold_path();
            super::order::acquired(self, mode, site);
        }
    }

    /// An exclusive acquisition's rare cases: its tenure `i` is sampled for
    /// the hold-time histogram, or lock order is being checked. Stores the
    /// tenure's state last, as the common path does.
    #[cold]
    #[inline(never)]
    fn acquired_rare(&self, i: usize, sampled: bool, site: &'static Location<'static>) {
        let mut state = HELD;
        if sampled {
            state -= SAMPLED;
            self.stats
                .holder_sampled_at
                .store(clock::precise_ns(), Ordering::Relaxed);
        }
        self.excl.held_ms[i].store(state, Ordering::Release);
        if HOT.order_on.load(Ordering::Relaxed) {
            super::order::acquired(self, Mode::Exclusive, site);
        }
    }

    /// Ends exclusive tenure `i` (after `ended` others), whose state is
    /// `state`, in any of its rare cases (see `releasing_exclusive`). Returns
    /// whether work is left for once the lock word is released.
    #[cold]
    #[inline(never)]
    fn release_rare(&self, i: usize, ended: u64, state: u32) -> bool {
        let line = &self.excl;
        let held =
            elapsed_ms(line.since[i].load(Ordering::Relaxed), clock::now_ms()).min(LONGEST_HOLD);
        let flags = HELD - state;
        let site = line.sites[i].load(Ordering::Relaxed);
        let sampled_at = if flags & SAMPLED != 0 {
            self.stats.holder_sampled_at.load(Ordering::Relaxed)
        } else {
            0
        };
        let wait_ns = if flags & WAITED != 0 {
            self.stats.holder_waited_ns.load(Ordering::Relaxed)
        } else {
            0
        };
        line.held_ms[i].store(held, Ordering::Release);
        line.ended.store(ended + 1, Ordering::Release);
        if held >= super::slow_hold_ms() {
            self.slow_hold(
                Mode::Exclusive,
                site,
                line.contexts[i].load(Ordering::Relaxed),
                held,
            );
        }
        if wait_ns | sampled_at == 0 {
            return false;
        }
        // Left in this thread's record for after the release (the next
        // holder may overwrite the stats line's fields).
        if let Some(me) = thread::existing() {
            let after = &me.after_release;
            after.wait_ns.store(wait_ns, Ordering::Relaxed);
            after.sampled_at.store(sampled_at, Ordering::Relaxed);
            after.site.store(site, Ordering::Relaxed);
            after
                .record
                .store(ptr::from_ref(self).cast_mut(), Ordering::Relaxed);
            return true;
        }
        // No record for this thread (it is being torn down): recorded here,
        // inside the critical section.
        self.record_after(wait_ns, sampled_at, site);
        false
    }

    /// Records an ended exclusive tenure's wait (`wait_ns`, from `site`) and
    /// sampled hold (from `sampled_at`), each when non-zero.
    fn record_after(&self, wait_ns: u64, sampled_at: u64, site: *mut Location<'static>) {
        if wait_ns != 0 {
            self.stats.wait.record(wait_ns);
            if let Some(site) = site_ref(site) {
                self.stats.sites.add(site, wait_ns);
            }
        }
        if sampled_at != 0 {
            self.sampled_hold(sampled_at);
        }
    }

    #[cold]
    fn sampled_hold(&self, since_ns: u64) {
        self.stats
            .hold
            .record(clock::precise_ns().saturating_sub(since_ns));
    }

    /// Ends the shared hold in `me`'s slot `i`.
    #[inline(always)]
    fn release_slot(&self, me: &ThreadRecord, i: usize, word: usize, mode: Mode) {
        // Only this thread writes its own slots (but for a foreign release,
        // of a guard this thread no longer has), so a store suffices; `word`
        // is the hold word the caller matched.
        me.holds[i].store(0, Ordering::Release);
        // The acquisition started the coarse clock; a 0 (no ticker) makes
        // `held` huge, and the cold path then reads the time properly.
        let since = me.slots[i].since_ms.load(Ordering::Relaxed);
        let held = clock::raw_elapsed_ms(since, clock::last_ms());
        if word & thread::SAMPLED != 0 || held >= super::slow_hold_ms() {
            hint::cold_path();
            self.after_shared_hold(me, i, word & thread::SAMPLED != 0, mode);
        }
    }

    /// Ends a shared hold that is not in the thread's first slot: in
    /// another one, or, for a guard sent here, in another thread's record.
    #[cold]
    #[inline(never)]
    fn release_elsewhere(&self, me: &ThreadRecord, lock: *mut LockRecord, mode: Mode) {
        match me.find(lock, mode) {
            Some(i) => self.release_slot(me, i, me.holds[i].load(Ordering::Relaxed), mode),
            None => self.release_foreign(lock, mode),
        }
    }

    /// A released shared hold was sampled for the hold-time histogram, or
    /// may have been slow: `me`'s slot `i` still has its details.
    #[cold]
    #[inline(never)]
    fn after_shared_hold(&self, me: &ThreadRecord, i: usize, sampled: bool, mode: Mode) {
        let slot = &me.slots[i];
        if sampled {
            self.sampled_hold(slot.sampled_at.load(Ordering::Relaxed));
        }
        let held = elapsed_ms(slot.since_ms.load(Ordering::Relaxed), clock::now_ms());
        if held >= super::slow_hold_ms() {
            let site = slot.site.load(Ordering::Relaxed);
            self.slow_hold(mode, site, slot.context.load(Ordering::Relaxed), held);
        }
    }

    #[cold]
    fn release_foreign(&self, lock: *mut LockRecord, mode: Mode) {
        // A guard sent to another thread (feature `send_guard`): clear the
        // hold where its acquiring thread recorded it.
        for other in thread::all() {
            if let Some(i) = other.find(lock, mode)
                && let word = other.holds[i].load(Ordering::Relaxed)
                && word & !thread::SAMPLED == thread::tag(lock, mode)
                && other.holds[i]
                    .compare_exchange(word, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
    }

    /// The lock's name: its label, else its kind and first acquisition site.
    /// Never waits: if `set_label` or a snapshot has the label at this
    /// instant, the unlabelled name is used.
    pub(crate) fn name(&self) -> String {
        let label = match self.label.try_lock() {
            Ok(label) => label.clone(),
            Err(std::sync::TryLockError::Poisoned(label)) => label.into_inner().clone(),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        match label {
            Some(label) => label.to_string(),
            None => format!(
                "{} first locked at {}:{}",
                self.kind,
                self.first_site.file(),
                self.first_site.line()
            ),
        }
    }

    /// For snapshots, not on any lock path.
    pub(crate) fn label(&self) -> Option<Arc<str>> {
        // blocking-ok: snapshots only.
        self.label.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// For `Inspect::set_label`, not on any lock path.
    pub(crate) fn set_label(&self, label: &str) {
        // blocking-ok: `set_label` only.
        *self.label.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::from(label));
    }

    #[cold]
    fn slow_hold(&self, mode: Mode, site: *mut Location<'static>, context: u64, held_ms: u32) {
        let site =
            site_ref(site).map_or_else(String::new, |s| format!("{}:{}", s.file(), s.line()));
        tracing::warn!(
            target: "lockscope",
            lock = %self.name(),
            mode = ?mode,
            site = %site,
            context,
            held_ms,
            "slow lock hold"
        );
    }

    #[cold]
    fn timed_out(&self, mode: Mode, site: &'static Location<'static>, waited: Duration) {
        self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
        let holders = self.holders();
        let me = thread::current().map(super::thread_info);
        let listed = holders
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        tracing::warn!(
            target: "lockscope",
            lock = %self.name(),
            mode = ?mode,
            site = %format_args!("{}:{}", site.file(), site.line()),
            waited_ms = waited.as_secs_f64() * 1e3,
            holders = %listed,
            "timed lock acquisition gave up"
        );
        // Skipped rather than waited for if a snapshot is reading the list.
        if let Ok(mut recent) = self.recent_timeouts.try_lock() {
            if recent.len() == RECENT_TIMEOUTS {
                recent.pop_front();
            }
            recent.push_back(TimeoutRecord {
                thread: me,
                mode,
                site,
                waited,
                holders,
            });
        }
    }

    /// The current holders, exclusive and shared.
    pub(crate) fn holders(&self) -> Vec<Holder> {
        let now = clock::now_ms();
        let mut holders = Vec::new();
        if let Some(tenure) = self.excl.current()
            && let Some(thread) = tenure.thread()
        {
            holders.push(Holder {
                thread: super::thread_info(thread),
                mode: Mode::Exclusive,
                site: site_ref(tenure.site()),
                held_for: Duration::from_millis(u64::from(elapsed_ms(tenure.since(), now))),
                context: tenure.context(),
            });
        }
        let me = ptr::from_ref(self).cast_mut();
        for thread in thread::all() {
            for i in 0..thread::HOLD_SLOTS {
                let (lock, mode) = thread::untag(thread.holds[i].load(Ordering::Acquire));
                if lock != me.addr() {
                    continue;
                }
                let slot = &thread.slots[i];
                holders.push(Holder {
                    thread: super::thread_info(thread),
                    mode,
                    site: site_ref(slot.site.load(Ordering::Relaxed)),
                    held_for: Duration::from_millis(u64::from(elapsed_ms(
                        slot.since_ms.load(Ordering::Relaxed),
                        now,
                    ))),
                    context: slot.context.load(Ordering::Relaxed),
                });
            }
        }
        holders
    }

    pub(crate) fn waiters(&self) -> Vec<Waiter> {
        let now = clock::now_ms();
        let me = ptr::from_ref(self).cast_mut();
        thread::all()
            .filter(|t| t.wait.lock.load(Ordering::Acquire) == me)
            .map(|t| Waiter {
                thread: super::thread_info(t),
                mode: Mode::from_code(t.wait.mode.load(Ordering::Relaxed)),
                site: site_ref(t.wait.site.load(Ordering::Relaxed)),
                waiting_for: Duration::from_millis(u64::from(elapsed_ms(
                    t.wait.since_ms.load(Ordering::Relaxed),
                    now,
                ))),
            })
            .collect()
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let line = &self.excl;
        let last_holder = line.last().and_then(|tenure| {
            let thread = tenure.thread()?;
            let held_ms = tenure.held_ms();
            let ended = tenure.since().wrapping_add(held_ms);
            Some(LastHolder {
                thread: super::thread_info(thread),
                site: site_ref(tenure.site()),
                held: Duration::from_millis(u64::from(held_ms)),
                released_ago: Duration::from_millis(u64::from(elapsed_ms(ended, clock::now_ms()))),
                context: tenure.context(),
            })
        });
        let stats = &self.stats;
        // blocking-ok: snapshots only (a timeout adds itself with try_lock).
        let recent = self.recent_timeouts.lock();
        let recent_timeouts = recent
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        Snapshot {
            kind: self.kind,
            name: self.name(),
            label: self.label(),
            first_site: self.first_site,
            word: None,
            holders: self.holders(),
            waiters: self.waiters(),
            last_holder,
            stats: LockStats {
                exclusive_acquisitions: line.acquisitions(),
                shared_acquisitions: stats.shared_acquisitions.load(Ordering::Relaxed),
                contended: stats.contended.load(Ordering::Relaxed),
                timeouts: stats.timeouts.load(Ordering::Relaxed),
                wait: stats.wait.snapshot(),
                hold: stats.hold.snapshot(),
            },
            recent_timeouts,
        }
    }
}
