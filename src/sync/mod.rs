//! The one place that decides where atomics, parking, time and thread identity
//! come from.
//!
//! Everything a checker must see imports these through `crate::sync`, never
//! from `std` or `parking_lot_core` directly: the raw locks, `Once`, and the
//! cache's shared state (shards, sketch, pattern detector, single flight),
//! so that a model-checking backend can replace them here without touching
//! that code. There are three backends:
//!
//! - the default: `std` atomics, `parking_lot_core` parking, the OS clock;
//! - `--cfg loom`: [`model`] on top of loom's atomics, mutex and condvar;
//! - feature `shuttle`: [`model`] on top of shuttle's.
//!
//! The locks see the same names and signatures in all three.
//!
//! What no checker must see uses `std` atomics directly: the recording
//! engine (`crate::record`, compiled out under a checker, see build.rs) and
//! the reports that read it (`crate::diag`); the process-wide violation
//! policy and count (`raw/violation.rs`), which no lock protocol depends
//! on; and the cache's per-thread statistics stripes, which belong to an OS
//! thread rather than a modelled one (`cache/stats.rs` says why), with the
//! histograms that the stripes and the lock classes record into
//! (`histogram.rs`).

#[cfg(all(loom, feature = "shuttle"))]
compile_error!("lockscope: `--cfg loom` and the `shuttle` feature are exclusive; pick one checker");

#[cfg(not(any(loom, feature = "shuttle")))]
pub(crate) mod atomic {
    pub(crate) use std::sync::atomic::{
        AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
    };
}

#[cfg(not(any(loom, feature = "shuttle")))]
pub(crate) mod park;
#[cfg(not(any(loom, feature = "shuttle")))]
pub(crate) use park::SpinWait;

#[cfg(any(loom, feature = "shuttle"))]
pub(crate) mod model;
#[cfg(any(loom, feature = "shuttle"))]
pub(crate) use model::{SpinWait, atomic, current_thread_id, park};

pub(crate) mod time;

/// Lets another thread run (under a checker: another thread of the model).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(any(loom, feature = "shuttle")))]
    std::thread::yield_now();
    #[cfg(any(loom, feature = "shuttle"))]
    model::checker::yield_now();
}

/// A non-zero identifier of the calling thread, unique among live threads.
///
/// The address of a thread-local byte: free to compute, never zero, and
/// distinct for every thread that is alive at the same time.
#[cfg(not(any(loom, feature = "shuttle")))]
#[inline]
pub(crate) fn current_thread_id() -> core::num::NonZeroUsize {
    thread_local!(static KEY: u8 = const { 0 });
    KEY.with(|key| {
        let addr = core::ptr::from_ref(key).addr();
        // A reference is never null.
        core::num::NonZeroUsize::new(addr).expect("thread-local address is never null")
    })
}
