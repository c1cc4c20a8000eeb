//! Concurrency stress: counters, reader invariants, upgrade/downgrade mixes.
//! Every workload is bounded (a hang fails the test instead of blocking the
//! suite) and ends with a check of the raw word.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use lockscope::{
    FairMutex, Mutex, RecursiveRwLock, RwLock, RwLockUpgradableReadGuard, RwLockWord,
    RwLockWriteGuard,
};

const LIMIT: Duration = Duration::from_secs(60);

fn rw_word<T>(l: &RwLock<T>) -> RwLockWord {
    unsafe { l.raw() }.word()
}

fn assert_rw_free<T>(l: &RwLock<T>) {
    let w = rw_word(l);
    assert!(w.is_valid(), "invalid word: {w}");
    assert!(
        w.readers == 0 && !w.writer && !w.upgradable && !w.writer_parked,
        "still held: {w}"
    );
    drop(l.try_write().expect("try_write failed on a free lock"));
    assert_eq!(rw_word(l).raw, 0, "{}", rw_word(l));
}

/// Runs `f` with a hang limit, failing with `what` if it does not finish.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    finishes_within(LIMIT, f).unwrap_or_else(|| panic!("{what}: hung"))
}

#[test]
fn mutex_counter() {
    let m = Arc::new(Mutex::new(0u64));
    let m2 = Arc::clone(&m);
    bounded("mutex counter", move || {
        thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..5000 {
                        *m2.lock() += 1;
                    }
                });
            }
        })
    });
    assert_eq!(*m.lock(), 40_000);
    let w = unsafe { m.raw() }.word();
    assert!(w.is_valid() && w.raw == 0, "{w}");
}

#[test]
fn mutex_mixed_lock_try_lock_timed() {
    let m = Arc::new(Mutex::new((0u64, 0u64)));
    let m2 = Arc::clone(&m);
    let expected = bounded("mixed mutex ops", move || {
        let counts: Vec<u64> = thread::scope(|s| {
            let hs: Vec<_> = (0..6)
                .map(|t| {
                    let m = &m2;
                    s.spawn(move || {
                        let mut rng = Rng::new(t);
                        let mut mine = 0;
                        for _ in 0..3000 {
                            let g = match rng.below(3) {
                                0 => Some(m.lock()),
                                1 => m.try_lock(),
                                _ => m.try_lock_for(Duration::from_micros(rng.below(100))),
                            };
                            if let Some(mut g) = g {
                                // Two fields updated together: a torn view
                                // means mutual exclusion failed.
                                assert_eq!(g.0, g.1);
                                g.0 += 1;
                                g.1 += 1;
                                mine += 1;
                                if rng.below(50) == 0 {
                                    lockscope::MutexGuard::bump(&mut g);
                                }
                            }
                        }
                        mine
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        counts.iter().sum::<u64>()
    });
    assert_eq!(*m.lock(), (expected, expected));
    assert_eq!(unsafe { m.raw() }.word().raw, 0);
}

#[test]
fn fair_mutex_counter() {
    let m = Arc::new(FairMutex::new(0u64));
    let m2 = Arc::clone(&m);
    bounded("fair mutex counter", move || {
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..2000 {
                        *m2.lock() += 1;
                    }
                });
            }
        })
    });
    assert_eq!(*m.lock(), 8000);
    assert_eq!(unsafe { m.raw() }.inner().word().raw, 0);
}

#[test]
fn rwlock_writers_only_counter() {
    let l = Arc::new(RwLock::new(0u64));
    let l2 = Arc::clone(&l);
    bounded("rwlock writers", move || {
        thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    for _ in 0..3000 {
                        *l2.write() += 1;
                    }
                });
            }
        })
    });
    assert_eq!(*l.read(), 18_000);
    assert_rw_free(&l);
}

/// Readers check an invariant (all slots equal) that writers maintain.
fn readers_and_writers(l: Arc<RwLock<[u64; 8]>>, timed_writers: bool) -> u64 {
    thread::scope(|s| {
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let l = &l;
                s.spawn(move || {
                    let mut rng = Rng::new(100 + t);
                    let mut mine = 0;
                    while mine < 1500 {
                        let g = if timed_writers {
                            l.try_write_for(Duration::from_micros(50 + rng.below(500)))
                        } else {
                            Some(l.write())
                        };
                        if let Some(mut g) = g {
                            for x in g.iter_mut() {
                                *x += 1;
                            }
                            mine += 1;
                        }
                    }
                    mine
                })
            })
            .collect();
        for t in 0..3 {
            let l = &l;
            s.spawn(move || {
                let mut rng = Rng::new(t);
                for _ in 0..3000 {
                    let g = if rng.below(4) == 0 {
                        match l.try_read_for(Duration::from_micros(rng.below(200))) {
                            Some(g) => g,
                            None => continue,
                        }
                    } else {
                        l.read()
                    };
                    assert!(g.iter().all(|&x| x == g[0]), "torn read: {:?}", *g);
                    let w = unsafe { l.raw() }.word();
                    assert!(w.is_valid() && w.readers >= 1 && !w.write_locked(), "{w}");
                }
            });
        }
        writers.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

#[test]
fn rwlock_readers_verify_writer_invariants_timed_writers() {
    let l = Arc::new(RwLock::new([0u64; 8]));
    let l2 = Arc::clone(&l);
    let total = bounded("readers + timed writers", move || {
        readers_and_writers(l2, true)
    });
    assert_eq!(*l.read(), [total; 8]);
    assert_rw_free(&l);
}

/// With blocking `write()`, a writer queued behind woken readers can be
/// stranded (see rwlock.rs: exclusive_release_with_reader_ahead_of_writer_*).
#[test]
fn rwlock_readers_verify_writer_invariants_blocking_writers() {
    let l = Arc::new(RwLock::new([0u64; 8]));
    let l2 = Arc::clone(&l);
    let total = finishes_within(Duration::from_secs(20), move || {
        readers_and_writers(l2, false)
    });
    assert!(total.is_some(), "hung; word {}", rw_word(&l));
    assert_eq!(*l.read(), [total.unwrap(); 8]);
    assert_rw_free(&l);
}

/// Upgradable readers that sometimes upgrade (blocking, try, timed), write,
/// then downgrade; plain readers check the invariant meanwhile.
fn upgrade_mix(l: Arc<RwLock<(u64, u64)>>, with_writers: bool) -> u64 {
    thread::scope(|s| {
        let ups: Vec<_> = (0..2)
            .map(|t| {
                let l = &l;
                s.spawn(move || {
                    let mut rng = Rng::new(7 + t);
                    let mut mine = 0;
                    for _ in 0..800 {
                        let u = l.upgradable_read();
                        assert_eq!(u.0, u.1);
                        let w = match rng.below(4) {
                            0 => Some(RwLockUpgradableReadGuard::upgrade(u)),
                            1 => RwLockUpgradableReadGuard::try_upgrade(u).ok(),
                            2 => RwLockUpgradableReadGuard::try_upgrade_for(
                                u,
                                Duration::from_micros(rng.below(300)),
                            )
                            .ok(),
                            _ => {
                                let mut u = u;
                                u.with_upgraded(|v| {
                                    v.0 += 1;
                                    v.1 += 1;
                                });
                                mine += 1;
                                None
                            }
                        };
                        if let Some(mut w) = w {
                            w.0 += 1;
                            w.1 += 1;
                            mine += 1;
                            match rng.below(3) {
                                0 => drop(RwLockWriteGuard::downgrade(w)),
                                1 => {
                                    let u = RwLockWriteGuard::downgrade_to_upgradable(w);
                                    assert_eq!(u.0, u.1);
                                }
                                _ => drop(w),
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        let writer = with_writers.then(|| {
            let l = &l;
            s.spawn(move || {
                for _ in 0..500 {
                    let mut w = l.write();
                    w.0 += 1;
                    w.1 += 1;
                }
                500
            })
        });
        for _ in 0..2 {
            let l = &l;
            s.spawn(move || {
                for _ in 0..3000 {
                    let g = l.read();
                    assert_eq!(g.0, g.1, "torn read");
                }
            });
        }
        ups.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            + writer.map_or(0, |h| h.join().unwrap())
    })
}

#[test]
fn rwlock_upgrade_downgrade_mix() {
    let l = Arc::new(RwLock::new((0, 0)));
    let l2 = Arc::clone(&l);
    let total = bounded("upgrade mix", move || upgrade_mix(l2, false));
    assert_eq!(*l.read(), (total, total));
    assert_rw_free(&l);
}

#[test]
fn rwlock_upgrade_downgrade_mix_with_writer() {
    let l = Arc::new(RwLock::new((0, 0)));
    let l2 = Arc::clone(&l);
    let total = finishes_within(Duration::from_secs(20), move || upgrade_mix(l2, true));
    assert!(total.is_some(), "hung; word {}", rw_word(&l));
    let total = total.unwrap();
    assert_eq!(*l.read(), (total, total));
    assert_rw_free(&l);
}

#[test]
fn recursive_rwlock_nested_readers_and_writers() {
    let l = Arc::new(RecursiveRwLock::new([0u64; 4]));
    let l2 = Arc::clone(&l);
    bounded("recursive rwlock", move || {
        thread::scope(|s| {
            for t in 0..4 {
                let l = &l2;
                s.spawn(move || {
                    for i in 0..1500 {
                        if (i + t) % 5 == 0 {
                            let mut w = l.write();
                            w.iter_mut().for_each(|x| *x += 1);
                        } else {
                            let a = l.read();
                            let b = l.read();
                            assert!(b.iter().all(|&x| x == a[0]));
                        }
                    }
                });
            }
        })
    });
    assert_eq!(*l.read(), [1200; 4]);
    let w = unsafe { l.raw() }.word();
    assert!(w.is_valid() && w.readers == 0 && !w.writer, "{w}");
}

#[test]
fn condvar_ping_pong() {
    use lockscope::Condvar;
    let pair = Arc::new((Mutex::new(0u64), Condvar::new()));
    let p2 = Arc::clone(&pair);
    bounded("condvar ping-pong", move || {
        thread::scope(|s| {
            for parity in 0..2u64 {
                let p = &p2;
                s.spawn(move || {
                    for _ in 0..2000 {
                        let mut g = p.0.lock();
                        p.1.wait_while(&mut g, |v| *v % 2 != parity);
                        *g += 1;
                        p.1.notify_all();
                    }
                });
            }
        })
    });
    assert_eq!(*pair.0.lock(), 4000);
    assert_eq!(unsafe { pair.0.raw() }.word().raw, 0);
}
