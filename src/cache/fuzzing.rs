//! The frequency sketch, reachable from the fuzz targets in `fuzz/`.
//!
//! Built only under `--cfg fuzzing` (which `cargo fuzz` sets), hidden from
//! the docs and not part of the API: a thin wrapper that forwards to the
//! crate-private [`Sketch`](super::sketch::Sketch) without widening it.

/// A Count-Min Sketch as one shard of the cache uses it.
pub struct Sketch(super::sketch::Sketch);

impl Sketch {
    /// A sketch sized for a shard of `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Sketch(super::sketch::Sketch::new(capacity))
    }

    /// Counts one access of `hash`; returns the estimate before it.
    pub fn increment(&self, hash: u64) -> u8 {
        self.0.increment(hash)
    }

    /// The estimated frequency of `hash`.
    pub fn frequency(&self, hash: u64) -> u8 {
        self.0.frequency(hash)
    }

    /// Zeroes every counter.
    pub fn clear(&self) {
        self.0.clear()
    }
}
