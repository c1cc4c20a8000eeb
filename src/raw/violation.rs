//! What happens when a lock word is asked to make a transition its state does
//! not allow: a report, never a silent change of the word.
//!
//! Every transition of every raw lock checks the state it starts from. When
//! the check fails (releasing a lock that is not held, a reader count that
//! would underflow or overflow, bits that cannot be set together), the word is
//! left exactly as it was and a [`Violation`] is handed to the process-wide
//! [`ViolationPolicy`].

use core::panic::Location;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// What lockscope does when it detects a lock-word invariant violation.
///
/// The word is never modified by the faulty transition, whatever the policy.
///
/// ```
/// use lockscope::ViolationPolicy;
/// lockscope::set_violation_policy(ViolationPolicy::LogThenPanic);
/// assert_eq!(lockscope::violation_policy(), ViolationPolicy::LogThenPanic);
/// lockscope::set_violation_policy(ViolationPolicy::Panic);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ViolationPolicy {
    /// Panic with the report as the message (the default). A release that
    /// panics leaves the lock as it was.
    #[default]
    Panic,
    /// Write the report to standard error, then panic with it.
    LogThenPanic,
    /// Write the report to standard error, then abort the process: for
    /// services that prefer a core dump to unwinding past a broken lock.
    Abort,
    /// Write the report to standard error and refuse the faulty release,
    /// leaving the word unchanged. Violations found while acquiring (a
    /// reader count that would overflow) cannot be refused and still panic.
    Log,
    /// As `Log`, but write nothing: the report is only counted in
    /// [`violations_reported`]. For tests and fuzzers that provoke misuse
    /// on purpose, where a panic or a line per report would cost more than
    /// the operation under test.
    Count,
}

static POLICY: AtomicU8 = AtomicU8::new(0);
static REPORTED: AtomicU64 = AtomicU64::new(0);

/// Sets the process-wide violation policy.
pub fn set_violation_policy(policy: ViolationPolicy) {
    let code = match policy {
        ViolationPolicy::Panic => 0,
        ViolationPolicy::LogThenPanic => 1,
        ViolationPolicy::Abort => 2,
        ViolationPolicy::Log => 3,
        ViolationPolicy::Count => 4,
    };
    POLICY.store(code, Ordering::Relaxed);
}

/// Returns the process-wide violation policy.
pub fn violation_policy() -> ViolationPolicy {
    match POLICY.load(Ordering::Relaxed) {
        1 => ViolationPolicy::LogThenPanic,
        2 => ViolationPolicy::Abort,
        3 => ViolationPolicy::Log,
        4 => ViolationPolicy::Count,
        _ => ViolationPolicy::Panic,
    }
}

/// How many violations this process has reported so far, under any policy.
pub fn violations_reported() -> u64 {
    REPORTED.load(Ordering::Relaxed)
}

/// A refused lock-word transition: which lock, which operation, what the word
/// held and what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The kind of raw lock (`"RawMutex"`, `"RawRwLock"`, ...).
    pub lock: &'static str,
    /// The address of the lock word, to tell locks apart in a report.
    pub address: usize,
    /// The operation that was refused (`"unlock"`, `"unlock_shared"`, ...).
    pub operation: &'static str,
    /// What the state does not allow.
    pub problem: &'static str,
    /// The raw word at the moment of the check.
    pub word: usize,
    /// The word decoded field by field.
    pub decoded: String,
    /// More about this violation, such as both call sites of a self-deadlock.
    pub detail: Option<String>,
    /// The lock's name as diagnostics reports show it (its label, else its
    /// kind and first acquisition site); `None` without diagnostics or for a
    /// lock never acquired nor labelled.
    pub name: Option<String>,
    /// The call sites involved, when known: of the refused operation (a
    /// release through a guard or `force_unlock*`); of a self-deadlock, where
    /// the lock was acquired, then where it was asked for again.
    pub sites: Vec<&'static Location<'static>>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lockscope: lock invariant violated: {} at {:#x}: {} refused: {}; word {:#x} = {}",
            self.lock, self.address, self.operation, self.problem, self.word, self.decoded
        )?;
        if let Some(name) = &self.name {
            write!(f, "; lock {name}")?;
        }
        if let Some(site) = self.sites.last()
            && self.detail.is_none()
        {
            write!(f, "; at {}:{}:{}", site.file(), site.line(), site.column())?;
        }
        if let Some(detail) = &self.detail {
            write!(f, "; {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// Whether the policy lets a refusable violation through (`Log`, `Count`):
/// a refused release returns, a self-deadlocked thread goes on to wait.
pub(crate) fn lets_through() -> bool {
    matches!(
        violation_policy(),
        ViolationPolicy::Log | ViolationPolicy::Count
    )
}

/// Whether the caller may go on after the report (only under
/// [`ViolationPolicy::Log`] or [`ViolationPolicy::Count`] for a release).
#[must_use]
pub(crate) enum Outcome {
    /// The faulty operation is refused; the word is unchanged.
    Refused,
}

/// A function that receives every violation as a value.
pub type ViolationCallback = Arc<dyn Fn(&Violation) + Send + Sync>;

static CALLBACK: RwLock<Option<ViolationCallback>> = RwLock::new(None);

/// Sets (or, with `None`, removes) a function that receives every violation
/// this process reports, under any [`ViolationPolicy`], before the policy
/// acts (so before a panic or an abort): to count them, log them in a
/// program's own format, or keep them for a test.
///
/// It runs on the thread that made the faulty call, which may hold other
/// locks; it must not use the lock that failed.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use lockscope::ViolationPolicy;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let keep = seen.clone();
/// lockscope::set_violation_callback(Some(Arc::new(move |v: &lockscope::Violation| {
///     keep.lock().unwrap().push(v.operation);
/// })));
/// lockscope::set_violation_policy(ViolationPolicy::Log);
/// let m = lockscope::Mutex::new(0);
/// // A release of a mutex nobody holds: refused, so it changes nothing.
/// // (`Default::default()` is the zero-sized guard state.)
/// unsafe { m.force_unlock(Default::default()) };
/// lockscope::set_violation_policy(ViolationPolicy::Panic);
/// lockscope::set_violation_callback(None);
/// assert_eq!(*seen.lock().unwrap(), ["unlock"]);
/// ```
pub fn set_violation_callback(callback: Option<ViolationCallback>) {
    *CALLBACK.write().unwrap_or_else(|e| e.into_inner()) = callback;
}

/// The caller's call site, unless it is inside this crate's raw locks (a
/// path that did not pass the user's site down).
#[track_caller]
pub(crate) fn caller_outside() -> Option<&'static Location<'static>> {
    let site = Location::caller();
    let raw = file!().trim_end_matches("violation.rs");
    (!site.file().starts_with(raw)).then_some(site)
}

/// Counts a refusable violation and returns true when nothing would read
/// its report: the policy is [`ViolationPolicy::Count`] and no callback is
/// set. The caller then refuses the operation without building the report
/// (a decoded word, the lock's name), which would cost far more than the
/// refused operation.
pub(crate) fn counted_only() -> bool {
    if violation_policy() != ViolationPolicy::Count
        || CALLBACK.read().unwrap_or_else(|e| e.into_inner()).is_some()
    {
        return false;
    }
    REPORTED.fetch_add(1, Ordering::Relaxed);
    true
}

/// Hands a violation to the callback, then the policy. Returns only when
/// the policy is [`ViolationPolicy::Log`] or [`ViolationPolicy::Count`] and
/// the operation can be refused.
#[cold]
#[inline(never)]
pub(crate) fn report(violation: Violation, refusable: bool) -> Outcome {
    REPORTED.fetch_add(1, Ordering::Relaxed);
    // Cloned out, so that the callback may replace itself.
    let callback = CALLBACK.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(callback) = callback {
        callback(&violation);
    }
    match violation_policy() {
        ViolationPolicy::Panic => unwind(violation),
        ViolationPolicy::LogThenPanic => {
            eprintln!("{violation}");
            unwind(violation)
        }
        ViolationPolicy::Abort => {
            eprintln!("{violation}");
            std::process::abort()
        }
        ViolationPolicy::Log => {
            eprintln!("{violation}");
            if refusable {
                Outcome::Refused
            } else {
                unwind(violation)
            }
        }
        ViolationPolicy::Count => {
            if refusable {
                Outcome::Refused
            } else {
                unwind(violation)
            }
        }
    }
}

/// `value` formatted into a string allocated once, `capacity` bytes: a
/// report is built when something went wrong, often under a sanitizer or a
/// fuzzer, where each step of a growing string is an allocation.
pub(crate) fn formatted(value: &dyn fmt::Display, capacity: usize) -> String {
    let mut s = String::with_capacity(capacity);
    let _ = fmt::write(&mut s, format_args!("{value}"));
    s
}

/// Panics with the report as its message (a `String`, as `panic!` with
/// arguments would make it, but formatted into one allocation). The
/// violation is dropped first, so that no frame has it to drop while
/// unwinding (under AddressSanitizer each landing pad on the way costs a
/// sweep of the fake stack).
#[track_caller]
fn unwind(violation: Violation) -> ! {
    let message = formatted(&violation, 512);
    drop(violation);
    std::panic::panic_any(message)
}
