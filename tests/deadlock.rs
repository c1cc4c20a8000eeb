//! parking_lot's `deadlock_detection` usage, unchanged: a thread polls
//! `deadlock::check_deadlock()` and finds cycles of Mutexes, and (which
//! parking_lot's detector misses) cycles through an `RwLock` read and a
//! timed acquisition. Each test's deadlocked threads are left parked: the
//! process exits when the tests end.
#![cfg(feature = "deadlock_detection")]

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use lockscope::deadlock::{self, DeadlockedThread};
use lockscope::{Mutex, RwLock};

/// Whether a resolved backtrace names a function whose path ends in `name`.
fn names(thread: &DeadlockedThread, name: &str) -> bool {
    thread.backtrace().frames().iter().any(|frame| {
        frame.symbols().iter().any(|s| {
            s.name()
                .map(|n| n.to_string())
                .is_some_and(|n| n.contains(name))
        })
    })
}

/// Polls `check_deadlock()` as parking_lot's docs do, until a deadlock shows
/// whose threads' stacks name exactly the functions `parties` (one each).
fn wait_for_cycle(parties: &[&str]) -> Vec<DeadlockedThread> {
    let started = Instant::now();
    loop {
        for cycle in deadlock::check_deadlock() {
            let ours = cycle.len() == parties.len()
                && parties
                    .iter()
                    .all(|p| cycle.iter().filter(|t| names(t, p)).count() == 1);
            if ours {
                return cycle;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no deadlock of {parties:?} found"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Takes `first`, waits until every party holds its first lock, takes
/// `second`: never returns when the parties form a cycle.
fn hold_then_take(first: &Mutex<()>, second: &Mutex<()>, ready: &Barrier) {
    let _held = first.lock();
    ready.wait();
    let _never = second.lock();
}

#[inline(never)]
fn two_cycle_left(a: &Mutex<()>, b: &Mutex<()>, ready: &Barrier) {
    hold_then_take(a, b, ready);
}

#[inline(never)]
fn two_cycle_right(a: &Mutex<()>, b: &Mutex<()>, ready: &Barrier) {
    hold_then_take(b, a, ready);
}

#[test]
fn two_thread_mutex_cycle_with_backtraces() {
    if !lockscope::diag::enabled() {
        assert!(deadlock::check_deadlock().is_empty());
        return;
    }
    let a = Arc::new(Mutex::new(()));
    let b = Arc::new(Mutex::new(()));
    let ready = Arc::new(Barrier::new(2));
    {
        let (a, b, ready) = (a.clone(), b.clone(), ready.clone());
        thread::spawn(move || two_cycle_left(&a, &b, &ready));
    }
    thread::spawn(move || two_cycle_right(&a, &b, &ready));

    let cycle = wait_for_cycle(&["two_cycle_left", "two_cycle_right"]);
    let ids: Vec<usize> = cycle.iter().map(DeadlockedThread::thread_id).collect();
    assert_ne!(ids[0], ids[1]);
    // Each waits for a lock the next one holds.
    for (i, t) in cycle.iter().enumerate() {
        let step = t.waits_for();
        assert_eq!(step.thread.id as usize, t.thread_id());
        assert_eq!(step.holder.id as usize, cycle[(i + 1) % 2].thread_id());
    }
    let shown = format!("{:?}", cycle[0]);
    assert!(shown.contains("two_cycle_"), "{shown}");
}

#[inline(never)]
fn three_cycle_first(m: &[Mutex<()>; 3], ready: &Barrier) {
    hold_then_take(&m[0], &m[1], ready);
}

#[inline(never)]
fn three_cycle_second(m: &[Mutex<()>; 3], ready: &Barrier) {
    hold_then_take(&m[1], &m[2], ready);
}

#[inline(never)]
fn three_cycle_third(m: &[Mutex<()>; 3], ready: &Barrier) {
    hold_then_take(&m[2], &m[0], ready);
}

#[test]
fn three_thread_mutex_cycle_with_backtraces() {
    if !lockscope::diag::enabled() {
        return;
    }
    let m = Arc::new([Mutex::new(()), Mutex::new(()), Mutex::new(())]);
    let ready = Arc::new(Barrier::new(3));
    type Party = fn(&[Mutex<()>; 3], &Barrier);
    let parties: [Party; 3] = [three_cycle_first, three_cycle_second, three_cycle_third];
    for party in parties {
        let (m, ready) = (m.clone(), ready.clone());
        thread::spawn(move || party(&m, &ready));
    }
    let cycle = wait_for_cycle(&[
        "three_cycle_first",
        "three_cycle_second",
        "three_cycle_third",
    ]);
    let mut ids: Vec<usize> = cycle.iter().map(DeadlockedThread::thread_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

#[inline(never)]
fn reader_waits_for_mutex(l: &RwLock<()>, m: &Mutex<()>, ready: &Barrier) {
    let _read = l.read();
    ready.wait();
    let _never = m.lock();
}

#[inline(never)]
fn timed_writer_waits_for_reader(l: &RwLock<()>, m: &Mutex<()>, ready: &Barrier) {
    let _held = m.lock();
    ready.wait();
    // A timeout far beyond the test: the wait is a deadlock while it lasts.
    let _never = l.try_write_for(Duration::from_secs(3600));
}

#[test]
fn cycle_through_a_read_and_a_timed_write_is_found() {
    if !lockscope::diag::enabled() {
        return;
    }
    let l = Arc::new(RwLock::new(()));
    let m = Arc::new(Mutex::new(()));
    let ready = Arc::new(Barrier::new(2));
    {
        let (l, m, ready) = (l.clone(), m.clone(), ready.clone());
        thread::spawn(move || reader_waits_for_mutex(&l, &m, &ready));
    }
    thread::spawn(move || timed_writer_waits_for_reader(&l, &m, &ready));
    let cycle = wait_for_cycle(&["reader_waits_for_mutex", "timed_writer_waits_for_reader"]);
    let modes: Vec<_> = cycle.iter().map(|t| t.waits_for().hold_mode).collect();
    assert!(modes.contains(&lockscope::diag::Mode::Shared), "{modes:?}");
}

#[inline(never)]
fn parks_for_the_watchdog(m: &Mutex<()>) {
    drop(m.lock());
}

#[test]
fn watchdog_reports_show_where_a_waiter_parked() {
    use lockscope::diag::watchdog::{self, WatchdogConfig};
    if !lockscope::diag::enabled() {
        return;
    }
    let m = Arc::new(Mutex::new(()));
    let held = m.lock();
    let waiter = {
        let m = m.clone();
        thread::spawn(move || parks_for_the_watchdog(&m))
    };
    let config = WatchdogConfig {
        wait_threshold: Duration::ZERO,
        hold_threshold: Duration::MAX,
        ..WatchdogConfig::default()
    };
    let started = Instant::now();
    // The waiter's stack, where it parked: under the function that called
    // `lock()`.
    loop {
        let report = watchdog::check(&config);
        let stack = report.as_ref().and_then(|r| {
            r.stacks
                .iter()
                .find(|s| s.backtrace.contains("parks_for_the_watchdog"))
        });
        if stack.is_some() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{report:?}");
        thread::sleep(Duration::from_millis(20));
    }
    drop(held);
    waiter.join().unwrap();
}
