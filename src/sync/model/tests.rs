//! Model tests of the raw locks, written once and run under both checkers:
//! `RUSTFLAGS="--cfg loom" cargo test --lib` explores them exhaustively (up
//! to a preemption bound), `cargo test --lib --features shuttle` samples
//! them with shuttle's random and PCT schedulers.
//!
//! Every test watches the words of the locks it uses: each value a lock word
//! takes or is seen with, in every explored execution, must decode as valid.

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use lock_api::{RawMutex as _, RawRwLock as _};

use super::watch::{Watch, watch};
use crate::{
    Condvar, FairMutex, Mutex, RawMutex, RawRwLock, RawRwLockRecursive, RecursiveRwLock,
    ReentrantMutex, RwLock, RwLockUpgradableReadGuard, RwLockWriteGuard,
};

mod rt {
    //! The checker's runner, threads and `Arc`, under one set of names.

    #[cfg(loom)]
    pub(super) use loom::{sync::Arc, thread};
    #[cfg(all(feature = "shuttle", not(loom)))]
    pub(super) use shuttle::{sync::Arc, thread};

    /// Explores `f`: exhaustively under loom, up to `preemptions`
    /// preemptions if given (`LOOM_MAX_PREEMPTIONS` overrides it), or with shuttle's random
    /// and PCT schedulers for `LOCKSCOPE_SHUTTLE_ITERATIONS` (default 1000)
    /// iterations each.
    pub(super) fn check<F>(preemptions: Option<usize>, f: F)
    where
        F: Fn() + Send + Sync + Clone + 'static,
    {
        use super::super::watch::{trace_dump, trace_start};
        let traced = move || {
            trace_start();
            f();
        };
        let run = std::panic::AssertUnwindSafe(|| {
            #[cfg(loom)]
            {
                let mut builder = loom::model::Builder::new();
                if builder.preemption_bound.is_none() {
                    builder.preemption_bound = preemptions;
                }
                builder.check(traced);
            }
            #[cfg(all(feature = "shuttle", not(loom)))]
            {
                let _ = preemptions;
                let iterations = std::env::var("LOCKSCOPE_SHUTTLE_ITERATIONS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                shuttle::check_random(traced.clone(), iterations);
                shuttle::check_pct(traced, iterations, 3);
            }
        });
        if let Err(panic) = std::panic::catch_unwind(run) {
            // The failing execution's trace, if LOCKSCOPE_MODEL_TRACE is set.
            for line in trace_dump() {
                eprintln!("trace: {line}");
            }
            std::panic::resume_unwind(panic);
        }
    }

    /// A point at which shuttle may switch threads (loom needs none: it
    /// tracks the accesses themselves, see [`super::Data`]).
    pub(super) fn preempt() {
        #[cfg(all(feature = "shuttle", not(loom)))]
        shuttle::thread::yield_now();
    }
}

use rt::{Arc, check, preempt, thread};

/// A counter that the lock under test must protect. Under loom the value
/// lives in a `loom::cell::UnsafeCell`, so two accesses that the lock failed
/// to order by happens-before fail the model even without overlapping in
/// time; under both checkers, overlapping writers and readers are counted
/// and asserted.
struct Data {
    #[cfg(loom)]
    value: loom::cell::UnsafeCell<usize>,
    #[cfg(not(loom))]
    value: std::cell::UnsafeCell<usize>,
    writers: StdAtomicUsize,
    readers: StdAtomicUsize,
}

// SAFETY: the tests only touch `value` while holding the lock under test in
// the right mode, and check that they do.
unsafe impl Sync for Data {}

impl Data {
    fn new() -> Data {
        Data {
            #[cfg(loom)]
            value: loom::cell::UnsafeCell::new(0),
            #[cfg(not(loom))]
            value: std::cell::UnsafeCell::new(0),
            writers: StdAtomicUsize::new(0),
            readers: StdAtomicUsize::new(0),
        }
    }

    /// Increments, asserting that nobody else is inside. Call only while
    /// holding the lock exclusively.
    fn write(&self) {
        assert_eq!(self.writers.fetch_add(1, Relaxed), 0, "two writers at once");
        assert_eq!(self.readers.load(Relaxed), 0, "a writer among readers");
        preempt();
        #[cfg(loom)]
        // SAFETY: the caller holds the lock exclusively; loom checks it.
        self.value.with_mut(|v| unsafe { *v += 1 });
        #[cfg(not(loom))]
        // SAFETY: as above; the counters check it.
        unsafe {
            *self.value.get() += 1
        };
        self.writers.fetch_sub(1, Relaxed);
    }

    /// Reads, asserting that no writer is inside. Call only while holding
    /// the lock in any mode.
    fn read(&self) -> usize {
        self.readers.fetch_add(1, Relaxed);
        assert_eq!(self.writers.load(Relaxed), 0, "a reader among writers");
        preempt();
        #[cfg(loom)]
        // SAFETY: the caller holds the lock; loom checks it.
        let value = self.value.with(|v| unsafe { *v });
        #[cfg(not(loom))]
        // SAFETY: as above; the counters check it.
        let value = unsafe { *self.value.get() };
        self.readers.fetch_sub(1, Relaxed);
        value
    }
}

/// Checks every value of `raw`'s word against the mutex invariants.
fn watch_mutex(raw: &RawMutex) -> Watch {
    watch(core::ptr::from_ref(raw).addr(), |word| {
        let word = RawMutex::decode(word as u8);
        (!word.is_valid()).then(|| format!("invalid mutex word {word}"))
    })
}

/// Checks every value of `raw`'s word against the RwLock invariants.
fn watch_rwlock<const R: bool>(raw: &crate::raw::rwlock::RawRwLock<R>) -> Watch {
    watch(core::ptr::from_ref(raw).addr(), |word| {
        let word = RawRwLock::decode(word as usize);
        (!word.is_valid()).then(|| format!("invalid rwlock word {word}"))
    })
}

/// Counts the outcomes of a nondeterministic step across executions, to
/// show that the checker explored each of them.
struct Outcomes([StdAtomicUsize; 2]);

impl Outcomes {
    const fn new() -> Outcomes {
        Outcomes([StdAtomicUsize::new(0), StdAtomicUsize::new(0)])
    }
    fn record(&self, which: bool) {
        self.0[usize::from(which)].fetch_add(1, Relaxed);
    }
    fn assert_both(&self, what: &str) {
        let (no, yes) = (self.0[0].load(Relaxed), self.0[1].load(Relaxed));
        assert!(no > 0 && yes > 0, "{what}: explored {yes} yes and {no} no");
    }
}

fn mutex_with(threads: usize, body: fn(&Mutex<()>, &Data)) -> impl Fn() + Send + Sync + Clone {
    move || {
        let shared = Arc::new((Mutex::new(()), Data::new()));
        // SAFETY: only reads the raw lock's address.
        let _watch = watch_mutex(unsafe { shared.0.raw() });
        let handles: Vec<_> = (1..threads)
            .map(|_| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || body(&shared.0, &shared.1))
            })
            .collect();
        body(&shared.0, &shared.1);
        for h in handles {
            h.join().unwrap();
        }
        assert!(!shared.0.is_locked());
    }
}

#[test]
fn mutex_lock_unlock_2() {
    check(
        None,
        mutex_with(2, |m, d| {
            let _g = m.lock();
            d.write();
        }),
    );
}

#[test]
fn mutex_lock_unlock_3() {
    check(
        Some(3),
        mutex_with(3, |m, d| {
            let _g = m.lock();
            d.write();
        }),
    );
}

#[test]
fn mutex_try_lock_3() {
    check(
        Some(3),
        mutex_with(3, |m, d| match m.try_lock() {
            Some(_g) => d.write(),
            None => {
                let _g = m.lock();
                d.write();
            }
        }),
    );
}

#[test]
fn mutex_fair_unlock_3() {
    check(
        Some(3),
        mutex_with(3, |m, d| {
            let mut g = m.lock();
            d.write();
            crate::MutexGuard::bump(&mut g);
            d.write();
            crate::MutexGuard::unlock_fair(g);
        }),
    );
}

#[test]
fn fair_mutex_3() {
    check(Some(3), || {
        let shared = Arc::new((FairMutex::new(()), Data::new()));
        // SAFETY: only reads the raw lock's address.
        let _watch = watch_mutex(unsafe { shared.0.raw() }.inner());
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    let _g = shared.0.lock();
                    shared.1.write();
                })
            })
            .collect();
        {
            let _g = shared.0.lock();
            shared.1.write();
        }
        for h in handles {
            h.join().unwrap();
        }
        assert!(!shared.0.is_locked());
    });
}

static MUTEX_TIMED: Outcomes = Outcomes::new();

/// A timed acquisition of a held mutex either acquires after the holder
/// leaves or times out; both must be explored, and neither may corrupt the
/// word or leave it locked.
#[test]
fn mutex_timed_2() {
    check(None, || {
        let shared = Arc::new((Mutex::new(()), Data::new()));
        // SAFETY: only reads the raw lock's address.
        let _watch = watch_mutex(unsafe { shared.0.raw() });
        let g = shared.0.lock();
        let other = Arc::clone(&shared);
        let h = thread::spawn(move || {
            let got = other.0.try_lock_for(Duration::from_millis(1));
            MUTEX_TIMED.record(got.is_some());
            if got.is_some() {
                other.1.write();
            }
        });
        shared.1.write();
        drop(g);
        h.join().unwrap();
        assert!(!shared.0.is_locked());
    });
    MUTEX_TIMED.assert_both("try_lock_for on a held mutex acquired");
}

#[test]
fn mutex_timed_3() {
    check(
        Some(3),
        mutex_with(3, |m, d| {
            if let Some(_g) = m.try_lock_for(Duration::from_millis(1)) {
                d.write();
            }
        }),
    );
}

#[test]
fn reentrant_mutex_2() {
    check(None, || {
        let m = Arc::new(ReentrantMutex::new(Data::new()));
        // SAFETY: only reads the raw lock's address.
        let _watch = watch_mutex(unsafe { m.raw() });
        let other = Arc::clone(&m);
        let h = thread::spawn(move || {
            let a = other.lock();
            let b = other.lock();
            a.write();
            b.write();
        });
        {
            let a = m.lock();
            let b = m.try_lock().expect("the owner may always re-lock");
            a.write();
            drop(a);
            b.write();
        }
        h.join().unwrap();
        assert!(!m.is_locked());
        assert_eq!(m.lock().read(), 4);
    });
}

/// Waits for a flag under a condvar, as users do.
fn wait_flag(pair: &(Mutex<bool>, Condvar)) {
    let mut ready = pair.0.lock();
    while !*ready {
        pair.1.wait(&mut ready);
    }
}

#[test]
fn condvar_notify_one_2() {
    check(None, || {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        // SAFETY: only reads the raw lock's address.
        let _watch = watch_mutex(unsafe { pair.0.raw() });
        let other = Arc::clone(&pair);
        let h = thread::spawn(move || wait_flag(&other));
        *pair.0.lock() = true;
        pair.1.notify_one();
        h.join().unwrap();
        assert!(!pair.0.is_locked());
    });
}

/// Notifying while holding the mutex requeues the waiter onto the mutex.
#[test]
fn condvar_notify_under_lock_2() {
    check(None, || {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        // SAFETY: only reads the raw lock's address.
        let _watch = watch_mutex(unsafe { pair.0.raw() });
        let other = Arc::clone(&pair);
        let h = thread::spawn(move || wait_flag(&other));
        {
            let mut ready = pair.0.lock();
            *ready = true;
            pair.1.notify_one();
        }
        h.join().unwrap();
        assert!(!pair.0.is_locked());
    });
}

#[test]
fn condvar_notify_all_3() {
    check(Some(3), || {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        // SAFETY: only reads the raw lock's address.
        let _watch = watch_mutex(unsafe { pair.0.raw() });
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let other = Arc::clone(&pair);
                thread::spawn(move || wait_flag(&other))
            })
            .collect();
        {
            let mut ready = pair.0.lock();
            *ready = true;
            pair.1.notify_all();
        }
        for h in handles {
            h.join().unwrap();
        }
        assert!(!pair.0.is_locked());
    });
}

static CONDVAR_TIMED: Outcomes = Outcomes::new();

/// A timed wait either is notified or times out; after either, the waiter
/// holds the mutex again and the condvar is reusable.
#[test]
fn condvar_wait_for_2() {
    check(None, || {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        // SAFETY: only reads the raw lock's address.
        let _watch = watch_mutex(unsafe { pair.0.raw() });
        let other = Arc::clone(&pair);
        let h = thread::spawn(move || {
            let mut ready = other.0.lock();
            if !*ready {
                let result = other.1.wait_for(&mut ready, Duration::from_millis(1));
                CONDVAR_TIMED.record(result.timed_out());
                assert!(result.timed_out() || *ready, "woken without the flag");
            }
        });
        *pair.0.lock() = true;
        pair.1.notify_one();
        h.join().unwrap();
        assert!(!pair.0.is_locked());
    });
    CONDVAR_TIMED.assert_both("wait_for timed out");
}

fn rwlock_with<const R: bool>(
    threads: usize,
    body: fn(usize, &lock_api::RwLock<crate::raw::rwlock::RawRwLock<R>, ()>, &Data),
) -> impl Fn() + Send + Sync + Clone {
    move || {
        let shared = Arc::new((lock_api::RwLock::new(()), Data::new()));
        // SAFETY: only reads the raw lock's address.
        let _watch = watch_rwlock(unsafe { shared.0.raw() });
        let handles: Vec<_> = (1..threads)
            .map(|i| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || body(i, &shared.0, &shared.1))
            })
            .collect();
        body(0, &shared.0, &shared.1);
        for h in handles {
            h.join().unwrap();
        }
        assert!(!shared.0.is_locked());
        assert_eq!(shared.0.raw_word(), 0, "the word returns to zero");
    }
}

trait RawWord {
    fn raw_word(&self) -> usize;
}

impl<const R: bool> RawWord for lock_api::RwLock<crate::raw::rwlock::RawRwLock<R>, ()> {
    fn raw_word(&self) -> usize {
        // SAFETY: only reads the word.
        unsafe { self.raw() }.word().raw
    }
}

#[test]
fn rwlock_read_write_2() {
    check(
        None,
        rwlock_with::<false>(2, |i, l, d| {
            if i == 0 {
                let _g = l.write();
                d.write();
            } else {
                let _g = l.read();
                d.read();
            }
        }),
    );
}

#[test]
fn rwlock_readers_writer_3() {
    check(
        Some(3),
        rwlock_with::<false>(3, |i, l, d| {
            if i == 0 {
                let _g = l.write();
                d.write();
            } else {
                let _g = l.read();
                d.read();
            }
        }),
    );
}

#[test]
fn rwlock_writers_reader_3() {
    check(
        Some(3),
        rwlock_with::<false>(3, |i, l, d| {
            if i == 2 {
                let _g = l.read();
                d.read();
            } else {
                let _g = l.write();
                d.write();
            }
        }),
    );
}

#[test]
fn rwlock_try_3() {
    check(
        Some(3),
        rwlock_with::<false>(3, |i, l, d| {
            if i == 0 {
                if let Some(_g) = l.try_write() {
                    d.write();
                }
            } else if let Some(_g) = l.try_read() {
                d.read();
            }
        }),
    );
}

static RW_TIMED: Outcomes = Outcomes::new();

/// The race that corrupted parking_lot's word: a `try_write_for` that times
/// out exactly as the last reader leaves. The reader clears WRITER_PARKED in
/// the same exchange that removes it; a timed-out writer that then subtracts
/// "the bits it set" (WRITER | WRITER_PARKED) borrows from the reader count
/// and wraps the word to nearly all ones. Every word value is checked, so
/// that variant (`--cfg lockscope_buggy_abandon`) fails here.
#[test]
fn rwlock_timed_writer_vs_last_reader_2() {
    check(None, || {
        let shared = Arc::new((RwLock::new(()), Data::new()));
        // SAFETY: only reads the raw lock's address.
        let _watch = watch_rwlock(unsafe { shared.0.raw() });
        let r = shared.0.read();
        let other = Arc::clone(&shared);
        let h = thread::spawn(move || {
            let got = other.0.try_write_for(Duration::from_millis(1));
            RW_TIMED.record(got.is_some());
            if got.is_some() {
                other.1.write();
            }
        });
        shared.1.read();
        drop(r);
        h.join().unwrap();
        assert!(!shared.0.is_locked());
        assert_eq!(shared.0.raw_word(), 0, "the word returns to zero");
        // The lock still works.
        drop(shared.0.write());
    });
    RW_TIMED.assert_both("try_write_for against a leaving reader acquired");
}

#[test]
fn rwlock_timed_writer_vs_readers_3() {
    check(
        Some(3),
        rwlock_with::<false>(3, |i, l, d| {
            if i == 0 {
                if let Some(_g) = l.try_write_for(Duration::from_millis(1)) {
                    d.write();
                }
            } else {
                let _g = l.read();
                d.read();
            }
        }),
    );
}

#[test]
fn rwlock_timed_readers_vs_writer_3() {
    check(
        Some(3),
        rwlock_with::<false>(3, |i, l, d| {
            if i == 0 {
                let _g = l.write();
                d.write();
            } else if let Some(_g) = l.try_read_for(Duration::from_millis(1)) {
                d.read();
            }
        }),
    );
}

#[test]
fn rwlock_upgrade_2() {
    check(
        None,
        rwlock_with::<false>(2, |i, l, d| {
            if i == 0 {
                let u = l.upgradable_read();
                d.read();
                let w = RwLockUpgradableReadGuard::upgrade(u);
                d.write();
                let u = RwLockWriteGuard::downgrade_to_upgradable(w);
                d.read();
                let r = RwLockUpgradableReadGuard::downgrade(u);
                d.read();
                drop(r);
            } else {
                let _g = l.read();
                d.read();
            }
        }),
    );
}

#[test]
fn rwlock_upgrade_3() {
    check(
        Some(3),
        rwlock_with::<false>(3, |i, l, d| match i {
            0 => {
                let u = l.upgradable_read();
                let w = RwLockUpgradableReadGuard::upgrade(u);
                d.write();
                let r = RwLockWriteGuard::downgrade(w);
                d.read();
                drop(r);
            }
            1 => {
                let _g = l.upgradable_read();
                d.read();
            }
            _ => {
                let _g = l.write();
                d.write();
            }
        }),
    );
}

#[test]
fn rwlock_try_upgrade_3() {
    check(
        Some(3),
        rwlock_with::<false>(3, |i, l, d| {
            if i == 0 {
                let u = l.upgradable_read();
                match RwLockUpgradableReadGuard::try_upgrade(u) {
                    Ok(_w) => d.write(),
                    Err(u) => match RwLockUpgradableReadGuard::try_upgrade_for(
                        u,
                        Duration::from_millis(1),
                    ) {
                        Ok(_w) => d.write(),
                        Err(u) => drop(u),
                    },
                }
            } else {
                let _g = l.read();
                d.read();
            }
        }),
    );
}

static UPGRADE_TIMED: Outcomes = Outcomes::new();

/// A timed upgrade that gives up returns to exactly the upgradable state it
/// started from, whatever the leaving reader did meanwhile.
#[test]
fn rwlock_try_upgrade_for_2() {
    check(None, || {
        let shared = Arc::new((RwLock::new(()), Data::new()));
        // SAFETY: only reads the raw lock's address.
        let _watch = watch_rwlock(unsafe { shared.0.raw() });
        let r = shared.0.read();
        let other = Arc::clone(&shared);
        let h = thread::spawn(move || {
            let u = other.0.upgradable_read();
            match RwLockUpgradableReadGuard::try_upgrade_for(u, Duration::from_millis(1)) {
                Ok(_w) => {
                    UPGRADE_TIMED.record(true);
                    other.1.write();
                }
                Err(u) => {
                    UPGRADE_TIMED.record(false);
                    other.1.read();
                    drop(u);
                }
            }
        });
        shared.1.read();
        drop(r);
        h.join().unwrap();
        assert_eq!(shared.0.raw_word(), 0, "the word returns to zero");
    });
    UPGRADE_TIMED.assert_both("try_upgrade_for against a leaving reader upgraded");
}

#[test]
fn rwlock_fair_unlock_3() {
    check(
        Some(3),
        rwlock_with::<false>(3, |i, l, d| {
            if i == 2 {
                let g = l.read();
                d.read();
                crate::RwLockReadGuard::unlock_fair(g);
            } else {
                let mut g = l.write();
                d.write();
                RwLockWriteGuard::bump(&mut g);
                d.write();
                RwLockWriteGuard::unlock_fair(g);
            }
        }),
    );
}

/// A recursive read while a writer waits must not deadlock.
#[test]
fn recursive_rwlock_2() {
    check(
        None,
        rwlock_with::<true>(2, |i, l, d| {
            if i == 0 {
                let _a = l.read();
                d.read();
                let _b = l.read();
                d.read();
            } else {
                let _g = l.write();
                d.write();
            }
        }),
    );
}

#[test]
fn recursive_rwlock_3() {
    check(Some(3), || {
        let shared = Arc::new((RecursiveRwLock::new(()), Data::new()));
        // SAFETY: only reads the raw lock's address.
        let raw: &RawRwLockRecursive = unsafe { shared.0.raw() };
        let _watch = watch_rwlock(raw);
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    if i == 0 {
                        let _g = shared.0.write();
                        shared.1.write();
                    } else {
                        let _a = shared.0.read();
                        let _b = shared.0.read();
                        shared.1.read();
                    }
                })
            })
            .collect();
        {
            let _a = shared.0.read();
            let _b = shared.0.read();
            shared.1.read();
        }
        for h in handles {
            h.join().unwrap();
        }
        assert!(!shared.0.is_locked());
    });
}

#[test]
fn raw_rwlock_downgrade_2() {
    check(None, || {
        let raw = Arc::new(<RawRwLock as lock_api::RawRwLock>::INIT);
        let _watch = watch_rwlock(&raw);
        let other = Arc::clone(&raw);
        let h = thread::spawn(move || {
            let g = other.lock_shared();
            // SAFETY: `g` is a shared guard of `other`.
            unsafe { other.unlock_shared(g) };
        });
        let g = raw.lock_exclusive();
        // SAFETY: `g` is this lock's exclusive guard.
        let g = unsafe { lock_api::RawRwLockDowngrade::downgrade(&*raw, g) };
        // SAFETY: `g` is now a shared guard.
        unsafe { raw.unlock_shared(g) };
        h.join().unwrap();
        assert_eq!(raw.word().raw, 0);
    });
}

#[test]
fn once_3() {
    check(Some(3), || {
        let once = Arc::new((crate::Once::new(), StdAtomicUsize::new(0)));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let once = Arc::clone(&once);
                thread::spawn(move || {
                    once.0.call_once(|| {
                        once.1.fetch_add(1, Relaxed);
                    });
                    assert_eq!(once.1.load(Relaxed), 1);
                })
            })
            .collect();
        once.0.call_once(|| {
            once.1.fetch_add(1, Relaxed);
        });
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(once.1.load(Relaxed), 1);
    });
}

/// The raw mutex API directly, including a word check after every step.
#[test]
fn raw_mutex_2() {
    check(None, || {
        let raw = Arc::new(<RawMutex as lock_api::RawMutex>::INIT);
        let _watch = watch_mutex(&raw);
        let other = Arc::clone(&raw);
        let h = thread::spawn(move || {
            let g = other.lock();
            // SAFETY: `g` is this mutex's guard.
            unsafe { other.unlock(g) };
        });
        if let Some(g) = raw.try_lock() {
            // SAFETY: `g` is this mutex's guard.
            unsafe { lock_api::RawMutexFair::unlock_fair(&*raw, g) };
        }
        h.join().unwrap();
        assert!(!raw.is_locked());
    });
}

static STATIC_LOCK: Mutex<()> = Mutex::new(());

/// A lock in a `static` starts every execution from its initial word, even
/// when an execution ends with a thread parked on it or the lock held.
#[test]
fn static_lock_across_executions_2() {
    check(None, || {
        // SAFETY: only reads the raw lock's address.
        let _watch = watch_mutex(unsafe { STATIC_LOCK.raw() });
        let h = thread::spawn(|| drop(STATIC_LOCK.lock()));
        let g = STATIC_LOCK.lock();
        drop(g);
        h.join().unwrap();
        assert!(!STATIC_LOCK.is_locked());
        // Left held: the next execution must still find it free.
        core::mem::forget(STATIC_LOCK.lock());
    });
}
