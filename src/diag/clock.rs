//! Time for always-on diagnostics.
//!
//! A precise clock read costs about five uncontended lock acquisitions, so the
//! acquisition paths never read one. They read [`now_ms`]: one relaxed load of
//! a global that a ticker thread refreshes every millisecond. Precise time
//! ([`precise_ns`]) is read only by a thread about to park, which can afford
//! it, and by one acquisition in 64 for the hold-time histogram.

use std::sync::Once;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Milliseconds since [`epoch`], plus one, wrapping; 0 until the ticker runs.
static NOW_MS: AtomicU32 = AtomicU32::new(0);
/// The ticker could not be started: fall back to reading the clock.
static NO_TICKER: AtomicBool = AtomicBool::new(false);
static START: Once = Once::new();

/// How often the ticker refreshes [`now_ms`].
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// The instant all diagnostic timestamps count from.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The coarse time in milliseconds (wrapping after 49 days; differences of
/// two readings are right for any interval shorter than that).
#[inline]
pub(crate) fn now_ms() -> u32 {
    let now = NOW_MS.load(Ordering::Relaxed);
    if now != 0 { now } else { start() }
}

#[cold]
#[inline(never)]
fn start() -> u32 {
    START.call_once(|| {
        let epoch = epoch();
        NOW_MS.store(read_ms(epoch), Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("lockscope-clock".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    NOW_MS.store(read_ms(epoch), Ordering::Relaxed);
                }
            });
        if spawned.is_err() {
            NO_TICKER.store(true, Ordering::Relaxed);
        }
    });
    if NO_TICKER.load(Ordering::Relaxed) {
        // No thread to keep the coarse clock fresh (a sandbox that forbids
        // spawning): every reading is a precise one.
        let now = read_ms(epoch());
        NOW_MS.store(0, Ordering::Relaxed);
        return now;
    }
    NOW_MS.load(Ordering::Relaxed).max(1)
}

fn read_ms(epoch: Instant) -> u32 {
    // Truncation is the wrap documented on `now_ms`; never 0, which means
    // "not started".
    ((epoch.elapsed().as_millis() as u32).wrapping_add(1)).max(1)
}

/// Milliseconds from coarse reading `since` to coarse reading `now`.
#[inline]
pub(crate) fn elapsed_ms(since: u32, now: u32) -> u32 {
    now.wrapping_sub(since)
}

/// Precise nanoseconds since [`epoch`], never 0.
#[inline]
pub(crate) fn precise_ns() -> u64 {
    (epoch().elapsed().as_nanos() as u64).max(1)
}
