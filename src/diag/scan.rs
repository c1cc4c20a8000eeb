//! One watchdog scan: who waits for what, who holds what, the waits-for
//! graph and its cycles, orphaned locks, long waits and long holds.
//!
//! Reads thread records (never freed) and lock records (under the registry's
//! sweep mutex, so none is freed meanwhile); never touches a lock itself,
//! since a lock may have moved. Runs on the watchdog's thread (or a caller
//! of `watchdog::check`), on no lock path.

use core::ptr;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::clock::{self, elapsed_ms};
use super::lock::LockRecord;
use super::stall::{CycleStep, Diagnosis, LockReport};
use super::{Holder, Mode, Waiter, registry, thread};

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

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// The lock word a waiter saw, decoded, and whether it says "held".
fn decode(kind: &'static str, raw: usize) -> (String, bool) {
    if kind == crate::raw::mutex::KIND {
        let word = crate::RawMutex::decode(raw as u8);
        (word.to_string(), word.locked || !word.is_valid())
    } else {
        let word = crate::RawRwLock::decode(raw);
        let held = word.readers > 0 || word.writer || word.upgradable || !word.is_valid();
        (word.to_string(), held)
    }
}

fn seen(record: &LockRecord) -> Seen {
    let snapshot = record.snapshot();
    let mut holders = snapshot.holders;
    // A leaked exclusive guard outlives its thread, whose record may since
    // have been claimed by a new thread: that one does not hold the lock.
    if let Some(tenure) = record.excl.current()
        && let Some(owner) = tenure.thread()
        && !owner.alive_since(tenure.since())
    {
        for holder in holders
            .iter_mut()
            .filter(|h| h.mode == Mode::Exclusive && h.thread.id == owner.id)
        {
            // The name is that of the record's new owner, not the holder's.
            holder.thread.alive = false;
            holder.thread.name = None;
        }
    }
    let (word, word_held) = if snapshot.waiters.is_empty() {
        (None, false)
    } else {
        let (word, held) = decode(record.kind, record.parked_word.load(Ordering::Relaxed));
        (Some(word), held)
    };
    Seen {
        addr: ptr::from_ref(record).addr(),
        report: LockReport {
            name: snapshot.name,
            label: snapshot.label,
            kind: snapshot.kind,
            first_site: snapshot.first_site,
            word,
            holders,
            waiters: snapshot.waiters,
            last_holder: snapshot.last_holder,
        },
        word_held,
    }
}

/// A waits-for edge: `waiter` waits for lock `lock`, which `holder` holds.
struct Edge<'a> {
    lock: usize,
    waiter: &'a Waiter,
    holder: &'a Holder,
}

/// Scans every thread and lock record.
pub(crate) fn scan(wait_threshold: Duration, hold_threshold: Duration) -> Scan {
    let hold_ms = ms(hold_threshold);
    let now = clock::now_ms();
    // Locks that threads wait for or have held shared for too long: the only
    // ones worth a closer look.
    let mut watched = HashSet::new();
    for t in thread::all() {
        let lock = t.wait.lock.load(Ordering::Acquire);
        if !lock.is_null() {
            watched.insert(lock.addr());
        }
        for (i, hold) in t.holds.iter().enumerate() {
            let word = hold.load(Ordering::Acquire);
            if word != 0 && elapsed_ms(t.slots[i].since_ms.load(Ordering::Relaxed), now) >= hold_ms
            {
                watched.insert(thread::untag(word).0);
            }
        }
    }
    let mut locks = Vec::new();
    registry::for_each(|record| {
        let addr = ptr::from_ref(record).addr();
        let long_exclusive = record
            .excl
            .current()
            .is_some_and(|t| elapsed_ms(t.since(), now) >= hold_ms);
        if long_exclusive || watched.contains(&addr) {
            locks.push(seen(record));
        }
    });

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
