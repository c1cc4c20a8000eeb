//! The access-pattern detector: a sampled window of recent accesses.
//!
//! The cache hands it one access in N (64 by default). The window sits
//! behind a lockscope [`Mutex`] taken with `try_lock`: if another thread is
//! recording, the sample is skipped, so a get never waits here.
//!
//! From the window it reports the hottest keys (their share of the sampled
//! accesses), the hit ratio per epoch of 256 samples and its trend, and
//! whether a scan seems to be running. The scan heuristic: the share of
//! sampled accesses that miss on a key the sketch has never counted ("cold
//! misses") jumps well above its running baseline. A scan touches keys once
//! each, so nearly all of its accesses are cold misses; a stationary workload
//! keeps that share steady, however skewed it is.

use std::collections::{HashMap, VecDeque};

use crate::Mutex;

/// Samples kept in the window for the hot-key view.
const WINDOW: usize = 1024;
/// Samples per hit-ratio epoch.
const EPOCH: u32 = 256;
/// Epochs of hit-ratio history kept.
const HISTORY: usize = 32;
/// Hot keys reported.
const TOP: usize = 8;

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

/// The detector: the window plus a lock-free count of skipped samples.
pub(crate) struct PatternDetector<K> {
    window: Mutex<Window<K>>,
    skipped: core::sync::atomic::AtomicU64,
}

impl<K: Clone> PatternDetector<K> {
    pub(crate) fn new() -> Self {
        PatternDetector {
            window: Mutex::new(Window {
                ring: VecDeque::with_capacity(WINDOW),
                epoch_total: 0,
                epoch_hits: 0,
                epoch_cold: 0,
                history: VecDeque::with_capacity(HISTORY),
                cold_baseline: None,
                scan: false,
                samples: 0,
            }),
            skipped: core::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Records a sampled access, or skips it if the window is busy.
    /// `key` is the stored key on a hit; `prior` is the sketch's count of
    /// the key before this access. Returns whether this sample completed an
    /// epoch.
    pub(crate) fn record(&self, hash: u64, key: Option<K>, hit: bool, prior: u8) -> bool {
        // try-lock-or-skip: a get never waits for the window.
        let Some(mut w) = self.window.try_lock() else {
            self.skipped
                .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            return false;
        };
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

    /// The current view.
    pub(crate) fn snapshot(&self, hot_fraction: f64) -> Patterns<K> {
        // Off the get path: a snapshot may wait for a recording thread.
        let w = self.window.lock();
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
