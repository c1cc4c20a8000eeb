//! Lock timeouts at their edges: zero and huge timeouts, `Duration::MAX`,
//! deadlines no `Instant` can represent, instants in the past, on every lock
//! kind and on `Condvar`.
//!
//! Each test's doc comment states what a user gets. Nothing here asserts how
//! fast anything is: only what is returned, and that nothing is left locked
//! or wedged.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use lockscope::{
    Condvar, FairMutex, Mutex, RecursiveRwLock, ReentrantMutex, RwLock, RwLockUpgradableReadGuard,
};

/// How long a holder keeps a lock before releasing it, in the tests that
/// check a wait without deadline does not give up early.
const HOLD: Duration = Duration::from_millis(150);

/// Timeouts that no deadline can represent (`Instant + timeout` overflows).
const UNREPRESENTABLE: [Duration; 3] = [
    Duration::MAX,
    Duration::from_secs(u64::MAX),
    Duration::new(u64::MAX / 2, 999_999_999),
];

/// About a century: representable as a deadline, never reached in a test.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// An instant well in the past (or now, on a platform whose clock starts
/// too recently to go back an hour).
fn past() -> Instant {
    let now = Instant::now();
    now.checked_sub(Duration::from_secs(3600)).unwrap_or(now)
}

/// Runs `take` on another thread, which holds what it returns for [`HOLD`],
/// sets the flag and then releases; meanwhile runs `wait` here with the flag.
/// `wait` starts only once the lock is held.
fn while_held<G>(take: impl FnOnce() -> G + Send, wait: impl FnOnce(&AtomicBool)) {
    let released = AtomicBool::new(false);
    let (held_tx, held_rx) = mpsc::channel();
    thread::scope(|s| {
        s.spawn(|| {
            let guard = take();
            held_tx.send(()).unwrap();
            thread::sleep(HOLD);
            released.store(true, SeqCst);
            drop(guard);
        });
        held_rx.recv().unwrap();
        wait(&released);
    });
}

/// Sanity for the helper: `while_held` really holds until it sets the flag.
#[test]
fn while_held_holds() {
    let m = Mutex::new(());
    while_held(
        || m.lock(),
        |released| {
            assert!(m.try_lock().is_none() || released.load(SeqCst));
            let _g = m.lock();
            assert!(released.load(SeqCst));
        },
    );
}

/// A zero timeout is one attempt: a free lock is acquired (`Some`), a held one
/// is not (`None`), and the failed attempt leaves the lock usable.
#[test]
fn zero_timeouts_are_a_single_attempt() {
    let m = Mutex::new(1);
    assert_eq!(m.try_lock_for(Duration::ZERO).as_deref(), Some(&1));
    let rw = RwLock::new(2);
    assert_eq!(rw.try_read_for(Duration::ZERO).as_deref(), Some(&2));
    assert_eq!(rw.try_write_for(Duration::ZERO).as_deref(), Some(&2));
    assert!(rw.try_upgradable_read_for(Duration::ZERO).is_some());

    let g = m.lock();
    thread::scope(|s| {
        s.spawn(|| assert!(m.try_lock_for(Duration::ZERO).is_none()));
    });
    drop(g);
    assert!(m.try_lock().is_some());

    let w = rw.write();
    assert!(rw.try_read_for(Duration::ZERO).is_none());
    assert!(rw.try_write_for(Duration::ZERO).is_none());
    assert!(rw.try_upgradable_read_for(Duration::ZERO).is_none());
    drop(w);

    let u = rw.upgradable_read();
    assert!(rw.try_write_for(Duration::ZERO).is_none());
    assert!(rw.try_upgradable_read_for(Duration::ZERO).is_none());
    assert!(rw.try_read_for(Duration::ZERO).is_some());
    let w = RwLockUpgradableReadGuard::try_upgrade_for(u, Duration::ZERO)
        .expect("the only reader upgrades at once");
    drop(w);
    assert!(!rw.is_locked());
}

/// A writer whose zero timeout expires while readers hold the lock (the
/// timed-writer path of `incident_timed_writer.rs`) returns `None` and gives
/// back exactly the claim it made: readers still get in, and once they
/// leave a writer does.
#[test]
fn zero_timeout_writer_against_readers_gives_the_claim_back() {
    let rw = RwLock::new(0);
    let r1 = rw.read();
    let r2 = rw.read();
    for _ in 0..100 {
        assert!(rw.try_write_for(Duration::ZERO).is_none());
        assert!(rw.try_write_until(past()).is_none());
    }
    let word = unsafe { rw.raw() }.word();
    assert!(word.is_valid(), "{word}");
    assert_eq!((word.readers, word.writer, word.parked), (2, false, false));
    assert!(
        rw.try_read().is_some(),
        "a reader was shut out by a timed-out writer"
    );
    drop((r1, r2));
    assert!(rw.try_write().is_some());
    assert_eq!(unsafe { rw.raw() }.word().raw, 0);
}

/// Timeouts too large for a deadline (`Duration::MAX` and friends) and a
/// century-long one neither panic nor overflow: on a free lock they acquire
/// at once.
#[test]
fn huge_timeouts_on_free_locks_acquire() {
    let m = Mutex::new(());
    let fm = FairMutex::new(());
    let rm = ReentrantMutex::new(());
    let rw = RwLock::new(());
    let rrw = RecursiveRwLock::new(());
    for t in UNREPRESENTABLE.into_iter().chain([CENTURY]) {
        assert!(m.try_lock_for(t).is_some(), "{t:?}");
        assert!(fm.try_lock_for(t).is_some(), "{t:?}");
        {
            let outer = rm.try_lock_for(t).expect("free");
            // Reentrant: the owner gets it again at once, whatever the timeout.
            assert!(rm.try_lock_for(t).is_some(), "{t:?}");
            drop(outer);
        }
        {
            let r = rw.try_read_for(t).expect("free");
            assert!(rw.try_read_for(t).is_some(), "{t:?}");
            drop(r);
        }
        assert!(rw.try_write_for(t).is_some(), "{t:?}");
        let u = rw.try_upgradable_read_for(t).expect("free");
        assert!(
            RwLockUpgradableReadGuard::try_upgrade_for(u, t).is_ok(),
            "{t:?}"
        );
        assert!(rrw.try_read_for(t).is_some(), "{t:?}");
        assert!(rrw.try_write_for(t).is_some(), "{t:?}");
    }
}

/// `Duration::MAX` (and any timeout no deadline can represent) means "wait
/// without a deadline", as in parking_lot: with the lock held by another
/// thread, `try_lock_for` does not give up early; it returns `Some` once the
/// holder releases.
#[test]
fn duration_max_on_a_held_mutex_waits_for_the_release() {
    let m = Mutex::new(());
    for t in UNREPRESENTABLE {
        while_held(
            || m.lock(),
            |released| {
                assert!(m.try_lock_for(t).is_some(), "{t:?} gave up");
                assert!(released.load(SeqCst), "acquired while held");
            },
        );
    }
    let fm = FairMutex::new(());
    while_held(
        || fm.lock(),
        |released| {
            assert!(fm.try_lock_for(Duration::MAX).is_some());
            assert!(released.load(SeqCst));
        },
    );
    let rm = ReentrantMutex::new(());
    while_held(
        || rm.lock(),
        |released| {
            assert!(rm.try_lock_for(Duration::MAX).is_some());
            assert!(released.load(SeqCst));
        },
    );
}

/// As for `Duration::MAX`: a timeout that is representable as a deadline
/// but enormous (a century; 2^62 seconds) on a held lock waits for the
/// release and returns `Some`; converting the far deadline for the OS sleep
/// does not overflow into an early timeout.
#[test]
fn enormous_representable_timeouts_on_held_locks_wait_for_the_release() {
    let enormous = Duration::from_secs(u64::MAX >> 2);
    let m = Mutex::new(());
    let rw = RwLock::new(());
    let cv = Condvar::new();
    for t in [CENTURY, enormous] {
        while_held(
            || m.lock(),
            |released| {
                assert!(m.try_lock_for(t).is_some(), "{t:?} gave up");
                assert!(released.load(SeqCst));
            },
        );
        while_held(
            || rw.read(),
            |released| {
                assert!(rw.try_write_for(t).is_some(), "{t:?} gave up");
                assert!(released.load(SeqCst));
            },
        );
        let ready = Mutex::new(false);
        thread::scope(|s| {
            let mut g = ready.lock();
            s.spawn(|| {
                thread::sleep(HOLD);
                *ready.lock() = true;
                cv.notify_one();
            });
            while !*g {
                assert!(!cv.wait_for(&mut g, t).timed_out(), "{t:?} timed out");
            }
        });
    }
}

/// `try_read_for(Duration::MAX)` behind a writer, `try_write_for(Duration::MAX)`
/// behind a reader (a writer that claims the lock and waits for the reader
/// to drain, with no deadline), `try_upgradable_read_for` behind a writer and
/// `try_upgrade_for(Duration::MAX)` behind another reader: each waits for the
/// holder and returns `Some`/`Ok`, never early.
#[test]
fn duration_max_on_a_held_rwlock_waits_for_the_release() {
    let rw = RwLock::new(0);
    while_held(
        || rw.write(),
        |released| {
            assert!(rw.try_read_for(Duration::MAX).is_some());
            assert!(released.load(SeqCst));
        },
    );
    while_held(
        || rw.read(),
        |released| {
            let mut w = rw.try_write_for(Duration::MAX).expect("gave up");
            assert!(released.load(SeqCst), "write-locked beside a reader");
            *w += 1;
        },
    );
    while_held(
        || rw.write(),
        |released| {
            assert!(rw.try_upgradable_read_for(Duration::MAX).is_some());
            assert!(released.load(SeqCst));
        },
    );
    while_held(
        || rw.read(),
        |released| {
            let u = rw.upgradable_read();
            let w = RwLockUpgradableReadGuard::try_upgrade_for(u, Duration::MAX)
                .expect("upgrade gave up");
            assert!(released.load(SeqCst), "upgraded beside a reader");
            drop(w);
        },
    );
    let rrw = RecursiveRwLock::new(());
    while_held(
        || rrw.read(),
        |released| {
            assert!(rrw.try_write_for(Duration::MAX).is_some());
            assert!(released.load(SeqCst));
        },
    );
    assert_eq!(*rw.read(), 1);
    assert!(!rw.is_locked());
}

/// An instant in the past makes every `*_until` a single immediate attempt:
/// `Some` when the lock is free, `None` when it is held (and the lock stays
/// usable).
#[test]
fn instants_in_the_past_are_a_single_attempt() {
    let m = Mutex::new(());
    assert!(m.try_lock_until(past()).is_some());
    let g = m.lock();
    thread::scope(|s| {
        s.spawn(|| assert!(m.try_lock_until(past()).is_none()));
    });
    drop(g);

    let fm = FairMutex::new(());
    assert!(fm.try_lock_until(past()).is_some());
    let rm = ReentrantMutex::new(());
    let outer = rm.try_lock_until(past()).expect("free");
    assert!(rm.try_lock_until(past()).is_some(), "reentrant");
    thread::scope(|s| {
        s.spawn(|| assert!(rm.try_lock_until(past()).is_none()));
    });
    drop(outer);

    let rw = RwLock::new(());
    assert!(rw.try_read_until(past()).is_some());
    assert!(rw.try_write_until(past()).is_some());
    assert!(rw.try_upgradable_read_until(past()).is_some());
    let w = rw.write();
    assert!(rw.try_read_until(past()).is_none());
    assert!(rw.try_write_until(past()).is_none());
    assert!(rw.try_upgradable_read_until(past()).is_none());
    drop(w);
    let r = rw.read();
    assert!(rw.try_write_until(past()).is_none());
    let u = rw
        .try_upgradable_read_until(past())
        .expect("free of writers");
    let u =
        RwLockUpgradableReadGuard::try_upgrade_until(u, past()).expect_err("another reader is in");
    drop(r);
    assert!(RwLockUpgradableReadGuard::try_upgrade_until(u, past()).is_ok());
    assert!(!rw.is_locked());
    assert!(unsafe { rw.raw() }.word().is_valid());
}

/// `Condvar::wait_for(Duration::ZERO)` and `wait_until(<past>)` time out at
/// once (`timed_out()` is true) with the mutex locked again and the data as
/// it was.
#[test]
fn condvar_zero_and_past_waits_time_out_with_the_lock_held() {
    let m = Mutex::new(7);
    let cv = Condvar::new();
    let mut g = m.lock();
    assert!(cv.wait_for(&mut g, Duration::ZERO).timed_out());
    assert!(m.is_locked());
    assert_eq!(*g, 7);
    assert!(cv.wait_until(&mut g, past()).timed_out());
    assert!(
        cv.wait_while_for(&mut g, |v| *v == 7, Duration::ZERO)
            .timed_out()
    );
    assert!(cv.wait_while_until(&mut g, |v| *v == 7, past()).timed_out());
    *g += 1;
    drop(g);
    assert!(!m.is_locked());
    assert_eq!(*m.lock(), 8);
    assert!(!cv.notify_one(), "a timed-out waiter left nothing queued");
}

/// `Condvar::wait_for` with `Duration::MAX` (or any timeout no deadline can
/// represent) waits without a deadline: it returns only when notified, with
/// `timed_out()` false, never early.
#[test]
fn condvar_duration_max_waits_for_the_notification() {
    for t in UNREPRESENTABLE {
        let m = Mutex::new(false);
        let cv = Condvar::new();
        thread::scope(|s| {
            let mut g = m.lock();
            s.spawn(|| {
                thread::sleep(HOLD);
                *m.lock() = true;
                cv.notify_one();
            });
            while !*g {
                assert!(!cv.wait_for(&mut g, t).timed_out(), "{t:?} timed out");
            }
        });
        // wait_while_for takes another path for unrepresentable deadlines.
        let m = Mutex::new(false);
        thread::scope(|s| {
            let mut g = m.lock();
            s.spawn(|| {
                thread::sleep(HOLD);
                *m.lock() = true;
                cv.notify_all();
            });
            assert!(!cv.wait_while_for(&mut g, |ready| !*ready, t).timed_out());
            assert!(*g);
        });
    }
}
