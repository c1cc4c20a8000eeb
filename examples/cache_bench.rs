//! Hit ratio and throughput of `lockscope::cache::TwoTierCache` against
//! moka and quick_cache on the same pre-generated key streams.
//!
//! ```text
//! cargo run --release --example cache_bench            # ~2 minutes
//! cargo run --release --example cache_bench -- --quick # ~20 seconds
//! cargo run --release --example cache_bench -- --only quick_cache
//! cargo run --release --example cache_bench -- --only "lockscope fixed window,lockscope obs-off" --repeat 9
//! cargo run --release --example cache_bench -- --stream zipf1.0 --threads 1,2
//! cargo run --release --example cache_bench -- --repeat 3 # best of 3 rounds
//! ```
//!
//! Every operation is a `get`; a miss is followed by an `insert` of the key.
//! With T threads, thread i replays the i-th of T equal slices of the
//! stream. Prints markdown tables: per stream, one row per thread count, one
//! cell per cache with throughput in million operations per second and the
//! hit ratio of that run.

#[path = "../benches/support/streams.rs"]
mod streams;

use std::hash::BuildHasher;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use lockscope::cache::TwoTierCache;
use streams::{CAPACITY, Stream};

trait Engine: Sync {
    fn get(&self, k: u64) -> Option<u64>;
    fn insert(&self, k: u64, v: u64);
}

impl<S: BuildHasher + Sync + Send> Engine for TwoTierCache<u64, u64, S> {
    #[inline]
    fn get(&self, k: u64) -> Option<u64> {
        TwoTierCache::get(self, &k)
    }
    #[inline]
    fn insert(&self, k: u64, v: u64) {
        TwoTierCache::insert(self, k, v);
    }
}

impl Engine for moka::sync::Cache<u64, u64> {
    #[inline]
    fn get(&self, k: u64) -> Option<u64> {
        moka::sync::Cache::get(self, &k)
    }
    #[inline]
    fn insert(&self, k: u64, v: u64) {
        moka::sync::Cache::insert(self, k, v)
    }
}

impl Engine for quick_cache::sync::Cache<u64, u64> {
    #[inline]
    fn get(&self, k: u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, &k)
    }
    #[inline]
    fn insert(&self, k: u64, v: u64) {
        quick_cache::sync::Cache::insert(self, k, v)
    }
}

/// One measured run: (hit ratio, million ops per second).
fn run<E: Engine>(cache: E, keys: &[u64], threads: usize) -> (f64, f64) {
    let hits = AtomicU64::new(0);
    let barrier = Barrier::new(threads + 1);
    let n = keys.len();
    let elapsed = std::thread::scope(|s| {
        for t in 0..threads {
            let slice = &keys[t * n / threads..(t + 1) * n / threads];
            let (cache, hits, barrier) = (&cache, &hits, &barrier);
            s.spawn(move || {
                barrier.wait();
                let mut h = 0u64;
                for &k in slice {
                    if cache.get(k).is_some() {
                        h += 1;
                    } else {
                        cache.insert(k, k);
                    }
                }
                hits.fetch_add(h, Ordering::Relaxed);
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins every thread before returning.
        start
    })
    .elapsed();
    (
        hits.load(Ordering::Relaxed) as f64 / n as f64,
        n as f64 / elapsed.as_secs_f64() / 1e6,
    )
}

/// The caches, as columns. "lockscope A/A" is the default cache again (the
/// control: its ratio to "lockscope" is the noise of the run); "fixed
/// window" keeps observability but not the adaptive window (which needs it),
/// so that against "obs-off" (a fixed window too) it shows what
/// observability itself costs, and against "lockscope" what sizing the
/// window adaptively does.
const CACHES: [&str; 7] = [
    "lockscope",
    "lockscope A/A",
    "lockscope fixed window",
    "lockscope obs-off",
    "lockscope SipHash",
    "quick_cache",
    "moka",
];
const LOCKSCOPE: usize = 0;
const CONTROL: usize = 1;
const FIXED: usize = 2;
const OBS_OFF: usize = 3;
const SIPHASH: usize = 4;
const QUICK_CACHE: usize = 5;
const MOKA: usize = 6;

fn measure(cache: usize, keys: &[u64], threads: usize) -> (f64, f64) {
    let lock = |obs, climb| {
        TwoTierCache::<u64, u64>::builder()
            .capacity(CAPACITY)
            .observability(obs)
            .adaptive_window(climb)
            .build()
            .expect("valid configuration")
    };
    match cache {
        LOCKSCOPE | CONTROL => run(lock(true, true), keys, threads),
        FIXED => run(lock(true, false), keys, threads),
        OBS_OFF => run(lock(false, false), keys, threads),
        SIPHASH => run(
            TwoTierCache::<u64, u64>::builder()
                .capacity(CAPACITY)
                .hasher(std::hash::RandomState::new())
                .build()
                .expect("valid configuration"),
            keys,
            threads,
        ),
        QUICK_CACHE => run(
            quick_cache::sync::Cache::<u64, u64>::new(CAPACITY),
            keys,
            threads,
        ),
        _ => run(
            moka::sync::Cache::<u64, u64>::new(CAPACITY as u64),
            keys,
            threads,
        ),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only NAME[,NAME...]`: run just those caches (for profiling, or
    // for a long run of two of them side by side).
    let only: Option<Vec<usize>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|names| {
            names
                .split(',')
                .map(|name| {
                    CACHES
                        .iter()
                        .position(|c| *c == name)
                        .unwrap_or_else(|| panic!("--only: {name:?} is none of {CACHES:?}"))
                })
                .collect()
        });
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    // `--len N`: operations per run.
    let len = value("--len")
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 1_000_000 } else { 4_000_000 });
    // `--threads 1,2`: thread counts to run.
    let thread_counts: Vec<usize> = value("--threads")
        .map(|t| t.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4, 8, 16]);
    // `--repeat N`: rounds per cell, keeping the fastest (default 1).
    let repeat: usize = value("--repeat").and_then(|n| n.parse().ok()).unwrap_or(1);
    let started = Instant::now();
    eprintln!("generating streams of {len} keys ...");
    // `--stream NAME`: just that stream.
    let streams: Vec<Stream> = match value("--stream") {
        Some(name) => vec![streams::by_name(name, len).expect("a stream name from streams::NAMES")],
        None => streams::all(len),
    };
    let z1 = streams::Zipf::new(streams::UNIVERSE, 1.0);
    let z8 = streams::Zipf::new(streams::UNIVERSE, 0.8);
    println!(
        "capacity {CAPACITY}, {len} ops per run, {} cores, best of {repeat} round(s); cells: Mops/s (hit ratio)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "static optimum: zipf1.0 {:.3}, zipf0.8 {:.3}\n",
        z1.static_optimum(CAPACITY),
        z8.static_optimum(CAPACITY)
    );
    // results[stream][threads][cache] = (hit, mops)
    let mut results = Vec::new();
    for stream in &streams {
        println!("### {}\n", stream.name);
        println!("| threads | {} |", CACHES.join(" | "));
        println!("|---|{}", "---|".repeat(CACHES.len()));
        let mut per_stream = Vec::new();
        for &t in &thread_counts {
            // Rounds interleave the caches, so a burst of load from
            // elsewhere on the machine hits them all alike; a cell keeps
            // its fastest round.
            let mut row = vec![(f64::NAN, f64::NAN); CACHES.len()];
            for _ in 0..repeat {
                for (c, cell) in row.iter_mut().enumerate() {
                    if only.as_ref().is_some_and(|o| !o.contains(&c)) {
                        continue;
                    }
                    let (h, m) = measure(c, &stream.keys, t);
                    if cell.1.is_nan() || m > cell.1 {
                        *cell = (h, m);
                    }
                }
            }
            let cells: Vec<String> = row
                .iter()
                .map(|(h, m)| {
                    if m.is_nan() {
                        "-".to_string()
                    } else {
                        format!("{m:.2} ({h:.3})")
                    }
                })
                .collect();
            println!("| {t} | {} |", cells.join(" | "));
            per_stream.push(row);
        }
        println!();
        results.push(per_stream);
    }
    println!("### Bars\n");
    println!(
        "Ratios: median over thread counts (min in brackets); single runs on a busy machine are noisy.\n"
    );
    println!(
        "| stream | hit: lockscope - best peer (fewest threads) | A/A control (all threads) | observability: fixed window / obs-off (threads >= 2) | adaptive window: lockscope / fixed window (all threads) | lockscope / quick_cache (threads >= 2) | lockscope SipHash / quick_cache (threads >= 2) | lockscope / moka (threads >= 2) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (s, stream) in streams.iter().enumerate() {
        let r = &results[s];
        // Caches left out with `--only` are NaN: their ratios print as "-".
        let best_peer = r[0][QUICK_CACHE].0.max(r[0][MOKA].0);
        let hit_gap = if (r[0][LOCKSCOPE].0 - best_peer).is_nan() {
            "-".to_string()
        } else {
            format!("{:+.4}", r[0][LOCKSCOPE].0 - best_peer)
        };
        let ratio = |a: usize, b: usize, min_threads: usize| {
            let mut v: Vec<f64> = r
                .iter()
                .zip(&thread_counts)
                .filter(|&(_, &t)| t >= min_threads)
                .map(|(row, _)| row[a].1 / row[b].1)
                .filter(|x| !x.is_nan())
                .collect();
            if v.is_empty() {
                return "-".to_string();
            }
            v.sort_by(f64::total_cmp);
            format!("{:.2}x ({:.2}x)", v[v.len() / 2], v[0])
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            stream.name,
            hit_gap,
            ratio(LOCKSCOPE, CONTROL, 0),
            ratio(FIXED, OBS_OFF, 2),
            ratio(LOCKSCOPE, FIXED, 0),
            ratio(LOCKSCOPE, QUICK_CACHE, 2),
            ratio(SIPHASH, QUICK_CACHE, 2),
            ratio(LOCKSCOPE, MOKA, 2),
        );
    }
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
}
