//! parking_lot 0.13's deadlock detector, with the same API (cargo feature
//! `deadlock_detection`): [`check_deadlock`] returns every cycle of threads
//! that wait for one another, each thread with its id and the stack where
//! it parked.
//!
//! ```no_run
//! use std::thread;
//! use std::time::Duration;
//! use lockscope::deadlock;
//!
//! // A background thread that checks for deadlocks every ten seconds.
//! thread::spawn(move || loop {
//!     thread::sleep(Duration::from_secs(10));
//!     let deadlocks = deadlock::check_deadlock();
//!     if deadlocks.is_empty() {
//!         continue;
//!     }
//!     println!("{} deadlocks detected", deadlocks.len());
//!     for (i, threads) in deadlocks.iter().enumerate() {
//!         println!("Deadlock #{i}");
//!         for t in threads {
//!             println!("Thread Id {:#?}", t.thread_id());
//!             println!("{:#?}", t.backtrace());
//!         }
//!     }
//! });
//! ```
//!
//! What it finds, and how it differs from parking_lot's:
//! - It is the watchdog's cycle search (`diag::watchdog`) run on demand: the
//!   waits-for graph comes from the threads' own records (what each holds,
//!   what each is parked on), which diagnostics keep anyway. So it also sees
//!   the cycles parking_lot's detector misses: through `RwLock` readers
//!   (every read hold is recorded) and through timed acquisitions
//!   (`try_lock_for`, `try_write_for`, ...), which parking_lot leaves out.
//! - The records are read without stopping the threads. A cycle is
//!   returned only if two scans in a row see it, so a set of waits that
//!   merely passed through a cycle-shaped instant is not reported; a real
//!   deadlock stays.
//! - A cycle of one thread is reported too: a thread in a timed wait for a
//!   lock it holds itself (an untimed one is a [`crate::Violation`]).
//! - Every thread of a deadlock is parked, so the stack where it parked
//!   ([`DeadlockedThread::backtrace`]) is where it is now. The current
//!   stack of a holder that is *not* parked (a long hold) is the watchdog's
//!   business: `diag::watchdog::WatchdogConfig::holder_stacks`.
//! - With diagnostics compiled out (no `diagnostics` feature, or under a
//!   model checker) nothing is recorded and [`check_deadlock`] always
//!   returns an empty list.
//!
//! What it costs: while the feature is on, every park on a lock walks the
//! parking thread's stack (without looking up symbols, which happens only
//! when [`DeadlockedThread::backtrace`] is called) and keeps it in the
//! thread's record, replacing the previous one. Uncontended acquisitions
//! and releases are unchanged; `check_deadlock` itself reads every thread
//! record twice.
//!
//! Unlike parking_lot 0.13, `deadlock_detection` can be combined with
//! `send_guard`: holds are recorded in the acquiring thread's record and a
//! guard released on another thread clears them there, so nothing is
//! corrupted. A guard sent to another thread is still counted as held by
//! the thread that acquired it, so a cycle through it names that thread.

use std::fmt;
use std::sync::OnceLock;

use backtrace::Backtrace;

use crate::diag::CycleStep;

/// One thread of a deadlock: which thread, where it parked, what it waits
/// for.
pub struct DeadlockedThread {
    thread_id: usize,
    step: CycleStep,
    unresolved: Option<Backtrace>,
    resolved: OnceLock<Backtrace>,
}

impl DeadlockedThread {
    /// The thread's id: lockscope's thread id, the `id` that diagnostics
    /// reports show for the same thread ([`crate::diag::ThreadInfo::id`]).
    pub fn thread_id(&self) -> usize {
        self.thread_id
    }

    /// The thread's stack when it parked on the lock it waits for, its
    /// symbols looked up on the first call. Empty if the thread parked
    /// before it could record one.
    pub fn backtrace(&self) -> &Backtrace {
        self.resolved.get_or_init(|| {
            let mut stack = self
                .unresolved
                .clone()
                .unwrap_or_else(|| Backtrace::from(Vec::new()));
            stack.resolve();
            stack
        })
    }

    /// What the thread waits for and who holds it (not in parking_lot): the
    /// lock's name, the modes and call sites of the wait and of the hold.
    pub fn waits_for(&self) -> &CycleStep {
        &self.step
    }
}

impl fmt::Debug for DeadlockedThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlockedThread")
            .field("thread_id", &self.thread_id)
            .field("waits_for", &format_args!("{}", self.step))
            .field("backtrace", self.backtrace())
            .finish()
    }
}

/// Every cycle of threads waiting for one another, now: each inner list is
/// one deadlock, its threads in the order they wait for each other (each
/// waits for a lock the next one holds; the last for one the first holds).
///
/// Empty when diagnostics are compiled out (see the module docs).
pub fn check_deadlock() -> Vec<Vec<DeadlockedThread>> {
    #[cfg(lockscope_diag)]
    {
        let first = crate::diag::scan::cycles_now();
        if first.is_empty() {
            return Vec::new();
        }
        crate::diag::scan::cycles_now()
            .into_iter()
            .filter(|(key, _)| first.iter().any(|(k, _)| k == key))
            .map(|(_, steps)| steps.into_iter().map(deadlocked).collect())
            .collect()
    }
    #[cfg(not(lockscope_diag))]
    {
        Vec::new()
    }
}

#[cfg(lockscope_diag)]
fn deadlocked(step: CycleStep) -> DeadlockedThread {
    let id = step.thread.id;
    DeadlockedThread {
        thread_id: id as usize,
        unresolved: crate::record::thread::by_id(id).and_then(|t| t.parked_stack()),
        step,
        resolved: OnceLock::new(),
    }
}
