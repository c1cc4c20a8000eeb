//! One shard: an open-addressing index over a slab of entries, behind a
//! lockscope [`RwLock`](crate::RwLock), plus the shard's sketch and counters.
//! The shard owns its write sections ([`Shard::insert`], [`Shard::remove`],
//! [`Shard::retain`], [`Shard::clear`]): the cache picks the shard and hands
//! it what the policy needs; the policy itself is in `policy.rs`.
//!
//! The index stores, per key, one word: the low 32 bits of the key's hash and
//! the entry's slot in the slab. Probing is linear from the hash's low bits
//! and compares the stored hash bits before it touches an entry, so a miss
//! rarely reads an entry at all. The index has at least twice as many words
//! as the shard has entries, so a probe always ends at an empty word, and a
//! removal shifts the rest of the probe run back (no tombstones).

use core::borrow::Borrow;

use super::RemovalCause;
use super::flight::FlightList;
use super::queue::{ClockQueue, Link};
use super::sketch::{Padded, Sketch};
use super::stats::ShardCounters;
use crate::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use crate::{Mutex, RawMutex, RawRwLock, RwLock};

/// The label of every cache shard's lock: one lock class, as lock reports
/// and the contention profile name it.
pub const SHARD_LOCK_LABEL: &str = "lockscope::cache shard";
/// The label of the locks around every shard's list of loaders in flight
/// (`get_or_insert_with`): one lock class.
pub const FLIGHT_LOCK_LABEL: &str = "lockscope::cache single-flight";

const EMPTY: u64 = u64::MAX;

/// The most a reference counter records: three sweeps of second chance.
pub(crate) const MAX_REFS: u8 = 3;
/// The access byte: bits 0-1 are the CLOCK reference counter, bits 2-3 the
/// hits not yet counted in the sketch.
const REFS_MASK: u8 = 0b11;
const PENDING_ONE: u8 = 0b100;

/// A cached key and value with its policy state.
pub(crate) struct Entry<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    pub(crate) hash: u64,
    /// The entry's weight (1 without a weigher).
    pub(crate) weight: u64,
    /// The access byte (see [`REFS_MASK`]): raised on access under the read
    /// lock, aged and drained by the CLOCK hands under the write lock.
    access: AtomicU8,
    /// Which region's queue the entry is in.
    pub(crate) region: Region,
}

impl<K, V> Entry<K, V> {
    /// Records an access: one relaxed load, and a store only if the
    /// reference counter is not saturated (a hot entry is not written at
    /// all). A hit that raises the counter is also owed to the sketch; it is
    /// counted there when a CLOCK hand next passes the entry (see
    /// [`Self::age`]), so a hit never writes the shared sketch. Racing
    /// readers may lose an increment; the count is a hint.
    #[inline]
    pub(crate) fn touch(&self) {
        let a = self.access.load(Relaxed);
        if a & REFS_MASK < MAX_REFS {
            // Pending hits never exceed the raises since the last drain,
            // at most three, so they cannot carry out of their two bits.
            self.access.store(a + 1 + PENDING_ONE, Relaxed);
        }
    }

    /// Counts the pending hits in `sketch` and clears the access byte;
    /// returns whether the entry had been referenced. Only under the write
    /// lock.
    #[inline]
    pub(crate) fn take_refs(&self, sketch: &Sketch) -> bool {
        let r = self.drain(sketch);
        if r > 0 {
            self.access.store(0, Relaxed);
        }
        r > 0
    }

    /// Counts the pending hits in `sketch`; returns the reference counter.
    /// Only under the write lock.
    #[inline]
    pub(crate) fn drain(&self, sketch: &Sketch) -> u8 {
        let a = self.access.load(Relaxed);
        let pending = a >> 2;
        if pending > 0 {
            sketch.add(self.hash, pending);
            self.access.store(a & REFS_MASK, Relaxed);
        }
        a & REFS_MASK
    }
}

/// The region of a shard an entry is in (W-TinyLFU, see `policy.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Region {
    /// The admission window: every new key lands here.
    Window,
    /// The main region's probation segment: where the window's victims
    /// compete with the main region's, and where evictions happen.
    Probation,
    /// The main region's protected segment: entries used again while on
    /// probation.
    Protected,
}

/// The lock-protected state of a shard.
pub(crate) struct ShardInner<K, V> {
    index: Box<[u64]>,
    mask: usize,
    pub(crate) slots: Vec<Option<Entry<K, V>>>,
    /// Each slot's neighbours in its region's queue (beside the slab, as
    /// long as it).
    pub(crate) links: Vec<Link>,
    free: Vec<u32>,
    pub(crate) window: ClockQueue,
    pub(crate) probation: ClockQueue,
    pub(crate) protected: ClockQueue,
    /// The shard's capacity, in weight.
    pub(crate) capacity: u64,
    /// The window's share of the capacity the caps below follow.
    pub(crate) window_fraction: f64,
    /// The protected segment's share of the main region.
    pub(crate) protected_fraction: f64,
    pub(crate) window_cap: u64,
    pub(crate) protected_cap: u64,
    /// Window entries moved to probation by this write section, which now
    /// compete with probation's victims (reused, to spare an allocation).
    pub(crate) candidates: Vec<u32>,
    /// State of the random admission of warm candidates (see `policy.rs`).
    pub(crate) rng: u64,
}

/// Entries a write section took out, with why: handed to the eviction
/// listener once the shard's lock is released (or dropped there, without
/// one).
pub(crate) struct Removals<K, V> {
    /// Whether to keep them (a listener is set); else they are dropped at
    /// once.
    pub(crate) keep: bool,
    pub(crate) items: Vec<(K, V, RemovalCause)>,
}

impl<K, V> Removals<K, V> {
    pub(crate) fn new(keep: bool) -> Self {
        Removals {
            keep,
            items: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, key: K, value: V, cause: RemovalCause) {
        if self.keep {
            self.items.push((key, value, cause));
        }
    }
}

/// What a write section follows: the cache-wide settings of the moment.
#[derive(Clone, Copy)]
pub(crate) struct Settings {
    /// The window's share of the capacity (moved by the window climber).
    pub(crate) window_fraction: f64,
    /// Whether to count admissions, evictions and the like.
    pub(crate) count: bool,
}

/// A shard of the cache, aligned so that neighbours share no line.
#[repr(align(128))]
pub(crate) struct Shard<K, V> {
    pub(crate) inner: RwLock<ShardInner<K, V>>,
    pub(crate) sketch: Sketch,
    /// Written by inserts: kept off the lines that gets read.
    pub(crate) counters: Padded<ShardCounters>,
    /// Entries in the shard; written under the write lock.
    pub(crate) len: AtomicUsize,
    /// Their total weight; written under the write lock.
    pub(crate) weight: AtomicU64,
    /// Loaders in flight for `get_or_insert_with`.
    pub(crate) flights: Mutex<FlightList<K, V>>,
}

impl<K, V> Shard<K, V> {
    /// A shard of `capacity` in weight. Every shard lock of every cache is
    /// one class, labelled [`SHARD_LOCK_LABEL`] (and the single-flight lists'
    /// [`FLIGHT_LOCK_LABEL`]): lock reports and the contention profile name them,
    /// and a thread that goes from shard to shard keeps counting its
    /// acquisitions for the one class it already counts for, instead of
    /// moving its counts between as many classes as there are shards.
    pub(crate) fn new(
        capacity: u64,
        window_fraction: f64,
        protected_fraction: f64,
        entries_hint: usize,
    ) -> Self {
        Shard {
            inner: RwLock::from_raw(
                RawRwLock::labelled(SHARD_LOCK_LABEL),
                ShardInner::new(capacity, window_fraction, protected_fraction, entries_hint),
            ),
            sketch: Sketch::new(entries_hint),
            counters: Padded::default(),
            len: AtomicUsize::new(0),
            weight: AtomicU64::new(0),
            flights: Mutex::from_raw(RawMutex::labelled(FLIGHT_LOCK_LABEL), Vec::new()),
        }
    }

    /// Ends a write section on `inner` (this shard's, write-locked):
    /// publishes the length and weight.
    #[inline]
    fn wrote(&self, inner: &ShardInner<K, V>) {
        self.len.store(inner.len(), Relaxed);
        self.weight.store(inner.weight(), Relaxed);
    }
}

impl<K: Eq, V> Shard<K, V> {
    /// Inserts or replaces `key` with weight `weight` and evicts what no
    /// longer fits; the removed entries go to `out`. Returns whether `key`
    /// is cached afterwards: a new key lands in the window, which keeps it,
    /// unless it weighs more than the shard's whole capacity; then it is
    /// refused, and an entry the key had is removed (its value is stale).
    pub(crate) fn insert(
        &self,
        hash: u64,
        key: K,
        value: V,
        weight: u64,
        settings: Settings,
        out: &mut Removals<K, V>,
    ) -> bool {
        // shard lock: writes take it exclusively, off the get path.
        let mut inner = self.inner.write();
        let counters = settings.count.then_some(&self.counters.0);
        if weight > inner.capacity {
            if let Some((_, slot)) = inner.find(hash, &key) {
                let e = inner.take(slot, &self.sketch);
                out.push(e.key, e.value, RemovalCause::Replaced);
                self.wrote(&inner);
            }
            if let Some(c) = counters {
                super::stats::bump_owned(&c.rejections);
            }
            return false;
        }
        inner.follow(settings.window_fraction);
        inner.insert(hash, key, value, weight, &self.sketch, counters, out);
        self.wrote(&inner);
        true
    }

    /// Removes `key`, returning its value.
    pub(crate) fn remove<Q>(&self, hash: u64, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        // shard lock: a removal takes it exclusively, off the get path.
        let mut inner = self.inner.write();
        let (_, slot) = inner.find(hash, key)?;
        let e = inner.take(slot, &self.sketch);
        self.wrote(&inner);
        Some((e.key, e.value))
    }

    /// Removes every entry for which `keep` returns false.
    pub(crate) fn retain(&self, keep: &mut impl FnMut(&K, &V) -> bool, out: &mut Removals<K, V>) {
        // shard lock: `retain` takes each shard exclusively, off the get path.
        let mut inner = self.inner.write();
        // If `keep` panics the guard is dropped on the way out: the entries
        // removed so far are gone and the shard is consistent.
        let mut doomed = Vec::new();
        for (slot, e) in inner.slots.iter().enumerate() {
            if let Some(e) = e
                && !keep(&e.key, &e.value)
            {
                doomed.push(slot as u32);
            }
        }
        for slot in doomed {
            let e = inner.take(slot, &self.sketch);
            out.push(e.key, e.value, RemovalCause::Removed);
        }
        self.wrote(&inner);
    }

    /// Drops every entry and the frequency history.
    pub(crate) fn clear(&self, out: &mut Removals<K, V>) {
        // shard lock: `clear` takes each shard exclusively, off the get path.
        let mut inner = self.inner.write();
        inner.clear(|e| out.push(e.key, e.value, RemovalCause::Removed));
        self.sketch.clear();
        self.wrote(&inner);
    }
}

impl<K: Clone, V: Clone> Shard<K, V> {
    /// A copy of every entry, taken under the read lock.
    pub(crate) fn snapshot(&self) -> Vec<(K, V)> {
        // shard lock: the read lock, as a get takes it, off the get path.
        let inner = self.inner.read();
        inner
            .slots
            .iter()
            .flatten()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    }
}

impl<K, V> ShardInner<K, V> {
    fn new(capacity: u64, window_fraction: f64, protected_fraction: f64, entries: usize) -> Self {
        let words = (entries * 2).max(8).next_power_of_two();
        let mut inner = ShardInner {
            index: vec![EMPTY; words].into_boxed_slice(),
            mask: words - 1,
            slots: Vec::new(),
            links: Vec::new(),
            free: Vec::new(),
            window: ClockQueue::default(),
            probation: ClockQueue::default(),
            protected: ClockQueue::default(),
            capacity,
            window_fraction: f64::NAN,
            protected_fraction,
            window_cap: 0,
            protected_cap: 0,
            candidates: Vec::new(),
            rng: 0x853c_49e6_748f_ea9b,
        };
        inner.follow(window_fraction);
        inner
    }

    /// Sets the caps of the window and the protected segment for
    /// `window_fraction` of the capacity, if they do not follow it yet.
    /// Segments over their new caps shrink as entries are next moved.
    #[inline]
    pub(crate) fn follow(&mut self, window_fraction: f64) {
        if window_fraction == self.window_fraction {
            return;
        }
        self.window_fraction = window_fraction;
        let c = self.capacity as f64;
        self.window_cap = (c * window_fraction) as u64;
        let main = self.capacity.saturating_sub(self.window_cap);
        self.protected_cap = (main as f64 * self.protected_fraction) as u64;
    }

    /// Live entries.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.window.len() + self.probation.len() + self.protected.len()
    }

    /// Their total weight.
    #[inline]
    pub(crate) fn weight(&self) -> u64 {
        self.window.weight() + self.probation.weight() + self.protected.weight()
    }

    /// A live entry's weight changed from `old` to `new`: its queue's
    /// total follows.
    #[inline]
    pub(crate) fn reweigh(&mut self, region: Region, old: u64, new: u64) {
        self.queue_links(region).0.reweigh(old, new);
    }
    /// The entry in `slot`, which must be live.
    #[inline]
    pub(crate) fn entry(&self, slot: u32) -> &Entry<K, V> {
        self.slots[slot as usize]
            .as_ref()
            .expect("index points at a live slot")
    }

    #[inline]
    pub(crate) fn entry_mut(&mut self, slot: u32) -> &mut Entry<K, V> {
        self.slots[slot as usize]
            .as_mut()
            .expect("index points at a live slot")
    }

    /// The index position and slot of `key`, if present.
    #[inline]
    pub(crate) fn find<Q>(&self, hash: u64, key: &Q) -> Option<(usize, u32)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.probe(hash, key).ok()
    }

    /// [`Self::find`], telling a miss where its probe ended: the empty index
    /// word where the key would be placed.
    #[inline]
    pub(crate) fn probe<Q>(&self, hash: u64, key: &Q) -> Result<(usize, u32), usize>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.seek(hash, |e| e.key.borrow() == key)
    }

    /// Walks the probe sequence of `hash` to the first entry with its hash
    /// tag that `is_it` accepts: its index position and slot, or as
    /// [`Self::probe`] on a miss.
    #[inline]
    fn seek(
        &self,
        hash: u64,
        mut is_it: impl FnMut(&Entry<K, V>) -> bool,
    ) -> Result<(usize, u32), usize> {
        let tag = hash as u32;
        let mut pos = tag as usize & self.mask;
        loop {
            let w = self.index[pos];
            if w == EMPTY {
                return Err(pos);
            }
            if (w >> 32) as u32 == tag {
                let slot = w as u32;
                if is_it(self.entry(slot)) {
                    return Ok((pos, slot));
                }
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// A cached key with hash `hash`, if any (the first met, should two
    /// keys share a hash).
    pub(crate) fn key_of(&self, hash: u64) -> Option<&K> {
        let (_, slot) = self.seek(hash, |e| e.hash == hash).ok()?;
        Some(&self.entry(slot).key)
    }

    /// The index position that holds `slot` (which has hash `hash`).
    #[inline]
    fn position_of(&self, hash: u64, slot: u32) -> usize {
        let mut pos = hash as u32 as usize & self.mask;
        loop {
            let w = self.index[pos];
            debug_assert_ne!(w, EMPTY, "slot missing from the index");
            if w != EMPTY && w as u32 == slot {
                return pos;
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Stores a new entry (the key must be absent) and queues it in
    /// `region`; `end` is where the key's probe ended ([`Self::probe`]'s
    /// miss), so the index is not walked twice.
    pub(crate) fn place(
        &mut self,
        end: usize,
        hash: u64,
        key: K,
        value: V,
        weight: u64,
        region: Region,
    ) -> u32 {
        let entry = Entry {
            key,
            value,
            hash,
            weight,
            access: AtomicU8::new(0),
            region,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(entry);
                s
            }
            None => {
                self.slots.push(Some(entry));
                self.links.push(Link::default());
                u32::try_from(self.slots.len() - 1).expect("shard capacity fits in u32")
            }
        };
        let tag = hash as u32;
        let mut pos = end;
        if self.grow_index() {
            // The index was rebuilt: probe it again.
            pos = tag as usize & self.mask;
            while self.index[pos] != EMPTY {
                pos = (pos + 1) & self.mask;
            }
        }
        self.index[pos] = (u64::from(tag) << 32) | u64::from(slot);
        let (q, links) = self.queue_links(region);
        q.push_back(links, slot, weight);
        slot
    }

    /// Doubles the index when it is half full (with weights, a shard may
    /// hold more entries than its capacity hint), so a probe always ends.
    /// Returns whether it did.
    #[inline]
    fn grow_index(&mut self) -> bool {
        if (self.len() + 1) * 2 <= self.index.len() {
            return false;
        }
        self.regrow_index();
        true
    }

    /// Rebuilds the index at twice its size.
    #[cold]
    fn regrow_index(&mut self) {
        let words = self.index.len() * 2;
        let old = core::mem::replace(&mut self.index, vec![EMPTY; words].into_boxed_slice());
        self.mask = words - 1;
        for w in old.iter().copied().filter(|&w| w != EMPTY) {
            let mut pos = (w >> 32) as usize & self.mask;
            while self.index[pos] != EMPTY {
                pos = (pos + 1) & self.mask;
            }
            self.index[pos] = w;
        }
    }

    /// Takes the entry in `slot` out of the index, the slab and its queue.
    /// Its pending hits are counted first: its
    /// history stays in the sketch for when the key comes back.
    #[inline(always)]
    pub(crate) fn take(&mut self, slot: u32, sketch: &Sketch) -> Entry<K, V> {
        self.entry(slot).drain(sketch);
        self.take_drained(slot)
    }

    /// [`Self::take`] of an entry with no pending hits: one that a CLOCK
    /// hand found unreferenced in this write section (a hit raises the
    /// reference counter with every pending hit, and no hit runs while the
    /// write lock is held).
    #[inline(always)]
    pub(crate) fn take_drained(&mut self, slot: u32) -> Entry<K, V> {
        let hash = self.entry(slot).hash;
        debug_assert_eq!(self.entry(slot).access.load(Relaxed) >> 2, 0);
        let pos = self.position_of(hash, slot);
        self.unlink(pos);
        let entry = self.slots[slot as usize]
            .take()
            .expect("index points at a live slot");
        self.free.push(slot);
        let (q, links) = self.queue_links(entry.region);
        q.unlink(links, slot, entry.weight);
        entry
    }

    /// Backward-shift deletion of index word `hole`.
    #[inline]
    fn unlink(&mut self, hole: usize) {
        backward_shift(&mut self.index, self.mask, hole, EMPTY, |w| {
            (w >> 32) as usize
        });
    }

    /// The queue of `region`, with the links it threads through.
    #[inline]
    pub(crate) fn queue_links(&mut self, region: Region) -> (&mut ClockQueue, &mut [Link]) {
        let q = match region {
            Region::Window => &mut self.window,
            Region::Probation => &mut self.probation,
            Region::Protected => &mut self.protected,
        };
        (q, &mut self.links)
    }

    /// Takes every entry out of the index and the queues, handing each to
    /// `removed`. The buffers keep their room: a cache that is cleared
    /// fills up to the same size again.
    pub(crate) fn clear(&mut self, mut removed: impl FnMut(Entry<K, V>)) {
        self.index.fill(EMPTY);
        self.free.clear();
        self.links.clear();
        self.window.clear();
        self.probation.clear();
        self.protected.clear();
        // A panicking `removed` (dropping a value) leaves the slab partly
        // drained: the remaining entries are dropped with the drain.
        for e in self.slots.drain(..).flatten() {
            removed(e);
        }
    }
}

/// Backward-shift deletion from a linear-probing index of `mask + 1`
/// words: empties word `hole` and moves the later words of its probe run
/// back over it, so every word stays reachable from its home and no
/// tombstone is left. `home` gives a word's home position before masking;
/// `empty` is the empty word. Shared by the shards' index and the
/// miniature caches' (`mini.rs`).
#[inline]
pub(crate) fn backward_shift<W: Copy + PartialEq>(
    index: &mut [W],
    mask: usize,
    mut hole: usize,
    empty: W,
    home: impl Fn(W) -> usize,
) {
    let mut j = hole;
    loop {
        j = (j + 1) & mask;
        let w = index[j];
        if w == empty {
            break;
        }
        let home = home(w) & mask;
        // The word at j may fill the hole unless its home lies cyclically
        // in (hole, j].
        let stays = if hole <= j {
            hole < home && home <= j
        } else {
            hole < home || home <= j
        };
        if !stays {
            index[hole] = w;
            hole = j;
        }
    }
    index[hole] = empty;
}

/// Reads `key` under the read lock and returns a copy of its value.
///
/// A hit writes nothing shared but the entry's access byte, and that only
/// while its reference counter is below saturation: the hit is counted in
/// the frequency sketch later, by a CLOCK hand, under the write lock. A
/// miss writes nothing: the insert that follows it counts the key.
#[inline(always)]
pub(crate) fn lookup<K, V, Q>(shard: &Shard<K, V>, hash: u64, key: &Q) -> Option<V>
where
    K: Borrow<Q>,
    V: Clone,
    Q: Eq + ?Sized,
{
    // shard lock: the one lock the get path takes.
    let inner = shard.inner.read();
    let (_, slot) = inner.probe(hash, key).ok()?;
    let e = inner.entry(slot);
    e.touch();
    Some(e.value.clone())
}

/// [`lookup`] without marking the entry as used.
pub(crate) fn peek<K, V, Q>(shard: &Shard<K, V>, hash: u64, key: &Q) -> Option<V>
where
    K: Borrow<Q>,
    V: Clone,
    Q: Eq + ?Sized,
{
    // shard lock: the read lock, as a get takes it.
    let inner = shard.inner.read();
    let (_, slot) = inner.probe(hash, key).ok()?;
    Some(inner.entry(slot).value.clone())
}
