//! Holders without a record per lock: what a lock keeps in its own memory
//! (the holder and the last holder), what threads keep (every hold), and the
//! call site every acquisition method records.
#![cfg(feature = "diagnostics")]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use lockscope::RwLockUpgradableReadGuard as Up;
use lockscope::diag::{self, Inspect, Mode, Snapshot};
use lockscope::{FairMutex, Mutex, RecursiveRwLock, ReentrantMutex, RwLock};

mod common;

fn snapshot<L: Inspect + ?Sized>(lock: &L) -> Snapshot {
    lock.snapshot().expect("the lock was used")
}

/// The line of the exclusive (or only) holder's recorded call site.
fn holder_line<L: Inspect + ?Sized>(lock: &L) -> u32 {
    let seen = snapshot(lock);
    let holder = seen
        .holders
        .first()
        .unwrap_or_else(|| panic!("no holder: {seen}"));
    let site = holder.site.expect("a call site");
    assert!(site.file().ends_with("holders.rs"), "{site}");
    site.line()
}

#[test]
fn holder_and_last_holder_of_one_of_65536_live_locks_seen_from_another_thread() {
    let locks: Arc<Vec<Mutex<u64>>> = Arc::new((0..65_536).map(Mutex::new).collect());
    for lock in locks.iter() {
        *lock.lock() += 1;
    }
    let loop_line = line!() - 2;
    let (held_tx, held_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let holder = {
        let locks = Arc::clone(&locks);
        thread::Builder::new()
            .name("holds-40000".into())
            .spawn(move || {
                let _guard = locks[40_000].lock();
                held_tx.send(line!() - 1).unwrap();
                done_rx.recv().unwrap();
            })
            .unwrap()
    };
    let line = held_rx.recv().unwrap();
    let seen = thread::spawn({
        let locks = Arc::clone(&locks);
        move || snapshot(&locks[40_000])
    })
    .join()
    .unwrap();
    assert_eq!(seen.holders.len(), 1, "{seen}");
    assert_eq!(seen.holders[0].mode, Mode::Exclusive);
    assert_eq!(seen.holders[0].thread.name.as_deref(), Some("holds-40000"));
    assert_eq!(seen.holders[0].site.unwrap().line(), line);
    // While it is held, the last holder is the one before: this thread's loop.
    let last = seen.last_holder.clone().expect("released once before");
    assert_eq!(last.site.unwrap().line(), loop_line, "{seen}");
    // (Thread names are cut to 48 bytes.)
    let me = thread::current().name().unwrap().to_string();
    assert!(me.starts_with(&*last.thread.name.unwrap()));
    done_tx.send(()).unwrap();
    holder.join().unwrap();

    let seen = snapshot(&locks[40_000]);
    assert!(seen.holders.is_empty(), "{seen}");
    let last = seen.last_holder.expect("the last holder");
    assert_eq!(last.thread.name.as_deref(), Some("holds-40000"));
    assert!(!last.thread.alive, "the holder thread has exited");
    assert_eq!(last.site.unwrap().line(), line);
    // Any other of the locks: last held by this thread's loop.
    let other = snapshot(&locks[12_345]);
    assert_eq!(other.last_holder.unwrap().site.unwrap().line(), loop_line);
    // All 65,536 are one class (their first site); none is listed as held.
    assert!(
        !diag::locks()
            .iter()
            .any(|l| l.first_site.line() == loop_line),
        "released locks are not listed"
    );
}

#[test]
fn locks_created_and_dropped_on_many_threads_while_the_watchdog_scans() {
    let reports = Arc::new(AtomicU64::new(0));
    let dog = {
        let reports = Arc::clone(&reports);
        diag::watchdog::spawn(
            diag::watchdog::WatchdogConfig::default()
                .period(Duration::from_millis(1))
                .wait_threshold(Duration::from_secs(5))
                .hold_threshold(Duration::from_secs(5))
                .on_report(move |r| {
                    // Only this test's locks: other tests may stall on purpose.
                    if r.to_string().contains("churn-") {
                        reports.fetch_add(1, Ordering::Relaxed);
                    }
                }),
        )
    };
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(5));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (stop, start) = (Arc::clone(&stop), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                let mut n = 0u64;
                let deadline = Instant::now() + Duration::from_millis(300);
                while Instant::now() < deadline {
                    let m = Box::new(Mutex::new(n));
                    let r = Box::new(RwLock::new(n));
                    if n.is_multiple_of(64) {
                        m.set_label(&format!("churn-{t}"));
                    }
                    {
                        let _a = m.lock();
                        let _b = r.read();
                        let _c = r.read();
                    }
                    *r.write() += 1;
                    drop((m, r));
                    n += 1;
                }
                stop.store(true, Ordering::Relaxed);
                n
            })
        })
        .collect();
    start.wait();
    // Snapshots from this thread meanwhile: every listed hold is real.
    while !stop.load(Ordering::Relaxed) {
        for lock in diag::locks() {
            for h in &lock.holders {
                assert!(h.held_for < Duration::from_secs(5), "{lock}");
            }
        }
    }
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(total > 0);
    drop(dog);
    assert_eq!(reports.load(Ordering::Relaxed), 0, "nothing stalled");
    // Nothing is left listed from these threads.
    assert!(
        !diag::locks()
            .iter()
            .any(|l| l.name.starts_with("churn-") && !l.holders.is_empty())
    );
}

/// A lock's first exclusive acquisition stores its identity without a
/// compare-exchange; a label set on another thread as that acquisition
/// happens (or while the lock is held there) is still the lock's name
/// afterwards, and setting it neither hangs nor loses the lock's count.
#[test]
fn a_label_set_during_the_first_acquisition_sticks() {
    for round in 0..2_000 {
        let lock = Arc::new(Mutex::new(0u64));
        let start = Arc::new(Barrier::new(2));
        let taker = {
            let (lock, start) = (Arc::clone(&lock), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                *lock.lock() += 1;
            })
        };
        start.wait();
        lock.set_label("raced label");
        taker.join().unwrap();
        *lock.lock() += 1;
        let seen = snapshot(&*lock);
        assert_eq!(
            seen.label.as_deref(),
            Some("raced label"),
            "round {round}: {seen}"
        );
        assert_eq!(*lock.lock(), 2);
    }
}

#[test]
fn a_thread_that_exits_holding_a_lock_and_a_thread_that_reuses_its_record() {
    let lock = Arc::new(Mutex::new(0));
    let orphaner = {
        let lock = Arc::clone(&lock);
        thread::Builder::new()
            .name("orphaner".into())
            .spawn(move || {
                std::mem::forget(lock.lock());
                line!() - 1
            })
            .unwrap()
    };
    let line = orphaner.join().unwrap();
    let seen = snapshot(&*lock);
    assert_eq!(seen.holders.len(), 1, "{seen}");
    let h = &seen.holders[0];
    assert_eq!(h.thread.name.as_deref(), Some("orphaner"));
    assert!(!h.thread.alive, "the holder has exited: {seen}");
    assert_eq!(h.site.unwrap().line(), line);
    let orphan_id = h.thread.id;
    // The record of an exited thread that still lists a hold is not reused.
    for _ in 0..8 {
        let id = thread::spawn(|| {
            let m = Mutex::new(());
            drop(m.lock());
            snapshot(&m).last_holder.unwrap().thread.id
        })
        .join()
        .unwrap();
        assert_ne!(id, orphan_id);
    }
    // This thread takes over the leaked guard and releases it.
    // SAFETY: the guard was leaked; this thread now logically owns the lock.
    unsafe { lock.force_unlock(common::raw_guard()) };
    let seen = snapshot(&*lock);
    assert!(seen.holders.is_empty(), "{seen}");
    let last = seen.last_holder.unwrap();
    assert_eq!(last.thread.id, orphan_id);
    assert!(!last.thread.alive);
    // A later thread may reuse the record (and its id): it is never shown as
    // the last holder.
    thread::sleep(Duration::from_millis(5));
    let (tx, rx) = mpsc::channel::<()>();
    let (up_tx, up_rx) = mpsc::channel();
    let later = thread::Builder::new()
        .name("later".into())
        .spawn(move || {
            let m = Mutex::new(());
            drop(m.lock()); // claims a record
            up_tx.send(()).unwrap();
            rx.recv().unwrap();
        })
        .unwrap();
    up_rx.recv().unwrap();
    let last = snapshot(&*lock).last_holder.unwrap();
    assert_ne!(last.thread.name.as_deref(), Some("later"));
    assert!(!last.thread.alive);
    tx.send(()).unwrap();
    later.join().unwrap();
    *lock.lock() += 1;
}

#[cfg(feature = "send_guard")]
#[test]
fn guards_sent_to_another_thread_are_released_there() {
    let m = Arc::new(Mutex::new(0));
    let rw = Arc::new(RwLock::new(0));
    let g = m.lock();
    let line = line!() - 1;
    let r = rw.read();
    assert_eq!(holder_line(&*m), line);
    thread::scope(|s| {
        s.spawn(move || {
            drop(g);
            drop(r);
        });
    });
    let seen = snapshot(&*m);
    assert!(seen.holders.is_empty(), "{seen}");
    let last = seen.last_holder.unwrap();
    assert_eq!(last.site.unwrap().line(), line);
    let me = thread::current().name().unwrap().to_string();
    assert!(me.starts_with(&*last.thread.name.unwrap()));
    assert!(snapshot(&*rw).holders.is_empty());
    // This thread's record lists neither.
    assert!(!diag::locks().iter().any(|l| {
        l.holders
            .iter()
            .any(|h| h.site.is_some_and(|s| s.line() == line))
    }));
    let w = rw.write();
    thread::scope(|s| {
        s.spawn(move || drop(w));
    });
    assert!(snapshot(&*rw).holders.is_empty());
    *m.lock() += 1;
    *rw.write() += 1;
}

/// Takes `$acquire` (a guard) and checks that the lock's holder was
/// recorded at this very line.
macro_rules! records_this_line {
    ($lock:expr, $acquire:expr) => {{
        let guard = $acquire;
        assert_eq!(holder_line(&$lock), line!(), "{}", stringify!($acquire));
        drop(guard);
    }};
}

#[test]
fn every_acquisition_method_records_the_callers_line() {
    let t = Duration::from_millis(50);
    let until = || Instant::now() + Duration::from_millis(50);

    let m = Mutex::new(());
    records_this_line!(m, m.lock());
    records_this_line!(m, m.try_lock().unwrap());
    records_this_line!(m, m.try_lock_for(t).unwrap());
    records_this_line!(m, m.try_lock_until(until()).unwrap());

    let f = FairMutex::new(());
    records_this_line!(f, f.lock());
    records_this_line!(f, f.try_lock().unwrap());
    records_this_line!(f, f.try_lock_for(t).unwrap());
    records_this_line!(f, f.try_lock_until(until()).unwrap());

    // A ReentrantMutex is lock_api's `RawReentrantMutex` over this crate's
    // `RawMutex`; lock_api takes the inner lock inside a closure, which does
    // not pass the caller's location on: its holds name lock_api's line
    // (README, Limits).
    let r = ReentrantMutex::new(());
    for guard in [r.lock(), r.try_lock().unwrap(), r.try_lock_for(t).unwrap()] {
        let seen = snapshot(&r);
        assert_eq!(seen.holders.len(), 1, "{seen}");
        drop(guard);
    }

    let rw = RwLock::new(());
    records_this_line!(rw, rw.read());
    records_this_line!(rw, rw.try_read().unwrap());
    records_this_line!(rw, rw.try_read_for(t).unwrap());
    records_this_line!(rw, rw.try_read_until(until()).unwrap());
    records_this_line!(rw, rw.write());
    records_this_line!(rw, rw.try_write().unwrap());
    records_this_line!(rw, rw.try_write_for(t).unwrap());
    records_this_line!(rw, rw.try_write_until(until()).unwrap());
    records_this_line!(rw, rw.upgradable_read());
    records_this_line!(rw, rw.try_upgradable_read().unwrap());
    records_this_line!(rw, rw.try_upgradable_read_for(t).unwrap());
    records_this_line!(rw, rw.try_upgradable_read_until(until()).unwrap());
    let up = rw.upgradable_read();
    records_this_line!(rw, Up::upgrade(up));
    let up = rw.upgradable_read();
    records_this_line!(rw, Up::try_upgrade(up).unwrap());
    let up = rw.upgradable_read();
    records_this_line!(rw, Up::try_upgrade_for(up, t).unwrap());
    let w = rw.write();
    records_this_line!(rw, lockscope::RwLockWriteGuard::downgrade(w));

    let rr = RecursiveRwLock::new(());
    records_this_line!(rr, rr.read());
    let outer = rr.read();
    let inner = rr.try_read_for(t).unwrap();
    let line = line!() - 1;
    let seen = snapshot(&rr);
    assert!(
        seen.holders
            .iter()
            .any(|h| h.site.is_some_and(|s| s.line() == line)),
        "{seen}"
    );
    drop((inner, outer));
    records_this_line!(rr, rr.write());
    records_this_line!(rr, rr.try_write_for(t).unwrap());
}

/// Holds `lock` on another thread while `f` runs.
fn while_held_elsewhere<'a, L: Sync, G>(
    lock: &'a L,
    hold: impl Fn(&'a L) -> G + Sync,
    f: impl FnOnce(),
) {
    let (held_tx, held_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let hold = &hold;
    thread::scope(|s| {
        s.spawn(move || {
            let guard = hold(lock);
            held_tx.send(()).unwrap();
            // Ends when `done_tx` is dropped, also if `f` panics.
            let _ = done_rx.recv();
            drop(guard);
        });
        held_rx.recv().unwrap();
        let _done = done_tx;
        f();
    });
}

/// Runs `$attempt` (a timed acquisition that must give up) and checks that
/// the timeout was recorded at this very line.
macro_rules! times_out_at_this_line {
    ($lock:expr, $attempt:expr) => {{
        assert!($attempt.is_none(), "{}", stringify!($attempt));
        let line = line!();
        let seen = snapshot(&$lock);
        let last = seen.recent_timeouts.last().expect("a timeout");
        assert!(last.site.file().ends_with("holders.rs"), "{}", last.site);
        assert_eq!(last.site.line(), line, "{}", stringify!($attempt));
    }};
}

#[test]
fn every_timed_acquisition_records_the_callers_line_when_it_gives_up() {
    let t = Duration::from_millis(5);
    let until = || Instant::now() + Duration::from_millis(5);
    let m = Mutex::new(());
    while_held_elsewhere(
        &m,
        |m| m.lock(),
        || {
            times_out_at_this_line!(m, m.try_lock_for(t));
            times_out_at_this_line!(m, m.try_lock_until(until()));
        },
    );
    let rw = RwLock::new(());
    while_held_elsewhere(
        &rw,
        |rw| rw.write(),
        || {
            times_out_at_this_line!(rw, rw.try_read_for(t));
            times_out_at_this_line!(rw, rw.try_read_until(until()));
            times_out_at_this_line!(rw, rw.try_write_for(t));
            times_out_at_this_line!(rw, rw.try_write_until(until()));
            times_out_at_this_line!(rw, rw.try_upgradable_read_for(t));
            times_out_at_this_line!(rw, rw.try_upgradable_read_until(until()));
        },
    );
}
