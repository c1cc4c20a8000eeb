//! The access-pattern detector: a sampled window of recent accesses.
//!
//! The cache hands it one access in N (64 by default). The window sits
//! behind a lockscope [`Mutex`] taken with `try_lock`: if another thread is
//! recording, the samples are skipped, so a get never waits here.
//!
//! Each thread first gathers its samples in a batch of its own (one per
//! stats stripe), and takes the window once per [`BATCH`] samples. The
//! window's lock and lines are shared by every thread: taken per sample,
//! they would move between cores on every sampled get. The price is a lag: the
//! window misses up to `BATCH - 1` samples per thread until a snapshot
//! flushes them.
//!
//! A sample is two numbers, the key's hash and whether it hit (with the
//! sketch's count of the key before the access), so a batch is a few
//! atomics that only the stripe's owner writes: recording takes no lock and
//! clones no key (a `String` key would allocate). The hot keys are named at
//! snapshot time, from the cache, by their hashes.
//!
//! From the window it reports the hottest keys (their share of the sampled
//! accesses), the hit ratio per epoch of 256 samples and its trend, and
//! whether a scan seems to be running. The scan heuristic: the share of
//! sampled accesses that miss on a key the sketch has never counted ("cold
//! misses") jumps well above its running baseline. A scan touches keys once
//! each, so nearly all of its accesses are cold misses; a stationary workload
//! keeps that share steady, however skewed it is.

use std::collections::{HashMap, VecDeque};

use super::sketch::Padded;
use crate::Mutex;
// From the facade, so that the checkers see the batches' protocol (see the
// model test below).
use crate::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// Samples kept in the window for the hot-key view.
const WINDOW: usize = 1024;
/// Samples per hit-ratio epoch.
const EPOCH: u32 = 256;
/// Epochs of hit-ratio history kept.
const HISTORY: usize = 32;
/// Hot keys reported.
const TOP: usize = 8;
/// Samples a thread gathers before it takes the window.
pub(crate) const BATCH: usize = 8;

/// A sample's flags: the key hit...
const HIT: u8 = 0x80;
/// ...and the sketch's count of the key before the access (4-bit counters).
const PRIOR: u8 = 0x0f;

/// Which way the hit ratio has been moving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trend {
    /// Fewer than eight epochs have been seen.
    Unknown,
    /// The mean of the last four epochs is at least 2 points above the four
    /// before them.
    Rising,
    /// At least 2 points below.
    Falling,
    /// Within 2 points.
    Steady,
}

/// A key that takes a large share of the sampled accesses.
#[derive(Clone, Debug, PartialEq)]
pub struct HotKey<K> {
    /// The key.
    pub key: K,
    /// Its share of the samples in the window, in `0..=1`.
    pub share: f64,
}

/// The detector's view of the workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Patterns<K> {
    /// The most sampled keys in the window that hit, hottest first, at most
    /// eight. A key is named from the cache when the snapshot is taken, so
    /// one evicted since its samples is left out.
    pub hot_keys: Vec<HotKey<K>>,
    /// Hit ratio of each recent epoch of 256 samples, oldest first.
    pub hit_ratios: Vec<f64>,
    /// The direction of [`Self::hit_ratios`].
    pub hit_ratio_trend: Trend,
    /// Whether the last complete epoch looked like a scan.
    pub scan_detected: bool,
    /// Samples recorded.
    pub samples: u64,
    /// Samples skipped because another thread held the window.
    pub skipped: u64,
    /// The admission window's share of the capacity now: 1% at the start,
    /// then wherever [window sizing](crate::cache::TwoTierCacheBuilder::adaptive_window)
    /// has moved it.
    pub window_fraction: f64,
}

impl<K> Default for Patterns<K> {
    fn default() -> Self {
        Patterns {
            hot_keys: Vec::new(),
            hit_ratios: Vec::new(),
            hit_ratio_trend: Trend::Unknown,
            scan_detected: false,
            samples: 0,
            skipped: 0,
            window_fraction: 0.0,
        }
    }
}

struct Window {
    /// The last [`WINDOW`] samples: key hash, and whether it hit. Counted
    /// only when a snapshot is taken, so recording stays cheap.
    /// In no order: full, a new sample replaces the oldest, at `next`.
    ring: Vec<(u64, bool)>,
    next: usize,
    epoch_total: u32,
    epoch_hits: u32,
    epoch_cold: u32,
    history: VecDeque<f64>,
    cold_baseline: Option<f64>,
    scan: bool,
    samples: u64,
}

impl Window {
    /// An empty window, allocated in full here so that recording allocates
    /// nothing.
    fn new() -> Self {
        Window {
            ring: Vec::with_capacity(WINDOW),
            next: 0,
            epoch_total: 0,
            epoch_hits: 0,
            epoch_cold: 0,
            history: VecDeque::with_capacity(HISTORY),
            cold_baseline: None,
            scan: false,
            samples: 0,
        }
    }

    /// Adds a sample; returns whether it completed an epoch.
    fn record(&mut self, hash: u64, flags: u8) -> bool {
        let (hit, prior) = (flags & HIT != 0, flags & PRIOR);
        let w = self;
        w.samples += 1;
        if w.ring.len() < WINDOW {
            w.ring.push((hash, hit));
        } else {
            w.ring[w.next] = (hash, hit);
            w.next = (w.next + 1) % WINDOW;
        }
        w.epoch_total += 1;
        if hit {
            w.epoch_hits += 1;
        } else if prior == 0 {
            w.epoch_cold += 1;
        }
        if w.epoch_total == EPOCH {
            let ratio = f64::from(w.epoch_hits) / f64::from(EPOCH);
            let cold = f64::from(w.epoch_cold) / f64::from(EPOCH);
            if w.history.len() == HISTORY {
                w.history.pop_front();
            }
            w.history.push_back(ratio);
            w.scan = matches!(w.cold_baseline, Some(b) if cold > b + 0.15);
            if !w.scan {
                // The baseline follows the workload, but not into a scan.
                w.cold_baseline = Some(match w.cold_baseline {
                    Some(b) => 0.75 * b + 0.25 * cold,
                    None => cold,
                });
            }
            w.epoch_total = 0;
            w.epoch_hits = 0;
            w.epoch_cold = 0;
            return true;
        }
        false
    }
}

/// One stripe's samples not yet in the window.
///
/// Only the stripe's owner adds samples; a thread that holds the window
/// lock (the owner when the batch is full, or a snapshot) drains them. The
/// owner writes a sample's slots first and publishes it by raising `len`
/// with a compare-exchange; a drain marks `len` [`DRAINING`] while it reads
/// the published slots, and ends by setting it to 0. So a drain never reads
/// a slot being written, and a sample added during a drain is skipped (its
/// compare-exchange fails), not mixed into another.
struct Batch {
    hashes: [AtomicU64; BATCH],
    flags: [AtomicU8; BATCH],
    /// Samples published, `| DRAINING` while a drain reads them.
    len: AtomicUsize,
}

/// [`Batch::len`]'s mark while a drain reads the slots.
const DRAINING: usize = 1 << (usize::BITS - 1);

impl Batch {
    fn new() -> Self {
        Batch {
            hashes: core::array::from_fn(|_| AtomicU64::new(0)),
            flags: core::array::from_fn(|_| AtomicU8::new(0)),
            len: AtomicUsize::new(0),
        }
    }

    /// Adds a sample (only the stripe's owner calls this); the samples now
    /// in the batch, or `None` if a drain is running or the batch is full
    /// (the sample is then not kept).
    fn push(&self, hash: u64, flags: u8) -> Option<usize> {
        // Acquire: a drain's reads of the slots came before its reset.
        let n = self.len.load(Ordering::Acquire);
        if n >= BATCH {
            return None;
        }
        self.hashes[n].store(hash, Ordering::Relaxed);
        self.flags[n].store(flags, Ordering::Relaxed);
        self.len
            .compare_exchange(n, n + 1, Ordering::Release, Ordering::Relaxed)
            .ok()
            .map(|_| n + 1)
    }

    /// Moves the samples into `w` (the caller holds the window lock, so no
    /// other drain runs); returns whether an epoch was completed.
    fn drain_into(&self, w: &mut Window) -> bool {
        let mut n = self.len.load(Ordering::Relaxed);
        loop {
            if n == 0 {
                return false;
            }
            // Acquire: the owner's slot writes came before it published them.
            match self.len.compare_exchange_weak(
                n,
                n | DRAINING,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        let mut epoch_done = false;
        for i in 0..n {
            let hash = self.hashes[i].load(Ordering::Relaxed);
            epoch_done |= w.record(hash, self.flags[i].load(Ordering::Relaxed));
        }
        // Release: the reads above come before the owner's next writes.
        self.len.store(0, Ordering::Release);
        epoch_done
    }

    /// Drops a full batch that the window could not take; false if a drain
    /// (a snapshot's) took it first.
    fn discard_full(&self) -> bool {
        self.len
            .compare_exchange(BATCH, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// The detector: the window, the threads' batches, and a lock-free count
/// of skipped samples.
///
/// The window lock and each batch sit on lines of their own. Side by side,
/// two threads' batches shared a line that both wrote on every sample, and
/// the window's lock word shared one with the sampling masks that every get
/// reads.
pub(crate) struct PatternDetector {
    window: Padded<Mutex<Window>>,
    /// One per claimable stats stripe, written by its owner.
    batches: Box<[Padded<Batch>]>,
    skipped: AtomicU64,
}

impl PatternDetector {
    /// A detector for a cache with `stripes` claimable stats stripes.
    pub(crate) fn new(stripes: usize) -> Self {
        PatternDetector {
            batches: (0..stripes).map(|_| Padded(Batch::new())).collect(),
            // Labelled at compile time: one class for every cache's window.
            window: Padded(Mutex::from_raw(
                crate::RawMutex::labelled("lockscope::cache pattern window"),
                Window::new(),
            )),
            skipped: AtomicU64::new(0),
        }
    }

    /// Records a sampled access of the key with hash `hash` in batch
    /// `batch` (the caller's stats stripe, which it owns; `None` for a
    /// thread on the shared overflow stripe, whose samples go to the window
    /// one by one), and the batch in the window once it is full, unless the
    /// window is busy: then the batch is dropped and counted as skipped.
    /// `prior` is the sketch's count of the key before this access. Returns
    /// whether an epoch was completed.
    pub(crate) fn record(&self, batch: Option<usize>, hash: u64, hit: bool, prior: u8) -> bool {
        let flags = if hit { HIT } else { 0 } | prior.min(PRIOR);
        let Some(b) = batch.and_then(|i| self.batches.get(i)) else {
            // try-lock-or-skip, one sample at a time.
            let Some(mut w) = self.window.0.try_lock() else {
                self.skip(1);
                return false;
            };
            return w.record(hash, flags);
        };
        let Some(n) = b.0.push(hash, flags) else {
            // A snapshot is draining the batch.
            self.skip(1);
            return false;
        };
        if n < BATCH {
            return false;
        }
        // try-lock-or-skip: a get never waits for the window.
        let Some(mut w) = self.window.0.try_lock() else {
            if b.0.discard_full() {
                self.skip(BATCH);
            }
            return false;
        };
        b.0.drain_into(&mut w)
    }

    fn skip(&self, n: usize) {
        self.skipped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The current view, with every thread's batch flushed into it first.
    /// `key_of` names a hot key by its hash (from the cache, `None` if it is
    /// no longer there); it runs after the window lock is released.
    pub(crate) fn snapshot<K>(
        &self,
        window_fraction: f64,
        key_of: impl Fn(u64) -> Option<K>,
    ) -> Patterns<K> {
        // Off the get path: a snapshot may wait for a recording thread.
        let mut w = self.window.0.lock();
        for batch in self.batches.iter() {
            batch.0.drain_into(&mut w);
        }
        let total = w.ring.len().max(1) as f64;
        // Per hash: samples, and whether any hit (a key that never hit is
        // not cached, so it cannot be named).
        let mut counts: HashMap<u64, (u32, bool)> = HashMap::new();
        for &(hash, hit) in &w.ring {
            let c = counts.entry(hash).or_insert((0, false));
            c.0 += 1;
            c.1 |= hit;
        }
        let mut hot: Vec<(u64, u32)> = counts
            .into_iter()
            .filter(|&(_, (n, hit))| hit && n >= 2)
            .map(|(hash, (n, _))| (hash, n))
            .collect();
        hot.sort_by_key(|&(_, n)| core::cmp::Reverse(n));
        let hit_ratios: Vec<f64> = w.history.iter().copied().collect();
        let (scan_detected, samples) = (w.scan, w.samples);
        // The cache's shard locks are taken without the window's.
        drop(w);
        let trend = if hit_ratios.len() < 8 {
            Trend::Unknown
        } else {
            let n = hit_ratios.len();
            let recent = hit_ratios[n - 4..].iter().sum::<f64>() / 4.0;
            let before = hit_ratios[n - 8..n - 4].iter().sum::<f64>() / 4.0;
            if recent >= before + 0.02 {
                Trend::Rising
            } else if recent <= before - 0.02 {
                Trend::Falling
            } else {
                Trend::Steady
            }
        };
        Patterns {
            hot_keys: hot
                .into_iter()
                .filter_map(|(hash, n)| {
                    key_of(hash).map(|key| HotKey {
                        key,
                        share: f64::from(n) / total,
                    })
                })
                .take(TOP)
                .collect(),
            hit_ratios,
            hit_ratio_trend: trend,
            scan_detected,
            samples,
            skipped: self.skipped.load(Ordering::Relaxed),
            window_fraction,
        }
    }
}

// These tests take lockscope locks outside a model, which a checker build
// cannot run (the cache's model tests are in tests/cache_shuttle.rs).
#[cfg(all(test, not(any(loom, feature = "shuttle"))))]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reaches_the_window_when_full_or_at_a_snapshot() {
        let d = PatternDetector::new(2);
        let peek = |d: &PatternDetector| d.window.0.lock().samples;
        for i in 0..BATCH as u64 - 1 {
            assert!(!d.record(Some(0), i, true, 1));
            d.record(Some(1), i, false, 0);
        }
        assert_eq!(peek(&d), 0, "both batches are one short");
        d.record(Some(0), 99, true, 1);
        assert_eq!(peek(&d), BATCH as u64, "batch 0 is full: flushed");
        let p = d.snapshot(0.5, Some);
        assert_eq!(
            p.samples,
            2 * BATCH as u64 - 1,
            "the snapshot flushed batch 1"
        );
        assert_eq!(p.skipped, 0);
        // A busy window drops the full batch, counted.
        let held = d.window.0.lock();
        for i in 0..BATCH as u64 {
            d.record(Some(0), i, false, 0);
        }
        drop(held);
        assert_eq!(d.snapshot(0.5, Some).skipped, BATCH as u64);
    }

    #[test]
    fn epochs_close_as_batches_land() {
        let d = PatternDetector::new(1);
        let closed = (0..EPOCH as u64)
            .filter(|&i| d.record(Some(0), i, i % 2 == 0, 1))
            .count();
        assert_eq!(closed, 1);
        assert_eq!(d.snapshot(0.5, Some::<u64>).hit_ratios, vec![0.5]);
    }
}

// The batch protocol under loom: `RUSTFLAGS="--cfg loom" cargo test --lib
// cache::pattern` (`.ci/model-check` runs it).
#[cfg(all(test, loom))]
mod model {
    use super::*;

    /// Sample `i`: hash `i`, a hit when `i` is even, so that a sample
    /// mixed from two pushes shows.
    fn flags(i: u64) -> u8 {
        if i.is_multiple_of(2) { HIT } else { 0 }
    }

    #[test]
    fn a_drain_takes_each_kept_sample_once_and_whole() {
        loom::model(|| {
            let batch = loom::sync::Arc::new(Batch::new());
            let b = batch.clone();
            // A snapshot drains while the owner pushes.
            let snapshot = loom::thread::spawn(move || {
                let mut w = Window::new();
                b.drain_into(&mut w);
                w.ring
            });
            let kept: Vec<u64> = (1..=2)
                .filter(|&i| batch.push(i, flags(i)).is_some())
                .collect();
            let mut drained = snapshot.join().unwrap();
            let mut rest = Window::new();
            batch.drain_into(&mut rest);
            drained.extend(rest.ring);
            for &(hash, hit) in &drained {
                assert_eq!(hit, flags(hash) == HIT, "a torn sample: {drained:?}");
            }
            let mut hashes: Vec<u64> = drained.iter().map(|&(h, _)| h).collect();
            hashes.sort_unstable();
            assert_eq!(hashes, kept, "kept samples, each drained once");
        });
    }
}
