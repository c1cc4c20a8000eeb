//! A crate-internal debug hook for model tests: check an invariant of one
//! atomic word on every value that the facade's atomics read or write there.
//!
//! A model test registers the address of a lock word and a checker function
//! with [`watch`]; from then on, until the returned guard drops, every load,
//! store, exchange and read-modify-write of that word hands both the value
//! seen and the value written to the function, and a violation panics inside
//! the step that produced it, so the checker reports the schedule that led
//! there.
//!
//! The registry is a `std` thread-local: loom and shuttle run every thread of
//! a model as a coroutine on the test's own OS thread, so all of a model's
//! threads share it, and tests running in parallel do not.

use std::cell::RefCell;

/// Returns a description of the broken invariant, if the word breaks one.
pub(crate) type Check = fn(u64) -> Option<String>;

std::thread_local! {
    static WATCHED: RefCell<Vec<(usize, Check)>> = const { RefCell::new(Vec::new()) };
}

/// Unregisters its watch when dropped.
pub(crate) struct Watch {
    addr: usize,
}

/// Checks `check` on every value the atomic at `addr` reads or writes until
/// the returned guard drops.
pub(crate) fn watch(addr: usize, check: Check) -> Watch {
    WATCHED.with(|w| w.borrow_mut().push((addr, check)));
    Watch { addr }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = WATCHED.try_with(|w| {
            let mut w = w.borrow_mut();
            if let Some(pos) = w.iter().rposition(|(a, _)| *a == self.addr) {
                w.remove(pos);
            }
        });
    }
}

/// Called by the facade's atomics with each value seen or written at `addr`.
#[inline]
pub(crate) fn observe(op: &str, addr: usize, value: u64) {
    trace(|| format!("{}: {op} {addr:#x} = {value:#x}", thread_name()));
    let broken = WATCHED
        .try_with(|w| {
            let w = w.borrow();
            w.iter()
                .filter(|(a, _)| *a == addr)
                .find_map(|(_, check)| check(value))
        })
        .ok()
        .flatten();
    if let Some(problem) = broken {
        panic!("lockscope model check: word at {addr:#x} became {value:#x}: {problem}");
    }
}

std::thread_local! {
    static TRACE: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Starts (or restarts) recording a trace of lock-word values and parking
/// events, if `LOCKSCOPE_MODEL_TRACE` is set; called at the start of each
/// execution by the model tests.
pub(crate) fn trace_start() {
    let on = std::env::var_os("LOCKSCOPE_MODEL_TRACE").is_some();
    TRACE.with(|t| *t.borrow_mut() = on.then(Vec::new));
    if std::env::var_os("LOCKSCOPE_MODEL_TRACE").is_some_and(|v| v == "live") {
        eprintln!("live: ---- new execution");
    }
}

/// Records an event in the trace, if one is being recorded.
pub(crate) fn trace(event: impl FnOnce() -> String) {
    let _ = TRACE.try_with(|t| {
        if let Some(log) = t.borrow_mut().as_mut() {
            let event = event();
            if std::env::var_os("LOCKSCOPE_MODEL_TRACE").is_some_and(|v| v == "live") {
                eprintln!("live: {event}");
            }
            log.push(event);
        }
    });
}

/// The trace of the current (or last) execution.
pub(crate) fn trace_dump() -> Vec<String> {
    TRACE
        .try_with(|t| t.borrow().clone().unwrap_or_default())
        .unwrap_or_default()
}

/// The checker's name for the current thread, for traces.
pub(crate) fn thread_name() -> String {
    #[cfg(loom)]
    let id = loom::thread::current().id();
    #[cfg(all(feature = "shuttle", not(loom)))]
    let id = shuttle::thread::current().id();
    format!("{id:?}")
}
