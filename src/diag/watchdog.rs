//! An opt-in background thread that finds stalls: threads waiting too long,
//! locks held too long, deadlocks (cycles in the waits-for graph, Mutex and
//! RwLock, shared and exclusive) and orphaned locks (waiters, a word that
//! says held, no running holder).
//!
//! ```
//! use std::time::Duration;
//! use lockscope::diag::watchdog::{self, WatchdogConfig};
//!
//! let handle = watchdog::spawn(
//!     WatchdogConfig::default()
//!         .period(Duration::from_millis(100))
//!         .wait_threshold(Duration::from_secs(1))
//!         .on_report(|report| eprintln!("{report}")),
//! );
//! // ... the program runs; a stall is reported through `tracing` (ERROR,
//! // target "lockscope") and the callback ...
//! drop(handle); // stops the thread and joins it
//! ```
//!
//! Every `period` the watchdog reads the thread records (what each thread
//! holds and waits for) and the lock classes; nothing on any lock path
//! changes or waits for it. A condition is
//! reported once it has been seen by two consecutive scans (so a report comes
//! within two periods of a wait or hold crossing its threshold, and a
//! transient view never makes one), and a report is made only when it holds
//! a condition not reported before: a deadlock that lasts is reported once.
//! Each report lists every condition current at that moment.
//!
//! With diagnostics off (feature `diagnostics` disabled, or under loom or
//! shuttle) [`spawn`] starts no thread and its handle reports nothing, and
//! [`check`] returns `None`.
//!
//! # Holders' current stacks
//!
//! A report names where each holder took its lock; with
//! [`WatchdogConfig::holder_stacks`] on, it also shows where each holder of
//! a long hold, and of a lock a long wait is for, is *now*
//! ([`StallReport::holder_stacks`]). It is off by default, even with the
//! `deadlock_detection` feature: a parking_lot user turns that feature on
//! for `check_deadlock`, and does not expect a library to start sending
//! signals to the program's threads.
//!
//! On Linux, with the `deadlock_detection` feature, the report sends the
//! holder a signal (`SIGURG`, with `tgkill`), and the holder's handler walks
//! its own stack into a buffer reserved in advance; the report waits up to
//! 100 ms for it, one holder at a time (16 holders at most per report), and
//! looks the symbols up itself.
//! What the handler does and does not do:
//! - it allocates nothing, takes no lock of lockscope's or of `backtrace`'s
//!   (it uses the unsynchronised walk), and does not look symbols up;
//! - it calls libgcc's unwinder, which is not async-signal-safe by any
//!   standard but takes no lock with glibc 2.35+ and libgcc 12+ (lock-free
//!   `_dl_find_object`), unless the program registers unwind tables at run
//!   time (some JIT compilers); with older ones, or such a JIT, a holder
//!   interrupted inside `dlopen` or the JIT's registration could wait in
//!   the handler forever. The report itself never waits more than 100 ms,
//!   and sends no further request while a walk is unfinished;
//! - the holder may see a system call that is never restarted (`nanosleep`,
//!   `poll`, `epoll_wait`, a read with a timeout) return `EINTR`, as with
//!   any profiler's signal; std's `thread::sleep` sleeps on, restartable
//!   calls restart (`SA_RESTART`).
//!
//! The handler is installed at the first request and only if `SIGURG` has
//! its default action: a program's own handler is never replaced, and then
//! each entry says so ([`NoStack::SignalInUse`]). A holder that does not
//! answer in time (it blocks `SIGURG`, or is stopped in a debugger) or that
//! has exited is reported as such, and the report goes on.
//!
//! On other platforms, and without `deadlock_detection`, each entry says
//! that the current stack is not available ([`NoStack::Unsupported`],
//! [`NoStack::NeedsFeature`]): nothing is sent, nothing waits.
//!
//! Threads in a deadlock are parked; where they are now is where they
//! parked, which [`StallReport::stacks`] and
//! `deadlock::DeadlockedThread::backtrace` show already, so no signal is
//! sent for them.
//!
//! [`NoStack::SignalInUse`]: super::NoStack::SignalInUse
//! [`NoStack::Unsupported`]: super::NoStack::Unsupported
//! [`NoStack::NeedsFeature`]: super::NoStack::NeedsFeature

use core::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::StallReport;

/// The user callback: called on the watchdog's thread with each report.
pub type Callback = Arc<dyn Fn(&StallReport) + Send + Sync>;

/// How often the watchdog scans, and what it calls a stall.
#[derive(Clone)]
pub struct WatchdogConfig {
    /// Time between scans (default 500 ms).
    pub period: Duration,
    /// A thread parked for a lock longer than this is stalled (default 1 s).
    /// Waits in a deadlock cycle also must be this old.
    pub wait_threshold: Duration,
    /// A lock held longer than this is reported (default 10 s).
    pub hold_threshold: Duration,
    /// Called with each report, besides the `tracing` event.
    pub callback: Option<Callback>,
    /// Whether a report asks each holder of a long hold, or of a lock a
    /// long wait is for, for its current stack (default off; see the
    /// module's "Holders' current stacks").
    pub holder_stacks: bool,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            period: Duration::from_millis(500),
            wait_threshold: Duration::from_secs(1),
            hold_threshold: Duration::from_secs(10),
            callback: None,
            holder_stacks: false,
        }
    }
}

impl fmt::Debug for WatchdogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchdogConfig")
            .field("period", &self.period)
            .field("wait_threshold", &self.wait_threshold)
            .field("hold_threshold", &self.hold_threshold)
            .field(
                "callback",
                &self.callback.as_ref().map(|_| "Fn(&StallReport)"),
            )
            .field("holder_stacks", &self.holder_stacks)
            .finish()
    }
}

impl WatchdogConfig {
    /// Sets the time between scans.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = lockscope::diag::watchdog::WatchdogConfig::default().period(Duration::from_millis(50));
    /// assert_eq!(c.period, Duration::from_millis(50));
    /// ```
    #[must_use]
    pub fn period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// Sets the wait threshold.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = lockscope::diag::watchdog::WatchdogConfig::default().wait_threshold(Duration::from_secs(2));
    /// assert_eq!(c.wait_threshold, Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn wait_threshold(mut self, threshold: Duration) -> Self {
        self.wait_threshold = threshold;
        self
    }

    /// Sets the hold threshold (`Duration::MAX`: never report holds).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = lockscope::diag::watchdog::WatchdogConfig::default().hold_threshold(Duration::MAX);
    /// assert_eq!(c.hold_threshold, Duration::MAX);
    /// ```
    #[must_use]
    pub fn hold_threshold(mut self, threshold: Duration) -> Self {
        self.hold_threshold = threshold;
        self
    }

    /// Sets whether reports show where holders are now (see the module's
    /// "Holders' current stacks"; default off).
    ///
    /// ```
    /// let c = lockscope::diag::watchdog::WatchdogConfig::default().holder_stacks(true);
    /// assert!(c.holder_stacks);
    /// ```
    #[must_use]
    pub fn holder_stacks(mut self, on: bool) -> Self {
        self.holder_stacks = on;
        self
    }

    /// Sets the callback that receives each report.
    ///
    /// ```
    /// let c = lockscope::diag::watchdog::WatchdogConfig::default()
    ///     .on_report(|report| eprintln!("{report}"));
    /// assert!(c.callback.is_some());
    /// ```
    #[must_use]
    pub fn on_report(mut self, f: impl Fn(&StallReport) + Send + Sync + 'static) -> Self {
        self.callback = Some(Arc::new(f));
        self
    }
}

/// The running watchdog: dropping it stops the thread and joins it.
#[must_use = "dropping the handle stops the watchdog"]
pub struct WatchdogHandle {
    #[cfg(lockscope_diag)]
    running: Option<on::Running>,
}

impl fmt::Debug for WatchdogHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchdogHandle")
            .field("running", &self.is_running())
            .finish()
    }
}

impl WatchdogHandle {
    /// Whether a watchdog thread runs (false with diagnostics off).
    ///
    /// ```
    /// let handle = lockscope::diag::watchdog::spawn(Default::default());
    /// assert_eq!(handle.is_running(), lockscope::diag::enabled());
    /// ```
    pub fn is_running(&self) -> bool {
        #[cfg(lockscope_diag)]
        {
            self.running.is_some()
        }
        #[cfg(not(lockscope_diag))]
        false
    }

    /// How many reports the watchdog has made so far.
    pub fn reports(&self) -> u64 {
        #[cfg(lockscope_diag)]
        {
            self.running.as_ref().map_or(0, on::Running::reports)
        }
        #[cfg(not(lockscope_diag))]
        0
    }
}

/// Starts a watchdog thread (named `lockscope-watchdog`) with `config`.
///
/// With diagnostics off, starts nothing: the handle reports nothing. If the
/// thread cannot be spawned, the handle is likewise inert.
pub fn spawn(config: WatchdogConfig) -> WatchdogHandle {
    #[cfg(lockscope_diag)]
    {
        WatchdogHandle {
            running: on::spawn(config),
        }
    }
    #[cfg(not(lockscope_diag))]
    {
        let _ = config;
        WatchdogHandle {}
    }
}

/// One scan now, on the calling thread, with `config`'s thresholds: every
/// current condition, without waiting for a second scan to confirm it, and
/// without calling the callback. `None` if nothing is stalled or diagnostics
/// are off.
///
/// ```
/// use lockscope::diag::watchdog::{check, WatchdogConfig};
/// assert!(check(&WatchdogConfig::default()).is_none());
/// ```
pub fn check(config: &WatchdogConfig) -> Option<StallReport> {
    #[cfg(lockscope_diag)]
    {
        let scan = super::scan::scan(config.wait_threshold, config.hold_threshold);
        let keys: Vec<&str> = scan.findings.iter().map(|f| f.key.as_str()).collect();
        on::report(&scan, &keys, config.holder_stacks)
    }
    #[cfg(not(lockscope_diag))]
    {
        let _ = config;
        None
    }
}

#[cfg(lockscope_diag)]
mod on {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use super::super::scan::{self, Scan};
    use super::super::{Diagnosis, HolderStack, NoStack, StallReport, ThreadInfo};
    use super::WatchdogConfig;

    struct Shared {
        stop: Mutex<bool>,
        wake: Condvar,
        reports: AtomicU64,
    }

    pub(super) struct Running {
        shared: Arc<Shared>,
        thread: Option<JoinHandle<()>>,
    }

    impl Running {
        pub(super) fn reports(&self) -> u64 {
            self.shared.reports.load(Ordering::Relaxed)
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            // blocking-ok: the watchdog's own stop flag, never on a lock path.
            *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.shared.wake.notify_all();
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    pub(super) fn spawn(config: WatchdogConfig) -> Option<Running> {
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            reports: AtomicU64::new(0),
        });
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("lockscope-watchdog".into())
            .spawn(move || run(&config, &theirs))
            .ok()?;
        Some(Running {
            shared,
            thread: Some(thread),
        })
    }

    fn run(config: &WatchdogConfig, shared: &Shared) {
        // Conditions seen by the previous scan, and those already reported
        // (while they last).
        let mut previous: HashSet<String> = HashSet::new();
        let mut reported: HashSet<String> = HashSet::new();
        loop {
            // A zero period would spin.
            let deadline = Instant::now() + config.period.max(Duration::from_millis(1));
            // blocking-ok: the watchdog's own stop flag, never on a lock path.
            let mut stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
            while !*stop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                // blocking-ok: the watchdog sleeping between scans.
                stop = match shared.wake.wait_timeout(stop, left) {
                    Ok((guard, _)) => guard,
                    Err(e) => e.into_inner().0,
                };
            }
            if *stop {
                return;
            }
            drop(stop);

            let scan = scan::scan(config.wait_threshold, config.hold_threshold);
            let current: HashSet<String> = scan.findings.iter().map(|f| f.key.clone()).collect();
            let confirmed: Vec<&str> = scan
                .findings
                .iter()
                .map(|f| f.key.as_str())
                .filter(|k| previous.contains(*k))
                .collect();
            reported.retain(|k| current.contains(k));
            if confirmed.iter().any(|k| !reported.contains(*k))
                && let Some(report) = report(&scan, &confirmed, config.holder_stacks)
            {
                reported.extend(confirmed.iter().map(|k| (*k).to_string()));
                shared.reports.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "lockscope", report = %report, "lock stall");
                if let Some(callback) = &config.callback {
                    callback(&report);
                }
            }
            previous = current;
        }
    }

    /// The report of the findings whose keys are in `keys`, with the
    /// current stacks of their holders if `holder_stacks`.
    pub(super) fn report(scan: &Scan, keys: &[&str], holder_stacks: bool) -> Option<StallReport> {
        let mut report = StallReport::default();
        let mut lock_ids = Vec::new();
        // Holders whose current stack a report shows: of a long hold, and
        // of a lock a long wait is for (a deadlock's are parked; an orphan's
        // have exited).
        let mut holders: Vec<&ThreadInfo> = Vec::new();
        for finding in scan
            .findings
            .iter()
            .filter(|f| keys.contains(&f.key.as_str()))
        {
            match &finding.diagnosis {
                Diagnosis::LongHold { holder, .. } => holders.push(&holder.thread),
                Diagnosis::LongWait { waiter, .. } => holders.extend(
                    finding
                        .locks
                        .iter()
                        .flat_map(|&i| &scan.locks[i].holders)
                        .map(|h| &h.thread)
                        .filter(|t| t.id != waiter.thread.id),
                ),
                _ => {}
            }
            report.diagnoses.push(finding.diagnosis.clone());
            for &i in &finding.locks {
                if !lock_ids.contains(&i) {
                    lock_ids.push(i);
                }
            }
        }
        if report.diagnoses.is_empty() {
            return None;
        }
        report.locks = lock_ids
            .into_iter()
            .map(|i| scan.locks[i].clone())
            .collect();
        #[cfg(feature = "deadlock_detection")]
        {
            report.stacks = parked_stacks(&report);
        }
        if holder_stacks {
            // At most this many holders are asked, each for up to 100 ms,
            // so that a report of many holders that cannot answer is not
            // held up for long.
            const ASKED_AT_MOST: usize = 16;
            for thread in holders {
                if report.holder_stacks.len() == ASKED_AT_MOST {
                    break;
                }
                // A holder parked in this report is where its parked stack
                // says.
                let shown = report.stacks.iter().any(|s| s.thread.id == thread.id)
                    || report
                        .holder_stacks
                        .iter()
                        .any(|s| s.thread.id == thread.id);
                if thread.alive && !shown {
                    report.holder_stacks.push(HolderStack {
                        thread: thread.clone(),
                        stack: current_stack(thread),
                    });
                }
            }
        }
        Some(report)
    }

    /// Where `thread` is now, or why that is not known.
    fn current_stack(thread: &ThreadInfo) -> Result<String, NoStack> {
        #[cfg(all(feature = "deadlock_detection", target_os = "linux"))]
        {
            super::super::current_stack::of(thread)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = thread;
            Err(NoStack::Unsupported)
        }
        #[cfg(all(not(feature = "deadlock_detection"), target_os = "linux"))]
        {
            let _ = thread;
            Err(NoStack::NeedsFeature)
        }
    }

    /// The stack of every waiting thread a diagnosis names, where it
    /// parked, resolved now (milliseconds each: a report is made once per
    /// stall).
    #[cfg(feature = "deadlock_detection")]
    fn parked_stacks(report: &StallReport) -> Vec<super::super::ParkedStack> {
        let mut waiting: Vec<&ThreadInfo> = Vec::new();
        for diagnosis in &report.diagnoses {
            match diagnosis {
                Diagnosis::Deadlock { cycle } => waiting.extend(cycle.iter().map(|s| &s.thread)),
                Diagnosis::SelfDeadlock { step } => waiting.push(&step.thread),
                Diagnosis::LongWait { waiter, .. } => waiting.push(&waiter.thread),
                _ => {}
            }
        }
        let mut stacks: Vec<super::super::ParkedStack> = Vec::new();
        for thread in waiting {
            if stacks.iter().any(|s| s.thread.id == thread.id) {
                continue;
            }
            let Some(mut stack) =
                crate::record::thread::by_id(thread.id).and_then(|t| t.parked_stack())
            else {
                continue;
            };
            stack.resolve();
            stacks.push(super::super::ParkedStack {
                thread: thread.clone(),
                backtrace: format!("{stack:?}"),
            });
        }
        stacks
    }
}
