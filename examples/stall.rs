//! Two stalls, each diagnosed by the watchdog: a guard leaked by a thread
//! that has exited (an orphaned lock), then a two-lock deadlock.
//!
//! ```text
//! cargo run --example stall
//! ```
//!
//! The stalled threads are detached and never end, so the example leaves
//! with `std::process::exit` once both reports are in.

use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use lockscope::Mutex;
use lockscope::diag::watchdog::{self, WatchdogConfig};
use lockscope::diag::{self, Inspect};

fn labelled(label: &str) -> &'static Mutex<u64> {
    let lock = Box::leak(Box::new(Mutex::new(0)));
    lock.set_label(label);
    lock
}

fn main() {
    if !diag::enabled() {
        println!("diagnostics are off (feature `diagnostics`): the watchdog sees nothing");
        return;
    }
    let (tx, rx) = mpsc::channel();
    let _watchdog = watchdog::spawn(
        WatchdogConfig::default()
            .period(Duration::from_millis(100))
            .wait_threshold(Duration::from_millis(300))
            .on_report(move |report| {
                let _ = tx.send(report.clone());
            }),
    );

    // 1. A guard leaked with `mem::forget` by a thread that then exits.
    let config = labelled("config");
    thread::Builder::new()
        .name("loader".into())
        .spawn(move || std::mem::forget(config.lock()))
        .unwrap()
        .join()
        .unwrap();
    thread::Builder::new()
        .name("request".into())
        .spawn(move || *config.lock() += 1)
        .unwrap();
    let report = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| {
            println!("no report within 10 s");
            std::process::exit(1)
        });
    println!("--- stall 1: a leaked guard ---\n{report}");

    // 2. Two threads taking two locks in opposite orders.
    let (accounts, ledger) = (labelled("accounts"), labelled("ledger"));
    let both = Arc::new(Barrier::new(2));
    for (name, first, second) in [("transfer", accounts, ledger), ("audit", ledger, accounts)] {
        let both = Arc::clone(&both);
        thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _a = first.lock();
                both.wait();
                let _b = second.lock();
            })
            .unwrap();
    }
    loop {
        let Ok(report) = rx.recv_timeout(Duration::from_secs(10)) else {
            println!("no deadlock report within 10 s");
            std::process::exit(1)
        };
        if report.has_deadlock() {
            println!("--- stall 2: a deadlock ---\n{report}");
            break;
        }
    }
    std::process::exit(0);
}
