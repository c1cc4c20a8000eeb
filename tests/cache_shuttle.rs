//! `TwoTierCache` under the shuttle model checker: a few concurrent
//! operations, many schedules, the cache's invariants after each.
//!
//! With the `shuttle` feature the cache's shard locks, single-flight mutex
//! and condvar are shuttle's, so every acquisition is a point where shuttle
//! may switch threads, and so are the pattern detector's batch atomics.
//! So are the cache's other shared atomics (entries' access bytes, the
//! sketch, the shard counters, the window's target), which go through the
//! crate's `sync` facade. The stats stripes stay `std` atomics (see
//! `src/cache/stats.rs`): shuttle runs all its tasks on one OS thread, so
//! they share a stripe, whose counts cannot tear and are not scheduling
//! points.
//!
//! ```sh
//! cargo test --release --features shuttle --test cache_shuttle
//! ```
#![cfg(feature = "shuttle")]

use std::panic::{AssertUnwindSafe, catch_unwind};

use lockscope::Mutex;
use lockscope::cache::TwoTierCache;
use shuttle::sync::Arc;
use shuttle::thread;

const ITERATIONS: usize = 300;

fn cache(capacity: usize) -> TwoTierCache<u32, u64> {
    TwoTierCache::builder()
        .capacity(capacity)
        .shards(2)
        .sample_interval(1)
        .build()
        .expect("valid configuration")
}

/// The value every test stores for key `k`.
fn value(k: u32) -> u64 {
    u64::from(k) * 10 + 1
}

fn check(f: impl Fn() + Send + Sync + 'static) {
    let f = std::sync::Arc::new(f);
    let g = f.clone();
    shuttle::check_random(move || f(), ITERATIONS);
    shuttle::check_pct(move || g(), ITERATIONS, 3);
}

/// Three threads get, insert and remove over more keys than fit: values
/// always belong to their key, the bound holds, and the counters add up.
#[test]
fn mixed_operations_keep_the_invariants() {
    check(|| {
        let cache = Arc::new(cache(4));
        let threads: Vec<_> = (0..3u32)
            .map(|t| {
                let cache = Arc::clone(&cache);
                thread::spawn(move || {
                    let mut gets = 0u64;
                    for i in 0..6u32 {
                        let k = (t * 3 + i) % 7;
                        match i % 3 {
                            0 => {
                                assert!(cache.insert(k, value(k)));
                                assert!(cache.len() <= cache.capacity());
                            }
                            1 => {
                                gets += 1;
                                if let Some(v) = cache.get(&k) {
                                    assert_eq!(v, value(k), "a value under the wrong key");
                                }
                            }
                            _ => {
                                if let Some(v) = cache.remove(&k) {
                                    assert_eq!(v, value(k));
                                }
                            }
                        }
                        assert!(cache.len() <= cache.capacity());
                    }
                    gets
                })
            })
            .collect();
        let gets: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(cache.len() <= 4);
        let s = cache.stats();
        assert_eq!(s.hits + s.misses, gets, "{s:?}");
        for k in 0..7 {
            if let Some(v) = cache.get(&k) {
                assert_eq!(v, value(k));
            }
        }
    });
}

/// Cache-aside on a full cache: two threads get and, on a miss, insert
/// (each new key enters the window and pushes another key towards
/// admission or eviction), while a third replaces and removes. Every insert
/// is counted once, values belong to their key, and a replacement is never
/// lost to an eviction decided at the same time.
#[test]
fn evictions_after_misses_keep_the_invariants() {
    check(|| {
        let cache = Arc::new(cache(4));
        for k in 0..4 {
            cache.insert(k, value(k));
        }
        let aside: Vec<_> = (0..2u32)
            .map(|t| {
                let cache = Arc::clone(&cache);
                thread::spawn(move || {
                    let mut inserts = 0u64;
                    for i in 0..4u32 {
                        let k = 4 + (t * 5 + i * 3) % 9;
                        match cache.get(&k) {
                            Some(v) => assert_eq!(v, value(k), "a value under the wrong key"),
                            None => {
                                cache.insert(k, value(k));
                                inserts += 1;
                            }
                        }
                    }
                    inserts
                })
            })
            .collect();
        let writer = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                cache.insert(1, value(1));
                cache.remove(&2);
                1u64 // its inserts
            })
        };
        let prefill = 4;
        let aside: u64 = aside.into_iter().map(|t| t.join().unwrap()).sum();
        let inserts = prefill + aside + writer.join().unwrap();
        let s = cache.stats();
        assert_eq!(s.inserts, inserts, "{s:?}");
        assert!(s.admissions + s.rejections <= s.inserts, "{s:?}");
        assert!(cache.len() <= 4);
        for k in 0..13 {
            if let Some(v) = cache.get(&k) {
                assert_eq!(v, value(k));
            }
        }
    });
}

/// Two concurrent misses on one key run one loader, and both callers see
/// its value.
#[test]
fn single_flight_runs_one_loader() {
    check(|| {
        let cache = Arc::new(cache(8));
        let runs = Arc::new(Mutex::new(0u32));
        let spawn = |cache: &Arc<TwoTierCache<u32, u64>>, runs: &Arc<Mutex<u32>>| {
            let (cache, runs) = (Arc::clone(cache), Arc::clone(runs));
            thread::spawn(move || {
                cache.get_or_insert_with(5, || {
                    *runs.lock() += 1;
                    value(5)
                })
            })
        };
        let a = spawn(&cache, &runs);
        let b = spawn(&cache, &runs);
        assert_eq!(a.join().unwrap(), value(5));
        assert_eq!(b.join().unwrap(), value(5));
        assert_eq!(*runs.lock(), 1, "the loader ran more than once");
        assert_eq!(cache.get(&5), Some(value(5)));
    });
}

/// A loader that panics wedges nothing: in every schedule the other caller
/// gets a value (its own loader's), and the key works afterwards.
#[test]
fn panicking_loader_wedges_nothing() {
    // Shuttle reports the caught panic's message; keep the output short.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    check(|| {
        let cache = Arc::new(cache(8));
        let leader = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || {
                catch_unwind(AssertUnwindSafe(|| {
                    cache.get_or_insert_with(3, || panic!("loader failed"))
                }))
                .is_err()
            })
        };
        let other = {
            let cache = Arc::clone(&cache);
            thread::spawn(move || cache.get_or_insert_with(3, || value(3)))
        };
        let panicked = leader.join().unwrap();
        let got = other.join().unwrap();
        assert_eq!(got, value(3));
        // The panicking loader either ran (and its caller saw the panic) or
        // found the other caller's value in place.
        if !panicked {
            assert_eq!(cache.get(&3), Some(value(3)));
        }
        assert_eq!(cache.get_or_insert_with(3, || 0), value(3));
    });
    std::panic::set_hook(hook);
}
