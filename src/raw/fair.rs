//! Eventual fairness: an unlocker hands the lock straight to the first waiter
//! once that waiter has been queued for longer than [`FAIR_AFTER_MICROS`].
//!
//! Barging (a running thread re-taking a lock that a woken thread is about to
//! try) is what makes these locks fast, and what can starve a waiter. Each park
//! token carries the time its thread parked, so the unlocker can tell how long
//! the front of the queue has waited with one clock read on a path that is
//! about to make a wake-up syscall anyway.

use crate::sync::park::{ParkToken, UnparkToken};
use crate::sync::time::micros_now;

/// A waiter queued longer than this gets the lock handed to it.
pub(crate) const FAIR_AFTER_MICROS: u64 = 500;

/// The woken thread must compete for the lock again.
pub(crate) const TOKEN_NORMAL: UnparkToken = UnparkToken(0);
/// The woken thread owns the lock already: the unlocker handed it over.
pub(crate) const TOKEN_HANDOFF: UnparkToken = UnparkToken(1);

/// Bits of a park token that say what the parked thread wants.
const KIND_BITS: u32 = 2;
const KIND_MASK: usize = (1 << KIND_BITS) - 1;

/// What a parked thread is waiting for; stored in the low bits of its token.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// A mutex, or the exclusive side of an RwLock.
    Exclusive = 0,
    /// A shared (read) lock.
    Shared = 1,
    /// An upgradable read lock.
    Upgradable = 2,
}

/// A park token stamped with the current time.
#[inline]
pub(crate) fn token(want: Want) -> ParkToken {
    // Truncating the stamp only shortens the window in which a wrap could
    // make a waiter look young: 2^62 microseconds is far beyond any uptime.
    let stamp = (micros_now() as usize) << KIND_BITS;
    ParkToken(stamp | want as usize)
}

/// What the parked thread behind `token` wants.
#[inline]
pub(crate) fn want_of(token: ParkToken) -> Want {
    match token.0 & KIND_MASK {
        1 => Want::Shared,
        2 => Want::Upgradable,
        _ => Want::Exclusive,
    }
}

/// Whether the thread behind `token` has waited long enough to be handed
/// the lock, as of `now` (from [`micros_now`]).
#[inline]
pub(crate) fn overdue(token: ParkToken, now: u64) -> bool {
    let parked_at = (token.0 >> KIND_BITS) as u64;
    now.saturating_sub(parked_at) >= FAIR_AFTER_MICROS
}
