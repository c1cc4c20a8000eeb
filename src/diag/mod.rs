//! Diagnostics: who holds each lock, from where and since when; who waits;
//! counts, hold and wait times, timeouts; a registry of live locks.
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
//! What is exact and what is sampled:
//! - exact: exclusive acquisitions, contended acquisitions (those that had to
//!   park), timeouts, the current and last exclusive holder, shared holders
//!   (up to 8 per thread), waiters, the wait-time histogram;
//! - sampled: shared acquisitions (one in 64 per thread on average, each
//!   sample counting for the thread's shared acquisitions since its
//!   previous sample, whichever locks they were on: an estimate, unbiased
//!   over many samples; a thread that reads only one lock puts it within
//!   127 of the truth at each end of its run); the hold-time
//!   histogram (shared: one acquisition in 256 per thread on average,
//!   random gaps; exclusive: one tenure in 256 of each lock on average,
//!   spread by a multiplicative hash of the lock's count of tenures, the
//!   first tenure always);
//! - coarse (1 ms ticks): holder and waiter ages, last hold duration, the
//!   slow-hold threshold.

use core::fmt;
use core::panic::Location;
use std::sync::Arc;
#[cfg(not(all(feature = "diagnostics", not(any(loom, feature = "shuttle")))))]
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
mod clock;
#[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
mod histogram;
#[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
mod hot;
#[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
mod lock;
#[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
mod registry;
#[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
mod thread;
#[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
pub(crate) use lock::{LockDiag, Wait};

#[cfg(not(all(feature = "diagnostics", not(any(loom, feature = "shuttle")))))]
mod off;
#[cfg(not(all(feature = "diagnostics", not(any(loom, feature = "shuttle")))))]
pub(crate) use off::{LockDiag, Wait};

mod inspect;
pub use inspect::Inspect;

#[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
mod scan;
#[cfg(feature = "serde")]
mod ser;
#[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
mod sites;
mod stall;
pub use stall::{CycleStep, Diagnosis, LockReport, StallReport};

pub mod order;
pub mod profile;
pub mod watchdog;
pub use profile::{Profile, profile};

/// Whether this build records diagnostics.
pub const fn enabled() -> bool {
    cfg!(all(
        feature = "diagnostics",
        not(any(loom, feature = "shuttle"))
    ))
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
    #[cfg_attr(
        not(all(feature = "diagnostics", not(any(loom, feature = "shuttle")))),
        allow(dead_code)
    )]
    pub(crate) const fn code(self) -> u8 {
        match self {
            Mode::Exclusive => 0,
            Mode::Shared => 1,
            Mode::Upgradable => 2,
        }
    }

    #[cfg_attr(
        not(all(feature = "diagnostics", not(any(loom, feature = "shuttle")))),
        allow(dead_code)
    )]
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
    /// The thread's name, if it has one.
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

/// A histogram of durations in power-of-two buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurationHistogram {
    /// `buckets[i]` counts durations in `[2^(i-1), 2^i)` nanoseconds
    /// (`buckets[0]`: zero; the last bucket has no upper bound).
    pub buckets: Vec<u64>,
    /// Sum of all recorded durations.
    pub sum: Duration,
    /// Largest recorded duration.
    pub max: Duration,
}

impl DurationHistogram {
    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Mean duration (zero if empty).
    pub fn mean(&self) -> Duration {
        match self.count() {
            0 => Duration::ZERO,
            n => self.sum / u32::try_from(n).unwrap_or(u32::MAX),
        }
    }

    /// Upper bound of the bucket holding quantile `q` (0.0..=1.0).
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(1u64 << i.min(63))
                    .min(self.max.max(Duration::from_nanos(1)));
            }
        }
        self.max
    }
}

/// Counts and distributions of one lock.
#[derive(Clone, Debug, Default)]
pub struct LockStats {
    /// Exclusive acquisitions (exact; upgrades count).
    pub exclusive_acquisitions: u64,
    /// Shared and upgradable acquisitions (sampled estimate, see the module docs).
    pub shared_acquisitions: u64,
    /// Acquisitions that had to park.
    pub contended: u64,
    /// Timed acquisitions that gave up.
    pub timeouts: u64,
    /// Time spent parked, per contended acquisition.
    pub wait: DurationHistogram,
    /// Hold times of sampled acquisitions.
    pub hold: DurationHistogram,
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
    /// Counters and histograms.
    pub stats: LockStats,
    /// The most recent timed acquisitions that gave up (up to 8).
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
            "  acquisitions: {} exclusive, ~{} shared; {} contended, {} timeouts; wait max {:?}, hold max {:?} (sampled)",
            s.exclusive_acquisitions,
            s.shared_acquisitions,
            s.contended,
            s.timeouts,
            s.wait.max,
            s.hold.max
        )
    }
}

/// Snapshots of every live lock that has been acquired at least once.
///
/// Takes the registry's own mutex (never taken by an acquisition or a
/// release). Empty when diagnostics are off.
pub fn locks() -> Vec<Snapshot> {
    #[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
    {
        let mut all = Vec::new();
        registry::for_each(|record| all.push(record.snapshot()));
        all
    }
    #[cfg(not(all(feature = "diagnostics", not(any(loom, feature = "shuttle")))))]
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
    #[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
    {
        thread::current().map_or(0, |me| me.context.swap(context, Ordering::Relaxed))
    }
    #[cfg(not(all(feature = "diagnostics", not(any(loom, feature = "shuttle")))))]
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

#[cfg(not(all(feature = "diagnostics", not(any(loom, feature = "shuttle")))))]
static SLOW_HOLD_MS: AtomicU32 = AtomicU32::new(100);

/// Sets the hold time above which a release emits a `tracing` warning
/// (target `lockscope`, message "slow lock hold"). Default 100 ms;
/// `Duration::MAX` turns it off. Measured with the 1 ms coarse clock.
pub fn set_slow_hold_threshold(threshold: Duration) {
    let ms = u32::try_from(threshold.as_millis())
        .unwrap_or(u32::MAX)
        .max(1);
    #[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
    hot::set_slow_hold_ms(ms, lock::LONGEST_HOLD);
    #[cfg(not(all(feature = "diagnostics", not(any(loom, feature = "shuttle")))))]
    SLOW_HOLD_MS.store(ms, Ordering::Relaxed);
}

/// The current slow-hold threshold.
pub fn slow_hold_threshold() -> Duration {
    Duration::from_millis(u64::from(slow_hold_ms()))
}

#[inline]
pub(crate) fn slow_hold_ms() -> u32 {
    #[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
    let threshold = &hot::HOT.slow_hold_ms;
    #[cfg(not(all(feature = "diagnostics", not(any(loom, feature = "shuttle")))))]
    let threshold = &SLOW_HOLD_MS;
    threshold.load(Ordering::Relaxed)
}

#[cfg(all(feature = "diagnostics", not(any(loom, feature = "shuttle"))))]
fn thread_info(record: &thread::ThreadRecord) -> ThreadInfo {
    ThreadInfo {
        id: record.id,
        name: record.name(),
        alive: record.alive(),
    }
}
