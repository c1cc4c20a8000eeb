//! What the watchdog reports: a thread dump for the locks involved in a
//! stall, and what it makes of it.

use core::fmt;
use core::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use super::{Holder, LastHolder, Mode, ThreadInfo, Waiter};

type Site = &'static Location<'static>;

/// `file:line`, or `?` when unknown.
pub(crate) struct At(pub(crate) Option<Site>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(site) => write!(f, "{}:{}", site.file(), site.line()),
            None => f.write_str("?"),
        }
    }
}

/// A stall: the locks involved and the diagnoses that apply.
///
/// Its `Display` is a thread dump for locks: one diagnosis per line, then
/// every lock involved with its holders, waiters and last holder.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StallReport {
    /// What the watchdog found, most serious first.
    pub diagnoses: Vec<Diagnosis>,
    /// Every lock a diagnosis names.
    pub locks: Vec<LockReport>,
    /// Where each waiting thread of a diagnosis parked: its stack, symbols
    /// resolved. Filled only with the `deadlock_detection` feature, which
    /// records a parking thread's stack; empty otherwise.
    pub stacks: Vec<ParkedStack>,
    /// Where each thread that holds a lock of a long hold or of a long wait
    /// is now: its stack when the report was made, not where it took the
    /// lock. Filled only when [`WatchdogConfig::holder_stacks`] is on
    /// (default off), and taken only on Linux with the `deadlock_detection`
    /// feature; elsewhere each entry says why there is no stack. Threads of
    /// a deadlock are parked, so [`StallReport::stacks`] already shows where
    /// they are.
    ///
    /// [`WatchdogConfig::holder_stacks`]: super::watchdog::WatchdogConfig::holder_stacks
    pub holder_stacks: Vec<HolderStack>,
}

/// A waiting thread's stack when it parked (see [`StallReport::stacks`]).
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ParkedStack {
    /// The waiting thread.
    pub thread: ThreadInfo,
    /// Its stack, one frame per line (the `backtrace` crate's format).
    pub backtrace: String,
}

/// A holding thread's current stack (see [`StallReport::holder_stacks`]).
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct HolderStack {
    /// The holding thread.
    pub thread: ThreadInfo,
    /// Its stack when the report was made, innermost frame first, symbols
    /// resolved (one frame per line, as [`ParkedStack::backtrace`]), or why
    /// there is none.
    pub stack: Result<String, NoStack>,
}

/// Why a [`HolderStack`] has no stack. Each says so in its `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum NoStack {
    /// Not Linux: another thread's stack is asked for with a Linux signal
    /// (`tgkill`), and nothing else is tried.
    Unsupported,
    /// Built without the `deadlock_detection` feature, which brings the
    /// stack walker.
    NeedsFeature,
    /// The program has its own handler for `SIGURG` (the signal the
    /// request is sent with), or replaced lockscope's: lockscope never
    /// replaces a program's handler, so it does not ask.
    SignalInUse,
    /// The thread exited (or its record went to another thread) before it
    /// answered.
    Exited,
    /// The thread did not answer within 100 ms: it blocks `SIGURG`, or is
    /// stopped (a debugger, `SIGSTOP`). The report goes on without its
    /// stack.
    NoAnswer,
    /// An earlier request's thread has started, and not finished, walking
    /// its stack: nothing is asked until it has (a request is answered
    /// into one buffer, one at a time).
    Busy,
}

impl fmt::Display for NoStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoStack::Unsupported => "current stack not available on this platform (Linux only)",
            NoStack::NeedsFeature => {
                "current stack not available: built without the `deadlock_detection` feature"
            }
            NoStack::SignalInUse => {
                "current stack not taken: the program has its own SIGURG handler"
            }
            NoStack::Exited => "current stack not taken: the thread exited",
            NoStack::NoAnswer => {
                "current stack not taken: the thread did not answer within 100 ms (SIGURG blocked, or the thread is stopped)"
            }
            NoStack::Busy => {
                "current stack not taken: an earlier request is still being answered"
            }
        })
    }
}

/// One lock in a [`StallReport`].
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LockReport {
    /// The label, or the kind and the site of the first acquisition.
    pub name: String,
    /// The label, if the lock has one.
    pub label: Option<Arc<str>>,
    /// `"Mutex"`, `"RwLock"` or `"RecursiveRwLock"`.
    pub kind: &'static str,
    /// Where the lock was first acquired.
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::site"))]
    pub first_site: Site,
    /// The lock word at the moment the latest waiter parked (its parked bit
    /// set), decoded: not the word now, which may have changed since
    /// (`None` when nobody waits: a lock may move, so the watchdog never
    /// reads a lock itself).
    pub word: Option<String>,
    /// Current holders (a holder whose thread has exited shows as such).
    pub holders: Vec<Holder>,
    /// Threads parked waiting for the lock.
    pub waiters: Vec<Waiter>,
    /// The last exclusive holder, once released.
    pub last_holder: Option<LastHolder>,
}

/// One thread's step around a waits-for cycle: it waits for `lock`, which
/// `holder` holds.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CycleStep {
    /// The waiting thread.
    pub thread: ThreadInfo,
    /// The lock it waits for (its name).
    pub lock: String,
    /// The mode it asks for.
    pub wait_mode: Mode,
    /// Where it asks for the lock.
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::opt_site"))]
    pub wait_site: Option<Site>,
    /// How long it has waited (1 ms resolution).
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::secs"))]
    pub waiting_for: Duration,
    /// The thread holding the lock (the next step's thread).
    pub holder: ThreadInfo,
    /// The mode it holds the lock in.
    pub hold_mode: Mode,
    /// Where the holder acquired it.
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::opt_site"))]
    pub hold_site: Option<Site>,
}

/// What a watchdog scan made of a stall.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum Diagnosis {
    /// Threads that wait for each other in a cycle: each waits for a lock
    /// that the next one holds (exclusively, or shared).
    Deadlock {
        /// The cycle, thread by thread.
        cycle: Vec<CycleStep>,
    },
    /// A thread waits for a lock it holds itself (the violation policy,
    /// `ViolationPolicy::Log`, let it through).
    SelfDeadlock {
        /// The thread, its wait and its own hold.
        step: CycleStep,
    },
    /// Threads wait for a lock that the word (when a waiter parked) says is
    /// held, but no running thread holds: a guard leaked with
    /// `mem::forget`, by a thread that has exited, or a corrupted word.
    Orphaned {
        /// The lock's name.
        lock: String,
        /// The word a waiter saw, decoded.
        word: Option<String>,
        /// Holders on record whose threads have exited.
        dead_holders: Vec<Holder>,
        /// How many threads wait.
        waiters: usize,
    },
    /// A thread has waited longer than the threshold (no cycle found).
    LongWait {
        /// The lock's name.
        lock: String,
        /// The waiting thread.
        waiter: Waiter,
    },
    /// A thread has held a lock longer than the threshold.
    LongHold {
        /// The lock's name.
        lock: String,
        /// The holding thread.
        holder: Holder,
    },
}

impl fmt::Display for CycleStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} waits ({:?}) at {} for \"{}\" ({:?} so far), held ({:?}) by {} since {}",
            self.thread,
            self.wait_mode,
            At(self.wait_site),
            self.lock,
            self.waiting_for,
            self.hold_mode,
            self.holder,
            At(self.hold_site)
        )
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diagnosis::Deadlock { cycle } => {
                write!(f, "DEADLOCK: {} threads wait for each other:", cycle.len())?;
                for step in cycle {
                    write!(f, "\n    {step}")?;
                }
                Ok(())
            }
            Diagnosis::SelfDeadlock { step } => write!(f, "SELF-DEADLOCK: {step}"),
            Diagnosis::Orphaned {
                lock,
                word,
                dead_holders,
                waiters,
            } => {
                write!(
                    f,
                    "ORPHANED LOCK: \"{lock}\": {waiters} thread(s) wait; the word says held ({}) but no running thread holds it",
                    word.as_deref().unwrap_or("word not seen")
                )?;
                if dead_holders.is_empty() {
                    f.write_str(" (no holder on record: a corrupted word, or a holder whose record was lost)")?;
                }
                for holder in dead_holders {
                    write!(f, "\n    leaked by: {holder}")?;
                }
                Ok(())
            }
            Diagnosis::LongWait { lock, waiter } => write!(
                f,
                "LONG WAIT: {} waits ({:?}) at {} for \"{lock}\" for {:?}",
                waiter.thread,
                waiter.mode,
                At(waiter.site),
                waiter.waiting_for
            ),
            Diagnosis::LongHold { lock, holder } => write!(f, "LONG HOLD: \"{lock}\": {holder}"),
        }
    }
}

impl fmt::Display for LockReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "lock \"{}\" ({})", self.name, self.kind)?;
        match &self.word {
            Some(word) => writeln!(f, "  word when the latest waiter parked: {word}")?,
            None => writeln!(f, "  word: not seen (nobody waits)")?,
        }
        if self.holders.is_empty() {
            writeln!(f, "  no holder on record")?;
        }
        for holder in &self.holders {
            writeln!(f, "  {holder}")?;
        }
        for waiter in &self.waiters {
            writeln!(
                f,
                "  {} waits ({:?}) at {} for {:?}",
                waiter.thread,
                waiter.mode,
                At(waiter.site),
                waiter.waiting_for
            )?;
        }
        if let Some(last) = &self.last_holder {
            write!(
                f,
                "  last holder: {} from {}, held {:?}, released {:?} ago",
                last.thread,
                At(last.site),
                last.held,
                last.released_ago
            )?;
            if last.context != 0 {
                write!(f, ", context {}", last.context)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl fmt::Display for StallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "lockscope thread dump for locks: {} diagnosis(es), {} lock(s)",
            self.diagnoses.len(),
            self.locks.len()
        )?;
        for diagnosis in &self.diagnoses {
            writeln!(f, "  {diagnosis}")?;
        }
        for lock in &self.locks {
            write!(f, "{lock}")?;
        }
        for stack in &self.stacks {
            writeln!(f, "{} parked at:\n{}", stack.thread, stack.backtrace)?;
        }
        for holder in &self.holder_stacks {
            match &holder.stack {
                Ok(stack) => writeln!(f, "{} holds, and is now at:\n{stack}", holder.thread)?,
                Err(why) => writeln!(f, "{} holds: {why}", holder.thread)?,
            }
        }
        Ok(())
    }
}

impl StallReport {
    /// Whether any diagnosis is a deadlock (of several threads, or of one).
    pub fn has_deadlock(&self) -> bool {
        self.diagnoses.iter().any(|d| {
            matches!(
                d,
                Diagnosis::Deadlock { .. } | Diagnosis::SelfDeadlock { .. }
            )
        })
    }

    /// Whether any diagnosis is an orphaned lock.
    pub fn has_orphan(&self) -> bool {
        self.diagnoses
            .iter()
            .any(|d| matches!(d, Diagnosis::Orphaned { .. }))
    }
}
