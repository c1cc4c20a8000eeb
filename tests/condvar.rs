//! Condvar: wait / wait_for / wait_until / wait_while, notification return
//! values (exact: no spurious wakeups), timeouts, one-mutex rule.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use lockscope::{Condvar, Mutex};

static READY: Mutex<bool> = Mutex::new(false);
static READY_CV: Condvar = Condvar::new();

fn mutex_word<T>(m: &Mutex<T>) -> lockscope::MutexWord {
    unsafe { m.raw() }.word()
}

/// Starts `n` threads that each wait once on `cv` (with `wait`), counting
/// themselves in the mutex before waiting; returns once all `n` are waiting.
fn start_waiters(pair: &Arc<(Mutex<usize>, Condvar)>, n: usize) -> Vec<thread::JoinHandle<()>> {
    let hs = (0..n)
        .map(|_| {
            let pair = Arc::clone(pair);
            thread::spawn(move || {
                let (m, cv) = &*pair;
                let mut g = m.lock();
                *g += 1;
                cv.wait(&mut g);
            })
        })
        .collect();
    // A waiter counts itself under the mutex and releases it only by waiting,
    // so seeing the full count under the mutex means all are waiting.
    wait_for("all waiters waiting", || *pair.0.lock() == n);
    hs
}

#[test]
fn notify_without_waiters() {
    let cv = Condvar::new();
    assert!(!cv.notify_one());
    assert_eq!(cv.notify_all(), 0);
    let cv = Condvar::default();
    assert!(!cv.notify_one());
    assert_eq!(format!("{cv:?}"), "Condvar { .. }");
}

#[test]
fn static_condvar_handshake() {
    let h = thread::spawn(|| {
        let mut g = READY.lock();
        while !*g {
            READY_CV.wait(&mut g);
        }
    });
    thread::sleep(Duration::from_millis(20));
    *READY.lock() = true;
    READY_CV.notify_all();
    h.join().unwrap();
}

#[test]
fn notify_one_returns_true_exactly_once_per_waiter() {
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let hs = start_waiters(&pair, 3);
    {
        let _g = pair.0.lock();
        assert!(pair.1.notify_one());
        assert!(pair.1.notify_one());
        assert!(pair.1.notify_one());
        assert!(
            !pair.1.notify_one(),
            "notified a fourth, nonexistent waiter"
        );
    }
    for h in hs {
        h.join().unwrap();
    }
    assert!(!pair.1.notify_one());
    assert_eq!(mutex_word(&pair.0).raw, 0);
}

#[test]
fn notify_all_returns_number_of_waiters() {
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let hs = start_waiters(&pair, 5);
    // Notified under the lock (requeued onto the held mutex).
    let n = {
        let _g = pair.0.lock();
        pair.1.notify_all()
    };
    assert_eq!(n, 5);
    assert_eq!(pair.1.notify_all(), 0);
    for h in hs {
        h.join().unwrap();
    }
    // Notified without holding the lock.
    *pair.0.lock() = 0;
    let hs = start_waiters(&pair, 4);
    assert_eq!(pair.1.notify_all(), 4);
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(mutex_word(&pair.0).raw, 0);
}

#[test]
fn wait_does_not_return_without_notification() {
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let woke = Arc::new(AtomicBool::new(false));
    let (p2, w2) = (Arc::clone(&pair), Arc::clone(&woke));
    let h = thread::spawn(move || {
        let mut g = p2.0.lock();
        *g += 1;
        p2.1.wait(&mut g);
        w2.store(true, Ordering::SeqCst);
    });
    wait_for("waiter waiting", || *pair.0.lock() == 1);
    // Lock and unlock the mutex a lot: no notification, so no wakeup.
    for _ in 0..1000 {
        drop(pair.0.lock());
    }
    thread::sleep(Duration::from_millis(100));
    assert!(
        !woke.load(Ordering::SeqCst),
        "wait returned without a notify"
    );
    assert!(pair.1.notify_one());
    h.join().unwrap();
    assert!(woke.load(Ordering::SeqCst));
}

#[test]
fn wait_for_times_out_no_earlier_and_reports_it() {
    let m = Mutex::new(());
    let cv = Condvar::new();
    let mut g = m.lock();
    for ms in [1, 10, 50] {
        let t = Duration::from_millis(ms);
        let start = Instant::now();
        let r = cv.wait_for(&mut g, t);
        let elapsed = start.elapsed();
        assert!(r.timed_out(), "wait_for without notify did not time out");
        assert!(elapsed >= t, "{elapsed:?} < {t:?}");
        assert!(m.is_locked(), "the guard must be re-locked after a timeout");
    }
    let deadline = Instant::now() + Duration::from_millis(20);
    assert!(cv.wait_until(&mut g, deadline).timed_out());
    assert!(Instant::now() >= deadline);
    assert!(cv.wait_for(&mut g, Duration::ZERO).timed_out());
    assert!(
        cv.wait_until(&mut g, Instant::now() - Duration::from_millis(5))
            .timed_out()
    );
    // Nobody waits any more: the condvar forgot the mutex.
    assert!(!cv.notify_one());
    drop(g);
    assert_eq!(mutex_word(&m).raw, 0);
}

#[test]
fn wait_for_notified_is_not_a_timeout() {
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let p2 = Arc::clone(&pair);
    let h = thread::spawn(move || {
        let mut g = p2.0.lock();
        *g = 1;
        let r = p2.1.wait_for(&mut g, Duration::from_secs(30));
        (r.timed_out(), *g)
    });
    wait_for("waiter waiting", || *pair.0.lock() == 1);
    let mut g = pair.0.lock();
    *g = 2;
    assert!(pair.1.notify_one(), "the waiter was not waiting");
    drop(g);
    assert_eq!(h.join().unwrap(), (false, 2));
}

#[test]
fn wait_until_notified_is_not_a_timeout() {
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let p2 = Arc::clone(&pair);
    let h = thread::spawn(move || {
        let mut g = p2.0.lock();
        *g = 1;
        p2.1.wait_until(&mut g, Instant::now() + Duration::from_secs(30))
            .timed_out()
    });
    wait_for("waiter", || *pair.0.lock() == 1);
    assert!(pair.1.notify_one());
    assert!(!h.join().unwrap());
}

#[test]
fn wait_for_duration_max_waits_for_notify() {
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let p2 = Arc::clone(&pair);
    let h = thread::spawn(move || {
        let mut g = p2.0.lock();
        *g = 1;
        p2.1.wait_for(&mut g, Duration::MAX).timed_out()
    });
    wait_for("waiter", || *pair.0.lock() == 1);
    thread::sleep(Duration::from_millis(30));
    assert!(!h.is_finished());
    assert!(pair.1.notify_one());
    assert!(!h.join().unwrap());
}

#[test]
fn wait_while_and_timed_variants() {
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let p2 = Arc::clone(&pair);
    let h = thread::spawn(move || {
        let mut g = p2.0.lock();
        p2.1.wait_while(&mut g, |v| *v < 3);
        *g
    });
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(5));
        *pair.0.lock() += 1;
        pair.1.notify_all();
    }
    assert_eq!(h.join().unwrap(), 3);

    let (m, cv) = &*pair;
    let mut g = m.lock();
    // Condition already false: returns at once, not timed out.
    assert!(
        !cv.wait_while_for(&mut g, |v| *v != 3, Duration::ZERO)
            .timed_out()
    );
    let t = Duration::from_millis(30);
    let start = Instant::now();
    let r = cv.wait_while_for(&mut g, |_| true, t);
    assert!(r.timed_out());
    assert!(start.elapsed() >= t);
    let deadline = Instant::now() + t;
    assert!(cv.wait_while_until(&mut g, |_| true, deadline).timed_out());
    assert!(Instant::now() >= deadline);
    drop(g);

    let p3 = Arc::clone(&pair);
    let h = thread::spawn(move || {
        let mut g = p3.0.lock();
        let r = p3.1.wait_while_for(&mut g, |v| *v != 10, Duration::MAX);
        (r.timed_out(), *g)
    });
    thread::sleep(Duration::from_millis(20));
    *pair.0.lock() = 10;
    pair.1.notify_one();
    assert_eq!(h.join().unwrap(), (false, 10));
}

#[test]
fn notify_under_lock_requeues_and_every_waiter_gets_the_lock() {
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let p = Arc::clone(&pair);
            thread::spawn(move || {
                let mut g = p.0.lock();
                *g += 1;
                let r = p.1.wait_for(&mut g, Duration::from_secs(30));
                *g += 100;
                r.timed_out()
            })
        })
        .collect();
    wait_for("all waiting", || *pair.0.lock() == 4);
    let g = pair.0.lock();
    assert_eq!(pair.1.notify_all(), 4);
    // The notified threads now wait for the mutex we hold.
    thread::sleep(Duration::from_millis(20));
    assert_eq!(*g, 4);
    assert!(
        mutex_word(&pair.0).parked,
        "requeued waiters not parked on the mutex"
    );
    drop(g);
    for h in hs {
        assert!(
            !h.join().unwrap(),
            "a notified timed wait reported a timeout"
        );
    }
    assert_eq!(*pair.0.lock(), 404);
    assert_eq!(mutex_word(&pair.0).raw, 0);
}

#[test]
fn requeued_timed_waiter_whose_deadline_passes_on_the_mutex() {
    // Notified (so not a timeout), then its deadline passes while it waits
    // for the mutex the notifier still holds.
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let p2 = Arc::clone(&pair);
    let h = thread::spawn(move || {
        let mut g = p2.0.lock();
        *g = 1;
        let r = p2.1.wait_for(&mut g, Duration::from_millis(50));
        (r.timed_out(), *g)
    });
    wait_for("waiting", || *pair.0.lock() == 1);
    let mut g = pair.0.lock();
    assert!(pair.1.notify_one());
    thread::sleep(Duration::from_millis(150));
    *g = 2;
    drop(g);
    let (timed_out, v) = h.join().unwrap();
    assert_eq!(v, 2, "the waiter must have re-locked the mutex");
    assert!(!timed_out, "a notified wait reported a timeout");
    assert_eq!(mutex_word(&pair.0).raw, 0);
}

#[test]
fn two_mutexes_at_once_panics_without_releasing() {
    let cv = Arc::new(Condvar::new());
    let m1 = Arc::new(Mutex::new(0));
    let (cv2, m1b) = (Arc::clone(&cv), Arc::clone(&m1));
    let h = thread::spawn(move || {
        let mut g = m1b.lock();
        *g = 1;
        while *g == 1 {
            cv2.wait(&mut g);
        }
    });
    wait_for("first waiter", || *m1.lock() == 1);
    let m2 = Mutex::new(());
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut g = m2.lock();
        cv.wait_for(&mut g, Duration::from_secs(30));
    }));
    let err = r.expect_err("waiting with a second mutex did not panic");
    let msg = err
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap();
    assert!(msg.contains("two different mutexes"), "{msg}");
    assert!(!m2.is_locked());
    assert_eq!(mutex_word(&m2).raw, 0);
    // The first waiter is unaffected.
    *m1.lock() = 2;
    assert!(cv.notify_one());
    h.join().unwrap();
}

#[test]
fn condvar_can_switch_mutex_once_nobody_waits() {
    let cv = Condvar::new();
    let a = Mutex::new(());
    let b = Mutex::new(());
    assert!(
        cv.wait_for(&mut a.lock(), Duration::from_millis(1))
            .timed_out()
    );
    assert!(
        cv.wait_for(&mut b.lock(), Duration::from_millis(1))
            .timed_out()
    );
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let hs = start_waiters(&pair, 1);
    assert!(pair.1.notify_one());
    hs.into_iter().for_each(|h| h.join().unwrap());
    let m = Mutex::new(());
    assert!(
        pair.1
            .wait_for(&mut m.lock(), Duration::from_millis(1))
            .timed_out()
    );
}

#[test]
fn producer_consumer_bounded_queue() {
    struct Q {
        items: Mutex<Vec<u64>>,
        not_empty: Condvar,
        not_full: Condvar,
    }
    let q = Arc::new(Q {
        items: Mutex::new(Vec::new()),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
    });
    const N: u64 = 2000;
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                for i in 0..N {
                    let mut g = q.items.lock();
                    q.not_full.wait_while(&mut g, |v| v.len() >= 8);
                    g.push(p * N + i);
                    drop(g);
                    q.not_empty.notify_one();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..N {
                    let mut g = q.items.lock();
                    q.not_empty.wait_while(&mut g, |v| v.is_empty());
                    got.push(g.pop().unwrap());
                    drop(g);
                    q.not_full.notify_one();
                }
                got
            })
        })
        .collect();
    let done = finishes_within(Duration::from_secs(60), move || {
        producers.into_iter().for_each(|h| h.join().unwrap());
        let mut all: Vec<u64> = consumers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all
    });
    let all = done.expect("producer/consumer hung (lost notification?)");
    assert_eq!(all, (0..2 * N).collect::<Vec<_>>());
    assert!(q.items.lock().is_empty());
    assert_eq!(mutex_word(&q.items).raw, 0);
}
