//! Cache edge cases: capacity one, capacities smaller than the shard count
//! or too large to address, builder values at and beyond their limits, keys
//! whose hashes all collide, and loaders that use the cache themselves.
//!
//! Each test's doc comment states what a user gets. Nothing here asserts how
//! fast anything is: only what is returned, and that nothing is lost or
//! wedged.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Barrier, mpsc};
use std::thread;
use std::time::Duration;

use lockscope::cache::{BuildError, TwoTierCache};

/// Every key hashes to the same value.
#[derive(Clone, Default)]
struct Colliding;

struct Constant;

impl Hasher for Constant {
    fn finish(&self) -> u64 {
        42
    }
    fn write(&mut self, _: &[u8]) {}
}

impl BuildHasher for Colliding {
    type Hasher = Constant;
    fn build_hasher(&self) -> Constant {
        Constant
    }
}

/// A capacity of one holds one entry: the last key admitted, with its latest
/// value; `len()` never exceeds 1, whatever the requested shard count (it is
/// lowered to the capacity).
#[test]
fn capacity_one_holds_one_entry() {
    for shards in [None, Some(1), Some(8), Some(usize::MAX)] {
        let mut b = TwoTierCache::<u32, u32>::builder().capacity(1);
        if let Some(n) = shards {
            b = b.shards(n);
        }
        let c = b.build().expect("capacity 1 is valid");
        assert_eq!(c.shard_count(), 1);
        c.insert(1, 10);
        assert_eq!(
            c.get(&1),
            Some(10),
            "the first key goes into an empty cache"
        );
        c.insert(1, 11);
        assert_eq!(c.get(&1), Some(11), "a cached key's value is replaced");
        for k in 2..50 {
            c.insert(k, k * 10);
            assert!(c.len() <= 1);
            if let Some(v) = c.get(&k) {
                assert_eq!(v, k * 10);
            }
        }
        let cached: Vec<u32> = (1..50).filter(|k| c.contains_key(k)).collect();
        assert_eq!(cached.len(), c.len());
        assert!(c.remove(&cached[0]).is_some());
        assert!(c.is_empty());
        assert_eq!(c.get_or_insert_with(99, || 990), 990);
        assert_eq!(c.get(&99), Some(990));
    }
}

/// A capacity smaller than the requested shard count gets one shard per
/// entry of capacity (`shard_count() == capacity`), and `len()` stays within
/// the capacity.
#[test]
fn capacity_smaller_than_shard_count() {
    let c = TwoTierCache::<u32, u32>::builder()
        .capacity(3)
        .shards(16)
        .build()
        .expect("valid");
    assert_eq!(c.shard_count(), 3);
    for k in 0..1000 {
        c.insert(k, k + 1);
        assert!(c.len() <= 3);
        if let Some(v) = c.get(&(k / 2)) {
            assert_eq!(v, k / 2 + 1);
        }
    }
    assert!(!c.is_empty());
}

/// A capacity no shard layout can address (`usize::MAX`, or more than
/// `u32::MAX / 2` per shard) is refused by `build()` with
/// `BuildError::CapacityTooLarge`, before anything is allocated.
#[test]
fn huge_capacity_is_refused() {
    let err = TwoTierCache::<u32, u32>::builder()
        .capacity(usize::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::CapacityTooLarge);
    let err = TwoTierCache::<u32, u32>::builder()
        .capacity(1 << 40)
        .shards(2)
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::CapacityTooLarge);
    assert!(!err.to_string().is_empty());
}

/// Asking for a huge capacity together with as many shards (so that each
/// shard is small) should be refused with an error, not panic.
#[test]
fn huge_capacity_with_as_many_shards_is_refused_not_a_panic() {
    let built = catch_unwind(|| {
        TwoTierCache::<u32, u32>::builder()
            .capacity(usize::MAX)
            .shards(usize::MAX)
            .build()
            .map(|c| c.shard_count())
    });
    assert!(
        matches!(built, Ok(Err(_))),
        "expected a BuildError, got {built:?}"
    );
}

/// Keys whose hashes all collide (a `BuildHasher` returning a constant) land
/// in one shard and one probe run, and everything stays correct: gets return
/// the latest value, removals from the middle of the run keep the others
/// reachable, `len()` stays within the capacity.
#[test]
fn colliding_hashes_stay_correct() {
    let c: TwoTierCache<u32, u32, Colliding> = TwoTierCache::builder()
        .capacity(64)
        .shards(4)
        .hasher(Colliding)
        .build()
        .expect("valid");
    let mut model = HashMap::new();
    // Only one shard receives keys: its share of the capacity is the limit.
    for k in 0..16 {
        c.insert(k, k);
        model.insert(k, k);
    }
    assert_eq!(c.len(), 16);
    for k in 0..16 {
        assert_eq!(c.get(&k), Some(k));
    }
    // Remove every third key: backward-shift deletion inside one probe run.
    for k in (0..16).step_by(3) {
        assert_eq!(c.remove(&k), Some(k));
        model.remove(&k);
    }
    for k in 0..16 {
        assert_eq!(c.get(&k), model.get(&k).copied(), "key {k}");
    }
    // Churn: replacements, new keys past the capacity, removals.
    for round in 0..2000u32 {
        let k = round % 40;
        match round % 5 {
            0 => {
                let expected = model.remove(&k);
                if let Some(v) = c.remove(&k) {
                    assert_eq!(Some(v), expected, "key {k}");
                }
            }
            _ => {
                c.insert(k, round);
                model.insert(k, round);
            }
        }
        assert!(c.len() <= 64);
        if let Some(v) = c.get(&k) {
            assert_eq!(Some(&v), model.get(&k), "key {k}");
        }
    }
    for k in 0..40 {
        if let Some(v) = c.get(&k) {
            assert_eq!(Some(&v), model.get(&k), "key {k}");
        }
    }
}

/// With every key on one hash, a miss on an absent key must not keep the
/// insert that follows, of a cached key with that same hash, from
/// replacing that key's value: whatever a miss remembers for the next
/// insert must tell keys apart by equality, not by hash.
#[test]
fn an_insert_after_a_miss_on_a_colliding_key_still_replaces() {
    let c: TwoTierCache<u32, u32, Colliding> = TwoTierCache::builder()
        .capacity(4)
        .shards(1)
        .hasher(Colliding)
        .build()
        .expect("valid");
    for k in 0..4 {
        c.insert(k, k);
    }
    for round in 0..20 {
        assert_eq!(c.get(&(100 + round)), None);
        let k = round % 4;
        c.insert(k, 1000 + round);
        assert_eq!(c.get(&k), Some(1000 + round), "key {k}, round {round}");
    }
}

/// Colliding hashes under concurrency: threads loading overlapping keys that
/// all hash alike through `get_or_insert_with` each get the one value loaded
/// for their key, and each key's loader runs exactly once (single flight
/// tells keys apart by equality, not by hash).
#[test]
fn colliding_hashes_single_flight_per_key() {
    const KEYS: usize = 16;
    let c: TwoTierCache<usize, usize, Colliding> = TwoTierCache::builder()
        .capacity(64)
        .shards(1)
        .hasher(Colliding)
        .build()
        .expect("valid");
    let loads: Vec<AtomicUsize> = (0..KEYS).map(|_| AtomicUsize::new(0)).collect();
    let start = Barrier::new(4);
    thread::scope(|s| {
        for t in 0..4 {
            let (c, loads, start) = (&c, &loads, &start);
            s.spawn(move || {
                start.wait();
                for i in 0..KEYS * 4 {
                    let k = (i + t * 3) % KEYS;
                    let v = c.get_or_insert_with(k, || {
                        loads[k].fetch_add(1, SeqCst);
                        thread::sleep(Duration::from_millis(1));
                        k * 100
                    });
                    assert_eq!(v, k * 100, "key {k}");
                }
            });
        }
    });
    for (k, n) in loads.iter().enumerate() {
        assert_eq!(n.load(SeqCst), 1, "loader for key {k} ran more than once");
    }
    assert_eq!(c.len(), KEYS);
}

/// A loader may use the cache for other keys (insert, get, or load another
/// key, even in the same shard): it runs with no shard lock held, and both
/// values end up cached.
#[test]
fn loader_using_the_cache_for_other_keys_works() {
    let c = TwoTierCache::<u32, u32>::builder()
        .capacity(100)
        .shards(1)
        .build()
        .expect("valid");
    let v = c.get_or_insert_with(1, || {
        c.insert(2, 20);
        assert_eq!(c.get(&2), Some(20));
        c.get_or_insert_with(3, || 30) + 1
    });
    assert_eq!(v, 31);
    assert_eq!(c.get(&1), Some(31));
    assert_eq!(c.get(&3), Some(30));
}

/// A loader that asks the cache for its own key (`get_or_insert_with(k, ..)`
/// from inside the loader for `k`) should fail loudly (a panic naming the
/// recursion) or load once; it must not hang.
#[test]
fn loader_recursing_on_its_own_key_does_not_hang() {
    let (tx, rx) = mpsc::channel();
    // Detached: if it hangs, the thread stays blocked until the process exits.
    thread::spawn(move || {
        let c = TwoTierCache::<u32, u32>::builder()
            .capacity(10)
            .build()
            .expect("valid");
        let r = catch_unwind(AssertUnwindSafe(|| {
            c.get_or_insert_with(1, || c.get_or_insert_with(1, || 10) + 1)
        }));
        tx.send(r.is_ok()).unwrap();
    });
    let outcome = rx.recv_timeout(Duration::from_secs(10));
    assert!(
        outcome.is_ok(),
        "get_or_insert_with recursing on its key hung"
    );
}

/// Hot fractions outside (0, 1) (0, 1, NaN, infinity) are refused with
/// `BuildError::HotFractionOutOfRange`; the extremes inside it (the smallest
/// positive float, the largest below 1) build a working cache even at
/// capacity 1. A zero sample interval or shard count is refused too.
#[test]
fn builder_edge_values() {
    for f in [0.0, 1.0, -0.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = TwoTierCache::<u32, u32>::builder()
            .capacity(10)
            .hot_fraction(f)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, BuildError::HotFractionOutOfRange(_)),
            "{f}: {err:?}"
        );
    }
    for f in [f64::MIN_POSITIVE, 1.0 - f64::EPSILON] {
        for capacity in [1, 2, 100] {
            let c = TwoTierCache::<u32, u32>::builder()
                .capacity(capacity)
                .hot_fraction(f)
                .build()
                .expect("inside (0, 1)");
            for k in 0..200 {
                c.insert(k, k);
                if let Some(v) = c.get(&(k / 3)) {
                    assert_eq!(v, k / 3);
                }
                assert!(c.len() <= capacity);
            }
        }
    }
    let b = || TwoTierCache::<u32, u32>::builder().capacity(10);
    assert_eq!(
        b().sample_interval(0).build().unwrap_err(),
        BuildError::ZeroSampleInterval
    );
    assert_eq!(
        b().latency_interval(0).build().unwrap_err(),
        BuildError::ZeroLatencyInterval
    );
    assert_eq!(b().shards(0).build().unwrap_err(), BuildError::ZeroShards);
    assert_eq!(
        TwoTierCache::<u32, u32>::builder().build().unwrap_err(),
        BuildError::ZeroCapacity
    );
    // The largest interval that is a power of two works.
    let c = b()
        .sample_interval(1 << 31)
        .latency_interval(1 << 31)
        .build()
        .expect("valid");
    c.insert(1, 1);
    assert_eq!(c.get(&1), Some(1));
}

/// A sampling interval above 2^31 cannot be rounded up to a power of two in
/// a `u32`; `build()` should clamp it or refuse it, not panic.
#[test]
fn huge_sample_interval_does_not_panic() {
    for n in [u32::MAX, (1 << 31) + 1] {
        let built = catch_unwind(|| {
            let c = TwoTierCache::<u32, u32>::builder()
                .capacity(10)
                .sample_interval(n)
                .latency_interval(n)
                .build()
                .ok()?;
            c.insert(1, 1);
            c.get(&1)
        });
        assert!(built.is_ok(), "sample_interval({n}) panicked");
    }
}
