//! One shard: an open-addressing index over a slab of entries, behind a
//! lockscope [`RwLock`](crate::RwLock), plus the shard's sketch and counters.
//!
//! The index stores, per key, one word: the low 32 bits of the key's hash and
//! the entry's slot in the slab. Probing is linear from the hash's low bits
//! and compares the stored hash bits before it touches an entry, so a miss
//! rarely reads an entry at all. The index has at least twice as many words
//! as the shard has entries, so a probe always ends at an empty word, and a
//! removal shifts the rest of the probe run back (no tombstones).

use core::borrow::Borrow;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};

use super::sketch::{Padded, Sketch};
use super::stats::ShardCounters;
use super::ticket::{self, Ticket};
use super::tiers::{ClockQueue, Tier};
use crate::diag::Inspect as _;
use crate::{Mutex, RwLock};

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
    /// The access byte (see [`REFS_MASK`]): raised on access under the read
    /// lock, aged and drained by the CLOCK hands under the write lock.
    access: AtomicU8,
    /// Which queue currently owns the entry.
    pub(crate) tier: Tier,
    /// Incarnation stamp: a queue item is current only if its stamp matches.
    pub(crate) stamp: u32,
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

    /// Whether a CLOCK hand passing the entry would neither age it nor
    /// drain hits into the sketch: no references, no pending hits.
    #[inline]
    pub(crate) fn is_idle(&self) -> bool {
        self.access.load(Relaxed) == 0
    }

    /// Counts the pending hits in `sketch` and returns the reference
    /// counter, lowered by one if it was positive (the hand's second
    /// chance). Only under the write lock.
    pub(crate) fn age(&self, sketch: &Sketch) -> u8 {
        let a = self.drain(sketch);
        if a > 0 {
            self.access.store(a - 1, Relaxed);
        }
        a
    }

    /// Counts the pending hits in `sketch`; returns the reference counter.
    /// Only under the write lock.
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

/// The lock-protected state of a shard.
pub(crate) struct ShardInner<K, V> {
    index: Box<[u64]>,
    mask: usize,
    pub(crate) slots: Vec<Option<Entry<K, V>>>,
    free: Vec<u32>,
    pub(crate) hot: ClockQueue,
    pub(crate) warm: ClockQueue,
    pub(crate) hot_cap: usize,
    /// The hot fraction `hot_cap` was computed from.
    pub(crate) hot_fraction: f64,
    /// Workload moves this shard has aged its sketch for.
    pub(crate) moves_seen: u64,
    /// The hot-target generation this shard has fully followed (its sketch
    /// aged, its hot tier within the cap), or [`UNSYNCED`]: only a shard in
    /// step with the target issues rejection tickets.
    pub(crate) synced: u64,
    pub(crate) capacity: usize,
    next_stamp: u32,
}

/// [`ShardInner::synced`] while a hot-tier shrink is still in progress.
pub(crate) const UNSYNCED: u64 = u64::MAX;

/// A single-flight record: `None` while the loader runs.
pub(crate) type FlightList<K, V> = Vec<(u64, K, std::sync::Arc<super::Flight<V>>)>;

/// A shard of the cache, aligned so that neighbours share no line.
#[repr(align(128))]
pub(crate) struct Shard<K, V> {
    pub(crate) inner: RwLock<ShardInner<K, V>>,
    pub(crate) sketch: Sketch,
    /// Written by inserts: kept off the lines that gets read.
    pub(crate) counters: Padded<ShardCounters>,
    /// Entries in the shard; written under the write lock.
    pub(crate) len: AtomicUsize,
    /// Write sections run on the shard (see `ticket.rs`): bumped under the
    /// write lock, read by an insert that holds a rejection ticket.
    pub(crate) version: AtomicU64,
    /// Process-unique, for rejection tickets.
    pub(crate) id: u64,
    /// Loaders in flight for `get_or_insert_with`.
    pub(crate) flights: Mutex<FlightList<K, V>>,
}

impl<K, V> Shard<K, V> {
    /// Shard `index` of `count`; its locks are labelled with that position,
    /// so that the lock registry and the contention profile name them.
    pub(crate) fn new(
        capacity: usize,
        hot_cap: usize,
        hot_fraction: f64,
        index: usize,
        count: usize,
    ) -> Self {
        let shard = Shard {
            inner: RwLock::new(ShardInner::new(capacity, hot_cap, hot_fraction)),
            sketch: Sketch::new(capacity),
            counters: Padded::default(),
            len: AtomicUsize::new(0),
            version: AtomicU64::new(0),
            id: ticket::next_shard_id(),
            flights: Mutex::new(Vec::new()),
        };
        shard
            .inner
            .set_label(&format!("lockscope::cache shard {index}/{count}"));
        shard
            .flights
            .set_label(&format!("lockscope::cache single-flight {index}/{count}"));
        shard
    }
}

impl<K, V> Shard<K, V> {
    /// Ends a write section on `inner` (this shard's, write-locked):
    /// publishes the length and bumps the version, which voids every
    /// rejection ticket issued before.
    #[inline]
    pub(crate) fn wrote(&self, inner: &ShardInner<K, V>) {
        self.len.store(inner.len(), Relaxed);
        self.version
            .store(self.version.load(Relaxed).wrapping_add(1), Relaxed);
    }
}

impl<K, V> ShardInner<K, V> {
    fn new(capacity: usize, hot_cap: usize, hot_fraction: f64) -> Self {
        let words = (capacity * 2).max(8).next_power_of_two();
        ShardInner {
            index: vec![EMPTY; words].into_boxed_slice(),
            mask: words - 1,
            slots: Vec::new(),
            free: Vec::new(),
            hot: ClockQueue::default(),
            warm: ClockQueue::default(),
            hot_cap,
            hot_fraction,
            moves_seen: 0,
            synced: 0,
            capacity,
            next_stamp: 0,
        }
    }

    /// Live entries.
    pub(crate) fn len(&self) -> usize {
        self.hot.len() + self.warm.len()
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

    /// [`Self::find`], telling a miss whether the probe met the key's hash
    /// tag on the way (`Err(false)`) or not (`Err(true)`: the shard holds no
    /// key with this hash).
    #[inline]
    pub(crate) fn probe<Q>(&self, hash: u64, key: &Q) -> Result<(usize, u32), bool>
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
    ) -> Result<(usize, u32), bool> {
        let tag = hash as u32;
        let mut pos = tag as usize & self.mask;
        let mut clean = true;
        loop {
            let w = self.index[pos];
            if w == EMPTY {
                return Err(clean);
            }
            if (w >> 32) as u32 == tag {
                let slot = w as u32;
                if is_it(self.entry(slot)) {
                    return Ok((pos, slot));
                }
                clean = false;
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

    /// Stores a new entry (the key must be absent) and queues it in `tier`.
    pub(crate) fn place(&mut self, hash: u64, key: K, value: V, tier: Tier) -> u32 {
        let stamp = self.stamp();
        let entry = Entry {
            key,
            value,
            hash,
            access: AtomicU8::new(0),
            tier,
            stamp,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(entry);
                s
            }
            None => {
                self.slots.push(Some(entry));
                u32::try_from(self.slots.len() - 1).expect("shard capacity fits in u32")
            }
        };
        let tag = hash as u32;
        let mut pos = tag as usize & self.mask;
        while self.index[pos] != EMPTY {
            pos = (pos + 1) & self.mask;
        }
        self.index[pos] = (u64::from(tag) << 32) | u64::from(slot);
        self.queue_mut(tier).push_back(slot, stamp);
        slot
    }

    /// Takes the entry in `slot` out of the index and the slab. Its queue
    /// item goes stale and is dropped when a hand reaches it.
    pub(crate) fn take(&mut self, slot: u32, sketch: &Sketch) -> Entry<K, V> {
        let hash = self.entry(slot).hash;
        // Its history stays in the sketch for when the key comes back.
        self.entry(slot).drain(sketch);
        let pos = self.position_of(hash, slot);
        self.unlink(pos);
        let entry = self.slots[slot as usize]
            .take()
            .expect("index points at a live slot");
        self.free.push(slot);
        self.queue_mut(entry.tier).forget_one();
        entry
    }

    /// Backward-shift deletion of index word `hole`.
    fn unlink(&mut self, mut hole: usize) {
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let w = self.index[j];
            if w == EMPTY {
                break;
            }
            let home = (w >> 32) as usize & self.mask;
            // The word at j may fill the hole unless its home lies
            // cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.index[hole] = w;
                hole = j;
            }
        }
        self.index[hole] = EMPTY;
    }

    /// A fresh incarnation stamp.
    pub(crate) fn stamp(&mut self) -> u32 {
        self.next_stamp = self.next_stamp.wrapping_add(1);
        self.next_stamp
    }

    pub(crate) fn queue_mut(&mut self, tier: Tier) -> &mut ClockQueue {
        match tier {
            Tier::Hot => &mut self.hot,
            Tier::Warm => &mut self.warm,
        }
    }

    /// Whether queue item `(slot, stamp)` still names a live entry.
    #[inline]
    pub(crate) fn current(&self, slot: u32, stamp: u32) -> bool {
        matches!(&self.slots[slot as usize], Some(e) if e.stamp == stamp)
    }

    /// Drops every entry.
    pub(crate) fn clear(&mut self) {
        self.index.fill(EMPTY);
        self.slots.clear();
        self.free.clear();
        self.hot = ClockQueue::default();
        self.warm = ClockQueue::default();
    }
}

/// Reads `key` under the read lock, returning the value and, if
/// `with_key`, the stored key (for the pattern detector's samples). A miss
/// may leave the thread a rejection ticket for the insert that follows (see
/// `ticket.rs`).
///
/// A hit writes nothing shared but the entry's access byte, and that only
/// while its reference counter is below saturation: the hit is counted in
/// the frequency sketch later, by the CLOCK hand, under the write lock.
#[inline(always)]
pub(crate) fn lookup<K, V, Q>(shard: &Shard<K, V>, hash: u64, key: &Q) -> Option<V>
where
    K: Borrow<Q>,
    V: Clone,
    Q: Eq + ?Sized,
{
    // shard lock: the one lock the get path takes.
    let inner = shard.inner.read();
    let slot = match inner.probe(hash, key) {
        Ok((_, slot)) => slot,
        Err(clean) => {
            if clean && let Some(victim) = inner.idle_warm_victim() {
                // Under the read lock: no write section runs meanwhile.
                ticket::issue(Ticket {
                    shard: shard.id,
                    hash,
                    version: shard.version.load(Relaxed),
                    generation: inner.synced,
                    victim,
                });
            }
            return None;
        }
    };
    let e = inner.entry(slot);
    e.touch();
    Some(e.value.clone())
}
