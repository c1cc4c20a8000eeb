//! [`TwoTierCacheBuilder`] and [`BuildError`].

use super::{Listener, RandomState, RemovalCause, TwoTierCache, Weigher};
use core::fmt;
use core::marker::PhantomData;
use std::sync::Arc;

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
    /// The protected fraction ([`TwoTierCacheBuilder::hot_fraction`]) is
    /// not strictly between 0 and 1 (or is NaN).
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
#[derive(Clone)]
pub struct TwoTierCacheBuilder<K, V, S = RandomState> {
    pub(crate) capacity: usize,
    pub(crate) hot_fraction: f64,
    /// The window's share of the capacity at the start.
    pub(crate) window_fraction: f64,
    pub(crate) weigher: Option<Weigher<K, V>>,
    pub(crate) listener: Option<Listener<K, V>>,
    pub(crate) shards: Option<usize>,
    pub(crate) observability: bool,
    pub(crate) sample_interval: u32,
    pub(crate) latency_interval: u32,
    pub(crate) adaptive_window: bool,
    pub(crate) hasher: S,
    marker: PhantomData<fn(K, V)>,
}

/// The admission window's share of the capacity at the start (Caffeine's).
const WINDOW: f64 = 0.01;

impl<K, V, S> fmt::Debug for TwoTierCacheBuilder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwoTierCacheBuilder")
            .field("capacity", &self.capacity)
            .field("hot_fraction", &self.hot_fraction)
            .field("shards", &self.shards)
            .field("observability", &self.observability)
            .field("sample_interval", &self.sample_interval)
            .field("latency_interval", &self.latency_interval)
            .field("adaptive_window", &self.adaptive_window)
            .field("weigher", &self.weigher.is_some())
            .field("eviction_listener", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl<K, V> Default for TwoTierCacheBuilder<K, V, RandomState> {
    fn default() -> Self {
        TwoTierCacheBuilder {
            capacity: 0,
            hot_fraction: 0.8,
            window_fraction: WINDOW,
            weigher: None,
            listener: None,
            shards: None,
            observability: true,
            sample_interval: 64,
            latency_interval: 256,
            adaptive_window: true,
            hasher: RandomState::new(),
            marker: PhantomData,
        }
    }
}

impl<K, V, S> TwoTierCacheBuilder<K, V, S> {
    /// The most entries the cache holds, or with a [`Self::weigher`] the
    /// most total weight (required; at least 1). The bound is exact:
    /// [`TwoTierCache::weighted_size`] never exceeds it. It is split evenly
    /// over the shards, and a value heavier than a shard's share is refused
    /// ([`TwoTierCache::max_weight`]).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The share of the main region (the capacity less the admission
    /// window) kept for the protected segment: entries used again after
    /// admission, which a scan or a burst of new keys cannot evict directly.
    /// Strictly between 0 and 1; default 0.8, as in Caffeine.
    pub fn hot_fraction(mut self, fraction: f64) -> Self {
        self.hot_fraction = fraction;
        self
    }

    /// Weigh entries with `weigher` (called once per `insert`, before any
    /// lock is taken); the capacity is then in weight. A weight of 0 counts
    /// as 1. Default: every entry weighs 1.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u64 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Call `listener` with the key, the value and the cause of every
    /// entry that leaves the cache: evicted ([`RemovalCause::Capacity`]),
    /// removed ([`RemovalCause::Removed`]) or whose value an insert
    /// replaced ([`RemovalCause::Replaced`], with the old value). It runs on
    /// the thread whose operation removed the entry, after the shard's lock
    /// is released, so it may use the cache. If it panics, the cache stays
    /// consistent: the operation's other removals are still delivered and
    /// the panic then reaches the operation's caller.
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(K, V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
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
    /// precise clock twice, which costs about as much as a whole get.
    /// Rounded up to a power of two and capped like
    /// [`Self::sample_interval`]; counted on the same per-thread counts.
    pub fn latency_interval(mut self, n: u32) -> Self {
        self.latency_interval = n.min(MAX_SAMPLE_INTERVAL);
        self
    }

    /// Whether the admission window's size follows the workload, as in
    /// Caffeine's adaptive W-TinyLFU: recency-heavy workloads get a large
    /// window, frequency-heavy ones a small one. The size is chosen by
    /// miniature caches, one per window size, fed the gets of a hash sample
    /// of the keys (see `docs/cache.md`). Default **on**. It is fed through
    /// the stats stripes, so it needs [`Self::observability`]; without it,
    /// or off, the window stays at 1% of the capacity. The current size
    /// is [`Patterns::window_fraction`](crate::cache::Patterns::window_fraction).
    pub fn adaptive_window(mut self, on: bool) -> Self {
        self.adaptive_window = on;
        self
    }

    /// The earlier name of [`Self::adaptive_window`] (the window was sized
    /// by hill climbing then).
    #[deprecated(
        note = "renamed `adaptive_window`: the window is no longer sized by hill climbing"
    )]
    pub fn hill_climbing(self, on: bool) -> Self {
        self.adaptive_window(on)
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
            adaptive_window: self.adaptive_window,
            window_fraction: self.window_fraction,
            weigher: self.weigher,
            listener: self.listener,
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
            None => (super::cpus() * 4)
                .next_power_of_two()
                .min(64)
                .min((self.capacity / 64).max(1)),
        };
        if self.capacity / shards + 1 > (u32::MAX / 2) as usize {
            return Err(BuildError::CapacityTooLarge);
        }
        Ok(TwoTierCache::from_builder(self, shards))
    }
}
