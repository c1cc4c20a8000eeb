//! Where a lock's holder is now, in watchdog reports
//! (`WatchdogConfig::holder_stacks`): a holder napping in a known function
//! is reported with that function on its current stack (Linux, feature
//! `deadlock_detection`), through `watchdog::check` and through the
//! watchdog's thread; a holder that blocks the request's signal makes the
//! report say so after a bounded wait; off by default; elsewhere every
//! entry says why there is no stack. Every wait here is bounded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use lockscope::Mutex;
use lockscope::diag::watchdog::{self, WatchdogConfig};
use lockscope::diag::{HolderStack, NoStack, StallReport};

/// How long a test waits for a report before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// A thread, named `name`, that holds `m` and naps in
/// [`naps_while_holding_the_lock`] until the returned flag is set (or a
/// minute passes); returns once the lock is held.
fn napping_holder(name: &str, m: &Arc<Mutex<u32>>) -> (Arc<AtomicBool>, thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (held, is_held) = mpsc::channel();
    let thread = {
        let (m, stop) = (m.clone(), stop.clone());
        thread::Builder::new()
            .name(name.into())
            .spawn(move || naps_while_holding_the_lock(&m, &held, &stop))
            .unwrap()
    };
    is_held
        .recv_timeout(PATIENCE)
        .expect("the holder took the lock");
    (stop, thread)
}

/// The function a holder's current stack must name. Not inlined, so that
/// it has a frame of its own in release builds too.
#[inline(never)]
fn naps_while_holding_the_lock(m: &Mutex<u32>, held: &mpsc::Sender<()>, stop: &AtomicBool) {
    let mut guard = m.lock();
    *guard += 1;
    held.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    drop(std::hint::black_box(guard));
}

/// The entry of the holder thread named `name`, if the report has one.
fn entry<'a>(report: &'a StallReport, name: &str) -> Option<&'a HolderStack> {
    report
        .holder_stacks
        .iter()
        .find(|s| s.thread.name.as_deref() == Some(name))
}

/// Long holds (every current hold) with holders' stacks.
fn long_holds() -> WatchdogConfig {
    WatchdogConfig::default()
        .wait_threshold(Duration::MAX)
        .hold_threshold(Duration::ZERO)
        .holder_stacks(true)
}

/// Runs `check` until the holder named `name` has an entry, then returns
/// the report (fails after [`PATIENCE`]).
fn check_until_entry(config: &WatchdogConfig, name: &str) -> StallReport {
    let started = Instant::now();
    loop {
        let report = watchdog::check(config);
        if let Some(report) = report.filter(|r| entry(r, name).is_some()) {
            return report;
        }
        assert!(started.elapsed() < PATIENCE, "no entry for {name}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(all(target_os = "linux", feature = "deadlock_detection"))]
#[test]
fn a_long_hold_shows_the_holders_current_stack() {
    if !lockscope::diag::enabled() {
        return;
    }
    let m = Arc::new(Mutex::new(0));
    let (stop, holder) = napping_holder("holder-check", &m);
    let report = check_until_entry(&long_holds(), "holder-check");
    let stack = entry(&report, "holder-check").unwrap().stack.clone();
    stop.store(true, Ordering::Release);
    holder.join().unwrap();
    let stack = stack.unwrap_or_else(|why| panic!("{why}\n{report}"));
    assert!(
        stack.contains("naps_while_holding_the_lock"),
        "the holder's current stack names where it naps:\n{stack}"
    );
    // Where it is now, not the request: the handler's frames are cut.
    assert!(!stack.contains("on_signal"), "{stack}");
    assert!(
        report.to_string().contains("holds, and is now at:"),
        "{report}"
    );
}

#[cfg(all(target_os = "linux", feature = "deadlock_detection"))]
#[test]
fn the_watchdog_thread_shows_where_the_holder_of_a_long_wait_is() {
    if !lockscope::diag::enabled() {
        return;
    }
    let m = Arc::new(Mutex::new(0));
    let (stop, holder) = napping_holder("holder-dog", &m);
    let waiter = {
        let m = m.clone();
        thread::spawn(move || *m.lock() += 1)
    };
    let (reports, reported) = mpsc::channel();
    let dog = watchdog::spawn(
        WatchdogConfig::default()
            .period(Duration::from_millis(20))
            .wait_threshold(Duration::ZERO)
            .hold_threshold(Duration::MAX)
            .holder_stacks(true)
            .on_report(move |r| {
                let _ = reports.send(r.clone());
            }),
    );
    let started = Instant::now();
    let stack = loop {
        let left = PATIENCE.saturating_sub(started.elapsed());
        let report = reported.recv_timeout(left).expect("a report in time");
        if let Some(found) = entry(&report, "holder-dog") {
            break found.stack.clone();
        }
    };
    drop(dog);
    stop.store(true, Ordering::Release);
    holder.join().unwrap();
    waiter.join().unwrap();
    let stack = stack.unwrap_or_else(|why| panic!("{why}"));
    assert!(stack.contains("naps_while_holding_the_lock"), "{stack}");
}

/// Holds a lock and makes the report itself.
#[cfg(all(target_os = "linux", feature = "deadlock_detection"))]
#[inline(never)]
fn reports_on_its_own_hold() -> StallReport {
    let m = Mutex::new(0);
    let mut guard = m.lock();
    *guard += 1;
    let me = thread::current().name().unwrap().to_string();
    let report = check_until_entry(&long_holds(), &me);
    drop(std::hint::black_box(guard));
    report
}

#[cfg(all(target_os = "linux", feature = "deadlock_detection"))]
#[test]
fn a_holder_that_makes_the_report_shows_its_own_stack() {
    if !lockscope::diag::enabled() {
        return;
    }
    let report = thread::Builder::new()
        .name("holder-self".into())
        .spawn(reports_on_its_own_hold)
        .unwrap()
        .join()
        .unwrap();
    let stack = entry(&report, "holder-self").unwrap().stack.clone();
    assert!(
        stack
            .as_deref()
            .is_ok_and(|s| s.contains("reports_on_its_own_hold")),
        "{stack:?}"
    );
}

/// Holds `m` with `SIGURG` blocked, so it cannot answer.
#[cfg(all(target_os = "linux", feature = "deadlock_detection"))]
#[inline(never)]
fn holds_deaf(m: &Mutex<u32>, held: &mpsc::Sender<()>, stop: &AtomicBool) {
    // SAFETY: a set built by sigemptyset/sigaddset, applied to this
    // thread's mask only; the old mask is not needed (the thread ends).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGURG);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    naps_while_holding_the_lock(m, held, stop);
}

#[cfg(all(target_os = "linux", feature = "deadlock_detection"))]
#[test]
fn a_holder_that_cannot_answer_is_reported_as_such_in_bounded_time() {
    if !lockscope::diag::enabled() {
        return;
    }
    let m = Arc::new(Mutex::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (held, is_held) = mpsc::channel();
    let deaf = {
        let (m, stop) = (m.clone(), stop.clone());
        thread::Builder::new()
            .name("holder-deaf".into())
            .spawn(move || holds_deaf(&m, &held, &stop))
            .unwrap()
    };
    is_held.recv_timeout(PATIENCE).unwrap();
    let started = Instant::now();
    let report = check_until_entry(&long_holds(), "holder-deaf");
    let took = started.elapsed();
    let stack = entry(&report, "holder-deaf").unwrap().stack.clone();
    assert_eq!(stack, Err(NoStack::NoAnswer), "{report}");
    assert!(took < PATIENCE, "{took:?}");
    assert!(
        report.to_string().contains("did not answer within 100 ms"),
        "{report}"
    );
    // A holder that answers is still asked afterwards.
    let m2 = Arc::new(Mutex::new(0));
    let (stop2, other) = napping_holder("holder-after-deaf", &m2);
    let after = check_until_entry(&long_holds(), "holder-after-deaf");
    let stack2 = entry(&after, "holder-after-deaf").unwrap().stack.clone();
    stop.store(true, Ordering::Release);
    stop2.store(true, Ordering::Release);
    deaf.join().unwrap();
    other.join().unwrap();
    assert!(
        stack2
            .as_deref()
            .is_ok_and(|s| s.contains("naps_while_holding_the_lock")),
        "{stack2:?}"
    );
}

#[test]
fn holder_stacks_are_off_by_default() {
    if !lockscope::diag::enabled() {
        return;
    }
    assert!(!WatchdogConfig::default().holder_stacks);
    let m = Arc::new(Mutex::new(0));
    let (stop, holder) = napping_holder("holder-default", &m);
    let config = WatchdogConfig {
        holder_stacks: false,
        ..long_holds()
    };
    let report = watchdog::check(&config).expect("a long hold");
    stop.store(true, Ordering::Release);
    holder.join().unwrap();
    assert!(report.holder_stacks.is_empty(), "{report}");
}

/// Without the stack walker, or off Linux, each entry says why there is
/// no stack, at once.
#[cfg(not(all(target_os = "linux", feature = "deadlock_detection")))]
#[test]
fn elsewhere_the_report_says_the_stack_is_not_available() {
    if !lockscope::diag::enabled() {
        return;
    }
    let m = Arc::new(Mutex::new(0));
    let (stop, holder) = napping_holder("holder-elsewhere", &m);
    let report = check_until_entry(&long_holds(), "holder-elsewhere");
    stop.store(true, Ordering::Release);
    holder.join().unwrap();
    let why = entry(&report, "holder-elsewhere").unwrap().stack.clone();
    let expected = if cfg!(target_os = "linux") {
        NoStack::NeedsFeature
    } else {
        NoStack::Unsupported
    };
    assert_eq!(why, Err(expected));
    assert!(
        report.to_string().contains("current stack not available"),
        "{report}"
    );
}
