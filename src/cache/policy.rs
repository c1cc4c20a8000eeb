//! The eviction policy: W-TinyLFU, as in Caffeine, with CLOCK hands in
//! place of LRU lists.
//!
//! A shard is split into three regions, each a CLOCK queue:
//!
//! * the **window** (1% of the capacity to start with; the climber in
//!   `climb.rs` moves it): every new key lands here, so it is readable right
//!   after its insert and has a little time to be used again before it must
//!   prove itself. Frequency admission with no window turns away exactly the
//!   keys that a recency-heavy workload reuses soon, and on such a workload
//!   falls behind plain LRU.
//! * **probation** (the main region less the protected part): the window's
//!   victims join it as *candidates*, and when the shard is over capacity
//!   each candidate competes with probation's CLOCK victim: TinyLFU keeps
//!   the one the sketch counts as more frequent, and evicts the other.
//! * **protected** (80% of the main region): entries used again while on
//!   probation. When it overflows, its CLOCK victim goes back to probation.
//!
//! Why CLOCK: a hit runs under the shard's read lock and must not move the
//! entry in a list; it raises the entry's access byte instead, and a hand
//! passing a referenced entry gives it the move a list would have given at
//! the hit (window: to the back; probation: to protected; protected: to the
//! back). Hits are counted in the sketch when a hand passes the entry, so
//! every comparison drains both sides' pending hits first.
//!
//! Admission compares sketch frequencies; a candidate that is no more
//! frequent than the victim loses, except that one in 128 candidates of
//! frequency 6 or more wins anyway (Caffeine's defence against an attacker
//! who keeps a victim artificially hot so that no warm key gets in).
//!
//! Everything here runs under the shard's write lock.

use core::mem;

use super::RemovalCause;
use super::queue::{ClockQueue, Link};
use super::shard::{Entry, Region, Removals, ShardInner};
use super::sketch::Sketch;
use super::stats::{ShardCounters, bump_owned};

/// Candidates at least this frequent are admitted at random (1 in 128)
/// when they lose (Caffeine's `ADMIT_HASHDOS_THRESHOLD`).
const WARM: u8 = 6;

/// Counts an event if observability is on.
#[inline]
fn count(
    c: Option<&ShardCounters>,
    pick: impl FnOnce(&ShardCounters) -> &crate::sync::atomic::AtomicU64,
) {
    if let Some(c) = c {
        // Written only under the shard's write lock.
        bump_owned(pick(c));
    }
}

impl<K: Eq, V> ShardInner<K, V> {
    /// Inserts or replaces `key` and evicts what no longer fits; `weight`
    /// is at most the capacity. An insert of an absent key counts as an
    /// access in the sketch: usually the miss that preceded it, which the
    /// get path leaves uncounted so that it writes nothing shared.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        weight: u64,
        sketch: &Sketch,
        counters: Option<&ShardCounters>,
        out: &mut Removals<K, V>,
    ) {
        let slot = match self.probe(hash, &key) {
            Ok((_, slot)) => slot,
            Err(end) => {
                sketch.add(hash, 1);
                let slot = self.place(end, hash, key, value, weight, Region::Window);
                self.evict(slot, sketch, counters, out);
                return;
            }
        };
        let e = self.entry_mut(slot);
        e.touch();
        // Test-only (fuzz/README.md, "Planted bugs"): replacing the
        // value of a protected entry keeps the old one.
        #[cfg(lockscope_planted_bug = "cache_ops")]
        if matches!(e.region, Region::Protected) {
            return;
        }
        let old_weight = mem::replace(&mut e.weight, weight);
        let old = mem::replace(&mut e.value, value);
        let region = e.region;
        self.reweigh(region, old_weight, weight);
        out.push(key, old, RemovalCause::Replaced);
        if weight > old_weight {
            self.evict(slot, sketch, counters, out);
        }
    }

    /// Brings the window within its cap (its victims become candidates on
    /// probation) and the shard within its capacity (candidates against
    /// probation's victims). Never evicts `keep`, the entry just written.
    fn evict(
        &mut self,
        keep: u32,
        sketch: &Sketch,
        c: Option<&ShardCounters>,
        out: &mut Removals<K, V>,
    ) {
        let mut candidates = mem::take(&mut self.candidates);
        candidates.clear();
        // Each member is passed at most twice: once to clear its
        // reference, once to move it.
        let mut walk = 2 * self.window.len();
        while self.window.weight() > self.window_cap && walk > 0 {
            walk -= 1;
            let Some(slot) = self.window.front() else {
                break;
            };
            if slot == keep || self.entry(slot).take_refs(sketch) {
                self.window.rotate(&self.links);
                continue;
            }
            let w = self.entry(slot).weight;
            self.window.unlink(&mut self.links, slot, w);
            self.move_to(slot, Region::Probation);
            candidates.push(slot);
        }
        let mut next = 0;
        while self.weight() > self.capacity {
            // The oldest candidate still on probation. A write section
            // places no entry after its first, so a candidate's slot is
            // either still its own or empty.
            while next < candidates.len() && !self.on_probation(candidates[next]) {
                next += 1;
            }
            let candidate = candidates.get(next).copied();
            let Some(victim) = self.victim(keep, sketch, c) else {
                break;
            };
            let evict = match candidate {
                Some(cand) if cand != victim => {
                    if self.admit(cand, victim, sketch) {
                        victim
                    } else {
                        next += 1;
                        count(c, |c| &c.rejections);
                        cand
                    }
                }
                _ => victim,
            };
            // Both sides were found unreferenced by a hand just now.
            let e = self.take_drained(evict);
            count(c, |c| &c.evictions);
            out.push(e.key, e.value, RemovalCause::Capacity);
        }
        // Candidates that stayed were admitted (against a victim or into
        // room).
        if c.is_some() {
            for &slot in &candidates {
                if self.on_probation(slot) {
                    count(c, |c| &c.admissions);
                }
            }
        }
        self.candidates = candidates;
        // A window that grew takes its room from the protected segment.
        for _ in 0..2 {
            if self.protected.weight() <= self.protected_cap || !self.demote(sketch, c) {
                break;
            }
        }
    }

    /// Whether `slot` holds an entry on probation.
    #[inline]
    fn on_probation(&self, slot: u32) -> bool {
        matches!(&self.slots[slot as usize], Some(e) if e.region == Region::Probation)
    }

    /// Whether `candidate` should replace `victim` in the main region.
    #[inline]
    fn admit(&mut self, candidate: u32, victim: u32, sketch: &Sketch) -> bool {
        let cf = sketch.frequency(self.entry(candidate).hash);
        let vf = sketch.frequency(self.entry(victim).hash);
        if cf > vf {
            return true;
        }
        if cf >= WARM {
            // xorshift64: any cheap, unpredictable-enough stream will do.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            return self.rng & 127 == 0;
        }
        false
    }

    /// The next entry to evict, not `keep`: probation's CLOCK victim
    /// (promoting referenced entries on the way), else protected's, else
    /// the window's; the hand stops on it, at the front of its queue.
    /// `None` if probation is empty or `keep` is all there is.
    fn victim(&mut self, keep: u32, sketch: &Sketch, c: Option<&ShardCounters>) -> Option<u32> {
        let mut walk = 2 * self.probation.len();
        while walk > 0 {
            walk -= 1;
            let slot = self.probation.front()?;
            if slot == keep {
                self.probation.rotate(&self.links);
                continue;
            }
            if self.entry(slot).take_refs(sketch) {
                self.promote(slot, sketch, c);
                continue;
            }
            return Some(slot);
        }
        if let Some(slot) = Self::hand(&mut self.protected, &self.links, &self.slots, keep, sketch)
        {
            return Some(slot);
        }
        Self::hand(&mut self.window, &self.links, &self.slots, keep, sketch)
    }

    /// Runs `queue`'s hand to an unreferenced entry other than `keep`,
    /// giving referenced ones a second chance; leaves it at the front.
    fn hand(
        queue: &mut ClockQueue,
        links: &[Link],
        slots: &[Option<Entry<K, V>>],
        keep: u32,
        sketch: &Sketch,
    ) -> Option<u32> {
        let mut walk = 2 * queue.len();
        while walk > 0 {
            walk -= 1;
            let slot = queue.front()?;
            let e = slots[slot as usize]
                .as_ref()
                .expect("a queue holds live slots");
            if slot == keep || e.take_refs(sketch) {
                queue.rotate(links);
                continue;
            }
            return Some(slot);
        }
        None
    }

    /// Moves the probation entry in `slot` to protected; if that
    /// overflows, protected's victim goes back to probation.
    fn promote(&mut self, slot: u32, sketch: &Sketch, c: Option<&ShardCounters>) {
        let w = self.entry(slot).weight;
        self.probation.unlink(&mut self.links, slot, w);
        self.move_to(slot, Region::Protected);
        count(c, |c| &c.promotions);
        while self.protected.weight() > self.protected_cap {
            if !self.demote(sketch, c) {
                break;
            }
        }
    }

    /// Moves protected's CLOCK victim to the back of probation; false if
    /// protected has none.
    fn demote(&mut self, sketch: &Sketch, c: Option<&ShardCounters>) -> bool {
        let Some(slot) = Self::hand(
            &mut self.protected,
            &self.links,
            &self.slots,
            u32::MAX,
            sketch,
        ) else {
            return false;
        };
        let w = self.entry(slot).weight;
        self.protected.unlink(&mut self.links, slot, w);
        self.move_to(slot, Region::Probation);
        count(c, |c| &c.demotions);
        true
    }

    /// Queues the live entry in `slot` (already out of its old queue) at
    /// the back of `region`.
    #[inline(always)]
    fn move_to(&mut self, slot: u32, region: Region) {
        let e = self.entry_mut(slot);
        e.region = region;
        let w = e.weight;
        let (q, links) = self.queue_links(region);
        q.push_back(links, slot, w);
    }
}
