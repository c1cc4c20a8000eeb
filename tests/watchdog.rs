//! The stall watchdog: deadlocks of two and three threads (Mutex and RwLock,
//! shared and exclusive), orphaned locks, no report for short holds, and
//! shutdown.
//!
//! Deadlocked threads are leaked (never joined): the test binary exits with
//! them still parked. Every test runs its own watchdog, and every watchdog
//! sees the whole process, so each test looks only for its own locks.
#![cfg(feature = "diagnostics")]

mod common;

use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use lockscope::diag::watchdog::{self, WatchdogConfig, WatchdogHandle};
use lockscope::diag::{Diagnosis, Inspect, Mode, StallReport};
use lockscope::{Mutex, RwLock};

use common::HANG;

fn leak_mutex(label: &str) -> &'static Mutex<()> {
    let lock = Box::leak(Box::new(Mutex::new(())));
    lock.set_label(label);
    lock
}

fn leak_rwlock(label: &str) -> &'static RwLock<()> {
    let lock = Box::leak(Box::new(RwLock::new(())));
    lock.set_label(label);
    lock
}

/// A watchdog scanning every 50 ms, with a 100 ms wait threshold, whose
/// reports arrive on the returned channel.
fn watch() -> (WatchdogHandle, mpsc::Receiver<StallReport>) {
    let (tx, rx) = mpsc::channel();
    let handle = watchdog::spawn(
        WatchdogConfig::default()
            .period(Duration::from_millis(50))
            .wait_threshold(Duration::from_millis(100))
            .hold_threshold(Duration::from_secs(3600))
            .on_report(move |report| {
                let _ = tx.send(report.clone());
            }),
    );
    (handle, rx)
}

/// Waits for a report with a diagnosis that `pick` accepts.
fn expect(
    rx: &mpsc::Receiver<StallReport>,
    mut pick: impl FnMut(&Diagnosis) -> bool,
) -> (StallReport, Diagnosis) {
    let deadline = std::time::Instant::now() + HANG;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let report = rx
            .recv_timeout(left)
            .expect("the watchdog reported the stall");
        if let Some(d) = report.diagnoses.iter().find(|d| pick(d)) {
            let d = d.clone();
            return (report, d);
        }
    }
}

fn cycle_of(d: &Diagnosis, locks: &[&str]) -> bool {
    match d {
        Diagnosis::Deadlock { cycle } => {
            cycle.len() == locks.len() && locks.iter().all(|l| cycle.iter().any(|s| s.lock == *l))
        }
        _ => false,
    }
}

#[test]
fn two_thread_mutex_deadlock_is_named_thread_by_thread() {
    let (_dog, rx) = watch();
    let (a, b) = (leak_mutex("dl2-a"), leak_mutex("dl2-b"));
    let both = Arc::new(Barrier::new(2));
    for (name, first, second) in [("dl2-one", a, b), ("dl2-two", b, a)] {
        let both = Arc::clone(&both);
        thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _x = first.lock();
                both.wait();
                let _y = second.lock();
            })
            .unwrap();
    }
    let (report, d) = expect(&rx, |d| cycle_of(d, &["dl2-a", "dl2-b"]));
    let Diagnosis::Deadlock { cycle } = d else {
        unreachable!()
    };
    for step in &cycle {
        assert_eq!(step.wait_mode, Mode::Exclusive);
        assert_eq!(step.hold_mode, Mode::Exclusive);
        assert!(step.wait_site.unwrap().file().ends_with("watchdog.rs"));
        assert!(step.hold_site.unwrap().file().ends_with("watchdog.rs"));
        assert!(step.thread.name.as_deref().unwrap().starts_with("dl2-"));
        assert_ne!(step.thread.id, step.holder.id);
    }
    let text = report.to_string();
    assert!(text.contains("DEADLOCK: 2 threads"), "{text}");
    assert!(
        text.contains("\"dl2-one\"") && text.contains("\"dl2-two\""),
        "{text}"
    );
    let lock = report.locks.iter().find(|l| l.name == "dl2-a").unwrap();
    assert!(
        lock.word.as_deref().unwrap().contains("locked: true"),
        "{text}"
    );
    // The word as the waiter parked: never "not parked" while it waits.
    assert!(
        lock.word.as_deref().unwrap().contains("parked: true"),
        "{text}"
    );
    assert!(
        text.contains("word when the latest waiter parked"),
        "{text}"
    );
    assert_eq!(lock.holders.len(), 1, "{text}");
    assert_eq!(lock.waiters.len(), 1, "{text}");
}

#[test]
fn three_thread_deadlock_is_one_cycle() {
    let (_dog, rx) = watch();
    let locks = [
        leak_mutex("dl3-a"),
        leak_mutex("dl3-b"),
        leak_mutex("dl3-c"),
    ];
    let all = Arc::new(Barrier::new(3));
    for i in 0..3 {
        let all = Arc::clone(&all);
        let (first, second) = (locks[i], locks[(i + 1) % 3]);
        thread::spawn(move || {
            let _x = first.lock();
            all.wait();
            let _y = second.lock();
        });
    }
    let (report, _) = expect(&rx, |d| cycle_of(d, &["dl3-a", "dl3-b", "dl3-c"]));
    assert!(
        report.to_string().contains("DEADLOCK: 3 threads"),
        "{report}"
    );
}

#[test]
fn reader_writer_deadlock_through_shared_holds() {
    let (_dog, rx) = watch();
    let (a, b) = (leak_rwlock("rw-a"), leak_rwlock("rw-b"));
    let both = Arc::new(Barrier::new(2));
    for (first, second) in [(a, b), (b, a)] {
        let both = Arc::clone(&both);
        thread::spawn(move || {
            let _r = first.read();
            both.wait();
            let _w = second.write();
        });
    }
    let (_, d) = expect(&rx, |d| cycle_of(d, &["rw-a", "rw-b"]));
    let Diagnosis::Deadlock { cycle } = d else {
        unreachable!()
    };
    assert!(
        cycle
            .iter()
            .all(|s| s.wait_mode == Mode::Exclusive && s.hold_mode == Mode::Shared)
    );
}

#[test]
fn mutex_and_rwlock_deadlock_mixed_modes() {
    let (_dog, rx) = watch();
    let (m, r) = (leak_mutex("mix-m"), leak_rwlock("mix-r"));
    let both = Arc::new(Barrier::new(2));
    {
        let both = Arc::clone(&both);
        thread::spawn(move || {
            let _g = m.lock();
            both.wait();
            let _r = r.read();
        });
    }
    thread::spawn(move || {
        let _w = r.write();
        both.wait();
        let _g = m.lock();
    });
    let (_, d) = expect(&rx, |d| cycle_of(d, &["mix-m", "mix-r"]));
    let Diagnosis::Deadlock { cycle } = d else {
        unreachable!()
    };
    let on_r = cycle.iter().find(|s| s.lock == "mix-r").unwrap();
    assert_eq!(
        (on_r.wait_mode, on_r.hold_mode),
        (Mode::Shared, Mode::Exclusive)
    );
}

/// Threads that have claimed their diagnostic record (so that none of them
/// takes over the record of a thread that exits while they run).
fn waiters_on(lock: &'static Mutex<()>, n: usize, go: &Arc<Barrier>) {
    let warm = leak_mutex("orphan-warmup");
    for _ in 0..n {
        let go = Arc::clone(go);
        thread::spawn(move || {
            drop(warm.lock());
            go.wait();
            let _g = lock.lock();
        });
    }
}

#[test]
fn leaked_guard_of_an_exited_thread_is_an_orphaned_lock() {
    let (_dog, rx) = watch();
    let lock = leak_mutex("orphan-m");
    let go = Arc::new(Barrier::new(3));
    waiters_on(lock, 2, &go);
    let leaker_line = thread::Builder::new()
        .name("leaker".into())
        .spawn(move || {
            std::mem::forget(lock.lock());
            line!() - 1
        })
        .unwrap()
        .join()
        .unwrap();
    go.wait();
    let (report, d) = expect(
        &rx,
        |d| matches!(d, Diagnosis::Orphaned { lock, .. } if lock == "orphan-m"),
    );
    let Diagnosis::Orphaned {
        dead_holders, word, ..
    } = d
    else {
        unreachable!()
    };
    assert!(word.unwrap().contains("locked: true"), "{report}");
    assert_eq!(dead_holders.len(), 1, "{report}");
    assert!(!dead_holders[0].thread.alive);
    assert_eq!(
        dead_holders[0].site.unwrap().line(),
        leaker_line,
        "{report}"
    );
    assert!(report.to_string().contains("ORPHANED LOCK"), "{report}");
    // Not mistaken for a deadlock (other tests' stalls may share the report).
    assert!(
        !report.diagnoses.iter().any(
            |d| matches!(d, Diagnosis::SelfDeadlock { step } if step.lock == "orphan-m")
                || cycle_of(d, &["orphan-m"])
        ),
        "{report}"
    );
}

#[test]
fn leaked_read_guard_of_an_exited_thread_is_an_orphaned_rwlock() {
    let (_dog, rx) = watch();
    let lock = leak_rwlock("orphan-rw");
    let go = Arc::new(Barrier::new(2));
    {
        let go = Arc::clone(&go);
        let warm = leak_mutex("orphan-warmup-rw");
        thread::spawn(move || {
            drop(warm.lock());
            go.wait();
            let _w = lock.write();
        });
    }
    thread::spawn(move || std::mem::forget(lock.read()))
        .join()
        .unwrap();
    go.wait();
    let (_, d) = expect(
        &rx,
        |d| matches!(d, Diagnosis::Orphaned { lock, .. } if lock == "orphan-rw"),
    );
    let Diagnosis::Orphaned {
        dead_holders, word, ..
    } = d
    else {
        unreachable!()
    };
    assert!(word.unwrap().contains("readers: 1"));
    assert_eq!(dead_holders.len(), 1);
    assert_eq!(dead_holders[0].mode, Mode::Shared);
}

#[test]
fn sixteen_threads_with_short_holds_make_no_report() {
    let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
    let dog = {
        let reports = Arc::clone(&reports);
        watchdog::spawn(
            WatchdogConfig::default()
                .period(Duration::from_millis(20))
                .wait_threshold(Duration::from_secs(2))
                .hold_threshold(Duration::from_secs(2))
                .on_report(move |r| reports.lock().unwrap().push(r.clone())),
        )
    };
    let m = Arc::new(Mutex::new(0u64));
    m.set_label("stress-m");
    let r = Arc::new(RwLock::new(0u64));
    r.set_label("stress-r");
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let (m, r) = (Arc::clone(&m), Arc::clone(&r));
            thread::spawn(move || {
                let end = std::time::Instant::now() + Duration::from_millis(400);
                while std::time::Instant::now() < end {
                    *m.lock() += 1;
                    if i % 4 == 0 {
                        *r.write() += 1;
                    } else {
                        let _ = *r.read();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // One more scan period after the load.
    thread::sleep(Duration::from_millis(100));
    drop(dog);
    for report in reports.lock().unwrap().iter() {
        assert!(
            !report.locks.iter().any(|l| l.name.starts_with("stress-")),
            "{report}"
        );
    }
}

#[test]
fn dropping_the_handle_stops_the_watchdog_without_sleeping_out_its_period() {
    let dog = watchdog::spawn(WatchdogConfig::default().period(Duration::from_secs(3600)));
    assert!(dog.is_running());
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        drop(dog);
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(HANG)
        .expect("dropping the handle joined the watchdog thread");
}

#[test]
fn check_reports_a_long_hold_at_once() {
    let lock = Arc::new(Mutex::new(()));
    lock.set_label("check-held");
    let guard = lock.lock();
    let config = WatchdogConfig::default().hold_threshold(Duration::ZERO);
    let report = watchdog::check(&config).expect("a hold over a zero threshold");
    assert!(
        report.diagnoses.iter().any(
            |d| matches!(d, Diagnosis::LongHold { lock, holder } if lock == "check-held" && holder.thread.alive)
        ),
        "{report}"
    );
    drop(guard);
}

#[test]
fn a_self_deadlock_let_through_by_the_log_policy_is_diagnosed() {
    // Process-wide, but no other test here makes a violation.
    lockscope::set_violation_policy(lockscope::ViolationPolicy::Log);
    let (_dog, rx) = watch();
    let lock = leak_mutex("self-dl");
    thread::spawn(move || {
        let _first = lock.lock();
        let _again = lock.lock();
    });
    let (report, d) = expect(
        &rx,
        |d| matches!(d, Diagnosis::SelfDeadlock { step } if step.lock == "self-dl"),
    );
    let Diagnosis::SelfDeadlock { step } = d else {
        unreachable!()
    };
    assert_eq!(step.thread.id, step.holder.id);
    assert_eq!(
        step.hold_site.unwrap().line() + 1,
        step.wait_site.unwrap().line()
    );
    assert!(report.to_string().contains("SELF-DEADLOCK"), "{report}");
}

#[cfg(feature = "serde")]
#[test]
fn a_report_serializes_with_sites_as_file_and_line() {
    let lock = Arc::new(Mutex::new(()));
    lock.set_label("json-held");
    let guard = lock.lock();
    let line = line!() - 1;
    let report = watchdog::check(&WatchdogConfig::default().hold_threshold(Duration::ZERO))
        .expect("a hold over a zero threshold");
    let json = serde_json::to_value(&report).unwrap();
    let lock_json = json["locks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "json-held")
        .unwrap();
    let site = lock_json["holders"][0]["site"].as_str().unwrap();
    assert!(site.ends_with(&format!("watchdog.rs:{line}")), "{site}");
    assert_eq!(lock_json["holders"][0]["mode"], "Exclusive");
    drop(guard);
}
