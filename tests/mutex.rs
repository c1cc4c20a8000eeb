//! Mutex and FairMutex: every method group, timed acquisition semantics,
//! guards, raw access, panics.

mod common;

use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use lockscope::{
    FairMutex, FairMutexGuard, MappedFairMutexGuard, MappedMutexGuard, Mutex, MutexGuard,
};

static COUNTER: Mutex<u64> = Mutex::new(0);
static FAIR_COUNTER: FairMutex<u64> = FairMutex::new(0);

fn word<T>(m: &Mutex<T>) -> lockscope::MutexWord {
    unsafe { m.raw() }.word()
}

fn fair_word<T>(m: &FairMutex<T>) -> lockscope::MutexWord {
    unsafe { m.raw() }.inner().word()
}

/// Holds `m` on another thread until the returned sender is dropped or used.
fn hold_on_other_thread<T: Send + 'static>(
    m: Arc<Mutex<T>>,
) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (locked_tx, locked_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let h = thread::spawn(move || {
        let _g = m.lock();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    locked_rx.recv().unwrap();
    (release_tx, h)
}

#[test]
fn static_mutex_counts() {
    let handles: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(|| {
                for _ in 0..1000 {
                    *COUNTER.lock() += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*COUNTER.lock(), 4000);
    assert!(!COUNTER.is_locked());
}

#[test]
fn static_fair_mutex_counts() {
    thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..500 {
                    *FAIR_COUNTER.lock() += 1;
                }
            });
        }
    });
    assert_eq!(*FAIR_COUNTER.lock(), 1500);
}

#[test]
fn lock_try_lock_and_is_locked() {
    let m = Mutex::new(5);
    assert!(!m.is_locked());
    assert_eq!(word(&m).raw, 0);
    {
        let mut g = m.lock();
        *g += 1;
        assert!(m.is_locked());
        let w = word(&m);
        assert!(w.locked && !w.parked && w.is_valid());
        assert!(m.try_lock().is_none(), "try_lock succeeded on a held mutex");
    }
    assert!(!m.is_locked());
    let g = m.try_lock().expect("try_lock failed on a free mutex");
    assert_eq!(*g, 6);
    assert!(std::ptr::eq(MutexGuard::mutex(&g), &m));
}

#[test]
fn try_lock_fails_while_other_thread_holds() {
    let m = Arc::new(Mutex::new(()));
    let (release, h) = hold_on_other_thread(Arc::clone(&m));
    assert!(m.try_lock().is_none());
    release.send(()).unwrap();
    h.join().unwrap();
    assert!(m.try_lock().is_some());
}

#[test]
fn into_inner_get_mut_data_ptr() {
    let mut m = Mutex::new(vec![1, 2]);
    m.get_mut().push(3);
    assert_eq!(*m.lock(), [1, 2, 3]);
    let p = m.data_ptr();
    assert_eq!(unsafe { &*p }.len(), 3);
    assert_eq!(m.into_inner(), [1, 2, 3]);

    let m = Mutex::new(String::from("x"));
    let g = m.lock();
    // data_ptr does not lock: it works while the mutex is held.
    assert!(std::ptr::eq(m.data_ptr(), &*g));
}

#[test]
fn default_and_debug() {
    let m: Mutex<u32> = Mutex::default();
    assert_eq!(*m.lock(), 0);
    assert!(format!("{m:?}").contains('0'));
    let g = m.lock();
    assert!(format!("{m:?}").contains("locked"));
    assert_eq!(format!("{g:?}"), "0");
}

#[test]
fn try_lock_for_times_out_no_earlier_than_timeout() {
    let m = Arc::new(Mutex::new(()));
    let (release, h) = hold_on_other_thread(Arc::clone(&m));
    for ms in [1, 10, 60] {
        let timeout = Duration::from_millis(ms);
        let start = Instant::now();
        assert!(m.try_lock_for(timeout).is_none());
        let elapsed = start.elapsed();
        assert!(
            elapsed >= timeout,
            "returned after {elapsed:?} < {timeout:?}"
        );
    }
    let deadline = Instant::now() + Duration::from_millis(30);
    assert!(m.try_lock_until(deadline).is_none());
    assert!(Instant::now() >= deadline);
    release.send(()).unwrap();
    h.join().unwrap();
    let w = word(&m);
    assert_eq!(w.raw, 0, "word after timeouts: {w}");
}

#[test]
fn zero_timeout_and_past_deadline() {
    let m = Arc::new(Mutex::new(()));
    // Free: a zero timeout / past deadline still acquires.
    assert!(m.try_lock_for(Duration::ZERO).is_some());
    let past = Instant::now() - Duration::from_millis(10);
    assert!(m.try_lock_until(past).is_some());
    let (release, h) = hold_on_other_thread(Arc::clone(&m));
    assert!(m.try_lock_for(Duration::ZERO).is_none());
    assert!(m.try_lock_until(past).is_none());
    assert!(m.try_lock_until(Instant::now()).is_none());
    release.send(()).unwrap();
    h.join().unwrap();
    assert_eq!(word(&m).raw, 0);
}

#[test]
fn duration_max_waits_until_released() {
    let m = Arc::new(Mutex::new(0));
    let g = m.lock();
    let m2 = Arc::clone(&m);
    let h = thread::spawn(move || {
        let mut g = m2
            .try_lock_for(Duration::MAX)
            .expect("Duration::MAX gave up");
        *g += 1;
    });
    wait_until_parked("waiter parked", || word(&m).parked);
    assert!(!h.is_finished());
    drop(g);
    h.join().unwrap();
    assert_eq!(*m.lock(), 1);
}

#[test]
fn timed_lock_succeeds_when_released_during_wait() {
    let m = Arc::new(Mutex::new(0));
    let g = m.lock();
    let m2 = Arc::clone(&m);
    let h = thread::spawn(move || {
        m2.try_lock_for(Duration::from_secs(30))
            .map(|mut g| *g += 1)
    });
    wait_until_parked("waiter parked", || word(&m).parked);
    drop(g);
    assert!(h.join().unwrap().is_some());
    let m3 = Arc::clone(&m);
    let g = m.lock();
    let h = thread::spawn(move || {
        m3.try_lock_until(Instant::now() + Duration::from_secs(30))
            .map(|mut g| *g += 1)
    });
    wait_until_parked("waiter parked", || word(&m).parked);
    drop(g);
    assert!(h.join().unwrap().is_some());
    assert_eq!(*m.lock(), 2);
}

#[test]
fn map_and_try_map() {
    let m = Mutex::new((1, String::from("a")));
    {
        let g = m.lock();
        let mut s: MappedMutexGuard<'_, String> = MutexGuard::map(g, |t| &mut t.1);
        s.push('b');
        assert!(m.is_locked());
        let mut first = MappedMutexGuard::map(s, |s| s);
        first.push('c');
    }
    assert!(!m.is_locked());
    assert_eq!(m.lock().1, "abc");

    let g = m.lock();
    let g = match MutexGuard::try_map(g, |_| None::<&mut u8>) {
        Ok(_) => panic!("try_map with None mapped"),
        Err(g) => g,
    };
    assert!(m.is_locked(), "a failed try_map must keep the lock");
    assert_eq!(g.0, 1);
    let mapped = MutexGuard::try_map(g, |t| Some(&mut t.0)).unwrap();
    let mapped = match MappedMutexGuard::try_map(mapped, |_| None::<&mut u8>) {
        Ok(_) => panic!("mapped try_map with None mapped"),
        Err(g) => g,
    };
    assert_eq!(*mapped, 1);
    drop(mapped);
    assert!(!m.is_locked());
}

#[test]
fn unlocked_lets_others_in() {
    let m = Arc::new(Mutex::new(0));
    let mut g = m.lock();
    *g = 1;
    let m2 = Arc::clone(&m);
    MutexGuard::unlocked(&mut g, || {
        assert!(!m2.is_locked());
        thread::spawn(move || *m2.lock() += 10).join().unwrap();
    });
    assert!(m.is_locked());
    assert_eq!(*g, 11);
    let m3 = Arc::clone(&m);
    MutexGuard::unlocked_fair(&mut g, || {
        thread::spawn(move || *m3.lock() += 100).join().unwrap();
    });
    assert_eq!(*g, 111);
}

#[test]
fn bump_hands_the_lock_to_a_parked_waiter() {
    let m = Arc::new(Mutex::new(Vec::new()));
    let mut g = m.lock();
    // Without waiters, bump keeps the lock.
    MutexGuard::bump(&mut g);
    assert!(m.is_locked());
    g.push("owner");
    let m2 = Arc::clone(&m);
    let h = thread::spawn(move || m2.lock().push("waiter"));
    wait_until_parked("waiter parked", || word(&m).parked);
    MutexGuard::bump(&mut g);
    // The waiter ran in between: bump handed it the lock and took it back.
    assert_eq!(*g, ["owner", "waiter"]);
    g.push("owner again");
    drop(g);
    h.join().unwrap();
    assert_eq!(word(&m).raw, 0);
}

#[test]
fn unlock_fair_hands_off_to_parked_waiter() {
    let m = Arc::new(Mutex::new(0));
    let g = m.lock();
    let m2 = Arc::clone(&m);
    let (tx, rx) = mpsc::channel::<()>();
    let h = thread::spawn(move || {
        let mut g = m2.lock();
        *g += 1;
        rx.recv().unwrap();
    });
    wait_until_parked("waiter parked", || word(&m).parked);
    MutexGuard::unlock_fair(g);
    // Ownership passed directly to the waiter: the mutex never became free.
    assert!(
        m.try_lock().is_none(),
        "unlock_fair let the unlocker barge back in"
    );
    tx.send(()).unwrap();
    h.join().unwrap();
    assert_eq!(*m.lock(), 1);
}

#[test]
fn leak_keeps_it_locked_and_force_unlock_releases() {
    let m = Mutex::new(1);
    let data: &mut i32 = MutexGuard::leak(m.lock());
    *data = 2;
    assert!(m.is_locked());
    assert!(m.try_lock().is_none());
    unsafe { m.force_unlock(raw_guard()) };
    assert!(!m.is_locked());
    assert_eq!(*m.lock(), 2);
}

#[test]
fn force_unlock_after_forget() {
    let m = Mutex::new(0);
    mem::forget(m.lock());
    assert!(m.is_locked());
    unsafe { m.force_unlock(raw_guard()) };
    assert!(!m.is_locked());
    assert_eq!(word(&m).raw, 0);
    mem::forget(m.lock());
    unsafe { m.force_unlock_fair(raw_guard()) };
    assert!(!m.is_locked());
    *m.lock() += 1;
    assert_eq!(m.into_inner(), 1);
}

#[test]
fn force_unlock_from_another_thread_wakes_waiter() {
    let m = Arc::new(Mutex::new(0));
    mem::forget(m.lock());
    let m2 = Arc::clone(&m);
    let h = thread::spawn(move || *m2.lock() += 1);
    wait_until_parked("waiter parked", || word(&m).parked);
    unsafe { m.force_unlock(raw_guard()) };
    h.join().unwrap();
    assert_eq!(*m.lock(), 1);
}

#[test]
fn panic_while_locked_releases_and_does_not_poison() {
    let m = Arc::new(Mutex::new(0));
    let m2 = Arc::clone(&m);
    let r = thread::spawn(move || {
        let mut g = m2.lock();
        *g = 7;
        panic!("boom");
    })
    .join();
    assert!(r.is_err());
    assert!(!m.is_locked());
    assert_eq!(*m.lock(), 7);

    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut g = m.lock();
        *g = 8;
        panic!("panic while the guard is held");
    }));
    assert!(r.is_err());
    assert!(!m.is_locked());
    assert_eq!(*m.lock(), 8);
    assert_eq!(word(&m).raw, 0);
}

#[test]
fn mapped_guard_released_on_panic() {
    let m = Mutex::new([0u8; 4]);
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut g = MutexGuard::map(m.lock(), |a| &mut a[2]);
        *g = 9;
        panic!("inside mapped guard");
    }));
    assert!(r.is_err());
    assert!(!m.is_locked());
    assert_eq!(*m.lock(), [0, 0, 9, 0]);
}

#[test]
fn many_waiters_all_get_the_lock() {
    let m = Arc::new(Mutex::new(0));
    let g = m.lock();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let m = Arc::clone(&m);
            thread::spawn(move || *m.lock() += 1)
        })
        .collect();
    wait_until_parked("waiters parked", || word(&m).parked);
    drop(g);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*m.lock(), 8);
    assert_eq!(word(&m).raw, 0);
}

#[test]
fn timed_out_waiter_leaves_word_clean() {
    let m = Arc::new(Mutex::new(()));
    let g = m.lock();
    let m2 = Arc::clone(&m);
    let h = thread::spawn(move || m2.try_lock_for(Duration::from_millis(50)).is_none());
    assert!(h.join().unwrap());
    // The only waiter timed out: the parked bit must be gone.
    let w = word(&m);
    assert!(w.locked && !w.parked, "after the waiter timed out: {w}");
    drop(g);
    assert_eq!(word(&m).raw, 0);
}

// ---- FairMutex ----

#[test]
fn fair_mutex_basics_and_guards() {
    let mut m = FairMutex::new(vec![1]);
    m.get_mut().push(2);
    {
        let g = m.lock();
        assert!(m.is_locked());
        assert!(m.try_lock().is_none());
        let mut mapped: MappedFairMutexGuard<'_, i32> = FairMutexGuard::map(g, |v| &mut v[0]);
        *mapped = 10;
    }
    assert!(!m.is_locked());
    assert!(fair_word(&m).is_valid());
    let g = m.try_lock_for(Duration::ZERO).unwrap();
    assert_eq!(*g, [10, 2]);
    drop(g);
    mem::forget(m.lock());
    unsafe { m.force_unlock(raw_guard()) };
    assert_eq!(fair_word(&m).raw, 0);
    assert_eq!(m.into_inner(), [10, 2]);
}

#[test]
fn fair_mutex_timeouts() {
    let m = Arc::new(FairMutex::new(()));
    let m2 = Arc::clone(&m);
    let (tx, rx) = mpsc::channel::<()>();
    let (ltx, lrx) = mpsc::channel();
    let h = thread::spawn(move || {
        let _g = m2.lock();
        ltx.send(()).unwrap();
        let _ = rx.recv();
    });
    lrx.recv().unwrap();
    let t = Duration::from_millis(30);
    let start = Instant::now();
    assert!(m.try_lock_for(t).is_none());
    assert!(start.elapsed() >= t);
    assert!(m.try_lock_until(Instant::now() - t).is_none());
    drop(tx);
    h.join().unwrap();
    assert_eq!(fair_word(&m).raw, 0);
}

#[test]
fn fair_mutex_plain_drop_hands_off() {
    let m = Arc::new(FairMutex::new(0));
    let g = m.lock();
    let m2 = Arc::clone(&m);
    let (tx, rx) = mpsc::channel::<()>();
    let h = thread::spawn(move || {
        let mut g = m2.lock();
        *g += 1;
        rx.recv().unwrap();
    });
    wait_until_parked("waiter parked", || fair_word(&m).parked);
    drop(g);
    assert!(
        m.try_lock().is_none(),
        "a FairMutex release let the unlocker barge"
    );
    tx.send(()).unwrap();
    h.join().unwrap();
    assert_eq!(*m.lock(), 1);
}

#[test]
fn fair_mutex_bump_lets_waiters_in() {
    // bump on a FairMutex with parked waiters must let a waiter run before
    // the bumping thread gets the lock back.
    let m = Arc::new(FairMutex::new(Vec::new()));
    let mut g = m.lock();
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let m = Arc::clone(&m);
            thread::spawn(move || m.lock().push(i))
        })
        .collect();
    wait_until_parked("waiters parked", || fair_word(&m).parked);
    g.push(100);
    FairMutexGuard::bump(&mut g);
    g.push(200);
    drop(g);
    for h in handles {
        h.join().unwrap();
    }
    let v = m.lock();
    // bump let at least one waiter run between 100 and 200.
    let p100 = v.iter().position(|&x| x == 100).unwrap();
    let p200 = v.iter().position(|&x| x == 200).unwrap();
    assert!(p200 > p100 + 1, "bump let no waiter in: {v:?}");
    assert_eq!(v.len(), 5);
}

#[test]
fn fair_mutex_unlocked_fair_and_unlocked() {
    let m = Arc::new(FairMutex::new(0));
    let mut g = m.lock();
    let m2 = Arc::clone(&m);
    FairMutexGuard::unlocked(&mut g, || {
        thread::spawn(move || *m2.lock() += 1).join().unwrap();
    });
    let m3 = Arc::clone(&m);
    FairMutexGuard::unlocked_fair(&mut g, || {
        thread::spawn(move || *m3.lock() += 1).join().unwrap();
    });
    assert_eq!(*g, 2);
}

#[test]
fn contended_timed_locks_keep_count() {
    let m = Arc::new(Mutex::new(0u64));
    let got = Arc::new(AtomicUsize::new(0));
    thread::scope(|s| {
        for i in 0..4 {
            let m = &m;
            let got = &got;
            s.spawn(move || {
                for j in 0..300 {
                    let t = Duration::from_micros((i * 7 + j) % 50);
                    if let Some(mut g) = m.try_lock_for(t) {
                        *g += 1;
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(*m.lock() as usize, got.load(Ordering::Relaxed));
    assert_eq!(word(&m).raw, 0);
}
