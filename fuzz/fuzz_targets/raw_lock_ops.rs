//! Arbitrary sequences of raw lock operations on `RawMutex`, `RawRwLock` and
//! `RawRwLockRecursive`, attributed to several simulated threads, checked
//! against a reference model of the lock word after every operation.
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
//! - every misuse produces at least one violation report, a refusable one
//!   under `ViolationPolicy::Log` returns without panicking, and the word is
//!   unchanged by it;
//! - legal operations produce no report.

#![no_main]

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lockscope::lock_api::{
    RawRwLock as _, RawRwLockDowngrade as _, RawRwLockFair as _, RawRwLockTimed as _,
    RawRwLockUpgrade as _, RawRwLockUpgradeDowngrade as _, RawRwLockUpgradeFair as _,
    RawRwLockUpgradeTimed as _,
};
use lockscope::{RawFairMutex, RawMutex, RawRwLock, ViolationPolicy};

const THREADS: usize = 4;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Wait {
    /// `try_*_for(Duration::ZERO)`.
    Zero,
    /// `try_*_for` a few hundred nanoseconds at most.
    Nanos(u8),
    /// `try_*_until` a deadline that has passed.
    Past,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum MutexOp {
    Lock,
    TryLock,
    TryLockTimed(Wait),
    Unlock,
    UnlockFair,
    Bump,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
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

#[derive(Arbitrary, Debug)]
enum Input {
    Mutex {
        fair: bool,
        log_policy: bool,
        ops: Vec<(u8, MutexOp)>,
    },
    RwLock {
        recursive: bool,
        log_policy: bool,
        ops: Vec<(u8, RwOp)>,
    },
}

thread_local! {
    /// Set while a misuse is under way: its violation panic is expected.
    static EXPECTING_VIOLATION: Cell<bool> = const { Cell::new(false) };
}

/// libfuzzer-sys aborts in its panic hook; a misuse under the Panic policy
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
    });
}

/// Standard error pointed at /dev/null until dropped: under `Log` each
/// expected misuse writes a report line, millions of them in a fuzz run.
struct Muted(libc::c_int);

impl Muted {
    fn stderr() -> Muted {
        // SAFETY: plain descriptor calls; fd 2 is restored on drop.
        unsafe {
            let saved = libc::dup(2);
            assert!(saved >= 0, "dup(2) failed");
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            assert!(null >= 0, "open(/dev/null) failed");
            libc::dup2(null, 2);
            libc::close(null);
            Muted(saved)
        }
    }
}

impl Drop for Muted {
    fn drop(&mut self) {
        // SAFETY: puts back the descriptor saved in `stderr`.
        unsafe {
            libc::dup2(self.0, 2);
            libc::close(self.0);
        }
    }
}

/// Runs a misuse: it must be reported at least once, must leave the word as
/// it was, and returns (rather than panicking) exactly when the policy is
/// `Log` and the operation is refusable.
fn misuse<T>(
    refusable: bool,
    log: bool,
    word: impl Fn() -> usize,
    f: impl FnOnce() -> T,
) -> Option<T> {
    let before_word = word();
    let before = lockscope::violations_reported();
    EXPECTING_VIOLATION.with(|e| e.set(true));
    let muted = log.then(Muted::stderr);
    let result = catch_unwind(AssertUnwindSafe(f));
    drop(muted);
    EXPECTING_VIOLATION.with(|e| e.set(false));
    let reports = lockscope::violations_reported() - before;
    assert!(reports >= 1, "misuse not reported");
    if log && refusable {
        assert!(result.is_ok(), "a refusable misuse panicked under Log");
        assert_eq!(reports, 1, "one refused release, one report");
    } else {
        assert!(
            result.is_err(),
            "misuse did not panic (log: {log}, refusable: {refusable})"
        );
        if !log {
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

fuzz_target!(|input: Input| {
    install_hook();
    match input {
        Input::Mutex {
            fair,
            log_policy,
            ops,
        } => {
            set_policy(log_policy);
            if fair {
                let lock = <RawFairMutex as lockscope::lock_api::RawMutex>::INIT;
                run_mutex(&lock, RawFairMutex::inner, log_policy, &ops);
            } else {
                let lock = <RawMutex as lockscope::lock_api::RawMutex>::INIT;
                run_mutex(&lock, |m| m, log_policy, &ops);
            }
        }
        Input::RwLock {
            recursive,
            log_policy,
            ops,
        } => {
            set_policy(log_policy);
            if recursive {
                run_rwlock::<true>(log_policy, &ops);
            } else {
                run_rwlock::<false>(log_policy, &ops);
            }
        }
    }
    lockscope::set_violation_policy(ViolationPolicy::Panic);
});

fn set_policy(log: bool) {
    lockscope::set_violation_policy(if log {
        ViolationPolicy::Log
    } else {
        ViolationPolicy::Panic
    });
}

fn duration(wait: Wait) -> Duration {
    match wait {
        Wait::Zero | Wait::Past => Duration::ZERO,
        Wait::Nanos(n) => Duration::from_nanos(u64::from(n)),
    }
}

// ---------------------------------------------------------------- mutex ----

type MutexGuardState = <RawMutex as lockscope::lock_api::RawMutex>::Guard;

/// Runs `ops` on `lock`, a `RawMutex` or a `RawFairMutex` (`word_of` gives
/// the `RawMutex` whose word it is).
fn run_mutex<M>(lock: &M, word_of: fn(&M) -> &RawMutex, log: bool, ops: &[(u8, MutexOp)])
where
    M: lockscope::lock_api::RawMutex<Guard = MutexGuardState>
        + lockscope::lock_api::RawMutexFair
        + lockscope::lock_api::RawMutexTimed<Duration = Duration, Instant = Instant>,
{
    // The simulated thread holding the mutex, with its guard state.
    let mut holder: Option<(usize, MutexGuardState)> = None;
    let word = || word_of(lock).word().raw as usize;
    for &(t, op) in ops.iter().take(512) {
        let t = usize::from(t) % THREADS;
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
                        misuse(true, log, word, || unsafe {
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
        let _ = w.to_string();
    }
    if let Some((_, g)) = holder {
        unsafe { lock.unlock(g) };
    }
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

fn run_rwlock<const R: bool>(log: bool, ops: &[(u8, RwOp)]) {
    let lock = <RawRwLock<R> as lockscope::lock_api::RawRwLock>::INIT;
    let mut m = Model::default();
    let word = || lock.word().raw;
    for &(t, op) in ops.iter().take(512) {
        let t = usize::from(t) % THREADS;
        // No simulated thread ever waits, so WRITER is never set while
        // readers are counted: a writer excludes everyone.
        let writer = m.exclusive.is_some();
        let shared_ok = !writer;
        let exclusive_ok = !writer && m.readers() == 0;
        let upgradable_ok = !writer && m.upgradable.is_none();
        match op {
            RwOp::LockShared => {
                if shared_ok {
                    m.shared[t].push(legal(|| lock.lock_shared()));
                }
            }
            RwOp::TryLockShared | RwOp::TryLockSharedTimed(_) => {
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
                        misuse(true, log, word, || unsafe {
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
                        misuse(true, log, word, || unsafe {
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
                        misuse(true, log, word, || unsafe {
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
                    misuse(false, log, word, || unsafe {
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
                        if let Some(r) = misuse(true, log, word, || attempt(Default::default())) {
                            assert!(r.is_err(), "{op:?} without an upgradable lock succeeded");
                        }
                    }
                }
            }
            RwOp::Downgrade => match m.exclusive.take() {
                Some((x, g)) => m.shared[x].push(legal(|| unsafe { lock.downgrade(g) })),
                None => {
                    misuse(false, log, word, || unsafe {
                        lock.downgrade(Default::default())
                    });
                }
            },
            RwOp::DowngradeUpgradable => match m.upgradable.take() {
                Some((u, g)) => m.shared[u].push(legal(|| unsafe { lock.downgrade_upgradable(g) })),
                None => {
                    misuse(false, log, word, || unsafe {
                        lock.downgrade_upgradable(Default::default())
                    });
                }
            },
            RwOp::DowngradeToUpgradable => match m.exclusive.take() {
                Some((x, g)) => {
                    m.upgradable = Some((x, legal(|| unsafe { lock.downgrade_to_upgradable(g) })))
                }
                None => {
                    misuse(false, log, word, || unsafe {
                        lock.downgrade_to_upgradable(Default::default())
                    });
                }
            },
        }
        check_rwlock(&lock, &m, op);
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

fn check_rwlock<const R: bool>(lock: &RawRwLock<R>, m: &Model, op: RwOp) {
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
    let _ = w.to_string();
}
