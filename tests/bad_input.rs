//! Bad input across the public API: zero and huge timeouts, `Duration::MAX`,
//! instants in the past, cache capacity edge cases, keys whose hashes all
//! collide, panicking loaders and panicking code under guards.
//!
//! Each test's doc comment states what a user gets. Nothing here asserts how
//! fast anything is: only what is returned, and that nothing is lost, left
//! locked or wedged.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use lockscope::cache::{BuildError, TwoTierCache};
use lockscope::{
    Condvar, FairMutex, Mutex, RecursiveRwLock, ReentrantMutex, RwLock, RwLockUpgradableReadGuard,
};

/// How long a holder keeps a lock before releasing it, in the tests that
/// check a wait without deadline does not give up early.
const HOLD: Duration = Duration::from_millis(150);

/// Timeouts that no deadline can represent (`Instant + timeout` overflows).
const UNREPRESENTABLE: [Duration; 3] = [
    Duration::MAX,
    Duration::from_secs(u64::MAX),
    Duration::new(u64::MAX / 2, 999_999_999),
];

/// About a century: representable as a deadline, never reached in a test.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// An instant well in the past (or now, on a platform whose clock starts
/// too recently to go back an hour).
fn past() -> Instant {
    let now = Instant::now();
    now.checked_sub(Duration::from_secs(3600)).unwrap_or(now)
}

/// Runs `take` on another thread, which holds what it returns for [`HOLD`],
/// sets the flag and then releases; meanwhile runs `wait` here with the flag.
/// `wait` starts only once the lock is held.
fn while_held<G>(take: impl FnOnce() -> G + Send, wait: impl FnOnce(&AtomicBool)) {
    let released = AtomicBool::new(false);
    let (held_tx, held_rx) = mpsc::channel();
    thread::scope(|s| {
        s.spawn(|| {
            let guard = take();
            held_tx.send(()).unwrap();
            thread::sleep(HOLD);
            released.store(true, SeqCst);
            drop(guard);
        });
        held_rx.recv().unwrap();
        wait(&released);
    });
}

// ------------------------------------------------------------- timeouts ----

/// A zero timeout is one attempt: a free lock is acquired (`Some`), a held one
/// is not (`None`), and the failed attempt leaves the lock usable.
#[test]
fn zero_timeouts_are_a_single_attempt() {
    let m = Mutex::new(1);
    assert_eq!(m.try_lock_for(Duration::ZERO).as_deref(), Some(&1));
    let rw = RwLock::new(2);
    assert_eq!(rw.try_read_for(Duration::ZERO).as_deref(), Some(&2));
    assert_eq!(rw.try_write_for(Duration::ZERO).as_deref(), Some(&2));
    assert!(rw.try_upgradable_read_for(Duration::ZERO).is_some());

    let g = m.lock();
    thread::scope(|s| {
        s.spawn(|| assert!(m.try_lock_for(Duration::ZERO).is_none()));
    });
    drop(g);
    assert!(m.try_lock().is_some());

    let w = rw.write();
    assert!(rw.try_read_for(Duration::ZERO).is_none());
    assert!(rw.try_write_for(Duration::ZERO).is_none());
    assert!(rw.try_upgradable_read_for(Duration::ZERO).is_none());
    drop(w);

    let u = rw.upgradable_read();
    assert!(rw.try_write_for(Duration::ZERO).is_none());
    assert!(rw.try_upgradable_read_for(Duration::ZERO).is_none());
    assert!(rw.try_read_for(Duration::ZERO).is_some());
    let w = RwLockUpgradableReadGuard::try_upgrade_for(u, Duration::ZERO)
        .expect("the only reader upgrades at once");
    drop(w);
    assert!(!rw.is_locked());
}

/// A writer whose zero timeout expires while readers hold the lock (the
/// timed-writer path of the incident) returns `None` and gives back exactly
/// the claim it made: readers still get in, and once they leave a writer does.
#[test]
fn zero_timeout_writer_against_readers_gives_the_claim_back() {
    let rw = RwLock::new(0);
    let r1 = rw.read();
    let r2 = rw.read();
    for _ in 0..100 {
        assert!(rw.try_write_for(Duration::ZERO).is_none());
        assert!(rw.try_write_until(past()).is_none());
    }
    let word = unsafe { rw.raw() }.word();
    assert!(word.is_valid(), "{word}");
    assert_eq!((word.readers, word.writer, word.parked), (2, false, false));
    assert!(
        rw.try_read().is_some(),
        "a reader was shut out by a timed-out writer"
    );
    drop((r1, r2));
    assert!(rw.try_write().is_some());
    assert_eq!(unsafe { rw.raw() }.word().raw, 0);
}

/// Timeouts too large for a deadline (`Duration::MAX` and friends) and a
/// century-long one neither panic nor overflow: on a free lock they acquire
/// at once.
#[test]
fn huge_timeouts_on_free_locks_acquire() {
    let m = Mutex::new(());
    let fm = FairMutex::new(());
    let rm = ReentrantMutex::new(());
    let rw = RwLock::new(());
    let rrw = RecursiveRwLock::new(());
    for t in UNREPRESENTABLE.into_iter().chain([CENTURY]) {
        assert!(m.try_lock_for(t).is_some(), "{t:?}");
        assert!(fm.try_lock_for(t).is_some(), "{t:?}");
        {
            let outer = rm.try_lock_for(t).expect("free");
            // Reentrant: the owner gets it again at once, whatever the timeout.
            assert!(rm.try_lock_for(t).is_some(), "{t:?}");
            drop(outer);
        }
        {
            let r = rw.try_read_for(t).expect("free");
            assert!(rw.try_read_for(t).is_some(), "{t:?}");
            drop(r);
        }
        assert!(rw.try_write_for(t).is_some(), "{t:?}");
        let u = rw.try_upgradable_read_for(t).expect("free");
        assert!(
            RwLockUpgradableReadGuard::try_upgrade_for(u, t).is_ok(),
            "{t:?}"
        );
        assert!(rrw.try_read_for(t).is_some(), "{t:?}");
        assert!(rrw.try_write_for(t).is_some(), "{t:?}");
    }
}

/// `Duration::MAX` (and any timeout no deadline can represent) means "wait
/// without a deadline", as in parking_lot: with the lock held by another
/// thread, `try_lock_for` does not give up early; it returns `Some` once the
/// holder releases.
#[test]
fn duration_max_on_a_held_mutex_waits_for_the_release() {
    let m = Mutex::new(());
    for t in UNREPRESENTABLE {
        while_held(
            || m.lock(),
            |released| {
                assert!(m.try_lock_for(t).is_some(), "{t:?} gave up");
                assert!(released.load(SeqCst), "acquired while held");
            },
        );
    }
    let fm = FairMutex::new(());
    while_held(
        || fm.lock(),
        |released| {
            assert!(fm.try_lock_for(Duration::MAX).is_some());
            assert!(released.load(SeqCst));
        },
    );
    let rm = ReentrantMutex::new(());
    while_held(
        || rm.lock(),
        |released| {
            assert!(rm.try_lock_for(Duration::MAX).is_some());
            assert!(released.load(SeqCst));
        },
    );
}

/// As for `Duration::MAX`: a timeout that is representable as a deadline
/// but enormous (a century; 2^62 seconds) on a held lock waits for the
/// release and returns `Some`; converting the far deadline for the OS sleep
/// does not overflow into an early timeout.
#[test]
fn enormous_representable_timeouts_on_held_locks_wait_for_the_release() {
    let enormous = Duration::from_secs(u64::MAX >> 2);
    let m = Mutex::new(());
    let rw = RwLock::new(());
    let cv = Condvar::new();
    for t in [CENTURY, enormous] {
        while_held(
            || m.lock(),
            |released| {
                assert!(m.try_lock_for(t).is_some(), "{t:?} gave up");
                assert!(released.load(SeqCst));
            },
        );
        while_held(
            || rw.read(),
            |released| {
                assert!(rw.try_write_for(t).is_some(), "{t:?} gave up");
                assert!(released.load(SeqCst));
            },
        );
        let ready = Mutex::new(false);
        thread::scope(|s| {
            let mut g = ready.lock();
            s.spawn(|| {
                thread::sleep(HOLD);
                *ready.lock() = true;
                cv.notify_one();
            });
            while !*g {
                assert!(!cv.wait_for(&mut g, t).timed_out(), "{t:?} timed out");
            }
        });
    }
}

/// `try_read_for(Duration::MAX)` behind a writer, `try_write_for(Duration::MAX)`
/// behind a reader (a writer that claims the lock and waits for the reader
/// to drain, with no deadline), `try_upgradable_read_for` behind a writer and
/// `try_upgrade_for(Duration::MAX)` behind another reader: each waits for the
/// holder and returns `Some`/`Ok`, never early.
#[test]
fn duration_max_on_a_held_rwlock_waits_for_the_release() {
    let rw = RwLock::new(0);
    while_held(
        || rw.write(),
        |released| {
            assert!(rw.try_read_for(Duration::MAX).is_some());
            assert!(released.load(SeqCst));
        },
    );
    while_held(
        || rw.read(),
        |released| {
            let mut w = rw.try_write_for(Duration::MAX).expect("gave up");
            assert!(released.load(SeqCst), "write-locked beside a reader");
            *w += 1;
        },
    );
    while_held(
        || rw.write(),
        |released| {
            assert!(rw.try_upgradable_read_for(Duration::MAX).is_some());
            assert!(released.load(SeqCst));
        },
    );
    while_held(
        || rw.read(),
        |released| {
            let u = rw.upgradable_read();
            let w = RwLockUpgradableReadGuard::try_upgrade_for(u, Duration::MAX)
                .expect("upgrade gave up");
            assert!(released.load(SeqCst), "upgraded beside a reader");
            drop(w);
        },
    );
    let rrw = RecursiveRwLock::new(());
    while_held(
        || rrw.read(),
        |released| {
            assert!(rrw.try_write_for(Duration::MAX).is_some());
            assert!(released.load(SeqCst));
        },
    );
    assert_eq!(*rw.read(), 1);
    assert!(!rw.is_locked());
}

/// An instant in the past makes every `*_until` a single immediate attempt:
/// `Some` when the lock is free, `None` when it is held (and the lock stays
/// usable).
#[test]
fn instants_in_the_past_are_a_single_attempt() {
    let m = Mutex::new(());
    assert!(m.try_lock_until(past()).is_some());
    let g = m.lock();
    thread::scope(|s| {
        s.spawn(|| assert!(m.try_lock_until(past()).is_none()));
    });
    drop(g);

    let fm = FairMutex::new(());
    assert!(fm.try_lock_until(past()).is_some());
    let rm = ReentrantMutex::new(());
    let outer = rm.try_lock_until(past()).expect("free");
    assert!(rm.try_lock_until(past()).is_some(), "reentrant");
    thread::scope(|s| {
        s.spawn(|| assert!(rm.try_lock_until(past()).is_none()));
    });
    drop(outer);

    let rw = RwLock::new(());
    assert!(rw.try_read_until(past()).is_some());
    assert!(rw.try_write_until(past()).is_some());
    assert!(rw.try_upgradable_read_until(past()).is_some());
    let w = rw.write();
    assert!(rw.try_read_until(past()).is_none());
    assert!(rw.try_write_until(past()).is_none());
    assert!(rw.try_upgradable_read_until(past()).is_none());
    drop(w);
    let r = rw.read();
    assert!(rw.try_write_until(past()).is_none());
    let u = rw
        .try_upgradable_read_until(past())
        .expect("free of writers");
    let u =
        RwLockUpgradableReadGuard::try_upgrade_until(u, past()).expect_err("another reader is in");
    drop(r);
    assert!(RwLockUpgradableReadGuard::try_upgrade_until(u, past()).is_ok());
    assert!(!rw.is_locked());
    assert!(unsafe { rw.raw() }.word().is_valid());
}

/// `Condvar::wait_for(Duration::ZERO)` and `wait_until(<past>)` time out at
/// once (`timed_out()` is true) with the mutex locked again and the data as
/// it was.
#[test]
fn condvar_zero_and_past_waits_time_out_with_the_lock_held() {
    let m = Mutex::new(7);
    let cv = Condvar::new();
    let mut g = m.lock();
    assert!(cv.wait_for(&mut g, Duration::ZERO).timed_out());
    assert!(m.is_locked());
    assert_eq!(*g, 7);
    assert!(cv.wait_until(&mut g, past()).timed_out());
    assert!(
        cv.wait_while_for(&mut g, |v| *v == 7, Duration::ZERO)
            .timed_out()
    );
    assert!(cv.wait_while_until(&mut g, |v| *v == 7, past()).timed_out());
    *g += 1;
    drop(g);
    assert!(!m.is_locked());
    assert_eq!(*m.lock(), 8);
    assert!(!cv.notify_one(), "a timed-out waiter left nothing queued");
}

/// `Condvar::wait_for` with `Duration::MAX` (or any timeout no deadline can
/// represent) waits without a deadline: it returns only when notified, with
/// `timed_out()` false, never early.
#[test]
fn condvar_duration_max_waits_for_the_notification() {
    for t in UNREPRESENTABLE {
        let m = Mutex::new(false);
        let cv = Condvar::new();
        thread::scope(|s| {
            let mut g = m.lock();
            s.spawn(|| {
                thread::sleep(HOLD);
                *m.lock() = true;
                cv.notify_one();
            });
            while !*g {
                assert!(!cv.wait_for(&mut g, t).timed_out(), "{t:?} timed out");
            }
        });
        // wait_while_for takes another path for unrepresentable deadlines.
        let m = Mutex::new(false);
        thread::scope(|s| {
            let mut g = m.lock();
            s.spawn(|| {
                thread::sleep(HOLD);
                *m.lock() = true;
                cv.notify_all();
            });
            assert!(!cv.wait_while_for(&mut g, |ready| !*ready, t).timed_out());
            assert!(*g);
        });
    }
}

// ---------------------------------------------------------------- cache ----

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

/// A miss leaves the thread a ticket to reject the insert that follows
/// without the write lock. With every key on one hash, a miss on an absent
/// key must not let an insert of a cached key with that same hash be
/// "rejected": the replacement has to land.
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

/// A loader that panics in `get_or_insert_with`: the panic reaches its
/// caller only, nothing is cached for the key, a caller waiting on the same
/// key wakes and runs its own loader (it is not wedged), and the cache keeps
/// working.
#[test]
fn panicking_loader_leaves_the_cache_usable() {
    let c = TwoTierCache::<u32, String>::builder()
        .capacity(100)
        .build()
        .expect("valid");

    let r = catch_unwind(AssertUnwindSafe(|| {
        c.get_or_insert_with(1, || panic!("loader failed"))
    }));
    assert!(r.is_err());
    assert_eq!(c.get(&1), None);
    assert_eq!(c.get_or_insert_with(1, || "one".into()), "one");
    assert_eq!(c.get(&1).as_deref(), Some("one"));

    // A waiter behind a loader that panics.
    let in_loader = Barrier::new(2);
    let second_loads = AtomicUsize::new(0);
    thread::scope(|s| {
        let leader = s.spawn(|| {
            catch_unwind(AssertUnwindSafe(|| {
                c.get_or_insert_with(2, || {
                    in_loader.wait();
                    // Give the waiter time to queue behind this flight.
                    thread::sleep(HOLD);
                    panic!("loader failed")
                })
            }))
        });
        in_loader.wait();
        let waiter = s.spawn(|| {
            c.get_or_insert_with(2, || {
                second_loads.fetch_add(1, SeqCst);
                "two".to_string()
            })
        });
        assert!(
            leader.join().unwrap().is_err(),
            "the leader's panic reaches it"
        );
        assert_eq!(waiter.join().unwrap(), "two");
    });
    assert_eq!(second_loads.load(SeqCst), 1);
    assert_eq!(c.get(&2).as_deref(), Some("two"));
    c.insert(3, "three".into());
    assert_eq!(c.get(&3).as_deref(), Some("three"));
}

// --------------------------------------------------- panics under guards ----

/// Code that panics while holding a `Mutex` (or `FairMutex`, or a mapped
/// guard) unwinds through the guard: the lock is released, not poisoned, the
/// next `lock()` succeeds and sees the writes made before the panic.
#[test]
fn panic_under_mutex_guard_releases_without_poisoning() {
    let m = Mutex::new(0);
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut g = m.lock();
        *g = 1;
        panic!("under the guard");
    }));
    assert!(r.is_err());
    assert!(!m.is_locked());
    assert_eq!(*m.try_lock().expect("released"), 1);

    let m = Mutex::new((0, 0));
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let mut g = lockscope::MutexGuard::map(m.lock(), |p| &mut p.1);
        *g = 2;
        panic!("under a mapped guard");
    }));
    assert_eq!(*m.try_lock().expect("released"), (0, 2));

    let fm = FairMutex::new(0);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let mut g = fm.lock();
        *g = 3;
        panic!("under a fair guard");
    }));
    assert_eq!(*fm.try_lock().expect("released"), 3);

    // A thread that dies holding the lock releases it too.
    let m = Mutex::new(0);
    thread::scope(|s| {
        let t = s.spawn(|| {
            let mut g = m.lock();
            *g = 4;
            panic!("thread dies under the guard");
        });
        assert!(t.join().is_err());
    });
    assert_eq!(*m.try_lock().expect("released"), 4);
}

/// Code that panics under an `RwLock` read, write or upgradable guard, or
/// under a nested `ReentrantMutex` guard, releases every level of the lock:
/// no poisoning, the next acquisition of any kind succeeds.
#[test]
fn panic_under_rwlock_and_reentrant_guards_releases() {
    let rw = RwLock::new(0);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        *rw.write() = 1;
        let _g = rw.write();
        panic!("under a write guard");
    }));
    assert!(!rw.is_locked());
    assert_eq!(*rw.try_write().expect("released"), 1);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let _a = rw.read();
        let _b = rw.read();
        panic!("under two read guards");
    }));
    assert!(!rw.is_locked());
    assert!(rw.try_write().is_some());
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let u = rw.upgradable_read();
        let mut w = RwLockUpgradableReadGuard::upgrade(u);
        *w = 2;
        panic!("under an upgraded guard");
    }));
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let _u = rw.upgradable_read();
        panic!("under an upgradable guard");
    }));
    assert!(!rw.is_locked());
    assert_eq!(*rw.try_write().expect("released"), 2);
    assert_eq!(unsafe { rw.raw() }.word().raw, 0);

    let rm = ReentrantMutex::new(std::cell::Cell::new(0));
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let a = rm.lock();
        let b = rm.lock();
        b.set(5);
        let _c = rm.lock();
        drop(a);
        panic!("under nested reentrant guards");
    }));
    assert!(!rm.is_locked());
    thread::scope(|s| {
        s.spawn(|| assert_eq!(rm.try_lock().expect("released on another thread").get(), 5));
    });
}

/// A condition in `Condvar::wait_while` that panics unwinds with the mutex
/// held by the guard, which releases it: the mutex and condvar stay usable.
#[test]
fn panic_in_wait_while_condition_releases_the_mutex() {
    let m = Mutex::new(0);
    let cv = Condvar::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut g = m.lock();
        cv.wait_while(&mut g, |_| panic!("condition failed"));
    }));
    assert!(r.is_err());
    assert!(!m.is_locked());
    let mut g = m.lock();
    assert!(cv.wait_for(&mut g, Duration::ZERO).timed_out());
}

/// Sanity for the helper: `while_held` really holds until it sets the flag.
#[test]
fn while_held_holds() {
    let m = Mutex::new(());
    while_held(
        || m.lock(),
        |released| {
            assert!(m.try_lock().is_none() || released.load(SeqCst));
            let _g = m.lock();
            assert!(released.load(SeqCst));
        },
    );
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

/// A key whose `Eq` or `Hash` panics (a user bug) propagates the panic to
/// the caller of `get`/`insert`/`remove`/`contains_key`; the shard lock is
/// released on the way out and the cache keeps working for every key.
#[test]
fn panicking_key_eq_and_hash_leave_the_cache_usable() {
    use std::hash::Hash;

    static EQ_PANICS: AtomicBool = AtomicBool::new(false);
    static HASH_PANICS: AtomicBool = AtomicBool::new(false);

    #[derive(Clone, Debug)]
    struct Touchy(u32);
    impl PartialEq for Touchy {
        fn eq(&self, other: &Self) -> bool {
            assert!(!EQ_PANICS.load(SeqCst), "eq failed");
            self.0 == other.0
        }
    }
    impl Eq for Touchy {}
    impl Hash for Touchy {
        fn hash<H: Hasher>(&self, state: &mut H) {
            assert!(!HASH_PANICS.load(SeqCst), "hash failed");
            // Few distinct hashes, so lookups compare keys.
            (self.0 % 4).hash(state);
        }
    }

    // One shard with room to spare: every insert below is admitted.
    let c = TwoTierCache::<Touchy, u32>::builder()
        .capacity(64)
        .shards(1)
        .build()
        .expect("valid");
    for k in 0..16 {
        c.insert(Touchy(k), k);
    }
    for flag in [&EQ_PANICS, &HASH_PANICS] {
        flag.store(true, SeqCst);
        assert!(catch_unwind(AssertUnwindSafe(|| c.get(&Touchy(1)))).is_err());
        assert!(catch_unwind(AssertUnwindSafe(|| c.insert(Touchy(2), 99))).is_err());
        assert!(catch_unwind(AssertUnwindSafe(|| c.remove(&Touchy(3)))).is_err());
        assert!(catch_unwind(AssertUnwindSafe(|| c.contains_key(&Touchy(4)))).is_err());
        assert!(catch_unwind(AssertUnwindSafe(|| c.get_or_insert_with(Touchy(40), || 0))).is_err());
        flag.store(false, SeqCst);
    }
    for k in 0..16 {
        assert_eq!(c.get(&Touchy(k)), Some(k), "key {k} lost or changed");
    }
    c.insert(Touchy(100), 100);
    assert_eq!(c.remove(&Touchy(100)), Some(100));
    assert_eq!(c.get_or_insert_with(Touchy(40), || 400), 400);
    assert_eq!(c.len(), 17);
}

/// A value whose `Clone` panics makes `get` (which returns a copy) panic;
/// the shard's read lock is released and the entry stays cached.
#[test]
fn panicking_value_clone_leaves_the_cache_usable() {
    static CLONE_PANICS: AtomicBool = AtomicBool::new(false);

    #[derive(Debug, PartialEq)]
    struct Fragile(u32);
    impl Clone for Fragile {
        fn clone(&self) -> Self {
            assert!(!CLONE_PANICS.load(SeqCst), "clone failed");
            Fragile(self.0)
        }
    }

    let c = TwoTierCache::<u32, Fragile>::builder()
        .capacity(8)
        .shards(1)
        .build()
        .expect("valid");
    c.insert(1, Fragile(10));
    CLONE_PANICS.store(true, SeqCst);
    assert!(catch_unwind(AssertUnwindSafe(|| c.get(&1))).is_err());
    CLONE_PANICS.store(false, SeqCst);
    // The write lock is free again: an insert does not wedge.
    c.insert(2, Fragile(20));
    assert_eq!(c.get(&1), Some(Fragile(10)));
    assert_eq!(c.get(&2), Some(Fragile(20)));
}

/// Waiting on one `Condvar` with two different mutexes at once panics in the
/// second waiter ("a Condvar was used with two different mutexes at once"),
/// whose mutex is released as its guard unwinds; the first waiter is
/// unaffected and is woken by the next notification.
#[test]
fn condvar_with_two_mutexes_panics_in_the_second_waiter() {
    let m1 = Mutex::new(false);
    let m2 = Mutex::new(());
    let cv = Condvar::new();
    let (parked_tx, parked_rx) = mpsc::channel();
    thread::scope(|s| {
        let first = s.spawn(|| {
            let mut g = m1.lock();
            parked_tx.send(()).unwrap();
            while !*g {
                assert!(!cv.wait_for(&mut g, Duration::MAX).timed_out());
            }
        });
        parked_rx.recv().unwrap();
        // m1 is released only once the first waiter is queued on cv.
        drop(m1.lock());
        let r = catch_unwind(AssertUnwindSafe(|| {
            let mut g = m2.lock();
            cv.wait_for(&mut g, Duration::from_secs(10));
        }));
        let msg = r.expect_err("second mutex accepted");
        let msg = msg
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| msg.downcast_ref::<String>().map(String::as_str))
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains("two different mutexes"), "{msg}");
        assert!(!m2.is_locked());
        *m1.lock() = true;
        cv.notify_all();
        first.join().unwrap();
    });
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
