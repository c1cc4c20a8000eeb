//! Per-thread records: what each thread holds in shared mode, what it waits
//! for, and its context, written only by the thread itself.
//!
//! Readers of one lock must not all write one shared line (the first
//! incident of the design notes), so a shared acquisition is recorded in the
//! acquiring thread's own record, on lines no other thread writes. Snapshots
//! and the registry read these records from other threads.
//!
//! Records are never freed: a thread that exits hands its record back and a
//! new thread reuses it. So a pointer to a record stays valid for the life of
//! the process, and locks may keep one for their current and last holders.

use core::cell::Cell;
use core::hint;
use core::panic::Location;
use core::ptr;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use super::Mode;
use super::lock::LockRecord;

/// Shared holds a thread can have recorded at once; more are counted in
/// [`ThreadRecord::overflow`] but not listed.
pub(crate) const HOLD_SLOTS: usize = 8;
/// Shared acquisitions per timed one (for the hold-time histogram), on
/// average: a timed hold reads the precise clock twice, which costs as much
/// as ten uncontended acquisitions on these machines. (Exclusive tenures
/// are sampled at the same rate, per lock: `lock::SAMPLED_TENURES`.)
pub(crate) const TIMED_GAP: u32 = 256;
/// Bytes of a thread's name that reports show.
const NAME_BYTES: usize = 48;

/// The hold word of a slot: the lock record's address (aligned to 64) with
/// the mode's code in the low bits, so that finding a hold is one compare.
#[inline]
pub(crate) fn tag(lock: *mut LockRecord, mode: Mode) -> usize {
    lock.addr() | usize::from(mode.code())
}

/// Hold-word bit: this hold is sampled for the hold-time histogram, and its
/// slot's `sampled_at` is set.
pub(crate) const SAMPLED: usize = 4;

/// The lock record address and mode of a non-zero hold word.
#[inline]
pub(crate) fn untag(word: usize) -> (usize, Mode) {
    (word & !63, Mode::from_code((word & 3) as u8))
}

/// The details of one shared (or upgradable) hold. Its hold word (in
/// [`ThreadRecord::holds`]) is written last with Release and cleared first,
/// so a reader that sees it set sees the fields of that hold.
pub(crate) struct HoldSlot {
    pub(crate) since_ms: AtomicU32,
    pub(crate) site: AtomicPtr<Location<'static>>,
    pub(crate) context: AtomicU64,
    /// Precise acquisition time when this hold is sampled for the hold-time
    /// histogram, else 0.
    pub(crate) sampled_at: AtomicU64,
}

/// What the thread waits for, while it is parked on a lock.
pub(crate) struct WaitSlot {
    pub(crate) lock: AtomicPtr<LockRecord>,
    pub(crate) mode: AtomicU8,
    pub(crate) since_ms: AtomicU32,
    pub(crate) site: AtomicPtr<Location<'static>>,
}

/// What an exclusive release leaves for its thread to record once the lock
/// is free: written and read only by that thread, between the critical
/// section's end and the return of the release.
pub(crate) struct AfterRelease {
    /// The lock's record; null when nothing is left.
    pub(crate) record: AtomicPtr<LockRecord>,
    /// How long the holder waited for the lock, when it parked.
    pub(crate) wait_ns: AtomicU64,
    /// The precise acquisition time of a sampled tenure.
    pub(crate) sampled_at: AtomicU64,
    /// Where the holder asked for the lock.
    pub(crate) site: AtomicPtr<Location<'static>>,
}

/// A thread's diagnostic record.
#[repr(align(64))]
pub(crate) struct ThreadRecord {
    /// The lock of each hold slot, on one line so a scan reads one line.
    pub(crate) holds: [AtomicUsize; HOLD_SLOTS],
    pub(crate) slots: [HoldSlot; HOLD_SLOTS],
    pub(crate) wait: WaitSlot,
    /// The thread's scoped context value (0: none).
    pub(crate) context: AtomicU64,
    /// Shared holds that found no free slot.
    pub(crate) overflow: AtomicU32,
    /// Shared acquisitions left until the next sampled one.
    countdown: AtomicU32,
    /// What this thread's last exclusive release left to record once the
    /// lock word was released.
    pub(crate) after_release: AfterRelease,
    /// The length of the current sampling gap: what the next sample stands for.
    last_gap: AtomicU32,
    rng: AtomicU32,
    /// Small number, stable while the thread lives; reused after it exits.
    pub(crate) id: u32,
    /// Coarse time at which the current thread claimed this record: a tenure
    /// that began before it belongs to an earlier thread that has exited.
    pub(crate) claimed_ms: AtomicU32,
    /// Coarse time at which the last thread to own this record exited. The
    /// record is not reused within that same tick, so that every tenure of
    /// that thread began strictly before the next claim.
    released_ms: AtomicU32,
    /// The thread's name (truncated to [`NAME_BYTES`]), copied in without a
    /// lock when the thread claims the record; `name_len` 0: unnamed.
    name: [AtomicU8; NAME_BYTES],
    name_len: AtomicU8,
    in_use: AtomicBool,
    next: *const ThreadRecord,
}

// SAFETY: every field shared between threads is an atomic or a Mutex; `next`
// is written once before the record is published and only read afterwards.
unsafe impl Sync for ThreadRecord {}
// SAFETY: as above; records are never freed.
unsafe impl Send for ThreadRecord {}

/// Every record ever created, newest first (push-only).
static THREADS: AtomicPtr<ThreadRecord> = AtomicPtr::new(ptr::null_mut());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

thread_local! {
    static CURRENT: Cell<*const ThreadRecord> = const { Cell::new(ptr::null()) };
    static TORN_DOWN: Cell<bool> = const { Cell::new(false) };
    static RELEASER: Releaser = const { Releaser };
}

/// Hands the thread's record back when the thread exits.
struct Releaser;

impl Drop for Releaser {
    fn drop(&mut self) {
        let record = CURRENT.with(|c| c.replace(ptr::null()));
        TORN_DOWN.with(|t| t.set(true));
        if let Some(record) = unsafe_ref(record) {
            record.context.store(0, Ordering::Relaxed);
            record
                .released_ms
                .store(super::clock::now_ms(), Ordering::Relaxed);
            record.in_use.store(false, Ordering::Release);
        }
    }
}

/// `&'static` view of a record pointer (records are never freed).
#[inline]
pub(crate) fn unsafe_ref(record: *const ThreadRecord) -> Option<&'static ThreadRecord> {
    // SAFETY: every non-null record pointer points to a leaked, never-freed
    // record whose shared fields are atomics.
    unsafe { record.as_ref() }
}

/// The record with id `id` (0: none). Walks every record: for snapshots and
/// scans, never on a lock path.
pub(crate) fn by_id(id: u32) -> Option<&'static ThreadRecord> {
    if id == 0 {
        return None;
    }
    let mut at = THREADS.load(Ordering::Acquire);
    while let Some(record) = unsafe_ref(at) {
        if record.id == id {
            return Some(record);
        }
        at = record.next.cast_mut();
    }
    None
}

/// The calling thread's record; `None` while the thread is being torn down.
#[inline(always)]
pub(crate) fn current() -> Option<&'static ThreadRecord> {
    let record = CURRENT.with(Cell::get);
    if record.is_null() {
        hint::cold_path();
        return claim();
    }
    unsafe_ref(record)
}

/// The calling thread's record if it has one already (a release path: a
/// thread without one has recorded no hold).
#[inline(always)]
pub(crate) fn existing() -> Option<&'static ThreadRecord> {
    unsafe_ref(CURRENT.with(Cell::get))
}

#[cold]
#[inline(never)]
fn claim() -> Option<&'static ThreadRecord> {
    if TORN_DOWN.with(Cell::get) {
        return None;
    }
    let record = reuse().unwrap_or_else(create);
    record
        .claimed_ms
        .store(super::clock::now_ms(), Ordering::Relaxed);
    record.set_name(std::thread::current().name().unwrap_or(""));
    // Registering the destructor may fail while thread-locals are being
    // destroyed; then the record simply stays claimed.
    let _ = RELEASER.try_with(|_| {});
    CURRENT.with(|c| c.set(record));
    Some(record)
}

/// A record whose thread has exited and which holds nothing any more.
fn reuse() -> Option<&'static ThreadRecord> {
    let now = super::clock::now_ms();
    let mut at = THREADS.load(Ordering::Acquire);
    while let Some(record) = unsafe_ref(at) {
        if !record.in_use.load(Ordering::Relaxed)
            && record.holds.iter().all(|h| h.load(Ordering::Relaxed) == 0)
            && record.released_ms.load(Ordering::Relaxed) != now
            && record
                .in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Some(record);
        }
        at = record.next.cast_mut();
    }
    None
}

fn create() -> &'static ThreadRecord {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let record = Box::leak(Box::new(ThreadRecord {
        holds: [const { AtomicUsize::new(0) }; HOLD_SLOTS],
        slots: [const {
            HoldSlot {
                since_ms: AtomicU32::new(0),
                site: AtomicPtr::new(ptr::null_mut()),
                context: AtomicU64::new(0),
                sampled_at: AtomicU64::new(0),
            }
        }; HOLD_SLOTS],
        wait: WaitSlot {
            lock: AtomicPtr::new(ptr::null_mut()),
            mode: AtomicU8::new(0),
            since_ms: AtomicU32::new(0),
            site: AtomicPtr::new(ptr::null_mut()),
        },
        context: AtomicU64::new(0),
        overflow: AtomicU32::new(0),
        countdown: AtomicU32::new(0),
        after_release: AfterRelease {
            record: AtomicPtr::new(ptr::null_mut()),
            wait_ns: AtomicU64::new(0),
            sampled_at: AtomicU64::new(0),
            site: AtomicPtr::new(ptr::null_mut()),
        },
        last_gap: AtomicU32::new(1),
        rng: AtomicU32::new(id.wrapping_mul(0x9E37_79B9) | 1),
        id,
        claimed_ms: AtomicU32::new(0),
        released_ms: AtomicU32::new(0),
        name: [const { AtomicU8::new(0) }; NAME_BYTES],
        name_len: AtomicU8::new(0),
        in_use: AtomicBool::new(true),
        next: ptr::null(),
    }));
    let mut head = THREADS.load(Ordering::Relaxed);
    loop {
        record.next = head;
        match THREADS.compare_exchange_weak(head, record, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return record,
            Err(now) => head = now,
        }
    }
}

/// Every record that belongs to a live thread or still lists a hold.
pub(crate) fn all() -> impl Iterator<Item = &'static ThreadRecord> {
    let mut at = THREADS.load(Ordering::Acquire);
    core::iter::from_fn(move || {
        let record = unsafe_ref(at)?;
        at = record.next.cast_mut();
        Some(record)
    })
    .filter(|r| {
        r.in_use.load(Ordering::Relaxed) || r.holds.iter().any(|h| h.load(Ordering::Relaxed) != 0)
    })
}

impl ThreadRecord {
    fn set_name(&self, name: &str) {
        let mut end = name.len().min(NAME_BYTES);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        for (slot, byte) in self.name.iter().zip(name[..end].bytes()) {
            slot.store(byte, Ordering::Relaxed);
        }
        self.name_len.store(end as u8, Ordering::Release);
    }

    /// The thread's name when it claimed this record.
    pub(crate) fn name(&self) -> Option<Arc<str>> {
        let len = usize::from(self.name_len.load(Ordering::Acquire));
        if len == 0 {
            return None;
        }
        let bytes: Vec<u8> = self.name[..len]
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        // A record reused while being read could mix two names' bytes.
        Some(Arc::from(String::from_utf8_lossy(&bytes).as_ref()))
    }

    /// Whether the thread that owns this record is still running.
    pub(crate) fn alive(&self) -> bool {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Whether the thread that began a hold at coarse time `since_ms` is
    /// still running: the record is in use, and was not claimed by a later
    /// thread after that hold began (an exclusive tenure outlives its
    /// thread's claim on the record when its guard was leaked). A record is
    /// never reused in the tick its thread exited, so a tenure of the
    /// previous thread always began before the current claim.
    pub(crate) fn alive_since(&self, since_ms: u32) -> bool {
        let claimed = self.claimed_ms.load(Ordering::Relaxed);
        // Wrapping difference read as signed: positive when the claim is later.
        self.alive() && (super::clock::elapsed_ms(since_ms, claimed) as i32) <= 0
    }

    /// Records a shared hold of `lock`; returns whether this hold is sampled
    /// (and how many acquisitions the sample stands for).
    #[inline(always)]
    pub(crate) fn hold(
        &self,
        lock: *mut LockRecord,
        mode: Mode,
        site: &'static Location<'static>,
        now: u32,
    ) -> u32 {
        // Most threads hold one read lock at a time: the first slot is free.
        if self.holds[0].load(Ordering::Relaxed) == 0 {
            return self.hold_at(0, lock, mode, site, now);
        }
        self.hold_elsewhere(lock, mode, site, now)
    }

    /// [`Self::hold`] with the first slot taken.
    #[cold]
    #[inline(never)]
    fn hold_elsewhere(
        &self,
        lock: *mut LockRecord,
        mode: Mode,
        site: &'static Location<'static>,
        now: u32,
    ) -> u32 {
        let Some(i) = self
            .holds
            .iter()
            .position(|h| h.load(Ordering::Relaxed) == 0)
        else {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return 0;
        };
        self.hold_at(i, lock, mode, site, now)
    }

    /// Fills in the first hold slot for an acquisition at `site`, if the
    /// slot is free; its hold word stays 0, so nothing is published.
    #[inline(always)]
    pub(crate) fn prepare_first(&self, site: &'static Location<'static>) -> bool {
        if self.holds[0].load(Ordering::Relaxed) != 0 {
            hint::cold_path();
            return false;
        }
        self.fill(0, site, super::clock::now_ms());
        true
    }

    /// Publishes the hold that [`Self::prepare_first`] filled in, once the
    /// lock is taken; returns what its sample stands for, as [`Self::hold`].
    #[inline(always)]
    pub(crate) fn publish_first(&self, lock: *mut LockRecord, mode: Mode) -> u32 {
        self.publish(0, lock, mode)
    }

    /// Records a shared hold in the free slot `i`.
    #[inline(always)]
    fn hold_at(
        &self,
        i: usize,
        lock: *mut LockRecord,
        mode: Mode,
        site: &'static Location<'static>,
        now: u32,
    ) -> u32 {
        self.fill(i, site, now);
        self.publish(i, lock, mode)
    }

    /// The details of a hold in the free slot `i`, not yet published.
    #[inline(always)]
    fn fill(&self, i: usize, site: &'static Location<'static>, now: u32) {
        let slot = &self.slots[i];
        slot.since_ms.store(now, Ordering::Relaxed);
        slot.site
            .store(ptr::from_ref(site).cast_mut(), Ordering::Relaxed);
        slot.context
            .store(self.context.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Publishes the hold filled in slot `i` (its hold word written last,
    /// with Release); returns what the sample stands for, 0 when the hold is
    /// not sampled.
    #[inline(always)]
    fn publish(&self, i: usize, lock: *mut LockRecord, mode: Mode) -> u32 {
        let left = self.countdown.load(Ordering::Relaxed);
        if left != 0 {
            self.countdown.store(left - 1, Ordering::Relaxed);
            self.holds[i].store(tag(lock, mode), Ordering::Release);
            return 0;
        }
        hint::cold_path();
        self.publish_sampled(i, lock, mode)
    }

    /// [`Self::publish`] for a sampled hold.
    #[cold]
    #[inline(never)]
    fn publish_sampled(&self, i: usize, lock: *mut LockRecord, mode: Mode) -> u32 {
        let gap = self.next_gap();
        // Counted samples are one in 64; one in `TIMED_GAP / 64` of them is
        // also timed (two precise clock reads, the dearest part of a sample).
        if (self.rng.load(Ordering::Relaxed) >> 16).is_multiple_of(TIMED_GAP / 64) {
            self.slots[i]
                .sampled_at
                .store(super::clock::precise_ns(), Ordering::Relaxed);
            self.holds[i].store(tag(lock, mode) | SAMPLED, Ordering::Release);
        } else {
            self.holds[i].store(tag(lock, mode), Ordering::Release);
        }
        gap
    }

    /// The slot of a shared hold of `lock` in `mode`, if this thread has one.
    #[inline(always)]
    pub(crate) fn find(&self, lock: *mut LockRecord, mode: Mode) -> Option<usize> {
        let word = tag(lock, mode);
        if self.holds[0].load(Ordering::Relaxed) & !SAMPLED == word {
            return Some(0);
        }
        (1..HOLD_SLOTS).find(|&i| self.holds[i].load(Ordering::Relaxed) & !SAMPLED == word)
    }

    /// Uniform in `1..=span`.
    #[cold]
    fn random_gap(&self, span: u32) -> u32 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng.store(x, Ordering::Relaxed);
        (x % span) + 1
    }

    /// Picks the length of the next sampling gap: uniform in 1..=127, so 64
    /// on average, and never in step with a loop over a few locks.
    #[cold]
    fn next_gap(&self) -> u32 {
        let gap = self.random_gap(127);
        self.countdown.store(gap - 1, Ordering::Relaxed);
        // This sample stands for the acquisitions of the gap that ended.
        self.last_gap.swap(gap, Ordering::Relaxed)
    }
}
