//! A CLOCK queue of `(slot, stamp)` items: the order of one region of a
//! shard (window, probation or protected).
//!
//! A hand takes the item at the front; the policy (`policy.rs`) requeues it
//! at the back (a second chance), moves it to another region, or evicts it.
//! An entry that leaves a region out of order (a removal, a move) is not
//! searched for in the queue: its item stays behind, *stale* (its stamp no
//! longer matches the entry's), and is dropped when a hand reaches it or
//! when stale items outnumber live ones.

use std::collections::VecDeque;

/// A CLOCK queue with the count and total weight of its live members.
#[derive(Default)]
pub(crate) struct ClockQueue {
    items: VecDeque<(u32, u32)>,
    live: usize,
    weight: u64,
}

impl ClockQueue {
    /// Members (live entries).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The members' total weight.
    #[inline]
    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// Queues a new member of weight `w` at the back.
    pub(crate) fn push_back(&mut self, slot: u32, stamp: u32, w: u64) {
        self.items.push_back((slot, stamp));
        self.live += 1;
        self.weight += w;
    }

    /// A member of weight `w` left the queue (its item, if still queued,
    /// is stale from now on).
    pub(crate) fn left(&mut self, w: u64) {
        self.live -= 1;
        self.weight -= w;
    }

    /// A member's weight changed from `old` to `new`.
    pub(crate) fn reweigh(&mut self, old: u64, new: u64) {
        self.weight = self.weight - old + new;
    }

    /// Empties the queue, keeping its buffer.
    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.live = 0;
        self.weight = 0;
    }

    /// Takes the front item; the caller requeues it, or calls
    /// [`Self::left`] if it was live and leaves.
    pub(crate) fn pop_front(&mut self) -> Option<(u32, u32)> {
        self.items.pop_front()
    }

    /// Puts a popped live item back at the back (its second chance).
    pub(crate) fn requeue_back(&mut self, slot: u32, stamp: u32) {
        self.items.push_back((slot, stamp));
    }

    /// Puts a popped live item back where it was.
    pub(crate) fn requeue_front(&mut self, slot: u32, stamp: u32) {
        self.items.push_front((slot, stamp));
    }

    /// Takes the item `(slot, stamp)` out if it is at either end (where
    /// the hands leave a victim and where a candidate was just queued), so
    /// it does not linger stale; returns whether it did.
    #[inline]
    pub(crate) fn unqueue_end(&mut self, slot: u32, stamp: u32) -> bool {
        if self.items.front() == Some(&(slot, stamp)) {
            self.items.pop_front();
            true
        } else if self.items.back() == Some(&(slot, stamp)) {
            self.items.pop_back();
            true
        } else {
            false
        }
    }

    /// Whether stale items outnumber live ones enough to be worth a sweep.
    #[inline]
    pub(crate) fn needs_compaction(&self) -> bool {
        self.items.len() > 2 * self.live + 64
    }

    /// Items queued, stale ones included (bounds the hands' walks).
    pub(crate) fn queued(&self) -> usize {
        self.items.len()
    }

    /// Drops the stale items; `current` tells a live item.
    pub(crate) fn compact(&mut self, current: impl Fn(u32, u32) -> bool) {
        self.items.retain(|&(s, st)| current(s, st));
    }
}
