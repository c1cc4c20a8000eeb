//! Hill climbing of the admission window's size, as in Caffeine's adaptive
//! W-TinyLFU ("Adaptive Software Cache Management", Einziger, Eytan,
//! Friedman and Manes, Middleware 2018), made aware of the hit ratio's
//! sampling noise.
//!
//! Recency-heavy workloads want a large window (a new key needs time to be
//! reused before it must beat the main region's victims), frequency-heavy
//! ones a small one. Every sample period (ten times the capacity in gets,
//! as in Caffeine, but at most 64k gets) the climber compares the period's
//! hit ratio with the previous period's: if it did not fall, the window
//! moves another step the same way, else it turns. Steps start at 6.25% of
//! the capacity; a change of the hit ratio by five points or more restarts
//! them at full size, so a workload that moves is followed quickly. The
//! window stays within `0..=MAX` of the capacity (the main region keeps its
//! probation part).
//!
//! Unlike Caffeine, the climber weighs each change against the noise of
//! two hit ratios measured over a period (the standard error of their
//! difference, from the binomial variance of each). A small cache has short
//! periods: at 200 entries a period is 2,000 gets and the hit ratio varies
//! by about a point from one to the next on a stationary workload, more
//! than a step of the window changes it. Caffeine's rule then takes full
//! steps in random directions and the window wanders over most of its range
//! (from 0 to 57% on a stationary Zipf stream, costing up to 11% of the
//! hits). So a change within one standard error scales the step down by its
//! size in standard errors (at most halving it): on a stationary workload
//! the step collapses within a few periods and the window stays near where
//! it was, while a change that stands out keeps the step (and a rise grows
//! it back, up to the full step, so a climb that a few noisy periods had
//! slowed picks up again).
//!
//! The climber runs on the sampled get path, under a `try_lock`, reads the
//! exact hit and miss totals of the stripes, and publishes the fraction
//! through one atomic that each shard reads at its next write section:
//! nothing is added to an unsampled get.

use crate::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The first step, and a restarted one, as a share of the capacity; also
/// the largest step.
const STEP: f64 = 0.0625;
/// After a fall that stands out from the noise, the step (turned) is this
/// much of the one before, as in Caffeine: the climber is near a peak.
const DECAY: f64 = 0.98;
/// After a rise that stands out from the noise, the step is this much of
/// the one before (up to [`STEP`]): the direction is confirmed, so a step
/// that noisy periods had shrunk recovers. Larger factors let the window
/// run further on the refill after a phase change, which reads as a rise.
const GROW: f64 = 1.25;
/// A change below this many standard errors of the difference of two
/// periods' hit ratios is not taken at face value. One standard error,
/// not two: on the real traces (whose hit ratios drift by more than the
/// binomial noise) a stricter bar stopped the climb early and lost hits.
const SIGNIFICANT: f64 = 1.0;
/// The least a change within the noise scales the step by.
const MIN_SCALE: f64 = 0.5;
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
    /// The previous period's gets (0 before the first).
    previous_gets: u64,
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
            previous_gets: 0,
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
        let gets = dh + dm;
        if gets < self.period {
            return None;
        }
        self.hits = hits;
        self.misses = misses;
        let ratio = dh as f64 / gets as f64;
        let change = ratio - self.previous;
        let noise = noise(ratio, gets, self.previous, self.previous_gets);
        self.previous = ratio;
        self.previous_gets = gets;
        // Caffeine's direction: on if the hit ratio did not fall, else back.
        let mut amount = if change >= 0.0 { self.step } else { -self.step };
        self.step = if change.abs() >= RESTART {
            STEP.copysign(amount)
        } else if change.abs() > SIGNIFICANT * noise {
            if change >= 0.0 {
                (amount.abs() * GROW).min(STEP).copysign(amount)
            } else {
                DECAY * amount
            }
        } else {
            // Within the noise: the direction is a guess, so the step (this
            // one too) shrinks by how little the change says.
            // (A change of 0 with no noise, at a hit ratio of 0 or 1, says
            // nothing either.)
            let says = if noise > 0.0 {
                change.abs() / (SIGNIFICANT * noise)
            } else {
                0.0
            };
            amount *= says.max(MIN_SCALE);
            amount
        };
        let next = (self.fraction + amount).clamp(0.0, MAX);
        if next == self.fraction {
            return None;
        }
        self.fraction = next;
        Some(next)
    }
}

/// The standard error of the difference between a hit ratio `ratio` over
/// `gets` gets and `previous` over `previous_gets`, each hit taken as an
/// independent draw at their pooled ratio. Before the first period there is
/// no previous one: the current period's error counts twice.
fn noise(ratio: f64, gets: u64, previous: f64, previous_gets: u64) -> f64 {
    let p = (ratio + previous) / 2.0;
    let before = if previous_gets == 0 {
        gets
    } else {
        previous_gets
    };
    (p * (1.0 - p) * (1.0 / gets as f64 + 1.0 / before as f64)).sqrt()
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

    /// Feeds `periods` periods of a hit ratio given by `ratio_at(fraction)`,
    /// exactly, or drawn around it with a period's binomial noise when
    /// `noise` holds a random state.
    fn run(
        c: &mut Climber,
        f: &mut f64,
        periods: usize,
        mut noise: Option<&mut u64>,
        ratio_at: impl Fn(f64) -> f64,
    ) -> (f64, f64) {
        let (mut hits, mut misses) = (c.hits, c.misses);
        let (mut low, mut high) = (*f, *f);
        for _ in 0..periods {
            let p = ratio_at(*f);
            let n = c.period as f64;
            let mean = p * n;
            let drawn = match noise.as_deref_mut() {
                Some(x) => mean + gaussian(x) * (n * p * (1.0 - p)).sqrt(),
                None => mean,
            };
            let h = drawn.round().clamp(0.0, n) as u64;
            hits += h;
            misses += c.period - h;
            if let Some(next) = c.observe(hits, misses) {
                *f = next;
            }
            low = low.min(*f);
            high = high.max(*f);
        }
        (low, high)
    }

    /// A standard normal draw (Box-Muller over xorshift).
    fn gaussian(x: &mut u64) -> f64 {
        let mut uniform = || {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            ((*x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (u, v) = (uniform(), uniform());
        (-2.0 * u.ln()).sqrt() * (core::f64::consts::TAU * v).cos()
    }

    #[test]
    fn climbs_towards_the_best_window_and_settles() {
        // A peak whose slope a step can show: 3 points a step, the noise of
        // a period of 10,000 gets about 0.7.
        for start in [0.01, 0.3, 0.7] {
            let mut c = Climber::new(1000, start);
            let mut f = start;
            run(&mut c, &mut f, 400, None, |f| 0.6 - (f - 0.4).abs() * 0.5);
            assert!((f - 0.4).abs() < 0.1, "from {start} settled at {f}");
        }
    }

    #[test]
    fn a_slope_is_climbed_through_the_noise() {
        // A recency-heavy workload: the larger the window, the better. In a
        // cache of 10,000 (periods of 64k gets, a noise of about 0.25
        // points on a difference) a slope of 2 points a step stands out;
        // in a cache of 1,000 (10,000 gets, 0.7 points) one of 3 points does.
        for (capacity, slope) in [(10_000, 0.3), (1_000, 0.5)] {
            for seed in 1..=20 {
                let mut x = seed;
                // From the middle: a climber that starts against a bound
                // (Caffeine's first step shrinks the window) may shrink its
                // steps there, comparing equal windows, before it turns.
                let mut c = Climber::new(capacity, 0.3);
                let mut f = 0.3;
                run(&mut c, &mut f, 60, Some(&mut x), |f| 0.3 + slope * f);
                assert!(
                    f > 0.6,
                    "capacity {capacity}, seed {seed}: the window reached only {f}"
                );
            }
        }
    }

    #[test]
    fn a_flat_noisy_hit_ratio_keeps_the_window_still() {
        // A stationary workload whose hit ratio does not depend on the
        // window, in a cache of 200: only the noise (about a point a period
        // of 2,000 gets) moves the ratio. Taken at face value (Caffeine's
        // rule) it walks the window away by 0.3 in half of these runs and
        // by up to 0.64; here the step collapses after a few periods.
        let mut excursions = Vec::new();
        for seed in 1..=50 {
            for start in [0.01, 0.3] {
                let mut x = seed;
                let mut c = Climber::new(200, start);
                let mut f = start;
                let (low, high) = run(&mut c, &mut f, 500, Some(&mut x), |_| 0.3);
                excursions.push((start - low).max(high - start));
            }
        }
        excursions.sort_by(f64::total_cmp);
        let (median, most) = (
            excursions[excursions.len() / 2],
            excursions[excursions.len() - 1],
        );
        assert!(
            median <= 0.15 && most <= 0.3,
            "median {median}, most {most}"
        );
    }

    #[test]
    fn a_large_change_restarts_the_steps() {
        let mut c = Climber::new(1000, 0.01);
        let mut f = 0.01;
        run(&mut c, &mut f, 200, None, |_| 0.6);
        assert!(c.step.abs() < STEP / 2.0, "decayed: {}", c.step);
        run(&mut c, &mut f, 1, None, |_| 0.3);
        assert_eq!(c.step.abs(), STEP);
    }

    #[test]
    fn stays_within_bounds() {
        for better_when_larger in [true, false] {
            let mut c = Climber::new(1000, 0.5);
            let mut f = 0.5;
            run(&mut c, &mut f, 300, None, |f| {
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
