//! Blocking: park a thread on an address, wake threads parked on an address.
//!
//! The std backend is `parking_lot_core`'s global hash table of queues. The
//! signatures mirror it so that a model-checking backend can provide the same
//! operations on the checker's own primitives.

pub(crate) use parking_lot_core::{
    FilterOp, ParkResult, ParkToken, RequeueOp, SpinWait, UnparkResult, UnparkToken,
};

use super::time::Instant;

/// Parks the calling thread in the queue of `key` while `validate` holds.
///
/// # Safety
///
/// `key` must be an address owned by the calling lock, `validate` and
/// `timed_out` must not panic nor call into this module, `before_sleep` must
/// not park nor panic.
#[inline]
pub(crate) unsafe fn park(
    key: usize,
    validate: impl FnOnce() -> bool,
    before_sleep: impl FnOnce(),
    timed_out: impl FnOnce(usize, bool),
    token: ParkToken,
    deadline: Option<Instant>,
) -> ParkResult {
    // SAFETY: forwarded from this function's contract.
    unsafe { parking_lot_core::park(key, validate, before_sleep, timed_out, token, deadline) }
}

/// Wakes one thread parked on `key`; `callback` runs under the queue lock.
///
/// # Safety
///
/// `key` must be owned by the calling lock; `callback` must not panic nor
/// call into this module.
#[inline]
pub(crate) unsafe fn unpark_one(
    key: usize,
    callback: impl FnOnce(UnparkResult) -> UnparkToken,
) -> UnparkResult {
    // SAFETY: forwarded from this function's contract.
    unsafe { parking_lot_core::unpark_one(key, callback) }
}

/// Wakes the threads parked on `key` that `filter` selects, in queue order.
///
/// # Safety
///
/// As for [`unpark_one`]; `filter` runs under the queue lock too.
#[inline]
pub(crate) unsafe fn unpark_filter(
    key: usize,
    filter: impl FnMut(ParkToken) -> FilterOp,
    callback: impl FnOnce(UnparkResult) -> UnparkToken,
) -> UnparkResult {
    // SAFETY: forwarded from this function's contract.
    unsafe { parking_lot_core::unpark_filter(key, filter, callback) }
}

/// Moves threads parked on `from` to `to` or wakes them, as `validate` says.
///
/// # Safety
///
/// Both keys must be owned by the calling locks; `validate` and `callback`
/// must not panic nor call into this module.
#[inline]
pub(crate) unsafe fn unpark_requeue(
    from: usize,
    to: usize,
    validate: impl FnOnce() -> RequeueOp,
    callback: impl FnOnce(RequeueOp, UnparkResult) -> UnparkToken,
) -> UnparkResult {
    // SAFETY: forwarded from this function's contract.
    unsafe { parking_lot_core::unpark_requeue(from, to, validate, callback) }
}

/// Wakes every thread parked on `key`.
///
/// # Safety
///
/// `key` must be owned by the calling lock.
#[inline]
pub(crate) unsafe fn unpark_all(key: usize, token: UnparkToken) -> usize {
    // SAFETY: forwarded from this function's contract.
    unsafe { parking_lot_core::unpark_all(key, token) }
}
