//! Criterion benchmarks of `TwoTierCache` against quick_cache and moka:
//! get-then-insert-on-miss over pre-generated key streams, 1 and 4 threads.
//!
//! ```text
//! cargo bench --bench cache
//! cargo bench --bench cache -- zipf1.0/4   # one stream, 4 threads
//! ```

#[path = "support/streams.rs"]
mod streams;

use std::hash::BuildHasher;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lockscope::cache::TwoTierCache;
use streams::CAPACITY;

trait Engine: Sync {
    fn get(&self, k: u64) -> Option<u64>;
    fn insert(&self, k: u64, v: u64);
}

impl<S: BuildHasher + Sync + Send> Engine for TwoTierCache<u64, u64, S> {
    fn get(&self, k: u64) -> Option<u64> {
        TwoTierCache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        TwoTierCache::insert(self, k, v);
    }
}

impl Engine for quick_cache::sync::Cache<u64, u64> {
    fn get(&self, k: u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        quick_cache::sync::Cache::insert(self, k, v)
    }
}

impl Engine for moka::sync::Cache<u64, u64> {
    fn get(&self, k: u64) -> Option<u64> {
        moka::sync::Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: u64) {
        moka::sync::Cache::insert(self, k, v)
    }
}

fn replay<E: Engine>(cache: &E, keys: &[u64]) {
    for &k in keys {
        if cache.get(k).is_none() {
            cache.insert(k, k);
        }
    }
}

/// `iters` operations split over `threads`, each walking its own part of
/// the stream (wrapping around).
fn timed<E: Engine>(cache: &E, keys: &[u64], threads: usize, iters: u64) -> Duration {
    let per = (iters as usize).div_ceil(threads);
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                let start = t * keys.len() / threads;
                barrier.wait();
                let mut i = start;
                for _ in 0..per {
                    let k = keys[i];
                    if cache.get(k).is_none() {
                        cache.insert(k, k);
                    }
                    i += 1;
                    if i == keys.len() {
                        i = 0;
                    }
                }
            });
        }
        barrier.wait();
        Instant::now()
    })
    .elapsed()
}

fn bench_engine<E: Engine>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    cache: E,
    keys: &[u64],
    threads: usize,
) {
    replay(&cache, keys);
    g.bench_function(name, |b| {
        b.iter_custom(|iters| timed(&cache, keys, threads, iters))
    });
}

fn caches(c: &mut Criterion) {
    let streams = streams::all(1_000_000);
    let lock = |obs| {
        TwoTierCache::<u64, u64>::builder()
            .capacity(CAPACITY)
            .observability(obs)
            .build()
            .expect("valid configuration")
    };
    for stream in &streams {
        for threads in [1, 4] {
            let mut g = c.benchmark_group(format!("{}/{threads}", stream.name));
            g.throughput(Throughput::Elements(1))
                .sample_size(10)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2));
            bench_engine(&mut g, "lockscope", lock(true), &stream.keys, threads);
            bench_engine(
                &mut g,
                "lockscope-obs-off",
                lock(false),
                &stream.keys,
                threads,
            );
            bench_engine(
                &mut g,
                "quick_cache",
                quick_cache::sync::Cache::<u64, u64>::new(CAPACITY),
                &stream.keys,
                threads,
            );
            bench_engine(
                &mut g,
                "moka",
                moka::sync::Cache::<u64, u64>::new(CAPACITY as u64),
                &stream.keys,
                threads,
            );
            g.finish();
        }
    }
}

criterion_group!(benches, caches);
criterion_main!(benches);
