//! Durations in log-linear buckets: the one histogram type of the crate,
//! recorded by the lock classes (wait and sampled hold times) and by the
//! cache's stats stripes (sampled get and insert latencies).
//!
//! Values are whole nanoseconds. Below 16 ns each value has a bucket of its
//! own; from 16 ns up, each power of two is split into four equal buckets,
//! so a bucket is at most a quarter as wide as its lower bound and a
//! quantile read from the buckets is at most 25% above the true one. 256
//! buckets reach `u64::MAX` nanoseconds (about 584 years), so no duration
//! is clamped. A recorder is 2 KiB of counters: a lock class keeps two,
//! a cache stats stripe two.
//!
//! Every power of two is a bucket boundary, which is what lets the
//! Prometheus export of the contention profile give exact cumulative counts
//! at power-of-two bounds.
//!
//! Recording is a relaxed `fetch_add` on one bucket and one on the sum,
//! plus a `fetch_max` only when the maximum grows; or, for a recorder that
//! only one thread writes (a cache stripe its thread has claimed), a plain
//! load and store of each.

// `std` atomics: the lock classes exist only when diagnostics record (never
// under a model checker), and the cache's stripes keep `std` atomics for the
// reason given in `cache/stats.rs`.
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use core::time::Duration;

/// Values below this have a bucket each.
const LINEAR: usize = 16;
/// Buckets per power of two above [`LINEAR`].
const SUB: usize = 4;
/// Buckets in all: the linear ones, then four for each of the powers of two
/// from 2^4 to 2^63.
pub(crate) const BUCKETS: usize = LINEAR + (64 - 4) * SUB;

/// The bucket of `v` nanoseconds.
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

/// The smallest value in bucket `b`.
fn lower_bound(b: usize) -> u64 {
    if b < LINEAR {
        b as u64
    } else {
        let exp = (b - LINEAR) / SUB + 4;
        let sub = ((b - LINEAR) % SUB) as u64;
        (1u64 << exp) + (sub << (exp - 2))
    }
}

/// The largest value in bucket `b`.
fn upper_bound(b: usize) -> u64 {
    if b + 1 < BUCKETS {
        lower_bound(b + 1) - 1
    } else {
        u64::MAX
    }
}

/// A point-in-time copy of a histogram of durations: a lock class's wait or
/// hold times ([`crate::diag::LockStats`]), a cache's sampled get or insert
/// latencies ([`crate::cache::CacheMetrics`]).
///
/// Durations are kept in log-linear buckets (one per nanosecond below
/// 16 ns, then four per power of two), so [`Self::quantile`] is within 25%
/// of the true quantile; [`Self::count`], [`Self::sum`] and [`Self::max`]
/// are exact.
///
/// ```
/// # if lockscope::diag::enabled() {
/// use lockscope::diag::Inspect;
///
/// let lock = lockscope::Mutex::new(());
/// drop(lock.lock());
/// let waits = &lock.snapshot().expect("the lock was used").stats.wait;
/// assert_eq!(waits.count(), 0, "nobody had to wait");
/// assert_eq!(waits.quantile(0.99), std::time::Duration::ZERO);
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Counts per bucket, trailing empty buckets left out.
    buckets: Vec<u64>,
    count: u64,
    sum_ns: u64,
    max_ns: u64,
}

impl Histogram {
    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of the recorded durations.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns)
    }

    /// The mean recorded duration, or zero if none was recorded.
    pub fn mean(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.checked_div(self.count).unwrap_or(0))
    }

    /// The longest recorded duration, or zero if none was recorded.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// An upper estimate of the quantile `q` (clamped to `0..=1`): the
    /// largest duration the bucket holding that rank can hold, or the longest
    /// recorded if that is shorter; at most 25% above the true quantile
    /// (exact below 16 ns). Zero if nothing was recorded.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        let mut at = self.buckets.len().saturating_sub(1);
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                at = b;
                break;
            }
        }
        Duration::from_nanos(upper_bound(at).min(self.max_ns))
    }

    /// The non-empty buckets, shortest durations first, each as the largest
    /// duration it holds and its count. Every power of two of nanoseconds
    /// starts a bucket, so the counts up to a bound of `2^i - 1` ns add up
    /// to the durations below `2^i` ns exactly.
    pub fn buckets(&self) -> Vec<(Duration, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(b, &n)| (Duration::from_nanos(upper_bound(b)), n))
            .collect()
    }

    /// Leaves out trailing empty buckets, so that equal contents compare
    /// equal however they were gathered.
    fn trim(&mut self) {
        let used = self
            .buckets
            .iter()
            .rposition(|&n| n > 0)
            .map_or(0, |b| b + 1);
        self.buckets.truncate(used);
    }
}

/// The recording side of a [`Histogram`], written through `&self`.
pub(crate) struct Recorder {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Recorder {
    pub(crate) const fn new() -> Self {
        Recorder {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }

    /// Records `ns` nanoseconds; any number of threads may record at once.
    #[inline]
    pub(crate) fn record(&self, ns: u64) {
        self.buckets[bucket(ns)].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
        // A locked read-modify-write only when the maximum grows.
        if ns > self.max_ns.load(Relaxed) {
            self.max_ns.fetch_max(ns, Relaxed);
        }
    }

    /// Records `ns` nanoseconds from the only thread that records here
    /// (other threads may read): each count is a relaxed load and store.
    #[inline]
    pub(crate) fn record_owned(&self, ns: u64) {
        let add = |c: &AtomicU64, n: u64| c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
        add(&self.buckets[bucket(ns)], 1);
        add(&self.sum_ns, ns);
        if ns > self.max_ns.load(Relaxed) {
            self.max_ns.store(ns, Relaxed);
        }
    }

    /// A copy of the current counts.
    #[cfg_attr(not(lockscope_diag), allow(dead_code))]
    pub(crate) fn snapshot(&self) -> Histogram {
        let mut out = Histogram::default();
        self.add_to(&mut out);
        out
    }

    /// Adds the current counts into `out`.
    pub(crate) fn add_to(&self, out: &mut Histogram) {
        out.buckets.resize(BUCKETS, 0);
        for (o, b) in out.buckets.iter_mut().zip(&self.buckets) {
            let n = b.load(Relaxed);
            *o += n;
            out.count += n;
        }
        out.sum_ns = out.sum_ns.wrapping_add(self.sum_ns.load(Relaxed));
        out.max_ns = out.max_ns.max(self.max_ns.load(Relaxed));
        out.trim();
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
            assert!(lower_bound(b) <= v && v <= upper_bound(b));
            last = b;
        }
        for b in 0..BUCKETS {
            assert_eq!(bucket(lower_bound(b)), b);
            assert_eq!(bucket(upper_bound(b)), b);
            // At most a quarter of the lower bound wide (the linear buckets:
            // one value each).
            assert!(upper_bound(b) - lower_bound(b) <= lower_bound(b) / 4);
        }
        for i in 0..64 {
            assert_eq!(lower_bound(bucket(1 << i)), 1 << i, "2^{i} starts a bucket");
        }
    }

    #[test]
    fn quantiles_are_close_upper_estimates() {
        let h = Recorder::new();
        for ns in 1..=100u64 {
            if ns % 2 == 0 {
                h.record(ns * 10);
            } else {
                h.record_owned(ns * 10);
            }
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        assert_eq!(s.mean(), Duration::from_nanos(505));
        assert_eq!(s.max(), Duration::from_nanos(1000));
        assert_eq!(s.sum(), Duration::from_nanos(50_500));
        let p50 = s.quantile(0.5).as_nanos();
        assert!((500..=625).contains(&p50), "{p50}");
        assert_eq!(s.quantile(1.0), s.max(), "clamped to the longest");
        assert!(s.quantile(0.0) >= Duration::from_nanos(10));
        assert_eq!(s.buckets().iter().map(|&(_, n)| n).sum::<u64>(), 100);
    }

    #[test]
    fn snapshots_of_equal_contents_are_equal() {
        let (a, b) = (Recorder::new(), Recorder::new());
        a.record(3);
        b.record(3);
        let mut sum = Histogram::default();
        a.add_to(&mut sum);
        Recorder::new().add_to(&mut sum);
        assert_eq!(sum, b.snapshot());
        assert_eq!(Recorder::new().snapshot(), Histogram::default());
    }
}
