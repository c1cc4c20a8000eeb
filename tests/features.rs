//! Cargo features, each gated: arc_lock (Arc guards), send_guard (guards are
//! Send), serde (locks serialize their data). Run with
//! `cargo test --features arc_lock,send_guard,serde` (or `--all-features`).

#[allow(unused_imports)]
use std::sync::Arc;
#[allow(unused_imports)]
use std::thread;

#[cfg(feature = "arc_lock")]
mod arc_lock {
    use super::*;
    use lockscope::{
        ArcMutexGuard, ArcReentrantMutexGuard, ArcRwLockReadGuard, ArcRwLockUpgradableReadGuard,
        ArcRwLockWriteGuard, Mutex, RawMutex, RawRwLock, ReentrantMutex, RwLock,
    };
    use std::time::Duration;

    #[test]
    fn arc_mutex_guard_outlives_the_borrow() {
        let m = Arc::new(Mutex::new(1));
        let mut g: ArcMutexGuard<RawMutex, i32> = m.lock_arc();
        *g += 1;
        assert!(Arc::ptr_eq(ArcMutexGuard::mutex(&g), &m));
        assert!(m.try_lock_arc().is_none());
        assert!(m.try_lock_arc_for(Duration::from_millis(1)).is_none());
        drop(g);
        let g = m.try_lock_arc().unwrap();
        let back = ArcMutexGuard::into_arc(g);
        assert!(!back.is_locked());
        assert_eq!(*m.lock(), 2);
        assert_eq!(unsafe { m.raw() }.word().raw, 0);
    }

    #[test]
    fn arc_rwlock_guards() {
        let l = Arc::new(RwLock::new(0));
        let r1: ArcRwLockReadGuard<RawRwLock, i32> = l.read_arc();
        let r2 = l.try_read_arc().unwrap();
        assert_eq!(unsafe { l.raw() }.word().readers, 2);
        assert!(l.try_write_arc().is_none());
        drop((r1, r2));
        let mut w: ArcRwLockWriteGuard<RawRwLock, i32> = l.write_arc();
        *w = 3;
        let r = ArcRwLockWriteGuard::downgrade(w);
        assert_eq!(*r, 3);
        drop(r);
        let u: ArcRwLockUpgradableReadGuard<RawRwLock, i32> = l.upgradable_read_arc();
        let mut w = ArcRwLockUpgradableReadGuard::upgrade(u);
        *w += 1;
        let u = ArcRwLockWriteGuard::downgrade_to_upgradable(w);
        drop(u);
        assert!(l.try_write_arc_for(Duration::ZERO).is_some());
        assert_eq!(*l.read(), 4);
        assert_eq!(unsafe { l.raw() }.word().raw, 0);
    }

    #[test]
    fn arc_reentrant_guard() {
        let m = Arc::new(ReentrantMutex::new(5));
        let a: ArcReentrantMutexGuard<RawMutex, lockscope::RawThreadId, i32> = m.lock_arc();
        let b = m.try_lock_arc().unwrap();
        assert_eq!(*a + *b, 10);
        drop((a, b));
        assert!(!m.is_locked());
    }

    #[test]
    fn arc_guard_moves_into_a_spawned_closure_and_back() {
        // An Arc guard is 'static, so it can be held by a struct, returned,
        // and (with send_guard) sent to another thread.
        let m = Arc::new(Mutex::new(Vec::new()));
        let g = m.lock_arc();
        fn push(mut g: ArcMutexGuard<RawMutex, Vec<i32>>) -> ArcMutexGuard<RawMutex, Vec<i32>> {
            g.push(1);
            g
        }
        let g = push(g);
        assert!(m.is_locked());
        drop(g);
        assert_eq!(*m.lock(), [1]);
    }

    #[cfg(feature = "send_guard")]
    #[test]
    fn arc_guard_sent_to_another_thread_and_released_there() {
        let m = Arc::new(Mutex::new(0));
        let g = m.lock_arc();
        let h = thread::spawn(move || {
            let mut g = g;
            *g += 1;
        });
        h.join().unwrap();
        assert!(!m.is_locked());
        assert_eq!(*m.lock(), 1);
        let l = Arc::new(RwLock::new(0));
        let w = l.write_arc();
        thread::spawn(move || drop(w)).join().unwrap();
        assert_eq!(unsafe { l.raw() }.word().raw, 0);
    }
}

#[cfg(feature = "send_guard")]
mod send_guard {
    use super::*;
    use lockscope::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn guards_are_send() {
        assert_send::<MutexGuard<'static, ()>>();
        assert_send::<MappedMutexGuard<'static, ()>>();
        assert_send::<FairMutexGuard<'static, ()>>();
        assert_send::<MappedFairMutexGuard<'static, ()>>();
        assert_send::<RwLockReadGuard<'static, ()>>();
        assert_send::<RwLockWriteGuard<'static, ()>>();
        assert_send::<RwLockUpgradableReadGuard<'static, ()>>();
        assert_send::<MappedRwLockReadGuard<'static, ()>>();
        assert_send::<MappedRwLockWriteGuard<'static, ()>>();
        assert_send::<RecursiveRwLockReadGuard<'static, ()>>();
        assert_send::<RecursiveRwLockWriteGuard<'static, ()>>();
        assert_send::<RecursiveRwLockUpgradableReadGuard<'static, ()>>();
        assert_send::<MappedRecursiveRwLockReadGuard<'static, ()>>();
        assert_send::<MappedRecursiveRwLockWriteGuard<'static, ()>>();
    }

    #[test]
    fn guard_released_on_another_thread() {
        let m = Mutex::new(0);
        let l = RwLock::new(0);
        let mut g = m.lock();
        *g = 1;
        let r = l.read();
        thread::scope(|s| {
            s.spawn(move || {
                drop(g);
                drop(r);
            });
        });
        assert!(!m.is_locked());
        assert!(!l.is_locked());
        assert_eq!(unsafe { m.raw() }.word().raw, 0);
        assert_eq!(unsafe { l.raw() }.word().raw, 0);
        // The reader's own record no longer lists the hold.
        #[cfg(feature = "diagnostics")]
        {
            use lockscope::diag::Inspect;
            let seen = l.snapshot().expect("the lock has been used");
            assert!(seen.holders.is_empty(), "{:?}", seen.holders);
        }
        // And a waiter parked on the first thread is woken by that release.
        let m = Arc::new(Mutex::new(0));
        let g = m.lock();
        let m2 = Arc::clone(&m);
        let waiter = thread::spawn(move || *m2.lock() += 1);
        thread::sleep(std::time::Duration::from_millis(30));
        thread::scope(|s| {
            s.spawn(move || drop(g));
        });
        waiter.join().unwrap();
        assert_eq!(*m.lock(), 1);
    }
}

#[cfg(feature = "serde")]
mod serde_support {
    use lockscope::{FairMutex, Mutex, ReentrantMutex, RwLock};
    use std::collections::BTreeMap;

    #[test]
    fn mutex_round_trip() {
        let m = Mutex::new(BTreeMap::from([
            ("a".to_string(), 1u32),
            ("b".to_string(), 2),
        ]));
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"a":1,"b":2}"#);
        let back: Mutex<BTreeMap<String, u32>> = serde_json::from_str(&json).unwrap();
        assert_eq!(*back.lock(), *m.lock());
        assert!(!m.is_locked(), "serializing must release the lock");
    }

    #[test]
    fn rwlock_and_others_round_trip() {
        let l = RwLock::new(vec![1, 2, 3]);
        let r = l.read(); // serializing takes a read lock: works alongside a reader
        let json = serde_json::to_string(&l).unwrap();
        drop(r);
        assert_eq!(json, "[1,2,3]");
        let back: RwLock<Vec<i32>> = serde_json::from_str(&json).unwrap();
        assert_eq!(*back.read(), [1, 2, 3]);
        assert_eq!(unsafe { l.raw() }.word().raw, 0);

        let f = FairMutex::new((1, "x".to_string()));
        let back: FairMutex<(i32, String)> =
            serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(*back.lock(), (1, "x".to_string()));

        let rm = ReentrantMutex::new(Some(7u8));
        let back: ReentrantMutex<Option<u8>> =
            serde_json::from_str(&serde_json::to_string(&rm).unwrap()).unwrap();
        assert_eq!(*back.lock(), Some(7));
    }

    #[test]
    fn deserialize_error_is_reported() {
        let r: Result<Mutex<u32>, _> = serde_json::from_str("\"not a number\"");
        assert!(r.is_err());
    }
}
