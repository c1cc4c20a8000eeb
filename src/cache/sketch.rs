//! A Count-Min Sketch of 4-bit counters, updated with atomics (TinyLFU).
//!
//! Each key maps to one 64-byte block of eight words; its four counters sit
//! in four different words of that block, so an increment touches one cache
//! line. Counters saturate at 15, and every `20 * capacity` successful
//! increments all counters are halved, so old popularity fades (the "reset" of TinyLFU).
//!
//! Increments are relaxed loads and stores, never a lock and never a locked
//! instruction: most run under the shard's write lock, but an insert
//! rejected with a ticket (see `ticket.rs`) counts its key with no lock
//! held, so two increments, or an increment and a halving, can race (see
//! [`Sketch::add`] for what that costs). A saturated counter is only read.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

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
    /// Successful increments since the last halving. On a line of its own:
    /// it is written often, and the fields above are read on every access.
    additions: Padded<AtomicUsize>,
    /// Increments between two halvings.
    sample: usize,
}

/// Halve every this many times the capacity in successful increments.
/// Measured on the benchmark streams (4M keys, capacity 10k): 10 loses
/// about a point of hit ratio on stationary Zipf, 20 keeps it and still
/// follows a moving hot set; see `docs/cache.md`.
const SAMPLE_FACTOR: usize = 20;

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
    /// and per hash row, halved every ten times the capacity.
    pub(crate) fn new(capacity: usize) -> Self {
        // 16 counters per word, 8 words per block: 128 counters per block.
        let words = capacity.max(8).next_power_of_two();
        let nblocks = (words / 8).max(1);
        let blocks = (0..nblocks)
            .map(|_| Block(Default::default()))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Sketch {
            blocks,
            block_mask: nblocks - 1,
            additions: Padded(AtomicUsize::new(0)),
            sample: capacity.max(1).saturating_mul(SAMPLE_FACTOR),
        }
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

    /// The estimated frequency of `hash`: the smallest of its counters.
    #[inline]
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        let (block, sel) = self.locate(hash);
        let mut min = 15u64;
        for i in 0..4 {
            let (word, shift) = row(sel, i);
            min = min.min((block.0[word].load(Relaxed) >> shift) & 15);
        }
        min as u8
    }

    /// Counts one access of `hash`. Returns the frequency seen before it.
    #[inline]
    pub(crate) fn increment(&self, hash: u64) -> u8 {
        self.add(hash, 1)
    }

    /// Counts `n` accesses of `hash`. Returns the frequency seen before.
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
    pub(crate) fn add(&self, hash: u64, n: u8) -> u8 {
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
            let n = self.additions.0.load(Relaxed) + (target - min) as usize;
            self.additions.0.store(n, Relaxed);
            if n >= self.sample
                && self
                    .additions
                    .0
                    .compare_exchange(n, n - self.sample / 2, Relaxed, Relaxed)
                    .is_ok()
            {
                self.halve();
            }
        }
        min as u8
    }

    /// Halves every counter (the TinyLFU reset). An increment racing with
    /// it may land before or after a word's halving, or (a load before the
    /// halving, its store after) put back that word's pre-halving counts
    /// plus its raise: that word's counters then wait for the next halving,
    /// an overcount bounded by the counters' 4 bits and rare (a halving is
    /// once per `20 * capacity` increments; the racing increment must hit
    /// the same word in the same few nanoseconds).
    fn halve(&self) {
        for block in self.blocks.iter() {
            for cell in &block.0 {
                let _ = cell.fetch_update(Relaxed, Relaxed, |w| Some((w >> 1) & LOW_BITS));
                // Test-only (fuzz/README.md, "Planted bugs"): the halving
                // zeroes the first counter of every word.
                #[cfg(lockscope_planted_bug = "sketch")]
                let _ = cell.fetch_and(!0xF, Relaxed);
            }
        }
    }

    /// Halves every counter now (a workload move), restarting the period.
    pub(crate) fn age(&self) {
        self.additions.0.store(0, Relaxed);
        self.halve();
    }

    /// Zeroes every counter.
    pub(crate) fn clear(&self) {
        for block in self.blocks.iter() {
            for cell in &block.0 {
                cell.store(0, Relaxed);
            }
        }
        self.additions.0.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_and_halve() {
        let s = Sketch::new(64);
        let h = 0x1234_5678_9abc_def0;
        for _ in 0..20 {
            s.increment(h);
        }
        assert_eq!(s.frequency(h), 15);
        s.halve();
        assert_eq!(s.frequency(h), 7);
        assert!(s.frequency(0xdead_beef) <= 7);
    }

    #[test]
    fn periodic_reset_keeps_counts_small() {
        let s = Sketch::new(16);
        for i in 0..10_000u64 {
            s.increment(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        assert!(s.additions.0.load(Relaxed) <= s.sample);
    }
}
