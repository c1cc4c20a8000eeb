//! A latency histogram with atomic, log-linear buckets.
//!
//! Values are nanoseconds. Below 16 ns each value has its own bucket; above,
//! each power of two is split into four buckets, so a bucket's width is at
//! most a quarter of its lower bound (quantiles are good to about 25%).
//! Recording is one relaxed `fetch_add` on a bucket and two on the totals,
//! through `&self`, or plain loads and stores for a histogram that only one
//! thread records into (the cache keeps one per thread stripe and adds them
//! up for a snapshot); the cache records only sampled operations.

// `std` atomics: a histogram belongs to a stats stripe, whose atomics stay
// `std`'s for the reason given in `stats.rs`.
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use core::time::Duration;

const LINEAR: usize = 16;
const SUB: usize = 4;
const BUCKETS: usize = LINEAR + (64 - 4) * SUB;

/// The bucket of `v`.
#[inline]
fn bucket(v: u64) -> usize {
    if v < LINEAR as u64 {
        v as usize
    } else {
        let exp = 63 - v.leading_zeros() as usize; // >= 4
        let sub = ((v >> (exp - 2)) & 3) as usize;
        LINEAR + (exp - 4) * SUB + sub
    }
}

/// The smallest value that falls in bucket `b`.
fn lower_bound(b: usize) -> u64 {
    if b < LINEAR {
        b as u64
    } else {
        let exp = (b - LINEAR) / SUB + 4;
        let sub = ((b - LINEAR) % SUB) as u64;
        (1u64 << exp) + (sub << (exp - 2))
    }
}

/// A concurrent histogram of durations.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one duration. `owned`: the caller is the only thread that
    /// records here (a per-thread stripe's histogram), so each count is a
    /// relaxed load and store; otherwise a `fetch_add`.
    #[inline]
    pub(crate) fn record(&self, d: Duration, owned: bool) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let add = |c: &AtomicU64, n: u64| {
            if owned {
                c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
            } else {
                c.fetch_add(n, Relaxed);
            }
        };
        add(&self.buckets[bucket(ns)], 1);
        add(&self.count, 1);
        add(&self.sum, ns);
    }

    /// A copy of the current counts.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            count: self.count.load(Relaxed),
            sum_ns: self.sum.load(Relaxed),
        }
    }

    /// Adds the current counts into `out` (a snapshot of this shape).
    pub(crate) fn add_to(&self, out: &mut HistogramSnapshot) {
        for (o, b) in out.buckets.iter_mut().zip(self.buckets.iter()) {
            *o += b.load(Relaxed);
        }
        out.count += self.count.load(Relaxed);
        out.sum_ns += self.sum.load(Relaxed);
    }
}

/// A point-in-time copy of a latency histogram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    buckets: Vec<u64>,
    count: u64,
    sum_ns: u64,
}

impl HistogramSnapshot {
    /// How many operations were recorded (sampled ones only).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The mean recorded latency, or zero with no samples.
    pub fn mean(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.checked_div(self.count).unwrap_or(0))
    }

    /// The latency below which a fraction `q` (clamped to `0..=1`) of the
    /// samples fall, as the lower bound of the bucket that holds that rank;
    /// zero with no samples.
    pub fn quantile(&self, q: f64) -> Duration {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(lower_bound(b));
            }
        }
        Duration::from_nanos(lower_bound(BUCKETS - 1))
    }

    /// Non-empty buckets as `(lower bound, count)`, in increasing order.
    pub fn buckets(&self) -> Vec<(Duration, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(b, &n)| (Duration::from_nanos(lower_bound(b)), n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotone_and_tight() {
        let mut last = 0;
        for v in [0u64, 1, 15, 16, 17, 20, 24, 31, 32, 1000, 1 << 40, u64::MAX] {
            let b = bucket(v);
            assert!(b >= last && b < BUCKETS);
            assert!(lower_bound(b) <= v);
            last = b;
        }
        for b in 0..BUCKETS {
            assert_eq!(bucket(lower_bound(b)), b);
        }
    }

    #[test]
    fn quantiles() {
        let h = Histogram::new();
        for ns in 1..=100u64 {
            h.record(Duration::from_nanos(ns * 10), ns % 2 == 0);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        let p50 = s.quantile(0.5).as_nanos() as f64;
        assert!((400.0..=500.0).contains(&p50), "{p50}");
        assert!(s.quantile(1.0) >= s.quantile(0.99));
        assert_eq!(s.mean(), Duration::from_nanos(505));
    }
}
