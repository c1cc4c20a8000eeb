//! [`RandomState`]: the cache's default hasher, fast and randomly seeded.
//!
//! A cache key is hashed on every operation, so the hasher is a large part
//! of a hit's cost: std's SipHash-1-3 takes about as long for a `u64` as the
//! rest of a hit. The default here is foldhash's fast variant (a few
//! multiplies per word), seeded per cache from `std::hash::RandomState`, whose keys come from the
//! operating system.
//!
//! # HashDoS
//!
//! foldhash is *minimally* DoS resistant: with a secret seed, an attacker
//! cannot precompute colliding keys offline, but it is not a keyed
//! cryptographic function like SipHash, and a patient attacker who can
//! measure the cache's timing may learn enough to build collisions. A
//! collision here costs longer probes within one shard (each shard's index is
//! bounded by its capacity), never unbounded memory. If keys come from
//! untrusted input and that matters to you, choose SipHash explicitly:
//! `.hasher(std::hash::RandomState::new())`.

use core::fmt;
use core::hash::BuildHasher;

/// The default [`BuildHasher`] of [`TwoTierCache`](super::TwoTierCache):
/// foldhash (fast variant) with a per-instance seed drawn from std's
/// randomly keyed SipHash state. Fast, and not a cryptographic hash; see
/// the module notes on HashDoS.
///
/// ```
/// use core::hash::BuildHasher;
/// use lockscope::cache::RandomState;
///
/// let a = RandomState::new();
/// let b = a.clone();
/// assert_eq!(a.hash_one(42u64), b.hash_one(42u64)); // clones agree
/// ```
#[derive(Clone)]
pub struct RandomState(foldhash::fast::SeedableRandomState);

impl RandomState {
    /// A new, randomly seeded state. Two states made by `new` hash
    /// differently (with overwhelming probability); clones hash alike.
    pub fn new() -> Self {
        // std's RandomState draws its keys from the OS once per thread and
        // varies them per instance: a good source for a 64-bit seed.
        let seed = std::hash::RandomState::new().hash_one(0x6c6f_636b_7363_6f70_u64);
        RandomState(foldhash::fast::SeedableRandomState::with_seed(
            seed,
            foldhash::SharedSeed::global_random(),
        ))
    }
}

impl Default for RandomState {
    fn default() -> Self {
        RandomState::new()
    }
}

impl BuildHasher for RandomState {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    #[inline]
    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

impl fmt::Debug for RandomState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The seed stays private.
        f.write_str("RandomState { .. }")
    }
}
