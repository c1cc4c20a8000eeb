//! Diagnostics: who holds each lock, from where and since when; who waits;
//! counts, hold and wait times, timeouts; the locks held or waited for now.
//!
//! Always on in a default build (cargo feature `diagnostics`, a default
//! feature). Without it, or under a model checker (`--cfg loom`, feature
//! `shuttle`, whose threads share OS-thread locals), the locks record
//! nothing, keep parking_lot's sizes, and [`enabled`] returns false.
//!
//! ```
//! use lockscope::diag::{Inspect, Mode};
//! use lockscope::{Mutex, RawMutex};
//!
//! static CONFIG: Mutex<u32> = Mutex::from_raw(RawMutex::labelled("config"), 7);
//!
//! let guard = CONFIG.lock();
//! let seen = std::thread::spawn(|| CONFIG.snapshot()).join().unwrap();
//! drop(guard);
//! if lockscope::diag::enabled() {
//!     let seen = seen.expect("the lock was used");
//!     assert_eq!(seen.name, "config");
//!     assert_eq!(seen.holders[0].mode, Mode::Exclusive);
//!     assert!(seen.holders[0].site.is_some(), "the call site of CONFIG.lock()");
//! }
//! ```
//!
//! Where it is kept, and what is exact and what is sampled:
//! - in the lock itself (16 bytes, a mutex's word among them; beside the
//!   word of a rwlock): the exclusive holder's thread id, and the last
//!   exclusive holder's call site, hold time and release time (to 32 ms,
//!   read as within the last 18 hours); the lock's identity (its class, or
//!   the site of its first acquisition until a class is needed);
//! - in the holding thread's own record: the call site, start and context
//!   of every hold (exclusive, shared, upgradable; up to 16 per thread), and
//!   what the thread waits for;
//! - per lock class (the label, else the kind and the site of the first
//!   acquisition, as Linux's `lock_stat`), exact: acquisition counts
//!   (counted by each thread in its own record, in a stripe per class, and
//!   moved to the class when the stripe changes class or the thread exits;
//!   a report adds the stripes in), contended acquisitions (those that had
//!   to park), timeouts, the wait-time histogram and the waits per call
//!   site; sampled: the hold-time histogram (one acquisition in 256 per
//!   thread and class is timed);
//! - coarse (1 ms ticks): holder and waiter ages, last hold duration, the
//!   slow-hold threshold.
//!
//! A lock allocates nothing: a program with a million locks has as many
//! classes as it has labels and first-acquisition sites.
//!
//! Thread names: a thread's record keeps the first 48 bytes of its name
//! (cut at a character boundary; `NAME_BYTES` in the crate's
//! `src/record/thread.rs`), copied when the thread first records anything
//! (usually its first lock); every report ([`ThreadInfo::name`], stall and order reports, the
//! deadlock module) shows that cut name.
//!
//! # `tracing` events
//!
//! Every event has target `lockscope`. Call sites are always
//! `file:line:col`.
//!
//! | message | level | fields |
//! |---|---|---|
//! | `slow lock hold` | WARN | `lock`, `mode`, `site`, `context`, `held_ms` |
//! | `timed lock acquisition gave up` | WARN | `lock`, `mode`, `site`, `waited_ms`, `holders` |
//! | `lock stall` (the watchdog) | ERROR | `report` |
//! | `lock order inversion` | ERROR | `report` |
//!
//! - `lock`: the lock's name: its label, else its kind and the site of its
//!   first acquisition (the class name reports use).
//! - `mode`: `Exclusive`, `Shared` or `Upgradable` (the [`Mode`] debug form).
//! - `site`: where the hold was acquired (slow hold) or where the timed
//!   acquisition was called (timeout), as `file:line:col`.
//! - `context`: the holder's context value ([`with_context`]; 0: none).
//! - `held_ms`: the hold's length in whole milliseconds (1 ms ticks).
//! - `waited_ms`: how long the timed acquisition waited, in milliseconds
//!   (fractional, from the precise clock).
//! - `holders`: the lock's holders at the timeout, `; `-separated, each as
//!   [`Holder`] displays it.
//! - `report`: the whole report ([`StallReport`], or
//!   [`order::OrderViolation`]) as it displays, several lines.

use core::fmt;
use core::panic::Location;
use std::sync::Arc;
#[cfg(not(lockscope_diag))]
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod inspect;
pub use inspect::Inspect;

#[cfg(lockscope_diag)]
pub(crate) mod scan;
#[cfg(feature = "serde")]
mod ser;
#[cfg(lockscope_diag)]
mod view;
#[cfg(lockscope_diag)]
pub(crate) use view::{holders_of, thread_info};
mod stall;
pub use stall::{CycleStep, Diagnosis, HolderStack, LockReport, NoStack, ParkedStack, StallReport};
#[cfg(all(lockscope_diag, feature = "deadlock_detection", target_os = "linux"))]
mod current_stack;

pub mod order;
pub mod profile;
pub mod watchdog;
pub use profile::{Profile, profile};

pub use crate::histogram::Histogram;

/// Whether this build records diagnostics.
pub const fn enabled() -> bool {
    cfg!(lockscope_diag)
}

/// What a hold or a wait is for.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// A mutex, or the write side of an RwLock.
    Exclusive,
    /// The read side of an RwLock.
    Shared,
    /// An upgradable read of an RwLock.
    Upgradable,
}

impl Mode {
    #[cfg_attr(not(lockscope_diag), allow(dead_code))]
    pub(crate) const fn code(self) -> u8 {
        match self {
            Mode::Exclusive => 0,
            Mode::Shared => 1,
            Mode::Upgradable => 2,
        }
    }

    #[cfg_attr(not(lockscope_diag), allow(dead_code))]
    pub(crate) const fn from_code(code: u8) -> Mode {
        match code {
            1 => Mode::Shared,
            2 => Mode::Upgradable,
            _ => Mode::Exclusive,
        }
    }
}

/// A thread as diagnostics know it.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    /// A small number, unique among live threads (reused after a thread exits).
    pub id: u32,
    /// The thread's name, if it has one: its first 48 bytes (cut at a
    /// character boundary), as the thread had it when it first took a lock.
    pub name: Option<Arc<str>>,
    /// Whether the thread is still running (a dead holder: a leaked guard).
    pub alive: bool,
}

impl fmt::Display for ThreadInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "thread {} \"{name}\"", self.id)?,
            None => write!(f, "thread {}", self.id)?,
        }
        if !self.alive {
            f.write_str(" (exited)")?;
        }
        Ok(())
    }
}

/// A thread holding a lock.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug)]
pub struct Holder {
    /// Who.
    pub thread: ThreadInfo,
    /// In which mode.
    pub mode: Mode,
    /// Where it acquired the lock.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::opt_site"))]
    pub site: Option<&'static Location<'static>>,
    /// How long it has held it (1 ms resolution).
    pub held_for: Duration,
    /// The thread's context when it acquired (see [`with_context`]); 0: none.
    pub context: u64,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} holds it {:?}", self.thread, self.mode)?;
        if let Some(site) = self.site {
            write!(f, " since {}:{}", site.file(), site.line())?;
        }
        write!(f, ", for {:?}", self.held_for)?;
        if self.context != 0 {
            write!(f, ", context {}", self.context)?;
        }
        Ok(())
    }
}

/// A thread parked waiting for a lock.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug)]
pub struct Waiter {
    /// Who.
    pub thread: ThreadInfo,
    /// For which mode.
    pub mode: Mode,
    /// Where it asked for the lock.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::opt_site"))]
    pub site: Option<&'static Location<'static>>,
    /// How long it has waited (1 ms resolution).
    pub waiting_for: Duration,
}

/// The last thread that held a lock exclusively.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug)]
pub struct LastHolder {
    /// Who (the record of a thread that has exited may have been reused).
    pub thread: ThreadInfo,
    /// Where it acquired the lock.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::opt_site"))]
    pub site: Option<&'static Location<'static>>,
    /// How long it held it (1 ms resolution).
    pub held: Duration,
    /// How long ago it released it.
    pub released_ago: Duration,
    /// Its context when it acquired; 0: none.
    pub context: u64,
}

/// A timed acquisition that gave up.
#[derive(Clone, Debug)]
pub struct TimeoutRecord {
    /// Who gave up.
    pub thread: Option<ThreadInfo>,
    /// For which mode.
    pub mode: Mode,
    /// Where it asked for the lock.
    pub site: &'static Location<'static>,
    /// How long it waited.
    pub waited: Duration,
    /// Who held the lock when it gave up.
    pub holders: Vec<Holder>,
}

/// Counts and distributions of one lock class (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct LockStats {
    /// Exclusive acquisitions, upgrades included.
    pub exclusive_acquisitions: u64,
    /// Shared and upgradable acquisitions.
    pub shared_acquisitions: u64,
    /// Acquisitions that had to park.
    pub contended: u64,
    /// Timed acquisitions that gave up.
    pub timeouts: u64,
    /// Time spent parked, per contended acquisition.
    pub wait: Histogram,
    /// Hold times of sampled acquisitions.
    pub hold: Histogram,
}

/// Everything one lock knows about itself.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// `"Mutex"` (also fair and reentrant mutexes), `"RwLock"`, `"RecursiveRwLock"`.
    pub kind: &'static str,
    /// The label, or the kind and the site of the first acquisition.
    pub name: String,
    /// The label, if the lock has one.
    pub label: Option<Arc<str>>,
    /// Where the lock was first acquired.
    pub first_site: &'static Location<'static>,
    /// The decoded lock word (only when read through the lock itself).
    pub word: Option<String>,
    /// Current holders.
    pub holders: Vec<Holder>,
    /// Threads parked waiting for it.
    pub waiters: Vec<Waiter>,
    /// The last exclusive holder, once released.
    pub last_holder: Option<LastHolder>,
    /// Counters and histograms of the lock's class.
    pub stats: LockStats,
    /// The most recent timed acquisitions of this lock that gave up (of the
    /// 8 latest of its class).
    pub recent_timeouts: Vec<TimeoutRecord>,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} ({})", self.name, self.kind)?;
        if let Some(word) = &self.word {
            writeln!(f, "  word: {word}")?;
        }
        for holder in &self.holders {
            writeln!(f, "  {holder}")?;
        }
        for waiter in &self.waiters {
            write!(f, "  {} waits ({:?})", waiter.thread, waiter.mode)?;
            if let Some(site) = waiter.site {
                write!(f, " at {}:{}", site.file(), site.line())?;
            }
            writeln!(f, " for {:?}", waiter.waiting_for)?;
        }
        if let Some(last) = &self.last_holder {
            write!(f, "  last holder: {}", last.thread)?;
            if let Some(site) = last.site {
                write!(f, " from {}:{}", site.file(), site.line())?;
            }
            writeln!(f, ", held {:?}", last.held)?;
        }
        let s = &self.stats;
        writeln!(
            f,
            "  acquisitions (class): {} exclusive, {} shared; {} contended, {} timeouts; wait max {:?}, hold max {:?} (sampled)",
            s.exclusive_acquisitions,
            s.shared_acquisitions,
            s.contended,
            s.timeouts,
            s.wait.max(),
            s.hold.max()
        )
    }
}

/// Snapshots of the locks that are held or waited for now, found through
/// the threads' records (a lock keeps no record of its own, so a lock that
/// nobody holds or waits for is not listed: inspect it through
/// [`Inspect::snapshot`]). Their statistics are their classes'. The lock
/// words are not read (`word` is `None`): a lock found this way may be
/// dropped at any moment. Empty when diagnostics are off.
pub fn locks() -> Vec<Snapshot> {
    #[cfg(lockscope_diag)]
    {
        view::live_locks()
    }
    #[cfg(not(lockscope_diag))]
    Vec::new()
}

/// Runs `f` with `context` attached to every lock acquisition it makes on
/// this thread (an app id, a request id), then restores the previous value.
///
/// ```
/// let m = lockscope::Mutex::new(());
/// lockscope::diag::with_context(42, || {
///     assert_eq!(lockscope::diag::context(), 42);
///     let _g = m.lock();
/// });
/// assert_eq!(lockscope::diag::context(), 0);
/// ```
pub fn with_context<R>(context: u64, f: impl FnOnce() -> R) -> R {
    struct Restore(u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            set_context(self.0);
        }
    }
    let _restore = Restore(set_context(context));
    f()
}

/// Sets this thread's context value (0: none) and returns the previous one.
pub fn set_context(context: u64) -> u64 {
    #[cfg(lockscope_diag)]
    {
        crate::record::thread::current().map_or(0, |me| me.context.swap(context, Ordering::Relaxed))
    }
    #[cfg(not(lockscope_diag))]
    {
        thread_local!(static CONTEXT: core::cell::Cell<u64> = const { core::cell::Cell::new(0) });
        CONTEXT.with(|c| c.replace(context))
    }
}

/// This thread's context value (0: none).
pub fn context() -> u64 {
    let previous = set_context(0);
    set_context(previous);
    previous
}

#[cfg(not(lockscope_diag))]
static SLOW_HOLD_MS: AtomicU32 = AtomicU32::new(100);

/// Sets the hold time above which a release emits a `tracing` warning
/// (target `lockscope`, message "slow lock hold"). Default 100 ms;
/// `Duration::MAX` turns it off. Measured with the 1 ms coarse clock.
pub fn set_slow_hold_threshold(threshold: Duration) {
    let ms = u32::try_from(threshold.as_millis())
        .unwrap_or(u32::MAX)
        .max(1);
    #[cfg(lockscope_diag)]
    crate::record::hot::set_slow_hold_ms(ms, crate::record::lock::LONGEST_FAST_HOLD);
    #[cfg(not(lockscope_diag))]
    SLOW_HOLD_MS.store(ms, Ordering::Relaxed);
}

/// The current slow-hold threshold.
pub fn slow_hold_threshold() -> Duration {
    Duration::from_millis(u64::from(slow_hold_ms()))
}

#[inline]
pub(crate) fn slow_hold_ms() -> u32 {
    #[cfg(lockscope_diag)]
    let threshold = &crate::record::hot::HOT.slow_hold_ms;
    #[cfg(not(lockscope_diag))]
    let threshold = &SLOW_HOLD_MS;
    threshold.load(Ordering::Relaxed)
}
