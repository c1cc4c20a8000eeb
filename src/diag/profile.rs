//! The contention profile: every lock class ranked by the total time
//! threads spent waiting for its locks, like the kernel's `lock_stat`. A
//! class is a label, or, for unlabelled locks, a kind and the site of the
//! first acquisition (all the locks of a `Vec<Mutex<_>>` first locked on one
//! line are one row).
//!
//! ```
//! let lock = lockscope::Mutex::new(0);
//! lockscope::diag::Inspect::set_label(&lock, "counter");
//! *lock.lock() += 1;
//! let profile = lockscope::diag::profile();
//! println!("{profile}"); // the table
//! let text = profile.to_prometheus(); // for a /metrics endpoint
//! if lockscope::diag::enabled() {
//!     assert!(profile.locks.iter().any(|l| l.name == "counter"));
//!     assert!(text.contains("lockscope_acquisitions_total{lock=\"counter\""));
//! }
//! ```

use core::fmt;
use core::fmt::Write as _;
use core::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use super::Histogram;
use super::stall::At;

/// Waits for one lock from one call site.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SiteWaits {
    /// Where threads asked for the lock; `None`: all sites past the first
    /// four that waited, together.
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::opt_site"))]
    pub site: Option<&'static Location<'static>>,
    /// Waits (that parked) from this site.
    pub waits: u64,
    /// Their total time.
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::secs"))]
    pub total: Duration,
}

/// One row of the profile: one lock class.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LockProfile {
    /// The label, or the kind and the site of the first acquisition.
    pub name: String,
    /// The label, if any.
    pub label: Option<Arc<str>>,
    /// `"Mutex"`, `"RwLock"` or `"RecursiveRwLock"`.
    pub kind: &'static str,
    /// Acquisitions, exclusive and shared.
    pub acquisitions: u64,
    /// Of which exclusive.
    pub exclusive: u64,
    /// Acquisitions that had to park.
    pub contended: u64,
    /// Timed acquisitions that gave up.
    pub timeouts: u64,
    /// Total time spent parked.
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::secs"))]
    pub wait_total: Duration,
    /// Mean wait of a contended acquisition.
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::secs"))]
    pub wait_avg: Duration,
    /// Longest wait.
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::secs"))]
    pub wait_max: Duration,
    /// Mean hold (sampled).
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::secs"))]
    pub hold_avg: Duration,
    /// Longest sampled hold.
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::secs"))]
    pub hold_max: Duration,
    /// Call sites that waited, most waited first (up to four named).
    pub top_sites: Vec<SiteWaits>,
    /// The wait-time histogram.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub wait: Histogram,
    /// The (sampled) hold-time histogram.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub hold: Histogram,
}

/// Every lock class, ranked by total wait time (most first).
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Profile {
    /// The rows, ranked.
    pub locks: Vec<LockProfile>,
}

/// The contention profile of every lock class seen so far (classes are
/// never forgotten, so a class whose locks were all dropped stays), ranked by
/// total wait time. Empty with diagnostics off. Takes no lock that a lock
/// path takes.
pub fn profile() -> Profile {
    #[cfg(lockscope_diag)]
    {
        let mut locks = Vec::new();
        let striped = super::view::striped_counts();
        for class in crate::record::class::all() {
            let s = super::view::class_stats(Some(class), Some(&striped));
            locks.push(LockProfile {
                name: class.name(),
                label: class.label.map(Arc::from),
                kind: class.kind.name(),
                acquisitions: s.exclusive_acquisitions + s.shared_acquisitions,
                exclusive: s.exclusive_acquisitions,
                contended: s.contended,
                timeouts: s.timeouts,
                wait_total: s.wait.sum(),
                wait_avg: s.wait.mean(),
                wait_max: s.wait.max(),
                hold_avg: s.hold.mean(),
                hold_max: s.hold.max(),
                top_sites: class.sites.snapshot(),
                wait: s.wait,
                hold: s.hold,
            });
        }
        locks.sort_by(|a, b| {
            b.wait_total
                .cmp(&a.wait_total)
                .then(b.contended.cmp(&a.contended))
                .then(b.acquisitions.cmp(&a.acquisitions))
        });
        Profile { locks }
    }
    #[cfg(not(lockscope_diag))]
    Profile::default()
}

/// A duration in a table cell: short, with a unit.
struct Short(Duration);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        let text = if ns < 1_000 {
            format!("{ns}ns")
        } else if ns < 1_000_000 {
            format!("{:.1}us", ns as f64 / 1e3)
        } else if ns < 1_000_000_000 {
            format!("{:.1}ms", ns as f64 / 1e6)
        } else {
            format!("{:.2}s", ns as f64 / 1e9)
        };
        f.pad(&text)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<32} {:>10} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "lock (ranked by wait total)",
            "acq",
            "contended",
            "timeouts",
            "wait-total",
            "wait-avg",
            "wait-max",
            "hold-avg",
            "hold-max"
        )?;
        for l in &self.locks {
            let mut name = l.name.clone();
            if name.chars().count() > 32 {
                name = name.chars().take(31).collect::<String>() + "~";
            }
            writeln!(
                f,
                "{:<32} {:>10} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
                name,
                l.acquisitions,
                l.contended,
                l.timeouts,
                Short(l.wait_total),
                Short(l.wait_avg),
                Short(l.wait_max),
                Short(l.hold_avg),
                Short(l.hold_max)
            )?;
            for site in &l.top_sites {
                let at = match site.site {
                    Some(s) => At(Some(s)).to_string(),
                    None => "(other sites)".to_string(),
                };
                writeln!(
                    f,
                    "    waits at {at}: {} waits, {} total",
                    site.waits,
                    Short(site.total)
                )?;
            }
        }
        Ok(())
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A counter family: name, help, value of a row.
type Counter = (&'static str, &'static str, fn(&LockProfile) -> u64);
/// A histogram family: name, help, histogram of a row.
type Family = (&'static str, &'static str, fn(&LockProfile) -> &Histogram);

/// Powers of two of nanoseconds the exports give cumulative counts below:
/// 2 ns to 2^39 ns (about 9 minutes).
const EXPORTED_POWERS: core::ops::RangeInclusive<u32> = 1..=39;

fn histogram(out: &mut String, metric: &str, labels: &str, h: &Histogram) {
    let buckets = h.buckets();
    let mut cumulative = 0u64;
    let mut next = buckets.iter().peekable();
    for i in EXPORTED_POWERS {
        // Durations are whole nanoseconds, so "below 2^i ns" is "at most
        // 2^i - 1 ns", which is the `le` (less or equal) bound Prometheus
        // asks for. A power of two starts a bucket, so no bucket straddles
        // the bound and the count is exact.
        let bound = Duration::from_nanos((1u64 << i) - 1);
        while let Some(&&(upper, n)) = next.peek() {
            if upper > bound {
                break;
            }
            cumulative += n;
            next.next();
        }
        let le = bound.as_secs_f64();
        let _ = writeln!(
            out,
            "{metric}_bucket{{{labels},le=\"{le:e}\"}} {cumulative}"
        );
    }
    let _ = writeln!(out, "{metric}_bucket{{{labels},le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(out, "{metric}_sum{{{labels}}} {}", h.sum().as_secs_f64());
    let _ = writeln!(out, "{metric}_count{{{labels}}} {}", h.count());
}

impl Profile {
    /// The profile in the Prometheus text exposition format (version
    /// 0.0.4): `lockscope_acquisitions_total`, `lockscope_contended_total`,
    /// `lockscope_timeouts_total` (counters), `lockscope_wait_seconds` and
    /// `lockscope_hold_seconds` (histograms; holds are sampled), each
    /// labelled `lock="<name>"` and `kind="<kind>"`. A histogram's `le`
    /// bounds are the durations below each power of two of nanoseconds from
    /// 2 ns to 2^39 ns, written as `2^i - 1` ns (`le="1.023e-6"`: below
    /// 1024 ns), with exact cumulative counts.
    /// Two locks with the same label share series names: give locks
    /// distinct labels.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let labels: Vec<String> = self
            .locks
            .iter()
            .map(|l| format!("lock=\"{}\",kind=\"{}\"", escape(&l.name), l.kind))
            .collect();
        let counters: [Counter; 3] = [
            (
                "lockscope_acquisitions_total",
                "Lock acquisitions of the class.",
                |l| l.acquisitions,
            ),
            (
                "lockscope_contended_total",
                "Lock acquisitions that had to park.",
                |l| l.contended,
            ),
            (
                "lockscope_timeouts_total",
                "Timed lock acquisitions that gave up.",
                |l| l.timeouts,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (l, labels) in self.locks.iter().zip(&labels) {
                let _ = writeln!(out, "{name}{{{labels}}} {}", value(l));
            }
        }
        let histograms: [Family; 2] = [
            (
                "lockscope_wait_seconds",
                "Time parked waiting for a lock, per contended acquisition.",
                |l| &l.wait,
            ),
            (
                "lockscope_hold_seconds",
                "Time a lock was held, sampled acquisitions.",
                |l| &l.hold,
            ),
        ];
        for (name, help, value) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (l, labels) in self.locks.iter().zip(&labels) {
                histogram(&mut out, name, labels, value(l));
            }
        }
        out
    }

    /// The row of the lock named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&LockProfile> {
        self.locks.iter().find(|l| l.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn prometheus_histogram_is_cumulative_and_ends_with_inf() {
        // Two waits below 1024 ns, two at or above it and below 2048 ns.
        let recorder = crate::histogram::Recorder::new();
        for ns in [600, 1023, 1024, 1500] {
            recorder.record(ns);
        }
        let h = recorder.snapshot();
        let profile = Profile {
            locks: vec![LockProfile {
                name: "x".into(),
                label: None,
                kind: "Mutex",
                acquisitions: 5,
                exclusive: 5,
                contended: 3,
                timeouts: 0,
                wait_total: h.sum(),
                wait_avg: Duration::ZERO,
                wait_max: h.max(),
                hold_avg: Duration::ZERO,
                hold_max: Duration::ZERO,
                top_sites: Vec::new(),
                wait: h,
                hold: Histogram::default(),
            }],
        };
        let text = profile.to_prometheus();
        assert!(
            text.contains(
                "lockscope_wait_seconds_bucket{lock=\"x\",kind=\"Mutex\",le=\"1.023e-6\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "lockscope_wait_seconds_bucket{lock=\"x\",kind=\"Mutex\",le=\"2.047e-6\"} 4\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "lockscope_wait_seconds_bucket{lock=\"x\",kind=\"Mutex\",le=\"+Inf\"} 4\n"
            ),
            "{text}"
        );
        assert!(text.contains("lockscope_wait_seconds_count{lock=\"x\",kind=\"Mutex\"} 4\n"));
        assert!(text.contains("lockscope_contended_total{lock=\"x\",kind=\"Mutex\"} 3\n"));
    }
}
