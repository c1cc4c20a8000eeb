//! What a lock records in its own memory ([`LockDiag`], 16 bytes that hold
//! a mutex's lock word too) and the hooks its raw lock calls.
//!
//! A lock has no heap record. Its own memory holds what an inspection of
//! that one lock needs: the exclusive holder's id (which, once released,
//! names the last holder), the last exclusive hold's call site, length and
//! end, and the lock's identity (its class, or the site of its first
//! acquisition until a class is needed). Everything else is elsewhere:
//! - the details of a current hold (site, since, context) are in the
//!   holder's own thread record ([`super::thread`]), which is L1-hot;
//! - counts and histograms are per lock class ([`super::class`]), sampled
//!   where exact would cost the fast paths (acquisition counts, hold times)
//!   and exact where only slow paths pay (contention, waits, timeouts).
//!
//! So an uncontended acquisition or release writes the lock's own line,
//! which its compare-exchange owns anyway, and the thread's own record;
//! it allocates nothing and reads no precise clock. A shared acquisition
//! writes only the thread's record (readers share the lock's line).

use core::hint;
use core::panic::Location;
use core::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU16, AtomicU32, Ordering, fence};
use std::time::Duration;

use super::class::{self, Class};
use super::clock::{self, elapsed_ms};
use super::hot::HOT;
use super::thread::{self, SAMPLED, ThreadRecord};
use super::{Kind, Mode};

/// `ident` tag: the rest is the first acquisition's call site
/// ([`site_code`]).
const SITE: usize = 0b01;
/// `ident` tag: the rest is the lock's class index ([`class::by_index`]).
const CLASS: usize = 0b10;
/// `ident` value of a lock labelled at construction whose class is not yet
/// looked up (its tag is 0, as an unset identity's: one test sends both to
/// the slow path): `last` holds the label's pointer, `holder` its length.
const LABEL_PENDING: usize = 0b100;
const TAGS: usize = 0b11;

/// Bits of a [`site_code`].
const SITE_BITS: u32 = 27;
const SITE_MASK: u64 = (1 << SITE_BITS) - 1;

/// The address call sites are coded relative to: this crate's static data
/// (`HOT`, which the lock paths load anyway), near which the compiler puts
/// every `Location` of the same image.
#[inline(always)]
fn anchor() -> usize {
    ptr::from_ref(&HOT).addr()
}

/// A call site's distance from [`anchor`] in units of 8 bytes (a
/// `Location` is 8-aligned), as [`SITE_BITS`] bits of two's complement,
/// when it fits (within 512 MiB either way, as every site of the image
/// that holds this crate is); else 0 (a site in another shared object),
/// which reports show as unknown. Never 0 for a site that fits: no site is
/// at the anchor.
#[inline(always)]
pub(crate) fn site_code(site: *mut Location<'static>) -> u32 {
    let offset = site.expose_provenance().wrapping_sub(anchor());
    if offset_fits(offset) {
        code_of_offset(offset)
    } else {
        0
    }
}

/// Whether a site `offset` bytes from the anchor has a [`site_code`].
#[inline(always)]
fn offset_fits(offset: usize) -> bool {
    offset.wrapping_add(1 << (SITE_BITS + 2)) >> (SITE_BITS + 3) == 0
}

/// [`site_code`] of a site `offset` bytes from the anchor, if it fits.
#[inline(always)]
fn code_of_offset(offset: usize) -> u32 {
    ((offset >> 3) as u64 & SITE_MASK) as u32
}

// A site's three low bits are 0, so a code drops nothing.
const _: () = assert!(align_of::<Location<'static>>() >= 8);

/// The call site of a [`site_code`].
pub(crate) fn site_of(code: u32) -> Option<&'static Location<'static>> {
    if code == 0 {
        return None;
    }
    let shift = 64 - SITE_BITS;
    let offset = ((u64::from(code) << shift) as i64 >> shift) << 3;
    // SAFETY: a non-zero code is made only by `site_code` from a
    // `&'static Location` at this offset from the anchor, whose provenance
    // it exposed.
    unsafe {
        ptr::with_exposed_provenance::<Location<'static>>(anchor().wrapping_add(offset as usize))
            .as_ref()
    }
}

/// `ident` of the first site `site` (0 if its code does not fit).
fn site_ident(site: &'static Location<'static>) -> usize {
    match site_code(site_ptr(site)) as usize {
        0 => 0,
        code => code << 2 | SITE,
    }
}

/// `ident` of a class.
fn class_ident(class: &Class) -> usize {
    (class.index as usize) << 2 | CLASS
}

/// Holds at least this long (in ms) are stored in `held` in units of
/// `1 << LONG_SHIFT` ms (about a second), with the top bit set.
const LONG_HELD: u32 = 0x8000;
const LONG_SHIFT: u32 = 10;
/// The longest hold the fast release path stores as it is; longer ones, and
/// slow ones, take the cold path.
pub(crate) const LONGEST_FAST_HOLD: u32 = LONG_HELD - 1;

/// `held` of a hold of `ms` milliseconds: exact below 32.8 s, then to about
/// a second, saturating at about 9.3 hours.
fn encode_held(ms: u32) -> u16 {
    if ms < LONG_HELD {
        ms as u16
    } else {
        (LONG_HELD | (ms >> LONG_SHIFT).min(LONG_HELD - 1)) as u16
    }
}

fn decode_held(held: u16) -> u32 {
    let held = u32::from(held);
    if held & LONG_HELD == 0 {
        held
    } else {
        (held & !LONG_HELD) << LONG_SHIFT
    }
}

/// `last`'s fields: the site's code in the low [`SITE_BITS`], then the
/// hold's length ([`encode_held`]), then when it ended, in coarse units
/// ([`ended_unit`]).
const HELD_SHIFT: u32 = SITE_BITS;
const ENDED_SHIFT: u32 = HELD_SHIFT + 16;
/// Bits of an end time: units of 32 ms that wrap after about 18.6
/// hours.
const ENDED_BITS: u32 = 64 - ENDED_SHIFT;
const ENDED_MASK: u32 = (1 << ENDED_BITS) - 1;
/// Milliseconds per unit of a last hold's end, as a power of two.
pub(crate) const UNIT_SHIFT: u32 = 5;

/// End times this many units ahead of a reader's clock read as "now".
const SKEW_UNITS: u32 = 4;

/// The coarse time `ms` in the units a last hold's end is kept in.
#[inline(always)]
fn ended_unit(ms: u32) -> u64 {
    u64::from((ms >> UNIT_SHIFT) & ENDED_MASK)
}

/// A lock's diagnostics, in the lock itself: 16 bytes, one of them a
/// mutex's lock word, so that a `Mutex<()>` is 16 bytes and a
/// `Mutex<u64>` 24, and a lock and its data span fewer cache lines.
pub(crate) struct LockDiag {
    /// The last exclusive hold: its call site's [`site_code`], its length
    /// and its end (see [`HELD_SHIFT`]), stored as one word by the release
    /// (a pointer without provenance). Before the first acquisition of a
    /// lock labelled at construction: the label's pointer.
    last: AtomicPtr<u8>,
    /// The exclusive holder's thread id ([`thread::short_id`]) while the
    /// lock is held exclusively; after that, the last exclusive holder's; 0:
    /// never held exclusively. Written only by the exclusive holder.
    holder: AtomicU16,
    /// The lock's identity: 0 (never acquired nor labelled), a first site
    /// ([`SITE`]), a class ([`CLASS`]) or [`LABEL_PENDING`].
    ident: AtomicU32,
    /// A mutex's lock word (`raw::mutex`), here so that it shares the
    /// padding; unused by the other locks.
    pub(crate) word: AtomicU8,
}

const _: () = assert!(size_of::<LockDiag>() == 16);

/// How long [`LockDiag::set_label`] waits at most for an exclusive holder
/// whose hold it cannot see to have stored the lock's first site.
const LABEL_WAIT_NS: u64 = 100_000_000;

/// Whether an exclusive release left work for after the lock word is
/// released (a wait to record, in the releasing thread's record, when the
/// holder had parked for the lock), so that no histogram update lengthens
/// the critical section.
#[must_use]
pub(crate) struct Release(bool);

/// A shared acquisition prepared before its compare-exchange
/// ([`LockDiag::preparing_shared`]): the thread whose first hold slot is
/// filled in, if it was free.
pub(crate) struct Prepared {
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

#[inline(always)]
fn site_ptr(site: &'static Location<'static>) -> *mut Location<'static> {
    ptr::from_ref(site).cast_mut()
}

#[inline]
pub(crate) fn site_ref(site: *mut Location<'static>) -> Option<&'static Location<'static>> {
    // SAFETY: site pointers stored as sites only ever come from
    // `&'static Location` (a pending label is never read as one).
    unsafe { site.cast_const().as_ref() }
}

/// `file:line` of a recorded call site, for a report.
#[cold]
pub(crate) fn site_text(site: *mut Location<'static>) -> String {
    site_ref(site).map_or_else(
        || "an unknown site".to_string(),
        |s| format!("{}:{}", s.file(), s.line()),
    )
}

/// The class that a static identity (a `SITE` or `CLASS` value) stands for,
/// looked up (and created) if it is a site.
#[cold]
pub(crate) fn class_of(ident: usize, kind: Kind) -> Option<&'static Class> {
    match ident & TAGS {
        CLASS => class::by_index((ident >> 2) as u32),
        SITE => ident_site(ident).map(|site| class::of_site(site, kind)),
        _ => None,
    }
}

/// The first site a `SITE` identity names.
fn ident_site(ident: usize) -> Option<&'static Location<'static>> {
    site_of((ident as u32) >> 2)
}

/// The class a static identity names, if it has been created (never
/// creates one: for reports).
pub(crate) fn known_class(ident: usize) -> Option<&'static Class> {
    match ident & TAGS {
        CLASS => class::by_index((ident >> 2) as u32),
        _ => None,
    }
}

/// The name a static identity gives a lock of `kind`: its class's label,
/// else its kind and first site.
pub(crate) fn ident_name(ident: usize, kind: Kind) -> String {
    match (ident & TAGS, known_class(ident), ident_site(ident)) {
        (CLASS, Some(class), _) => class.name(),
        (SITE, _, Some(site)) => format!(
            "{} first locked at {}:{}",
            kind.name(),
            site.file(),
            site.line()
        ),
        _ => format!("{} (unnamed)", kind.name()),
    }
}

/// The label and first site a static identity gives.
pub(crate) fn ident_parts(
    ident: usize,
) -> (Option<&'static str>, Option<&'static Location<'static>>) {
    match ident & TAGS {
        CLASS => known_class(ident).map_or((None, None), |c| (c.label, Some(c.site))),
        SITE => (None, ident_site(ident)),
        _ => (None, None),
    }
}

/// The coarse clock, started if it is not running yet.
#[inline(always)]
fn coarse_now() -> u32 {
    let now = HOT.now_ms.load(Ordering::Relaxed);
    if now == 0 {
        hint::cold_path();
        return clock::now_ms();
    }
    now
}

impl LockDiag {
    pub(crate) const fn new(label: Option<&'static str>) -> Self {
        match label {
            Some(label) => {
                assert!(
                    label.len() <= u16::MAX as usize,
                    "a lock's label is at most 65,535 bytes"
                );
                LockDiag {
                    last: AtomicPtr::new(label.as_ptr().cast_mut()),
                    holder: AtomicU16::new(label.len() as u16),
                    ident: AtomicU32::new(LABEL_PENDING as u32),
                    word: AtomicU8::new(0),
                }
            }
            None => LockDiag {
                last: AtomicPtr::new(ptr::null_mut()),
                holder: AtomicU16::new(0),
                ident: AtomicU32::new(0),
                word: AtomicU8::new(0),
            },
        }
    }

    /// The pending label's bytes: `last` and `holder` as `new` stored them.
    ///
    /// # Safety
    /// `ident` must be [`LABEL_PENDING`], and nothing may have written these
    /// fields since `new` (a holder resolves the label before it writes them;
    /// a reader that does not hold the lock checks `ident` again after).
    unsafe fn pending_label(&self) -> &'static str {
        let ptr = self.last.load(Ordering::Relaxed);
        let len = usize::from(self.holder.load(Ordering::Relaxed));
        // SAFETY: per the caller, the pointer and length of a `&'static str`.
        unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(ptr, len)) }
    }

    /// The address that keys this lock in hold and wait slots.
    #[inline(always)]
    pub(crate) fn addr(&self) -> usize {
        ptr::from_ref(self).addr()
    }

    /// The lock's static identity, set at its first acquisition.
    #[inline(always)]
    fn ident_for(&self, kind: Kind, site: &'static Location<'static>) -> usize {
        self.ident_as(kind, site, false)
    }

    /// The lock's identity for its exclusive holder: as [`Self::ident_for`],
    /// but the lock's first acquisition stores its first site without a
    /// compare-exchange ([`Self::first_exclusive`]).
    #[inline(always)]
    fn ident_for_holder(&self, kind: Kind, site: &'static Location<'static>) -> usize {
        self.ident_as(kind, site, true)
    }

    /// The lock's identity, resolved on its first acquisition by
    /// [`Self::first_exclusive`] for an exclusive holder, else by
    /// [`Self::resolve`].
    #[inline(always)]
    fn ident_as(&self, kind: Kind, site: &'static Location<'static>, holder: bool) -> usize {
        let ident = self.ident.load(Ordering::Acquire) as usize;
        if ident & TAGS == 0 {
            hint::cold_path();
            return if holder {
                self.first_exclusive(kind, site)
            } else {
                self.resolve(kind, site)
            };
        }
        ident
    }

    /// The first acquisition of a lock, exclusive: its site becomes its
    /// identity with a plain store, as only an exclusive holder stores a
    /// first site this way (a compare-exchange would be one more locked
    /// instruction for every lock that is locked once and dropped). Two
    /// other writers may meet this store: [`Self::set_label`], which waits
    /// until it is done and then stores its label again if it was
    /// overwritten; and a waiter or a report resolving the identity at the
    /// same instant, which then keeps its own first site for that one park
    /// or report.
    #[cold]
    #[inline(never)]
    fn first_exclusive(&self, kind: Kind, site: &'static Location<'static>) -> usize {
        if self.ident.load(Ordering::Acquire) == 0 {
            let ident = site_ident(site);
            if ident != 0 {
                self.ident.store(ident as u32, Ordering::Release);
                return ident;
            }
        }
        self.resolve(kind, site)
    }

    /// The first acquisition of a lock: its first site becomes its
    /// identity, or its label is looked up as a class.
    #[cold]
    #[inline(never)]
    fn resolve(&self, kind: Kind, site: &'static Location<'static>) -> usize {
        loop {
            let ident = self.ident.load(Ordering::Acquire) as usize;
            let next = if ident == 0 {
                match site_ident(site) {
                    0 => class_ident(class::of_site(site, kind)),
                    ident => ident,
                }
            } else if ident == LABEL_PENDING {
                // SAFETY: only a holder resolves, and a release (which
                // overwrites the fields) happens only after a resolution.
                let label = unsafe { self.pending_label() };
                class_ident(class::of_label(label, kind, site))
            } else {
                return ident;
            };
            if self
                .ident
                .compare_exchange(
                    ident as u32,
                    next as u32,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                if ident == LABEL_PENDING {
                    self.last.store(ptr::null_mut(), Ordering::Relaxed);
                    self.holder.store(0, Ordering::Relaxed);
                }
                return next;
            }
        }
    }

    /// The lock's class, created if it is not yet (sampled and slow paths).
    #[cold]
    pub(crate) fn class(&self, kind: Kind, site: &'static Location<'static>) -> &'static Class {
        let ident = self.ident_for(kind, site);
        let class = class_of(ident, kind).unwrap_or_else(|| class::of_site(site, kind));
        if ident & TAGS == SITE {
            // From now on the lock names its class directly (one
            // compare-exchange, once).
            let _ = self.ident.compare_exchange(
                ident as u32,
                class_ident(class) as u32,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        class
    }

    /// The calling thread now holds the lock exclusively.
    ///
    /// Writes the lock's holder field (on the line the acquisition's
    /// compare-exchange owns) and the first hold slot of the thread's own
    /// record; every rare case (the lock's first acquisition, the slot taken,
    /// a timed hold, lock-order checking) is cold.
    #[inline(always)]
    pub(crate) fn acquired_exclusive(&self, kind: Kind, site: &'static Location<'static>) {
        let Some(me) = thread::current() else {
            hint::cold_path();
            return;
        };
        let ident = self.ident.load(Ordering::Acquire) as usize;
        if ident & TAGS == 0 || me.holds[0].load(Ordering::Relaxed) != 0 {
            hint::cold_path();
            return self.acquired_exclusive_rare(me, kind, site);
        }
        self.hold_exclusive(me, 0, ident, kind, site);
    }

    /// Before an exclusive acquisition's compare-exchange: fills the
    /// thread's first hold slot, if it is free, without publishing it
    /// (nothing there is visible until its hold word is set, so a
    /// compare-exchange that fails leaves nothing to undo). It reads nothing
    /// of the lock: the compare-exchange is the first to touch the lock's
    /// line, and takes it owned in one transfer.
    #[inline(always)]
    pub(crate) fn preparing_exclusive(
        &self,
        kind: Kind,
        site: &'static Location<'static>,
    ) -> Prepared {
        let me = thread::current().filter(|me| me.holds[0].load(Ordering::Relaxed) == 0);
        if let Some(me) = me {
            me.fill(0, site, coarse_now(), kind as u8);
        }
        Prepared { me }
    }

    /// The lock's identity for a hold prepared in `me`'s slot `i`, read
    /// once the lock is taken (its line is owned by then), and stored in
    /// the slot.
    #[inline(always)]
    fn ident_into(
        &self,
        me: &ThreadRecord,
        i: usize,
        kind: Kind,
        site: &'static Location<'static>,
        exclusive: bool,
    ) -> usize {
        let ident = self.ident_as(kind, site, exclusive);
        me.slots[i].ident.store(ident, Ordering::Relaxed);
        ident
    }

    /// The exclusive acquisition prepared as `prepared` has taken the lock.
    #[inline(always)]
    pub(crate) fn acquired_prepared_exclusive(
        &self,
        prepared: Prepared,
        kind: Kind,
        site: &'static Location<'static>,
    ) {
        let Some(me) = prepared.me else {
            hint::cold_path();
            return self.acquired_exclusive(kind, site);
        };
        let ident = self.ident_into(me, 0, kind, site, true);
        self.publish_exclusive(me, 0, ident, kind, site);
    }

    /// Records the exclusive hold in `me`'s free slot `i`.
    #[inline(always)]
    fn hold_exclusive(
        &self,
        me: &ThreadRecord,
        i: usize,
        ident: usize,
        kind: Kind,
        site: &'static Location<'static>,
    ) {
        me.fill(i, site, coarse_now(), kind as u8);
        me.slots[i].ident.store(ident, Ordering::Relaxed);
        self.publish_exclusive(me, i, ident, kind, site);
    }

    /// Completes the exclusive hold filled in `me`'s slot `i`: the lock's
    /// holder, the count, and the hold word.
    #[inline(always)]
    fn publish_exclusive(
        &self,
        me: &ThreadRecord,
        i: usize,
        ident: usize,
        kind: Kind,
        site: &'static Location<'static>,
    ) {
        me.slots[i].prev.store(
            u32::from(self.holder.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        self.holder.store(me.short, Ordering::Relaxed);
        let mut word = thread::tag(self.addr(), Mode::Exclusive);
        if me.count(ident, kind as u8, true) {
            hint::cold_path();
            word |= timed(me, i);
        }
        if HOT.order_on.load(Ordering::Relaxed) {
            hint::cold_path();
            crate::diag::order::acquired(self.addr(), ident, kind, Mode::Exclusive, site);
        }
        me.publish(i, word);
    }

    #[cold]
    #[inline(never)]
    fn acquired_exclusive_rare(
        &self,
        me: &'static ThreadRecord,
        kind: Kind,
        site: &'static Location<'static>,
    ) {
        let ident = self.ident_for_holder(kind, site);
        match me.free_slot() {
            Some(i) => self.hold_exclusive(me, i, ident, kind, site),
            // No slot: the lock still names its holder.
            None => self.holder.store(me.short, Ordering::Relaxed),
        }
    }

    /// The exclusive holder is about to release the lock. Hand the result to
    /// [`Self::released_exclusive`] once the lock word is released.
    ///
    /// The common case (the hold is in the thread's first slot, not timed,
    /// not slow, made without a context, from a site in this image) stores
    /// the last holder's site, length and end on the lock's line and clears
    /// the slot; every other case passes one test to a cold path.
    #[inline(always)]
    pub(crate) fn releasing_exclusive(&self) -> Release {
        let Some(me) = thread::existing() else {
            hint::cold_path();
            return self.release_exclusive_rare(None);
        };
        let slot = &me.slots[0];
        let now = HOT.now_ms.load(Ordering::Relaxed);
        // A 0 (no ticker) makes `held` huge, and the cold path then reads
        // the time properly.
        let held = clock::raw_elapsed_ms(slot.since_ms.load(Ordering::Relaxed), now);
        let site = slot.site.load(Ordering::Relaxed).expose_provenance();
        let offset = site.wrapping_sub(anchor());
        if me.holds[0].load(Ordering::Relaxed) != thread::tag(self.addr(), Mode::Exclusive)
            || held >= HOT.rare_hold_ms.load(Ordering::Relaxed)
            || slot.context.load(Ordering::Relaxed) != 0
            || !offset_fits(offset)
        {
            hint::cold_path();
            return self.release_exclusive_rare(Some(me));
        }
        self.set_last(code_of_offset(offset), now, held as u16);
        me.holds[0].store(0, Ordering::Release);
        Release(false)
    }

    /// Every exclusive release but the common one: the hold is in another
    /// slot, sampled, parked first, slow, or not recorded (no free slot, a
    /// guard sent from another thread, a thread being torn down).
    #[cold]
    #[inline(never)]
    fn release_exclusive_rare(&self, me: Option<&'static ThreadRecord>) -> Release {
        let now = clock::now_ms();
        let addr = self.addr();
        let found = me
            .and_then(|me| me.find(addr, Mode::Exclusive).map(|i| (me, i)))
            .or_else(|| self.foreign_hold(Mode::Exclusive, me));
        let Some((owner, i)) = found else {
            // Not recorded: a hold past the thread's slots. The lock still
            // names its holder; its site and start are unknown.
            if let Some(me) = me {
                let _ = me
                    .overflow
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
            self.set_last(0, now, 0);
            return Release(false);
        };
        let slot = &owner.slots[i];
        let word = owner.holds[i].load(Ordering::Relaxed);
        let held = elapsed_ms(slot.since_ms.load(Ordering::Relaxed), now);
        let site = slot.site.load(Ordering::Relaxed);
        let ident = slot.ident.load(Ordering::Relaxed);
        let kind = Kind::from_code(slot.kind.load(Ordering::Relaxed));
        self.set_last(site_code(site), now, encode_held(held));
        let mut after = false;
        if word & SAMPLED != 0 {
            let class = class_of(ident, kind);
            let sampled_at = slot.sampled_at.swap(0, Ordering::Relaxed);
            let waited_ns = slot.waited_ns.swap(0, Ordering::Relaxed);
            if let Some(class) = class {
                if sampled_at != 0 {
                    class
                        .hold
                        .record(clock::precise_ns().saturating_sub(sampled_at));
                }
                if waited_ns != 0 {
                    if let Some(me) = me {
                        // Recorded by this thread once the word is released.
                        me.after_class.store(class.index, Ordering::Relaxed);
                        me.after_waited_ns.store(waited_ns, Ordering::Relaxed);
                        me.after_site.store(site, Ordering::Relaxed);
                        after = true;
                    } else {
                        record_wait(class, waited_ns, site);
                    }
                }
            }
        }
        let context = slot.context.load(Ordering::Relaxed);
        if context != 0 {
            owner.released_with(self.addr(), context, now);
        }
        if held >= super::slow_hold_ms() {
            slow_hold(ident, kind, Mode::Exclusive, site, context, held);
        }
        clear_hold(owner, me, i, word, now);
        Release(after)
    }

    /// The hold in `mode` of this lock recorded by a thread other than `me`
    /// (a guard sent to another thread: feature `send_guard`).
    #[cold]
    fn foreign_hold(
        &self,
        mode: Mode,
        me: Option<&'static ThreadRecord>,
    ) -> Option<(&'static ThreadRecord, usize)> {
        let addr = self.addr();
        let me = me.map_or(ptr::null(), ptr::from_ref);
        if mode == Mode::Exclusive {
            // The lock names its exclusive holder: look there first.
            let holder = self.holder.load(Ordering::Relaxed);
            if let Some(owner) = thread::by_id(u32::from(holder))
                && !ptr::eq(owner, me)
                && let Some(i) = owner.find(addr, mode)
            {
                return Some((owner, i));
            }
        }
        thread::all()
            .filter(|t| !ptr::eq(*t, me))
            .find_map(|t| t.find(addr, mode).map(|i| (t, i)))
    }

    /// The lock word is released: record what the release left.
    #[inline(always)]
    pub(crate) fn released_exclusive(&self, release: Release) {
        if release.0 {
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

    /// The calling thread now holds the lock in `mode` (shared or
    /// upgradable), with no slot prepared.
    #[inline(never)]
    pub(crate) fn acquired_shared(&self, kind: Kind, mode: Mode, site: &'static Location<'static>) {
        let Some(me) = thread::current() else { return };
        let ident = self.ident_for(kind, site);
        let Some(i) = me.free_slot() else { return };
        me.fill(i, site, coarse_now(), kind as u8);
        me.slots[i].ident.store(ident, Ordering::Relaxed);
        self.publish_shared(me, i, kind, mode, site, ident);
    }

    #[inline(always)]
    fn publish_shared(
        &self,
        me: &ThreadRecord,
        i: usize,
        kind: Kind,
        mode: Mode,
        site: &'static Location<'static>,
        ident: usize,
    ) {
        let mut word = thread::tag(self.addr(), mode);
        if me.count(ident, kind as u8, false) {
            hint::cold_path();
            word |= timed(me, i);
        }
        if HOT.order_on.load(Ordering::Relaxed) {
            hint::cold_path();
            crate::diag::order::acquired(self.addr(), ident, kind, mode, site);
        }
        me.publish(i, word);
    }

    /// Before a shared acquisition's compare-exchange: fills in the
    /// thread's first hold slot, if it is free, without publishing it, so
    /// that once the lock is taken [`Self::acquired_prepared`] has only to
    /// publish. Nothing here is visible to other threads (a slot is read
    /// only once its hold word is set), so a compare-exchange that fails
    /// leaves nothing to undo.
    #[inline(always)]
    pub(crate) fn preparing_shared(
        &self,
        kind: Kind,
        site: &'static Location<'static>,
    ) -> Prepared {
        let me = thread::current().filter(|me| me.holds[0].load(Ordering::Relaxed) == 0);
        if let Some(me) = me {
            me.fill(0, site, coarse_now(), kind as u8);
        }
        Prepared { me }
    }

    /// The shared acquisition prepared as `prepared` has taken the lock in
    /// `mode`.
    #[inline(always)]
    pub(crate) fn acquired_prepared(
        &self,
        prepared: Prepared,
        kind: Kind,
        mode: Mode,
        site: &'static Location<'static>,
    ) {
        let Some(me) = prepared.me else {
            hint::cold_path();
            return self.acquired_shared(kind, mode, site);
        };
        let ident = self.ident_into(me, 0, kind, site, false);
        self.publish_shared(me, 0, kind, mode, site, ident);
    }

    /// The calling thread released a hold in `mode` (shared or upgradable).
    ///
    /// Shaped for the release path: every call it may make is its last act
    /// (a tail call), and the rare cases (another slot, a sampled hold, a
    /// slow one, a foreign guard) share one test.
    #[inline(always)]
    pub(crate) fn released_shared(&self, mode: Mode) {
        let Some(me) = thread::existing() else {
            hint::cold_path();
            return self.release_shared_rare(None, mode);
        };
        let slot = &me.slots[0];
        let held = clock::raw_elapsed_ms(
            slot.since_ms.load(Ordering::Relaxed),
            HOT.now_ms.load(Ordering::Relaxed),
        );
        if me.holds[0].load(Ordering::Relaxed) != thread::tag(self.addr(), mode)
            || held >= HOT.rare_hold_ms.load(Ordering::Relaxed)
        {
            hint::cold_path();
            return self.release_shared_rare(Some(me), mode);
        }
        me.holds[0].store(0, Ordering::Release);
    }

    #[cold]
    #[inline(never)]
    fn release_shared_rare(&self, me: Option<&'static ThreadRecord>, mode: Mode) {
        let addr = self.addr();
        let found = me
            .and_then(|me| me.find(addr, mode).map(|i| (me, i)))
            .or_else(|| {
                // A hold past this thread's slots is its own, not a foreign one.
                if let Some(me) = me
                    && me
                        .overflow
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                {
                    return None;
                }
                self.foreign_hold(mode, me)
            });
        let Some((owner, i)) = found else { return };
        let slot = &owner.slots[i];
        let word = owner.holds[i].load(Ordering::Relaxed);
        let held = elapsed_ms(slot.since_ms.load(Ordering::Relaxed), clock::now_ms());
        let ident = slot.ident.load(Ordering::Relaxed);
        let kind = Kind::from_code(slot.kind.load(Ordering::Relaxed));
        if word & SAMPLED != 0
            && let Some(class) = class_of(ident, kind)
        {
            let sampled_at = slot.sampled_at.swap(0, Ordering::Relaxed);
            class
                .hold
                .record(clock::precise_ns().saturating_sub(sampled_at));
        }
        if held >= super::slow_hold_ms() {
            let site = slot.site.load(Ordering::Relaxed);
            slow_hold(
                ident,
                kind,
                mode,
                site,
                slot.context.load(Ordering::Relaxed),
                held,
            );
        }
        clear_hold(owner, me, i, word, clock::now_ms());
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
        kind: Kind,
        mode: Mode,
        site: &'static Location<'static>,
        word: usize,
        upgrading: bool,
        writer_ahead: bool,
        untimed: bool,
    ) -> Option<super::Hopeless> {
        let me = thread::current()?;
        let addr = self.addr();
        if !wait.parked {
            wait.parked = true;
            if wait.start_ns == 0 {
                wait.start_ns = clock::precise_ns();
            }
            let class = self.class(kind, site);
            class.contended.fetch_add(1, Ordering::Relaxed);
            let slot = &me.wait;
            slot.ident.store(class_ident(class), Ordering::Relaxed);
            slot.kind.store(kind as u8, Ordering::Relaxed);
            slot.mode.store(mode.code(), Ordering::Relaxed);
            slot.since_ms.store(clock::now_ms(), Ordering::Relaxed);
            slot.site.store(site_ptr(site), Ordering::Relaxed);
            // Before the wait is published: a deadlock check that sees the
            // wait finds this park's stack.
            #[cfg(feature = "deadlock_detection")]
            me.record_parked_stack();
            slot.lock.store(addr, Ordering::Release);
        }
        me.wait.word.store(word, Ordering::Relaxed);
        if !untimed {
            return None;
        }
        // Formatted only for a report: every park passes here.
        let here = format_args!("{}:{}", site.file(), site.line());
        for i in 0..thread::HOLD_SLOTS {
            let (held_lock, held) = thread::untag(me.holds[i].load(Ordering::Relaxed));
            if held_lock != addr {
                continue;
            }
            let hopeless = match (held, mode) {
                (Mode::Upgradable, _) if upgrading => false,
                (Mode::Exclusive, _) => true,
                (_, Mode::Exclusive | Mode::Upgradable) => true,
                (Mode::Shared, Mode::Shared) => writer_ahead,
                _ => false,
            };
            if hopeless {
                let held_site = me.slots[i].site.load(Ordering::Relaxed);
                let held_at = site_text(held_site);
                let why = if mode == Mode::Shared && held != Mode::Exclusive {
                    ", and a writer is queued behind that read"
                } else {
                    ""
                };
                let how = if held == Mode::Exclusive {
                    "exclusively, acquired at".to_string()
                } else {
                    format!("{held:?}, acquired at")
                };
                return Some(super::Hopeless {
                    why: format!(
                        "this thread already holds it ({how} {held_at}{why}) and asks for it again ({mode:?}) at {here}"
                    ),
                    held_at: site_ref(held_site),
                });
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
        kind: Kind,
        mode: Mode,
        site: &'static Location<'static>,
    ) {
        // A timed acquisition that gives up is recorded even if it never
        // parked (it spun until its deadline): its timeout is timed from the
        // call. A wait that neither parked nor gave up cost only spinning.
        if !wait.parked && (acquired || wait.start_ns == 0) {
            return;
        }
        let end = if wait.woke_ns != 0 {
            wait.woke_ns
        } else {
            clock::precise_ns()
        };
        let waited = end.saturating_sub(wait.start_ns).max(1);
        let me = thread::current();
        if let Some(me) = me {
            me.wait.lock.store(0, Ordering::Release);
        }
        let class = self.class(kind, site);
        if !acquired {
            if wait.parked {
                // Waits are those that parked (as `contended` counts them).
                class.wait.record(waited);
                class.sites.add(site, waited);
            }
            self.timed_out(class, kind, mode, site, Duration::from_nanos(waited));
            return;
        }
        if mode == Mode::Exclusive
            && let Some(me) = me
            && let Some(i) = me.find(self.addr(), Mode::Exclusive)
        {
            // The holder records its wait after its release, outside the
            // critical section.
            me.slots[i].waited_ns.store(waited, Ordering::Relaxed);
            let word = me.holds[i].load(Ordering::Relaxed);
            me.holds[i].store(word | SAMPLED, Ordering::Relaxed);
            return;
        }
        class.wait.record(waited);
        class.sites.add(site, waited);
    }

    /// The waiting thread leaves without waiting (a self-deadlock report
    /// that unwinds).
    #[cold]
    pub(crate) fn cancel_wait(&self) {
        if let Some(me) = thread::current() {
            me.wait.lock.store(0, Ordering::Release);
        }
    }

    #[cold]
    fn timed_out(
        &self,
        class: &'static Class,
        kind: Kind,
        mode: Mode,
        site: &'static Location<'static>,
        waited: Duration,
    ) {
        class.timeouts.fetch_add(1, Ordering::Relaxed);
        let holders = crate::diag::holders_of(self.addr());
        let me = thread::current().map(crate::diag::thread_info);
        let ident = class_ident(class);
        // The fields are evaluated only when a subscriber wants the event:
        // without one, a timeout formats nothing.
        tracing::warn!(
            target: "lockscope",
            lock = %ident_name(ident, kind),
            mode = ?mode,
            site = %format_args!("{}:{}:{}", site.file(), site.line(), site.column()),
            waited_ms = waited.as_secs_f64() * 1e3,
            holders = %holders
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            "timed lock acquisition gave up"
        );
        class.add_timeout(
            self.addr(),
            crate::diag::TimeoutRecord {
                thread: me,
                mode,
                site,
                waited,
                holders,
            },
        );
    }

    /// Labels the lock: it joins the class of that label.
    ///
    /// `held_exclusively` reads the lock word: whether a thread holds the
    /// lock exclusively.
    pub(crate) fn set_label(
        &self,
        kind: Kind,
        site: &'static Location<'static>,
        label: &str,
        held_exclusively: impl Fn() -> bool,
    ) {
        // A pending const label is resolved first, so that its fields are
        // free for the last holder.
        let _ = self.ident_for(kind, site);
        let want = class_ident(class::of_label(label, kind, site)) as u32;
        let me = thread::current().map_or(0, |me| me.short);
        let addr = self.addr();
        loop {
            self.ident.store(want, Ordering::Release);
            // A first exclusive acquisition that read the identity as 0
            // before it was resolved above stores its own site, once, after
            // taking the lock and before naming itself holder and publishing
            // its hold (`first_exclusive`). Wait until no such store can be
            // pending, then look again. (A hold that is never published, of
            // a thread past its hold slots, is waited for a bounded time.)
            let start = clock::precise_ns();
            while held_exclusively()
                && self.holder.load(Ordering::Acquire) != me
                && !thread::all().any(|t| t.find(addr, Mode::Exclusive).is_some())
                && clock::precise_ns() - start < LABEL_WAIT_NS
            {
                std::thread::yield_now();
            }
            if self.ident.load(Ordering::Acquire) == want {
                return;
            }
        }
    }

    /// The lock's name as reports show it (its label, else its kind and
    /// first acquisition site); `None` if it was never acquired nor
    /// labelled.
    #[cold]
    pub(crate) fn name(&self, kind: Kind) -> Option<String> {
        let ident = self.ident(kind);
        (ident != 0).then(|| ident_name(ident, kind))
    }

    /// The lock's static identity, resolving a pending label; 0 if the lock
    /// was never acquired nor labelled.
    pub(crate) fn ident(&self, kind: Kind) -> usize {
        match self.ident.load(Ordering::Acquire) as usize {
            LABEL_PENDING => self.read_pending_label(kind),
            ident => ident,
        }
    }

    /// A snapshot's view of a pending label: the lock's class, resolved
    /// without writing to the lock (a snapshot does not hold it). Read like
    /// a sequence lock: the label's fields are trusted only if `ident` still
    /// says "pending" after they were read.
    #[cold]
    fn read_pending_label(&self, kind: Kind) -> usize {
        let ptr = self.last.load(Ordering::Relaxed);
        let len = usize::from(self.holder.load(Ordering::Relaxed));
        fence(Ordering::Acquire);
        if self.ident.load(Ordering::Relaxed) as usize != LABEL_PENDING {
            return self.ident.load(Ordering::Acquire) as usize;
        }
        // SAFETY: `ident` was still pending after the fields were read, so
        // they are what `new` stored: a `&'static str`'s pointer and length.
        let label =
            unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(ptr, len)) };
        class_ident(class::of_label(label, kind, Location::caller()))
    }

    /// Stores the last exclusive hold: its site's code, end (coarse ms) and
    /// length, in one word.
    #[inline(always)]
    fn set_last(&self, site_code: u32, ended: u32, held: u16) {
        let word =
            u64::from(site_code) | u64::from(held) << HELD_SHIFT | ended_unit(ended) << ENDED_SHIFT;
        self.last.store(
            ptr::without_provenance_mut(word as usize),
            Ordering::Relaxed,
        );
    }

    /// The id of the lock's exclusive holder now or last, the last hold's
    /// site, length (ms) and end (coarse ms, to a unit of 32 ms,
    /// taken to be within the last 18 hours of `now`), and whether it was
    /// ever released. Racy by nature: read by snapshots while the lock may
    /// change hands.
    pub(crate) fn last(
        &self,
        now: u32,
    ) -> (u16, Option<&'static Location<'static>>, u32, u32, bool) {
        if self.ident.load(Ordering::Acquire) as usize == LABEL_PENDING {
            return (0, None, 0, 0, false);
        }
        let word = self.last.load(Ordering::Relaxed).addr() as u64;
        let mut units_ago =
            (ended_unit(now) as u32).wrapping_sub((word >> ENDED_SHIFT) as u32) & ENDED_MASK;
        if units_ago > ENDED_MASK - SKEW_UNITS {
            // Ended a moment "after" `now`: another thread's clock reading
            // was a little ahead of this one's.
            units_ago = 0;
        }
        let ended = (now >> UNIT_SHIFT << UNIT_SHIFT).wrapping_sub(units_ago << UNIT_SHIFT);
        (
            self.holder.load(Ordering::Relaxed),
            site_of((word & SITE_MASK) as u32),
            decode_held((word >> HELD_SHIFT) as u16),
            ended,
            word != 0,
        )
    }

    /// The lock is being dropped while the word says it is held (a leaked
    /// guard): its holds leave every thread record, so that a lock created
    /// later at the same address is not taken for held.
    #[cold]
    pub(crate) fn forget_holds(&self) {
        let addr = self.addr();
        for t in thread::all() {
            for hold in &t.holds {
                let word = hold.load(Ordering::Relaxed);
                if word != 0 && thread::untag(word).0 == addr {
                    let _ = hold.compare_exchange(word, 0, Ordering::AcqRel, Ordering::Relaxed);
                }
            }
        }
        crate::diag::order::retired(addr);
    }

    /// The lock is being dropped.
    #[inline]
    pub(crate) fn dropped(&self) {
        crate::diag::order::retired(self.addr());
    }
}

/// Clears the hold word `word` in `owner`'s slot `i`, at coarse time `now`,
/// for the releasing thread `me`.
fn clear_hold(
    owner: &ThreadRecord,
    me: Option<&'static ThreadRecord>,
    i: usize,
    word: usize,
    now: u32,
) {
    if ptr::eq(owner, me.map_or(ptr::null(), ptr::from_ref)) {
        owner.holds[i].store(0, Ordering::Release);
    } else {
        // Another thread's record (a guard sent here, or leaked by a thread
        // that exited): only its hold word is ours to clear, and only if it
        // is still this hold. A record of an exited thread is then kept from
        // reuse for this tick, so that the hold's end is never taken for a
        // later thread's.
        owner.hold_ended_by_another(now);
        let _ = owner.holds[i].compare_exchange(word, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// Starts timing the hold in `me`'s slot `i` for the hold-time histogram;
/// returns the hold word's [`SAMPLED`] bit.
#[cold]
#[inline(never)]
fn timed(me: &ThreadRecord, i: usize) -> usize {
    me.slots[i]
        .sampled_at
        .store(clock::precise_ns(), Ordering::Relaxed);
    SAMPLED
}

/// Records the wait that this thread's exclusive release left for after the
/// lock word's release.
#[cold]
#[inline(never)]
fn after_release() {
    let Some(me) = thread::existing() else { return };
    let waited_ns = me.after_waited_ns.swap(0, Ordering::Relaxed);
    if let Some(class) = class::by_index(me.after_class.load(Ordering::Relaxed)) {
        record_wait(class, waited_ns, me.after_site.load(Ordering::Relaxed));
    }
}

#[cold]
fn record_wait(class: &Class, waited_ns: u64, site: *mut Location<'static>) {
    class.wait.record(waited_ns);
    if let Some(site) = site_ref(site) {
        class.sites.add(site, waited_ns);
    }
}

#[cold]
fn slow_hold(
    ident: usize,
    kind: Kind,
    mode: Mode,
    site: *mut Location<'static>,
    context: u64,
    held_ms: u32,
) {
    let site = site_ref(site).map_or_else(String::new, |s| {
        format!("{}:{}:{}", s.file(), s.line(), s.column())
    });
    tracing::warn!(
        target: "lockscope",
        lock = %ident_name(ident, kind),
        mode = ?mode,
        site = %site,
        context,
        held_ms,
        "slow lock hold"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_code_names_its_site_and_a_far_address_has_none() {
        let here = Location::caller();
        let code = site_code(site_ptr(here));
        assert_ne!(code, 0);
        assert!(ptr::eq(site_of(code).unwrap(), here));
        // Sites on either side of the anchor, up to 512 MiB away.
        for offset in [8isize, -8, (1 << 29) - 8, -(1 << 29)] {
            let at = anchor().wrapping_add_signed(offset);
            assert!(offset_fits(at.wrapping_sub(anchor())), "{offset}");
        }
        for offset in [1isize << 29, -(1 << 29) - 8, 1 << 40] {
            let at = anchor().wrapping_add_signed(offset);
            assert!(!offset_fits(at.wrapping_sub(anchor())), "{offset}");
        }
    }

    #[test]
    fn the_last_hold_reads_back_its_site_length_and_end() {
        let diag = LockDiag::new(None);
        let here = Location::caller();
        let code = site_code(site_ptr(here));
        // An end long past (an hour, in ms since the clock's start), and a
        // reader 5 s later.
        let ended = 3_600_000;
        diag.set_last(code, ended, encode_held(1_234));
        let (_, site, held, read_end, released) = diag.last(ended + 5_000);
        assert!(released);
        assert!(ptr::eq(site.unwrap(), here));
        assert_eq!(held, 1_234);
        assert_eq!(read_end, ended >> UNIT_SHIFT << UNIT_SHIFT, "to a unit");
        // Across the coarse clock's wrap.
        let ended = u32::MAX - 10;
        diag.set_last(code, ended, encode_held(7));
        let (_, _, held, read_end, _) = diag.last(ended.wrapping_add(1_000));
        assert_eq!(held, 7);
        assert_eq!(read_end, ended >> UNIT_SHIFT << UNIT_SHIFT);
        // A reader whose clock is a little behind the releaser's.
        diag.set_last(code, 10_000, encode_held(0));
        assert_eq!(diag.last(9_990).3, 9_990 >> UNIT_SHIFT << UNIT_SHIFT);
        // A long hold is kept to about a second.
        diag.set_last(code, 10_000, encode_held(100_000));
        assert_eq!(diag.last(10_000).2 >> LONG_SHIFT, 100_000 >> LONG_SHIFT);
    }
}
