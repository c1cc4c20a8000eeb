//! [`TwoTierCacheBuilder`] and [`BuildError`].

use super::{RandomState, TwoTierCache};
use core::fmt;
use core::marker::PhantomData;

/// More shards than this are not made (`.shards(n)` is capped): each has
/// its own lock, sketch and tables, and past a few per thread they only cost
/// memory.
pub const MAX_SHARDS: usize = 1 << 12;
/// Sampling intervals are capped here (one operation in 2^31), so that
/// rounding up to a power of two cannot overflow.
pub const MAX_SAMPLE_INTERVAL: u32 = 1 << 31;

/// Why [`TwoTierCacheBuilder::build`] refused a configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BuildError {
    /// The capacity is zero (or was never set with `.capacity(n)`).
    ZeroCapacity,
    /// A shard would hold more entries than its index can address
    /// (`u32::MAX / 2`); use more shards.
    CapacityTooLarge,
    /// The hot fraction is not strictly between 0 and 1 (or is NaN).
    HotFractionOutOfRange(f64),
    /// Zero shards were asked for. (More than [`MAX_SHARDS`] are capped.)
    ZeroShards,
    /// The sampling interval is zero.
    ZeroSampleInterval,
    /// The latency sampling interval is zero.
    ZeroLatencyInterval,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroCapacity => {
                f.write_str("cache capacity must be at least 1 entry (set it with .capacity(n))")
            }
            BuildError::CapacityTooLarge => {
                f.write_str("cache capacity per shard exceeds u32::MAX / 2; use more shards")
            }
            BuildError::HotFractionOutOfRange(x) => {
                write!(f, "hot fraction must be strictly between 0 and 1, got {x}")
            }
            BuildError::ZeroShards => f.write_str("a cache needs at least 1 shard"),
            BuildError::ZeroSampleInterval => {
                f.write_str("the sampling interval must be at least 1 (1 = every access)")
            }
            BuildError::ZeroLatencyInterval => f.write_str(
                "the latency sampling interval must be at least 1 (1 = every operation)",
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// Configures a [`TwoTierCache`]; made by [`TwoTierCache::builder`].
#[derive(Clone, Debug)]
pub struct TwoTierCacheBuilder<K, V, S = RandomState> {
    pub(crate) capacity: usize,
    pub(crate) hot_fraction: f64,
    pub(crate) shards: Option<usize>,
    pub(crate) observability: bool,
    pub(crate) sample_interval: u32,
    pub(crate) latency_interval: u32,
    pub(crate) hill_climbing: bool,
    pub(crate) hasher: S,
    marker: PhantomData<fn(K, V)>,
}

impl<K, V> Default for TwoTierCacheBuilder<K, V, RandomState> {
    fn default() -> Self {
        TwoTierCacheBuilder {
            capacity: 0,
            hot_fraction: 0.7,
            shards: None,
            observability: true,
            sample_interval: 64,
            latency_interval: 256,
            hill_climbing: false,
            hasher: RandomState::new(),
            marker: PhantomData,
        }
    }
}

impl<K, V, S> TwoTierCacheBuilder<K, V, S> {
    /// The most entries the cache holds (required; at least 1). The bound is
    /// exact: `len()` never exceeds it.
    pub fn capacity(mut self, entries: usize) -> Self {
        self.capacity = entries;
        self
    }

    /// The share of each shard's capacity that the hot (protected) tier may
    /// use, strictly between 0 and 1. Default 0.7: the hot tier is the
    /// protected part of the cache, and on the benchmark streams 0.6-0.8
    /// beat smaller values by up to two points of hit ratio.
    pub fn hot_fraction(mut self, fraction: f64) -> Self {
        self.hot_fraction = fraction;
        self
    }

    /// The number of shards (each its own lock, sketch and tiers). Default:
    /// four per CPU rounded up to a power of two, at most 64, and fewer if a
    /// shard would hold under 64 entries. An explicit count is lowered to the
    /// capacity if it exceeds it.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// Whether to keep stats, latency histograms and the pattern detector.
    /// Default on. Off, [`TwoTierCache::stats`] reads all zeros and
    /// [`TwoTierCache::metrics`] and [`TwoTierCache::patterns`] are empty.
    pub fn observability(mut self, on: bool) -> Self {
        self.observability = on;
        self
    }

    /// Offer one get in `n` to the pattern detector. Default 64. `n` is
    /// rounded up to a power of two; gets are counted per thread and cache,
    /// and every `n`-th of them is sampled. Values above
    /// [`MAX_SAMPLE_INTERVAL`] are capped to it.
    pub fn sample_interval(mut self, n: u32) -> Self {
        // Rounded up to a power of two when built: cap it where that fits.
        self.sample_interval = n.min(MAX_SAMPLE_INTERVAL);
        self
    }

    /// Time one get and one insert in `n` for the latency histograms of
    /// [`TwoTierCache::metrics`]. Default 256: a timed operation reads the
    /// precise clock twice, about 28 ns each on the benchmark machines, as
    /// much as a whole single-threaded get. Rounded up to a power of two and capped
    /// like [`Self::sample_interval`]; counted on the same per-thread counts.
    pub fn latency_interval(mut self, n: u32) -> Self {
        self.latency_interval = n.min(MAX_SAMPLE_INTERVAL);
        self
    }

    /// Whether to let the hot/warm split follow the workload (hill
    /// climbing, as Caffeine does for its window): every ten times the
    /// capacity in gets, the hot fraction moves a step in whichever
    /// direction last raised the hit ratio, in steps that shrink as it
    /// settles. A fall of the hit ratio by five points or more is taken as
    /// a workload move: the hot fraction halves and the frequency history
    /// is halved, so the new hot set gets in sooner. Starts from
    /// [`Self::hot_fraction`]; stays within 0.05..=0.95.
    ///
    /// Default **off**. On the benchmark streams it gained 0.25-0.55 points
    /// of hit ratio on stationary Zipf and about 0.4 on the phase-change
    /// stream, and was level (within 0.1) on Zipf with scans; but a long scan looks like a
    /// workload move, halves the hot tier and takes the protection of the
    /// frequent keys away, so scan resistance is weaker with it on (see
    /// `docs/cache.md`). Turn it on for workloads whose hot set moves.
    /// Needs [`Self::observability`] (it reads the hit and miss counts);
    /// without it the split stays fixed. The current split is
    /// [`Patterns::hot_fraction`](crate::cache::Patterns::hot_fraction).
    pub fn hill_climbing(mut self, on: bool) -> Self {
        self.hill_climbing = on;
        self
    }

    /// Hash keys with `hasher` instead of the default [`RandomState`]
    /// (foldhash, randomly seeded). For keys an attacker chooses, SipHash:
    /// `.hasher(std::hash::RandomState::new())`.
    pub fn hasher<S2>(self, hasher: S2) -> TwoTierCacheBuilder<K, V, S2> {
        TwoTierCacheBuilder {
            capacity: self.capacity,
            hot_fraction: self.hot_fraction,
            shards: self.shards,
            observability: self.observability,
            sample_interval: self.sample_interval,
            latency_interval: self.latency_interval,
            hill_climbing: self.hill_climbing,
            hasher,
            marker: PhantomData,
        }
    }

    /// Checks the configuration and builds the cache.
    pub fn build(self) -> Result<TwoTierCache<K, V, S>, BuildError>
    where
        K: Clone,
    {
        if self.capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        let f = self.hot_fraction;
        if !(f > 0.0 && f < 1.0) {
            return Err(BuildError::HotFractionOutOfRange(f));
        }
        if self.sample_interval == 0 {
            return Err(BuildError::ZeroSampleInterval);
        }
        if self.latency_interval == 0 {
            return Err(BuildError::ZeroLatencyInterval);
        }
        let shards = match self.shards {
            Some(0) => return Err(BuildError::ZeroShards),
            Some(n) => n.min(self.capacity).min(MAX_SHARDS),
            None => {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                (cpus * 4)
                    .next_power_of_two()
                    .min(64)
                    .min((self.capacity / 64).max(1))
            }
        };
        if self.capacity / shards + 1 > (u32::MAX / 2) as usize {
            return Err(BuildError::CapacityTooLarge);
        }
        Ok(TwoTierCache::from_builder(self, shards))
    }
}
