//! The checker's primitives under one set of names, so that the rest of the
//! model backend is written once.
//!
//! | name          | loom                         | shuttle                         |
//! |---------------|------------------------------|---------------------------------|
//! | `Mutex`       | `loom::sync::Mutex`          | `shuttle::sync::Mutex`          |
//! | `Condvar`     | `loom::sync::Condvar`        | `shuttle::sync::Condvar`        |
//! | `yield_now`   | `loom::thread::yield_now`    | `shuttle::thread::yield_now`    |
//! | `thread_local!` | `loom::thread_local!`      | `shuttle::thread_local!`        |
//! | `lazy_static!`  | `loom::lazy_static!`       | `shuttle::lazy_static!`         |
//!
//! Both checkers reset their `lazy_static!` values and thread-locals at the
//! start of every execution, which is what per-execution state needs.

#[cfg(loom)]
pub(crate) use loom::{
    lazy_static,
    sync::{Condvar, Mutex, MutexGuard},
    thread::yield_now,
    thread_local,
};

#[cfg(all(feature = "shuttle", not(loom)))]
pub(crate) use shuttle::{
    lazy_static,
    sync::{Condvar, Mutex, MutexGuard},
    thread::yield_now,
    thread_local,
};

/// Called by a timed waiter between going to sleep and checking whether its
/// timeout fired: the window in which a wake-up can still beat the timeout.
///
/// loom needs nothing here: the waiter's next step takes the queue mutex,
/// and loom's partial-order reduction explores every unpark that contends for
/// it both before and after. Shuttle samples schedules instead; a yield
/// gives the threads that could wake this one a turn first, so that both
/// outcomes come up in a few hundred iterations.
#[inline]
pub(crate) fn timeout_window() {
    #[cfg(all(feature = "shuttle", not(loom)))]
    shuttle::thread::yield_now();
}
