//! The globals that every exclusive acquisition and release reads, in one
//! static on one cache line.
//!
//! The lock paths are inlined into the user's crate, which reaches a static
//! of this crate through a GOT entry: one extra load per static. Three
//! statics read by every exclusive tenure (the coarse clock, the slow-hold
//! threshold, the lock-order switch) cost three such loads; one static
//! holding all of them costs one.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// See the module docs.
#[repr(C, align(64))]
pub(crate) struct Hot {
    /// The coarse clock: milliseconds since the diagnostics epoch, plus one,
    /// wrapping; 0 until the ticker runs, or when it cannot (see `clock`).
    pub(crate) now_ms: AtomicU32,
    /// The slow-hold threshold in milliseconds (at least 1): a release after
    /// a hold at least this long emits a `tracing` event.
    pub(crate) slow_hold_ms: AtomicU32,
    /// A release after an exclusive hold at least this long takes the cold
    /// path: the smaller of `slow_hold_ms` and the longest hold a tenure can
    /// record, or 0 while the coarse clock has no ticker (every release then
    /// reads the time properly).
    pub(crate) rare_hold_ms: AtomicU32,
    /// Lock-order checking is on (`crate::diag::order`).
    pub(crate) order_on: AtomicBool,
    /// The coarse clock has no ticker (it could not be spawned).
    no_ticker: AtomicBool,
}

/// The slow-hold threshold before any is set.
const DEFAULT_SLOW_HOLD_MS: u32 = 100;

pub(crate) static HOT: Hot = Hot {
    now_ms: AtomicU32::new(0),
    slow_hold_ms: AtomicU32::new(DEFAULT_SLOW_HOLD_MS),
    rare_hold_ms: AtomicU32::new(DEFAULT_SLOW_HOLD_MS),
    order_on: AtomicBool::new(false),
    no_ticker: AtomicBool::new(false),
};

/// The longest hold an exclusive tenure records; the lock paths pass it in
/// so that this module does not depend on their encoding.
pub(crate) fn set_slow_hold_ms(ms: u32, longest_hold: u32) {
    HOT.slow_hold_ms.store(ms.max(1), Ordering::SeqCst);
    update_rare(longest_hold);
}

/// The coarse clock has no ticker: every exclusive release takes the cold
/// path, which reads the time properly.
pub(crate) fn set_no_ticker(longest_hold: u32) {
    HOT.no_ticker.store(true, Ordering::SeqCst);
    update_rare(longest_hold);
}

/// Recomputes `rare_hold_ms`. The threshold may be set while the first
/// acquisition finds that no ticker can run: both writers store their input,
/// then the result, all sequentially consistent, and the threshold's writer
/// looks again for a missing ticker after its store, so that the last store
/// is 0 whenever there is no ticker.
fn update_rare(longest_hold: u32) {
    if !HOT.no_ticker.load(Ordering::SeqCst) {
        let rare = HOT.slow_hold_ms.load(Ordering::SeqCst).min(longest_hold);
        HOT.rare_hold_ms.store(rare, Ordering::SeqCst);
    }
    if HOT.no_ticker.load(Ordering::SeqCst) {
        HOT.rare_hold_ms.store(0, Ordering::SeqCst);
    }
}
