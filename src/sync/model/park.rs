//! Parking under a model checker: `parking_lot_core`'s operations, with the
//! same signatures and the same queue semantics, on the checker's mutex and
//! condvar instead of OS threads.
//!
//! One queue of waiters, in park order, behind one checker mutex (the
//! counterpart of `parking_lot_core`'s bucket locks: every `validate`,
//! `timed_out`, `filter` and `callback` runs with it held, exactly as there).
//! Each waiter carries its key (changed by a requeue), its park token, and a
//! condvar of its own on which it sleeps until an unparker records its unpark
//! token. The queue lives in the checker's `lazy_static!`, so every execution
//! starts with an empty one.
//!
//! A park with a deadline never sleeps: after `before_sleep` the waiter takes
//! the queue mutex again and, if no unpark token has been recorded for it by
//! then, times out. The checker decides which comes first, the waiter's
//! return to the queue mutex or an unparker's, so both outcomes of a timed
//! wait are explored, and a timed waiter nobody wakes times out instead of
//! deadlocking the model. The deadline's value is never read: a model has no
//! clock, only orders of events.

use std::collections::VecDeque;
use std::sync::{Arc, PoisonError};

pub(crate) use parking_lot_core::{
    FilterOp, ParkResult, ParkToken, RequeueOp, UnparkResult, UnparkToken,
};

use super::checker::{self, Condvar, Mutex, MutexGuard};
use crate::sync::time::Instant;

/// A parked thread.
struct Waiter {
    /// Distinguishes this park call from every other in the execution.
    id: u64,
    /// The key of the queue the thread is in now (a requeue changes it).
    key: usize,
    token: ParkToken,
    /// Signalled when an unpark token is recorded for this waiter.
    wake: Arc<Condvar>,
}

#[derive(Default)]
struct Queues {
    /// Every parked thread, in the order it parked (or was requeued).
    waiters: VecDeque<Waiter>,
    /// Unpark tokens of dequeued waiters that have not picked them up yet.
    woken: Vec<(u64, UnparkToken)>,
    next_id: u64,
}

impl Queues {
    fn has_key(&self, key: usize) -> bool {
        self.waiters.iter().any(|w| w.key == key)
    }

    /// Records `token` for a waiter already removed from the queue and
    /// signals it.
    fn wake(&mut self, waiter: Waiter, token: UnparkToken) {
        #[cfg(test)]
        super::watch::trace(|| {
            format!(
                "{}: wake waiter {} of {:#x} with {token:?}",
                super::watch::thread_name(),
                waiter.id,
                waiter.key
            )
        });
        self.woken.push((waiter.id, token));
        waiter.wake.notify_one();
    }

    fn take_woken(&mut self, id: u64) -> Option<UnparkToken> {
        let pos = self.woken.iter().position(|(w, _)| *w == id)?;
        Some(self.woken.swap_remove(pos).1)
    }
}

checker::lazy_static! {
    static ref QUEUES: Mutex<Queues> = Mutex::new(Queues::default());
}

fn lock_queues() -> MutexGuard<'static, Queues> {
    // A panic in a model thread ends the execution; the poison flag adds
    // nothing to that.
    QUEUES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Parks the calling thread in the queue of `key` while `validate` holds.
///
/// # Safety
///
/// As for the `std` backend: `key` must be an address owned by the calling
/// lock, `validate` and `timed_out` must not panic nor call into this module,
/// `before_sleep` must not park nor panic.
pub(crate) unsafe fn park(
    key: usize,
    validate: impl FnOnce() -> bool,
    before_sleep: impl FnOnce(),
    timed_out: impl FnOnce(usize, bool),
    token: ParkToken,
    deadline: Option<Instant>,
) -> ParkResult {
    let mut queues = lock_queues();
    if !validate() {
        #[cfg(test)]
        super::watch::trace(|| format!("{}: park {key:#x} invalid", super::watch::thread_name()));
        return ParkResult::Invalid;
    }
    #[cfg(test)]
    super::watch::trace(|| {
        format!(
            "{}: park {key:#x} timed={}",
            super::watch::thread_name(),
            deadline.is_some()
        )
    });
    let id = queues.next_id;
    queues.next_id += 1;
    let wake = Arc::new(Condvar::new());
    queues.waiters.push_back(Waiter {
        id,
        key,
        token,
        wake: Arc::clone(&wake),
    });
    drop(queues);

    before_sleep();

    if deadline.is_some() {
        checker::timeout_window();
    }
    let mut queues = lock_queues();
    loop {
        if let Some(token) = queues.take_woken(id) {
            return ParkResult::Unparked(token);
        }
        if deadline.is_some() {
            // The timeout fires: leave whichever queue a requeue put us in.
            let pos = queues
                .waiters
                .iter()
                .position(|w| w.id == id)
                .expect("a parked thread that was not woken is still queued");
            let me = queues.waiters.remove(pos).expect("position is in range");
            let was_last = !queues.has_key(me.key);
            #[cfg(test)]
            super::watch::trace(|| {
                format!(
                    "{}: timed out of {:#x}",
                    super::watch::thread_name(),
                    me.key
                )
            });
            timed_out(me.key, was_last);
            return ParkResult::TimedOut;
        }
        queues = wake.wait(queues).unwrap_or_else(PoisonError::into_inner);
    }
}

/// Wakes one thread parked on `key`; `callback` runs under the queue lock.
///
/// # Safety
///
/// `key` must be owned by the calling lock; `callback` must not panic nor
/// call into this module.
pub(crate) unsafe fn unpark_one(
    key: usize,
    callback: impl FnOnce(UnparkResult) -> UnparkToken,
) -> UnparkResult {
    let mut queues = lock_queues();
    let mut result = UnparkResult::default();
    match queues.waiters.iter().position(|w| w.key == key) {
        Some(pos) => {
            let waiter = queues.waiters.remove(pos).expect("position is in range");
            result.unparked_threads = 1;
            result.have_more_threads = queues.has_key(key);
            let token = callback(result);
            queues.wake(waiter, token);
        }
        None => {
            callback(result);
        }
    }
    result
}

/// Wakes the threads parked on `key` that `filter` selects, in queue order.
///
/// # Safety
///
/// As for [`unpark_one`]; `filter` runs under the queue lock too.
pub(crate) unsafe fn unpark_filter(
    key: usize,
    mut filter: impl FnMut(ParkToken) -> FilterOp,
    callback: impl FnOnce(UnparkResult) -> UnparkToken,
) -> UnparkResult {
    let mut queues = lock_queues();
    let mut result = UnparkResult::default();
    let mut kept = VecDeque::with_capacity(queues.waiters.len());
    let mut chosen = Vec::new();
    let mut stopped = false;
    while let Some(waiter) = queues.waiters.pop_front() {
        if stopped || waiter.key != key {
            kept.push_back(waiter);
            continue;
        }
        match filter(waiter.token) {
            FilterOp::Unpark => chosen.push(waiter),
            FilterOp::Skip => {
                result.have_more_threads = true;
                kept.push_back(waiter);
            }
            FilterOp::Stop => {
                result.have_more_threads = true;
                stopped = true;
                kept.push_back(waiter);
            }
        }
    }
    queues.waiters = kept;
    result.unparked_threads = chosen.len();
    let token = callback(result);
    for waiter in chosen {
        queues.wake(waiter, token);
    }
    result
}

/// Moves threads parked on `from` to `to` or wakes them, as `validate` says.
///
/// # Safety
///
/// Both keys must be owned by the calling locks; `validate` and `callback`
/// must not panic nor call into this module.
pub(crate) unsafe fn unpark_requeue(
    from: usize,
    to: usize,
    validate: impl FnOnce() -> RequeueOp,
    callback: impl FnOnce(RequeueOp, UnparkResult) -> UnparkToken,
) -> UnparkResult {
    let mut queues = lock_queues();
    let mut result = UnparkResult::default();
    let op = validate();
    if op == RequeueOp::Abort {
        return result;
    }
    let wakes_one = matches!(op, RequeueOp::UnparkOne | RequeueOp::UnparkOneRequeueRest);
    let moves_one = matches!(op, RequeueOp::UnparkOne | RequeueOp::RequeueOne);
    let mut kept = VecDeque::with_capacity(queues.waiters.len());
    let mut requeued = Vec::new();
    let mut woken = None;
    let mut done = false;
    while let Some(mut waiter) = queues.waiters.pop_front() {
        if waiter.key != from {
            kept.push_back(waiter);
            continue;
        }
        if done {
            result.have_more_threads = true;
            kept.push_back(waiter);
            continue;
        }
        if wakes_one && woken.is_none() {
            woken = Some(waiter);
            result.unparked_threads = 1;
        } else {
            waiter.key = to;
            requeued.push(waiter);
            result.requeued_threads += 1;
        }
        done = moves_one;
    }
    // Requeued threads join the back of the destination queue, in order.
    kept.extend(requeued);
    queues.waiters = kept;
    let token = callback(op, result);
    if let Some(waiter) = woken {
        queues.wake(waiter, token);
    }
    result
}

/// Wakes every thread parked on `key`.
///
/// # Safety
///
/// `key` must be owned by the calling lock.
pub(crate) unsafe fn unpark_all(key: usize, token: UnparkToken) -> usize {
    let mut queues = lock_queues();
    let (woken, kept): (VecDeque<Waiter>, VecDeque<Waiter>) =
        queues.waiters.drain(..).partition(|w| w.key == key);
    queues.waiters = kept;
    let count = woken.len();
    for waiter in woken {
        queues.wake(waiter, token);
    }
    count
}
