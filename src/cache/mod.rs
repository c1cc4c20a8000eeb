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
//! per-shard Count-Min Sketch of 4-bit atomic counters (TinyLFU); a hit's
//! count waits in the entry until the CLOCK hand passes it. Inserts take
//! the write lock; a new key in a full shard is admitted only if the sketch
//! says it is more frequent than the warm tier's CLOCK victim. See
//! `tiers.rs` for the movement between tiers. Most new keys lose, and an
//! insert that follows a miss on its key is then usually turned away
//! without the write lock: the miss, under the read lock, left a ticket
//! naming the victim (see `ticket.rs`).
//!
//! Observability (on by default, [`TwoTierCacheBuilder::observability`](crate::cache::TwoTierCacheBuilder::observability))
//! costs an unsampled hit one uncontended counter update (a miss two): gets
//! and misses are counted in a stripe owned by the calling thread, and the
//! get count also picks the sampled gets. One get in 64 is offered to the
//! pattern detector, which skips it if its window is busy; one in 256 reads
//! the clock twice for the latency histogram.

mod builder;
mod climb;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod hasher;
mod histogram;
mod pattern;
mod shard;
mod sketch;
mod stats;
mod ticket;
mod tiers;

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};
use core::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

pub use builder::{BuildError, MAX_SAMPLE_INTERVAL, MAX_SHARDS, TwoTierCacheBuilder};
pub use hasher::RandomState;
pub use histogram::HistogramSnapshot;
pub use pattern::{HotKey, Patterns, Trend};
pub use stats::CacheStats;

use climb::{Climber, Target};
use histogram::Histogram;
use pattern::PatternDetector;
use shard::Shard;
use stats::{Local, StripeSet};

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
    /// The hill climber, if turned on.
    climber: Option<Mutex<Climber>>,
}

/// How [`TwoTierCache::store`] decided an insert.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// Turned away on a rejection ticket, without the write lock.
    RejectedOnTicket,
    /// Decided under the shard's write lock.
    Locked,
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
    obs: Option<Box<Observer>>,
    /// The hot fraction the shards follow (moved by the hill climber).
    hot_target: Target,
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
                let hot = ((cap as f64) * b.hot_fraction) as usize;
                Shard::new(cap, hot.min(cap - 1), b.hot_fraction, i, nshards)
            })
            .collect();
        let mask = u64::from(b.sample_interval.next_power_of_two()) - 1;
        let timed_mask = u64::from(b.latency_interval.next_power_of_two()) - 1;
        let obs = b.observability.then(|| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            let stripes = StripeSet::new((cpus * 4).max(16));
            Box::new(Observer {
                patterns: PatternDetector::new(stripes.claimable()),
                stripes,
                mask,
                timed_mask,
                either_mask: mask.min(timed_mask),
                climber: b
                    .hill_climbing
                    .then(|| Mutex::new(Climber::new(b.capacity, b.hot_fraction))),
            })
        });
        TwoTierCache {
            shards,
            hasher: b.hasher,
            capacity: b.capacity,
            obs,
            hot_target: Target::new(b.hot_fraction),
        }
    }
}

/// A loader in flight for [`TwoTierCache::get_or_insert_with`].
pub(crate) struct Flight<V> {
    state: Mutex<FlightState<V>>,
    done: Condvar,
    /// The thread running the loader: if it asks for the same key from
    /// inside the loader, waiting would wait for itself.
    leader: core::num::NonZeroUsize,
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
        // single flight, off the get path: a miss that loads takes it.
        *self.flight.state.lock() = FlightState::Done(v);
    }
}

impl<K, V> Drop for Lead<'_, K, V> {
    fn drop(&mut self) {
        // single flight, off the get path: held to edit the short list.
        let mut flights = self.shard.flights.lock();
        flights.retain(|(_, _, f)| !Arc::ptr_eq(f, self.flight));
        drop(flights);
        {
            // single flight, off the get path: only a loader's leader and
            // waiters take a flight's state lock.
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
        let epoch_done = obs.patterns.record(batch, hash, v.is_some(), prior);
        if epoch_done && let Some(climber) = &obs.climber {
            // try-lock-or-skip: the next epoch will try again.
            if let Some(mut c) = climber.try_lock() {
                let (hits, misses) = obs.stripes.totals();
                if let Some(f) = c.observe(hits, misses) {
                    self.hot_target.set_fraction(f);
                }
                if core::mem::take(&mut c.moved) {
                    self.hot_target.add_move();
                }
            }
        }
        v
    }

    /// Stores `value` for `key`. A key already cached has its value
    /// replaced. A new key in a full shard is admitted only if it is more
    /// frequent than the entry it would evict; otherwise it is dropped (see
    /// [`CacheStats::rejections`]). An insert that follows a miss on the
    /// same key, as in cache-aside code, is usually decided without the
    /// shard's write lock when it is rejected.
    pub fn insert(&self, key: K, value: V) {
        let Some(obs) = self.obs.as_deref() else {
            self.store(key, value);
            return;
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
    fn insert_first(&self, obs: &Observer, key: K, value: V) {
        self.insert_counted(obs, key, value, obs.stripes.local());
    }

    /// An insert counted, and one in `timed_mask + 1` timed, on `local`.
    #[inline(always)]
    fn insert_counted(&self, obs: &Observer, key: K, value: V, local: Local<'_>) {
        if local.insert() & obs.timed_mask == 0 {
            return self.insert_timed(key, value, local);
        }
        if self.store(key, value) == Stored::RejectedOnTicket {
            local.quick_rejection();
        }
    }

    /// An insert that the stripe's insert count picked for timing.
    #[cold]
    #[inline(never)]
    fn insert_timed(&self, key: K, value: V, local: Local<'_>) {
        let start = Instant::now();
        if self.store(key, value) == Stored::RejectedOnTicket {
            local.quick_rejection();
        }
        local
            .stripe
            .insert_latency
            .record(start.elapsed(), local.owned);
    }

    /// The insert itself: on a rejection ticket if the calling thread holds
    /// one for the key, else under the shard's write lock.
    #[inline(always)]
    fn store(&self, key: K, value: V) -> Stored {
        let hash = self.hash(&key);
        let shard = self.shard(hash);
        let mut counted = None;
        if let Some(victim) = ticket::take(
            shard.id,
            hash,
            shard.version.load(Relaxed),
            self.hot_target.generation(),
        ) {
            let freq = tiers::admission_frequency(shard.sketch.increment(hash));
            if freq <= shard.sketch.frequency(victim) {
                // Rejected as the locked path would: nothing else changes.
                return Stored::RejectedOnTicket;
            }
            counted = Some(freq);
        }
        {
            // shard lock: writes take it exclusively, off the get path.
            let mut inner = shard.inner.write();
            // Follow the hill climber: age the sketch once per workload
            // move, and resize the hot tier (a shrink is spread over inserts).
            // The generation is read first: the shard has followed at least it.
            let generation = self.hot_target.generation();
            let moves = self.hot_target.moves();
            if moves != inner.moves_seen {
                inner.moves_seen = moves;
                shard.sketch.age();
            }
            let fraction = self.hot_target.fraction();
            if fraction != inner.hot_fraction || inner.hot.len() > inner.hot_cap {
                inner.hot_fraction = fraction;
                inner.retarget(
                    fraction,
                    &shard.sketch,
                    &shard.counters.0,
                    self.obs.is_some(),
                );
            }
            inner.synced = if inner.hot.len() <= inner.hot_cap {
                generation
            } else {
                shard::UNSYNCED
            };
            inner.insert(
                hash,
                key,
                value,
                &shard.sketch,
                &shard.counters.0,
                self.obs.is_some(),
                counted,
            );
            shard.wrote(&inner);
        }
        Stored::Locked
    }

    /// Removes `key`, returning its value if it was cached.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        // shard lock: a removal takes it exclusively, off the get path.
        let mut inner = shard.inner.write();
        let v = inner.remove(hash, key, &shard.sketch);
        shard.wrote(&inner);
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
        // shard lock: the read lock, as a get takes it.
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
                // single flight, after a miss: never taken by a hit.
                let mut flights = shard.flights.lock();
                match flights.iter().find(|(h, k, _)| *h == hash && *k == key) {
                    Some((_, _, f)) => (Arc::clone(f), false),
                    None => {
                        let f = Arc::new(Flight {
                            state: Mutex::new(FlightState::Running),
                            done: Condvar::new(),
                            leader: crate::sync::current_thread_id(),
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
                let v = match shard::lookup(shard, hash, &key) {
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
            assert!(
                flight.leader != crate::sync::current_thread_id(),
                "lockscope::cache: a get_or_insert_with loader asked for its own key again; \
                 it would wait for itself forever"
            );
            // single flight: a waiter sleeps here until the loader is done.
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
            // shard lock: `clear` takes each exclusively, off the get path.
            let mut inner = shard.inner.write();
            inner.clear();
            shard.sketch.clear();
            shard.wrote(&inner);
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
        let (inserts, quick) = obs.stripes.inserts();
        out.inserts = inserts;
        out.rejections += quick;
        out
    }

    /// The sampled get and insert latency histograms; empty when
    /// observability is off.
    pub fn metrics(&self) -> CacheMetrics {
        let (get, insert) = match self.obs.as_deref() {
            Some(obs) => obs.stripes.latencies(),
            None => (Histogram::new().snapshot(), Histogram::new().snapshot()),
        };
        CacheMetrics { get, insert }
    }

    /// The pattern detector's view; empty when observability is off.
    pub fn patterns(&self) -> Patterns<K> {
        self.obs.as_deref().map_or_else(Patterns::default, |obs| {
            obs.patterns.snapshot(self.hot_target.fraction(), |hash| {
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

impl<K, V, S> core::fmt::Debug for TwoTierCache<K, V, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TwoTierCache")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .field("observability", &self.obs.is_some())
            .finish_non_exhaustive()
    }
}
