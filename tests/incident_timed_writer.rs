//! Regression for the production incident: a `try_write_for` that times out
//! exactly when the last reader leaves (and wakes it). In parking_lot <= 0.12
//! the timed-out writer subtracted bits the last reader had already cleared,
//! wrapping the RwLock word to all ones so that every thread hung.
//!
//! Many short rounds: reader threads hold read locks for short random times
//! while a writer tries `try_write_for` with timeouts drawn from the same
//! range, so expiry and the last release keep colliding. The word is checked
//! after every round, and inside every round by the readers.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use lockscope::lock_api::{self, RawRwLockTimed, RawRwLockUpgradeTimed};
use lockscope::{RawRwLock, RawRwLockRecursive, RwLockWord};

const READERS: usize = 2;
/// Wall-clock budget per scenario.
const BUDGET: Duration = Duration::from_millis(1000);
const MIN_ROUNDS: u64 = 100;
/// Keep going past the budget until each outcome was seen this often ...
const MIN_EACH_OUTCOME: u64 = 10;
/// ... but never longer than this.
const HARD_CAP: Duration = Duration::from_secs(10);

#[derive(Default, Debug)]
struct Outcomes {
    rounds: u64,
    acquired: u64,
    timed_out: u64,
}

trait Word {
    fn word(&self) -> RwLockWord;
}
impl Word for RawRwLock {
    fn word(&self) -> RwLockWord {
        RawRwLock::word(self)
    }
}
impl Word for RawRwLockRecursive {
    fn word(&self) -> RwLockWord {
        RawRwLockRecursive::word(self)
    }
}

type Lock<R> = lock_api::RwLock<R, u64>;

fn word<R: lock_api::RawRwLock + Word>(l: &Lock<R>) -> RwLockWord {
    unsafe { l.raw() }.word()
}

/// What the contending thread does each round.
#[derive(Copy, Clone)]
enum Contender {
    /// `try_write_for`.
    TimedWriter,
    /// `upgradable_read` then `try_upgrade_for`.
    TimedUpgrade,
}

fn scenario<R>(contender: Contender, seed: u64) -> Outcomes
where
    R: lock_api::RawRwLockUpgradeTimed
        + RawRwLockTimed<Duration = Duration, Instant = Instant>
        + RawRwLockUpgradeTimed
        + Word
        + Send
        + Sync
        + 'static,
{
    let lock: Arc<Lock<R>> = Arc::new(Lock::new(0));
    let start = Arc::new(Barrier::new(READERS + 1));
    let end = Arc::new(Barrier::new(READERS + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    // The contender's deadline this round, in nanoseconds since `epoch` (0:
    // not yet published). Readers release around it.
    let epoch = Instant::now();
    let deadline_ns = Arc::new(AtomicU64::new(0));
    // Set when the contender's timed attempt has returned.
    let attempt_done = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let (lock, start, end, stop, bad, deadline_ns, attempt_done) = (
                Arc::clone(&lock),
                Arc::clone(&start),
                Arc::clone(&end),
                Arc::clone(&stop),
                Arc::clone(&bad),
                Arc::clone(&deadline_ns),
                Arc::clone(&attempt_done),
            );
            thread::spawn(move || {
                let mut rng = Rng::new(seed ^ ((i as u64 + 1) * 7919));
                loop {
                    start.wait();
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    // Stagger arrivals a little so some readers come in after
                    // the writer has claimed (and queue behind it).
                    spin_for(Duration::from_micros(rng.below(40)));
                    let g = lock.read();
                    let w = word(&lock);
                    if !w.is_valid() || w.readers == 0 {
                        bad.fetch_add(1, Ordering::SeqCst);
                        eprintln!("reader saw a bad word: {w}");
                    }
                    let v = *g;
                    // Wait until the contender is parked waiting for us (or
                    // already gave up), then leave within 150us either side of
                    // its deadline: the last reader out and the expiry collide.
                    let waited = Instant::now();
                    while !(word(&lock).writer_parked || attempt_done.load(Ordering::SeqCst))
                        && waited.elapsed() < Duration::from_millis(20)
                    {
                        std::hint::spin_loop();
                    }
                    let d = deadline_ns.load(Ordering::SeqCst);
                    if d != 0 {
                        let jitter = rng.below(300_000) as i64 - 150_000;
                        let t = (d as i64 + jitter).max(0) as u64;
                        while (epoch.elapsed().as_nanos() as u64) < t
                            && !attempt_done.load(Ordering::SeqCst)
                        {
                            std::hint::spin_loop();
                        }
                    }
                    if *g != v {
                        bad.fetch_add(1, Ordering::SeqCst);
                    }
                    drop(g);
                    end.wait();
                }
            })
        })
        .collect();

    let mut rng = Rng::new(seed);
    let mut out = Outcomes::default();
    let began = Instant::now();
    while (out.rounds < MIN_ROUNDS
        || began.elapsed() < BUDGET
        || out.acquired.min(out.timed_out) < MIN_EACH_OUTCOME)
        && began.elapsed() < HARD_CAP
    {
        start.wait();
        // Contend once the readers hold the lock (they wake from the barrier
        // later than this thread), publishing the deadline they aim at.
        let wait_start = Instant::now();
        while word(&lock).readers < READERS && wait_start.elapsed() < Duration::from_millis(5) {
            std::hint::spin_loop();
        }
        let timeout = Duration::from_micros(100 + rng.below(900));
        deadline_ns.store(
            (epoch.elapsed() + timeout).as_nanos() as u64,
            Ordering::SeqCst,
        );
        let got = match contender {
            Contender::TimedWriter => lock.try_write_for(timeout).map(|mut g| {
                *g += 1;
                let w = word(&lock);
                assert!(w.write_locked() && w.is_valid(), "writer holds: {w}");
            }),
            Contender::TimedUpgrade => {
                let u = lock.upgradable_read();
                match lock_api::RwLockUpgradableReadGuard::try_upgrade_for(u, timeout) {
                    Ok(mut g) => {
                        *g += 1;
                        let w = word(&lock);
                        assert!(w.write_locked() && w.is_valid(), "upgrader holds: {w}");
                        Some(())
                    }
                    Err(u) => {
                        let w = word(&lock);
                        assert!(
                            w.upgradable && w.readers >= 1 && !w.writer && w.is_valid(),
                            "after a timed-out upgrade: {w}"
                        );
                        drop(u);
                        None
                    }
                }
            }
        };
        attempt_done.store(true, Ordering::SeqCst);
        match got {
            Some(()) => out.acquired += 1,
            None => out.timed_out += 1,
        }
        end.wait();
        deadline_ns.store(0, Ordering::SeqCst);
        attempt_done.store(false, Ordering::SeqCst);
        // Everyone is done with this round: the word must be back to rest.
        let w = word(&lock);
        assert!(w.is_valid(), "round {}: invalid word {w}", out.rounds);
        assert!(
            w.readers == 0 && !w.writer && !w.upgradable && !w.writer_parked,
            "round {}: lock not released: {w}",
            out.rounds
        );
        let g = lock.try_write();
        assert!(
            g.is_some(),
            "round {}: try_write failed on a free lock: {w}",
            out.rounds
        );
        drop(g);
        out.rounds += 1;
    }
    stop.store(true, Ordering::SeqCst);
    start.wait();
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(
        bad.load(Ordering::SeqCst),
        0,
        "readers saw bad words or torn data"
    );
    assert_eq!(*lock.read(), out.acquired);
    let g = lock.try_write().expect("lock unusable at the end");
    drop(g);
    assert_eq!(word(&lock).raw, 0, "final word: {}", word(&lock));
    out
}

/// The scenarios spin on purpose; running them one at a time keeps the
/// timing windows meaningful on a small machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check(name: &str, f: impl FnOnce() -> Outcomes + Send + 'static) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = finishes_within(Duration::from_secs(60), f)
        .unwrap_or_else(|| panic!("{name}: hung (lock word corrupted or wakeup lost)"));
    eprintln!("{name}: {out:?}");
    // Both outcomes must occur, or the race window was never exercised.
    assert!(
        out.acquired > 0,
        "{name}: the writer never got the lock: {out:?}"
    );
    assert!(
        out.timed_out > 0,
        "{name}: the writer never timed out: {out:?}"
    );
}

#[test]
fn timed_writer_vs_last_reader() {
    check("RwLock try_write_for", || {
        scenario::<RawRwLock>(Contender::TimedWriter, 0x5EED_0001)
    });
}

#[test]
fn timed_upgrade_vs_last_reader() {
    check("RwLock try_upgrade_for", || {
        scenario::<RawRwLock>(Contender::TimedUpgrade, 0x5EED_0002)
    });
}

#[test]
fn recursive_timed_writer_vs_last_reader() {
    check("RecursiveRwLock try_write_for", || {
        scenario::<RawRwLockRecursive>(Contender::TimedWriter, 0x5EED_0003)
    });
}

#[test]
fn the_incident_word_is_recognised_as_corrupt() {
    // What parking_lot's word became: every bit set.
    let w = RawRwLock::decode(usize::MAX);
    assert!(!w.is_valid());
}
