//! Hill climbing of the hot tier's share (the split Caffeine tunes for its
//! admission window, applied here to the hot/warm split).
//!
//! Every period (ten times the capacity in gets) the climber compares the
//! period's hit ratio with the previous one. If it did not fall, the last
//! step is repeated in the same direction; if it fell, the direction turns.
//! Steps shrink by a tenth each period, so on a stationary workload the
//! split settles. A fall of five points or more means the workload moved:
//! the hot fraction halves at once (the warm tier, where new keys compete,
//! grows, and the old hot set loses its protection sooner), every shard
//! halves its frequency sketch (the old hot set's counts stop outvoting the
//! new keys), and climbing starts afresh with a full step; the rise that
//! follows while the cache refills is not read as a gradient. The fraction
//! stays within `[MIN, MAX]`.
//!
//! The climber runs on the sampled path only (when the pattern detector
//! completes an epoch), reads the exact hit and miss totals, and publishes
//! the fraction through one atomic that each shard reads on its next
//! insert: nothing is added to an unsampled get.
//!
//! Measured single-threaded on the benchmark streams (4M accesses, see
//! `docs/cache.md`), against the fixed default split of 0.7: +0.24 and
//! +0.54 points of hit ratio on Zipf 1.0 and 0.8 (which prefer a hot tier
//! near 0.9), +0.37 on the phase-change stream, and within 0.1 on Zipf with
//! scans (a period holding two scans can look like a workload move).
//!
//! The cost, and why it is off by default: the hit ratio cannot tell a
//! long scan from a workload move. A scan of many new keys makes the hot
//! tier halve, its demoted keys lose their protection, and they can be
//! evicted by the scan (a test keeps 450 of 500 frequent keys through a
//! 100k-key scan with the fixed split; with climbing on, under 200).

use core::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};

/// The first step, as a share of the capacity.
const FIRST_STEP: f64 = 0.0625;
/// Each step is this much of the one before.
const DECAY: f64 = 0.9;
/// A change of the hit ratio at least this large means the workload moved.
const RESTART: f64 = 0.05;
/// Steps below this are not taken (the split has settled).
const MIN_STEP: f64 = 0.002;
/// Gets per period, per entry of capacity.
const PERIOD_PER_ENTRY: u64 = 10;
/// Bounds of the hot fraction while climbing.
const MIN: f64 = 0.05;
const MAX: f64 = 0.95;

/// The climber's state, behind the observer's lock.
pub(crate) struct Climber {
    /// Gets per period.
    period: u64,
    /// Totals at the start of the current period.
    hits: u64,
    misses: u64,
    /// The previous period's hit ratio.
    previous: Option<f64>,
    /// Set when a period ends with a workload move; taken by the caller.
    pub(crate) moved: bool,
    /// The next step, signed: positive grows the hot tier.
    step: f64,
    fraction: f64,
}

impl Climber {
    pub(crate) fn new(capacity: usize, fraction: f64) -> Self {
        Climber {
            period: (capacity as u64).saturating_mul(PERIOD_PER_ENTRY).max(1024),
            hits: 0,
            misses: 0,
            previous: None,
            moved: false,
            // Start by growing the hot tier: stationary skewed workloads
            // gain from a larger protected core, and a move halves it.
            step: FIRST_STEP,
            fraction,
        }
    }

    /// Given the current hit and miss totals, ends a period if one is
    /// complete and returns the new hot fraction if it changed.
    pub(crate) fn observe(&mut self, hits: u64, misses: u64) -> Option<f64> {
        let (dh, dm) = (
            hits.saturating_sub(self.hits),
            misses.saturating_sub(self.misses),
        );
        if dh + dm < self.period {
            return None;
        }
        self.hits = hits;
        self.misses = misses;
        let ratio = dh as f64 / (dh + dm) as f64;
        let Some(previous) = self.previous.replace(ratio) else {
            // The first period is the baseline; take the first step.
            return self.take_step();
        };
        let change = ratio - previous;
        if change <= -RESTART {
            self.step = -FIRST_STEP;
            self.moved = true;
            return self.move_to((self.fraction / 2.0).max(MIN));
        } else if change >= RESTART {
            return None;
        }
        let direction = if change >= 0.0 { 1.0 } else { -1.0 };
        self.step *= direction * DECAY;
        self.take_step()
    }

    fn take_step(&mut self) -> Option<f64> {
        if self.step.abs() < MIN_STEP {
            return None;
        }
        let next = (self.fraction + self.step).clamp(MIN, MAX);
        if next == self.fraction {
            // At a bound: turn round for the next period.
            self.step = -self.step;
            return None;
        }
        self.move_to(next)
    }

    fn move_to(&mut self, next: f64) -> Option<f64> {
        if next == self.fraction {
            return None;
        }
        self.fraction = next;
        Some(next)
    }
}

/// What the climber publishes to the shards, which read it on insert.
pub(crate) struct Target {
    /// The hot fraction, as `f64` bits.
    fraction: AtomicU64,
    /// Workload moves seen; a shard halves its sketch once per move.
    moves: AtomicU64,
    /// Changes of either field above, bumped after the change: a shard
    /// that read generation g before following the fields has followed at
    /// least g (rejection tickets rely on it, see `ticket.rs`).
    generation: AtomicU64,
}

impl Target {
    pub(crate) fn new(fraction: f64) -> Self {
        Target {
            fraction: AtomicU64::new(fraction.to_bits()),
            moves: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// The number of changes so far; read it before the fields it covers.
    /// (These getters are `#[inline]`: the cache's generic methods are
    /// compiled in the user's crate, which would otherwise call them.)
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Acquire)
    }

    #[inline]
    pub(crate) fn fraction(&self) -> f64 {
        f64::from_bits(self.fraction.load(Relaxed))
    }

    pub(crate) fn set_fraction(&self, fraction: f64) {
        self.fraction.store(fraction.to_bits(), Relaxed);
        self.generation.fetch_add(1, Release);
    }

    #[inline]
    pub(crate) fn moves(&self) -> u64 {
        self.moves.load(Relaxed)
    }

    pub(crate) fn add_move(&self) {
        self.moves.fetch_add(1, Relaxed);
        self.generation.fetch_add(1, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `periods` periods of a hit ratio given by `ratio_at(fraction)`.
    fn run(c: &mut Climber, f: &mut f64, periods: usize, ratio_at: impl Fn(f64) -> f64) {
        let (mut hits, mut misses) = (c.hits, c.misses);
        for _ in 0..periods {
            let h = (ratio_at(*f) * c.period as f64) as u64;
            hits += h;
            misses += c.period - h;
            if let Some(next) = c.observe(hits, misses) {
                *f = next;
            }
        }
    }

    #[test]
    fn climbs_towards_the_best_split_and_settles() {
        for start in [0.2, 0.5, 0.9] {
            let mut c = Climber::new(1000, start);
            let mut f = start;
            run(&mut c, &mut f, 300, |f| 0.6 - (f - 0.7).abs() * 0.1);
            assert!((f - 0.7).abs() < 0.1, "from {start} settled at {f}");
        }
    }

    #[test]
    fn a_workload_move_halves_the_hot_share() {
        let mut c = Climber::new(1000, 0.8);
        let mut f = 0.8;
        run(&mut c, &mut f, 50, |_| 0.6);
        let before = f;
        // The hit ratio falls by 20 points for one period.
        run(&mut c, &mut f, 1, |_| 0.4);
        assert!(
            (f - (before / 2.0).max(MIN)).abs() < 1e-12,
            "{before} -> {f}"
        );
        assert_eq!(c.step, -FIRST_STEP);
    }

    #[test]
    fn stays_within_bounds() {
        let mut c = Climber::new(1000, 0.5);
        let mut f = 0.5;
        // Ever better the larger the hot tier.
        run(&mut c, &mut f, 200, |f| f * 0.5);
        assert!((MIN..=MAX).contains(&f), "{f}");
    }
}
