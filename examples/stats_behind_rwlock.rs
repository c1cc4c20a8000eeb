//! A cache whose hit and miss counters live behind an `RwLock`, next to
//! the same cache with atomic counters. The contention profile names the
//! stats lock as the lock threads wait for most; the throughput table shows
//! what it costs.
//!
//! ```text
//! cargo run --release --example stats_behind_rwlock
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use lockscope::diag::{self, Inspect};
use lockscope::{RawRwLock, RwLock};

const SHARDS: usize = 16;
const KEYS: u64 = 10_000;
const THREADS: usize = 8;
const RUN: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Stats {
    hits: u64,
    misses: u64,
}

trait Counters: Send + Sync + 'static {
    fn record(&self, hit: bool);
    fn hits(&self) -> u64;
}

impl Counters for RwLock<Stats> {
    fn record(&self, hit: bool) {
        let mut stats = self.write();
        if hit {
            stats.hits += 1;
        } else {
            stats.misses += 1;
        }
    }
    fn hits(&self) -> u64 {
        self.read().hits
    }
}

#[derive(Default)]
struct AtomicStats {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Counters for AtomicStats {
    fn record(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

struct Cache<S> {
    shards: Vec<RwLock<HashMap<u64, u64>>>,
    stats: S,
}

impl<S: Counters> Cache<S> {
    fn new(stats: S) -> Self {
        let shards = (0..SHARDS)
            .map(|_| RwLock::from_raw(RawRwLock::labelled("cache shard"), HashMap::new()))
            .collect();
        Cache { shards, stats }
    }

    fn get_or_insert(&self, key: u64) -> u64 {
        let shard = &self.shards[(key % SHARDS as u64) as usize];
        if let Some(&v) = shard.read().get(&key) {
            self.stats.record(true);
            return v;
        }
        self.stats.record(false);
        *shard.write().entry(key).or_insert(key * 2)
    }
}

/// Gets per second from `THREADS` threads for `RUN`.
fn run<S: Counters>(cache: Arc<Cache<S>>) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                let mut n = 0u64;
                let mut key = t as u64;
                while start.elapsed() < RUN {
                    for _ in 0..64 {
                        key = (key * 6_364_136_223_846_793_005 + 1442695040888963407) % KEYS;
                        std::hint::black_box(cache.get_or_insert(key));
                    }
                    n += 64;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(cache.stats.hits() > 0);
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let locked = Arc::new(Cache::new(RwLock::new(Stats::default())));
    locked.stats.set_label("cache stats");
    let atomic = Arc::new(Cache::new(AtomicStats::default()));
    // Alternate the two and keep each one's best run: the machine may be
    // busy with something else during any one of them.
    let mut with_lock = run(Arc::clone(&locked));
    let mut with_atomics = run(Arc::clone(&atomic));
    with_lock = with_lock.max(run(Arc::clone(&locked)));
    with_atomics = with_atomics.max(run(atomic));
    let profile = diag::profile();
    if diag::enabled() {
        let mut top = profile.clone();
        top.locks.retain(|l| l.contended > 0);
        top.locks.truncate(3);
        println!("contention profile, stats behind an RwLock:\n{top}");
        match profile.locks.first() {
            Some(first) if first.name == "cache stats" => {
                println!("top waiter: \"cache stats\", the stats lock\n")
            }
            Some(first) => println!("top waiter: \"{}\"\n", first.name),
            None => println!("no lock was waited for\n"),
        }
    } else {
        println!("(diagnostics are off: no profile)\n");
    }

    println!("| stats ({THREADS} threads, best of 2) | gets/s | relative |");
    println!("|---|---|---|");
    println!(
        "| behind an RwLock | {with_lock:.0} | {:.2} |",
        with_lock / with_atomics
    );
    println!("| atomic counters | {with_atomics:.0} | 1.00 |");
}
