//! Lock costs where real programs pay them: lockscope against parking_lot
//! 0.13, in one process, at call sites that are not inlined, on one hot lock,
//! on many locks and on short-lived locks, with an A/A control.
//!
//! ```text
//! cargo run --release --example showcase                 # diagnostics on
//! cargo run --release --example showcase --no-default-features
//! cargo run --release --example showcase -- --quick      # fewer rounds (CI)
//! ```
//!
//! Each round runs every case on parking_lot, on lockscope and on parking_lot
//! again (the A/A control), in an order that rotates from round to round. A
//! case's figure is the median over rounds of the per-round ratio of
//! lockscope's throughput to parking_lot's (above 1: lockscope is faster),
//! with the lowest and highest round beside it; the control column is the
//! same ratio of parking_lot against itself, which shows how much the machine
//! alone moves a ratio. A difference smaller than the control's spread is
//! noise.
//!
//! Every lock operation is reached through a call of a `&dyn Fn` that the
//! compiler cannot inline into the timing loop, as at a real call site, so
//! that nothing is hoisted out of the loop.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// Counts live heap bytes, for the memory rows.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

type Ls = lockscope::RawMutex;
type Pl = parking_lot::RawMutex;
type LsRw = lockscope::RawRwLock;
type PlRw = parking_lot::RawRwLock;

/// Locks in the many-locks cases.
const MANY: usize = 65_536;
/// One write in this many operations in the mostly-read case.
const WRITE_EVERY: u64 = 100;

/// Calls `op` where the compiler cannot see it.
#[inline(never)]
fn call(op: &dyn Fn(u64), i: u64) {
    op(i)
}

/// A cheap random index sequence.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Runs `per_thread` calls of `op` on each of `threads` threads, all
/// started at once; returns the time until the last one finished.
fn on_threads(threads: usize, per_thread: u64, op: &(dyn Fn(u64) + Sync)) -> Duration {
    let start = Barrier::new(threads + 1);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    let mut x = 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1);
                    start.wait();
                    for _ in 0..per_thread {
                        call(op, next(&mut x));
                    }
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        for h in handles {
            h.join().unwrap();
        }
        began.elapsed()
    })
}

#[derive(Clone, Copy)]
enum Case {
    MutexUncontended,
    ReadUncontended,
    WriteUncontended,
    MutexCounter(usize),
    MostlyRead(usize),
    ManyMutex(usize),
    ManyRead(usize),
    ShortLived,
}

impl Case {
    fn name(self) -> String {
        match self {
            Case::MutexUncontended => "one Mutex, uncontended".into(),
            Case::ReadUncontended => "one RwLock read, uncontended".into(),
            Case::WriteUncontended => "one RwLock write, uncontended".into(),
            Case::MutexCounter(t) => format!("Mutex counter, {t} threads"),
            Case::MostlyRead(t) => format!("RwLock 99% reads, {t} threads"),
            Case::ManyMutex(t) => format!("65,536 Mutexes at random, {t} threads"),
            Case::ManyRead(t) => format!("65,536 RwLock reads at random, {t} threads"),
            Case::ShortLived => "Box<Mutex>: create, lock once, drop".into(),
        }
    }

    /// The lowest acceptable ratio with diagnostics on.
    fn bar(self) -> f64 {
        match self {
            Case::MutexUncontended | Case::ReadUncontended | Case::WriteUncontended => 0.87,
            Case::MutexCounter(_) | Case::MostlyRead(_) => 0.9,
            Case::ManyMutex(_) | Case::ManyRead(_) => 0.8,
            Case::ShortLived => 0.75,
        }
    }

    /// Operations per measurement.
    fn ops(self) -> u64 {
        match self {
            Case::MutexUncontended | Case::ReadUncontended | Case::WriteUncontended => 2_000_000,
            Case::MutexCounter(_) | Case::MostlyRead(_) => 400_000,
            Case::ManyMutex(_) | Case::ManyRead(_) => 1_000_000,
            Case::ShortLived => 300_000,
        }
    }

    /// Throughput, operations per second, on mutex `M` and rwlock `R`.
    fn run<M: lock_api::RawMutex + Send + Sync, R: lock_api::RawRwLock + Send + Sync>(self) -> f64 {
        let ops = self.ops();
        let time = match self {
            Case::MutexUncontended => {
                let m = lock_api::Mutex::<M, u64>::new(0);
                let op = |_| *m.lock() += 1;
                on_threads(1, ops, &op)
            }
            Case::ReadUncontended => {
                let l = lock_api::RwLock::<R, u64>::new(0);
                let op = |_| {
                    black_box(*l.read());
                };
                on_threads(1, ops, &op)
            }
            Case::WriteUncontended => {
                let l = lock_api::RwLock::<R, u64>::new(0);
                let op = |_| *l.write() += 1;
                on_threads(1, ops, &op)
            }
            Case::MutexCounter(t) => {
                let m = lock_api::Mutex::<M, u64>::new(0);
                let op = |_| *m.lock() += 1;
                on_threads(t, ops / t as u64, &op)
            }
            Case::MostlyRead(t) => {
                let l = lock_api::RwLock::<R, u64>::new(0);
                let op = |x: u64| {
                    if x.is_multiple_of(WRITE_EVERY) {
                        *l.write() += 1;
                    } else {
                        black_box(*l.read());
                    }
                };
                on_threads(t, ops / t as u64, &op)
            }
            Case::ManyMutex(t) => {
                let locks: Vec<lock_api::Mutex<M, u64>> =
                    (0..MANY).map(|_| lock_api::Mutex::new(0)).collect();
                let op = |x: u64| *locks[x as usize % MANY].lock() += 1;
                on_threads(t, ops / t as u64, &op)
            }
            Case::ManyRead(t) => {
                let locks: Vec<lock_api::RwLock<R, u64>> =
                    (0..MANY).map(|_| lock_api::RwLock::new(0)).collect();
                let op = |x: u64| {
                    black_box(*locks[x as usize % MANY].read());
                };
                on_threads(t, ops / t as u64, &op)
            }
            Case::ShortLived => {
                let op = |x: u64| {
                    let m = Box::new(lock_api::Mutex::<M, u64>::new(x));
                    *m.lock() += 1;
                    black_box(&m);
                };
                on_threads(1, ops, &op)
            }
        };
        ops as f64 / time.as_secs_f64()
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Live heap bytes per lock after `f` has made and used `n` locks (which it
/// returns, so that they are still alive when counted), less the bytes of
/// the collection that holds them.
fn heap_per_lock<T>(n: usize, f: impl FnOnce() -> Vec<T>) -> f64 {
    let before = LIVE.load(Ordering::Relaxed);
    let locks = f();
    let after = LIVE.load(Ordering::Relaxed);
    let own = (locks.capacity() * size_of::<T>()) as isize;
    let per = (after - before - own) as f64 / n as f64;
    drop(locks);
    per
}

/// Heap bytes per lock: locked and released but never contended, and
/// contended (a second thread parked for it).
fn memory() -> (f64, f64) {
    const N: usize = 4096;
    // The first use of diagnostics on this thread and site makes the
    // thread's record and the class, once for the process: not per lock.
    {
        let warm = lockscope::Mutex::new(0u64);
        *warm.lock() += 1;
    }
    let uncontended = heap_per_lock(N, || {
        let locks: Vec<lockscope::Mutex<u64>> = (0..N).map(|_| lockscope::Mutex::new(0)).collect();
        for l in &locks {
            *l.lock() += 1;
        }
        locks
    });

    const CONTENDED: usize = 64;
    let locks: Vec<lockscope::Mutex<u64>> =
        (0..=CONTENDED).map(|_| lockscope::Mutex::new(0)).collect();
    let contended = thread::scope(|s| {
        // Bounded channels: a send allocates nothing.
        let (tx, rx) = mpsc::sync_channel::<usize>(1);
        let (done_tx, done_rx) = mpsc::sync_channel::<()>(1);
        let locks = &locks;
        s.spawn(move || {
            for i in rx {
                *locks[i].lock() += 1;
                done_tx.send(()).unwrap();
            }
        });
        let contend = |i: usize| {
            let guard = locks[i].lock();
            tx.send(i).unwrap();
            // Until the waiter has spun out and parked.
            while !has_parked(&locks[i]) {
                thread::yield_now();
            }
            drop(guard);
            done_rx.recv().unwrap();
        };
        // The waiter's thread record and the class are made once.
        contend(CONTENDED);
        let before = LIVE.load(Ordering::Relaxed);
        for i in 0..CONTENDED {
            contend(i);
        }
        let after = LIVE.load(Ordering::Relaxed);
        drop(tx);
        (after - before) as f64 / CONTENDED as f64
    });
    (uncontended, contended)
}

/// Whether a thread is parked on `lock`.
fn has_parked(lock: &lockscope::Mutex<u64>) -> bool {
    // SAFETY: only reads the raw lock's word.
    unsafe { lock.raw() }.has_parked_threads()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only TEXT`: just the cases whose name contains TEXT.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let rounds = if quick { 3 } else { 9 };
    let mut cases = vec![
        Case::MutexUncontended,
        Case::ReadUncontended,
        Case::WriteUncontended,
    ];
    for t in [2, 4, 8, 16] {
        cases.push(Case::MutexCounter(t));
    }
    for t in [2, 4, 8, 16] {
        cases.push(Case::MostlyRead(t));
    }
    for t in [1, 2, 4] {
        cases.push(Case::ManyMutex(t));
    }
    for t in [1, 2, 4] {
        cases.push(Case::ManyRead(t));
    }
    cases.push(Case::ShortLived);
    if let Some(only) = &only {
        cases.retain(|c| c.name().contains(only.as_str()));
    }

    let on = lockscope::diag::enabled();
    println!(
        "lockscope / parking_lot 0.13 throughput, diagnostics {}; median of {rounds} rounds [lowest, highest]",
        if on { "on" } else { "off" }
    );
    println!(
        "sizes: Mutex<()> {} B, RwLock<()> {} B, Mutex<u64> {} B (parking_lot: {} B, {} B, {} B)",
        size_of::<lockscope::Mutex<()>>(),
        size_of::<lockscope::RwLock<()>>(),
        size_of::<lockscope::Mutex<u64>>(),
        size_of::<parking_lot::Mutex<()>>(),
        size_of::<parking_lot::RwLock<()>>(),
        size_of::<parking_lot::Mutex<u64>>(),
    );
    println!();
    println!(
        "| case | parking_lot ns/op | lockscope / parking_lot | A/A control | bar | met |\n|---|---:|---:|---:|---:|:---:|"
    );
    let mut missed = 0;
    for case in cases {
        let mut ratio = Vec::new();
        let mut control = Vec::new();
        let mut base = Vec::new();
        for round in 0..rounds {
            let mut pl = 0.0;
            let mut ls = 0.0;
            let mut pl2 = 0.0;
            // Rotate the order, so that no variant always runs first.
            for k in 0..3 {
                match (round + k) % 3 {
                    0 => pl = case.run::<Pl, PlRw>(),
                    1 => ls = case.run::<Ls, LsRw>(),
                    _ => pl2 = case.run::<Pl, PlRw>(),
                }
            }
            ratio.push(ls / pl);
            control.push(pl2 / pl);
            base.push(1e9 / pl);
        }
        let bar = if on { case.bar() } else { 0.95 };
        let (lo, hi) = (
            ratio.iter().copied().fold(f64::MAX, f64::min),
            ratio.iter().copied().fold(f64::MIN, f64::max),
        );
        let (clo, chi) = (
            control.iter().copied().fold(f64::MAX, f64::min),
            control.iter().copied().fold(f64::MIN, f64::max),
        );
        let m = median(&mut ratio);
        let c = median(&mut control);
        let ns = median(&mut base);
        let met = m >= bar;
        if !met {
            missed += 1;
        }
        println!(
            "| {} | {ns:.1} | {m:.2}x [{lo:.2}, {hi:.2}] | {c:.2}x [{clo:.2}, {chi:.2}] | {bar:.2}x | {} |",
            case.name(),
            if met { "yes" } else { "no" }
        );
    }
    let (uncontended, contended) = memory();
    println!();
    println!(
        "heap bytes per lock: locked but never contended {uncontended:.1}; contended {contended:.1} (bars: 0 and 256)"
    );
    println!("cases below their bar: {missed}");
}
