//! A miniature W-TinyLFU cache for the window climber (`climb.rs`): the
//! policy of `policy.rs` with exact LRU segments, fed a hash sample of the
//! cache's gets, with one frequency sketch shared by every miniature.
//!
//! Every miniature sees the same sampled accesses, so the sketch's counts
//! are the same for all of them: the climber keeps one ([`MiniSketch`]) and
//! hands each access's estimate to every miniature, which stores it in the
//! key's node. A key's count changes only when the key is accessed (which
//! refreshes its node) or when the sketch halves, which the node's copy
//! follows by the number of halvings since it was taken. So an admission
//! reads two bytes, not the sketch.
//!
//! All of this is plain data behind the climber's lock.

use super::shard::backward_shift;

const NIL: u32 = u32::MAX;

/// A node's segment.
const WINDOW: u8 = 0;
const PROBATION: u8 = 1;
const PROTECTED: u8 = 2;

#[derive(Clone, Copy)]
struct Node {
    hash: u64,
    prev: u32,
    next: u32,
    segment: u8,
    /// The sketch's estimate at the key's last access...
    freq: u8,
    /// ...taken after this many halvings (mod 256).
    halvings: u8,
}

impl Node {
    /// The key's estimate after `halvings` halvings.
    #[inline]
    fn freq(&self, halvings: u8) -> u8 {
        let since = halvings.wrapping_sub(self.halvings);
        if since >= 8 { 0 } else { self.freq >> since }
    }
}

/// A doubly linked LRU list of nodes, least recent at the head.
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

/// The miniatures' frequency sketch: TinyLFU's doorkeeper and Count-Min
/// Sketch of 4-bit counters with periodic halving, as the shards' (see
/// `sketch.rs`), without atomics.
pub(crate) struct MiniSketch {
    cells: Box<[u64]>,
    mask: usize,
    door: Box<[u64]>,
    door_mask: usize,
    additions: usize,
    sample: usize,
    /// Halvings so far (mod 256).
    pub(crate) halvings: u8,
}

impl MiniSketch {
    /// A sketch for a miniature of `capacity` entries, halved every ten
    /// times that many increments, as the shards' are.
    pub(crate) fn new(capacity: usize) -> Self {
        let words = capacity.max(8).next_power_of_two();
        let sample = capacity.max(1) * 10;
        let door_words = (sample / 16).max(1).next_power_of_two();
        MiniSketch {
            cells: vec![0; words].into_boxed_slice(),
            mask: words - 1,
            door: vec![0; door_words].into_boxed_slice(),
            door_mask: door_words - 1,
            additions: 0,
            sample,
            halvings: 0,
        }
    }

    /// Counts an access of `hash` (already mixed); returns the estimated
    /// frequency after it: the first access of a period only sets the
    /// doorkeeper's bits, later ones raise the counters (conservative
    /// update), and the estimate is their minimum plus the doorkeeper bit.
    pub(crate) fn add(&mut self, hash: u64) -> u8 {
        let mut min = 15u64;
        let mut at = [(0usize, 0u32); 4];
        for (i, a) in at.iter_mut().enumerate() {
            let x = hash.rotate_right(16 * i as u32);
            *a = ((x >> 20) as usize & self.mask, ((x >> 4) & 15) as u32 * 4);
            min = min.min((self.cells[a.0] >> a.1) & 15);
        }
        let word = (hash >> 12) as usize & self.door_mask;
        let bits = (1u64 << (hash & 63)) | (1u64 << ((hash >> 6) & 63));
        if self.door[word] & bits != bits {
            self.door[word] |= bits;
            self.added();
            return min as u8 + 1;
        }
        if min == 15 {
            return 16;
        }
        for (w, shift) in at {
            if (self.cells[w] >> shift) & 15 == min {
                self.cells[w] += 1 << shift;
            }
        }
        self.added();
        min as u8 + 2
    }

    fn added(&mut self) {
        self.additions += 1;
        if self.additions >= self.sample {
            self.additions = 0;
            self.halvings = self.halvings.wrapping_add(1);
            for c in self.cells.iter_mut() {
                *c = (*c >> 1) & 0x7777_7777_7777_7777;
            }
            self.door.fill(0);
        }
    }
}

/// One miniature cache: a window, probation and protected LRU list, and an
/// open-addressing index (linear probing, backward-shift deletion) of
/// node numbers.
pub(crate) struct Mini {
    nodes: Vec<Node>,
    free: Vec<u32>,
    index: Box<[u32]>,
    mask: usize,
    lists: [List; 3],
    capacity: u32,
    /// The window's share of the capacity, and the protected segment's of
    /// the main region.
    window: f64,
    hot: f64,
    window_cap: u32,
    protected_cap: u32,
    /// Misses so far.
    pub(crate) misses: u64,
}

#[inline]
fn home(hash: u64) -> usize {
    (hash ^ (hash >> 31)) as usize
}

impl Mini {
    /// A miniature of `capacity` entries whose window is `window` of it and
    /// whose protected segment is `hot` of the rest.
    pub(crate) fn new(capacity: u32, window: f64, hot: f64) -> Self {
        let mut mini = Mini {
            nodes: Vec::new(),
            free: Vec::new(),
            index: Box::new([]),
            mask: 0,
            lists: [List::EMPTY; 3],
            capacity: 0,
            window,
            hot,
            window_cap: 0,
            protected_cap: 0,
            misses: 0,
        };
        mini.resize(capacity);
        mini
    }

    /// Sets the capacity (entries beyond it leave at the next misses).
    pub(crate) fn resize(&mut self, capacity: u32) {
        let capacity = capacity.max(1);
        if capacity == self.capacity {
            return;
        }
        self.capacity = capacity;
        self.window_cap = (f64::from(capacity) * self.window).round() as u32;
        let main = capacity - self.window_cap.min(capacity);
        self.protected_cap = (f64::from(main) * self.hot) as u32;
        let words = ((capacity as usize + 1) * 2).next_power_of_two();
        if words > self.index.len() {
            self.index = vec![NIL; words].into_boxed_slice();
            self.mask = words - 1;
            for (n, node) in self.nodes.iter().enumerate() {
                if node.segment != NIL as u8 {
                    let mut pos = home(node.hash) & self.mask;
                    while self.index[pos] != NIL {
                        pos = (pos + 1) & self.mask;
                    }
                    self.index[pos] = n as u32;
                }
            }
        }
    }

    fn len(&self) -> u32 {
        self.lists[0].len + self.lists[1].len + self.lists[2].len
    }

    fn unlink(&mut self, n: u32) {
        let Node {
            prev,
            next,
            segment,
            ..
        } = self.nodes[n as usize];
        let list = &mut self.lists[segment as usize];
        if prev == NIL {
            list.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        list.len -= 1;
    }

    /// Links node `n` (unlinked) as the most recent of `segment`.
    fn push(&mut self, n: u32, segment: u8) {
        let list = &mut self.lists[segment as usize];
        let tail = list.tail;
        list.tail = n;
        if tail == NIL {
            list.head = n;
        } else {
            self.nodes[tail as usize].next = n;
        }
        list.len += 1;
        let node = &mut self.nodes[n as usize];
        node.prev = tail;
        node.next = NIL;
        node.segment = segment;
    }

    /// The index position of `hash`, if present.
    fn find(&self, hash: u64) -> Option<usize> {
        let mut pos = home(hash) & self.mask;
        loop {
            let n = self.index[pos];
            if n == NIL {
                return None;
            }
            if self.nodes[n as usize].hash == hash {
                return Some(pos);
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Backward-shift deletion of index position `hole`.
    fn unindex(&mut self, hole: usize) {
        let nodes = &self.nodes;
        backward_shift(&mut self.index, self.mask, hole, NIL, |n| {
            home(nodes[n as usize].hash)
        });
    }

    fn evict(&mut self, n: u32) {
        self.unlink(n);
        if let Some(pos) = self.find(self.nodes[n as usize].hash) {
            self.unindex(pos);
        }
        self.nodes[n as usize].segment = NIL as u8;
        self.free.push(n);
    }

    /// An access of `hash` whose sketch estimate is now `freq` after
    /// `halvings` halvings; returns whether it hit.
    pub(crate) fn access(&mut self, hash: u64, freq: u8, halvings: u8) -> bool {
        if let Some(pos) = self.find(hash) {
            let n = self.index[pos];
            let node = &mut self.nodes[n as usize];
            node.freq = freq;
            node.halvings = halvings;
            let segment = node.segment;
            self.unlink(n);
            if segment == PROBATION {
                self.push(n, PROTECTED);
                if self.lists[PROTECTED as usize].len > self.protected_cap {
                    let d = self.lists[PROTECTED as usize].head;
                    self.unlink(d);
                    self.push(d, PROBATION);
                }
            } else {
                self.push(n, segment);
            }
            return true;
        }
        self.misses += 1;
        let node = Node {
            hash,
            prev: NIL,
            next: NIL,
            segment: WINDOW,
            freq,
            halvings,
        };
        let n = match self.free.pop() {
            Some(n) => {
                self.nodes[n as usize] = node;
                n
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let mut pos = home(hash) & self.mask;
        while self.index[pos] != NIL {
            pos = (pos + 1) & self.mask;
        }
        self.index[pos] = n;
        self.push(n, WINDOW);
        // The window's least recent entry becomes a candidate on probation.
        let mut candidate = NIL;
        if self.lists[WINDOW as usize].len > self.window_cap {
            candidate = self.lists[WINDOW as usize].head;
            self.unlink(candidate);
            self.push(candidate, PROBATION);
        }
        while self.len() > self.capacity {
            // Probation's least recent entry other than the candidate,
            // else protected's; with no main region left, the candidate
            // (the window's least recent), else the window's.
            let mut victim = self.lists[PROBATION as usize].head;
            if victim != NIL && victim == candidate {
                victim = self.nodes[victim as usize].next;
            }
            if victim == NIL {
                victim = self.lists[PROTECTED as usize].head;
            }
            let evict = if victim == NIL {
                if candidate == NIL {
                    self.lists[WINDOW as usize].head
                } else {
                    candidate
                }
            } else if candidate == NIL
                || self.nodes[candidate as usize].freq(halvings)
                    > self.nodes[victim as usize].freq(halvings)
            {
                victim
            } else {
                candidate
            };
            if evict == candidate {
                candidate = NIL;
            }
            self.evict(evict);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mixed(k: u64) -> u64 {
        k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (k << 7)
    }

    fn run(mini: &mut Mini, sketch: &mut MiniSketch, keys: impl Iterator<Item = u64>) -> u64 {
        let mut hits = 0;
        for k in keys {
            let h = mixed(k);
            let f = sketch.add(h);
            hits += u64::from(mini.access(h, f, sketch.halvings));
            assert!(mini.len() <= mini.capacity);
        }
        hits
    }

    #[test]
    fn holds_its_capacity_and_hits_what_it_holds() {
        let mut s = MiniSketch::new(100);
        let mut m = Mini::new(100, 0.01, 0.8);
        assert_eq!(run(&mut m, &mut s, 0..100), 0);
        assert_eq!(
            run(&mut m, &mut s, 0..100),
            100,
            "100 keys fit in 100 entries"
        );
        run(&mut m, &mut s, 1_000..5_000);
        assert_eq!(m.len(), 100);
    }

    #[test]
    fn frequency_keeps_the_hot_keys_through_a_scan() {
        let mut s = MiniSketch::new(100);
        let mut m = Mini::new(100, 0.01, 0.8);
        for _ in 0..5 {
            run(&mut m, &mut s, 0..50);
        }
        run(&mut m, &mut s, 10_000..12_000);
        assert!(run(&mut m, &mut s, 0..50) >= 45);
    }

    #[test]
    fn a_full_window_is_lru() {
        // A loop one larger than the cache: LRU misses every access.
        let mut s = MiniSketch::new(10);
        let mut m = Mini::new(10, 1.0, 0.8);
        let keys = (0..1_000).map(|i| i % 11);
        assert_eq!(run(&mut m, &mut s, keys), 0);
    }

    #[test]
    fn shrinks_when_resized() {
        let mut s = MiniSketch::new(100);
        let mut m = Mini::new(100, 0.2, 0.8);
        run(&mut m, &mut s, 0..100);
        m.resize(400);
        run(&mut m, &mut s, 0..400);
        assert_eq!(m.len(), 400);
        assert_eq!(run(&mut m, &mut s, 0..400), 400);
        m.resize(50);
        run(&mut m, &mut s, 1_000..1_001);
        assert_eq!(m.len(), 50);
    }

    #[test]
    fn the_sketch_counts_and_halves() {
        let mut s = MiniSketch::new(8);
        let h = mixed(42);
        assert_eq!(s.add(h), 1, "the doorkeeper first");
        assert_eq!(s.add(h), 2);
        for _ in 0..30 {
            s.add(h);
        }
        assert_eq!(s.add(h), 16, "saturated");
        let before = s.halvings;
        for k in 1_000..1_100 {
            s.add(mixed(k));
        }
        assert!(s.halvings != before);
    }
}
