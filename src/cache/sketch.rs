//! TinyLFU's frequency sketch: a doorkeeper in front of a Count-Min Sketch
//! of 4-bit counters, aged by periodic halving.
//!
//! * The doorkeeper is a small Bloom filter (two bits in one word per key).
//!   A key's first access in a period only sets its bits; later accesses go
//!   to the counters, and the estimate is the counters' minimum plus one if
//!   the doorkeeper holds the key. Most keys of a real trace are seen once,
//!   so they never reach the counters and cannot blur the counts of the keys
//!   that matter (Einziger, Friedman and Manes, TinyLFU, section 3.4.2).
//! * Each key maps to one 64-byte block of eight words; its four counters
//!   sit in four different words of that block, so an increment touches one
//!   cache line. Counters saturate at 15.
//! * Every `SAMPLE_FACTOR * capacity` increments that changed something
//!   (10, Caffeine's sample size) all counters are halved and the doorkeeper is cleared, so
//!   old popularity fades (the "reset" of TinyLFU).
//!
//! Increments run under the shard's write lock only; the cells are atomics
//! because the pattern detector reads frequencies without it (relaxed loads,
//! an estimate either way). They are relaxed loads and stores, never a
//! locked instruction.

use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Eight words, one cache line.
#[repr(align(64))]
struct Block([AtomicU64; 8]);

/// A value alone on its cache line (two lines: adjacent-line prefetch).
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Padded<T>(pub(crate) T);

/// The frequency sketch of one shard.
pub(crate) struct Sketch {
    blocks: Box<[Block]>,
    block_mask: usize,
    /// The doorkeeper's bits.
    door: Box<[AtomicU64]>,
    door_mask: usize,
    /// Successful increments since the last halving. On a line of its own:
    /// it is written often, and the fields above are read on every access.
    additions: Padded<AtomicUsize>,
    /// Increments between two halvings.
    sample: usize,
}

/// Halve every this many times the capacity in successful increments
/// (Caffeine's sample size).
const SAMPLE_FACTOR: usize = 10;

const LOW_BITS: u64 = 0x7777_7777_7777_7777;

/// Row `i`'s counter of a key in its block: word 2i or 2i+1 (so the four
/// counters are in four words), picked by bit `i` of `sel`, and one of the
/// word's 16 nibbles, picked by bits 4+4i.. of `sel`; as (word, bit shift).
/// The `& 7` is a no-op that spares the bounds check.
#[inline(always)]
fn row(sel: u32, i: usize) -> (usize, u32) {
    let word = (2 * i + ((sel >> i) & 1) as usize) & 7;
    // The nibble's index times four, in one shift and mask.
    let shift = (sel >> (2 + 4 * i)) & 0x3c;
    (word, shift)
}

impl Sketch {
    /// A sketch sized for `capacity` entries: about four counters per entry
    /// and per hash row, halved every [`SAMPLE_FACTOR`] times the capacity
    /// in successful increments.
    pub(crate) fn new(capacity: usize) -> Self {
        // 16 counters per word, 8 words per block: 128 counters per block.
        let words = capacity.max(8).next_power_of_two();
        let nblocks = (words / 8).max(1);
        let blocks = (0..nblocks)
            .map(|_| Block(Default::default()))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        // About four doorkeeper bits per increment of a period: with two
        // bits per key, a few percent of false positives when most keys of
        // a period are new.
        let sample = capacity.max(1).saturating_mul(SAMPLE_FACTOR);
        let door_words = (sample / 16).max(1).next_power_of_two();
        Sketch {
            blocks,
            block_mask: nblocks - 1,
            door: (0..door_words).map(|_| AtomicU64::new(0)).collect(),
            door_mask: door_words - 1,
            additions: Padded(AtomicUsize::new(0)),
            sample,
        }
    }

    /// The doorkeeper word of `hash` and its two bits in it. The cache's
    /// hash is already mixed: its bits are used as they are, apart from
    /// those [`Self::locate`] and the shard choice lean on most.
    #[inline(always)]
    fn door(&self, hash: u64) -> (&AtomicU64, u64) {
        let word = &self.door[(hash >> 12) as usize & self.door_mask];
        (word, (1 << (hash & 63)) | (1 << ((hash >> 6) & 63)))
    }

    /// The block of `hash` and the bits that pick its four counters in it
    /// (see [`row`]).
    #[inline(always)]
    fn locate(&self, hash: u64) -> (&Block, u32) {
        // Re-mix so the bits used here are independent of those that chose
        // the shard and the table slot.
        let h = (hash ^ (hash >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let h = h ^ (h >> 32);
        let block = &self.blocks[(h as usize) & self.block_mask];
        (block, (h >> 24) as u32)
    }

    /// The estimated frequency of `hash`: the smallest of its counters,
    /// plus one if the doorkeeper holds it (at most 16).
    #[inline(always)]
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        let (word, bits) = self.door(hash);
        self.counters(hash) + u8::from(word.load(Relaxed) & bits == bits)
    }

    /// The smallest of the counters of `hash`.
    #[inline]
    fn counters(&self, hash: u64) -> u8 {
        let (block, sel) = self.locate(hash);
        let mut min = 15u64;
        for i in 0..4 {
            let (word, shift) = row(sel, i);
            min = min.min((block.0[word].load(Relaxed) >> shift) & 15);
        }
        min as u8
    }

    /// Counts one access of `hash`. Returns the frequency seen before it.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn increment(&self, hash: u64) -> u8 {
        let prior = self.frequency(hash);
        self.add(hash, 1);
        prior
    }

    /// Counts `n` accesses of `hash`: the first of a period sets its
    /// doorkeeper bits, the others go to the counters. Under the shard's
    /// write lock. The write section never needs the frequency from before,
    /// so a key's first access of a period reads no counter at all.
    #[inline]
    pub(crate) fn add(&self, hash: u64, n: u8) {
        if n == 0 {
            return;
        }
        let (word, bits) = self.door(hash);
        let w = word.load(Relaxed);
        if w & bits != bits {
            word.store(w | bits, Relaxed);
            self.added(1);
            if n > 1 {
                self.add_counters(hash, n - 1);
            }
            return;
        }
        self.add_counters(hash, n);
    }

    /// Counts a change towards the next halving.
    #[inline]
    fn added(&self, n: usize) {
        let n = self.additions.0.load(Relaxed) + n;
        self.additions.0.store(n, Relaxed);
        if n >= self.sample {
            self.additions.0.store(0, Relaxed);
            self.halve();
        }
    }

    /// Counts `n` accesses of `hash` in its counters.
    ///
    /// Conservative update: each counter is raised only as far as the new
    /// estimate (the old minimum plus `n`, at most 15), so counters above
    /// the minimum gain nothing (the estimate is the minimum, and raising
    /// them only adds noise), and a saturated key writes nothing. Each raise
    /// is a relaxed load and store, not a read-modify-write: two threads
    /// raising counters in the same word at the same instant may lose one
    /// raise, an undercount that the sketch's error already dwarfs, and
    /// never a carry into a neighbouring counter (the stored value is
    /// computed from a loaded count below the target). This keeps locked
    /// instructions, and their cost, off the insert path.
    #[inline]
    fn add_counters(&self, hash: u64, n: u8) {
        let (block, sel) = self.locate(hash);
        let mut words = [0u64; 4];
        let mut min = 15u64;
        for (i, w) in words.iter_mut().enumerate() {
            let (word, shift) = row(sel, i);
            *w = block.0[word].load(Relaxed);
            min = min.min((*w >> shift) & 15);
        }
        let target = (min + u64::from(n)).min(15);
        if target > min {
            for (i, w) in words.into_iter().enumerate() {
                let (word, shift) = row(sel, i);
                let c = (w >> shift) & 15;
                if c < target {
                    block.0[word].store(w + ((target - c) << shift), Relaxed);
                }
            }
            self.added((target - min) as usize);
        }
    }

    /// Halves every counter and clears the doorkeeper (the TinyLFU reset),
    /// once per [`SAMPLE_FACTOR`] times the capacity in successful
    /// increments. It runs inside an increment, under the shard's write
    /// lock, so no increment races with it. A reader without the lock (the
    /// pattern detector's [`Self::frequency`]) may see some words halved and
    /// others not yet: its estimate is then between the old count and the
    /// halved one, which is all an estimate promises.
    fn halve(&self) {
        for block in self.blocks.iter() {
            for cell in &block.0 {
                cell.store((cell.load(Relaxed) >> 1) & LOW_BITS, Relaxed);
                // Test-only (fuzz/README.md, "Planted bugs"): the halving
                // zeroes the first counter of every word.
                #[cfg(lockscope_planted_bug = "sketch")]
                cell.store(cell.load(Relaxed) & !0xF, Relaxed);
            }
        }
        for word in self.door.iter() {
            word.store(0, Relaxed);
        }
    }

    /// Zeroes every counter and the doorkeeper.
    pub(crate) fn clear(&self) {
        for block in self.blocks.iter() {
            for cell in &block.0 {
                cell.store(0, Relaxed);
            }
        }
        for word in self.door.iter() {
            word.store(0, Relaxed);
        }
        self.additions.0.store(0, Relaxed);
    }
}

// Plain sequential tests: the cells are the `sync` facade's atomics, which
// exist only inside a model under loom or shuttle.
#[cfg(all(test, not(any(loom, feature = "shuttle"))))]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_and_halve() {
        let s = Sketch::new(64);
        let h = 0x1234_5678_9abc_def0;
        for _ in 0..20 {
            s.increment(h);
        }
        assert_eq!(s.frequency(h), 16, "15 counted, one in the doorkeeper");
        s.halve();
        assert_eq!(s.frequency(h), 7, "counters halved, the doorkeeper cleared");
        s.increment(h);
        assert_eq!(s.frequency(h), 8, "back in the doorkeeper");
        assert!(s.frequency(0xdead_beef) <= 8);
    }

    #[test]
    fn periodic_reset_keeps_counts_small() {
        let s = Sketch::new(16);
        for i in 0..10_000u64 {
            s.increment(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        assert!(s.additions.0.load(Relaxed) <= s.sample);
    }

    #[test]
    fn a_first_access_only_reaches_the_doorkeeper() {
        let s = Sketch::new(1024);
        let h = 0x0123_4567_89ab_cdef;
        assert_eq!(s.increment(h), 0);
        assert_eq!(s.counters(h), 0);
        assert_eq!(s.frequency(h), 1);
        assert_eq!(s.increment(h), 1);
        assert_eq!(s.counters(h), 1);
        s.add(h, 3);
        assert_eq!(s.frequency(h), 5);
    }
}
