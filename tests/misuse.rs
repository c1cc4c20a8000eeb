//! Misuse under the default policy (Panic): a faulty release panics with the
//! report, leaves the word unchanged and the lock usable.
//!
//! The report counter is process-wide, so the tests here are serialized.

mod common;

use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex as StdMutex;

use common::*;
use lockscope::lock_api::{RawRwLock as _, RawRwLockDowngrade as _, RawRwLockUpgrade as _};
use lockscope::{FairMutex, Mutex, RecursiveRwLock, RwLock, ViolationPolicy};

static SERIAL: StdMutex<()> = StdMutex::new(());

/// Runs `f`, which must panic with exactly one violation report, received
/// as a value by the violation callback too; returns the panic message.
fn expect_one_violation(f: impl FnOnce()) -> String {
    assert_eq!(lockscope::violation_policy(), ViolationPolicy::Panic);
    let before = lockscope::violations_reported();
    let received = received_violations().len();
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("misuse did not panic");
    let msg = assert_violation_payload(&*err);
    assert_eq!(
        lockscope::violations_reported(),
        before + 1,
        "one misuse, one report"
    );
    let got = received_violations();
    assert_eq!(got.len(), received + 1, "the callback received the report");
    let v = got.last().unwrap();
    assert!(msg.contains(&v.to_string()), "{msg} / {v}");
    assert!(!v.decoded.is_empty());
    // A site, when given, is the caller's, never one inside lockscope.
    for site in &v.sites {
        assert!(site.file().ends_with("misuse.rs"), "{site}");
    }
    msg
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn force_unlock_of_unlocked_mutex() {
    let _s = serial();
    let m = Mutex::new(1);
    let before = unsafe { m.raw() }.word();
    let msg = expect_one_violation(|| unsafe { m.force_unlock(raw_guard()) });
    assert!(msg.contains("RawMutex") && msg.contains("unlock"), "{msg}");
    assert!(msg.contains("not locked"), "{msg}");
    {
        let got = received_violations();
        let v = got.last().unwrap();
        assert_eq!(v.sites.len(), 1, "the force_unlock call's site");
        assert!(v.name.is_none(), "never acquired nor labelled: no name");
    }
    assert_eq!(
        unsafe { m.raw() }.word(),
        before,
        "word changed by a refused unlock"
    );
    *m.lock() += 1;
    assert_eq!(*m.lock(), 2);
    assert_eq!(unsafe { m.raw() }.word().raw, 0);
}

#[test]
fn double_force_unlock_of_mutex() {
    let _s = serial();
    let m = Mutex::new(());
    mem::forget(m.lock());
    unsafe { m.force_unlock(raw_guard()) };
    expect_one_violation(|| unsafe { m.force_unlock(raw_guard()) });
    assert!(!m.is_locked());
    let g = m.try_lock().expect("mutex unusable after a refused unlock");
    drop(g);
    expect_one_violation(|| unsafe { m.force_unlock_fair(raw_guard()) });
    assert_eq!(unsafe { m.raw() }.word().raw, 0);
}

#[test]
fn force_unlock_of_unlocked_fair_mutex() {
    let _s = serial();
    let m = FairMutex::new(());
    expect_one_violation(|| unsafe { m.force_unlock(raw_guard()) });
    assert_eq!(unsafe { m.raw() }.inner().word().raw, 0);
    drop(m.lock());
}

#[test]
fn force_unlock_read_with_no_reader() {
    let _s = serial();
    let l = RwLock::new(0);
    let msg = expect_one_violation(|| unsafe { l.force_unlock_read(raw_guard()) });
    assert!(
        msg.contains("RawRwLock") && msg.contains("unlock_shared"),
        "{msg}"
    );
    assert_eq!(unsafe { l.raw() }.word().raw, 0);
    assert!(l.try_write().is_some());
}

#[test]
fn force_unlock_read_on_write_locked() {
    let _s = serial();
    let l = RwLock::new(0);
    let mut w = l.write();
    let before = unsafe { l.raw() }.word();
    expect_one_violation(|| unsafe { l.force_unlock_read(raw_guard()) });
    assert_eq!(unsafe { l.raw() }.word(), before);
    assert!(l.is_locked_exclusive(), "the writer lost its lock");
    *w = 1;
    drop(w);
    assert_eq!(*l.read(), 1);
    assert_eq!(unsafe { l.raw() }.word().raw, 0);
}

#[test]
fn force_unlock_read_with_only_an_upgradable_reader() {
    let _s = serial();
    let l = RwLock::new(0);
    let u = l.upgradable_read();
    let before = unsafe { l.raw() }.word();
    expect_one_violation(|| unsafe { l.force_unlock_read(raw_guard()) });
    assert_eq!(unsafe { l.raw() }.word(), before);
    drop(u);
    assert_eq!(unsafe { l.raw() }.word().raw, 0);
}

#[test]
fn force_unlock_write_on_read_locked_and_unlocked() {
    let _s = serial();
    let l = RwLock::new(0);
    let r = l.read();
    let r2 = l.read();
    let before = unsafe { l.raw() }.word();
    let msg = expect_one_violation(|| unsafe { l.force_unlock_write(raw_guard()) });
    assert!(msg.contains("unlock_exclusive"), "{msg}");
    assert_eq!(unsafe { l.raw() }.word(), before);
    assert_eq!(before.readers, 2);
    drop((r, r2));
    expect_one_violation(|| unsafe { l.force_unlock_write(raw_guard()) });
    expect_one_violation(|| unsafe { l.force_unlock_write_fair(raw_guard()) });
    assert_eq!(unsafe { l.raw() }.word().raw, 0);
    *l.write() = 5;
    assert_eq!(*l.read(), 5);
}

#[test]
fn force_unlock_write_while_upgradable_held() {
    let _s = serial();
    let l = RwLock::new(0);
    let u = l.upgradable_read();
    let before = unsafe { l.raw() }.word();
    expect_one_violation(|| unsafe { l.force_unlock_write(raw_guard()) });
    assert_eq!(unsafe { l.raw() }.word(), before);
    let w = lockscope::RwLockUpgradableReadGuard::upgrade(u);
    drop(w);
    assert_eq!(unsafe { l.raw() }.word().raw, 0);
}

#[test]
fn one_read_too_many() {
    let _s = serial();
    let l = RwLock::new(0);
    mem::forget(l.read());
    unsafe { l.force_unlock_read(raw_guard()) };
    expect_one_violation(|| unsafe { l.force_unlock_read(raw_guard()) });
    assert_eq!(unsafe { l.raw() }.word().raw, 0);
}

#[test]
fn recursive_rwlock_misuse() {
    let _s = serial();
    let l = RecursiveRwLock::new(0);
    let msg = expect_one_violation(|| unsafe { l.force_unlock_read(raw_guard()) });
    assert!(msg.contains("RawRwLockRecursive"), "{msg}");
    let r = l.read();
    expect_one_violation(|| unsafe { l.force_unlock_write(raw_guard()) });
    assert_eq!(unsafe { l.raw() }.word().readers, 1);
    drop(r);
    assert_eq!(unsafe { l.raw() }.word().raw, 0);
}

#[test]
fn raw_unlock_upgradable_without_one() {
    let _s = serial();
    let l = RwLock::new(0);
    let r = l.read();
    let raw = unsafe { l.raw() };
    let before = raw.word();
    let msg = expect_one_violation(|| unsafe { raw.unlock_upgradable(raw_guard()) });
    assert!(msg.contains("unlock_upgradable"), "{msg}");
    assert_eq!(raw.word(), before);
    drop(r);
    assert_eq!(raw.word().raw, 0);
}

#[test]
fn raw_downgrade_without_write_lock() {
    let _s = serial();
    let l = RwLock::new(0);
    let raw = unsafe { l.raw() };
    let msg = expect_one_violation(|| {
        let _ = unsafe { raw.downgrade(raw_guard()) };
    });
    assert!(msg.contains("downgrade"), "{msg}");
    assert_eq!(raw.word().raw, 0);
    let r = raw.lock_shared();
    expect_one_violation(|| {
        let _ = unsafe { raw.upgrade(raw_guard()) };
    });
    assert_eq!(raw.word().readers, 1);
    unsafe { raw.unlock_shared(r) };
    assert_eq!(raw.word().raw, 0);
}

#[test]
fn misuse_in_another_thread_does_not_break_the_lock() {
    let _s = serial();
    let m = std::sync::Arc::new(Mutex::new(0));
    let m2 = std::sync::Arc::clone(&m);
    let g = m.lock();
    let r = std::thread::spawn(move || {
        // Releases nothing: the lock is held by the main thread, so the force
        // unlock *succeeds* (lock_api trusts the caller) — unlock a second
        // time to get the violation.
        unsafe { m2.force_unlock(raw_guard()) };
        unsafe { m2.force_unlock(raw_guard()) };
    })
    .join();
    assert_violation_payload(&*r.unwrap_err());
    // The main thread's guard was released by the first force_unlock.
    mem::forget(g);
    assert!(!m.is_locked());
    *m.lock() += 1;
    assert_eq!(*m.lock(), 1);
}

#[test]
fn violation_display_and_word_decoders() {
    let v = lockscope::Violation {
        lock: "RawMutex",
        address: 0x1000,
        operation: "unlock",
        problem: "the mutex is not locked",
        word: 0,
        decoded: lockscope::RawMutex::decode(0).to_string(),
        detail: None,
        name: None,
        sites: Vec::new(),
    };
    let s = v.to_string();
    assert!(s.starts_with("lockscope: lock invariant violated"));
    assert!(s.contains("0x1000") && s.contains("unlock") && s.contains("not locked"));
    let e: &dyn std::error::Error = &v;
    assert_eq!(e.to_string(), s);

    let m = lockscope::RawMutex::decode(0b11);
    assert!(m.locked && m.parked && m.is_valid() && m.unknown_bits == 0);
    let bad = lockscope::RawMutex::decode(0xF3);
    assert!(!bad.is_valid());
    assert_eq!(bad.unknown_bits, 0xF0);
    assert!(bad.to_string().contains("unknown"));

    let r = lockscope::RawRwLock::decode(0b0011_0100);
    assert_eq!(r.readers, 3);
    assert!(r.upgradable && !r.writer && r.is_valid());
    // The incident word: all ones.
    let all = lockscope::RawRwLock::decode(usize::MAX);
    assert!(!all.is_valid(), "an all-ones word must be invalid: {all}");
    assert!(all.to_string().contains("INVALID"));
    // A count with the reader field's top bit set is never real: what a
    // release of a read lock that was not held leaves before it is undone.
    let wrapped = 0b1000usize.wrapping_sub(0b1_0000);
    for bad in [0b0010, 0b0100, 0b1_1100, wrapped] {
        assert!(!lockscope::RawRwLock::decode(bad).is_valid(), "{bad:#b}");
    }
    assert!(lockscope::RawRwLock::decode(0b1_1010).is_valid());
    // The last reader has left and is about to wake the parked writer.
    assert!(lockscope::RawRwLock::decode(0b1010).is_valid());
}

/// A read release is one atomic subtraction (as in parking_lot); one that
/// releases a read lock nobody holds is undone at once and reported. Writers
/// working on the lock meanwhile may see the undone count for an instant:
/// none of them may be reported, lose a write, hang, or leave a broken word.
#[test]
fn a_faulty_read_release_among_busy_writers_is_undone_and_harms_none() {
    const WRITES: u64 = 200_000;
    const FAULTS: u64 = 5_000;
    let _s = serial();
    let lock = std::sync::Arc::new(RwLock::new(0u64));
    let before = lockscope::violations_reported();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let lock = std::sync::Arc::clone(&lock);
            std::thread::spawn(move || {
                for _ in 0..WRITES {
                    *lock.write() += 1;
                }
            })
        })
        .collect();
    let faulty = {
        let lock = std::sync::Arc::clone(&lock);
        std::thread::spawn(move || {
            let mut refused = 0;
            for _ in 0..FAULTS {
                // SAFETY (of the test): no read lock is ever held, so this
                // release is always a misuse, which the lock must refuse.
                let r = catch_unwind(AssertUnwindSafe(|| unsafe {
                    lock.force_unlock_read(raw_guard())
                }));
                refused += u64::from(r.is_err());
            }
            refused
        })
    };
    for w in writers {
        w.join()
            .expect("a writer was hurt by another thread's misuse");
    }
    let refused = faulty.join().unwrap();
    std::panic::set_hook(quiet);
    assert_eq!(refused, FAULTS, "every faulty release is refused");
    assert_eq!(
        lockscope::violations_reported(),
        before + FAULTS,
        "the faulty releases, and nothing else, were reported"
    );
    assert_eq!(*lock.read(), 2 * WRITES);
    let w = unsafe { lock.raw() }.word();
    assert!(w.is_valid() && w.raw == 0, "{w}");
}
