//! Time, read only on slow paths: a thread that is about to park can afford
//! a precise clock, an uncontended acquisition cannot.
//!
//! Under a model checker (`--cfg loom`, feature `shuttle`) `Instant` and
//! `Duration` stay the `std` types, so that user code passes the same
//! arguments in both builds, but no decision depends on their values: a
//! deadline only says "this wait may time out" (see `model::park`), and
//! [`micros_now`] is a constant, because an execution that read a real clock
//! could not be replayed.

pub(crate) use std::time::{Duration, Instant};

#[cfg(not(any(loom, feature = "shuttle")))]
use std::sync::OnceLock;

/// Converts a relative timeout into a deadline; `None` when the deadline is
/// not representable (for example `Duration::MAX`), which callers treat as
/// "wait without a deadline", as parking_lot does.
#[inline]
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Microseconds since the first call in this process, saturating.
///
/// Park tokens carry this stamp so that an unlocker can tell how long the
/// first waiter has been queued (eventual fairness) without a shared clock.
#[cfg(not(any(loom, feature = "shuttle")))]
#[inline]
pub(crate) fn micros_now() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Under a model checker: always zero, so no waiter ever looks overdue and
/// eventual fairness never hands a lock over by itself. Hand-over still
/// happens, and is checked, on every fair release (`unlock_fair`,
/// [`FairMutex`](crate::FairMutex), `bump`), which takes the same path.
#[cfg(any(loom, feature = "shuttle"))]
#[inline]
pub(crate) fn micros_now() -> u64 {
    0
}
