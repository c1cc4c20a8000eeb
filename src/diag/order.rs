//! Lock-order checking (opt-in), like the kernel's lockdep: records the
//! order in which lock classes are taken while others are held by the same
//! thread, and reports the first inversion of each pair of classes the moment
//! it happens, even if no deadlock occurs in that run.
//!
//! A lock's class is its label, or, for an unlabelled lock, its kind and the
//! site of its first acquisition (so all locks labelled `"shard"` are one
//! class, and taking two of them nested is not checked).
//!
//! ```
//! use lockscope::diag::{Inspect, order};
//! use lockscope::Mutex;
//!
//! order::enable();
//! let (a, b) = (Mutex::new(()), Mutex::new(()));
//! a.set_label("doc-a");
//! b.set_label("doc-b");
//! {
//!     let _a = a.lock();
//!     let _b = b.lock(); // doc-a, then doc-b
//! }
//! {
//!     let _b = b.lock();
//!     let _a = a.lock(); // doc-b, then doc-a: an inversion, reported now
//! }
//! if lockscope::diag::enabled() {
//!     let found = order::violations();
//!     assert!(found.iter().any(|v| v.held == "doc-b" && v.acquiring == "doc-a"));
//! }
//! order::disable();
//! ```
//!
//! An inversion is reported through `tracing` (level ERROR, target
//! `lockscope`, message "lock order inversion"), the callback set with
//! [`set_callback`] (called on the thread that made the inversion, while it
//! holds its locks: it must not take them), and the list [`violations`]. It
//! is not a [`Violation`](crate::Violation) of the policy: nothing is wrong
//! yet, and the acquisition goes on.
//!
//! Cost: disabled (the default), one relaxed load of a global flag per
//! acquisition. Enabled, every acquisition also takes a global mutex that
//! guards the order graph, and looks at the thread's list of held locks: a
//! debugging and testing tool, not for production hot paths. Only holds that
//! diagnostics record are seen (at most 16 holds per thread). With
//! diagnostics off, [`enable`] does nothing.

use core::fmt;
use core::panic::Location;
use std::sync::Arc;

use super::ThreadInfo;
use super::stall::At;

type Site = &'static Location<'static>;

/// Called with each inversion, on the thread that made it.
pub type Callback = Arc<dyn Fn(&OrderViolation) + Send + Sync>;

/// Two lock classes taken in both orders.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct OrderViolation {
    /// The thread that took them in the new order.
    pub thread: Option<ThreadInfo>,
    /// The class it holds.
    pub held: String,
    /// Where it took `held`.
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::site"))]
    pub held_site: Site,
    /// The class it is taking.
    pub acquiring: String,
    /// Where it takes `acquiring`.
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::site"))]
    pub acquiring_site: Site,
    /// The thread that first took them in the other order.
    pub earlier_thread: Option<ThreadInfo>,
    /// Where that thread took `acquiring` (which it held).
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::site"))]
    pub earlier_held_site: Site,
    /// Where it then took `held`.
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser::site"))]
    pub earlier_acquiring_site: Site,
    /// The inverting thread's backtrace at the inversion, if
    /// [`set_backtraces`] asked for them.
    pub backtrace: Option<String>,
}

impl fmt::Display for OrderViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who =
            |t: &Option<ThreadInfo>| t.as_ref().map_or("a thread".into(), ToString::to_string);
        write!(
            f,
            "lock order inversion: {} takes \"{}\" at {} while holding \"{}\" (taken at {}); \
             earlier {} took \"{}\" at {} while holding \"{}\" (taken at {})",
            who(&self.thread),
            self.acquiring,
            At(Some(self.acquiring_site)),
            self.held,
            At(Some(self.held_site)),
            who(&self.earlier_thread),
            self.held,
            At(Some(self.earlier_acquiring_site)),
            self.acquiring,
            At(Some(self.earlier_held_site)),
        )?;
        if let Some(backtrace) = &self.backtrace {
            write!(f, "\nbacktrace:\n{backtrace}")?;
        }
        Ok(())
    }
}

/// Whether each inversion carries the inverting thread's backtrace
/// (captured only when an inversion is reported, with the `backtrace` crate
/// under the `deadlock_detection` feature, else `std::backtrace`; off by
/// default). Symbolizing takes milliseconds: fine for a report, which is
/// made once per pair of classes.
pub fn set_backtraces(on: bool) {
    #[cfg(lockscope_diag)]
    on::BACKTRACES.store(on, std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(lockscope_diag))]
    let _ = on;
}

/// Starts checking lock order (see the module docs for the cost). Orders
/// seen before are kept.
pub fn enable() {
    #[cfg(lockscope_diag)]
    on::enable();
}

/// Stops checking; what was learned is kept for a later [`enable`].
pub fn disable() {
    #[cfg(lockscope_diag)]
    crate::record::hot::HOT
        .order_on
        .store(false, std::sync::atomic::Ordering::Relaxed);
}

/// Whether lock order is being checked.
pub fn is_enabled() -> bool {
    #[cfg(lockscope_diag)]
    {
        crate::record::hot::HOT
            .order_on
            .load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(lockscope_diag))]
    false
}

/// Sets (or with `None` removes) the callback called with each inversion.
pub fn set_callback(callback: Option<Callback>) {
    #[cfg(lockscope_diag)]
    {
        // blocking-ok: configuration, on no lock path.
        *on::CALLBACK.lock().unwrap_or_else(|e| e.into_inner()) = callback;
    }
    #[cfg(not(lockscope_diag))]
    drop(callback);
}

/// Every inversion reported so far (each pair of classes once).
pub fn violations() -> Vec<OrderViolation> {
    #[cfg(lockscope_diag)]
    {
        // blocking-ok: reading the list, on no lock path.
        let list = on::VIOLATIONS.lock();
        list.unwrap_or_else(|e| e.into_inner()).clone()
    }
    #[cfg(not(lockscope_diag))]
    Vec::new()
}

#[cfg(lockscope_diag)]
pub(crate) use on::{acquired, retired};

#[cfg(lockscope_diag)]
mod on {
    use core::cell::RefCell;
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use super::super::{Mode, ThreadInfo};
    use super::{Callback, OrderViolation, Site};
    use crate::record::lock::ident_name;
    use crate::record::{Kind, thread};

    /// Checking was ever on: dropping locks must then leave the graph.
    static EVER: AtomicBool = AtomicBool::new(false);
    pub(super) static CALLBACK: Mutex<Option<Callback>> = Mutex::new(None);
    pub(super) static VIOLATIONS: Mutex<Vec<OrderViolation>> = Mutex::new(Vec::new());
    static GRAPH: Mutex<Option<Graph>> = Mutex::new(None);
    pub(super) static BACKTRACES: AtomicBool = AtomicBool::new(false);

    /// The first time one class was taken while another was held.
    struct Edge {
        thread: Option<ThreadInfo>,
        held_site: Site,
        acquiring_site: Site,
    }

    #[derive(Default)]
    struct Graph {
        /// The class of every live lock the checker has seen, by record
        /// address: a record listed here has not been dropped.
        classes: HashMap<usize, Arc<str>>,
        edges: HashMap<(Arc<str>, Arc<str>), Edge>,
        reported: HashSet<(Arc<str>, Arc<str>)>,
    }

    /// A lock the thread took while checking was on.
    struct Held {
        lock: usize,
        mode: Mode,
        site: Site,
    }

    thread_local! {
        static HELD: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn enable() {
        EVER.store(true, Ordering::Relaxed);
        // Read (relaxed) by every acquisition.
        crate::record::hot::HOT
            .order_on
            .store(true, Ordering::Relaxed);
    }

    /// Whether `held` is still held by this thread: its lock is live (a
    /// dropped lock leaves `classes` first) and the thread's record still
    /// lists the hold.
    fn still_held(graph: &Graph, held: &Held, me: &thread::ThreadRecord) -> bool {
        graph.classes.contains_key(&held.lock) && me.find(held.lock, held.mode).is_some()
    }

    /// The calling thread has just acquired `record`'s lock in `mode`.
    #[cold]
    #[inline(never)]
    pub(crate) fn acquired(addr: usize, ident: usize, kind: Kind, mode: Mode, site: Site) {
        let Some(me) = thread::current() else { return };
        let mut found = Vec::new();
        {
            // The graph is behind this mutex: the documented cost of enabling.
            // blocking-ok: opt-in lock-order checking only.
            let mut graph = GRAPH.lock().unwrap_or_else(|e| e.into_inner());
            let graph = graph.get_or_insert_with(Graph::default);
            let class = Arc::clone(
                graph
                    .classes
                    .entry(addr)
                    .or_insert_with(|| Arc::from(ident_name(ident, kind))),
            );
            let _ = HELD.try_with(|list| {
                let mut list = list.borrow_mut();
                list.retain(|h| still_held(graph, h, me));
                for held in list.iter() {
                    let held_class = Arc::clone(&graph.classes[&held.lock]);
                    if held_class == class {
                        continue;
                    }
                    let forward = (Arc::clone(&held_class), Arc::clone(&class));
                    let backward = (Arc::clone(&class), Arc::clone(&held_class));
                    graph.edges.entry(forward).or_insert_with(|| Edge {
                        thread: Some(crate::diag::thread_info(me)),
                        held_site: held.site,
                        acquiring_site: site,
                    });
                    if let Some(earlier) = graph.edges.get(&backward) {
                        let mut pair = [Arc::clone(&held_class), Arc::clone(&class)];
                        pair.sort();
                        let [x, y] = pair;
                        if graph.reported.insert((x, y)) {
                            found.push(OrderViolation {
                                thread: Some(crate::diag::thread_info(me)),
                                held: held_class.to_string(),
                                held_site: held.site,
                                acquiring: class.to_string(),
                                acquiring_site: site,
                                earlier_thread: earlier.thread.clone(),
                                earlier_held_site: earlier.held_site,
                                earlier_acquiring_site: earlier.acquiring_site,
                                backtrace: None,
                            });
                        }
                    }
                }
                list.push(Held {
                    lock: addr,
                    mode,
                    site,
                });
            });
        }
        for violation in found {
            report(violation);
        }
    }

    /// The calling thread's stack, symbolized: with the `backtrace` crate
    /// when `deadlock_detection` brings it (the type of the deadlock
    /// module's stacks), else with `std::backtrace`.
    fn capture() -> String {
        #[cfg(feature = "deadlock_detection")]
        {
            format!("{:?}", backtrace::Backtrace::new())
        }
        #[cfg(not(feature = "deadlock_detection"))]
        {
            std::backtrace::Backtrace::force_capture().to_string()
        }
    }

    #[cold]
    fn report(mut violation: OrderViolation) {
        if BACKTRACES.load(Ordering::Relaxed) {
            violation.backtrace = Some(capture());
        }
        tracing::error!(target: "lockscope", report = %violation, "lock order inversion");
        // blocking-ok: opt-in lock-order checking, reporting an inversion.
        let callback = CALLBACK.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(callback) = callback {
            callback(&violation);
        }
        // blocking-ok: as above.
        let list = VIOLATIONS.lock();
        list.unwrap_or_else(|e| e.into_inner()).push(violation);
    }

    /// A lock is being dropped: forget its record (if checking ever ran).
    #[inline]
    pub(crate) fn retired(addr: usize) {
        if EVER.load(Ordering::Relaxed) {
            unlist(addr);
        }
    }

    #[cold]
    fn unlist(addr: usize) {
        // blocking-ok: a lock being dropped while order checking ran (opt-in).
        let mut graph = GRAPH.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(graph) = graph.as_mut() {
            graph.classes.remove(&addr);
        }
    }
}
