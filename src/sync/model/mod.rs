//! The model-checking backend: the facade's atomics, parking, spinning and
//! thread identity rebuilt on a checker's own primitives, so that every lock
//! operation is a step the checker schedules and every lock word a location
//! it tracks.
//!
//! [`checker`] names the primitives of whichever checker is selected (loom
//! under `--cfg loom`, shuttle under feature `shuttle`); everything else here
//! is written once against those names.
//!
//! What differs from the `std` backend, and why:
//!
//! - Atomics are the checker's. Under loom they cannot be built in a `const`,
//!   so ours hold their initial value and create the checker's atomic on
//!   first use in each execution (see [`atomic`]); a lock in a `static`
//!   therefore starts every execution from its initial word.
//! - Parking is a queue table behind one checker mutex ([`park`]); a timed
//!   park can time out at any point before it is woken, and the checker
//!   explores both outcomes.
//! - Spinning never helps a checker: [`SpinWait::spin`] declines at once,
//!   so a blocked thread parks and the checker sees who it waits for.
//! - [`watch`] lets a model test check a lock word's invariants on every
//!   value the lock reads or writes.

pub(crate) mod atomic;
pub(crate) mod checker;
pub(crate) mod park;
#[cfg(test)]
pub(crate) mod watch;

#[cfg(test)]
mod tests;

use core::num::NonZeroUsize;

/// The spinning policy of the slow paths, under a checker.
///
/// Spinning re-reads a word hoping another thread changes it meanwhile; a
/// checker explores every point at which that could happen anyway, so a spin
/// only multiplies the states to explore. `spin` therefore declines at once
/// and the caller parks, where the checker can see what it waits for.
pub(crate) struct SpinWait {
    _private: (),
}

impl SpinWait {
    /// A fresh spinner.
    #[inline]
    pub(crate) fn new() -> SpinWait {
        SpinWait { _private: () }
    }

    /// Nothing to reset: spinning never starts.
    #[inline]
    pub(crate) fn reset(&mut self) {}

    /// Declines to spin: the caller should park.
    #[inline]
    pub(crate) fn spin(&mut self) -> bool {
        false
    }

    /// A retry after a lost race: let the checker run another thread first.
    #[inline]
    pub(crate) fn spin_no_yield(&mut self) {
        checker::yield_now();
    }
}

/// A non-zero identifier of the calling checker thread, unique among live
/// threads of the execution: the address of a checker thread-local (a std
/// thread-local would be shared by every thread of the model, which all run
/// on one OS thread).
#[inline]
pub(crate) fn current_thread_id() -> NonZeroUsize {
    checker::thread_local!(static KEY: u8 = 0);
    KEY.with(|key| {
        let addr = core::ptr::from_ref(key).addr();
        NonZeroUsize::new(addr).expect("thread-local address is never null")
    })
}
