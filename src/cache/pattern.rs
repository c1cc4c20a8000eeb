//! The access-pattern detector: a sampled window of recent accesses.
//!
//! The cache hands it one access in N (64 by default). The window sits
//! behind a lockscope [`Mutex`] taken with `try_lock`: if another thread is
//! recording, the samples are skipped, so a get never waits here.
//!
//! Each thread first gathers its samples in a batch of its own (one per
//! stats stripe, behind a `try_lock` that only its owner takes), and takes
//! the window once per [`BATCH`] samples. The window's lock and lines are
//! shared by every thread: taken per sample, they moved between cores on
//! every sampled get. The price is a lag: the window misses up to
//! `BATCH - 1` samples per thread until a snapshot flushes them.
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
use crate::diag::Inspect as _;

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

/// A sample waiting in a batch: the key's hash, the stored key on a hit,
/// whether it hit, and the sketch's count of the key before the access.
type Sample<K> = (u64, Option<K>, bool, u8);

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
    /// The most accessed keys in the window that were hits (a key is known
    /// only once it is cached), hottest first; at most eight.
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
    /// The share of the capacity the hot tier may use now: the configured
    /// [`hot_fraction`](crate::cache::TwoTierCacheBuilder::hot_fraction),
    /// or where [hill climbing](crate::cache::TwoTierCacheBuilder::hill_climbing)
    /// has moved it.
    pub hot_fraction: f64,
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
            hot_fraction: 0.0,
        }
    }
}

struct Window<K> {
    /// The last [`WINDOW`] samples: key hash and, for hits, the key.
    /// Counted only when a snapshot is taken, so recording stays cheap.
    ring: VecDeque<(u64, Option<K>)>,
    epoch_total: u32,
    epoch_hits: u32,
    epoch_cold: u32,
    history: VecDeque<f64>,
    cold_baseline: Option<f64>,
    scan: bool,
    samples: u64,
}

impl<K> Window<K> {
    /// Adds a sample; returns whether it completed an epoch.
    fn record(&mut self, hash: u64, key: Option<K>, hit: bool, prior: u8) -> bool {
        let w = self;
        w.samples += 1;
        if w.ring.len() == WINDOW {
            w.ring.pop_front();
        }
        w.ring.push_back((hash, key));
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

/// The detector: the window, the threads' batches, and a lock-free count
/// of skipped samples.
///
/// Each lock sits on lines of its own. Side by side, two threads' batches
/// shared a line that both wrote on every sample, and the window's lock
/// word shared one with the sampling masks that every get reads.
pub(crate) struct PatternDetector<K> {
    window: Padded<Mutex<Window<K>>>,
    /// One per stats stripe: that stripe's samples not yet in the window.
    batches: Box<[Padded<Mutex<Vec<Sample<K>>>>]>,
    skipped: core::sync::atomic::AtomicU64,
}

impl<K: Clone> PatternDetector<K> {
    /// A detector for a cache with `stripes` stats stripes.
    pub(crate) fn new(stripes: usize) -> Self {
        let batches: Box<[_]> = (0..stripes)
            // Allocated here, so that recording allocates nothing.
            .map(|_| Padded(Mutex::new(Vec::with_capacity(BATCH))))
            .collect();
        for (i, b) in batches.iter().enumerate() {
            b.0.set_label(&format!("lockscope::cache pattern batch {i}/{stripes}"));
        }
        let detector = PatternDetector {
            batches,
            window: Padded(Mutex::new(Window {
                ring: VecDeque::with_capacity(WINDOW),
                epoch_total: 0,
                epoch_hits: 0,
                epoch_cold: 0,
                history: VecDeque::with_capacity(HISTORY),
                cold_baseline: None,
                scan: false,
                samples: 0,
            })),
            skipped: core::sync::atomic::AtomicU64::new(0),
        };
        detector.window.0.set_label("lockscope::cache pattern window");
        detector
    }

    /// Records a sampled access in batch `batch` (the caller's stats
    /// stripe), and the batch in the window once it is full, unless the
    /// window is busy: then the batch is dropped and counted as skipped.
    /// `key` is the stored key on a hit; `prior` is the sketch's count of
    /// the key before this access. Returns whether an epoch was completed.
    pub(crate) fn record(
        &self,
        batch: usize,
        hash: u64,
        key: Option<K>,
        hit: bool,
        prior: u8,
    ) -> bool {
        // try-lock-or-skip: only the stripe's owner takes its batch (all
        // threads without a stripe share the last), so this rarely fails.
        let Some(mut b) = self.batches.get(batch).and_then(|b| b.0.try_lock()) else {
            self.skip(1);
            return false;
        };
        b.push((hash, key, hit, prior));
        if b.len() < BATCH {
            return false;
        }
        // try-lock-or-skip: a get never waits for the window.
        let Some(mut w) = self.window.0.try_lock() else {
            self.skip(b.len());
            b.clear();
            return false;
        };
        let mut epoch_done = false;
        for (hash, key, hit, prior) in b.drain(..) {
            epoch_done |= w.record(hash, key, hit, prior);
        }
        epoch_done
    }

    fn skip(&self, n: usize) {
        self.skipped
            .fetch_add(n as u64, core::sync::atomic::Ordering::Relaxed);
    }

    /// The current view, with every thread's batch flushed into it first.
    pub(crate) fn snapshot(&self, hot_fraction: f64) -> Patterns<K> {
        // Off the get path: a snapshot may wait for a recording thread.
        let mut w = self.window.0.lock();
        for batch in self.batches.iter() {
            // Off the get path; the batch's owner holds it only while it
            // records a sample, and takes the window only with `try_lock`.
            for (hash, key, hit, prior) in batch.0.lock().drain(..) {
                w.record(hash, key, hit, prior);
            }
        }
        let total = w.ring.len().max(1) as f64;
        let mut counts: HashMap<u64, (Option<&K>, u32)> = HashMap::new();
        for (hash, key) in &w.ring {
            let c = counts.entry(*hash).or_insert((None, 0));
            c.1 += 1;
            if key.is_some() {
                c.0 = key.as_ref();
            }
        }
        let mut hot: Vec<(&K, u32)> = counts
            .into_values()
            .filter_map(|(k, n)| k.map(|k| (k, n)))
            .filter(|&(_, n)| n >= 2)
            .collect();
        hot.sort_by_key(|&(_, n)| core::cmp::Reverse(n));
        hot.truncate(TOP);
        let hit_ratios: Vec<f64> = w.history.iter().copied().collect();
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
                .map(|(k, n)| HotKey {
                    key: k.clone(),
                    share: f64::from(n) / total,
                })
                .collect(),
            hit_ratios,
            hit_ratio_trend: trend,
            scan_detected: w.scan,
            samples: w.samples,
            skipped: self.skipped.load(core::sync::atomic::Ordering::Relaxed),
            hot_fraction,
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
        let d = PatternDetector::<u64>::new(2);
        let peek = |d: &PatternDetector<u64>| d.window.0.lock().samples;
        for i in 0..BATCH as u64 - 1 {
            assert!(!d.record(0, i, Some(i), true, 1));
            d.record(1, i, None, false, 0);
        }
        assert_eq!(peek(&d), 0, "both batches are one short");
        d.record(0, 99, Some(99), true, 1);
        assert_eq!(peek(&d), BATCH as u64, "batch 0 is full: flushed");
        let p = d.snapshot(0.5);
        assert_eq!(
            p.samples,
            2 * BATCH as u64 - 1,
            "the snapshot flushed batch 1"
        );
        assert_eq!(p.skipped, 0);
        // A busy window drops the full batch, counted.
        let held = d.window.0.lock();
        for i in 0..BATCH as u64 {
            d.record(0, i, None, false, 0);
        }
        drop(held);
        assert_eq!(d.snapshot(0.5).skipped, BATCH as u64);
    }

    #[test]
    fn epochs_close_as_batches_land() {
        let d = PatternDetector::<u64>::new(1);
        let closed = (0..EPOCH as u64)
            .filter(|&i| d.record(0, i, None, i % 2 == 0, 1))
            .count();
        assert_eq!(closed, 1);
        assert_eq!(d.snapshot(0.5).hit_ratios, vec![0.5]);
    }
}
