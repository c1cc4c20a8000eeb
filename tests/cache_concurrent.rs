//! Concurrent stress and single-flight tests.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use lockscope::cache::TwoTierCache;

#[test]
fn stress_mixed_operations() {
    let cache = TwoTierCache::<u64, (u64, u64)>::builder()
        .capacity(500)
        .shards(4)
        .sample_interval(4)
        .build()
        .unwrap();
    let threads = 8;
    thread::scope(|s| {
        for t in 0..threads {
            let cache = &cache;
            s.spawn(move || {
                let mut x = t as u64 + 1;
                for i in 0..40_000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = (x % 2_000) * (x % 3 + 1) % 2_000;
                    match i % 16 {
                        0 => {
                            cache.remove(&k);
                        }
                        1 => {
                            let v = cache.get_or_insert_with(k, || (k, k * 7));
                            assert_eq!(v, (k, k * 7));
                        }
                        2..=5 => {
                            cache.insert(k, (k, k * 7));
                        }
                        6 if t == 0 && i % 8192 == 6 => cache.clear(),
                        _ => {
                            if let Some(v) = cache.get(&k) {
                                // Values always belong to their key.
                                assert_eq!(v, (k, k * 7));
                            }
                        }
                    }
                    assert!(cache.len() <= cache.capacity());
                }
            });
        }
    });
    let s = cache.stats();
    assert!(s.hits + s.misses > 0);
    assert!(cache.metrics().get.count() > 0);
    let _ = cache.patterns();
}

#[test]
fn loader_runs_once_under_concurrent_misses() {
    let cache = Arc::new(
        TwoTierCache::<u32, u64>::builder()
            .capacity(100)
            .build()
            .unwrap(),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let n = 16;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (cache, runs, barrier) = (cache.clone(), runs.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                cache.get_or_insert_with(42, || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(100));
                    4242
                })
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 4242);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get(&42), Some(4242));
}

#[test]
fn panicking_loader_wedges_nothing() {
    let cache = Arc::new(
        TwoTierCache::<u32, u64>::builder()
            .capacity(100)
            .build()
            .unwrap(),
    );
    let started = Arc::new(Barrier::new(2));
    // The leader: its loader waits until a waiter has queued, then panics.
    let leader = {
        let (cache, started) = (cache.clone(), started.clone());
        thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                cache.get_or_insert_with(7, || {
                    started.wait();
                    thread::sleep(Duration::from_millis(100));
                    panic!("loader failed");
                })
            }))
        })
    };
    started.wait();
    let runs = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let (cache, runs) = (cache.clone(), runs.clone());
            thread::spawn(move || {
                cache.get_or_insert_with(7, || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    77
                })
            })
        })
        .collect();
    let err = leader.join().unwrap().unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"loader failed"));
    for w in waiters {
        assert_eq!(w.join().unwrap(), 77);
    }
    // One waiter took over; the others got its value.
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get(&7), Some(77));
    // The key is not wedged for later callers either.
    assert_eq!(cache.get_or_insert_with(8, || 88), 88);
}

#[test]
fn threads_come_and_go() {
    // More threads over time than there are stats stripes: stripes are
    // handed back on thread exit and counts are kept.
    let cache = TwoTierCache::<u32, u32>::builder()
        .capacity(10)
        .build()
        .unwrap();
    cache.insert(1, 1);
    for _ in 0..100 {
        thread::scope(|s| {
            s.spawn(|| assert_eq!(cache.get(&1), Some(1)));
        });
    }
    assert_eq!(cache.stats().hits, 100);
}

#[test]
fn every_sample_is_recorded_or_counted_as_skipped_while_snapshots_run() {
    // Every get is offered to the detector: 4 threads x 50k gets. A fifth
    // thread takes snapshots throughout, draining the threads' batches
    // while they record into them.
    let cache = TwoTierCache::<u64, u64>::builder()
        .capacity(1000)
        .sample_interval(1)
        .build()
        .unwrap();
    for k in 0..500 {
        cache.insert(k, k);
    }
    let (threads, gets) = (4u64, 50_000u64);
    let done = AtomicUsize::new(0);
    let mut snapshots = 0;
    thread::scope(|s| {
        for t in 0..threads {
            let (cache, done) = (&cache, &done);
            s.spawn(move || {
                for i in 0..gets {
                    let k = (i * 7 + t) % 1000;
                    assert_eq!(cache.get(&k).is_some(), k < 500);
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        while done.load(Ordering::SeqCst) < threads as usize {
            let p = cache.patterns();
            assert!(p.samples + p.skipped <= threads * gets, "{p:?}");
            snapshots += 1;
            // Often enough to drain batches while they fill, not so often
            // that a loaded machine skips nearly every sample.
            thread::sleep(Duration::from_micros(100));
        }
    });
    let p = cache.patterns();
    assert!(snapshots > 0);
    assert_eq!(p.samples + p.skipped, threads * gets, "{p:?}");
    // The window's hit ratio is the workload's (half the keys are cached):
    // over the recent epochs, since one epoch may come mostly from one
    // thread's run of hits or misses (runs of about 70) when the others are
    // descheduled.
    assert!(p.samples >= 8 * 256, "too few samples recorded: {p:?}");
    let mean = p.hit_ratios.iter().sum::<f64>() / p.hit_ratios.len() as f64;
    assert!((mean - 0.5).abs() < 0.1, "{mean} {p:?}");
}

#[test]
fn threads_beyond_the_stripes_are_counted_and_sampled_exactly() {
    // More threads alive at once than the cache has stats stripes (it has
    // four per CPU, at least 16): the rest share the overflow stripe, whose
    // samples go to the window one at a time.
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cpus * 4).max(16) + 8;
    let gets = 2_000u64;
    let cache = TwoTierCache::<u64, u64>::builder()
        .capacity(100)
        .sample_interval(1)
        .build()
        .unwrap();
    for k in 0..10 {
        cache.insert(k, k);
    }
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        for _ in 0..threads {
            let (cache, barrier) = (&cache, &barrier);
            s.spawn(move || {
                // All alive together, so that none can hand its stripe on.
                barrier.wait();
                for i in 0..gets {
                    assert_eq!(cache.get(&(i % 10)), Some(i % 10));
                }
                barrier.wait();
            });
        }
    });
    let total = threads as u64 * gets;
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (total, 0));
    let p = cache.patterns();
    assert_eq!(p.samples + p.skipped, total, "{p:?}");
}
