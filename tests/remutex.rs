//! ReentrantMutex: reentrancy on one thread, exclusion across threads.

mod common;

use std::cell::{Cell, RefCell};
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use lockscope::{MappedReentrantMutexGuard, ReentrantMutex, ReentrantMutexGuard};

static LOG: ReentrantMutex<RefCell<Vec<u32>>> = ReentrantMutex::new(RefCell::new(Vec::new()));

fn raw_word<T>(m: &ReentrantMutex<T>) -> lockscope::MutexWord {
    unsafe { m.raw() }.word()
}

fn log(n: u32) {
    let g = LOG.lock();
    g.borrow_mut().push(n);
    if n > 0 {
        // Re-enter while holding the lock.
        log(n - 1);
    }
}

#[test]
fn static_reentrant_recursion() {
    log(3);
    let g = LOG.lock();
    let v = g.borrow();
    assert!(v.ends_with(&[3, 2, 1, 0]));
}

#[test]
fn reentrant_on_one_thread_exclusive_across_threads() {
    let m = Arc::new(ReentrantMutex::new(Cell::new(0)));
    let a = m.lock();
    let b = m.lock();
    let c = m.try_lock().expect("owner's try_lock failed");
    let d = m
        .try_lock_for(Duration::ZERO)
        .expect("owner's timed lock failed");
    a.set(1);
    assert_eq!(d.get(), 1);
    assert!(m.is_locked());
    assert!(m.is_owned_by_current_thread());
    let m2 = Arc::clone(&m);
    let other = thread::spawn(move || {
        assert!(!m2.is_owned_by_current_thread());
        let none = m2.try_lock().is_none();
        let t = Duration::from_millis(20);
        let start = Instant::now();
        let timed = m2.try_lock_for(t).is_none();
        none && timed && start.elapsed() >= t
    });
    assert!(other.join().unwrap());
    // Releasing all but one keeps it locked.
    drop((a, b, c));
    assert!(m.is_locked());
    let m3 = Arc::clone(&m);
    assert!(
        thread::spawn(move || m3.try_lock().is_none())
            .join()
            .unwrap()
    );
    drop(d);
    assert!(!m.is_locked());
    assert_eq!(raw_word(&m).raw, 0);
    let m4 = Arc::clone(&m);
    thread::spawn(move || m4.lock().set(2)).join().unwrap();
    assert_eq!(m.lock().get(), 2);
}

#[test]
fn waiter_gets_lock_after_last_nested_guard() {
    let m = Arc::new(ReentrantMutex::new(Cell::new(0)));
    let a = m.lock();
    let b = m.lock();
    let m2 = Arc::clone(&m);
    let h = thread::spawn(move || {
        let g = m2.lock();
        let inner = m2.lock();
        g.set(g.get() + 1);
        drop(inner);
    });
    wait_until_parked("other thread parked", || raw_word(&m).parked);
    drop(a);
    thread::sleep(Duration::from_millis(20));
    assert!(
        !h.is_finished(),
        "other thread got in while a nested guard was held"
    );
    drop(b);
    h.join().unwrap();
    assert_eq!(m.lock().get(), 1);
}

#[test]
fn timed_and_until_and_max() {
    let m = Arc::new(ReentrantMutex::new(()));
    let (tx, rx) = mpsc::channel::<()>();
    let (ltx, lrx) = mpsc::channel();
    let m2 = Arc::clone(&m);
    let h = thread::spawn(move || {
        let _g = m2.lock();
        ltx.send(()).unwrap();
        let _ = rx.recv();
    });
    lrx.recv().unwrap();
    let deadline = Instant::now() + Duration::from_millis(20);
    assert!(m.try_lock_until(deadline).is_none());
    assert!(Instant::now() >= deadline);
    assert!(
        m.try_lock_until(Instant::now() - Duration::from_millis(1))
            .is_none()
    );
    assert!(m.try_lock_for(Duration::ZERO).is_none());
    let m3 = Arc::clone(&m);
    let waiter = thread::spawn(move || m3.try_lock_for(Duration::MAX).is_some());
    wait_until_parked("waiter parked", || raw_word(&m).parked);
    drop(tx);
    h.join().unwrap();
    assert!(waiter.join().unwrap());
    assert_eq!(raw_word(&m).raw, 0);
}

#[test]
fn map_unlocked_bump_and_guard_accessors() {
    let m = Arc::new(ReentrantMutex::new((1, String::from("x"))));
    let g = m.lock();
    assert!(std::ptr::eq(ReentrantMutexGuard::remutex(&g), &*m));
    let s: MappedReentrantMutexGuard<'_, String> = ReentrantMutexGuard::map(g, |t| &t.1);
    assert_eq!(*s, "x");
    drop(s);
    let g = m.lock();
    let g = match ReentrantMutexGuard::try_map(g, |_| None::<&u8>) {
        Ok(_) => panic!("mapped to None"),
        Err(g) => g,
    };
    assert!(m.is_owned_by_current_thread());
    let mut g = g;
    let m2 = Arc::clone(&m);
    ReentrantMutexGuard::unlocked(&mut g, || {
        assert!(!m2.is_locked());
        thread::spawn(move || assert!(m2.try_lock().is_some()))
            .join()
            .unwrap();
    });
    assert!(m.is_owned_by_current_thread());
    let m3 = Arc::clone(&m);
    ReentrantMutexGuard::unlocked_fair(&mut g, || {
        thread::spawn(move || drop(m3.lock())).join().unwrap();
    });
    ReentrantMutexGuard::bump(&mut g);
    assert!(m.is_owned_by_current_thread());
    ReentrantMutexGuard::unlock_fair(g);
    assert!(!m.is_locked());
}

#[test]
fn force_unlock_after_forget_and_accessors() {
    let mut m = ReentrantMutex::new(5);
    *m.get_mut() += 1;
    assert_eq!(unsafe { *m.data_ptr() }, 6);
    mem::forget(m.lock());
    assert!(m.is_locked());
    unsafe { m.force_unlock() };
    assert!(!m.is_locked());
    mem::forget(m.lock());
    unsafe { m.force_unlock_fair() };
    assert!(!m.is_locked());
    assert_eq!(raw_word(&m).raw, 0);
    assert_eq!(m.into_inner(), 6);
}

#[test]
fn panic_releases_all_nested_guards() {
    let m = Arc::new(ReentrantMutex::new(Cell::new(0)));
    let r = catch_unwind(AssertUnwindSafe(|| {
        let _a = m.lock();
        let b = m.lock();
        b.set(4);
        panic!("nested");
    }));
    assert!(r.is_err());
    assert!(!m.is_locked());
    let m2 = Arc::clone(&m);
    assert_eq!(thread::spawn(move || m2.lock().get()).join().unwrap(), 4);
}

#[test]
fn contended_reentrant_counter() {
    let m = Arc::new(ReentrantMutex::new(Cell::new(0u64)));
    thread::scope(|s| {
        for _ in 0..4 {
            let m = &m;
            s.spawn(move || {
                for _ in 0..500 {
                    let outer = m.lock();
                    let inner = m.lock();
                    let v = inner.get();
                    drop(inner);
                    outer.set(v + 1);
                }
            });
        }
    });
    assert_eq!(m.lock().get(), 2000);
    assert_eq!(raw_word(&m).raw, 0);
}
