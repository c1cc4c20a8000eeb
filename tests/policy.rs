//! The process-wide ViolationPolicy. Every test here changes the policy, so
//! they are serialized and restore `Panic` when done. Abort and the stderr
//! output are checked by re-running this test binary as a child process.

mod common;

use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::sync::Mutex as StdMutex;

use common::*;
use lockscope::lock_api::{RawRwLockDowngrade as _, RawRwLockUpgrade as _};
use lockscope::{Mutex, RwLock, ViolationPolicy};

static SERIAL: StdMutex<()> = StdMutex::new(());

/// Holds the serialization lock and restores the default policy on drop;
/// checks then that the violation callback received every violation the
/// test made, each in full.
struct PolicyScope {
    _serial: std::sync::MutexGuard<'static, ()>,
    reported: u64,
    received: usize,
}

impl PolicyScope {
    fn set(policy: ViolationPolicy) -> PolicyScope {
        let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        lockscope::set_violation_policy(policy);
        assert_eq!(lockscope::violation_policy(), policy);
        PolicyScope {
            _serial: g,
            received: received_violations().len(),
            reported: lockscope::violations_reported(),
        }
    }
}

impl Drop for PolicyScope {
    fn drop(&mut self) {
        lockscope::set_violation_policy(ViolationPolicy::Panic);
        if std::thread::panicking() {
            return;
        }
        let made = lockscope::violations_reported() - self.reported;
        let got = received_violations();
        assert_eq!(
            got.len() - self.received,
            made as usize,
            "one value per report"
        );
        for v in &got[self.received..] {
            assert!(!v.decoded.is_empty() && !v.operation.is_empty(), "{v:?}");
            for site in &v.sites {
                assert!(site.file().ends_with("policy.rs"), "{site}");
            }
        }
    }
}

const CHILD_ENV: &str = "LOCKSCOPE_POLICY_CHILD";

/// Runs the ignored test `name` of this binary in a child process with
/// `CHILD_ENV` set; returns (success, stderr).
fn run_child(name: &str) -> (std::process::ExitStatus, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn default_policy_is_panic() {
    let _p = PolicyScope::set(ViolationPolicy::Panic);
    assert_eq!(ViolationPolicy::default(), ViolationPolicy::Panic);
}

#[test]
fn log_refuses_mutex_release_and_leaves_word_unchanged() {
    let _p = PolicyScope::set(ViolationPolicy::Log);
    let m = Mutex::new(0);
    let before = lockscope::violations_reported();
    unsafe { m.force_unlock(raw_guard()) };
    unsafe { m.force_unlock_fair(raw_guard()) };
    assert_eq!(lockscope::violations_reported(), before + 2);
    assert_eq!(unsafe { m.raw() }.word().raw, 0);
    *m.lock() += 1;
    // A held mutex with a refused extra release stays held.
    let g = m.lock();
    mem::forget(g);
    unsafe { m.force_unlock(raw_guard()) };
    unsafe { m.force_unlock(raw_guard()) };
    assert_eq!(lockscope::violations_reported(), before + 3);
    assert!(!m.is_locked());
    assert_eq!(*m.lock(), 1);
}

#[test]
fn count_refuses_like_log_and_only_counts() {
    let _p = PolicyScope::set(ViolationPolicy::Count);
    let m = Mutex::new(0);
    let l = RwLock::new(0);
    let before = lockscope::violations_reported();
    unsafe { m.force_unlock(raw_guard()) };
    unsafe { l.force_unlock_read(raw_guard()) };
    unsafe { l.force_unlock_write(raw_guard()) };
    assert_eq!(lockscope::violations_reported(), before + 3);
    assert_eq!(unsafe { m.raw() }.word().raw, 0);
    assert_eq!(unsafe { l.raw() }.word().raw, 0);
    // Not refusable: still a panic.
    let raw = unsafe { l.raw() };
    let err = catch_unwind(AssertUnwindSafe(|| {
        let _ = unsafe { raw.downgrade(raw_guard()) };
    }))
    .expect_err("an unrefusable violation returned under Count");
    assert_violation_payload(&*err);
    assert_eq!(lockscope::violations_reported(), before + 4);
    *m.lock() += 1;
    *l.write() += 1;
}

#[test]
fn log_refuses_rwlock_mismatches() {
    let _p = PolicyScope::set(ViolationPolicy::Log);
    let l = RwLock::new(0);
    let before = lockscope::violations_reported();
    // No reader.
    unsafe { l.force_unlock_read(raw_guard()) };
    assert_eq!(unsafe { l.raw() }.word().raw, 0);
    // Write-unlock of a read-locked lock.
    let r = l.read();
    let w_before = unsafe { l.raw() }.word();
    unsafe { l.force_unlock_write(raw_guard()) };
    assert_eq!(unsafe { l.raw() }.word(), w_before);
    drop(r);
    // Read-unlock of a write-locked lock.
    let w = l.write();
    let w_before = unsafe { l.raw() }.word();
    unsafe { l.force_unlock_read(raw_guard()) };
    assert_eq!(unsafe { l.raw() }.word(), w_before);
    assert!(l.is_locked_exclusive());
    drop(w);
    // Upgradable release without one.
    unsafe { l.raw().unlock_upgradable(raw_guard()) };
    assert_eq!(lockscope::violations_reported(), before + 4);
    assert_eq!(unsafe { l.raw() }.word().raw, 0);
    *l.write() += 1;
    assert_eq!(*l.read(), 1);
}

#[test]
fn log_refuses_try_upgrade_without_upgradable() {
    let _p = PolicyScope::set(ViolationPolicy::Log);
    let l = RwLock::new(0);
    let raw = unsafe { l.raw() };
    let before = lockscope::violations_reported();
    assert!(unsafe { raw.try_upgrade(raw_guard()) }.is_err());
    assert_eq!(lockscope::violations_reported(), before + 1);
    assert_eq!(raw.word().raw, 0);
}

#[test]
fn log_still_panics_for_operations_that_cannot_be_refused() {
    let _p = PolicyScope::set(ViolationPolicy::Log);
    let l = RwLock::new(0);
    let raw = unsafe { l.raw() };
    let err = catch_unwind(AssertUnwindSafe(|| {
        let _ = unsafe { raw.downgrade(raw_guard()) };
    }))
    .expect_err("an unrefusable violation returned under Log");
    assert_violation_payload(&*err);
    assert_eq!(raw.word().raw, 0);
}

/// Under Log, one unrefusable misuse (a raw downgrade without a write lock)
/// is one report: counted once, logged once, then the panic.
#[test]
fn log_counts_an_unrefusable_misuse_once() {
    let _p = PolicyScope::set(ViolationPolicy::Log);
    let l = RwLock::new(0);
    let raw = unsafe { l.raw() };
    let before = lockscope::violations_reported();
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let _ = unsafe { raw.downgrade(raw_guard()) };
    }));
    assert_eq!(lockscope::violations_reported(), before + 1);
}

#[test]
fn log_then_panic_panics_with_the_report() {
    let _p = PolicyScope::set(ViolationPolicy::LogThenPanic);
    let m = Mutex::new(());
    let before = lockscope::violations_reported();
    let err = catch_unwind(AssertUnwindSafe(|| unsafe { m.force_unlock(raw_guard()) }))
        .expect_err("LogThenPanic did not panic");
    assert_violation_payload(&*err);
    assert_eq!(lockscope::violations_reported(), before + 1);
    assert_eq!(unsafe { m.raw() }.word().raw, 0);
    drop(m.lock());
}

#[test]
fn abort_policy_aborts_the_process_with_a_report() {
    let _p = PolicyScope::set(ViolationPolicy::Panic);
    let (status, stderr) = run_child("child_abort");
    assert!(
        !status.success(),
        "the child survived an Abort-policy violation"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(6),
            "not SIGABRT: {status:?}\n{stderr}"
        );
    }
    assert!(
        stderr.contains("lockscope: lock invariant violated"),
        "no report on stderr:\n{stderr}"
    );
    assert!(!stderr.contains("child survived"), "{stderr}");
}

#[test]
fn log_and_log_then_panic_write_the_report_to_stderr() {
    let _p = PolicyScope::set(ViolationPolicy::Panic);
    let (status, stderr) = run_child("child_log");
    assert!(status.success(), "child failed:\n{stderr}");
    let reports = stderr
        .lines()
        .filter(|l| l.starts_with("lockscope: lock invariant violated"))
        .count();
    // One line from Log, and from LogThenPanic one logged line plus the panic
    // message (which the panic hook prints after "panicked at ...:").
    assert!(reports >= 2, "expected logged reports:\n{stderr}");
    assert!(
        stderr.contains("RawRwLock") && stderr.contains("unlock_shared"),
        "{stderr}"
    );
}

#[test]
#[ignore = "helper: run in a child process by abort_policy_aborts_the_process_with_a_report"]
fn child_abort() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    lockscope::set_violation_policy(ViolationPolicy::Abort);
    let m = Mutex::new(());
    unsafe { m.force_unlock(raw_guard()) };
    eprintln!("child survived");
}

#[test]
#[ignore = "helper: run in a child process by log_and_log_then_panic_write_the_report_to_stderr"]
fn child_log() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    lockscope::set_violation_policy(ViolationPolicy::Log);
    let l = RwLock::new(());
    unsafe { l.force_unlock_read(raw_guard()) };
    lockscope::set_violation_policy(ViolationPolicy::LogThenPanic);
    let r = catch_unwind(AssertUnwindSafe(|| unsafe {
        l.force_unlock_read(raw_guard())
    }));
    assert!(r.is_err());
    lockscope::set_violation_policy(ViolationPolicy::Panic);
}
