//! Hill climbing of the hot tier's share (the split Caffeine tunes for its
//! window, applied here to the hot/warm split).
//!
//! Every period (ten times the capacity in gets) the climber compares the
//! period's hit ratio with the previous one. If it did not fall, the last
//! step is repeated in the same direction; if it fell, the direction turns.
//! Steps shrink geometrically so the split settles, and a jump of the hit
//! ratio by five points or more (the workload changed) restores the first,
//! large step. The hot fraction stays within `[MIN, MAX]`.
//!
//! The climber runs on the sampled path only (when the pattern detector
//! completes an epoch), reads the exact hit and miss totals, and publishes
//! the fraction through one atomic that each shard reads on its next insert:
//! nothing is added to an unsampled get.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The first step, as a share of the capacity.
const FIRST_STEP: f64 = 0.0625;
/// Each step is this much of the one before.
const DECAY: f64 = 0.98;
/// A change of the hit ratio at least this large restarts the climb.
const RESTART: f64 = 0.05;
/// Steps below this are not taken (the split has settled).
const MIN_STEP: f64 = 0.002;
/// Bounds of the hot fraction while climbing.
pub(crate) const MIN: f64 = 0.05;
pub(crate) const MAX: f64 = 0.95;

/// The climber's state, behind the observer's lock.
pub(crate) struct Climber {
    /// Gets per period.
    period: u64,
    /// Totals at the start of the current period.
    hits: u64,
    misses: u64,
    /// The previous period's hit ratio.
    previous: Option<f64>,
    /// The next step, signed: positive grows the hot tier.
    step: f64,
    fraction: f64,
    /// Steps taken.
    steps: u64,
}

impl Climber {
    pub(crate) fn new(capacity: usize, fraction: f64) -> Self {
        Climber {
            period: (capacity as u64).saturating_mul(10).max(1024),
            hits: 0,
            misses: 0,
            previous: None,
            // Start by shrinking the hot tier: a larger warm tier follows a
            // moving workload sooner, and a stationary one turns it back.
            step: -FIRST_STEP,
            fraction,
            steps: 0,
        }
    }

    /// Given the current hit and miss totals, ends a period if one is
    /// complete and returns the new hot fraction if it changed.
    pub(crate) fn observe(&mut self, hits: u64, misses: u64) -> Option<f64> {
        let (dh, dm) = (hits - self.hits, misses - self.misses);
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
        let direction = if change >= 0.0 { 1.0 } else { -1.0 };
        self.step = if change.abs() >= RESTART {
            FIRST_STEP.copysign(self.step * direction)
        } else {
            self.step * direction * DECAY
        };
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
        self.fraction = next;
        self.steps = self.steps.wrapping_add(1);
        Some(next)
    }
}

/// The hot fraction every shard follows, as `f64` bits.
pub(crate) struct Target(AtomicU64);

impl Target {
    pub(crate) fn new(fraction: f64) -> Self {
        Target(AtomicU64::new(fraction.to_bits()))
    }

    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }

    pub(crate) fn set(&self, fraction: f64) {
        self.0.store(fraction.to_bits(), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hit ratio that peaks at a hot fraction of 0.8.
    fn ratio_at(f: f64) -> f64 {
        0.6 - (f - 0.8).abs() * 0.1
    }

    #[test]
    fn climbs_towards_the_best_split_and_settles() {
        let mut c = Climber::new(1000, 0.5);
        let (mut hits, mut misses) = (0u64, 0u64);
        let mut f = 0.5;
        for _ in 0..400 {
            let r = ratio_at(f);
            let h = (r * 10_000.0) as u64;
            hits += h;
            misses += 10_000 - h;
            if let Some(next) = c.observe(hits, misses) {
                f = next;
            }
        }
        assert!((f - 0.8).abs() < 0.1, "settled at {f}");
    }

    #[test]
    fn a_large_change_restarts_the_step() {
        let mut c = Climber::new(1000, 0.5);
        c.observe(5000, 5000);
        for i in 2..200u64 {
            c.observe(5000 * i, 5000 * i);
        }
        assert!(c.step.abs() < FIRST_STEP);
        // Hit ratio jumps from 0.5 to 0.9 in one period.
        c.observe(5000 * 199 + 9000, 5000 * 199 + 1000);
        assert!((c.step.abs() - FIRST_STEP).abs() < 1e-12, "{}", c.step);
    }
}
