//! The raw condition variable: a queue keyed by its own address, whose
//! notifications move waiters straight onto the mutex's queue when the mutex
//! is held, so that a notify under the lock does not wake a thread only for it
//! to block on the mutex at once.

use core::ptr;

use crate::GuardMarker;
use crate::raw::fair::{self, TOKEN_HANDOFF, TOKEN_NORMAL, Want};
use crate::raw::mutex::RawMutex;
use crate::sync::atomic::{AtomicPtr, Ordering};
use crate::sync::park::{self, ParkResult, RequeueOp, UnparkResult};
use crate::sync::time::{self, Duration, Instant};

/// The raw condition variable behind [`Condvar`](crate::Condvar).
///
/// Waits never return spuriously: `notify_one` says exactly whether it
/// notified a thread and `notify_all` how many (a thread moved onto the
/// mutex's queue counts as notified). One condvar serves one mutex at a time;
/// waiting on it with two different mutexes at once panics, before the
/// mutex is released.
///
/// ```
/// use std::sync::Arc;
/// use lockscope::{Condvar, Mutex};
///
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// let pair2 = Arc::clone(&pair);
/// std::thread::spawn(move || {
///     *pair2.0.lock() = true;
///     pair2.1.notify_one();
/// });
/// let mut ready = pair.0.lock();
/// while !*ready {
///     pair.1.wait(&mut ready);
/// }
/// ```
pub struct RawCondvar {
    /// The mutex the current waiters use; null when nobody waits. Changed only
    /// under this condvar's queue lock.
    mutex: AtomicPtr<RawMutex>,
}

// SAFETY: `wait` releases the mutex in `before_sleep`, i.e. after the thread
// is enqueued under the queue lock that notifications take, so no notification
// can fall between the release and the sleep; it re-locks (or is handed the
// mutex) before returning, and panics on a second mutex before releasing.
unsafe impl lock_api::RawCondvar for RawCondvar {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawCondvar {
        mutex: AtomicPtr::new(ptr::null_mut()),
    };

    type RawMutex = RawMutex;

    #[track_caller]
    unsafe fn wait(&self, mutex: &RawMutex, _guard: &mut GuardMarker) {
        self.wait_until_internal(mutex, None);
    }

    #[inline]
    fn notify_one(&self) -> bool {
        let mutex = self.mutex.load(Ordering::Relaxed);
        !mutex.is_null() && self.notify_one_slow(mutex)
    }

    #[inline]
    fn notify_all(&self) -> usize {
        let mutex = self.mutex.load(Ordering::Relaxed);
        if mutex.is_null() {
            0
        } else {
            self.notify_all_slow(mutex)
        }
    }
}

// SAFETY: as `RawCondvar`; a timed wait reports a timeout only when the thread
// left the condvar's queue by its deadline, not after being notified.
unsafe impl lock_api::RawCondvarTimed for RawCondvar {
    fn checked_duration_to_instant(timeout: &Duration) -> Option<Instant> {
        time::deadline_after(*timeout)
    }

    #[track_caller]
    unsafe fn wait_until(
        &self,
        mutex: &RawMutex,
        _guard: &mut GuardMarker,
        deadline: &Instant,
    ) -> bool {
        self.wait_until_internal(mutex, Some(*deadline))
    }

    #[track_caller]
    unsafe fn wait_for(
        &self,
        mutex: &RawMutex,
        _guard: &mut GuardMarker,
        timeout: &Duration,
    ) -> bool {
        self.wait_until_internal(mutex, time::deadline_after(*timeout))
    }
}

impl RawCondvar {
    fn key(&self) -> usize {
        ptr::from_ref(self).addr()
    }

    /// Waits on `mutex` (held by the caller) until notified or `deadline`;
    /// true if the wait timed out.
    #[track_caller]
    fn wait_until_internal(&self, mutex: &RawMutex, deadline: Option<Instant>) -> bool {
        let site = core::panic::Location::caller();
        let mutex_ptr = ptr::from_ref(mutex).cast_mut();
        let mut second_mutex = false;
        let mut requeued = false;
        let validate = || {
            let current = self.mutex.load(Ordering::Relaxed);
            if current.is_null() {
                self.mutex.store(mutex_ptr, Ordering::Relaxed);
            } else if current != mutex_ptr {
                second_mutex = true;
                return false;
            }
            true
        };
        let before_sleep = || {
            // SAFETY: the caller holds `mutex` (the `wait` contract); the
            // thread is already enqueued, so a notify cannot be missed.
            unsafe { lock_api::RawMutex::unlock(mutex, GuardMarker::new()) }
        };
        let timed_out = |key, was_last: bool| {
            requeued = key != self.key();
            if was_last {
                if requeued {
                    mutex.clear_parked();
                } else {
                    self.mutex.store(ptr::null_mut(), Ordering::Relaxed);
                }
            }
        };
        // SAFETY: the key is this condvar's address; validate and timed_out
        // only touch atomics and locals; before_sleep releases a held mutex
        // and neither parks nor, for a held mutex, panics.
        let result = unsafe {
            park::park(
                self.key(),
                validate,
                before_sleep,
                timed_out,
                fair::token(Want::Exclusive),
                deadline,
            )
        };
        if second_mutex {
            // The mutex was never released: the caller's guard is intact.
            panic!("lockscope: a Condvar was used with two different mutexes at once");
        }
        if result == ParkResult::Unparked(TOKEN_HANDOFF) {
            // The unlocker handed the mutex over: record this thread as holder.
            mutex.diag.acquired_exclusive(crate::raw::mutex::KIND, site);
        } else {
            // Not handed the mutex by its unlocker: take it back ourselves.
            mutex.lock_at(site);
        }
        result == ParkResult::TimedOut && !requeued
    }

    #[cold]
    fn notify_one_slow(&self, mutex: *mut RawMutex) -> bool {
        let validate = || {
            if self.mutex.load(Ordering::Relaxed) != mutex {
                return RequeueOp::Abort;
            }
            // SAFETY: `mutex` is still the recorded mutex under this queue's
            // lock, so a thread is parked here with it borrowed: it is alive.
            if unsafe { (*mutex).mark_parked_if_locked() } {
                RequeueOp::RequeueOne
            } else {
                RequeueOp::UnparkOne
            }
        };
        let callback = |_op, result: UnparkResult| {
            if !result.have_more_threads {
                self.mutex.store(ptr::null_mut(), Ordering::Relaxed);
            }
            TOKEN_NORMAL
        };
        // SAFETY: the keys are this condvar's address and its mutex's (only
        // dereferenced under the queue lock, while a waiter keeps it alive);
        // the closures only touch atomics and cannot panic.
        let result = unsafe { park::unpark_requeue(self.key(), mutex.addr(), validate, callback) };
        result.unparked_threads + result.requeued_threads != 0
    }

    #[cold]
    fn notify_all_slow(&self, mutex: *mut RawMutex) -> usize {
        let validate = || {
            if self.mutex.load(Ordering::Relaxed) != mutex {
                return RequeueOp::Abort;
            }
            // Every waiter leaves this queue now.
            self.mutex.store(ptr::null_mut(), Ordering::Relaxed);
            // SAFETY: as in `notify_one_slow`.
            if unsafe { (*mutex).mark_parked_if_locked() } {
                RequeueOp::RequeueAll
            } else {
                RequeueOp::UnparkOneRequeueRest
            }
        };
        let callback = |op, result: UnparkResult| {
            if op == RequeueOp::UnparkOneRequeueRest && result.requeued_threads != 0 {
                // SAFETY: as in `notify_one_slow`; the requeued threads keep
                // the mutex borrowed.
                unsafe { (*mutex).mark_parked() };
            }
            TOKEN_NORMAL
        };
        // SAFETY: as in `notify_one_slow`.
        let result = unsafe { park::unpark_requeue(self.key(), mutex.addr(), validate, callback) };
        result.unparked_threads + result.requeued_threads
    }
}
