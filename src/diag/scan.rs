//! One watchdog scan: who waits for what, who holds what, the waits-for
//! graph and its cycles, orphaned locks, long waits and long holds.
//!
//! Reads thread records and lock classes (neither is ever freed); never
//! touches a lock itself, since a lock found through a thread's record may
//! be dropped at any moment: it is named by the identity copied into the
//! record. Runs on the watchdog's thread (or a caller of
//! `watchdog::check`), on no lock path.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::stall::{CycleStep, Diagnosis, LockReport};
use super::view;
use super::{Holder, Mode, Waiter};
use crate::record::Kind;
use crate::record::lock as lockrec;

/// A condition found by a scan, with a key that stays the same for as long
/// as the condition lasts (so that it is confirmed, and reported, once).
pub(crate) struct Finding {
    pub(crate) key: String,
    pub(crate) diagnosis: Diagnosis,
    /// Indexes into [`Scan::locks`].
    pub(crate) locks: Vec<usize>,
}

/// What one scan saw.
pub(crate) struct Scan {
    pub(crate) locks: Vec<LockReport>,
    pub(crate) findings: Vec<Finding>,
}

struct Seen {
    addr: usize,
    report: LockReport,
    /// The word a waiter saw says some thread holds (or has claimed) the lock.
    word_held: bool,
}

/// The lock word a waiter saw, decoded, and whether it says "held".
fn decode(kind: Kind, raw: usize) -> (String, bool) {
    if kind == Kind::Mutex {
        let word = crate::RawMutex::decode(raw as u8);
        (word.to_string(), word.locked || !word.is_valid())
    } else {
        let word = crate::RawRwLock::decode(raw);
        let held = word.readers > 0 || word.writer || word.upgradable || !word.is_valid();
        (word.to_string(), held)
    }
}

/// Every lock that a thread holds or waits for, with its report.
fn seen_locks() -> Vec<Seen> {
    view::live()
        .into_iter()
        .map(|(addr, f)| {
            let (label, first_site) = lockrec::ident_parts(f.ident);
            let (word, word_held) = match f.word {
                Some(raw) => {
                    let (word, held) = decode(f.kind, raw);
                    (Some(word), held)
                }
                None => (None, false),
            };
            Seen {
                addr,
                report: LockReport {
                    name: lockrec::ident_name(f.ident, f.kind),
                    label: label.map(Arc::from),
                    kind: f.kind.name(),
                    first_site: first_site.unwrap_or_else(|| core::panic::Location::caller()),
                    word,
                    holders: f.holders,
                    waiters: f.waiters,
                    last_holder: None,
                },
                word_held,
            }
        })
        .collect()
}

/// A waits-for edge: `waiter` waits for lock `lock`, which `holder` holds.
struct Edge<'a> {
    lock: usize,
    waiter: &'a Waiter,
    holder: &'a Holder,
}

/// Scans every thread and lock record.
pub(crate) fn scan(wait_threshold: Duration, hold_threshold: Duration) -> Scan {
    let locks = seen_locks();
    let mut findings = Vec::new();
    let mut explained: HashSet<u32> = HashSet::new();

    // The waits-for graph, over waits older than the threshold.
    let mut edges: HashMap<u32, Vec<Edge<'_>>> = HashMap::new();
    for (i, lock) in locks.iter().enumerate() {
        for waiter in &lock.report.waiters {
            if waiter.waiting_for < wait_threshold {
                continue;
            }
            for holder in &lock.report.holders {
                let upgrading = holder.thread.id == waiter.thread.id
                    && holder.mode == Mode::Upgradable
                    && waiter.mode == Mode::Exclusive;
                if holder.thread.alive && !upgrading {
                    edges.entry(waiter.thread.id).or_default().push(Edge {
                        lock: i,
                        waiter,
                        holder,
                    });
                }
            }
        }
    }
    let step = |e: &Edge<'_>| CycleStep {
        thread: e.waiter.thread.clone(),
        lock: locks[e.lock].report.name.clone(),
        wait_mode: e.waiter.mode,
        wait_site: e.waiter.site,
        waiting_for: e.waiter.waiting_for,
        holder: e.holder.thread.clone(),
        hold_mode: e.holder.mode,
        hold_site: e.holder.site,
    };
    let mut seen_cycles = HashSet::new();
    for cycle in cycles(&edges) {
        let mut key: Vec<(u32, usize)> = cycle
            .iter()
            .map(|e| (e.waiter.thread.id, locks[e.lock].addr))
            .collect();
        key.sort_unstable();
        if !seen_cycles.insert(key.clone()) {
            continue;
        }
        explained.extend(cycle.iter().map(|e| e.waiter.thread.id));
        let mut lock_ids: Vec<usize> = cycle.iter().map(|e| e.lock).collect();
        lock_ids.dedup();
        let diagnosis = if cycle.len() == 1 {
            Diagnosis::SelfDeadlock {
                step: step(cycle[0]),
            }
        } else {
            Diagnosis::Deadlock {
                cycle: cycle.iter().map(|e| step(e)).collect(),
            }
        };
        findings.push(Finding {
            key: format!("deadlock {key:?}"),
            diagnosis,
            locks: lock_ids,
        });
    }

    // Orphaned locks: waiters, a word that says held, no running holder.
    for (i, lock) in locks.iter().enumerate() {
        let r = &lock.report;
        let stalled = r.waiters.iter().any(|w| w.waiting_for >= wait_threshold);
        if stalled && lock.word_held && !r.holders.iter().any(|h| h.thread.alive) {
            explained.extend(r.waiters.iter().map(|w| w.thread.id));
            findings.push(Finding {
                key: format!("orphan {:#x}", lock.addr),
                diagnosis: Diagnosis::Orphaned {
                    lock: r.name.clone(),
                    word: r.word.clone(),
                    dead_holders: r
                        .holders
                        .iter()
                        .filter(|h| !h.thread.alive)
                        .cloned()
                        .collect(),
                    waiters: r.waiters.len(),
                },
                locks: vec![i],
            });
        }
    }

    // What is left: long waits, then long holds.
    for (i, lock) in locks.iter().enumerate() {
        for waiter in &lock.report.waiters {
            if waiter.waiting_for >= wait_threshold && !explained.contains(&waiter.thread.id) {
                findings.push(Finding {
                    key: format!("wait {} {:#x}", waiter.thread.id, lock.addr),
                    diagnosis: Diagnosis::LongWait {
                        lock: lock.report.name.clone(),
                        waiter: waiter.clone(),
                    },
                    locks: vec![i],
                });
            }
        }
    }
    for (i, lock) in locks.iter().enumerate() {
        for holder in &lock.report.holders {
            if holder.held_for >= hold_threshold && holder.thread.alive {
                findings.push(Finding {
                    key: format!(
                        "hold {} {:#x} {:?}",
                        holder.thread.id, lock.addr, holder.mode
                    ),
                    diagnosis: Diagnosis::LongHold {
                        lock: lock.report.name.clone(),
                        holder: holder.clone(),
                    },
                    locks: vec![i],
                });
            }
        }
    }
    Scan {
        locks: locks.into_iter().map(|l| l.report).collect(),
        findings,
    }
}

/// The waits-for cycles of this instant, each with its key (the same for as
/// long as the cycle lasts) and its steps.
#[cfg(feature = "deadlock_detection")]
pub(crate) fn cycles_now() -> Vec<(String, Vec<CycleStep>)> {
    scan(Duration::ZERO, Duration::MAX)
        .findings
        .into_iter()
        .filter_map(|f| match f.diagnosis {
            Diagnosis::Deadlock { cycle } => Some((f.key, cycle)),
            Diagnosis::SelfDeadlock { step } => Some((f.key, vec![step])),
            _ => None,
        })
        .collect()
}

/// Simple cycles of the waits-for graph, each found once (from its
/// smallest thread id); at most 16.
fn cycles<'a, 'b>(edges: &'b HashMap<u32, Vec<Edge<'a>>>) -> Vec<Vec<&'b Edge<'a>>> {
    let mut starts: Vec<u32> = edges.keys().copied().collect();
    starts.sort_unstable();
    let mut found = Vec::new();
    for start in starts {
        let mut path = Vec::new();
        walk(start, start, edges, &mut path, &mut found);
    }
    found
}

fn walk<'a, 'b>(
    start: u32,
    at: u32,
    edges: &'b HashMap<u32, Vec<Edge<'a>>>,
    path: &mut Vec<&'b Edge<'a>>,
    found: &mut Vec<Vec<&'b Edge<'a>>>,
) {
    let Some(out) = edges.get(&at) else { return };
    for edge in out {
        if found.len() >= 16 {
            return;
        }
        let next = edge.holder.thread.id;
        if next == start {
            let mut cycle = path.clone();
            cycle.push(edge);
            found.push(cycle);
        } else if next > start && next != at && !path.iter().any(|e| e.waiter.thread.id == next) {
            path.push(edge);
            walk(start, next, edges, path, found);
            path.pop();
        }
    }
}
