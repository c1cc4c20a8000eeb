//! Helpers shared by the integration tests (each test file includes this
//! module with `mod common;`, so not every helper is used by every file).
#![allow(dead_code)]

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The zero-sized guard state of every raw lock, built the way a parking_lot
/// 0.13 user builds it for `force_unlock*` after `mem::forget(guard)`.
#[cfg(not(feature = "send_guard"))]
pub fn raw_guard() -> lockscope::lock_api::GuardNoSend {
    lockscope::lock_api::GuardNoSend::new()
}

/// With `send_guard`, the guard state is `GuardSend` (as in parking_lot 0.13).
#[cfg(feature = "send_guard")]
pub fn raw_guard() -> lockscope::lock_api::GuardSend {
    lockscope::lock_api::GuardSend::new()
}

/// How long a test waits for something that must happen before it declares a
/// hang. Generous: only a real deadlock or lost wakeup takes this long.
pub const HANG: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds; panics after [`HANG`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < HANG, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `cond` says a thread is about to park, then gives it time to
/// actually fall asleep in the parking queue.
pub fn wait_until_parked(what: &str, cond: impl FnMut() -> bool) {
    wait_for(what, cond);
    thread::sleep(Duration::from_millis(50));
}

/// Runs `f` on a new thread and returns its result, or `None` if it did not
/// finish within `limit` (the thread is then left blocked: the test fails).
pub fn finishes_within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// A tiny deterministic PRNG (xorshift64*), so the stress tests need no crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Busy-waits for `d`: far more precise than `thread::sleep` for the
/// microsecond windows the race tests aim at.
pub fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Asserts the panic payload is a lockscope violation report.
pub fn assert_violation_payload(payload: &(dyn std::any::Any + Send)) -> String {
    let msg = if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        panic!("panic payload is not a string");
    };
    assert!(
        msg.starts_with("lockscope: lock invariant violated"),
        "unexpected panic message: {msg}"
    );
    msg
}

/// Every violation the process reported since the first call, as received by
/// the violation callback, which the first call installs.
pub fn received_violations() -> std::sync::MutexGuard<'static, Vec<lockscope::Violation>> {
    use std::sync::{Arc, Mutex, Once};
    static RECEIVED: Mutex<Vec<lockscope::Violation>> = Mutex::new(Vec::new());
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        lockscope::set_violation_callback(Some(Arc::new(|v: &lockscope::Violation| {
            RECEIVED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(v.clone());
        })));
    });
    RECEIVED.lock().unwrap_or_else(|e| e.into_inner())
}
