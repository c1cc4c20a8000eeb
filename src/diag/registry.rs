//! The process-wide list of live locks.
//!
//! A lock joins at its first acquisition with one compare-exchange on the
//! list head (no lock), and leaves when it drops by marking its record dead.
//! Dead records are unlinked and freed by a sweep, which runs under a mutex
//! that only sweeps and snapshots take: when a snapshot is made, and when a
//! dropping lock finds that dead records outnumber live ones (with
//! `try_lock`, so a drop never waits). Pushes touch only the head, and only a
//! sweep unlinks or frees, never the head itself, so no record is freed while
//! anything can read it.

use core::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use super::lock::LockRecord;

static HEAD: AtomicPtr<LockRecord> = AtomicPtr::new(ptr::null_mut());
static LIVE: AtomicUsize = AtomicUsize::new(0);
static DEAD: AtomicUsize = AtomicUsize::new(0);
static SWEEP: Mutex<()> = Mutex::new(());

pub(crate) fn register(record: *mut LockRecord) {
    LIVE.fetch_add(1, Ordering::Relaxed);
    let mut head = HEAD.load(Ordering::Relaxed);
    loop {
        // SAFETY: `record` is not yet in the list; only this thread sees it.
        unsafe { (*record).next.store(head, Ordering::Relaxed) };
        match HEAD.compare_exchange_weak(head, record, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => head = now,
        }
    }
}

pub(crate) fn retire(record: *mut LockRecord) {
    // SAFETY: the record stays allocated until a sweep sees it dead.
    unsafe { (*record).alive.store(false, Ordering::Release) };
    LIVE.fetch_sub(1, Ordering::Relaxed);
    let dead = DEAD.fetch_add(1, Ordering::Relaxed) + 1;
    if dead > 64
        && dead > LIVE.load(Ordering::Relaxed)
        && let Ok(guard) = SWEEP.try_lock()
    {
        sweep(&guard);
    }
}

/// Unlinks and frees dead records (never the head). Needs the sweep mutex.
fn sweep(_proof: &std::sync::MutexGuard<'_, ()>) {
    let mut prev = HEAD.load(Ordering::Acquire);
    if prev.is_null() {
        return;
    }
    loop {
        // SAFETY: records reachable from the head are freed only here, under
        // the sweep mutex, which the caller holds.
        let prev_ref = unsafe { &*prev };
        let at = prev_ref.next.load(Ordering::Acquire);
        if at.is_null() {
            return;
        }
        // SAFETY: as above.
        let at_ref = unsafe { &*at };
        if at_ref.alive.load(Ordering::Acquire) {
            prev = at;
            continue;
        }
        prev_ref
            .next
            .store(at_ref.next.load(Ordering::Relaxed), Ordering::Release);
        DEAD.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: unlinked; no push reads non-head records, and every other
        // reader of the list holds the sweep mutex.
        drop(unsafe { Box::from_raw(at) });
    }
}

/// Calls `f` on every live record, under the sweep mutex.
pub(crate) fn for_each(mut f: impl FnMut(&LockRecord)) {
    // blocking-ok: snapshots only; drops sweep with try_lock.
    let guard = SWEEP.lock().unwrap_or_else(|e| e.into_inner());
    sweep(&guard);
    let mut at = HEAD.load(Ordering::Acquire);
    // SAFETY: as in `sweep`: nothing is freed while the mutex is held.
    while let Some(record) = unsafe { at.as_ref() } {
        if record.alive.load(Ordering::Acquire) {
            f(record);
        }
        at = record.next.load(Ordering::Acquire);
    }
}
