//! Soak: 16 threads of mixed lock and cache operations for a while, with
//! invariant checks and the watchdog on: a few hot locks, 16,384 locks taken
//! at random, locks created, used and dropped, and the cache. Prints operations done, invariant
//! violations (must be 0), stalls reported (must be 0) and the contention
//! profile; exits non-zero if either count is not 0.
//!
//! ```text
//! cargo run --release --example soak            # 10 s
//! cargo run --release --example soak -- 3       # 3 s (.ci/run's soak step)
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use lockscope::cache::TwoTierCache;
use lockscope::diag::{self, watchdog};
use lockscope::{
    Condvar, Mutex, RawMutex, RawRwLock, ReentrantMutex, RwLock, RwLockUpgradableReadGuard,
};

const THREADS: usize = 16;

/// State whose invariants every critical section checks.
struct Shared {
    /// Two halves that are only ever changed together: `a + b == 0`.
    pair: Mutex<(i64, i64)>,
    /// A version and a copy of it: readers must see them equal.
    config: RwLock<(u64, u64)>,
    /// A counter and a flag for condvar hand-offs.
    queue: Mutex<u64>,
    ready: Condvar,
    nested: ReentrantMutex<std::cell::Cell<u64>>,
    cache: TwoTierCache<u64, u64>,
    /// Many per-object locks, each with the pair invariant of `pair`.
    many: Vec<Mutex<(i64, i64)>>,
    /// As many reader-writer locks, each with the copy invariant of `config`.
    many_rw: Vec<RwLock<(u64, u64)>>,
}

/// Locks in `Shared::many` and `Shared::many_rw`.
const MANY: usize = 16_384;

fn main() -> ExitCode {
    let secs: f64 = match std::env::args().nth(1).map(|s| s.parse()) {
        None => 10.0,
        Some(Ok(s)) if s > 0.0 => s,
        Some(_) => {
            eprintln!("usage: soak [SECONDS]");
            return ExitCode::FAILURE;
        }
    };
    let shared = Arc::new(Shared {
        pair: Mutex::from_raw(RawMutex::labelled("soak pair"), (0, 0)),
        config: RwLock::from_raw(RawRwLock::labelled("soak config"), (0, 0)),
        queue: Mutex::from_raw(RawMutex::labelled("soak queue"), 0),
        ready: Condvar::new(),
        nested: ReentrantMutex::new(std::cell::Cell::new(0)),
        cache: TwoTierCache::builder()
            .capacity(4096)
            .build()
            .expect("a valid cache"),
        many: (0..MANY).map(|_| Mutex::new((0, 0))).collect(),
        many_rw: (0..MANY).map(|_| RwLock::new((0, 0))).collect(),
    });
    let stalls = Arc::new(AtomicU64::new(0));
    let dog = {
        let stalls = Arc::clone(&stalls);
        watchdog::spawn(
            watchdog::WatchdogConfig::default()
                .period(Duration::from_millis(100))
                .wait_threshold(Duration::from_secs(2))
                .hold_threshold(Duration::from_secs(2))
                .on_report(move |report| {
                    stalls.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{report}");
                }),
        )
    };
    let violations_before = lockscope::violations_reported();
    let broken = Arc::new(AtomicU64::new(0));
    let ops = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (shared, broken, ops, stop) = (
                Arc::clone(&shared),
                Arc::clone(&broken),
                Arc::clone(&ops),
                Arc::clone(&stop),
            );
            thread::Builder::new()
                .name(format!("soak-{t}"))
                .spawn(move || work(t as u64, &shared, &broken, &ops, &stop))
                .expect("spawn")
        })
        .collect();
    let started = Instant::now();
    thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    shared.ready.notify_all();
    for w in workers {
        w.join().expect("a soak thread panicked");
    }
    drop(dog);
    let ops = ops.load(Ordering::Relaxed);
    let broken =
        broken.load(Ordering::Relaxed) + (lockscope::violations_reported() - violations_before);
    let stalls = stalls.load(Ordering::Relaxed);
    println!(
        "soak: {THREADS} threads, {:.1} s, {ops} operations ({:.2} M/s)",
        started.elapsed().as_secs_f64(),
        ops as f64 / started.elapsed().as_secs_f64() / 1e6
    );
    println!("invariant violations: {broken}");
    println!("stalls reported: {stalls}");
    if diag::enabled() {
        println!("\n{}", diag::profile());
    }
    if broken == 0 && stalls == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn work(t: u64, s: &Shared, broken: &AtomicU64, ops: &AtomicU64, stop: &AtomicBool) {
    let mut rng = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut done = 0u64;
    let check = |ok: bool| {
        if !ok {
            broken.fetch_add(1, Ordering::Relaxed);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        match rng % 14 {
            0 | 1 => {
                let mut p = s.pair.lock();
                p.0 += 1;
                p.1 -= 1;
                check(p.0 + p.1 == 0);
            }
            2 => {
                if let Some(p) = s.pair.try_lock_for(Duration::from_micros(50)) {
                    check(p.0 + p.1 == 0);
                }
            }
            3 | 4 => {
                let c = s.config.read();
                check(c.0 == c.1);
            }
            5 => {
                let u = s.config.upgradable_read();
                check(u.0 == u.1);
                let mut w = RwLockUpgradableReadGuard::upgrade(u);
                w.0 += 1;
                w.1 = w.0;
            }
            6 => {
                if let Some(mut w) = s.config.try_write_for(Duration::from_micros(20)) {
                    w.0 += 1;
                    w.1 = w.0;
                }
            }
            7 => {
                let mut q = s.queue.lock();
                if rng & 1 == 0 {
                    *q += 1;
                    s.ready.notify_one();
                } else if *q > 0 {
                    *q -= 1;
                } else {
                    let _ = s.ready.wait_for(&mut q, Duration::from_millis(1));
                }
            }
            8 => {
                let outer = s.nested.lock();
                let inner = s.nested.lock();
                inner.set(inner.get() + 1);
                check(outer.get() == inner.get());
            }
            10 => {
                let i = (rng >> 20) as usize % MANY;
                let mut p = s.many[i].lock();
                p.0 += 1;
                p.1 -= 1;
                check(p.0 + p.1 == 0);
            }
            11 => {
                let i = (rng >> 20) as usize % MANY;
                if rng & 0x100 == 0 {
                    let mut w = s.many_rw[i].write();
                    w.0 += 1;
                    w.1 = w.0;
                } else {
                    let r = s.many_rw[i].read();
                    check(r.0 == r.1);
                }
            }
            12 => {
                // A short-lived lock: made, used from two modes, dropped.
                let lock = Box::new(RwLock::new((rng, rng)));
                {
                    let r = lock.read();
                    check(r.0 == r.1);
                }
                let mut w = lock.write();
                w.0 = w.0.wrapping_add(1);
                w.1 = w.0;
                drop(w);
                let m = Mutex::new(rng);
                check(*m.lock() == rng);
            }
            _ => {
                let key = rng % 8192;
                match s.cache.get(&key) {
                    Some(v) => check(v == key * 3),
                    None => {
                        s.cache.insert(key, key * 3);
                    }
                }
                check(s.cache.len() <= s.cache.capacity());
            }
        }
        done += 1;
    }
    ops.fetch_add(done, Ordering::Relaxed);
}
