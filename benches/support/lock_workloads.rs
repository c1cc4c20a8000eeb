//! The workloads of `benches/locks.rs` (criterion): one lock in a tight
//! loop, uncontended and contended. (The README's table comes from
//! `examples/showcase.rs`, which reaches the locks through calls that are
//! not inlined, on one lock, many locks and short-lived locks.)
//!
//! Every workload is a function of `(implementation, ops)` that performs
//! `ops` lock operations and returns the wall time they took. Setup (creating
//! the lock, spawning threads, waiting at a barrier) happens outside the timed
//! region; inside it the only overhead is one `Instant` read at the start and
//! one at the end of each batch (per thread for the contended workloads).

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use lockscope::lock_api;

/// The thread counts of the contended workloads.
pub const THREADS: [usize; 5] = [1, 2, 4, 8, 16];

/// One write in this many operations in the mostly-read `RwLock` workload.
const WRITE_EVERY: u32 = 100;

/// A lock implementation under comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    Lockscope,
    ParkingLot,
    Std,
}

impl Impl {
    /// All implementations, in column order.
    pub const ALL: [Impl; 3] = [Impl::Lockscope, Impl::ParkingLot, Impl::Std];

    pub fn name(self) -> &'static str {
        match self {
            Impl::Lockscope => "lockscope",
            Impl::ParkingLot => "parking_lot",
            Impl::Std => "std",
        }
    }
}

/// A measured case: one criterion group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Uncontended `Mutex` lock, increment, unlock.
    MutexLock,
    /// Uncontended `RwLock` read lock, load, unlock.
    RwLockRead,
    /// Uncontended `RwLock` write lock, increment, unlock.
    RwLockWrite,
    /// A shared counter incremented under a `Mutex` by this many threads.
    MutexCounter(usize),
    /// An `RwLock` read by this many threads, 1 write per 100 operations.
    RwLockMostlyRead(usize),
}

impl Workload {
    /// Every case, in table order.
    pub fn all() -> Vec<Workload> {
        let mut cases = vec![
            Workload::MutexLock,
            Workload::RwLockRead,
            Workload::RwLockWrite,
        ];
        cases.extend(THREADS.map(Workload::MutexCounter));
        cases.extend(THREADS.map(Workload::RwLockMostlyRead));
        cases
    }

    /// Single-threaded cases are reported as time per operation, contended
    /// ones as throughput.
    pub fn threads(self) -> Option<usize> {
        match self {
            Workload::MutexLock | Workload::RwLockRead | Workload::RwLockWrite => None,
            Workload::MutexCounter(t) | Workload::RwLockMostlyRead(t) => Some(t),
        }
    }

    /// The case without its thread count, e.g. `mutex_counter`.
    pub fn kind(self) -> &'static str {
        match self {
            Workload::MutexLock => "uncontended/mutex_lock_unlock",
            Workload::RwLockRead => "uncontended/rwlock_read_unlock",
            Workload::RwLockWrite => "uncontended/rwlock_write_unlock",
            Workload::MutexCounter(_) => "mutex_counter",
            Workload::RwLockMostlyRead(_) => "rwlock_99read_1write",
        }
    }

    /// A stable identifier, used as the criterion group name.
    pub fn id(self) -> String {
        match self.threads() {
            None => self.kind().to_owned(),
            Some(t) => format!("{}/threads={t}", self.kind()),
        }
    }

    /// Performs `ops` operations of this workload on `imp`'s locks and returns
    /// the wall time they took.
    pub fn run(self, imp: Impl, ops: u64) -> Duration {
        match imp {
            Impl::Lockscope => self.run_on::<lockscope::Mutex<u64>, lockscope::RwLock<u64>>(ops),
            Impl::ParkingLot => {
                self.run_on::<parking_lot::Mutex<u64>, parking_lot::RwLock<u64>>(ops)
            }
            Impl::Std => self.run_on::<std::sync::Mutex<u64>, std::sync::RwLock<u64>>(ops),
        }
    }

    fn run_on<M: BenchMutex, L: BenchRwLock>(self, ops: u64) -> Duration {
        match self {
            Workload::MutexLock => uncontended(M::new(), ops, |m| m.increment()),
            Workload::RwLockRead => uncontended(L::new(), ops, |l| {
                black_box(l.load());
            }),
            Workload::RwLockWrite => uncontended(L::new(), ops, |l| l.increment()),
            Workload::MutexCounter(threads) => mutex_counter::<M>(threads, ops),
            Workload::RwLockMostlyRead(threads) => rwlock_mostly_read::<L>(threads, ops),
        }
    }
}

/// The operations the workloads need from a mutex protecting a `u64`.
pub trait BenchMutex: Send + Sync {
    fn new() -> Self;
    /// Lock, add one, unlock.
    fn increment(&self);
    /// Lock, load, unlock.
    fn load(&self) -> u64;
}

/// The operations the workloads need from a reader-writer lock protecting a
/// `u64`.
pub trait BenchRwLock: Send + Sync {
    fn new() -> Self;
    /// Read lock, load, read unlock.
    fn load(&self) -> u64;
    /// Write lock, add one, write unlock.
    fn increment(&self);
}

// lockscope and parking_lot 0.13 are both `lock_api` 0.5 types.
impl<R: lock_api::RawMutex + Send + Sync> BenchMutex for lock_api::Mutex<R, u64> {
    fn new() -> Self {
        lock_api::Mutex::new(0)
    }
    #[inline]
    fn increment(&self) {
        *self.lock() += 1;
    }
    fn load(&self) -> u64 {
        *self.lock()
    }
}

impl<R: lock_api::RawRwLock + Send + Sync> BenchRwLock for lock_api::RwLock<R, u64> {
    fn new() -> Self {
        lock_api::RwLock::new(0)
    }
    #[inline]
    fn load(&self) -> u64 {
        *self.read()
    }
    #[inline]
    fn increment(&self) {
        *self.write() += 1;
    }
}

impl BenchMutex for std::sync::Mutex<u64> {
    fn new() -> Self {
        std::sync::Mutex::new(0)
    }
    #[inline]
    fn increment(&self) {
        *self.lock().unwrap() += 1;
    }
    fn load(&self) -> u64 {
        *self.lock().unwrap()
    }
}

impl BenchRwLock for std::sync::RwLock<u64> {
    fn new() -> Self {
        std::sync::RwLock::new(0)
    }
    #[inline]
    fn load(&self) -> u64 {
        *self.read().unwrap()
    }
    #[inline]
    fn increment(&self) {
        *self.write().unwrap() += 1;
    }
}

/// Gives every lock its own cache lines, so that neither its neighbours nor
/// its size decide which cache lines it shares.
#[repr(align(128))]
struct Padded<T>(T);

/// Runs `op` on `lock` `ops` times on the calling thread.
#[inline(never)]
fn uncontended<L>(lock: L, ops: u64, op: impl Fn(&L)) -> Duration {
    let lock = Padded(lock);
    let lock = black_box(&lock.0);
    let start = Instant::now();
    for _ in 0..ops {
        op(lock);
    }
    start.elapsed()
}

/// Runs `body(thread_index, ops_of_thread)` on `threads` freshly spawned
/// threads that share `ops` operations, and returns the span from the first
/// thread's start to the last thread's end together with what each returned.
///
/// The threads start together at a barrier; each reads the clock once after
/// it and once after its loop, so spawning and joining are not measured.
fn on_threads<R: Send>(
    threads: usize,
    ops: u64,
    body: impl Fn(usize, u64) -> R + Sync,
) -> (Duration, Vec<R>) {
    assert!(threads > 0, "a workload needs at least one thread");
    let barrier = Barrier::new(threads);
    let n = threads as u64;
    let results: Vec<(Instant, Instant, R)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                let (barrier, body) = (&barrier, &body);
                // Split `ops` exactly: the first `ops % n` threads do one more.
                let mine = ops / n + u64::from((index as u64) < ops % n);
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let result = body(index, mine);
                    (start, Instant::now(), result)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("benchmark thread panicked"))
            .collect()
    });
    let first_start = results.iter().map(|r| r.0).min().expect("threads > 0");
    let last_end = results.iter().map(|r| r.1).max().expect("threads > 0");
    let values = results.into_iter().map(|r| r.2).collect();
    (last_end - first_start, values)
}

/// `threads` threads increment one counter under a mutex, `ops` times in all.
fn mutex_counter<M: BenchMutex>(threads: usize, ops: u64) -> Duration {
    let lock = Padded(M::new());
    let (elapsed, _) = on_threads(threads, ops, |_, mine| {
        let lock = black_box(&lock.0);
        for _ in 0..mine {
            lock.increment();
        }
    });
    assert_eq!(lock.0.load(), ops, "mutex counter lost increments");
    elapsed
}

/// `threads` threads share `ops` operations on one `RwLock`, of which one in
/// [`WRITE_EVERY`] per thread is a write (threads are staggered so that they
/// do not all write at once), the others reads.
fn rwlock_mostly_read<L: BenchRwLock>(threads: usize, ops: u64) -> Duration {
    let lock = Padded(L::new());
    let (elapsed, writes) = on_threads(threads, ops, |index, mine| {
        let lock = black_box(&lock.0);
        let stagger = (index * WRITE_EVERY as usize / threads) as u32;
        let mut until_write = WRITE_EVERY - 1 - stagger;
        let mut writes = 0u64;
        for _ in 0..mine {
            if until_write == 0 {
                lock.increment();
                writes += 1;
                until_write = WRITE_EVERY - 1;
            } else {
                black_box(lock.load());
                until_write -= 1;
            }
        }
        writes
    });
    assert_eq!(
        lock.0.load(),
        writes.iter().sum::<u64>(),
        "rwlock lost writes"
    );
    elapsed
}
