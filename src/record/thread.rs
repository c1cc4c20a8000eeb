//! Per-thread records: every lock a thread holds (exclusive, shared or
//! upgradable), what it waits for, and its context, written only by the
//! thread itself.
//!
//! A hold is recorded in the acquiring thread's own record, on lines no
//! other thread writes (readers of one lock must not all write one shared
//! line), and keyed by the lock's
//! address. Only the exclusive holder's id and the last holder go into the
//! lock itself. Snapshots and the watchdog read these records from other
//! threads: they name a lock by the static identity recorded in the slot
//! (its class or first site), never by reading the lock, which may have
//! been dropped since.
//!
//! Records are never freed: a thread that exits hands its record back and a
//! new thread reuses it (not while it still lists a hold: a leaked guard of
//! an exited thread stays visible). So a pointer to a record stays valid for
//! the life of the process.

use core::cell::Cell;
use core::hint;
use core::panic::Location;
use core::ptr;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use super::Mode;
use super::lock::UNIT_SHIFT;

/// Holds a thread can have recorded at once; more are counted in
/// [`ThreadRecord::overflow`] but not listed.
pub(crate) const HOLD_SLOTS: usize = 16;
/// The classes whose acquisitions a thread counts in its own record at once
/// (direct-mapped by class identity): a thread that takes locks of more
/// classes than this, in turn, moves counts to the classes more often.
pub(crate) const STRIPES: usize = 4;
/// Acquisitions per timed one, on average (for the hold-time histogram): a
/// timed hold reads the precise clock twice.
pub(crate) const TIMED_GAP: u64 = 256;
/// Exclusive releases with a context that a thread remembers.
pub(crate) const RELEASED: usize = 4;
/// Bytes of a thread's name that reports show; longer names are cut there
/// (at a character boundary).
pub(crate) const NAME_BYTES: usize = 48;

/// The hold word of a slot: the lock's address (its diagnostics field,
/// aligned to 8) with the mode's code in the low bits, so that finding a
/// hold is one compare.
#[inline(always)]
pub(crate) fn tag(lock: usize, mode: Mode) -> usize {
    lock | usize::from(mode.code())
}

/// Hold-word bit: this hold is sampled for the hold-time histogram, and its
/// slot's `sampled_at` is set.
pub(crate) const SAMPLED: usize = 4;

/// The lock address and mode of a non-zero hold word.
#[inline]
pub(crate) fn untag(word: usize) -> (usize, Mode) {
    (word & !7, Mode::from_code((word & 3) as u8))
}

/// The details of one hold. Its hold word (in [`ThreadRecord::holds`]) is
/// written last with Release and cleared first, so a reader that sees it set
/// sees the fields of that hold.
pub(crate) struct HoldSlot {
    pub(crate) since_ms: AtomicU32,
    /// The lock's kind ([`super::Kind`] code).
    pub(crate) kind: AtomicU8,
    pub(crate) site: AtomicPtr<Location<'static>>,
    pub(crate) context: AtomicU64,
    /// The lock's static identity (a class or first site, never a per-lock
    /// record): what names it in reports.
    pub(crate) ident: AtomicUsize,
    /// For an exclusive hold: the id of the lock's previous exclusive holder
    /// (the lock keeps only the current one while held).
    pub(crate) prev: AtomicU32,
    /// Precise acquisition time when this hold is sampled for the hold-time
    /// histogram, else 0.
    pub(crate) sampled_at: AtomicU64,
    /// For an exclusive hold that parked first: how long it waited, recorded
    /// after its release, outside the critical section.
    pub(crate) waited_ns: AtomicU64,
}

/// One class's acquisitions by one thread, not yet moved to the class.
pub(crate) struct Stripe {
    /// The class's static identity (`lock::class_of`); 0: none.
    pub(crate) ident: AtomicUsize,
    pub(crate) kind: AtomicU8,
    pub(crate) exclusive: AtomicU64,
    pub(crate) shared: AtomicU64,
}

/// What the thread waits for, while it is parked on a lock.
pub(crate) struct WaitSlot {
    /// The lock's address; 0: not waiting.
    pub(crate) lock: AtomicUsize,
    pub(crate) ident: AtomicUsize,
    pub(crate) kind: AtomicU8,
    pub(crate) mode: AtomicU8,
    pub(crate) since_ms: AtomicU32,
    pub(crate) site: AtomicPtr<Location<'static>>,
    /// The lock word when this thread parked, with the parked bit it set (or
    /// found set), so that no report shows a parked wait as "not parked".
    pub(crate) word: AtomicUsize,
}

/// A thread's diagnostic record.
#[repr(align(64))]
pub(crate) struct ThreadRecord {
    /// The lock of each hold slot, side by side so a scan reads two lines.
    pub(crate) holds: [AtomicUsize; HOLD_SLOTS],
    pub(crate) slots: [HoldSlot; HOLD_SLOTS],
    pub(crate) wait: WaitSlot,
    /// The thread's scoped context value (0: none).
    pub(crate) context: AtomicU64,
    /// The latest exclusive releases made with a context: the lock's
    /// address, and the context (the lock keeps no room for it).
    pub(crate) released: [AtomicUsize; RELEASED],
    pub(crate) released_context: [AtomicU64; RELEASED],
    released_ended: [AtomicU32; RELEASED],
    released_next: AtomicU32,
    /// What this thread's last exclusive release left to record once the
    /// lock word was released: a wait of `after_waited_ns` from `after_site`
    /// for a lock of class `after_class`. Only this thread reads or writes
    /// them.
    pub(crate) after_class: AtomicU32,
    pub(crate) after_waited_ns: AtomicU64,
    pub(crate) after_site: AtomicPtr<Location<'static>>,
    /// Holds that found no free slot and have not been released.
    pub(crate) overflow: AtomicU32,
    /// Acquisition counts of the classes this thread uses most recently:
    /// exact counts, in the thread's own record, moved to the class when a
    /// stripe changes class or the thread exits.
    pub(crate) stripes: [Stripe; STRIPES],
    /// Small number, stable while the thread lives; reused after it exits.
    pub(crate) id: u32,
    /// The id as a lock stores it ([`short_id`]).
    pub(crate) short: u16,
    /// Coarse time at which the current thread claimed this record: a hold
    /// that ended before it belongs to an earlier thread that has exited.
    pub(crate) claimed_ms: AtomicU32,
    /// Coarse time at which the last thread to own this record exited. The
    /// record is not reused within that same unit of 32 ms, so that
    /// every hold of that thread ended in a unit strictly before the next
    /// claim's.
    released_ms: AtomicU32,
    /// The thread's name (cut to [`NAME_BYTES`]), copied in without a lock
    /// when the thread claims the record; `name_len` 0: unnamed.
    name: [AtomicU8; NAME_BYTES],
    name_len: AtomicU8,
    in_use: AtomicBool,
    next: *const ThreadRecord,
    /// The stack of the thread's latest park on a lock, unresolved (feature
    /// `deadlock_detection`). Written by the thread before it parks, read by
    /// `deadlock::check_deadlock` while the thread is parked, so the two
    /// meet on this mutex only if a check runs as the thread parks again.
    #[cfg(feature = "deadlock_detection")]
    pub(crate) parked_stack: std::sync::Mutex<Option<backtrace::Backtrace>>,
    /// The kernel's id of the thread that owns this record (Linux, feature
    /// `deadlock_detection`): where a report sends its request for the
    /// thread's current stack (`diag::current_stack`). A kernel thread id,
    /// not a `pthread_t`: signalled with `tgkill` in this process only, a
    /// stale one reaches no thread or another of this process's threads,
    /// where a stale `pthread_t` is a dangling pointer.
    #[cfg(all(feature = "deadlock_detection", target_os = "linux"))]
    pub(crate) tid: std::sync::atomic::AtomicI32,
}

/// A thread id as a lock's 16-bit holder field stores it: ids above
/// `u16::MAX - 1` (more than 65,534 threads alive at once) read as
/// [`UNKNOWN_ID`].
pub(crate) const fn short_id(id: u32) -> u16 {
    if id >= UNKNOWN_ID as u32 {
        UNKNOWN_ID
    } else {
        id as u16
    }
}

/// A holder id too large for a lock's holder field.
pub(crate) const UNKNOWN_ID: u16 = u16::MAX;

// SAFETY: every field shared between threads is an atomic; `next` is
// written once before the record is published and only read afterwards.
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
            record.flush_stripes();
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
    #[cfg(all(feature = "deadlock_detection", target_os = "linux"))]
    record.tid.store(current_tid(), Ordering::Relaxed);
    record.set_name(std::thread::current().name().unwrap_or(""));
    // Registering the destructor may fail while thread-locals are being
    // destroyed; then the record simply stays claimed.
    let _ = RELEASER.try_with(|_| {});
    CURRENT.with(|c| c.set(record));
    Some(record)
}

/// The calling thread's kernel thread id.
#[cfg(all(feature = "deadlock_detection", target_os = "linux"))]
pub(crate) fn current_tid() -> i32 {
    // SAFETY: gettid takes no argument and cannot fail. Called as a raw
    // system call: the libc wrapper needs glibc 2.30.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    tid as i32
}

/// A record whose thread has exited and which holds nothing any more.
fn reuse() -> Option<&'static ThreadRecord> {
    let now = super::clock::now_ms();
    let mut at = THREADS.load(Ordering::Acquire);
    while let Some(record) = unsafe_ref(at) {
        if !record.in_use.load(Ordering::Relaxed)
            && record.holds.iter().all(|h| h.load(Ordering::Relaxed) == 0)
            && record.released_ms.load(Ordering::Relaxed) >> UNIT_SHIFT != now >> UNIT_SHIFT
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
                kind: AtomicU8::new(0),
                site: AtomicPtr::new(ptr::null_mut()),
                context: AtomicU64::new(0),
                ident: AtomicUsize::new(0),
                prev: AtomicU32::new(0),
                sampled_at: AtomicU64::new(0),
                waited_ns: AtomicU64::new(0),
            }
        }; HOLD_SLOTS],
        wait: WaitSlot {
            lock: AtomicUsize::new(0),
            ident: AtomicUsize::new(0),
            kind: AtomicU8::new(0),
            mode: AtomicU8::new(0),
            since_ms: AtomicU32::new(0),
            site: AtomicPtr::new(ptr::null_mut()),
            word: AtomicUsize::new(0),
        },
        context: AtomicU64::new(0),
        released: [const { AtomicUsize::new(0) }; RELEASED],
        released_context: [const { AtomicU64::new(0) }; RELEASED],
        released_ended: [const { AtomicU32::new(0) }; RELEASED],
        released_next: AtomicU32::new(0),
        after_class: AtomicU32::new(0),
        after_waited_ns: AtomicU64::new(0),
        after_site: AtomicPtr::new(ptr::null_mut()),
        overflow: AtomicU32::new(0),
        stripes: [const {
            Stripe {
                ident: AtomicUsize::new(0),
                kind: AtomicU8::new(0),
                exclusive: AtomicU64::new(0),
                shared: AtomicU64::new(0),
            }
        }; STRIPES],
        id,
        short: short_id(id),
        claimed_ms: AtomicU32::new(0),
        released_ms: AtomicU32::new(0),
        name: [const { AtomicU8::new(0) }; NAME_BYTES],
        name_len: AtomicU8::new(0),
        in_use: AtomicBool::new(true),
        next: ptr::null(),
        #[cfg(feature = "deadlock_detection")]
        parked_stack: std::sync::Mutex::new(None),
        #[cfg(all(feature = "deadlock_detection", target_os = "linux"))]
        tid: std::sync::atomic::AtomicI32::new(0),
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

    /// Records where this thread is about to park (feature
    /// `deadlock_detection`): a stack walk without symbol lookup, on the
    /// park's slow path only.
    #[cfg(feature = "deadlock_detection")]
    #[cold]
    #[inline(never)]
    pub(crate) fn record_parked_stack(&self) {
        let stack = backtrace::Backtrace::new_unresolved();
        // Only a deadlock check, cloning a parked thread's stack, holds it too.
        // blocking-ok: the park slow path, about to block anyway.
        let mut kept = self.parked_stack.lock().unwrap_or_else(|e| e.into_inner());
        let old = kept.replace(stack);
        drop(kept);
        // The previous stack is freed outside the mutex.
        drop(old);
    }

    /// The stack recorded at this thread's latest park, unresolved.
    #[cfg(feature = "deadlock_detection")]
    pub(crate) fn parked_stack(&self) -> Option<backtrace::Backtrace> {
        self.parked_stack
            // blocking-ok: a deadlock check, on no lock path.
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Another thread ends one of this record's holds at coarse time `now`:
    /// if this record's thread has exited, the record is not reused within
    /// that unit of 32 ms (see `owned_since`).
    pub(crate) fn hold_ended_by_another(&self, now: u32) {
        if !self.alive() {
            self.released_ms.store(now, Ordering::Relaxed);
        }
    }

    /// Whether the thread that owns this record is still running.
    pub(crate) fn alive(&self) -> bool {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Whether the thread that held a lock until coarse time `ended_ms` is
    /// the one that owns this record now: the record was not claimed by a
    /// later thread after that hold ended. Compared in the units a lock
    /// keeps its last hold's end in (32 ms): a record is never
    /// reused in the unit its thread exited, so a hold of the previous
    /// thread always ended in a unit before the current claim's.
    pub(crate) fn owned_since(&self, ended_ms: u32) -> bool {
        let claimed = self.claimed_ms.load(Ordering::Relaxed) >> UNIT_SHIFT;
        // Wrapping difference read as signed: positive when the claim is later.
        (claimed.wrapping_sub(ended_ms >> UNIT_SHIFT) as i32) <= 0
    }

    /// The first free hold slot, if any (most threads hold one lock at a
    /// time: the first one).
    #[inline(always)]
    pub(crate) fn free_slot(&self) -> Option<usize> {
        if self.holds[0].load(Ordering::Relaxed) == 0 {
            return Some(0);
        }
        hint::cold_path();
        self.free_slot_elsewhere()
    }

    #[cold]
    #[inline(never)]
    fn free_slot_elsewhere(&self) -> Option<usize> {
        let found = (1..HOLD_SLOTS).find(|&i| self.holds[i].load(Ordering::Relaxed) == 0);
        if found.is_none() {
            self.overflow.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Fills in the details of a hold in the free slot `i` that do not
    /// depend on the lock, not yet published (its hold word stays 0, so
    /// nothing is visible). The lock's identity follows once the lock is
    /// taken ([`HoldSlot::ident`]): reading it before would bring the lock's
    /// line in shared, and the acquisition would then fetch it a second time
    /// to own it.
    #[inline(always)]
    pub(crate) fn fill(&self, i: usize, site: &'static Location<'static>, now: u32, kind: u8) {
        let slot = &self.slots[i];
        slot.since_ms.store(now, Ordering::Relaxed);
        slot.site
            .store(ptr::from_ref(site).cast_mut(), Ordering::Relaxed);
        slot.context
            .store(self.context.load(Ordering::Relaxed), Ordering::Relaxed);
        slot.kind.store(kind, Ordering::Relaxed);
    }

    /// Counts an acquisition of a lock whose static identity is `ident`;
    /// returns whether its hold is to be timed for the hold-time histogram
    /// (one in [`TIMED_GAP`], picked by a multiplicative hash of the count,
    /// so that the timed ones fall in step with no short period of a
    /// workload).
    #[inline(always)]
    pub(crate) fn count(&self, ident: usize, kind: u8, exclusive: bool) -> bool {
        let stripe = &self.stripes[(ident >> 2) & (STRIPES - 1)];
        if stripe.ident.load(Ordering::Relaxed) != ident {
            hint::cold_path();
            self.switch_stripe(stripe, ident, kind);
        }
        let count = if exclusive {
            &stripe.exclusive
        } else {
            &stripe.shared
        };
        // Only this thread writes its stripes: a load and a store count
        // exactly without a locked instruction.
        let n = count.load(Ordering::Relaxed) + 1;
        count.store(n, Ordering::Relaxed);
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15) < u64::MAX / TIMED_GAP
    }

    /// Gives `stripe` to the class `ident`, moving its counts to the class
    /// it counted for.
    #[cold]
    #[inline(never)]
    fn switch_stripe(&self, stripe: &Stripe, ident: usize, kind: u8) {
        flush(stripe);
        stripe.kind.store(kind, Ordering::Relaxed);
        stripe.ident.store(ident, Ordering::Release);
    }

    /// Moves every stripe's counts to its class (the thread is exiting).
    pub(crate) fn flush_stripes(&self) {
        for stripe in &self.stripes {
            flush(stripe);
        }
    }

    /// Publishes the hold filled in slot `i` (its hold word written last,
    /// with Release).
    #[inline(always)]
    pub(crate) fn publish(&self, i: usize, word: usize) {
        self.holds[i].store(word, Ordering::Release);
    }

    /// The slot of a hold of `lock` in `mode`, if this thread has one.
    #[inline(always)]
    pub(crate) fn find(&self, lock: usize, mode: Mode) -> Option<usize> {
        let word = tag(lock, mode);
        if self.holds[0].load(Ordering::Relaxed) & !SAMPLED == word {
            return Some(0);
        }
        (1..HOLD_SLOTS).find(|&i| self.holds[i].load(Ordering::Relaxed) & !SAMPLED == word)
    }

    /// Remembers that this thread released `lock` with `context` (for the
    /// lock's last holder).
    #[cold]
    pub(crate) fn released_with(&self, lock: usize, context: u64, ended: u32) {
        let i = self.released_next.load(Ordering::Relaxed) as usize % RELEASED;
        self.released[i].store(0, Ordering::Release);
        self.released_context[i].store(context, Ordering::Relaxed);
        self.released_ended[i].store(ended, Ordering::Relaxed);
        self.released[i].store(lock, Ordering::Release);
        self.released_next.store((i + 1) as u32, Ordering::Relaxed);
    }

    /// The context of this thread's release of `lock` at coarse time
    /// `ended`, if it remembers one (a release without a context is not
    /// remembered: 0).
    pub(crate) fn context_released(&self, lock: usize, ended: u32) -> u64 {
        let newest = self.released_next.load(Ordering::Relaxed) as usize;
        for back in 1..=RELEASED {
            let i = (newest + RELEASED - back) % RELEASED;
            if self.released[i].load(Ordering::Acquire) == lock
                && self.released_ended[i].load(Ordering::Relaxed) >> UNIT_SHIFT
                    == ended >> UNIT_SHIFT
            {
                return self.released_context[i].load(Ordering::Relaxed);
            }
        }
        0
    }
}

/// Moves a stripe's counts to its class and empties it. A report that reads
/// the stripe meanwhile may count an acquisition twice or not at all, for
/// that instant.
#[cold]
fn flush(stripe: &Stripe) {
    let ident = stripe.ident.swap(0, Ordering::AcqRel);
    let exclusive = stripe.exclusive.swap(0, Ordering::Relaxed);
    let shared = stripe.shared.swap(0, Ordering::Relaxed);
    if ident == 0 || exclusive | shared == 0 {
        return;
    }
    let kind = super::Kind::from_code(stripe.kind.load(Ordering::Relaxed));
    if let Some(class) = super::lock::class_of(ident, kind) {
        class.exclusive.fetch_add(exclusive, Ordering::Relaxed);
        class.shared.fetch_add(shared, Ordering::Relaxed);
    }
}
