//! The admission window's size, chosen by miniature simulation: the
//! "MiniSim" of Caffeine's simulator (after Waldspurger et al., "Cache
//! Modeling and Optimization using Miniature Simulation", USENIX ATC 2017),
//! in place of the hill climbing of Caffeine's adaptive W-TinyLFU
//! ("Adaptive Software Cache Management", Middleware 2018).
//!
//! Recency-heavy workloads want a large window (a new key needs time to be
//! reused before it must beat the main region's victims), frequency-heavy
//! ones a small one. Hill climbing finds the size by moving the window a
//! step per period and watching the hit ratio: from 1% to 80% takes a dozen
//! periods, and a period must be long (ten times the capacity in gets, in
//! Caffeine) for the hit ratio's noise to leave the direction readable. On a
//! recency-heavy stream of 2M gets at capacity 10,000 the climb to 80% took
//! 800k gets and cost 5 points of hit ratio against a window that started
//! there.
//!
//! Here the climber runs [`FRACTIONS`]`.len()` miniature W-TinyLFU caches
//! side by side (`mini.rs`), one per window size, each of `1/rate` of the
//! capacity, all fed the gets of the keys whose hash selects them (one key
//! in `rate`): spatial sampling keeps each key's reuse pattern whole, so a
//! miniature's hit ratio estimates that of the full cache with the same
//! window (SHARDS, Waldspurger et al., FAST 2015). Their misses, discounted
//! over a horizon of about four times the capacity in gets, say which
//! window would have done best lately, and the cache's window moves there
//! in one step.
//!
//! A move is not free: a window that grows takes its room from the main
//! region, whose entries the frequency filter chose over time and which are
//! evicted, and near the optimum several sizes score alike (on the real
//! traces sizes from 40% to 100% were within a few sampled misses of each
//! other, and following every change of leader among them cost up to a
//! point of hit ratio). So the window moves only when the best miniature's
//! lead over the current one stands out from their sampling noise: the
//! difference of their misses is compared with its standard error, the
//! square root of the number of sampled gets on which exactly one of the two
//! missed (a paired comparison: the gets both hit or both missed say nothing
//! about which is better).
//!
//! Cost: sampled gets take a cold path that appends the hash to the thread's
//! batch (its stats stripe's: no shared line), and every [`BATCH`] of them
//! replays the batch into the miniatures under a `try_lock` (a busy lock
//! drops the batch). An unsampled get pays one test of its hash. Miniatures
//! hold about [`MINI`] to `2 * MINI` entries; the rate is a power of two of
//! at least [`MIN_RATE`], which bounds the work per get for small caches
//! (whose miniatures are then smaller).

use super::mini::{Mini, MiniSketch};
use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// The simulated window sizes, as shares of the capacity. Not 100%: a
/// window that grows to (nearly) all of the capacity empties the main
/// region, and on the scarab trace the cache then did worse for a long time
/// than the miniature said it would (1% to 100% of the capacity in one
/// move, against a miniature that had always been there).
pub(crate) const FRACTIONS: [f64; 9] = [0.0, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9];
const K: usize = FRACTIONS.len();
/// The least entries a miniature has when the cache is large enough.
const MINI: u64 = 128;
/// At most one key in this many is simulated.
const MIN_RATE: u64 = 16;
/// Sampled misses are discounted over this many times a miniature's
/// capacity in sampled gets (about as many times the cache's capacity in
/// gets).
const HORIZON: f64 = 4.0;
/// Scores are updated, and the leader reconsidered, this many times per
/// miniature's capacity in sampled gets.
const EPOCHS: u32 = 8;
/// A lead must exceed this many standard errors to move the window.
const SIGNIFICANT: f64 = 1.0;
/// A get is sampled if its hash, shifted right by this, has none of the
/// sample mask's bits set: bits the shard choice (the highest) and a
/// shard's index (the lowest) lean on least.
pub(crate) const SHIFT: u32 = 24;
/// Sampled hashes a thread gathers before it replays them.
pub(crate) const BATCH: usize = 16;

/// One key in `rate` is simulated, for a cache of `entries` entries: a
/// power of two, so that miniatures hold `MINI..2 * MINI` entries, and at
/// least [`MIN_RATE`].
pub(crate) fn rate(entries: u64) -> u64 {
    let r = (entries / MINI).max(1);
    let r = if r.is_power_of_two() {
        r
    } else {
        r.next_power_of_two() / 2
    };
    r.max(MIN_RATE)
}

/// Mixes a sampled hash, whose sampling bits are all zero, for the
/// miniatures' index and sketch (SplitMix64's finalizer).
fn mix(h: u64) -> u64 {
    let z = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The climber's state, behind its lock.
pub(crate) struct Climber {
    sketch: MiniSketch,
    minis: Vec<Mini>,
    /// One key in `rate` is simulated.
    rate: u64,
    /// Each miniature's misses at the end of the last epoch.
    last: [u64; K],
    /// Discounted misses per miniature.
    score: [f64; K],
    /// `apart[i * K + j]`: discounted sampled gets on which miniature `i`
    /// hit and `j` missed.
    apart: [f64; K * K],
    /// The discount applied at each epoch's end.
    discount: f64,
    /// Sampled gets since the epoch began, and per epoch.
    epoch: u32,
    epoch_len: u32,
    /// The miniature whose window the cache follows.
    leader: usize,
    /// Whether `rate` was chosen from the cache's entry count (with a
    /// weigher it is a guess until the cache first fills).
    pub(crate) seated: bool,
}

impl Climber {
    /// A climber for a cache of about `entries` entries (`seated` if that
    /// is known), starting at window `start`, the protected segment `hot`
    /// of the main region.
    pub(crate) fn new(entries: u64, seated: bool, start: f64, hot: f64) -> Self {
        let rate = rate(entries);
        let m = u32::try_from(entries.div_ceil(rate).max(1)).unwrap_or(u32::MAX);
        let leader = (0..K)
            .min_by(|&a, &b| {
                (FRACTIONS[a] - start)
                    .abs()
                    .total_cmp(&(FRACTIONS[b] - start).abs())
            })
            .unwrap_or(0);
        let epoch_len = (m / EPOCHS).max(1);
        Climber {
            sketch: MiniSketch::new(m as usize),
            minis: FRACTIONS.iter().map(|&f| Mini::new(m, f, hot)).collect(),
            rate,
            last: [0; K],
            score: [0.0; K],
            apart: [0.0; K * K],
            discount: 1.0 - f64::from(epoch_len) / (HORIZON * f64::from(m)),
            epoch: 0,
            epoch_len,
            leader,
            seated,
        }
    }

    /// The mask of [`SHIFT`]ed hash bits that select sampled keys.
    pub(crate) fn sample_mask(&self) -> u64 {
        self.rate - 1
    }

    /// Sizes the miniatures for a cache of `entries` entries, at the rate
    /// chosen at the start (with a weigher: once, when the cache first
    /// fills and its entry count is known).
    pub(crate) fn seat(&mut self, entries: u64) {
        self.seated = true;
        let m = u32::try_from(entries.div_ceil(self.rate).max(1)).unwrap_or(u32::MAX);
        for mini in &mut self.minis {
            mini.resize(m);
        }
        self.sketch = MiniSketch::new(m as usize);
        self.epoch_len = (m / EPOCHS).max(1);
        self.epoch = 0;
        self.discount = 1.0 - f64::from(self.epoch_len) / (HORIZON * f64::from(m));
    }

    /// The window the cache follows.
    pub(crate) fn fraction(&self) -> f64 {
        FRACTIONS[self.leader]
    }

    /// Replays sampled gets (their hashes); returns the new window fraction
    /// if it changed.
    pub(crate) fn record(&mut self, hashes: &[u64]) -> Option<f64> {
        let before = self.leader;
        for &h in hashes {
            let h = mix(h);
            let freq = self.sketch.add(h);
            let halvings = self.sketch.halvings;
            let mut missed = 0u32;
            for (i, m) in self.minis.iter_mut().enumerate() {
                if !m.access(h, freq, halvings) {
                    missed |= 1 << i;
                }
            }
            if missed != 0 && missed != (1 << K) - 1 {
                for i in (0..K).filter(|i| missed & (1 << i) == 0) {
                    for j in (0..K).filter(|j| missed & (1 << j) != 0) {
                        self.apart[i * K + j] += 1.0;
                    }
                }
            }
            self.epoch += 1;
            if self.epoch == self.epoch_len {
                self.epoch = 0;
                self.end_epoch();
            }
        }
        (self.leader != before).then(|| self.fraction())
    }

    /// Discounts the scores and follows the best miniature if its lead
    /// over the current one stands out from the noise.
    fn end_epoch(&mut self) {
        for x in &mut self.apart {
            *x *= self.discount;
        }
        for (i, m) in self.minis.iter().enumerate() {
            let new = m.misses - self.last[i];
            self.last[i] = m.misses;
            self.score[i] = self.score[i] * self.discount + new as f64;
        }
        let (l, mut b) = (self.leader, self.leader);
        for i in 0..K {
            if self.score[i] < self.score[b] {
                b = i;
            }
        }
        // The lead is the leader's misses less the best's, the gets only
        // the best hit less those only the leader hit.
        let (only_b, only_l) = (self.apart[b * K + l], self.apart[l * K + b]);
        if only_b - only_l > SIGNIFICANT * (only_b + only_l).sqrt() {
            self.leader = b;
        }
    }
}

/// A thread's sampled hashes not yet replayed, in its stats stripe's slot:
/// only the stripe's owner touches it (a stripe changes owner through the
/// stripe's claim, which orders the two owners' accesses).
pub(crate) struct Batch {
    hashes: [AtomicU64; BATCH],
    len: AtomicUsize,
}

impl Batch {
    pub(crate) fn new() -> Self {
        Batch {
            hashes: core::array::from_fn(|_| AtomicU64::new(0)),
            len: AtomicUsize::new(0),
        }
    }

    /// Adds `hash`; once the batch is full, empties it and returns its
    /// hashes.
    pub(crate) fn push(&self, hash: u64) -> Option<[u64; BATCH]> {
        let n = self.len.load(Relaxed).min(BATCH - 1);
        self.hashes[n].store(hash, Relaxed);
        if n + 1 < BATCH {
            self.len.store(n + 1, Relaxed);
            return None;
        }
        self.len.store(0, Relaxed);
        Some(core::array::from_fn(|i| self.hashes[i].load(Relaxed)))
    }
}

/// The window fraction the shards follow.
///
/// Kept as its bits XOR the initial fraction's, so the atomic starts at 0:
/// the `sync` facade's checker atomics are created lazily at their first
/// use from an initial value passed through a thread-local, and under
/// shuttle another task's first use of another atomic can run in between
/// and hand over its own initial value; every other atomic of the cache
/// starts at 0, so a zero start cannot be told apart from a mix-up.
pub(crate) struct Target {
    initial: u64,
    bits: AtomicU64,
}

impl Target {
    pub(crate) fn new(fraction: f64) -> Self {
        Target {
            initial: fraction.to_bits(),
            bits: AtomicU64::new(0),
        }
    }

    /// The current fraction. (`#[inline]`: the cache's generic methods are
    /// compiled in the user's crate, which would otherwise call it.)
    #[inline]
    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Relaxed) ^ self.initial)
    }

    pub(crate) fn set(&self, fraction: f64) {
        self.bits.store(fraction.to_bits() ^ self.initial, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays `keys` (as hashes, every one sampled) into `c`; returns the
    /// fractions it moved to.
    fn replay(c: &mut Climber, keys: impl Iterator<Item = u64>) -> Vec<f64> {
        let keys: Vec<u64> = keys.collect();
        keys.chunks(BATCH)
            .filter_map(|chunk| c.record(chunk))
            .collect()
    }

    /// xorshift64.
    fn next(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn the_rate_keeps_miniatures_small_and_the_work_bounded() {
        assert_eq!(rate(100), MIN_RATE);
        assert_eq!(rate(10_000), 64);
        for entries in [5_000, 10_000, 100_000, 1 << 20, 3_000_000] {
            let m = entries / rate(entries);
            assert!((MINI..2 * MINI).contains(&m), "{entries}: {m}");
        }
    }

    #[test]
    fn recency_grows_the_window_and_frequency_shrinks_it() {
        // Reuse at short distances of fresh keys: only recency pays.
        let mut c = Climber::new(200 * MIN_RATE, true, 0.01, 0.8);
        let mut x = 7;
        let mut recent: Vec<u64> = Vec::new();
        let stream = (0..60_000u64).map(|i| {
            let r = next(&mut x);
            let k = if recent.is_empty() || r % 10 < 3 {
                1_000_000 + i
            } else {
                recent[recent.len() - 1 - (r as usize >> 8) % recent.len().min(150)]
            };
            recent.push(k);
            k
        });
        replay(&mut c, stream);
        assert!(c.fraction() >= 0.6, "recency: {}", c.fraction());
        // A loop somewhat larger than the cache, with frequent keys: LRU
        // gets nothing, a frequency filter keeps part of the loop.
        let stream = (0..200_000u64).map(|i| {
            if i % 3 == 0 {
                next(&mut x) % 20
            } else {
                i % 300
            }
        });
        replay(&mut c, stream);
        assert!(c.fraction() <= 0.1, "loop: {}", c.fraction());
    }

    #[test]
    fn noise_moves_the_window_seldom() {
        // Uniform keys over twice the capacity: every window scores about
        // the same, and a move on every epoch (25 sampled gets here) would
        // be 2,000 a run.
        let mut moves = 0;
        for seed in 1..=10 {
            let mut c = Climber::new(200 * MIN_RATE, true, 0.01, 0.8);
            let mut x = seed;
            moves += replay(&mut c, (0..50_000).map(|_| next(&mut x) % 400)).len();
        }
        assert!(moves <= 500, "{moves} moves in 10 runs");
    }
}
