//! A CLOCK queue: the order of one region of a shard (window, probation or
//! protected), as a circular doubly linked list threaded through the slab.
//!
//! The links live in an array beside the slab ([`Link`], one per slot), so
//! an entry that leaves its region out of order (a removal, a move to
//! another region) is unlinked at once: a queue holds exactly its region's
//! live entries, and nothing is left behind to skip or sweep. A hand looks
//! at the front; the policy (`policy.rs`) gives the front entry its second
//! chance by turning the list one step ([`ClockQueue::rotate`], the front
//! becomes the back), moves it to another region, or evicts it.

/// No slot: the head of an empty queue.
const NIL: u32 = u32::MAX;

/// A slot's neighbours in the queue of its region.
#[derive(Clone, Copy, Default)]
pub(crate) struct Link {
    prev: u32,
    next: u32,
}

/// A CLOCK queue with the count and total weight of its members.
pub(crate) struct ClockQueue {
    /// The front member, or [`NIL`].
    head: u32,
    live: usize,
    weight: u64,
}

impl Default for ClockQueue {
    fn default() -> Self {
        ClockQueue {
            head: NIL,
            live: 0,
            weight: 0,
        }
    }
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

    /// The front member (where the hand is), if any.
    #[inline]
    pub(crate) fn front(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// Queues `slot`, of weight `w` and in no queue, at the back.
    #[inline]
    pub(crate) fn push_back(&mut self, links: &mut [Link], slot: u32, w: u64) {
        if self.head == NIL {
            links[slot as usize] = Link {
                prev: slot,
                next: slot,
            };
            self.head = slot;
        } else {
            let head = self.head;
            let tail = links[head as usize].prev;
            links[slot as usize] = Link {
                prev: tail,
                next: head,
            };
            links[tail as usize].next = slot;
            links[head as usize].prev = slot;
        }
        self.live += 1;
        self.weight += w;
    }

    /// Takes member `slot`, of weight `w`, out of the queue.
    #[inline]
    pub(crate) fn unlink(&mut self, links: &mut [Link], slot: u32, w: u64) {
        let Link { prev, next } = links[slot as usize];
        if next == slot {
            self.head = NIL;
        } else {
            links[prev as usize].next = next;
            links[next as usize].prev = prev;
            if self.head == slot {
                self.head = next;
            }
        }
        self.live -= 1;
        self.weight -= w;
    }

    /// Moves the front member to the back (its second chance): the hand
    /// advances one step. Nothing moves in memory.
    #[inline]
    pub(crate) fn rotate(&mut self, links: &[Link]) {
        if self.head != NIL {
            self.head = links[self.head as usize].next;
        }
    }

    /// A member's weight changed from `old` to `new`.
    pub(crate) fn reweigh(&mut self, old: u64, new: u64) {
        self.weight = self.weight - old + new;
    }

    /// Empties the queue.
    pub(crate) fn clear(&mut self) {
        *self = ClockQueue::default();
    }
}
