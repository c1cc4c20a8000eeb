//! Hill climbing of the admission window's size, as in Caffeine's adaptive
//! W-TinyLFU ("Adaptive Software Cache Management", Einziger, Eytan,
//! Friedman and Manes, Middleware 2018).
//!
//! Recency-heavy workloads want a large window (a new key needs time to be
//! reused before it must beat the main region's victims), frequency-heavy
//! ones a small one. Every sample period (ten times the capacity in gets,
//! as in Caffeine, but at most 64k gets) the climber compares the period's
//! hit ratio with the previous period's: if it did not fall, the window
//! moves another step the same way, else it turns. Steps start at 6.25% of the capacity and shrink by 2% a period,
//! so a stationary workload settles; a change of the hit ratio by five
//! points or more restarts them at full size, so a workload that moves is
//! followed quickly. The window stays within `0..=MAX` of the capacity (the
//! main region keeps its probation part).
//!
//! The climber runs on the sampled get path, under a `try_lock`, reads the
//! exact hit and miss totals of the stripes, and publishes the fraction
//! through one atomic that each shard reads at its next write section:
//! nothing is added to an unsampled get.

use crate::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The first step, and a restarted one, as a share of the capacity.
const STEP: f64 = 0.0625;
/// Each step is this much of the one before.
const DECAY: f64 = 0.98;
/// A change of the hit ratio at least this large restarts the steps.
const RESTART: f64 = 0.05;
/// Gets per sample period, per unit of capacity.
const PERIOD_PER_UNIT: u64 = 10;
/// The largest window, as a share of the capacity.
pub(crate) const MAX: f64 = 0.8;
/// Bounds of the period, in gets. Past 64k gets a period's hit ratio is
/// known to about a fifth of a point, enough to read the direction; longer
/// periods only slow the climb (a cache of 100k entries would adjust once
/// per million gets, and a recency-heavy workload needs a dozen steps).
const MIN_PERIOD: u64 = 1024;
const MAX_PERIOD: u64 = 1 << 16;

/// The climber's state, behind the observer's lock.
pub(crate) struct Climber {
    /// Gets per period.
    period: u64,
    /// Totals at the start of the current period.
    hits: u64,
    misses: u64,
    /// The previous period's hit ratio (0 before the first, as in Caffeine,
    /// so the first period reads as a rise).
    previous: f64,
    /// The next step, signed: positive grows the window.
    step: f64,
    fraction: f64,
}

impl Climber {
    pub(crate) fn new(capacity: u64, fraction: f64) -> Self {
        Climber {
            period: capacity
                .saturating_mul(PERIOD_PER_UNIT)
                .clamp(MIN_PERIOD, MAX_PERIOD),
            hits: 0,
            misses: 0,
            previous: 0.0,
            // Caffeine starts by shrinking the window.
            step: -STEP,
            fraction,
        }
    }

    /// Given the current hit and miss totals, ends a period if one is
    /// complete and returns the new window fraction if it changed.
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
        let change = ratio - core::mem::replace(&mut self.previous, ratio);
        let amount = if change >= 0.0 { self.step } else { -self.step };
        self.step = if change.abs() >= RESTART {
            STEP.copysign(amount)
        } else {
            DECAY * amount
        };
        let next = (self.fraction + amount).clamp(0.0, MAX);
        if next == self.fraction {
            return None;
        }
        self.fraction = next;
        Some(next)
    }
}

/// The window fraction the shards follow.
///
/// Kept as its bits XOR the initial fraction's, so the atomic starts at 0:
/// the `sync` facade's checker atomics are created lazily at their first
/// use from an initial value passed through a thread-local, and under
/// shuttle another task's first use of another atomic can run in between
/// and hand over its own initial value; every other atomic of the cache
/// starts at 0, so a zero start cannot be told apart from a mix-up.
pub(crate) struct Target {
    initial: u64,
    bits: AtomicU64,
}

impl Target {
    pub(crate) fn new(fraction: f64) -> Self {
        Target {
            initial: fraction.to_bits(),
            bits: AtomicU64::new(0),
        }
    }

    /// The current fraction. (`#[inline]`: the cache's generic methods are
    /// compiled in the user's crate, which would otherwise call it.)
    #[inline]
    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Relaxed) ^ self.initial)
    }

    pub(crate) fn set(&self, fraction: f64) {
        self.bits.store(fraction.to_bits() ^ self.initial, Relaxed);
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
    fn climbs_towards_the_best_window_and_settles() {
        for start in [0.01, 0.3, 0.7] {
            let mut c = Climber::new(1000, start);
            let mut f = start;
            run(&mut c, &mut f, 400, |f| 0.6 - (f - 0.4).abs() * 0.1);
            assert!((f - 0.4).abs() < 0.1, "from {start} settled at {f}");
        }
    }

    #[test]
    fn a_large_change_restarts_the_steps() {
        let mut c = Climber::new(1000, 0.01);
        let mut f = 0.01;
        run(&mut c, &mut f, 200, |_| 0.6);
        assert!(c.step.abs() < STEP / 2.0, "decayed: {}", c.step);
        run(&mut c, &mut f, 1, |_| 0.3);
        assert_eq!(c.step.abs(), STEP);
    }

    #[test]
    fn stays_within_bounds() {
        for better_when_larger in [true, false] {
            let mut c = Climber::new(1000, 0.5);
            let mut f = 0.5;
            run(&mut c, &mut f, 300, |f| {
                if better_when_larger {
                    f * 0.5
                } else {
                    0.5 - f * 0.5
                }
            });
            assert!((0.0..=MAX).contains(&f), "{f}");
        }
    }
}
