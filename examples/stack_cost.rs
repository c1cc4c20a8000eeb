//! What the stack captures of the `deadlock_detection` feature cost
//! (docs/benchmarks.md, "Stack captures"):
//!
//! - a park's capture of its own stack, unresolved
//!   (`backtrace::Backtrace::new_unresolved()`), which every park on a lock
//!   pays with the feature on: timed directly, under nested calls;
//! - a watchdog report that asks a lock's holder for its current stack
//!   (`WatchdogConfig::holder_stacks`, Linux): the first such report of the
//!   process, which loads the program's debug info, then the difference
//!   between reports with and without the request (the signal, the holder's
//!   stack walk and the symbol lookup of that stack).
//!
//! ```text
//! cargo build --release --features deadlock_detection --example stack_cost
//! flock "${TMPDIR:-/tmp}/lockscope-bench.lock" target/release/examples/stack_cost
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use lockscope::Mutex;
use lockscope::diag::watchdog::{self, WatchdogConfig};

/// Rounds per figure; each figure is their median, with the lowest and the
/// highest.
const ROUNDS: usize = 9;
/// Captures per round.
const CAPTURES: u32 = 2_000;
/// Reports per round and setting.
const REPORTS: u32 = 50;
/// Nested calls above `main` when a park's stack is captured.
const PARK_DEPTH: u32 = 20;
/// Nested calls above the holder thread's entry while it holds the lock.
const HOLDER_DEPTH: u32 = 8;

/// Median, lowest and highest of `xs`.
fn spread(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

fn show(what: &str, unit: &str, xs: Vec<f64>) {
    let (median, low, high) = spread(xs);
    println!("| {what} | {median:.1} {unit} [{low:.1}, {high:.1}] |");
}

/// Calls itself `depth` times, then runs `f`: frames of its own in a
/// release build, as a real call chain has.
#[inline(never)]
fn nested<R>(depth: u32, f: &mut dyn FnMut() -> R) -> R {
    if black_box(depth) == 0 {
        f()
    } else {
        let r = nested(depth - 1, f);
        black_box(depth);
        r
    }
}

/// Microseconds per unresolved capture, one value per round, and the
/// frames a capture sees.
fn park_captures() -> (Vec<f64>, usize) {
    let frames = nested(PARK_DEPTH, &mut || {
        backtrace::Backtrace::new_unresolved().frames().len()
    });
    let rounds = (0..ROUNDS)
        .map(|_| {
            nested(PARK_DEPTH, &mut || {
                let start = Instant::now();
                for _ in 0..CAPTURES {
                    black_box(backtrace::Backtrace::new_unresolved());
                }
                start.elapsed().as_secs_f64() * 1e6 / f64::from(CAPTURES)
            })
        })
        .collect();
    (rounds, frames)
}

/// A thread that holds `lock` under [`HOLDER_DEPTH`] nested calls, napping,
/// until `stop` is set; returns once the lock is held.
fn holder(lock: &Arc<Mutex<u64>>, stop: &Arc<AtomicBool>) -> thread::JoinHandle<()> {
    let (held, is_held) = mpsc::channel();
    let (lock, stop) = (Arc::clone(lock), Arc::clone(stop));
    let thread = thread::Builder::new()
        .name("holder".into())
        .spawn(move || {
            nested(HOLDER_DEPTH, &mut || {
                let mut guard = lock.lock();
                *guard += 1;
                held.send(()).expect("main waits for it");
                while !stop.load(Ordering::Acquire) {
                    thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .expect("spawn the holder");
    is_held.recv().expect("the holder took the lock");
    thread
}

/// Microseconds per `watchdog::check` with `config`, one value per round.
fn reports(config: &WatchdogConfig) -> Vec<f64> {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..REPORTS {
                black_box(watchdog::check(config).expect("the hold is long"));
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(REPORTS)
        })
        .collect()
}

fn main() {
    if !lockscope::diag::enabled() {
        println!("diagnostics are off (feature `diagnostics`): no stack is captured");
        return;
    }
    println!("| what | median [lowest, highest] |");
    println!("|---|---:|");

    // Every current hold is a long hold, so each report names the holder.
    let plain = WatchdogConfig::default()
        .wait_threshold(Duration::MAX)
        .hold_threshold(Duration::ZERO);
    let asking = plain.clone().holder_stacks(true);
    let lock = Arc::new(Mutex::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let holding = holder(&lock, &stop);

    // First: no stack has been resolved in this process yet.
    let start = Instant::now();
    let report = watchdog::check(&asking).expect("the hold is long");
    let first = start.elapsed();
    match report.holder_stacks.first().map(|s| &s.stack) {
        Some(Ok(stack)) => {
            println!(
                "| the first report asking a holder (debug info loaded) | {:.1} ms |",
                first.as_secs_f64() * 1e3
            );
            let without = reports(&plain);
            let with = reports(&asking);
            let (without, _, _) = spread(without);
            let extra = with.into_iter().map(|w| w - without).collect();
            show(
                &format!(
                    "a later report, more than without asking (the request and the symbol lookup of {} frames)",
                    stack.lines().count()
                ),
                "µs",
                extra,
            );
        }
        Some(Err(why)) => println!("| holder stacks | not measured: {why} |"),
        None => println!("| holder stacks | not measured: the report asked no holder |"),
    }
    stop.store(true, Ordering::Release);
    holding.join().expect("the holder ends");

    let (captures, frames) = park_captures();
    show(
        &format!("a park's capture, unresolved ({frames} frames)"),
        "µs",
        captures,
    );
}
