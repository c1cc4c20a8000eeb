//! Panic safety: code that panics under a lock guard, in a `Condvar`
//! condition, in a cache loader, or in a key's `Eq`/`Hash` or a value's
//! `Clone`, and a `Condvar` misused with two mutexes. Locks do not poison:
//! each test checks the panic reaches its caller only, and that the lock or
//! cache is released, keeps its data and stays usable.

use std::hash::Hasher;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Barrier, mpsc};
use std::thread;
use std::time::Duration;

use lockscope::cache::TwoTierCache;
use lockscope::{Condvar, FairMutex, Mutex, ReentrantMutex, RwLock, RwLockUpgradableReadGuard};

/// How long a panicking loader runs before it panics, so that a second
/// caller of the same key queues behind its flight.
const HOLD: Duration = Duration::from_millis(150);

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
