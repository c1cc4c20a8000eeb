//! RecursiveRwLock: a thread may take the read lock again while a writer
//! waits; otherwise the same API and semantics as RwLock.

mod common;

use std::mem;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use lockscope::{
    MappedRecursiveRwLockReadGuard, MappedRecursiveRwLockWriteGuard, RecursiveRwLock,
    RecursiveRwLockReadGuard, RecursiveRwLockUpgradableReadGuard, RecursiveRwLockWriteGuard,
    RwLock, RwLockWord,
};

static SHARED: RecursiveRwLock<u32> = RecursiveRwLock::new(0);

fn word<T>(l: &RecursiveRwLock<T>) -> RwLockWord {
    unsafe { l.raw() }.word()
}

fn assert_free<T>(l: &RecursiveRwLock<T>) {
    let w = word(l);
    assert!(w.is_valid(), "invalid word: {w}");
    assert!(
        w.readers == 0 && !w.writer && !w.upgradable && !w.writer_parked,
        "lock still held: {w}"
    );
    drop(l.try_write().expect("try_write failed on a free lock"));
    assert_eq!(word(l).raw, 0, "word after a write cycle: {}", word(l));
}

#[test]
fn static_recursive_rwlock() {
    let a = SHARED.read();
    let b = SHARED.read();
    assert_eq!(*a + *b, 0);
    drop((a, b));
    *SHARED.write() += 1;
    assert_eq!(*SHARED.read(), 1);
}

#[test]
fn recursive_read_while_writer_waits_does_not_deadlock() {
    let l = Arc::new(RecursiveRwLock::new(0));
    let outer = l.read();
    let l2 = Arc::clone(&l);
    let writer = thread::spawn(move || *l2.write() += 1);
    wait_until_parked("writer waits for the reader", || word(&l).writer_parked);
    let w = word(&l);
    assert!(w.writer && w.readers == 1 && w.is_valid(), "{w}");
    // The same thread reads again: admitted although a writer has claimed.
    let l3 = Arc::clone(&l);
    let inner = finishes_within(Duration::from_secs(10), move || {
        let g = l3.read();
        let v = *g;
        mem::forget(g);
        v
    });
    assert_eq!(
        inner,
        Some(0),
        "recursive read deadlocked behind a waiting writer"
    );
    assert_eq!(word(&l).readers, 2);
    // (The inner read was taken on a helper thread and forgotten: release it.)
    unsafe { l.force_unlock_read(raw_guard()) };
    // Same thread, directly: try_read and timed reads are admitted too.
    let again = l
        .try_read()
        .expect("try_read refused while this thread reads");
    let again2 = l.try_read_for(Duration::ZERO).expect("timed read refused");
    assert_eq!(word(&l).readers, 3);
    assert!(!writer.is_finished());
    drop((again, again2));
    drop(outer);
    writer.join().unwrap();
    assert_eq!(*l.read(), 1);
    assert_free(&l);
}

#[test]
fn plain_rwlock_refuses_the_same_recursive_read() {
    // The counterpart: a plain RwLock queues the second read behind the writer
    // (a blocking read would deadlock; a timed one times out).
    let l = Arc::new(RwLock::new(0));
    let outer = l.read();
    let l2 = Arc::clone(&l);
    let writer = thread::spawn(move || *l2.write() += 1);
    wait_until_parked("writer waits", || unsafe { l.raw() }.word().writer_parked);
    assert!(l.try_read().is_none());
    let t = Duration::from_millis(20);
    let start = Instant::now();
    assert!(l.try_read_for(t).is_none());
    assert!(start.elapsed() >= t);
    drop(outer);
    writer.join().unwrap();
    assert_eq!(*l.read(), 1);
}

#[test]
fn nested_reads_in_many_threads_with_a_writer() {
    let l = Arc::new(RecursiveRwLock::new(0u64));
    let done = finishes_within(Duration::from_secs(30), {
        let l = Arc::clone(&l);
        move || {
            thread::scope(|s| {
                for t in 0..3 {
                    let l = &l;
                    s.spawn(move || {
                        for i in 0..300 {
                            let a = l.read();
                            let b = l.read();
                            let c = l.read();
                            assert_eq!(*a, *c);
                            drop((b, a, c));
                            if (i + t) % 10 == 0 {
                                *l.write() += 1;
                            }
                        }
                    });
                }
            });
        }
    });
    assert!(done.is_some(), "recursive readers deadlocked: {}", word(&l));
    assert_eq!(*l.read(), 90);
    assert_free(&l);
}

#[test]
fn writer_still_excludes_readers_once_it_owns_the_lock() {
    let l = RecursiveRwLock::new(0);
    let w = l.write();
    assert!(
        l.try_read().is_none(),
        "recursive lock admitted a reader under a writer"
    );
    assert!(l.try_upgradable_read().is_none());
    assert!(l.is_locked_exclusive());
    drop(w);
    assert_free(&l);
}

#[test]
fn recursive_timeouts() {
    let l = Arc::new(RecursiveRwLock::new(()));
    let r = l.read();
    let t = Duration::from_millis(20);
    let start = Instant::now();
    assert!(l.try_write_for(t).is_none());
    assert!(start.elapsed() >= t);
    let deadline = Instant::now() + t;
    assert!(l.try_write_until(deadline).is_none());
    assert!(Instant::now() >= deadline);
    let w = word(&l);
    assert!(
        w.readers == 1 && !w.writer && !w.writer_parked && w.is_valid(),
        "{w}"
    );
    drop(r);
    let g = l.write();
    let l2 = Arc::clone(&l);
    let h = thread::spawn(move || {
        let t = Duration::from_millis(20);
        let start = Instant::now();
        let none = l2.try_read_for(t).is_none();
        none && start.elapsed() >= t
    });
    assert!(h.join().unwrap());
    drop(g);
    assert_free(&l);
}

#[test]
fn recursive_guards_map_upgrade_downgrade() {
    let l = RecursiveRwLock::new((1, 2));
    {
        let r = l.read();
        let m: MappedRecursiveRwLockReadGuard<'_, i32> = RecursiveRwLockReadGuard::map(r, |t| &t.1);
        assert_eq!(*m, 2);
    }
    {
        let w = l.write();
        let mut m: MappedRecursiveRwLockWriteGuard<'_, i32> =
            RecursiveRwLockWriteGuard::map(w, |t| &mut t.0);
        *m = 10;
    }
    let u = l.upgradable_read();
    let r = l.read();
    let u = RecursiveRwLockUpgradableReadGuard::try_upgrade(u)
        .expect_err("upgraded with a reader present");
    drop(r);
    let w = RecursiveRwLockUpgradableReadGuard::upgrade(u);
    let r = RecursiveRwLockWriteGuard::downgrade(w);
    assert_eq!(r.0, 10);
    drop(r);
    let w = l.write();
    let u = RecursiveRwLockWriteGuard::downgrade_to_upgradable(w);
    let r = RecursiveRwLockUpgradableReadGuard::downgrade(u);
    drop(r);
    assert_free(&l);
    assert_eq!(l.into_inner(), (10, 2));
}

#[test]
fn recursive_upgrade_waits_for_recursive_readers() {
    let l = Arc::new(RecursiveRwLock::new(0));
    let (tx, rx) = mpsc::channel::<()>();
    let (ltx, lrx) = mpsc::channel();
    let l2 = Arc::clone(&l);
    let reader = thread::spawn(move || {
        let a = l2.read();
        ltx.send(()).unwrap();
        let _ = rx.recv();
        // Re-enter while the upgrader waits, then leave completely.
        let b = l2.read();
        drop((a, b));
    });
    lrx.recv().unwrap();
    let l3 = Arc::clone(&l);
    let up = thread::spawn(move || {
        let u = l3.upgradable_read();
        *RecursiveRwLockUpgradableReadGuard::upgrade(u) += 1;
    });
    wait_until_parked("upgrader waits", || word(&l).writer_parked);
    tx.send(()).unwrap();
    reader.join().unwrap();
    assert!(finishes_within(Duration::from_secs(10), move || up.join().unwrap()).is_some());
    assert_eq!(*l.read(), 1);
    assert_free(&l);
}

#[test]
fn recursive_force_unlock() {
    let l = RecursiveRwLock::new(0);
    mem::forget(l.read());
    mem::forget(l.read());
    unsafe {
        l.force_unlock_read(raw_guard());
        l.force_unlock_read(raw_guard());
    }
    mem::forget(l.write());
    unsafe { l.force_unlock_write(raw_guard()) };
    assert_free(&l);
}
