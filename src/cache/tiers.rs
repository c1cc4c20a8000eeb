//! The two tiers and the policy that moves entries between them.
//!
//! Both tiers are CLOCK queues: a hand takes the item at the front; an entry
//! whose reference counter is non-zero loses one reference and goes to the
//! back (a second chance), an entry with no references left is the tier's
//! victim. Reads only ever raise the counter (a relaxed store under the read
//! lock); everything else here runs under the shard's write lock.
//!
//! * A new key enters the warm tier. When the shard is full it must win
//!   TinyLFU admission: its sketch frequency must exceed the warm victim's,
//!   or it is rejected and the victim stays.
//! * The warm hand, passing a referenced entry, promotes it to the hot tier
//!   if the hot tier has room or if its frequency exceeds the hot victim's;
//!   that victim is then demoted to the back of the warm tier.
//! * Only the warm tier evicts, so the hot tier is the protected core of the
//!   cache: a scan can at worst churn the warm tier's unreferenced entries.

use core::mem;
use std::collections::VecDeque;

use super::shard::{ShardInner, UNSYNCED};
use super::sketch::Sketch;
use super::stats::{ShardCounters, bump_owned};

/// The tier an entry lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    /// The small, protected tier.
    Hot,
    /// The large tier where new keys land and evictions happen.
    Warm,
}

/// A CLOCK queue of `(slot, stamp)` items. Items whose stamp no longer
/// matches their slot's entry are stale and dropped when popped.
#[derive(Default)]
pub(crate) struct ClockQueue {
    items: VecDeque<(u32, u32)>,
    live: usize,
}

impl ClockQueue {
    /// Entries that belong to this tier.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Queues a new member at the back.
    pub(crate) fn push_back(&mut self, slot: u32, stamp: u32) {
        self.items.push_back((slot, stamp));
        self.live += 1;
    }

    /// A member left the tier while its item stays queued (now stale).
    pub(crate) fn forget_one(&mut self) {
        self.live -= 1;
    }

    /// Takes the front item; the caller requeues it or calls [`Self::left`].
    fn pop_front(&mut self) -> Option<(u32, u32)> {
        self.items.pop_front()
    }

    /// A popped member left the tier.
    fn left(&mut self) {
        self.live -= 1;
    }

    fn requeue_back(&mut self, slot: u32, stamp: u32) {
        self.items.push_back((slot, stamp));
    }

    fn requeue_front(&mut self, slot: u32, stamp: u32) {
        self.items.push_front((slot, stamp));
    }

    /// The `i`-th queued item from the front.
    #[inline]
    fn peek(&self, i: usize) -> Option<(u32, u32)> {
        self.items.get(i).copied()
    }

    /// Whether stale items outnumber live ones enough to sweep them out.
    fn needs_compaction(&self) -> bool {
        self.items.len() > 2 * self.live + 64
    }
}

/// The frequency a new key competes with in admission: its count before
/// this access (`prior`, from [`Sketch::increment`]) plus this access.
#[inline]
pub(crate) fn admission_frequency(prior: u8) -> u8 {
    (prior + 1).min(15)
}

/// What an insert did, for the counters.
struct Count<'a> {
    counters: &'a ShardCounters,
    on: bool,
}

impl Count<'_> {
    #[inline]
    fn add(&self, pick: impl FnOnce(&ShardCounters) -> &core::sync::atomic::AtomicU64) {
        if self.on {
            // Written only under the shard's write lock.
            bump_owned(pick(self.counters));
        }
    }
}

impl<K, V> ShardInner<K, V> {
    /// The hash of the entry that [`Self::warm_victim`] would pick without
    /// moving anything, if there is one: the shard is full and in step with
    /// the hot target, and the first live item of the warm queue (within a
    /// few stale ones) is unreferenced and owes the sketch nothing. Under
    /// the read lock (see `ticket.rs`).
    #[inline]
    pub(crate) fn idle_warm_victim(&self) -> Option<u64> {
        if self.len() < self.capacity || self.synced == UNSYNCED {
            return None;
        }
        // An eviction drops the victim's item, so the front is usually live.
        for i in 0..2 {
            let (slot, stamp) = self.warm.peek(i)?;
            if let Some(e) = &self.slots[slot as usize]
                && e.stamp == stamp
            {
                return e.is_idle().then_some(e.hash);
            }
        }
        None
    }
}

impl<K: Eq, V> ShardInner<K, V> {
    /// Inserts or replaces `key`, counting the access in the sketch. A new
    /// key in a full shard goes through admission and may be rejected.
    /// `count` turns the counters on. `counted`: the key's frequency, if
    /// the caller has already counted this access in the sketch (an insert
    /// whose rejection ticket it did not lose, see `ticket.rs`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        sketch: &Sketch,
        counters: &ShardCounters,
        count: bool,
        counted: Option<u8>,
    ) {
        let c = Count {
            counters,
            on: count,
        };
        if let Some((_, slot)) = self.find(hash, &key) {
            let e = self.entry_mut(slot);
            e.touch();
            // Test-only (fuzz/README.md, "Planted bugs"): replacing the
            // value of a hot entry keeps the old one.
            #[cfg(lockscope_planted_bug = "cache_ops")]
            if matches!(e.tier, Tier::Hot) {
                return;
            }
            e.value = value;
            return;
        }
        // An insert of an absent key is an access: usually the miss that
        // preceded it, which the get path leaves uncounted so that it
        // writes nothing shared.
        let candidate_freq = counted.unwrap_or_else(|| admission_frequency(sketch.increment(hash)));
        if self.len() < self.capacity {
            self.place(hash, key, value, Tier::Warm);
            c.add(|c| &c.admissions);
            self.compact();
            return;
        }
        let victim = self.warm_victim(sketch, &c);
        let victim_freq = sketch.frequency(self.entry(victim).hash);
        if candidate_freq > victim_freq {
            // The victim's item is at the front (see `warm_victim`): drop it
            // now rather than leave it stale in front of the next victim.
            let front = self.warm.pop_front();
            debug_assert_eq!(front.map(|(slot, _)| slot), Some(victim));
            drop(self.take(victim, sketch));
            c.add(|c| &c.evictions);
            self.place(hash, key, value, Tier::Warm);
            c.add(|c| &c.admissions);
            self.compact();
        } else {
            c.add(|c| &c.rejections);
        }
    }

    /// Follows a new hot fraction: sets the hot tier's cap and, if the tier
    /// is over it, demotes up to two of its CLOCK victims (a shrink is
    /// spread over the inserts that follow).
    pub(crate) fn retarget(
        &mut self,
        fraction: f64,
        sketch: &Sketch,
        counters: &ShardCounters,
        count: bool,
    ) {
        let cap = ((self.capacity as f64 * fraction) as usize).min(self.capacity - 1);
        self.hot_cap = cap;
        let c = Count {
            counters,
            on: count,
        };
        for _ in 0..2 {
            if self.hot.len() <= cap {
                break;
            }
            let (victim, _) = self.hot_victim(sketch);
            self.hot.left();
            self.move_to(victim, Tier::Warm);
            c.add(|c| &c.demotions);
        }
    }

    /// Removes `key`, returning its value.
    pub(crate) fn remove<Q>(&mut self, hash: u64, key: &Q, sketch: &Sketch) -> Option<V>
    where
        K: core::borrow::Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let (_, slot) = self.find(hash, key)?;
        let entry = self.take(slot, sketch);
        self.compact();
        Some(entry.value)
    }

    /// Runs the warm hand until it finds an unreferenced entry, promoting
    /// referenced ones on the way when they earn it. The victim's item is
    /// put back at the front, so a rejected candidate leaves it next in line.
    fn warm_victim(&mut self, sketch: &Sketch, c: &Count<'_>) -> u32 {
        loop {
            let (slot, stamp) = self
                .warm
                .pop_front()
                .expect("a full shard has warm entries");
            if !self.current(slot, stamp) {
                continue;
            }
            if self.entry(slot).age(sketch) == 0 {
                self.warm.requeue_front(slot, stamp);
                return slot;
            }
            if self.hot_cap > 0 && self.promote(slot, sketch, c) {
                continue;
            }
            self.warm.requeue_back(slot, stamp);
        }
    }

    /// Moves the popped warm entry in `slot` to the hot tier if there is
    /// room or it is more frequent than the hot victim, which is demoted.
    fn promote(&mut self, slot: u32, sketch: &Sketch, c: &Count<'_>) -> bool {
        if self.hot.len() >= self.hot_cap {
            let (victim, stamp) = self.hot_victim(sketch);
            let candidate_freq = sketch.frequency(self.entry(slot).hash);
            if candidate_freq <= sketch.frequency(self.entry(victim).hash) {
                self.hot.requeue_front(victim, stamp);
                return false;
            }
            self.hot.left();
            self.move_to(victim, Tier::Warm);
            c.add(|c| &c.demotions);
        }
        self.warm.left();
        self.move_to(slot, Tier::Hot);
        c.add(|c| &c.promotions);
        true
    }

    /// Runs the hot hand until it finds an unreferenced entry; returns it
    /// popped (the caller requeues or moves it).
    fn hot_victim(&mut self, sketch: &Sketch) -> (u32, u32) {
        loop {
            let (slot, stamp) = self.hot.pop_front().expect("a full hot tier has entries");
            if !self.current(slot, stamp) {
                continue;
            }
            if self.entry(slot).age(sketch) == 0 {
                return (slot, stamp);
            }
            self.hot.requeue_back(slot, stamp);
        }
    }

    /// Re-stamps the entry in `slot` and queues it at the back of `tier`.
    fn move_to(&mut self, slot: u32, tier: Tier) {
        let stamp = self.stamp();
        let e = self.entry_mut(slot);
        e.tier = tier;
        e.stamp = stamp;
        self.queue_mut(tier).push_back(slot, stamp);
    }

    /// Drops stale items from a queue that has too many.
    fn compact(&mut self) {
        for tier in [Tier::Hot, Tier::Warm] {
            if self.queue_mut(tier).needs_compaction() {
                let mut q = mem::take(self.queue_mut(tier));
                q.items.retain(|&(s, st)| self.current(s, st));
                *self.queue_mut(tier) = q;
            }
        }
    }
}
