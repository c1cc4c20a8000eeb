//! A program with its own `SIGURG` handler keeps it: a report that would
//! ask a holder for its current stack (which uses that signal) says the
//! signal is taken, replaces nothing and sends nothing. Its own binary,
//! since the handler is process-wide.
#![cfg(all(target_os = "linux", feature = "deadlock_detection"))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use lockscope::Mutex;
use lockscope::diag::NoStack;
use lockscope::diag::watchdog::{self, WatchdogConfig};

static THE_PROGRAMS_HANDLER_RAN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn the_programs_handler(_: libc::c_int) {
    THE_PROGRAMS_HANDLER_RAN.fetch_add(1, Ordering::Relaxed);
}

fn urg_handler() -> libc::sighandler_t {
    // SAFETY: reads the current action only; all zeroes is a valid sigaction.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGURG, std::ptr::null(), &mut old), 0);
        old.sa_sigaction
    }
}

#[test]
fn a_programs_own_sigurg_handler_is_never_replaced() {
    if !lockscope::diag::enabled() {
        return;
    }
    let theirs = the_programs_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installs a handler that only increments an atomic.
    unsafe { assert_ne!(libc::signal(libc::SIGURG, theirs), libc::SIG_ERR) };

    static M: Mutex<u32> = Mutex::new(0);
    let (held, is_held) = mpsc::channel();
    let (stop, stopped) = mpsc::channel::<()>();
    let holder = thread::Builder::new()
        .name("holder-urg".into())
        .spawn(move || {
            let _guard = M.lock();
            held.send(()).unwrap();
            let _ = stopped.recv_timeout(Duration::from_secs(60));
        })
        .unwrap();
    is_held.recv_timeout(Duration::from_secs(30)).unwrap();

    let config = WatchdogConfig::default()
        .wait_threshold(Duration::MAX)
        .hold_threshold(Duration::ZERO)
        .holder_stacks(true);
    let started = Instant::now();
    let why = loop {
        let report = watchdog::check(&config);
        let found = report.as_ref().and_then(|r| {
            r.holder_stacks
                .iter()
                .find(|s| s.thread.name.as_deref() == Some("holder-urg"))
        });
        if let Some(found) = found {
            break found.stack.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{report:?}");
        thread::sleep(Duration::from_millis(20));
    };
    stop.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(why, Err(NoStack::SignalInUse));
    assert_eq!(urg_handler(), theirs, "the program's handler stays");
    assert_eq!(THE_PROGRAMS_HANDLER_RAN.load(Ordering::Relaxed), 0);
}
