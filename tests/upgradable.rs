//! Upgradable reads: exclusion rules, upgrade / try_upgrade / timed upgrades,
//! downgrades, with_upgraded.

mod common;

use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use lockscope::{RwLock, RwLockUpgradableReadGuard, RwLockWord, RwLockWriteGuard};

fn word<T>(l: &RwLock<T>) -> RwLockWord {
    unsafe { l.raw() }.word()
}

fn assert_free<T>(l: &RwLock<T>) {
    let w = word(l);
    assert!(w.is_valid(), "invalid word: {w}");
    assert!(
        w.readers == 0 && !w.writer && !w.upgradable && !w.writer_parked,
        "lock still held: {w}"
    );
    drop(l.try_write().expect("try_write failed on a free lock"));
    assert_eq!(word(l).raw, 0, "word after a write cycle: {}", word(l));
}

/// Holds a read lock on another thread until the returned sender is used.
fn read_on_other_thread<T: Send + Sync + 'static>(
    l: Arc<RwLock<T>>,
) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (locked_tx, locked_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let h = thread::spawn(move || {
        let _g = l.read();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    locked_rx.recv().unwrap();
    (release_tx, h)
}

#[test]
fn upgradable_shares_with_readers_but_not_upgradable_or_writers() {
    let l = RwLock::new(1);
    let u = l.upgradable_read();
    assert_eq!(*u, 1);
    let w = word(&l);
    assert!(
        w.upgradable && w.readers == 1 && !w.writer && w.is_valid(),
        "{w}"
    );
    assert!(l.is_locked() && !l.is_locked_exclusive());
    let r = l.read();
    let r2 = l.try_read().unwrap();
    assert_eq!(word(&l).readers, 3);
    assert!(l.try_upgradable_read().is_none());
    assert!(l.try_write().is_none());
    assert!(l.try_upgradable_read_for(Duration::ZERO).is_none());
    drop((r, r2));
    assert!(std::ptr::eq(RwLockUpgradableReadGuard::rwlock(&u), &l));
    drop(u);
    assert_free(&l);
}

#[test]
fn try_upgradable_read_for_times_out_no_earlier() {
    let l = Arc::new(RwLock::new(()));
    let l2 = Arc::clone(&l);
    let (tx, rx) = mpsc::channel::<()>();
    let (ltx, lrx) = mpsc::channel();
    let h = thread::spawn(move || {
        let _u = l2.upgradable_read();
        ltx.send(()).unwrap();
        let _ = rx.recv();
    });
    lrx.recv().unwrap();
    let t = Duration::from_millis(30);
    let start = Instant::now();
    assert!(l.try_upgradable_read_for(t).is_none());
    assert!(start.elapsed() >= t);
    let deadline = Instant::now() + Duration::from_millis(10);
    assert!(l.try_upgradable_read_until(deadline).is_none());
    assert!(Instant::now() >= deadline);
    drop(tx);
    h.join().unwrap();
    assert_free(&l);
}

#[test]
fn upgradable_waiter_gets_in_after_release() {
    let l = Arc::new(RwLock::new(0));
    let u = l.upgradable_read();
    let l2 = Arc::clone(&l);
    let h = thread::spawn(move || {
        let u = l2.upgradable_read();
        *RwLockUpgradableReadGuard::upgrade(u) += 1;
    });
    wait_until_parked("upgradable waiter parked", || word(&l).parked);
    drop(u);
    h.join().unwrap();
    assert_eq!(*l.read(), 1);
    assert_free(&l);
}

#[test]
fn upgrade_alone_is_immediate() {
    let l = RwLock::new(1);
    let u = l.upgradable_read();
    let mut w = RwLockUpgradableReadGuard::upgrade(u);
    *w += 1;
    assert!(l.is_locked_exclusive());
    let ww = word(&l);
    assert!(ww.write_locked() && !ww.upgradable && ww.is_valid(), "{ww}");
    drop(w);
    assert_eq!(*l.read(), 2);
    assert_free(&l);
}

#[test]
fn upgrade_waits_for_readers_to_leave() {
    let l = Arc::new(RwLock::new(0));
    let (release, reader) = read_on_other_thread(Arc::clone(&l));
    let l2 = Arc::clone(&l);
    let up = thread::spawn(move || {
        let u = l2.upgradable_read();
        let mut w = RwLockUpgradableReadGuard::upgrade(u);
        *w += 1;
    });
    wait_until_parked("upgrader waits for the reader", || word(&l).writer_parked);
    let w = word(&l);
    assert!(
        w.writer && w.readers == 1 && !w.upgradable && w.is_valid(),
        "{w}"
    );
    assert!(!up.is_finished());
    // The claiming upgrader keeps new readers out.
    assert!(l.try_read().is_none());
    release.send(()).unwrap();
    reader.join().unwrap();
    up.join().unwrap();
    assert_eq!(*l.read(), 1);
    assert_free(&l);
}

#[test]
fn try_upgrade_fails_with_readers_and_keeps_the_guard() {
    let l = RwLock::new(0);
    let u = l.upgradable_read();
    let r = l.read();
    let u = match RwLockUpgradableReadGuard::try_upgrade(u) {
        Ok(_) => panic!("try_upgrade succeeded with another reader"),
        Err(u) => u,
    };
    let w = word(&l);
    assert!(w.upgradable && w.readers == 2 && !w.writer, "{w}");
    drop(r);
    let mut g = RwLockUpgradableReadGuard::try_upgrade(u).expect("try_upgrade alone failed");
    *g = 5;
    drop(g);
    assert_eq!(*l.read(), 5);
    assert_free(&l);
}

#[test]
fn try_upgrade_for_times_out_and_restores_upgradable() {
    let l = Arc::new(RwLock::new(0));
    let (release, reader) = read_on_other_thread(Arc::clone(&l));
    let mut u = l.upgradable_read();
    for ms in [1u64, 20] {
        let t = Duration::from_millis(ms);
        let start = Instant::now();
        u = match RwLockUpgradableReadGuard::try_upgrade_for(u, t) {
            Ok(_) => panic!("upgraded while a reader holds the lock"),
            Err(u) => u,
        };
        let elapsed = start.elapsed();
        assert!(elapsed >= t, "{elapsed:?} < {t:?}");
        let w = word(&l);
        assert!(
            w.upgradable && w.readers == 2 && !w.writer && !w.writer_parked && w.is_valid(),
            "after a timed-out upgrade: {w}"
        );
        // Readers are admitted again.
        assert!(l.try_read().is_some());
    }
    let deadline = Instant::now() + Duration::from_millis(10);
    u = match RwLockUpgradableReadGuard::try_upgrade_until(u, deadline) {
        Ok(_) => panic!("upgraded while a reader holds the lock"),
        Err(u) => u,
    };
    assert!(Instant::now() >= deadline);
    u = match RwLockUpgradableReadGuard::try_upgrade_for(u, Duration::ZERO) {
        Ok(_) => panic!("upgraded while a reader holds the lock"),
        Err(u) => u,
    };
    u = match RwLockUpgradableReadGuard::try_upgrade_until(
        u,
        Instant::now() - Duration::from_millis(1),
    ) {
        Ok(_) => panic!("upgraded while a reader holds the lock"),
        Err(u) => u,
    };
    release.send(()).unwrap();
    reader.join().unwrap();
    // Alone now: zero timeout upgrades at once.
    let mut w = RwLockUpgradableReadGuard::try_upgrade_for(u, Duration::ZERO)
        .unwrap_or_else(|_| panic!("alone, a zero-timeout upgrade failed"));
    *w = 1;
    drop(w);
    assert_free(&l);
}

#[test]
fn timed_upgrade_succeeds_when_reader_leaves_in_time() {
    let l = Arc::new(RwLock::new(0));
    let (release, reader) = read_on_other_thread(Arc::clone(&l));
    let l2 = Arc::clone(&l);
    let up = thread::spawn(move || {
        let u = l2.upgradable_read();
        match RwLockUpgradableReadGuard::try_upgrade_for(u, Duration::from_secs(30)) {
            Ok(mut w) => {
                *w += 1;
                true
            }
            Err(_) => false,
        }
    });
    wait_until_parked("upgrader waits", || word(&l).writer_parked);
    release.send(()).unwrap();
    reader.join().unwrap();
    assert!(up.join().unwrap());
    assert_free(&l);
}

#[test]
fn duration_max_upgrade_waits_for_reader() {
    let l = Arc::new(RwLock::new(0));
    let (release, reader) = read_on_other_thread(Arc::clone(&l));
    let l2 = Arc::clone(&l);
    let up = thread::spawn(move || {
        let u = l2.upgradable_read();
        RwLockUpgradableReadGuard::try_upgrade_for(u, Duration::MAX)
            .map(|mut w| *w += 1)
            .is_ok()
    });
    wait_until_parked("upgrader waits", || word(&l).writer_parked);
    assert!(!up.is_finished());
    release.send(()).unwrap();
    reader.join().unwrap();
    assert!(up.join().unwrap());
    assert_free(&l);
}

#[test]
fn timed_out_upgrade_wakes_readers_it_held_back() {
    let l = Arc::new(RwLock::new(0));
    let (release, reader) = read_on_other_thread(Arc::clone(&l));
    let l2 = Arc::clone(&l);
    let (utx, urx) = mpsc::channel::<()>();
    let up = thread::spawn(move || {
        let u = l2.upgradable_read();
        let u = RwLockUpgradableReadGuard::try_upgrade_for(u, Duration::from_millis(300))
            .expect_err("upgraded while a reader held the lock");
        let _ = urx.recv();
        drop(u);
    });
    wait_for("upgrader claims", || word(&l).writer);
    // A new reader queues behind the claiming upgrader ...
    let l3 = Arc::clone(&l);
    let late = thread::spawn(move || *l3.read());
    // ... and is let in when the upgrade times out.
    assert_eq!(
        finishes_within(Duration::from_secs(10), move || late.join().unwrap()),
        Some(0),
        "reader held back by a timed-out upgrade never woke: {}",
        word(&l)
    );
    release.send(()).unwrap();
    reader.join().unwrap();
    utx.send(()).unwrap();
    up.join().unwrap();
    assert_free(&l);
}

#[test]
fn downgrade_to_upgradable_and_back_to_read() {
    let l = RwLock::new(0);
    let mut w = l.write();
    *w = 1;
    let u = RwLockWriteGuard::downgrade_to_upgradable(w);
    let ww = word(&l);
    assert!(
        ww.upgradable && ww.readers == 1 && !ww.writer && ww.is_valid(),
        "{ww}"
    );
    assert!(l.try_read().is_some());
    assert!(l.try_upgradable_read().is_none());
    assert!(l.try_write().is_none());
    let r = RwLockUpgradableReadGuard::downgrade(u);
    let ww = word(&l);
    assert!(!ww.upgradable && ww.readers == 1 && ww.is_valid(), "{ww}");
    // A plain reader no longer blocks another upgradable reader.
    let u2 = l
        .try_upgradable_read()
        .expect("upgradable blocked by a plain reader");
    drop(u2);
    assert_eq!(*r, 1);
    drop(r);
    assert_free(&l);
}

#[test]
fn downgrade_upgradable_wakes_a_parked_writer() {
    let l = Arc::new(RwLock::new(0));
    let u = l.upgradable_read();
    let l2 = Arc::clone(&l);
    let w = thread::spawn(move || *l2.write() += 1);
    wait_until_parked("writer parked behind upgradable", || word(&l).parked);
    let r = RwLockUpgradableReadGuard::downgrade(u);
    // The writer can now claim the lock and wait for our read guard.
    wait_for("writer claims after downgrade", || word(&l).writer);
    drop(r);
    assert!(finishes_within(Duration::from_secs(10), move || w.join().unwrap()).is_some());
    assert_eq!(*l.read(), 1);
    assert_free(&l);
}

#[test]
fn writer_behind_upgradable_gets_in_after_release() {
    let l = Arc::new(RwLock::new(0));
    let u = l.upgradable_read();
    let l2 = Arc::clone(&l);
    let w = thread::spawn(move || *l2.write() += 1);
    wait_until_parked("writer parked", || word(&l).parked);
    assert!(!w.is_finished());
    drop(u);
    assert!(finishes_within(Duration::from_secs(10), move || w.join().unwrap()).is_some());
    assert_free(&l);
}

#[test]
fn with_upgraded_twice_and_try_with_upgraded() {
    let l = RwLock::new(0);
    let mut u = l.upgradable_read();
    let a = u.with_upgraded(|x| {
        *x += 1;
        *x
    });
    let b = u.with_upgraded(|x| {
        *x += 1;
        *x
    });
    assert_eq!((a, b), (1, 2));
    let w = word(&l);
    assert!(w.upgradable && w.readers == 1 && !w.writer, "{w}");
    assert_eq!(u.try_with_upgraded(|x| *x * 10), Some(20));
    let r = l.read();
    assert_eq!(
        u.try_with_upgraded(|x| *x),
        None,
        "upgraded with a reader present"
    );
    assert_eq!(word(&l).readers, 2);
    drop(r);
    drop(u);
    assert_free(&l);
}

#[test]
fn try_with_upgraded_for_times_out() {
    let l = Arc::new(RwLock::new(0));
    let (release, reader) = read_on_other_thread(Arc::clone(&l));
    let mut u = l.upgradable_read();
    let t = Duration::from_millis(20);
    let start = Instant::now();
    assert_eq!(u.try_with_upgraded_for(t, |x| *x), None);
    assert!(start.elapsed() >= t);
    assert_eq!(u.try_with_upgraded_until(Instant::now() + t, |x| *x), None);
    let w = word(&l);
    assert!(w.upgradable && w.readers == 2 && !w.writer, "{w}");
    release.send(()).unwrap();
    reader.join().unwrap();
    assert_eq!(u.try_with_upgraded_for(t, |x| *x + 1), Some(1));
    drop(u);
    assert_free(&l);
}

#[test]
fn with_upgraded_panic_restores_then_releases() {
    let l = RwLock::new(0);
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut u = l.upgradable_read();
        u.with_upgraded(|x| {
            *x = 3;
            panic!("inside with_upgraded");
        });
    }));
    assert!(r.is_err());
    assert_eq!(*l.read(), 3);
    assert_free(&l);
}

#[test]
fn with_upgraded_lets_held_back_readers_in_afterwards() {
    let l = Arc::new(RwLock::new(0));
    let mut u = l.upgradable_read();
    let l2 = Arc::clone(&l);
    let (tx, rx) = mpsc::channel::<()>();
    let (start_tx, start_rx) = mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        // Only once the upgrade holds the write lock: a read taken earlier
        // would make the upgrade wait for it forever.
        start_rx.recv().unwrap();
        let g = l2.read();
        let _ = rx.recv();
        *g
    });
    u.with_upgraded(|x| {
        *x = 7;
        start_tx.send(()).unwrap();
        // Hold the write lock until the reader is parked behind it.
        wait_until_parked("reader parked", || word(&l).parked);
    });
    // Back to upgradable: the reader is let in alongside us.
    wait_for("reader in after with_upgraded", || word(&l).readers == 2);
    drop(u);
    tx.send(()).unwrap();
    assert_eq!(reader.join().unwrap(), 7);
    assert_free(&l);
}

#[test]
fn upgradable_unlocked_bump_and_force_unlock() {
    let l = Arc::new(RwLock::new(0));
    let mut u = l.upgradable_read();
    let l2 = Arc::clone(&l);
    RwLockUpgradableReadGuard::unlocked(&mut u, || {
        thread::spawn(move || *l2.write() += 1).join().unwrap();
    });
    let l3 = Arc::clone(&l);
    RwLockUpgradableReadGuard::unlocked_fair(&mut u, || {
        thread::spawn(move || *l3.write() += 1).join().unwrap();
    });
    RwLockUpgradableReadGuard::bump(&mut u);
    assert_eq!(*u, 2);
    assert!(word(&l).upgradable);
    RwLockUpgradableReadGuard::unlock_fair(u);
    mem::forget(l.upgradable_read());
    assert!(word(&l).upgradable);
    use lockscope::lock_api::RawRwLockUpgrade as _;
    unsafe { l.raw().unlock_upgradable(raw_guard()) };
    assert_free(&l);
}

#[test]
fn upgradable_guard_released_on_panic() {
    let l = Arc::new(RwLock::new(0));
    let l2 = Arc::clone(&l);
    let r = thread::spawn(move || {
        let _u = l2.upgradable_read();
        panic!("holding an upgradable guard");
    })
    .join();
    assert!(r.is_err());
    assert_free(&l);
}
