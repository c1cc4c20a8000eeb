//! A concurrent in-memory cache: [`TwoTierCache`](crate::cache::TwoTierCache).
//!
//! ```
//! use lockscope::cache::TwoTierCache;
//!
//! let cache: TwoTierCache<u64, String> = TwoTierCache::builder()
//!     .capacity(10_000)
//!     .build()
//!     .expect("valid configuration");
//!
//! cache.insert(1, "one".to_string());
//! assert_eq!(cache.get(&1).as_deref(), Some("one"));
//!
//! // Concurrent misses on one key run the loader once.
//! let v = cache.get_or_insert_with(2, || "two".to_string());
//! assert_eq!(v, "two");
//!
//! let stats = cache.stats();
//! assert_eq!(stats.hits, 1);
//! ```
//!
//! # Design
//!
//! Keys are spread over shards, each a lockscope [`RwLock`] around an
//! open-addressing index, a slab of entries and two CLOCK queues: a small
//! *hot* tier and a larger *warm* tier. A get takes only the shard's read
//! lock: recency is a per-entry reference counter raised with a relaxed
//! store (CLOCK), so readers never need the write lock. Frequency lives in a
//! per-shard Count-Min Sketch of 4-bit atomic counters (TinyLFU), counted
//! after the read lock is released. Inserts take the write lock; a new key
//! in a full shard is admitted only if the sketch says it is more frequent
//! than the warm tier's CLOCK victim. See `tiers.rs` for the movement
//! between tiers.
//!
//! Observability (on by default, [`TwoTierCacheBuilder::observability`](crate::cache::TwoTierCacheBuilder::observability))
//! costs a get a thread-local lookup and two uncontended counter updates:
//! hits and misses go to a stripe owned by the calling thread. One get in 64
//! reads the clock for the latency histogram, and one in 64 is offered to
//! the pattern detector, which skips it if its window is busy.

mod builder;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod histogram;
mod pattern;
mod shard;
mod sketch;
mod stats;
mod tiers;

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};
use std::hash::RandomState;
use std::sync::Arc;
use std::time::Instant;

pub use builder::{BuildError, TwoTierCacheBuilder};
pub use histogram::HistogramSnapshot;
pub use pattern::{HotKey, Patterns, Trend};
pub use stats::CacheStats;

use histogram::Histogram;
use pattern::PatternDetector;
use shard::Shard;
use stats::Stripes;

#[allow(unused_imports)]
use crate::RwLock;
use crate::{Condvar, Mutex};

/// Sampled latency histograms of a cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheMetrics {
    /// Latency of sampled [`TwoTierCache::get`] calls.
    pub get: HistogramSnapshot,
    /// Latency of sampled [`TwoTierCache::insert`] calls.
    pub insert: HistogramSnapshot,
}

/// Everything observability adds; absent when it is off.
struct Observer<K> {
    stripes: Arc<Stripes>,
    get_latency: Histogram,
    insert_latency: Histogram,
    patterns: PatternDetector<K>,
    /// `interval - 1`, the interval a power of two.
    mask: u64,
    /// Offsets the detector's samples from the histogram's.
    pattern_offset: u64,
}

/// A concurrent, sharded, two-tier cache with TinyLFU admission.
///
/// `get` needs `V: Clone` (it returns a copy; store an `Arc` for large
/// values). All methods take `&self`; share the cache with an `Arc` or a
/// scoped thread.
pub struct TwoTierCache<K, V, S = RandomState> {
    shards: Box<[Shard<K, V>]>,
    hasher: S,
    capacity: usize,
    obs: Option<Box<Observer<K>>>,
}

impl<K, V> TwoTierCache<K, V, RandomState> {
    /// A builder with the defaults: no capacity (it must be set), hot
    /// fraction 0.7, automatic shard count, observability on, 1-in-64
    /// sampling, [`RandomState`] hashing.
    pub fn builder() -> TwoTierCacheBuilder<K, V, RandomState> {
        TwoTierCacheBuilder::default()
    }
}

impl<K: Clone, V, S> TwoTierCache<K, V, S> {
    fn from_builder(b: TwoTierCacheBuilder<K, V, S>, nshards: usize) -> Self {
        let base = b.capacity / nshards;
        let extra = b.capacity % nshards;
        let shards = (0..nshards)
            .map(|i| {
                let cap = base + usize::from(i < extra);
                let hot = ((cap as f64) * b.hot_fraction) as usize;
                Shard::new(cap, hot.min(cap - 1))
            })
            .collect();
        let interval = u64::from(b.sample_interval.next_power_of_two());
        let obs = b.observability.then(|| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            Box::new(Observer {
                stripes: Stripes::new((cpus * 4).max(16)),
                get_latency: Histogram::new(),
                insert_latency: Histogram::new(),
                patterns: PatternDetector::new(),
                mask: interval - 1,
                pattern_offset: interval / 2,
            })
        });
        TwoTierCache {
            shards,
            hasher: b.hasher,
            capacity: b.capacity,
            obs,
        }
    }
}

/// A loader in flight for [`TwoTierCache::get_or_insert_with`].
pub(crate) struct Flight<V> {
    state: Mutex<FlightState<V>>,
    done: Condvar,
}

enum FlightState<V> {
    Running,
    Done(V),
    /// The loader panicked; waiters retry.
    Abandoned,
}

/// The leader's hold on a flight: on drop (normal or unwinding) it leaves
/// the shard's list, marks an unfinished flight abandoned and wakes waiters.
struct Lead<'a, K, V> {
    shard: &'a Shard<K, V>,
    flight: &'a Arc<Flight<V>>,
}

impl<K, V> Lead<'_, K, V> {
    fn finish(self, v: V) {
        *self.flight.state.lock() = FlightState::Done(v);
    }
}

impl<K, V> Drop for Lead<'_, K, V> {
    fn drop(&mut self) {
        self.shard
            .flights
            .lock()
            .retain(|(_, _, f)| !Arc::ptr_eq(f, self.flight));
        {
            let mut st = self.flight.state.lock();
            if matches!(*st, FlightState::Running) {
                *st = FlightState::Abandoned;
            }
        }
        self.flight.done.notify_all();
    }
}

impl<K, V, S> TwoTierCache<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    #[inline]
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        // One multiply of mixing, so a weak user hasher still spreads keys
        // over shards (high bits) and index slots (low bits).
        let h = self.hasher.hash_one(key);
        let h = (h ^ (h >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard<K, V> {
        let i = ((hash >> 32) * self.shards.len() as u64) >> 32;
        &self.shards[i as usize]
    }

    /// A copy of the value for `key`, if cached. Marks the entry as
    /// recently used and counts the access in the frequency sketch.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(obs) = self.obs.as_deref() else {
            let hash = self.hash(key);
            let shard = self.shard(hash);
            let found = shard::lookup(shard, hash, key, false);
            if found.count {
                shard.sketch.increment(hash);
            }
            return found.value;
        };
        let stripe = Stripes::local(&obs.stripes);
        let n = stripe.tick();
        let start = (n & obs.mask == 0).then(Instant::now);
        let sample = n.wrapping_add(obs.pattern_offset) & obs.mask == 0;
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let found = shard::lookup(shard, hash, key, sample);
        let (v, k) = (found.value, found.key);
        let prior = if found.count {
            shard.sketch.increment(hash)
        } else {
            // Not counted: report it as known (it is cached and hot).
            1
        };
        if v.is_some() {
            stripe.hit();
        } else {
            stripe.miss();
        }
        if let Some(t) = start {
            obs.get_latency.record(t.elapsed());
        }
        if sample {
            obs.patterns.record(hash, k, v.is_some(), prior);
        }
        v
    }

    /// Stores `value` for `key`. A key already cached has its value
    /// replaced. A new key in a full shard is admitted only if it is more
    /// frequent than the entry it would evict; otherwise it is dropped (see
    /// [`CacheStats::rejections`]).
    pub fn insert(&self, key: K, value: V) {
        let start = self.obs.as_deref().and_then(|obs| {
            let n = Stripes::local(&obs.stripes).tick();
            (n & obs.mask == 0).then(Instant::now)
        });
        let hash = self.hash(&key);
        let shard = self.shard(hash);
        // A write is an access too: without this, a cache filled only by
        // inserts would see every candidate at frequency zero.
        if shard.sketch.frequency(hash) == 0 {
            shard.sketch.increment(hash);
        }
        {
            let mut inner = shard.inner.write();
            inner.insert(
                hash,
                key,
                value,
                &shard.sketch,
                &shard.counters.0,
                self.obs.is_some(),
            );
            shard
                .len
                .store(inner.len(), core::sync::atomic::Ordering::Relaxed);
        }
        if let (Some(t), Some(obs)) = (start, self.obs.as_deref()) {
            obs.insert_latency.record(t.elapsed());
        }
    }

    /// Removes `key`, returning its value if it was cached.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let mut inner = shard.inner.write();
        let v = inner.remove(hash, key);
        shard
            .len
            .store(inner.len(), core::sync::atomic::Ordering::Relaxed);
        v
    }

    /// Whether `key` is cached. Unlike [`Self::get`] this neither marks the
    /// entry as used nor counts a hit or a miss.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.shard(hash).inner.read().find(hash, key).is_some()
    }

    /// The cached value for `key`, or the value `load` returns, which is then
    /// inserted (subject to admission, like [`Self::insert`]).
    ///
    /// Single flight: while one caller's `load` runs for a key, other callers
    /// that miss on that key wait for its result instead of running their
    /// own. If that `load` panics, the panic propagates to its caller only;
    /// the waiters wake and try again, one of them running its own loader.
    pub fn get_or_insert_with(&self, key: K, load: impl FnOnce() -> V) -> V {
        if let Some(v) = self.get(&key) {
            return v;
        }
        let hash = self.hash(&key);
        let shard = self.shard(hash);
        let mut load = Some(load);
        loop {
            let (flight, leader) = {
                let mut flights = shard.flights.lock();
                match flights.iter().find(|(h, k, _)| *h == hash && *k == key) {
                    Some((_, _, f)) => (Arc::clone(f), false),
                    None => {
                        let f = Arc::new(Flight {
                            state: Mutex::new(FlightState::Running),
                            done: Condvar::new(),
                        });
                        flights.push((hash, key.clone(), Arc::clone(&f)));
                        (f, true)
                    }
                }
            };
            if leader {
                let lead = Lead {
                    shard,
                    flight: &flight,
                };
                // A flight may have completed between our miss and our
                // registration: look again before loading.
                let v = match shard::lookup(shard, hash, &key, false).value {
                    Some(v) => v,
                    None => {
                        let load = load.take().expect("a caller leads at most once");
                        let v = load();
                        self.insert(key.clone(), v.clone());
                        v
                    }
                };
                lead.finish(v.clone());
                return v;
            }
            let mut st = flight.state.lock();
            loop {
                match &*st {
                    FlightState::Running => flight.done.wait(&mut st),
                    FlightState::Done(v) => return v.clone(),
                    FlightState::Abandoned => break,
                }
            }
            // The leader panicked: go round again, perhaps as the leader.
        }
    }

    /// Entries cached now (a sum of per-shard counts, each exact at some
    /// moment during the call). Never more than [`Self::capacity`].
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.len.load(core::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Whether [`Self::len`] is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry and forgets the frequency history. Counters,
    /// histograms and the pattern detector keep their history.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut inner = shard.inner.write();
            inner.clear();
            shard.sketch.clear();
            shard.len.store(0, core::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The most entries the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A snapshot of the counters; all zero when observability is off.
    pub fn stats(&self) -> CacheStats {
        let Some(obs) = self.obs.as_deref() else {
            return CacheStats::default();
        };
        let (hits, misses) = obs.stripes.totals();
        let mut out = CacheStats {
            hits,
            misses,
            ..CacheStats::default()
        };
        for shard in self.shards.iter() {
            shard.counters.0.add_to(&mut out);
        }
        out
    }

    /// The sampled get and insert latency histograms; empty when
    /// observability is off.
    pub fn metrics(&self) -> CacheMetrics {
        match self.obs.as_deref() {
            Some(obs) => CacheMetrics {
                get: obs.get_latency.snapshot(),
                insert: obs.insert_latency.snapshot(),
            },
            None => {
                let empty = Histogram::new().snapshot();
                CacheMetrics {
                    get: empty.clone(),
                    insert: empty,
                }
            }
        }
    }

    /// The pattern detector's view; empty when observability is off.
    pub fn patterns(&self) -> Patterns<K> {
        self.obs
            .as_deref()
            .map_or_else(Patterns::default, |obs| obs.patterns.snapshot())
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }
}

impl<K, V, S> core::fmt::Debug for TwoTierCache<K, V, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TwoTierCache")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .field("observability", &self.obs.is_some())
            .finish_non_exhaustive()
    }
}
