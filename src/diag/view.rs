//! Reports built from the recording engine's records: a lock's holders and
//! waiters (from the threads' records), its last holder (from the lock),
//! its statistics (from its class).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Holder, LastHolder, LockStats, Mode, Snapshot, ThreadInfo, Waiter};
use crate::record::clock::{self, elapsed_ms};
use crate::record::lock::{self as lockrec, LockDiag, site_ref};
use crate::record::thread::{self, ThreadRecord};
use crate::record::{Kind, class::Class};

/// A thread as reports show it.
pub(crate) fn thread_info(record: &ThreadRecord) -> ThreadInfo {
    ThreadInfo {
        id: record.id,
        name: record.name(),
        alive: record.alive(),
    }
}

fn ms(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

/// One hold found in a thread's record.
pub(crate) struct SeenHold {
    pub(crate) lock: usize,
    pub(crate) ident: usize,
    pub(crate) kind: Kind,
    pub(crate) holder: Holder,
}

/// One wait found in a thread's record.
pub(crate) struct SeenWait {
    pub(crate) lock: usize,
    pub(crate) ident: usize,
    pub(crate) kind: Kind,
    pub(crate) word: usize,
    pub(crate) waiter: Waiter,
}

/// Every hold recorded in `t`, read so that a hold that changes while it is
/// read is skipped rather than mixed with the next one.
fn holds_of_thread(t: &ThreadRecord, now: u32, mut f: impl FnMut(SeenHold)) {
    for i in 0..thread::HOLD_SLOTS {
        let word = t.holds[i].load(Ordering::Acquire);
        if word == 0 {
            continue;
        }
        let slot = &t.slots[i];
        let (lock, mode) = thread::untag(word);
        let ident = slot.ident.load(Ordering::Relaxed);
        let kind = Kind::from_code(slot.kind.load(Ordering::Relaxed));
        let site = site_ref(slot.site.load(Ordering::Relaxed));
        let since = slot.since_ms.load(Ordering::Relaxed);
        let context = slot.context.load(Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::Acquire);
        if t.holds[i].load(Ordering::Relaxed) != word {
            continue;
        }
        f(SeenHold {
            lock,
            ident,
            kind,
            holder: Holder {
                thread: thread_info(t),
                mode,
                site,
                held_for: ms(elapsed_ms(since, now)),
                context,
            },
        });
    }
}

/// Every hold of every thread.
pub(crate) fn all_holds(mut f: impl FnMut(SeenHold)) {
    let now = clock::now_ms();
    for t in thread::all() {
        holds_of_thread(t, now, &mut f);
    }
}

/// Every wait of every thread.
pub(crate) fn all_waits(mut f: impl FnMut(SeenWait)) {
    let now = clock::now_ms();
    for t in thread::all() {
        let lock = t.wait.lock.load(Ordering::Acquire);
        if lock == 0 {
            continue;
        }
        let w = &t.wait;
        let seen = SeenWait {
            lock,
            ident: w.ident.load(Ordering::Relaxed),
            kind: Kind::from_code(w.kind.load(Ordering::Relaxed)),
            word: w.word.load(Ordering::Relaxed),
            waiter: Waiter {
                thread: thread_info(t),
                mode: Mode::from_code(w.mode.load(Ordering::Relaxed)),
                site: site_ref(w.site.load(Ordering::Relaxed)),
                waiting_for: ms(elapsed_ms(w.since_ms.load(Ordering::Relaxed), now)),
            },
        };
        core::sync::atomic::fence(Ordering::Acquire);
        if t.wait.lock.load(Ordering::Relaxed) == lock {
            f(seen);
        }
    }
}

/// The current holders of the lock at `lock`.
pub(crate) fn holders_of(lock: usize) -> Vec<Holder> {
    let mut holders = Vec::new();
    all_holds(|h| {
        if h.lock == lock {
            holders.push(h.holder);
        }
    });
    // The exclusive holder first, as reports read best.
    holders.sort_by_key(|h| h.mode != Mode::Exclusive);
    holders
}

fn waiters_of(lock: usize) -> Vec<Waiter> {
    let mut waiters = Vec::new();
    all_waits(|w| {
        if w.lock == lock {
            waiters.push(w.waiter);
        }
    });
    waiters
}

/// Acquisitions counted in the threads' stripes and not yet moved to their
/// classes, by class index: (exclusive, shared).
pub(crate) fn striped_counts() -> HashMap<u32, (u64, u64)> {
    let mut counts: HashMap<u32, (u64, u64)> = HashMap::new();
    for t in thread::all() {
        for stripe in &t.stripes {
            let ident = stripe.ident.load(Ordering::Acquire);
            if ident == 0 {
                continue;
            }
            let kind = Kind::from_code(stripe.kind.load(Ordering::Relaxed));
            if let Some(class) = lockrec::class_of(ident, kind) {
                let entry = counts.entry(class.index).or_default();
                entry.0 += stripe.exclusive.load(Ordering::Relaxed);
                entry.1 += stripe.shared.load(Ordering::Relaxed);
            }
        }
    }
    counts
}

/// The statistics of a class (empty for none); `striped` from
/// [`striped_counts`], or `None` to read the stripes for this class alone.
pub(crate) fn class_stats(
    class: Option<&Class>,
    striped: Option<&HashMap<u32, (u64, u64)>>,
) -> LockStats {
    let Some(c) = class else {
        return LockStats::default();
    };
    let (exclusive, shared) = match striped {
        Some(map) => map.get(&c.index).copied().unwrap_or_default(),
        None => striped_counts().get(&c.index).copied().unwrap_or_default(),
    };
    LockStats {
        exclusive_acquisitions: c.exclusive.load(Ordering::Relaxed) + exclusive,
        shared_acquisitions: c.shared.load(Ordering::Relaxed) + shared,
        contended: c.contended.load(Ordering::Relaxed),
        timeouts: c.timeouts.load(Ordering::Relaxed),
        wait: c.wait.snapshot(),
        hold: c.hold.snapshot(),
    }
}

/// The last exclusive holder of a lock, given the ids in its holder field
/// and (while it is held exclusively) in the holder's slot.
fn last_holder(diag: &LockDiag, held_by: Option<u32>) -> Option<LastHolder> {
    let now = clock::now_ms();
    let (holder, site, held, ended, released) = diag.last(now);
    if !released {
        return None;
    }
    let id = match held_by {
        // Held now: the holder's slot remembers who held it before.
        Some(prev) => prev,
        None => u32::from(holder),
    };
    let record = thread::by_id(id);
    // A record claimed by a new thread after the hold ended is not the
    // holder's any more.
    let (thread, context) = match record {
        Some(r) if r.owned_since(ended) => (thread_info(r), r.context_released(diag.addr(), ended)),
        _ => (
            ThreadInfo {
                id,
                name: None,
                alive: false,
            },
            0,
        ),
    };
    Some(LastHolder {
        thread,
        site,
        held: ms(held),
        released_ago: ms(elapsed_ms(ended, now)),
        context,
    })
}

/// The snapshot of one lock, read through the lock itself.
pub(crate) fn snapshot(
    diag: &LockDiag,
    kind: Kind,
    word: String,
    exclusive: bool,
) -> Option<Snapshot> {
    let ident = diag.ident(kind);
    if ident == 0 {
        return None;
    }
    let lock = diag.addr();
    let mut holders = holders_of(lock);
    if exclusive && !holders.iter().any(|h| h.mode == Mode::Exclusive) {
        // A hold past its thread's slots: the lock names its holder, whose
        // site and start are not recorded.
        let (holder, ..) = diag.last(clock::now_ms());
        if let Some(t) = thread::by_id(u32::from(holder)) {
            holders.insert(
                0,
                Holder {
                    thread: thread_info(t),
                    mode: Mode::Exclusive,
                    site: None,
                    held_for: Duration::ZERO,
                    context: 0,
                },
            );
        }
    }
    // The previous holder of a lock held exclusively now is in its slot.
    let mut prev = None;
    for t in thread::all() {
        if let Some(i) = t.find(lock, Mode::Exclusive) {
            prev = Some(t.slots[i].prev.load(Ordering::Relaxed));
        }
    }
    let class = lockrec::known_class(ident);
    let (label, first_site) = lockrec::ident_parts(ident);
    Some(Snapshot {
        kind: kind.name(),
        name: lockrec::ident_name(ident, kind),
        label: label.map(Arc::from),
        first_site: first_site.unwrap_or_else(|| core::panic::Location::caller()),
        word: Some(word),
        holders,
        waiters: waiters_of(lock),
        last_holder: last_holder(diag, prev),
        stats: class_stats(class.or_else(|| lockrec::class_of(ident, kind)), None),
        recent_timeouts: class.map_or_else(Vec::new, |c| c.timeouts_of(lock)),
    })
}

/// A lock that some thread holds or waits for, as the threads' records
/// describe it.
pub(crate) struct LiveLock {
    pub(crate) ident: usize,
    pub(crate) kind: Kind,
    /// The lock word when the latest waiter parked (its parked bit set).
    pub(crate) word: Option<usize>,
    /// The exclusive holder first.
    pub(crate) holders: Vec<Holder>,
    pub(crate) waiters: Vec<Waiter>,
}

/// Every lock held or waited for now, by address, from the threads' records
/// alone (a lock found this way is never read: it may be dropped at any
/// moment).
pub(crate) fn live() -> BTreeMap<usize, LiveLock> {
    let mut found: BTreeMap<usize, LiveLock> = BTreeMap::new();
    let new = |ident, kind| LiveLock {
        ident,
        kind,
        word: None,
        holders: Vec::new(),
        waiters: Vec::new(),
    };
    all_holds(|h| {
        found
            .entry(h.lock)
            .or_insert_with(|| new(h.ident, h.kind))
            .holders
            .push(h.holder);
    });
    all_waits(|w| {
        let lock = found.entry(w.lock).or_insert_with(|| new(w.ident, w.kind));
        lock.waiters.push(w.waiter);
        lock.word = Some(w.word);
    });
    for lock in found.values_mut() {
        lock.holders.sort_by_key(|h| h.mode != Mode::Exclusive);
    }
    found
}

/// Snapshots of the locks held or waited for now, from the threads'
/// records alone.
pub(crate) fn live_locks() -> Vec<Snapshot> {
    let striped = striped_counts();
    live()
        .into_iter()
        .map(|(lock, f)| {
            let class = lockrec::class_of(f.ident, f.kind);
            let (label, first_site) = lockrec::ident_parts(f.ident);
            Snapshot {
                kind: f.kind.name(),
                name: lockrec::ident_name(f.ident, f.kind),
                label: label.map(Arc::from),
                first_site: first_site.unwrap_or_else(|| core::panic::Location::caller()),
                word: None,
                holders: f.holders,
                waiters: f.waiters,
                last_holder: None,
                stats: class_stats(class, Some(&striped)),
                recent_timeouts: class.map_or_else(Vec::new, |c| c.timeouts_of(lock)),
            }
        })
        .collect()
}
