//! Every RwLock mode and transition at once, from several threads: no thread
//! may be stranded in a queue (the test fails instead of hanging), and the
//! word must come back valid and free after each round.

use lockscope::{RwLock, RwLockUpgradableReadGuard, RwLockWriteGuard};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn one_round(threads: u64, iterations: u64) -> u64 {
    let lock = Arc::new(RwLock::new(0u64));
    let start = Arc::new(Barrier::new(threads as usize));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let lock = Arc::clone(&lock);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                for j in 0..iterations {
                    match (i * 7 + j) % 9 {
                        0 => {
                            let read = RwLockWriteGuard::downgrade(lock.write());
                            assert!(*read < u64::MAX);
                        }
                        1 => {
                            let up = lock.upgradable_read();
                            if j % 2 == 0 {
                                let mut write = RwLockUpgradableReadGuard::upgrade(up);
                                *write += 1;
                                let _up = RwLockWriteGuard::downgrade_to_upgradable(write);
                            }
                        }
                        2 => {
                            if let Some(mut write) =
                                lock.try_write_for(Duration::from_micros(j % 50))
                            {
                                *write += 1;
                            }
                        }
                        3 => {
                            let upgraded = lock
                                .try_upgradable_read_for(Duration::from_micros(20))
                                .and_then(|up| {
                                    RwLockUpgradableReadGuard::try_upgrade_for(
                                        up,
                                        Duration::from_micros(30),
                                    )
                                    .ok()
                                });
                            if let Some(mut write) = upgraded {
                                *write += 1;
                            }
                        }
                        4 => *lock.write() += 1,
                        5 => {
                            if let Some(read) = lock.try_read_for(Duration::from_micros(10)) {
                                assert!(*read < u64::MAX);
                            }
                        }
                        6 => {
                            let _read =
                                RwLockUpgradableReadGuard::downgrade(lock.upgradable_read());
                        }
                        7 => RwLockWriteGuard::unlock_fair(lock.write()),
                        _ => assert!(*lock.read() < u64::MAX),
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("worker panicked");
    }
    let word = unsafe { lock.raw() }.word();
    assert!(word.is_valid(), "corrupt word after a round: {word}");
    assert_eq!(word.readers, 0, "readers left behind: {word}");
    assert!(!word.writer, "writer left behind: {word}");
    *lock.read()
}

#[test]
fn every_mode_at_once_never_strands_a_thread() {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let mut total = 0;
        for _ in 0..20 {
            total += one_round(6, 20_000);
        }
        done.send(total).unwrap();
    });
    let total = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("a thread was stranded in a lock queue (or the machine is extremely slow)");
    assert!(total > 0, "no write ever succeeded");
}
