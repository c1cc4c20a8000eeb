//! Once: runs exactly once, state, poisoning, call_once_force, wait.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::*;
use lockscope::{Once, OnceState};

static INIT: Once = Once::new();
static RUNS: AtomicUsize = AtomicUsize::new(0);

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[test]
fn static_once_runs_once_across_threads() {
    let hs: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(|| {
                INIT.call_once(|| {
                    thread::sleep(Duration::from_millis(20));
                    RUNS.fetch_add(1, Ordering::SeqCst);
                });
                // Everyone returns only after the closure completed.
                assert_eq!(RUNS.load(Ordering::SeqCst), 1);
                assert!(INIT.is_completed());
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    INIT.call_once(|| panic!("ran twice"));
    INIT.call_once_force(|_| panic!("ran twice"));
    assert_eq!(INIT.state(), OnceState::Done);
}

#[test]
fn state_transitions() {
    let once = Once::new();
    assert_eq!(once.state(), OnceState::New);
    assert!(!once.is_completed());
    once.call_once(|| assert_eq!(once.state(), OnceState::InProgress));
    assert_eq!(once.state(), OnceState::Done);
    assert!(once.state().done() && once.state().is_completed());
    assert!(!once.state().poisoned() && !once.state().is_poisoned());
    assert!(format!("{once:?}").contains("Done"));
    let d = Once::default();
    assert_eq!(d.state(), OnceState::New);
}

#[test]
fn new_completed_never_runs() {
    let once = Once::new_completed();
    assert_eq!(once.state(), OnceState::Done);
    once.call_once(|| panic!("ran on a completed Once"));
    once.call_once_force(|_| panic!("ran on a completed Once"));
    once.wait();
    once.wait_force();
}

#[test]
fn panic_poisons_and_force_recovers() {
    let once = Once::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        once.call_once(|| panic!("init failed"))
    }));
    assert!(r.is_err());
    assert_eq!(once.state(), OnceState::Poisoned);
    assert!(once.state().is_poisoned() && once.state().poisoned());
    assert!(!once.is_completed());
    // call_once on a poisoned Once panics without running.
    let r = catch_unwind(AssertUnwindSafe(|| {
        once.call_once(|| panic!("must not run"))
    }));
    let msg = panic_message(&*r.unwrap_err());
    assert!(msg.contains("poisoned"), "{msg}");
    // wait on a poisoned Once panics too.
    let r = catch_unwind(AssertUnwindSafe(|| once.wait()));
    assert!(panic_message(&*r.unwrap_err()).contains("poisoned"));
    // A forced call that panics again keeps it poisoned.
    let r = catch_unwind(AssertUnwindSafe(|| {
        once.call_once_force(|s| {
            assert_eq!(s, OnceState::Poisoned);
            panic!("again")
        })
    }));
    assert!(r.is_err());
    assert_eq!(once.state(), OnceState::Poisoned);
    let mut seen = None;
    once.call_once_force(|s| seen = Some(s));
    assert_eq!(seen, Some(OnceState::Poisoned));
    assert_eq!(once.state(), OnceState::Done);
    once.wait();
}

#[test]
fn call_once_force_on_fresh_once_sees_new() {
    let once = Once::new();
    let mut seen = None;
    once.call_once_force(|s| seen = Some(s));
    assert_eq!(seen, Some(OnceState::New));
    assert!(once.is_completed());
}

#[test]
fn waiters_released_when_done() {
    let once = Arc::new(Once::new());
    let hs: Vec<_> = (0..4)
        .map(|i| {
            let once = Arc::clone(&once);
            thread::spawn(move || {
                if i % 2 == 0 {
                    once.wait()
                } else {
                    once.wait_force()
                }
                assert!(once.is_completed());
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(30));
    assert!(
        hs.iter().all(|h| !h.is_finished()),
        "wait returned before completion"
    );
    once.call_once(|| {});
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn waiters_during_a_panicking_closure() {
    let once = Arc::new(Once::new());
    let started = Arc::new(AtomicUsize::new(0));
    let (o2, s2) = (Arc::clone(&once), Arc::clone(&started));
    let runner = thread::spawn(move || {
        o2.call_once(|| {
            s2.store(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(80));
            panic!("runner fails");
        })
    });
    wait_for("closure started", || started.load(Ordering::SeqCst) == 1);
    let o3 = Arc::clone(&once);
    let plain_waiter = thread::spawn(move || o3.call_once(|| panic!("must not run")));
    let o4 = Arc::clone(&once);
    let waiter = thread::spawn(move || o4.wait());
    let o5 = Arc::clone(&once);
    let forcer = thread::spawn(move || {
        let mut seen = None;
        o5.call_once_force(|s| seen = Some(s));
        seen
    });
    assert!(runner.join().is_err());
    // call_once and wait that were blocked on the failed run panic (a
    // call_once that a busy machine started only after the forcer completed
    // sees a done Once and returns without running) ...
    if let Err(e) = plain_waiter.join() {
        assert!(panic_message(&*e).contains("poisoned"));
    }
    let _ = waiter.join();
    // ... while call_once_force takes over (unless it already ran before the
    // others: either way it saw the poisoned state, and the Once is done).
    assert_eq!(forcer.join().unwrap(), Some(OnceState::Poisoned));
    assert_eq!(once.state(), OnceState::Done);
}

#[test]
fn wait_force_on_poisoned_waits_for_a_forced_run() {
    let once = Arc::new(Once::new());
    let _ = catch_unwind(AssertUnwindSafe(|| once.call_once(|| panic!("poison"))));
    let o2 = Arc::clone(&once);
    let h = thread::spawn(move || o2.wait_force());
    thread::sleep(Duration::from_millis(30));
    assert!(
        !h.is_finished(),
        "wait_force returned on a poisoned, unfinished Once"
    );
    once.call_once_force(|_| {});
    assert!(finishes_within(Duration::from_secs(10), move || h.join().unwrap()).is_some());
}

#[test]
fn many_onces_many_threads() {
    let onces: Arc<Vec<(Once, AtomicUsize)>> = Arc::new(
        (0..64)
            .map(|_| (Once::new(), AtomicUsize::new(0)))
            .collect(),
    );
    thread::scope(|s| {
        for _ in 0..4 {
            let onces = &onces;
            s.spawn(move || {
                for (o, n) in onces.iter() {
                    o.call_once(|| {
                        n.fetch_add(1, Ordering::SeqCst);
                    });
                }
            });
        }
    });
    assert!(
        onces
            .iter()
            .all(|(o, n)| o.is_completed() && n.load(Ordering::SeqCst) == 1)
    );
}
