//! Time for always-on diagnostics.
//!
//! A precise clock read costs more than an uncontended lock acquisition, so
//! the acquisition paths never read one. They read [`now_ms`]: one relaxed load of
//! a global (`hot::HOT.now_ms`) that a ticker thread refreshes every
//! millisecond. Precise time
//! ([`precise_ns`]) is read only by a thread about to park, which can afford
//! it, and by one acquisition in 256 for the hold-time histogram.

use core::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use super::hot::HOT;
use std::time::{Duration, Instant};

/// Set by the one thread that starts the ticker.
static STARTING: AtomicBool = AtomicBool::new(false);
static EPOCH: AtomicPtr<Instant> = AtomicPtr::new(ptr::null_mut());

/// How often the ticker refreshes [`now_ms`].
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// The instant all diagnostic timestamps count from. Set once with a
/// compare-exchange, so that no caller ever waits for another.
pub(crate) fn epoch() -> Instant {
    // SAFETY: a non-null EPOCH points to a leaked, never-written Instant.
    if let Some(epoch) = unsafe { EPOCH.load(Ordering::Acquire).as_ref() } {
        return *epoch;
    }
    set_epoch()
}

#[cold]
fn set_epoch() -> Instant {
    let mine = Box::into_raw(Box::new(Instant::now()));
    match EPOCH.compare_exchange(ptr::null_mut(), mine, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: just published; never freed.
        Ok(_) => unsafe { *mine },
        Err(theirs) => {
            // SAFETY: `mine` was never shared; `theirs` is the leaked winner.
            unsafe {
                drop(Box::from_raw(mine));
                *theirs
            }
        }
    }
}

/// The coarse time in milliseconds (wrapping after 49 days; differences of
/// two readings are right for any interval shorter than that).
#[inline]
pub(crate) fn now_ms() -> u32 {
    let now = HOT.now_ms.load(Ordering::Relaxed);
    if now != 0 {
        now
    } else {
        core::hint::cold_path();
        start()
    }
}

#[cold]
#[inline(never)]
fn start() -> u32 {
    // One thread starts the ticker; the others read the clock meanwhile
    // instead of waiting for it.
    if !STARTING.swap(true, Ordering::AcqRel) {
        let epoch = epoch();
        HOT.now_ms.store(read_ms(epoch), Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("lockscope-clock".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    HOT.now_ms.store(read_ms(epoch), Ordering::Relaxed);
                }
            });
        if spawned.is_err() {
            // No thread to keep the coarse clock fresh (a sandbox that
            // forbids spawning): every reading is a precise one from now on,
            // and every exclusive release takes the path that makes one.
            HOT.now_ms.store(0, Ordering::Relaxed);
            super::hot::set_no_ticker(super::lock::LONGEST_FAST_HOLD);
        }
    }
    match HOT.now_ms.load(Ordering::Relaxed) {
        0 => read_ms(epoch()),
        now => now,
    }
}

fn read_ms(epoch: Instant) -> u32 {
    // Truncation is the wrap documented on `now_ms`; never 0, which means
    // "not started".
    ((epoch.elapsed().as_millis() as u32).wrapping_add(1)).max(1)
}

/// How far a reading may be ahead of a later one and still count as the
/// same instant: while the ticker starts, a thread that finds no coarse time
/// reads the precise clock, which may be a millisecond ahead of what the
/// ticker stores next.
const SKEW_MS: u32 = 1000;

/// Milliseconds from coarse reading `since` to coarse reading `now` (0 when
/// `since` is at most [`SKEW_MS`] ahead).
#[inline]
pub(crate) fn elapsed_ms(since: u32, now: u32) -> u32 {
    let elapsed = now.wrapping_sub(since);
    if elapsed > u32::MAX - SKEW_MS {
        0
    } else {
        elapsed
    }
}

/// [`elapsed_ms`] for a lock path's first test: a reading ahead of `now`
/// comes out huge, which sends the path to its cold branch, whose
/// [`elapsed_ms`] then reads 0.
#[inline(always)]
pub(crate) fn raw_elapsed_ms(since: u32, now: u32) -> u32 {
    now.wrapping_sub(since)
}

/// Precise nanoseconds since [`epoch`], never 0.
#[inline]
pub(crate) fn precise_ns() -> u64 {
    (epoch().elapsed().as_nanos() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::elapsed_ms;

    #[test]
    fn elapsed_time_wraps_and_reads_a_reading_just_ahead_as_zero() {
        assert_eq!(elapsed_ms(5, 10), 5);
        assert_eq!(elapsed_ms(u32::MAX - 2, 3), 6, "across the wrap");
        assert_eq!(elapsed_ms(10, 9), 0, "a reading 1 ms ahead");
        assert_eq!(elapsed_ms(1_000, 0), 0, "a second ahead");
        assert_eq!(
            elapsed_ms(2_000, 0),
            u32::MAX - 1_999,
            "further ahead: a long time"
        );
    }
}
