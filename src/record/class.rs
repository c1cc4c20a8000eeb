//! Lock classes: the unit that statistics are kept for, as in Linux's
//! lockdep and `lock_stat`.
//!
//! A lock's class is its label, or, for an unlabelled lock, its kind and the
//! site of its first acquisition: all the locks of one `Vec<Mutex<_>>`
//! locked from one line are one class. Counting per class instead of per
//! lock is what lets a lock carry no heap record: a program with a million
//! per-object locks has a handful of classes.
//!
//! Classes live in a fixed table of [`CLASSES`] entries, claimed with a
//! compare-exchange and never freed, so a `&'static Class` is always valid
//! and a lock, a thread's hold slot or a report may keep one. Looking a
//! class up is a hash probe with no lock; it happens on sampled and slow
//! paths only (the lock keeps its class once it is known). Classes past the
//! table's capacity share one overflow class.
//!
//! Counts kept here: acquisitions (exact; each thread counts in its own
//! record and moves its counts here, see `thread::Stripe`), sampled hold
//! times, and exact counts of what only slow paths pay for: contended
//! acquisitions, waits and timeouts.

use core::panic::Location;
use core::ptr;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use super::Kind;
use super::sites::WaitSites;
use crate::diag::TimeoutRecord;
use crate::histogram::Recorder;

/// Entries of the class table.
pub(crate) const CLASSES: usize = 4096;
/// Timeouts kept per class for snapshots.
pub(crate) const RECENT_TIMEOUTS: usize = 8;

/// One lock class and its statistics.
#[repr(align(64))]
pub(crate) struct Class {
    /// Its place in the class table ([`CLASSES`] for the overflow class):
    /// what a lock stores to name it.
    pub(crate) index: u32,
    pub(crate) kind: Kind,
    /// The label of a labelled class.
    pub(crate) label: Option<&'static str>,
    /// For an unlabelled class, its key: where its locks were first
    /// acquired. For a labelled one, where the first of its locks was.
    pub(crate) site: &'static Location<'static>,
    /// Exclusive acquisitions moved here from the threads' stripes.
    pub(crate) exclusive: AtomicU64,
    /// Shared and upgradable acquisitions moved here from the threads' stripes.
    pub(crate) shared: AtomicU64,
    /// Acquisitions that parked (exact).
    pub(crate) contended: AtomicU64,
    /// Timed acquisitions that gave up (exact).
    pub(crate) timeouts: AtomicU64,
    /// Time parked, per contended acquisition (exact).
    pub(crate) wait: Recorder,
    /// Hold times of sampled acquisitions.
    pub(crate) hold: Recorder,
    /// Wait time per waiting call site.
    pub(crate) sites: WaitSites,
    /// The latest timeouts, each with the address of its lock. Written
    /// with `try_lock` (a timeout that finds it busy is counted, not
    /// listed), read by snapshots.
    pub(crate) recent: Mutex<VecDeque<(usize, TimeoutRecord)>>,
}

static TABLE: [AtomicPtr<Class>; CLASSES] = [const { AtomicPtr::new(ptr::null_mut()) }; CLASSES];
static OVERFLOW: AtomicPtr<Class> = AtomicPtr::new(ptr::null_mut());

/// What a class is looked up by.
#[derive(Clone, Copy)]
enum Key<'a> {
    Site(&'static Location<'static>, Kind),
    Label(&'a str),
}

impl Key<'_> {
    fn hash(&self) -> usize {
        // FNV-1a over the key's bytes: stable, and good enough for a table
        // probed only off the fast paths.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        match *self {
            Key::Site(site, kind) => {
                eat(&ptr::from_ref(site).addr().to_le_bytes());
                eat(&[kind as u8]);
            }
            Key::Label(label) => {
                eat(b"label:");
                eat(label.as_bytes());
            }
        }
        h as usize
    }

    fn matches(&self, class: &Class) -> bool {
        match *self {
            Key::Site(site, kind) => {
                class.label.is_none() && ptr::eq(class.site, site) && class.kind == kind
            }
            Key::Label(label) => class.label == Some(label),
        }
    }
}

impl Class {
    fn new(kind: Kind, label: Option<&'static str>, site: &'static Location<'static>) -> Self {
        Class {
            index: CLASSES as u32,
            kind,
            label,
            site,
            exclusive: AtomicU64::new(0),
            shared: AtomicU64::new(0),
            contended: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            wait: Recorder::new(),
            hold: Recorder::new(),
            sites: WaitSites::new(),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// The class's name: its label, else its kind and first site.
    pub(crate) fn name(&self) -> String {
        match self.label {
            Some(label) => label.to_string(),
            None => format!(
                "{} first locked at {}:{}",
                self.kind.name(),
                self.site.file(),
                self.site.line()
            ),
        }
    }

    /// Keeps `record` (of the lock at `lock`) among the latest timeouts.
    #[cold]
    pub(crate) fn add_timeout(&self, lock: usize, record: TimeoutRecord) {
        // Skipped rather than waited for if a snapshot is reading the list.
        if let Ok(mut recent) = self.recent.try_lock() {
            if recent.len() == RECENT_TIMEOUTS {
                recent.pop_front();
            }
            recent.push_back((lock, record));
        }
    }

    /// The latest timeouts of the lock at `lock`.
    pub(crate) fn timeouts_of(&self, lock: usize) -> Vec<TimeoutRecord> {
        // blocking-ok: snapshots only (a timeout adds itself with try_lock).
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .iter()
            .filter(|(at, _)| *at == lock)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

/// The class of unlabelled locks of `kind` first acquired at `site`.
#[cold]
pub(crate) fn of_site(site: &'static Location<'static>, kind: Kind) -> &'static Class {
    intern(Key::Site(site, kind), || Class::new(kind, None, site))
}

/// The class of locks labelled `label` (the first lock so labelled gives
/// its kind and site).
#[cold]
pub(crate) fn of_label(
    label: &str,
    kind: Kind,
    site: &'static Location<'static>,
) -> &'static Class {
    intern(Key::Label(label), || {
        let label: &'static str = Box::leak(label.to_owned().into_boxed_str());
        Class::new(kind, Some(label), site)
    })
}

fn intern(key: Key<'_>, make: impl FnOnce() -> Class) -> &'static Class {
    let start = key.hash() % CLASSES;
    let mut make = Some(make);
    let mut fresh: *mut Class = ptr::null_mut();
    for probe in 0..CLASSES {
        let entry = &TABLE[(start + probe) % CLASSES];
        let mut seen = entry.load(Ordering::Acquire);
        if seen.is_null() {
            if fresh.is_null() {
                let make = make.take().expect("made once");
                fresh = Box::into_raw(Box::new(make()));
            }
            // SAFETY: `fresh` is not shared yet.
            unsafe { (*fresh).index = ((start + probe) % CLASSES) as u32 };
            match entry.compare_exchange(
                ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                // SAFETY: published in the table, never freed.
                Ok(_) => return unsafe { &*fresh },
                Err(now) => seen = now,
            }
        }
        // SAFETY: table entries are leaked classes, never freed.
        let class = unsafe { &*seen };
        if key.matches(class) {
            if !fresh.is_null() {
                // SAFETY: `fresh` was never shared.
                drop(unsafe { Box::from_raw(fresh) });
            }
            return class;
        }
    }
    // The table is full: one class for every class past it.
    if !fresh.is_null() {
        // SAFETY: `fresh` was never shared.
        drop(unsafe { Box::from_raw(fresh) });
    }
    overflow()
}

#[cold]
fn overflow() -> &'static Class {
    let seen = OVERFLOW.load(Ordering::Acquire);
    if !seen.is_null() {
        // SAFETY: leaked, never freed.
        return unsafe { &*seen };
    }
    let fresh = Box::into_raw(Box::new(Class::new(
        Kind::Mutex,
        Some("(classes past the table's capacity)"),
        Location::caller(),
    )));
    match OVERFLOW.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: published, never freed.
        Ok(_) => unsafe { &*fresh },
        Err(winner) => {
            // SAFETY: `fresh` was never shared; `winner` is leaked.
            unsafe {
                drop(Box::from_raw(fresh));
                &*winner
            }
        }
    }
}

/// The class at `index` of the table ([`CLASSES`]: the overflow class).
pub(crate) fn by_index(index: u32) -> Option<&'static Class> {
    let entry = match TABLE.get(index as usize) {
        Some(entry) => entry,
        None => &OVERFLOW,
    };
    // SAFETY: entries are leaked classes, never freed.
    unsafe { entry.load(Ordering::Acquire).as_ref() }
}

/// Every class so far, the overflow class last.
pub(crate) fn all() -> impl Iterator<Item = &'static Class> {
    TABLE
        .iter()
        .chain(core::iter::once(&OVERFLOW))
        .filter_map(|entry| {
            // SAFETY: entries are leaked classes, never freed.
            unsafe { entry.load(Ordering::Acquire).as_ref() }
        })
}
