//! Arbitrary sequences of raw lock operations on `RawMutex`, `RawFairMutex`,
//! `RawRwLock` and `RawRwLockRecursive`, attributed to several simulated
//! threads, checked against a reference model of the lock word after every
//! operation.
//!
//! Everything runs on one OS thread. Only operations that cannot block are
//! issued: `try_*`, timed ones with a zero or tiny timeout or a deadline that
//! has passed, and the blocking `lock*`/`upgrade` calls only when the model
//! says they succeed at once. Simulated threads decide which guard values
//! are passed back; the lock word itself cannot tell threads apart (guards
//! are zero-sized, as in parking_lot 0.13), so a release is *misuse the lock
//! must detect* exactly when the word does not hold the mode released. A
//! release of another simulated thread's read lock is legal at the word
//! level and is modelled as such.
//!
//! Checked after every operation:
//! - the word equals the model's word (no stray PARKED or WRITER_PARKED bits
//!   after timed attempts that gave up), and decodes as valid;
//! - `decode`, `word()` and `Display` never panic and agree with the model;
//! - every misuse produces a violation report and leaves the word unchanged;
//!   under `ViolationPolicy::Panic` it panics with the report, under `Log`
//!   and `Count` a refusable one returns (one report) and an unrefusable
//!   one panics;
//! - legal operations produce no report.
//!
//! The input is one header byte and then one byte per operation (see
//! `Header` and `rw_op`/`mutex_op`): every byte the mutator changes is a
//! different operation, with no length fields or enum tags to break.
//!
//! Speed (see README.md, "Speed"): an input's first misuse runs under the
//! policy its header chose; the rest of its misuses run under `Count`,
//! which counts the report without building, writing or unwinding it; and
//! at most one misuse per input unwinds, none in the half of the inputs
//! whose header bit 4 is set (an unwinding panic under AddressSanitizer
//! costs about as much as the rest of a short input: the report formatted,
//! the unwind, a sweep of the fake stack); misuses that would unwind then
//! are not issued. Words are shown through `Display` into a sink that keeps
//! nothing. `sched_yield` is a no-op in this binary (a spinning waiter
//! yields to no one on a single thread), and the timer slack is 1 ns, so a
//! timed attempt that parks for a few hundred nanoseconds does not sleep for
//! the kernel's default 50 microseconds.

#![no_main]

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use lockscope::lock_api::{
    RawRwLock as _, RawRwLockDowngrade as _, RawRwLockFair as _, RawRwLockTimed as _,
    RawRwLockUpgrade as _, RawRwLockUpgradeDowngrade as _, RawRwLockUpgradeFair as _,
    RawRwLockUpgradeTimed as _,
};
use lockscope::{RawFairMutex, RawMutex, RawRwLock, ViolationPolicy};

const THREADS: usize = 4;
/// Operations per input at most (one byte each).
const MAX_OPS: usize = 512;
/// Read locks held at once at most (all simulated threads together): a
/// timed attempt that gives up lists every holder in its report, so a pile
/// of hundreds would make every later timeout slow, and the word's reader
/// count field is exercised as well by a few as by hundreds.
const MAX_READ_HOLDS: usize = 8;

#[derive(Debug, Clone, Copy)]
enum Wait {
    /// `try_*_for(Duration::ZERO)`.
    Zero,
    /// `try_*_for` this many nanoseconds.
    Nanos(u8),
    /// `try_*_until` a deadline that has passed.
    Past,
}

#[derive(Debug, Clone, Copy)]
enum MutexOp {
    Lock,
    TryLock,
    TryLockTimed(Wait),
    Unlock,
    UnlockFair,
    Bump,
}

/// Bits 0-2 of an operation byte; bits 3-4 name the simulated thread.
const MUTEX_OPS: [MutexOp; 8] = [
    MutexOp::Lock,
    MutexOp::TryLock,
    MutexOp::TryLockTimed(Wait::Zero),
    MutexOp::TryLockTimed(Wait::Nanos(200)),
    MutexOp::TryLockTimed(Wait::Past),
    MutexOp::Unlock,
    MutexOp::UnlockFair,
    MutexOp::Bump,
];

#[derive(Debug, Clone, Copy)]
enum RwOp {
    LockShared,
    TryLockShared,
    TryLockSharedTimed(Wait),
    UnlockShared,
    UnlockSharedFair,
    LockExclusive,
    TryLockExclusive,
    TryLockExclusiveTimed(Wait),
    UnlockExclusive,
    UnlockExclusiveFair,
    BumpExclusive,
    LockUpgradable,
    TryLockUpgradable,
    TryLockUpgradableTimed(Wait),
    UnlockUpgradable,
    UnlockUpgradableFair,
    Upgrade,
    TryUpgrade,
    TryUpgradeTimed(Wait),
    Downgrade,
    DowngradeUpgradable,
    DowngradeToUpgradable,
}

/// Bits 0-4 of an operation byte; bits 5-6 name the simulated thread.
const RW_OPS: [RwOp; 32] = [
    RwOp::LockShared,
    RwOp::TryLockShared,
    RwOp::TryLockSharedTimed(Wait::Zero),
    RwOp::TryLockSharedTimed(Wait::Nanos(200)),
    RwOp::TryLockSharedTimed(Wait::Past),
    RwOp::UnlockShared,
    RwOp::UnlockSharedFair,
    RwOp::LockExclusive,
    RwOp::TryLockExclusive,
    RwOp::TryLockExclusiveTimed(Wait::Zero),
    RwOp::TryLockExclusiveTimed(Wait::Nanos(1)),
    RwOp::TryLockExclusiveTimed(Wait::Nanos(255)),
    RwOp::TryLockExclusiveTimed(Wait::Past),
    RwOp::UnlockExclusive,
    RwOp::UnlockExclusiveFair,
    RwOp::BumpExclusive,
    RwOp::LockUpgradable,
    RwOp::TryLockUpgradable,
    RwOp::TryLockUpgradableTimed(Wait::Zero),
    RwOp::TryLockUpgradableTimed(Wait::Nanos(200)),
    RwOp::TryLockUpgradableTimed(Wait::Past),
    RwOp::UnlockUpgradable,
    RwOp::UnlockUpgradableFair,
    RwOp::Upgrade,
    RwOp::TryUpgrade,
    RwOp::TryUpgradeTimed(Wait::Zero),
    RwOp::TryUpgradeTimed(Wait::Nanos(1)),
    RwOp::TryUpgradeTimed(Wait::Nanos(255)),
    RwOp::TryUpgradeTimed(Wait::Past),
    RwOp::Downgrade,
    RwOp::DowngradeUpgradable,
    RwOp::DowngradeToUpgradable,
];

/// The header byte: bit 0 picks the mutexes (0) or the rwlocks (1), bit 1
/// the fair mutex or the recursive rwlock, bits 2-3 the policy of the first
/// misuse (0 `Panic`, 1 `Log`, 2 and 3 `Count`), bit 4 set: no misuse that
/// unwinds is issued in this input.
struct Header {
    rwlock: bool,
    variant: bool,
    policy: ViolationPolicy,
    unwinding: bool,
}

impl Header {
    fn parse(byte: u8) -> Header {
        Header {
            rwlock: byte & 1 != 0,
            variant: byte & 2 != 0,
            policy: match (byte >> 2) & 3 {
                0 => ViolationPolicy::Panic,
                1 => ViolationPolicy::Log,
                _ => ViolationPolicy::Count,
            },
            unwinding: byte & 16 == 0,
        }
    }
}

fn mutex_op(byte: u8) -> (usize, MutexOp) {
    (
        usize::from(byte >> 3) % THREADS,
        MUTEX_OPS[usize::from(byte & 7)],
    )
}

fn rw_op(byte: u8) -> (usize, RwOp) {
    (
        usize::from(byte >> 5) % THREADS,
        RW_OPS[usize::from(byte & 31)],
    )
}

thread_local! {
    /// Set while a misuse is under way: its violation panic is expected.
    static EXPECTING_VIOLATION: Cell<bool> = const { Cell::new(false) };
}

/// libfuzzer-sys aborts in its panic hook; a misuse that panics on purpose
/// must unwind to our `catch_unwind` instead, quietly. Any other panic still
/// goes to the previous hook, and so still aborts and counts as a crash.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !EXPECTING_VIOLATION.with(Cell::get) {
                previous(info);
            }
        }));
        // A timed attempt parks for at most 255 ns: without this the kernel
        // may let it sleep for its default slack of 50 microseconds.
        // SAFETY: a plain prctl on this thread.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    });
}

/// A spinning waiter yields between spins (parking_lot_core's `SpinWait`).
/// Here every simulated thread is this one OS thread: there is nobody to
/// yield to, and on a loaded machine `sched_yield` hands the CPU to other
/// processes for a time slice. The spin loop itself still runs.
#[unsafe(no_mangle)]
pub extern "C" fn sched_yield() -> libc::c_int {
    0
}

/// Standard error pointed at /dev/null until dropped: under `Log` each
/// expected misuse writes a report line. The original standard error and
/// /dev/null are opened once; muting is one `dup2` each way.
struct Muted(libc::c_int);

impl Muted {
    fn stderr() -> Muted {
        static FDS: OnceLock<(libc::c_int, libc::c_int)> = OnceLock::new();
        let &(saved, null) = FDS.get_or_init(|| {
            // SAFETY: plain descriptor calls; both stay open for the process.
            unsafe {
                let saved = libc::dup(2);
                assert!(saved >= 0, "dup(2) failed");
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
                assert!(null >= 0, "open(/dev/null) failed");
                (saved, null)
            }
        });
        // SAFETY: points fd 2 at /dev/null; `drop` points it back.
        unsafe { libc::dup2(null, 2) };
        Muted(saved)
    }
}

impl Drop for Muted {
    fn drop(&mut self) {
        // SAFETY: puts back the standard error saved in `stderr`.
        unsafe { libc::dup2(self.0, 2) };
    }
}

/// The violation policy over one input: the header's for its first misuse,
/// `Count` after it; and whether a misuse may still unwind (once per input,
/// and in no input whose header says so).
struct Policy {
    first: ViolationPolicy,
    misused: bool,
    unwound: bool,
}

impl Policy {
    fn new(first: ViolationPolicy, unwinding: bool) -> Policy {
        lockscope::set_violation_policy(first);
        Policy {
            first,
            misused: false,
            unwound: !unwinding,
        }
    }
}

/// Runs a misuse: it must be reported, must leave the word as it was, and
/// returns (rather than panicking) exactly when the policy is `Log` or
/// `Count` and the operation is refusable. A misuse that would unwind after
/// another one has is not issued (`None`).
fn misuse<T>(
    refusable: bool,
    policy: &mut Policy,
    word: impl Fn() -> usize,
    f: impl FnOnce() -> T,
) -> Option<T> {
    let now = if policy.misused {
        ViolationPolicy::Count
    } else {
        policy.first
    };
    let lets_through = now != ViolationPolicy::Panic;
    let unwinds = !(lets_through && refusable);
    if unwinds && policy.unwound {
        return None;
    }
    policy.misused = true;
    let before_word = word();
    let before = lockscope::violations_reported();
    EXPECTING_VIOLATION.with(|e| e.set(true));
    let muted = (now == ViolationPolicy::Log).then(Muted::stderr);
    let result = catch_unwind(AssertUnwindSafe(f));
    drop(muted);
    EXPECTING_VIOLATION.with(|e| e.set(false));
    if now != ViolationPolicy::Count {
        // From here on, misuses only count.
        lockscope::set_violation_policy(ViolationPolicy::Count);
    }
    let reports = lockscope::violations_reported() - before;
    assert!(reports >= 1, "misuse not reported");
    if !unwinds {
        assert!(result.is_ok(), "a refusable misuse panicked under {now:?}");
        assert_eq!(reports, 1, "one refused release, one report");
    } else {
        policy.unwound = true;
        assert!(
            result.is_err(),
            "misuse did not panic (policy: {now:?}, refusable: {refusable})"
        );
        if !lets_through {
            assert_eq!(reports, 1, "under Panic the first report panics");
        }
        if let Err(payload) = &result {
            // The panic carries the report, naming the lock and the problem.
            let text = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or_default();
            assert!(
                text.starts_with("lockscope: lock invariant violated: Raw")
                    && text.contains(" refused: "),
                "the misuse panicked without a report: {text:?}"
            );
        }
    }
    assert_eq!(word(), before_word, "a refused misuse changed the word");
    result.ok()
}

/// Runs a legal operation: it must report nothing.
fn legal<T>(f: impl FnOnce() -> T) -> T {
    let before = lockscope::violations_reported();
    let r = f();
    assert_eq!(
        lockscope::violations_reported(),
        before,
        "a legal operation was reported"
    );
    r
}

fuzz_target!(|data: &[u8]| {
    install_hook();
    let Some((&header, ops)) = data.split_first() else {
        return;
    };
    let header = Header::parse(header);
    let ops = &ops[..ops.len().min(MAX_OPS)];
    let mut policy = Policy::new(header.policy, header.unwinding);
    match (header.rwlock, header.variant) {
        (false, true) => {
            let lock = <RawFairMutex as lockscope::lock_api::RawMutex>::INIT;
            run_mutex(&lock, RawFairMutex::inner, &mut policy, ops);
        }
        (false, false) => {
            let lock = <RawMutex as lockscope::lock_api::RawMutex>::INIT;
            run_mutex(&lock, |m| m, &mut policy, ops);
        }
        (true, true) => {
            let lock = <RawRwLock<true> as lockscope::lock_api::RawRwLock>::INIT;
            run_rwlock(&lock, &mut policy, ops);
        }
        (true, false) => {
            let lock = <RawRwLock<false> as lockscope::lock_api::RawRwLock>::INIT;
            run_rwlock(&lock, &mut policy, ops);
        }
    }
    lockscope::set_violation_policy(ViolationPolicy::Panic);
});

fn duration(wait: Wait) -> Duration {
    match wait {
        Wait::Zero | Wait::Past => Duration::ZERO,
        Wait::Nanos(n) => Duration::from_nanos(u64::from(n)),
    }
}

/// Formats `value` with `Display` into a sink that keeps nothing: the
/// formatting runs (and must not panic) without a `String` growing four
/// times under AddressSanitizer's allocator for each word shown.
fn show(value: &impl std::fmt::Display) {
    struct Sink;
    impl std::fmt::Write for Sink {
        fn write_str(&mut self, _: &str) -> std::fmt::Result {
            Ok(())
        }
    }
    let _ = std::fmt::Write::write_fmt(&mut Sink, format_args!("{value}"));
}

/// The rwlock words already shown in this input (words under 256: at most
/// `MAX_READ_HOLDS` + 1 readers; any other is shown every time).
#[derive(Default)]
struct Shown([u64; 4]);

impl Shown {
    /// Whether `word` is shown for the first time in this input.
    fn first(&mut self, word: usize) -> bool {
        let Some(bits) = self.0.get_mut(word / 64) else {
            return true;
        };
        let bit = 1 << (word % 64);
        let first = *bits & bit == 0;
        *bits |= bit;
        first
    }
}

// ---------------------------------------------------------------- mutex ----

type MutexGuardState = <RawMutex as lockscope::lock_api::RawMutex>::Guard;

/// Runs `ops` on `lock`, a `RawMutex` or a `RawFairMutex` (`word_of` gives
/// the `RawMutex` whose word it is).
fn run_mutex<M>(lock: &M, word_of: fn(&M) -> &RawMutex, policy: &mut Policy, ops: &[u8])
where
    M: lockscope::lock_api::RawMutex<Guard = MutexGuardState>
        + lockscope::lock_api::RawMutexFair
        + lockscope::lock_api::RawMutexTimed<Duration = Duration, Instant = Instant>,
{
    // The simulated thread holding the mutex, with its guard state.
    let mut holder: Option<(usize, MutexGuardState)> = None;
    let word = || word_of(lock).word().raw as usize;
    // `Display` of each word once per input: it depends on the word only.
    let mut shown = [false; 2];
    for &byte in ops {
        let (t, op) = mutex_op(byte);
        match op {
            MutexOp::Lock => {
                // Would block (or deadlock this single thread): not issued.
                if holder.is_none() {
                    holder = Some((t, legal(|| lock.lock())));
                }
            }
            MutexOp::TryLock | MutexOp::TryLockTimed(_) => {
                let got = legal(|| match op {
                    MutexOp::TryLockTimed(Wait::Past) => lock.try_lock_until(Instant::now()),
                    MutexOp::TryLockTimed(w) => lock.try_lock_for(duration(w)),
                    _ => lock.try_lock(),
                });
                assert_eq!(got.is_some(), holder.is_none(), "{op:?}");
                if let Some(g) = got {
                    holder = Some((t, g));
                }
            }
            MutexOp::Unlock | MutexOp::UnlockFair => {
                let fair = matches!(op, MutexOp::UnlockFair);
                match holder.take() {
                    // Held by some simulated thread: the word cannot tell which.
                    Some((_, g)) => legal(|| unsafe {
                        if fair {
                            lock.unlock_fair(g)
                        } else {
                            lock.unlock(g)
                        }
                    }),
                    None => {
                        misuse(true, policy, word, || unsafe {
                            if fair {
                                lock.unlock_fair(Default::default())
                            } else {
                                lock.unlock(Default::default())
                            }
                        });
                    }
                }
            }
            MutexOp::Bump => {
                if let Some((_, g)) = holder.as_mut() {
                    legal(|| unsafe { lock.bump(g) });
                }
            }
        }
        let expect = u8::from(holder.is_some());
        let w = word_of(lock).word();
        assert_eq!(w.raw, expect, "after {op:?}: word {w}");
        assert_eq!(w, RawMutex::decode(expect));
        assert!(w.is_valid() && !w.parked && w.locked == holder.is_some());
        assert_eq!(lock.is_locked(), holder.is_some());
        assert!(!word_of(lock).has_parked_threads());
        if !shown[usize::from(expect)] {
            shown[usize::from(expect)] = true;
            show(&w);
        }
    }
    if let Some((_, g)) = holder {
        unsafe { lock.unlock(g) };
    }
    assert_eq!(word_of(lock).word().raw, 0);
}

// --------------------------------------------------------------- rwlock ----

type Shared = <RawRwLock as lockscope::lock_api::RawRwLock>::SharedGuard;
type Exclusive = <RawRwLock as lockscope::lock_api::RawRwLock>::ExclusiveGuard;
type Upgradable = <RawRwLock as lockscope::lock_api::RawRwLockUpgrade>::UpgradableGuard;

/// What the simulated threads hold; the word the lock must show follows.
#[derive(Default)]
struct Model {
    shared: [Vec<Shared>; THREADS],
    upgradable: Option<(usize, Upgradable)>,
    exclusive: Option<(usize, Exclusive)>,
}

impl Model {
    fn plain_readers(&self) -> usize {
        self.shared.iter().map(Vec::len).sum()
    }

    fn readers(&self) -> usize {
        self.plain_readers() + usize::from(self.upgradable.is_some())
    }

    fn word(&self) -> usize {
        (self.readers() << 4)
            | if self.upgradable.is_some() { 0b0100 } else { 0 }
            | if self.exclusive.is_some() { 0b1000 } else { 0 }
    }

    /// A read lock to release for thread `t`: its own if it has one, else
    /// (legal at the word level) another thread's.
    fn take_shared(&mut self, t: usize) -> Option<Shared> {
        if let Some(g) = self.shared[t].pop() {
            return Some(g);
        }
        self.shared.iter_mut().find_map(Vec::pop)
    }
}

fn run_rwlock<const R: bool>(lock: &RawRwLock<R>, policy: &mut Policy, ops: &[u8]) {
    let mut m = Model::default();
    let word = || lock.word().raw;
    let mut shown = Shown::default();
    for &byte in ops {
        let (t, op) = rw_op(byte);
        // No simulated thread ever waits, so WRITER is never set while
        // readers are counted: a writer excludes everyone.
        let writer = m.exclusive.is_some();
        let shared_ok = !writer;
        let room = m.plain_readers() < MAX_READ_HOLDS;
        let exclusive_ok = !writer && m.readers() == 0;
        let upgradable_ok = !writer && m.upgradable.is_none();
        match op {
            RwOp::LockShared => {
                if shared_ok && room {
                    m.shared[t].push(legal(|| lock.lock_shared()));
                }
            }
            RwOp::TryLockShared | RwOp::TryLockSharedTimed(_) if room => {
                let got = legal(|| match op {
                    RwOp::TryLockSharedTimed(Wait::Past) => {
                        lock.try_lock_shared_until(Instant::now())
                    }
                    RwOp::TryLockSharedTimed(w) => lock.try_lock_shared_for(duration(w)),
                    _ => lock.try_lock_shared(),
                });
                assert_eq!(got.is_some(), shared_ok, "{op:?}");
                m.shared[t].extend(got);
            }
            // As many read locks held as the model allows: not issued.
            RwOp::TryLockShared | RwOp::TryLockSharedTimed(_) => {}
            RwOp::UnlockShared | RwOp::UnlockSharedFair => {
                let fair = matches!(op, RwOp::UnlockSharedFair);
                match m.take_shared(t) {
                    Some(g) => legal(|| unsafe {
                        if fair {
                            lock.unlock_shared_fair(g)
                        } else {
                            lock.unlock_shared(g)
                        }
                    }),
                    None => {
                        misuse(true, policy, word, || unsafe {
                            if fair {
                                lock.unlock_shared_fair(Default::default())
                            } else {
                                lock.unlock_shared(Default::default())
                            }
                        });
                    }
                }
            }
            RwOp::LockExclusive => {
                if exclusive_ok {
                    m.exclusive = Some((t, legal(|| lock.lock_exclusive())));
                }
            }
            RwOp::TryLockExclusive | RwOp::TryLockExclusiveTimed(_) => {
                // A timed attempt against readers claims WRITER, waits for
                // them, times out and must give the claim back exactly.
                let got = legal(|| match op {
                    RwOp::TryLockExclusiveTimed(Wait::Past) => {
                        lock.try_lock_exclusive_until(Instant::now())
                    }
                    RwOp::TryLockExclusiveTimed(w) => lock.try_lock_exclusive_for(duration(w)),
                    _ => lock.try_lock_exclusive(),
                });
                assert_eq!(got.is_some(), exclusive_ok, "{op:?}");
                if let Some(g) = got {
                    m.exclusive = Some((t, g));
                }
            }
            RwOp::UnlockExclusive | RwOp::UnlockExclusiveFair => {
                let fair = matches!(op, RwOp::UnlockExclusiveFair);
                match m.exclusive.take() {
                    Some((_, g)) => legal(|| unsafe {
                        if fair {
                            lock.unlock_exclusive_fair(g)
                        } else {
                            lock.unlock_exclusive(g)
                        }
                    }),
                    None => {
                        misuse(true, policy, word, || unsafe {
                            if fair {
                                lock.unlock_exclusive_fair(Default::default())
                            } else {
                                lock.unlock_exclusive(Default::default())
                            }
                        });
                    }
                }
            }
            RwOp::BumpExclusive => {
                if let Some((_, g)) = m.exclusive.as_mut() {
                    legal(|| unsafe { lock.bump_exclusive(g) });
                }
            }
            RwOp::LockUpgradable => {
                if upgradable_ok {
                    m.upgradable = Some((t, legal(|| lock.lock_upgradable())));
                }
            }
            RwOp::TryLockUpgradable | RwOp::TryLockUpgradableTimed(_) => {
                let got = legal(|| match op {
                    RwOp::TryLockUpgradableTimed(Wait::Past) => {
                        lock.try_lock_upgradable_until(Instant::now())
                    }
                    RwOp::TryLockUpgradableTimed(w) => lock.try_lock_upgradable_for(duration(w)),
                    _ => lock.try_lock_upgradable(),
                });
                assert_eq!(got.is_some(), upgradable_ok, "{op:?}");
                if let Some(g) = got {
                    m.upgradable = Some((t, g));
                }
            }
            RwOp::UnlockUpgradable | RwOp::UnlockUpgradableFair => {
                let fair = matches!(op, RwOp::UnlockUpgradableFair);
                match m.upgradable.take() {
                    Some((_, g)) => legal(|| unsafe {
                        if fair {
                            lock.unlock_upgradable_fair(g)
                        } else {
                            lock.unlock_upgradable(g)
                        }
                    }),
                    None => {
                        misuse(true, policy, word, || unsafe {
                            if fair {
                                lock.unlock_upgradable_fair(Default::default())
                            } else {
                                lock.unlock_upgradable(Default::default())
                            }
                        });
                    }
                }
            }
            RwOp::Upgrade => match m.upgradable.take() {
                // Upgrading with other readers in would wait for them forever.
                Some(held) if m.readers() > 0 => m.upgradable = Some(held),
                Some((u, g)) => m.exclusive = Some((u, legal(|| unsafe { lock.upgrade(g) }))),
                None => {
                    misuse(false, policy, word, || unsafe {
                        lock.upgrade(Default::default())
                    });
                }
            },
            RwOp::TryUpgrade | RwOp::TryUpgradeTimed(_) => {
                let attempt = |g| unsafe {
                    match op {
                        RwOp::TryUpgradeTimed(Wait::Past) => {
                            lock.try_upgrade_until(g, Instant::now())
                        }
                        RwOp::TryUpgradeTimed(w) => lock.try_upgrade_for(g, duration(w)),
                        _ => lock.try_upgrade(g),
                    }
                };
                match m.upgradable.take() {
                    Some((u, g)) => {
                        let alone = m.readers() == 0;
                        match legal(|| attempt(g)) {
                            Ok(g) => {
                                assert!(alone, "{op:?} succeeded with other readers in");
                                m.exclusive = Some((u, g));
                            }
                            Err(g) => {
                                assert!(!alone, "{op:?} failed with no other reader");
                                m.upgradable = Some((u, g));
                            }
                        }
                    }
                    None => {
                        if let Some(r) = misuse(true, policy, word, || attempt(Default::default()))
                        {
                            assert!(r.is_err(), "{op:?} without an upgradable lock succeeded");
                        }
                    }
                }
            }
            RwOp::Downgrade => match m.exclusive.take() {
                Some((x, g)) => m.shared[x].push(legal(|| unsafe { lock.downgrade(g) })),
                None => {
                    misuse(false, policy, word, || unsafe {
                        lock.downgrade(Default::default())
                    });
                }
            },
            RwOp::DowngradeUpgradable => match m.upgradable.take() {
                Some((u, g)) => m.shared[u].push(legal(|| unsafe { lock.downgrade_upgradable(g) })),
                None => {
                    misuse(false, policy, word, || unsafe {
                        lock.downgrade_upgradable(Default::default())
                    });
                }
            },
            RwOp::DowngradeToUpgradable => match m.exclusive.take() {
                Some((x, g)) => {
                    m.upgradable = Some((x, legal(|| unsafe { lock.downgrade_to_upgradable(g) })))
                }
                None => {
                    misuse(false, policy, word, || unsafe {
                        lock.downgrade_to_upgradable(Default::default())
                    });
                }
            },
        }
        check_rwlock(lock, &m, op, &mut shown);
    }
    // Release everything the simulated threads still hold: the lock ends free.
    if let Some((_, g)) = m.exclusive.take() {
        unsafe { lock.unlock_exclusive(g) };
    }
    if let Some((_, g)) = m.upgradable.take() {
        unsafe { lock.unlock_upgradable(g) };
    }
    for held in &mut m.shared {
        for g in held.drain(..) {
            unsafe { lock.unlock_shared(g) };
        }
    }
    assert_eq!(lock.word().raw, 0);
}

fn check_rwlock<const R: bool>(lock: &RawRwLock<R>, m: &Model, op: RwOp, shown: &mut Shown) {
    let expect = m.word();
    let w = lock.word();
    assert_eq!(
        w.raw,
        expect,
        "after {op:?}: word {w}, model {}",
        RawRwLock::decode(expect)
    );
    assert_eq!(w, RawRwLock::decode(expect));
    assert!(w.is_valid(), "after {op:?}: {w}");
    assert!(
        !w.parked && !w.writer_parked,
        "after {op:?}: parked bits left: {w}"
    );
    assert_eq!(w.readers, m.readers());
    assert_eq!(w.upgradable, m.upgradable.is_some());
    assert_eq!(w.write_locked(), m.exclusive.is_some());
    assert_eq!(lock.is_locked(), m.readers() > 0 || m.exclusive.is_some());
    assert_eq!(lock.is_locked_exclusive(), m.exclusive.is_some());
    assert!(!lock.has_parked_threads());
    // `Display` of each word once per input: it depends on the word only.
    if shown.first(w.raw) {
        show(&w);
    }
}
