//! The cache's API as users of moka and quick_cache expect it: `new`,
//! reads right after `insert`, weights, the eviction listener, `peek`,
//! `retain`, `iter`, the `get_or_insert_with` family; and its documented
//! answers to bad input (zero capacity, overweight values, a panicking
//! weigher or listener), each leaving nothing lost or wedged.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex, OnceLock};

use lockscope::cache::{BuildError, RemovalCause, TwoTierCache};

type Log = Arc<Mutex<Vec<(u64, u64, RemovalCause)>>>;

/// A cache whose listener appends to the returned log.
fn logged(capacity: usize, shards: usize) -> (TwoTierCache<u64, u64>, Log) {
    let log: Log = Arc::default();
    let l = Arc::clone(&log);
    let cache = TwoTierCache::builder()
        .capacity(capacity)
        .shards(shards)
        .eviction_listener(move |k, v, cause| l.lock().unwrap().push((k, v, cause)))
        .build()
        .unwrap();
    (cache, log)
}

#[test]
fn a_new_key_is_readable_right_after_insert() {
    let cache = TwoTierCache::<u64, u64>::new(100);
    // Far more keys than fit, most of them seen once: the policy would
    // turn them away from the main region, but each is readable at once.
    for k in 0..10_000u64 {
        let k = k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        assert!(cache.insert(k, k ^ 1), "insert refused {k}");
        assert_eq!(cache.get(&k), Some(k ^ 1));
        assert!(cache.len() <= 100);
    }
}

#[test]
fn every_key_is_cached_or_reported_and_causes_are_right() {
    let (cache, log) = logged(64, 2);
    for k in 0..1_000u64 {
        cache.insert(k % 300, k);
    }
    // Replacements of cached keys, removals, a retain and a clear.
    let cached: Vec<u64> = cache.iter().map(|(k, _)| k).collect();
    let before = log.lock().unwrap().len();
    let k0 = cached[0];
    cache.insert(k0, 7);
    let log_now = log.lock().unwrap().clone();
    assert!(
        log_now[before..]
            .iter()
            .any(|&(k, _, c)| k == k0 && c == RemovalCause::Replaced),
        "{:?}",
        &log_now[before..]
    );
    assert_eq!(cache.remove(&k0), Some(7));
    cache.retain(|k, _| k % 2 == 0);
    let kept: Vec<u64> = cache.iter().map(|(k, _)| k).collect();
    assert!(kept.iter().all(|k| k % 2 == 0), "{kept:?}");
    cache.clear();
    assert!(cache.is_empty());

    // Every value inserted left through the listener exactly once: the
    // last value of each key by Removed (or Replaced, when overwritten
    // while cached, or Capacity), each earlier one by Replaced or Capacity.
    let log = log.lock().unwrap();
    let mut values: HashMap<u64, usize> = HashMap::new();
    for &(_, v, _) in log.iter() {
        *values.entry(v).or_default() += 1;
    }
    for v in (0..1_000u64).filter(|&v| v != 7) {
        assert_eq!(
            values.get(&v),
            Some(&1),
            "value {v} reported {:?} times",
            values.get(&v)
        );
    }
    assert_eq!(values.get(&7), Some(&2), "7 was inserted twice");
    let causes = |c| log.iter().filter(|e| e.2 == c).count();
    assert!(causes(RemovalCause::Capacity) > 0);
    assert!(causes(RemovalCause::Removed) > 0);
    assert!(causes(RemovalCause::Replaced) > 0);
}

#[test]
fn weights_bound_the_cache_and_overweight_values_are_refused() {
    let removed = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&removed);
    let cache = TwoTierCache::<u64, Vec<u8>>::builder()
        .capacity(1_000)
        .shards(2)
        .weigher(|_, v: &Vec<u8>| v.len() as u64)
        .eviction_listener(move |k, v: Vec<u8>, c| sink.lock().unwrap().push((k, v.len(), c)))
        .build()
        .unwrap();
    assert_eq!(cache.max_weight(), 500);
    for k in 0..2_000u64 {
        let len = (k % 97) as usize;
        assert!(cache.insert(k, vec![0; len]));
        assert!(cache.weighted_size() <= 1_000, "{}", cache.weighted_size());
    }
    // Heavier than a shard: refused, and the key's old entry goes.
    assert!(cache.insert(5_000, vec![0; 10]));
    assert!(!cache.insert(5_000, vec![0; 501]));
    assert_eq!(cache.get(&5_000), None);
    assert!(
        removed
            .lock()
            .unwrap()
            .contains(&(5_000, 10, RemovalCause::Replaced))
    );
    assert!(!cache.insert(5_001, vec![0; 100_000]));
    assert!(!cache.contains_key(&5_001));
    // Weight 0 counts as 1: the cache still stays bounded in entries.
    for k in 10_000..12_000u64 {
        cache.insert(k, Vec::new());
    }
    assert!(cache.len() <= 1_000);
    assert!(cache.stats().rejections >= 2);
}

#[test]
fn zero_capacity_is_an_error() {
    assert_eq!(
        TwoTierCache::<u8, u8>::builder()
            .capacity(0)
            .build()
            .unwrap_err(),
        BuildError::ZeroCapacity
    );
    let r = catch_unwind(|| TwoTierCache::<u8, u8>::new(0));
    assert!(r.is_err(), "new(0) panics, as documented");
}

#[test]
fn a_panicking_weigher_changes_nothing() {
    let cache = TwoTierCache::<u64, u64>::builder()
        .capacity(100)
        .weigher(|_, &v| if v == 13 { panic!("unlucky") } else { 1 })
        .build()
        .unwrap();
    for k in 0..50 {
        cache.insert(k, k + 100);
    }
    let len = cache.len();
    let r = catch_unwind(AssertUnwindSafe(|| cache.insert(7, 13)));
    assert!(r.is_err());
    assert_eq!(cache.len(), len);
    assert_eq!(cache.peek(&7), Some(107), "the old value stays");
    // Nothing is held: the same shard takes writes and reads.
    assert!(cache.insert(7, 8));
    assert_eq!(cache.get(&7), Some(8));
}

#[test]
fn a_panicking_listener_loses_nothing_and_wedges_nothing() {
    let heard = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&heard);
    let cache = TwoTierCache::<u64, u64>::builder()
        .capacity(10)
        .shards(1)
        .eviction_listener(move |k, _, _| {
            h.fetch_add(1, SeqCst);
            assert!(k % 3 != 0, "the listener refuses key {k}");
        })
        .build()
        .unwrap();
    let mut panics = 0;
    for k in 0..200u64 {
        match catch_unwind(AssertUnwindSafe(|| cache.insert(k, k))) {
            Ok(kept) => assert!(kept),
            Err(_) => panics += 1,
        }
        assert!(cache.len() <= 10);
    }
    assert!(panics > 0);
    // Every entry that left was heard of (the panics did not cut the
    // deliveries short), and the cache still works, unlocked.
    assert_eq!(heard.load(SeqCst) + cache.len(), 200);
    // A clear whose listener panics still clears.
    let _ = catch_unwind(AssertUnwindSafe(|| cache.clear()));
    assert!(cache.is_empty());
    assert!(cache.insert(1, 1));
    assert_eq!(cache.get(&1), Some(1));
}

#[test]
fn the_listener_runs_outside_the_shard_lock() {
    let slot: Arc<OnceLock<Arc<TwoTierCache<u64, u64>>>> = Arc::default();
    let s = Arc::clone(&slot);
    let cache = Arc::new(
        TwoTierCache::builder()
            .capacity(4)
            .shards(1)
            .eviction_listener(move |k, _, _| {
                // Reading and writing the same shard from the listener
                // would deadlock under its lock.
                let c = s.get().expect("set before any eviction");
                let _ = c.get(&k);
                c.contains_key(&k);
            })
            .build()
            .unwrap(),
    );
    slot.set(Arc::clone(&cache)).ok().unwrap();
    for k in 0..100 {
        cache.insert(k, k);
    }
    assert!(cache.len() <= 4);
}

#[test]
fn peek_leaves_the_counters_and_the_policy_alone() {
    let cache = TwoTierCache::<u64, u64>::new(100);
    cache.insert(1, 10);
    let before = cache.stats();
    assert_eq!(cache.peek(&1), Some(10));
    assert_eq!(cache.peek(&2), None);
    assert_eq!(cache.stats(), before);
}

#[test]
fn iter_yields_each_cached_entry_once() {
    let cache = TwoTierCache::<u64, u64>::builder()
        .capacity(500)
        .shards(4)
        .build()
        .unwrap();
    for k in 0..2_000u64 {
        cache.insert(k % 700, k);
    }
    let mut seen: Vec<(u64, u64)> = cache.iter().collect();
    seen.sort_unstable();
    assert_eq!(seen.len(), cache.len());
    seen.dedup_by_key(|e| e.0);
    assert_eq!(seen.len(), cache.len());
    for (k, v) in seen {
        assert_eq!(cache.peek(&k), Some(v));
    }
}

#[test]
fn get_or_insert_with_ref_makes_an_owned_key_only_to_load() {
    let cache = TwoTierCache::<String, usize>::new(10);
    let loads = AtomicUsize::new(0);
    let load = || {
        loads.fetch_add(1, SeqCst);
        5
    };
    assert_eq!(cache.get_or_insert_with_ref("hello", load), 5);
    assert_eq!(cache.get_or_insert_with_ref("hello", || unreachable!()), 5);
    assert_eq!(loads.load(SeqCst), 1);
    assert_eq!(cache.get("hello"), Some(5));
}

#[test]
fn a_failed_load_reaches_every_waiter_and_caches_nothing() {
    let cache = TwoTierCache::<u64, u64>::new(100);
    let runs = AtomicUsize::new(0);
    let threads = 4;
    let barrier = Barrier::new(threads);
    let errors: Vec<Arc<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    cache
                        .try_get_or_insert_with(9, || {
                            let n = runs.fetch_add(1, SeqCst);
                            // Long enough for the others to find the flight.
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Err(format!("load {n} failed"))
                        })
                        .unwrap_err()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(!cache.contains_key(&9), "nothing cached");
    // Each loader's error went to its caller and its waiters: as many
    // distinct errors as loaders ran.
    let mut distinct: Vec<&Arc<String>> = Vec::new();
    for e in &errors {
        if !distinct.iter().any(|d| Arc::ptr_eq(d, e)) {
            distinct.push(e);
        }
    }
    assert_eq!(distinct.len(), runs.load(SeqCst), "{errors:?}");
    // A later call loads again, and a success is cached.
    assert_eq!(
        cache.try_get_or_insert_with(9, || Ok::<_, String>(3)),
        Ok(3)
    );
    assert_eq!(cache.get(&9), Some(3));
}
