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
//! open-addressing index and a slab of entries, with its own frequency
//! sketch. The policy is W-TinyLFU, as in Caffeine (see `policy.rs`): a new
//! key lands in a small admission *window*; the window's victims compete
//! for the *main* region (probation, then protected once used again) with
//! the main region's victims, on frequencies kept in a Count-Min Sketch
//! with a doorkeeper (`sketch.rs`); the window's size follows the workload,
//! chosen by miniature caches fed a hash sample of the gets (`climb.rs`).
//! The regions are CLOCK queues, so a get takes only the shard's read lock:
//! it raises the entry's access byte with a relaxed store, and the hand
//! that next passes the entry does what an LRU list would have done at the
//! hit.
//!
//! Observability (on by default, [`TwoTierCacheBuilder::observability`](crate::cache::TwoTierCacheBuilder::observability))
//! costs an unsampled hit one uncontended counter update (a miss two): gets
//! and misses are counted in a stripe owned by the calling thread, and the
//! get count also picks the sampled gets. One get in 64 is offered to the
//! pattern detector, which skips it if its window is busy; one in 256 reads
//! the clock twice for the latency histogram. The window climber is fed
//! through the stripes, so it needs observability; a get of a key it
//! samples (one in 16 or more) takes a cold path that appends the hash to
//! the thread's batch.
//!
//! # Bad input
//!
//! * A zero capacity: [`TwoTierCacheBuilder::build`](crate::cache::TwoTierCacheBuilder::build) returns
//!   [`BuildError::ZeroCapacity`](crate::cache::BuildError::ZeroCapacity); [`TwoTierCache::new`](crate::cache::TwoTierCache::new) panics.
//! * A value heavier than a shard's capacity (the capacity divided by the
//!   number of shards, see [`TwoTierCache::max_weight`](crate::cache::TwoTierCache::max_weight)): `insert` refuses
//!   it and returns `false`; an entry the key had is removed (the listener
//!   hears of it as [`RemovalCause::Replaced`](crate::cache::RemovalCause::Replaced)). A weight of 0 counts as 1.
//! * A weigher that panics: the panic reaches the caller of the `insert`,
//!   before any lock is taken; the cache is unchanged.
//! * An eviction listener that panics: it runs after the shard's lock is
//!   released, so the cache is consistent and unlocked; the other removals
//!   of the same operation are still delivered, then the first panic is
//!   resumed in the caller of the operation.
//! * A loader that panics in `get_or_insert_with`: the panic reaches its own
//!   caller; waiters retry, one of them running its own loader.

mod builder;
mod climb;
mod flight;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod hasher;
mod mini;
mod pattern;
mod policy;
mod queue;
mod shard;
mod sketch;
mod stats;

use core::borrow::Borrow;
use core::convert::Infallible;
use core::hash::{BuildHasher, Hash};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::time::Instant;

pub use crate::histogram::Histogram;
pub use builder::{BuildError, MAX_SAMPLE_INTERVAL, MAX_SHARDS, TwoTierCacheBuilder};
pub use hasher::RandomState;
pub use pattern::{HotKey, Patterns, Trend};
pub use shard::{FLIGHT_LOCK_LABEL, SHARD_LOCK_LABEL};
pub use stats::CacheStats;

use climb::{Batch, Climber, Target};
use flight::{Flight, Lead, State};
use pattern::PatternDetector;
use shard::{Removals, Settings, Shard};
use sketch::Padded;
use stats::{Local, StripeSet};

use crate::Mutex;
#[allow(unused_imports)]
use crate::RwLock;
use crate::sync::atomic::Ordering::Relaxed;

/// The machine's available parallelism, read once per process: it sizes
/// the default shard count and the stats stripes, and reading it costs
/// several system calls (the affinity mask, the cgroup's CPU quota), more
/// than building a small cache does.
pub(crate) fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Why an entry left the cache, as told to the eviction listener
/// ([`TwoTierCacheBuilder::eviction_listener`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemovalCause {
    /// Evicted by the policy to make room.
    Capacity,
    /// Removed by [`TwoTierCache::remove`], [`TwoTierCache::retain`] or
    /// [`TwoTierCache::clear`].
    Removed,
    /// Its value was replaced by an `insert` of the same key (the listener
    /// gets the old value).
    Replaced,
}

/// Computes an entry's weight (see [`TwoTierCacheBuilder::weigher`]).
pub(crate) type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u64 + Send + Sync>;
/// Hears of entries leaving the cache (see
/// [`TwoTierCacheBuilder::eviction_listener`]).
pub(crate) type Listener<K, V> = Arc<dyn Fn(K, V, RemovalCause) + Send + Sync>;

/// Sampled latency histograms of a cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheMetrics {
    /// Latency of sampled [`TwoTierCache::get`] calls.
    pub get: Histogram,
    /// Latency of sampled [`TwoTierCache::insert`] calls.
    pub insert: Histogram,
}

/// Everything observability adds; absent when it is off.
struct Observer {
    /// Per-thread hit and miss counts and latency histograms.
    stripes: StripeSet,
    patterns: PatternDetector,
    /// One get in `mask + 1` (a power of two) is offered to the pattern
    /// detector.
    mask: u64,
    /// One get and one insert in `timed_mask + 1` (a power of two) are timed.
    timed_mask: u64,
    /// The smaller of the two: a get whose count has none of these bits set
    /// takes the sampled path.
    either_mask: u64,
    /// A get whose hash, shifted right by `climb::SHIFT`, has none of
    /// these bits set is replayed into the window climber's miniature
    /// caches (all bits set: none is).
    sim_mask: u64,
    /// The window climber, if turned on.
    climber: Option<Mutex<Climber>>,
    /// Each claimable stats stripe's sampled hashes not yet replayed.
    batches: Box<[Padded<Batch>]>,
}

/// A concurrent, sharded cache with adaptive W-TinyLFU eviction (an
/// admission window in front of a main region split into probation and
/// protected: the two tiers the name refers to).
///
/// `get` needs `V: Clone` (it returns a copy; store an `Arc` for large
/// values). All methods take `&self`; share the cache with an `Arc` or a
/// scoped thread.
pub struct TwoTierCache<K, V, S = RandomState> {
    shards: Box<[Shard<K, V>]>,
    hasher: S,
    capacity: usize,
    obs: Option<Box<Observer>>,
    /// The window fraction the shards follow (moved by the window climber).
    window: Target,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
}

impl<K, V> TwoTierCache<K, V, RandomState> {
    /// A builder with the defaults: no capacity (it must be set), hot
    /// fraction 0.7, automatic shard count, observability on, 1-in-64
    /// sampling for the pattern detector and 1-in-256 for the latency
    /// histograms, [`RandomState`] hashing (foldhash, randomly seeded).
    pub fn builder() -> TwoTierCacheBuilder<K, V, RandomState> {
        TwoTierCacheBuilder::default()
    }

    /// A cache of `capacity` entries with the default settings.
    ///
    /// # Panics
    ///
    /// If `capacity` is zero (use [`Self::builder`] to get a [`BuildError`]
    /// instead).
    pub fn new(capacity: usize) -> Self
    where
        K: Clone,
    {
        match Self::builder().capacity(capacity).build() {
            Ok(c) => c,
            Err(e) => panic!("TwoTierCache::new({capacity}): {e}"),
        }
    }
}

impl<K: Clone, V, S> TwoTierCache<K, V, S> {
    fn from_builder(b: TwoTierCacheBuilder<K, V, S>, nshards: usize) -> Self {
        let base = b.capacity / nshards;
        let extra = b.capacity % nshards;
        let shards = (0..nshards)
            .map(|i| {
                let cap = base + usize::from(i < extra);
                // With a weigher the number of entries is unknown: the
                // index grows as needed, the sketch is sized for a guess.
                let entries = if b.weigher.is_some() {
                    cap.min(1 << 16)
                } else {
                    cap
                };
                Shard::new(cap as u64, b.window_fraction, b.hot_fraction, entries)
            })
            .collect();
        let mask = u64::from(b.sample_interval.next_power_of_two()) - 1;
        let timed_mask = u64::from(b.latency_interval.next_power_of_two()) - 1;
        let obs = b.observability.then(|| {
            // Fuzzing hook (fuzz/README.md): a fuzz target builds a cache
            // per input and drives it from one thread, which claims one
            // stripe; 16 stripes would be 17 stripes' latency histograms to
            // zero, and to sum for each report, per input.
            let stripes = StripeSet::new(if cfg!(fuzzing) {
                1
            } else {
                (cpus() * 4).max(16)
            });
            let either_mask = mask.min(timed_mask);
            // With a weigher the entry count is a guess until the cache
            // first fills (see `simulate`), and the sampling rate stays
            // the guess's.
            let climber = b.adaptive_window.then(|| {
                let weighed = b.weigher.is_some();
                let entries = if weighed {
                    (nshards << 16).min(b.capacity)
                } else {
                    b.capacity
                };
                Climber::new(entries as u64, !weighed, b.window_fraction, b.hot_fraction)
            });
            Box::new(Observer {
                patterns: PatternDetector::new(stripes.claimable()),
                batches: (0..stripes.claimable())
                    .map(|_| Padded(Batch::new()))
                    .collect(),
                stripes,
                mask,
                timed_mask,
                either_mask,
                sim_mask: climber
                    .as_ref()
                    .map_or(u64::MAX >> climb::SHIFT, Climber::sample_mask),
                climber: climber.map(Mutex::new),
            })
        });
        TwoTierCache {
            shards,
            hasher: b.hasher,
            capacity: b.capacity,
            obs,
            window: Target::new(b.window_fraction),
            weigher: b.weigher,
            listener: b.listener,
        }
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
    /// recently used (counted in the frequency sketch later, under the
    /// shard's write lock). A miss writes nothing shared: the frequency
    /// sketch counts it when the key is then inserted, as cache-aside code
    /// and [`Self::get_or_insert_with`] do.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(obs) = self.obs.as_deref() else {
            let hash = self.hash(key);
            let shard = self.shard(hash);
            return shard::lookup(shard, hash, key);
        };
        match obs.stripes.mine() {
            Some(stripe) => self.get_counted(obs, key, Local::mine(stripe)),
            None => self.get_first(obs, key),
        }
    }

    /// A get by a thread that has not used its stripe of this cache last
    /// (its first get, or one after using another cache).
    #[cold]
    #[inline(never)]
    fn get_first<Q>(&self, obs: &Observer, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_counted(obs, key, obs.stripes.local())
    }

    /// A get counted on `local`. Inlined apart for the thread's own stripe,
    /// so that the common path carries no "owned" flag.
    #[inline(always)]
    fn get_counted<Q>(&self, obs: &Observer, key: &Q, local: Local<'_>) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let n = local.tick();
        if n & obs.either_mask == 0 {
            return self.get_sampled(obs, key, local, n);
        }
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let v = shard::lookup(shard, hash, key);
        if v.is_none() {
            local.miss();
        }
        if (hash >> climb::SHIFT) & obs.sim_mask == 0 {
            self.simulate(obs, hash, &local);
        }
        v
    }

    /// A get that the stripe's get count `n` picked: timed (one in
    /// `timed_mask + 1`), and recorded by the pattern detector (one in
    /// `mask + 1`).
    #[cold]
    #[inline(never)]
    fn get_sampled<Q>(&self, obs: &Observer, key: &Q, local: Local<'_>, n: u64) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let start = (n & obs.timed_mask == 0).then(Instant::now);
        let detect = n & obs.mask == 0;
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let v = shard::lookup(shard, hash, key);
        if (hash >> climb::SHIFT) & obs.sim_mask == 0 {
            self.simulate(obs, hash, &local);
        }
        let prior = match v {
            // A hit is known to the sketch (it is cached).
            Some(_) => 1,
            None if detect => shard.sketch.frequency(hash),
            None => 0,
        };
        if v.is_none() {
            local.miss();
        }
        // Timed before the detector's work, which is not the get's.
        if let Some(start) = start {
            local
                .stripe
                .get_latency
                .record(start.elapsed(), local.owned);
        }
        if !detect {
            return v;
        }
        let batch = local.owned.then_some(local.stripe.index);
        obs.patterns.record(batch, hash, v.is_some(), prior);
        v
    }

    /// A get of a key the window climber samples: its hash joins the
    /// thread's batch, and a full batch is replayed into the climber's
    /// miniature caches, which may move the window. A thread without a
    /// stripe of its own, or a batch that finds the climber busy, is left
    /// out: the miniatures then miss a few gets, which only adds noise.
    #[cold]
    #[inline(never)]
    fn simulate(&self, obs: &Observer, hash: u64, local: &Local<'_>) {
        let (Some(climber), true) = (&obs.climber, local.owned) else {
            return;
        };
        let Some(batch) = obs.batches.get(local.stripe.index) else {
            return;
        };
        let Some(hashes) = batch.0.push(hash) else {
            return;
        };
        // try-lock-or-skip: a get never waits for the climber.
        let Some(mut c) = climber.try_lock() else {
            return;
        };
        if !c.seated && self.weighted_size() >= self.capacity as u64 / 8 * 7 {
            c.seat(self.len() as u64);
        }
        if let Some(f) = c.record(&hashes) {
            self.window.set(f);
        }
    }

    /// Stores `value` for `key`, replacing the value of a cached key, and
    /// evicts what no longer fits. Returns whether the key is cached now:
    /// a new key lands in the admission window, so it is readable right
    /// after this call (until later inserts push it out), unless its weight
    /// exceeds [`Self::max_weight`]; then the value is refused (dropped),
    /// an entry the key had is removed, and this returns `false`.
    ///
    /// If the weigher panics, the panic reaches the caller before anything
    /// changes. If the eviction listener panics, see the module docs.
    pub fn insert(&self, key: K, value: V) -> bool {
        let Some(obs) = self.obs.as_deref() else {
            return self.store(key, value);
        };
        match obs.stripes.mine() {
            Some(stripe) => self.insert_counted(obs, key, value, Local::mine(stripe)),
            None => self.insert_first(obs, key, value),
        }
    }

    /// An insert by a thread that has not used its stripe of this cache
    /// last, like [`Self::get_first`].
    #[cold]
    #[inline(never)]
    fn insert_first(&self, obs: &Observer, key: K, value: V) -> bool {
        self.insert_counted(obs, key, value, obs.stripes.local())
    }

    /// An insert counted, and one in `timed_mask + 1` timed, on `local`.
    #[inline(always)]
    fn insert_counted(&self, obs: &Observer, key: K, value: V, local: Local<'_>) -> bool {
        if local.insert() & obs.timed_mask == 0 {
            return self.insert_timed(key, value, local);
        }
        self.store(key, value)
    }

    /// An insert that the stripe's insert count picked for timing.
    #[cold]
    #[inline(never)]
    fn insert_timed(&self, key: K, value: V, local: Local<'_>) -> bool {
        let start = Instant::now();
        let kept = self.store(key, value);
        local
            .stripe
            .insert_latency
            .record(start.elapsed(), local.owned);
        kept
    }

    /// The insert itself: weighs the entry (before any lock, so a panicking
    /// weigher changes nothing), lets its shard store it, then tells the
    /// listener what left.
    #[inline(always)]
    fn store(&self, key: K, value: V) -> bool {
        let weight = match &self.weigher {
            None => 1,
            Some(w) => w(&key, &value).max(1),
        };
        let hash = self.hash(&key);
        let settings = Settings {
            window_fraction: self.window.get(),
            count: self.obs.is_some(),
        };
        let mut out = Removals::new(self.listener.is_some());
        let kept = self
            .shard(hash)
            .insert(hash, key, value, weight, settings, &mut out);
        self.notify(out);
        kept
    }

    /// Hands the removals of a write section to the listener, if there
    /// are any: without a listener none are kept, and the write section's
    /// caller is left with one test of an empty list.
    #[inline]
    fn notify(&self, out: Removals<K, V>) {
        if !out.items.is_empty() {
            self.deliver(out);
        }
    }

    /// Delivers the removals of a write section to the listener, outside any
    /// shard lock. A panicking listener does not stop the others' delivery;
    /// the first panic is resumed afterwards.
    #[inline(never)]
    fn deliver(&self, out: Removals<K, V>) {
        let Some(listener) = &self.listener else {
            return;
        };
        let mut panic = None;
        for (k, v, cause) in out.items {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| listener(k, v, cause))) {
                panic.get_or_insert(p);
            }
        }
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }

    /// Removes `key`, returning its value if it was cached. The listener
    /// hears of it as [`RemovalCause::Removed`].
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let (k, v) = self.shard(hash).remove(hash, key)?;
        match &self.listener {
            Some(_) => {
                let mut out = Removals::new(true);
                out.push(k, v.clone(), RemovalCause::Removed);
                self.notify(out);
            }
            None => drop(k),
        }
        Some(v)
    }

    /// Whether `key` is cached. Unlike [`Self::get`] this neither marks the
    /// entry as used nor counts a hit or a miss.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        // shard lock: the read lock, as a get takes it.
        self.shard(hash).inner.read().find(hash, key).is_some()
    }

    /// A copy of the value for `key`, if cached, with no effect on the
    /// policy or the counters (unlike [`Self::get`]).
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        shard::peek(self.shard(hash), hash, key)
    }

    /// Removes every entry for which `keep` returns false, shard by shard
    /// (each under its write lock: entries inserted meanwhile into a shard
    /// already visited are not seen). The listener hears of each as
    /// [`RemovalCause::Removed`]. If `keep` panics, the shard being visited
    /// keeps the entries not yet visited and the panic reaches the caller.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        for shard in self.shards.iter() {
            let mut out = Removals::new(self.listener.is_some());
            shard.retain(&mut keep, &mut out);
            self.notify(out);
        }
    }

    /// An iterator over a snapshot of the entries: each shard is copied
    /// under its read lock when the iterator reaches it, so every entry
    /// yielded was cached at that moment. Does not touch the policy.
    pub fn iter(&self) -> Iter<'_, K, V, S> {
        Iter {
            cache: self,
            next_shard: 0,
            buffer: Vec::new().into_iter(),
        }
    }

    /// The cached value for `key`, or the value `load` returns, which is then
    /// inserted (like [`Self::insert`]).
    ///
    /// Single flight: while one caller's `load` runs for a key, other callers
    /// that miss on that key wait for its result instead of running their
    /// own. If that `load` panics, the panic propagates to its caller only;
    /// the waiters wake and try again, one of them running its own loader.
    /// A loader that asks for its own key again panics (it would wait for
    /// itself).
    pub fn get_or_insert_with(&self, key: K, load: impl FnOnce() -> V) -> V {
        let r = self.load_through::<K, Infallible>(&key, || key.clone(), || Ok(load()));
        r.unwrap_or_else(|e| match *e {})
    }

    /// [`Self::get_or_insert_with`] with a borrowed key, turned into an
    /// owned one only if the loader runs: `cache.get_or_insert_with_ref("k", ...)`
    /// on a `TwoTierCache<String, _>`.
    pub fn get_or_insert_with_ref<Q>(&self, key: &Q, load: impl FnOnce() -> V) -> V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let r = self.load_through::<Q, Infallible>(key, || key.to_owned(), || Ok(load()));
        r.unwrap_or_else(|e| match *e {})
    }

    /// [`Self::get_or_insert_with`] with a loader that may fail. Single
    /// flight as there: if the loader returns an error, that error is
    /// returned to its caller and to every caller waiting on the same
    /// flight (hence the `Arc`), and nothing is cached; later calls run a
    /// loader again.
    pub fn try_get_or_insert_with<E>(
        &self,
        key: K,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        self.load_through(&key, || key.clone(), || load().map_err(Arc::new))
    }

    /// The single-flight miss path shared by the `get_or_insert_with`
    /// family: `owned` makes the key to store, `load` the value.
    fn load_through<Q, E>(
        &self,
        key: &Q,
        owned: impl FnOnce() -> K,
        load: impl FnOnce() -> Result<V, Arc<E>>,
    ) -> Result<V, Arc<E>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        E: Send + Sync + 'static,
    {
        if let Some(v) = self.get(key) {
            return Ok(v);
        }
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let mut load = Some(load);
        let mut owned = Some(owned);
        loop {
            let (flight, leader) = {
                // single flight, after a miss: never taken by a hit.
                let mut flights = shard.flights.lock();
                match flights
                    .iter()
                    .find(|(h, k, _)| *h == hash && k.borrow() == key)
                {
                    Some((_, _, f)) => (Arc::clone(f), None),
                    None => {
                        let f = Arc::new(Flight::new());
                        let make = owned.take().expect("a caller leads at most once");
                        flights.push((hash, make(), Arc::clone(&f)));
                        let k = flights.last().map(|(_, k, _)| k.clone());
                        (f, k)
                    }
                }
            };
            if let Some(k) = leader {
                let lead = Lead {
                    shard,
                    flight: &flight,
                };
                // A flight may have completed between our miss and our
                // registration: look again before loading.
                if let Some(v) = shard::lookup(shard, hash, key) {
                    lead.finish(State::Done(v.clone()));
                    return Ok(v);
                }
                let load = load.take().expect("a caller leads at most once");
                return match load() {
                    Ok(v) => {
                        self.insert(k, v.clone());
                        lead.finish(State::Done(v.clone()));
                        Ok(v)
                    }
                    Err(e) => {
                        lead.finish(State::Failed(Arc::clone(&e) as _));
                        Err(e)
                    }
                };
            }
            assert!(
                flight.leader != crate::sync::current_thread_id(),
                "lockscope::cache: a get_or_insert_with loader asked for its own key again; \
                 it would wait for itself forever"
            );
            // single flight: a waiter sleeps here until the loader is done.
            let mut st = flight.state.lock();
            loop {
                match &*st {
                    State::Running => flight.done.wait(&mut st),
                    State::Done(v) => return Ok(v.clone()),
                    State::Failed(e) => match Arc::clone(e).downcast::<E>() {
                        Ok(e) => return Err(e),
                        // A loader with another error type failed: load
                        // for ourselves.
                        Err(_) => break,
                    },
                    State::Abandoned => break,
                }
            }
            // The leader panicked (or failed with another error type): go
            // round again, perhaps as the leader. (Only a leader takes
            // `owned` and `load`, and a leader always returns.)
        }
    }

    /// Entries cached now (a sum of per-shard counts, each exact at some
    /// moment during the call). Never more than [`Self::capacity`].
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len.load(Relaxed)).sum()
    }

    /// Whether [`Self::len`] is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry and forgets the frequency history. Counters,
    /// histograms and the pattern detector keep their history. The
    /// listener hears of each entry as [`RemovalCause::Removed`].
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut out = Removals::new(self.listener.is_some());
            shard.clear(&mut out);
            self.notify(out);
        }
    }

    /// The capacity: the most entries the cache holds, or with a weigher
    /// the most total weight.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The total weight of the cached entries (their number without a
    /// weigher). Never more than [`Self::capacity`].
    pub fn weighted_size(&self) -> u64 {
        self.shards.iter().map(|s| s.weight.load(Relaxed)).sum()
    }

    /// The heaviest value [`Self::insert`] accepts: a shard's capacity
    /// (the capacity divided by the number of shards, rounded down).
    pub fn max_weight(&self) -> u64 {
        (self.capacity / self.shards.len()) as u64
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
        out.inserts = obs.stripes.inserts();
        out
    }

    /// The sampled get and insert latency histograms; empty when
    /// observability is off.
    pub fn metrics(&self) -> CacheMetrics {
        let (get, insert) = match self.obs.as_deref() {
            Some(obs) => obs.stripes.latencies(),
            None => (Histogram::default(), Histogram::default()),
        };
        CacheMetrics { get, insert }
    }

    /// The pattern detector's view; empty when observability is off.
    pub fn patterns(&self) -> Patterns<K> {
        self.obs.as_deref().map_or_else(Patterns::default, |obs| {
            obs.patterns.snapshot(self.window.get(), |hash| {
                // Off the get path; one shard read lock per hot key named.
                let shard = self.shard(hash);
                shard.inner.read().key_of(hash).cloned()
            })
        })
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }
}

/// An iterator over a snapshot of a cache's entries, shard by shard; made
/// by [`TwoTierCache::iter`].
pub struct Iter<'a, K, V, S> {
    cache: &'a TwoTierCache<K, V, S>,
    next_shard: usize,
    buffer: std::vec::IntoIter<(K, V)>,
}

impl<K: Clone, V: Clone, S> Iterator for Iter<'_, K, V, S> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        loop {
            if let Some(item) = self.buffer.next() {
                return Some(item);
            }
            let shard = self.cache.shards.get(self.next_shard)?;
            self.next_shard += 1;
            self.buffer = shard.snapshot().into_iter();
        }
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
