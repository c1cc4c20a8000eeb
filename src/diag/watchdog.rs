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
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            period: Duration::from_millis(500),
            wait_threshold: Duration::from_secs(1),
            hold_threshold: Duration::from_secs(10),
            callback: None,
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
        on::report(&scan, &keys)
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

    use super::super::StallReport;
    use super::super::scan::{self, Scan};
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
                && let Some(report) = report(&scan, &confirmed)
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

    /// The report of the findings whose keys are in `keys`.
    pub(super) fn report(scan: &Scan, keys: &[&str]) -> Option<StallReport> {
        let mut report = StallReport::default();
        let mut lock_ids = Vec::new();
        for finding in scan
            .findings
            .iter()
            .filter(|f| keys.contains(&f.key.as_str()))
        {
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
        Some(report)
    }

    /// The stack of every waiting thread a diagnosis names, where it
    /// parked, resolved now (milliseconds each: a report is made once per
    /// stall).
    #[cfg(feature = "deadlock_detection")]
    fn parked_stacks(report: &StallReport) -> Vec<super::super::ParkedStack> {
        use super::super::{Diagnosis, ThreadInfo};
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
