//! A one-time initialisation primitive, parking_lot-compatible: one byte,
//! poisoned by a panicking initialiser, waiters parked on its address.

use core::fmt;

use crate::sync::SpinWait;
use crate::sync::atomic::{AtomicU8, Ordering};
use crate::sync::park::{self, ParkToken, UnparkToken};

// The closure has run to completion. Final: no other bit changes after it.
const DONE: u8 = 0b0001;
// A closure panicked; the next `call_once_force` may run again.
const POISONED: u8 = 0b0010;
// A thread is running the closure. Only that thread clears it.
const RUNNING: u8 = 0b0100;
// Threads are parked waiting for the outcome. Set only while not DONE.
const PARKED: u8 = 0b1000;

/// The state of a [`Once`], as seen by [`Once::state`] and by the closure of
/// [`Once::call_once_force`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OnceState {
    /// No closure has run yet.
    New,
    /// A closure panicked; the `Once` is poisoned.
    Poisoned,
    /// A closure is running now.
    InProgress,
    /// A closure completed.
    Done,
}

impl OnceState {
    /// Whether the `Once` was poisoned by a panicking closure.
    ///
    /// ```
    /// assert!(lockscope::OnceState::Poisoned.is_poisoned());
    /// ```
    pub const fn is_poisoned(self) -> bool {
        matches!(self, OnceState::Poisoned)
    }

    /// Same as [`OnceState::is_poisoned`] (parking_lot's older name).
    pub const fn poisoned(self) -> bool {
        self.is_poisoned()
    }

    /// Whether a closure completed.
    ///
    /// ```
    /// assert!(lockscope::OnceState::Done.is_completed());
    /// ```
    pub const fn is_completed(self) -> bool {
        matches!(self, OnceState::Done)
    }

    /// Same as [`OnceState::is_completed`] (parking_lot's older name).
    pub const fn done(self) -> bool {
        self.is_completed()
    }
}

/// Runs a closure exactly once, however many threads ask at the same time.
///
/// ```
/// use lockscope::Once;
/// static INIT: Once = Once::new();
/// let mut runs = 0;
/// INIT.call_once(|| runs += 1);
/// INIT.call_once(|| runs += 1);
/// assert_eq!(runs, 1);
/// assert!(INIT.is_completed());
/// ```
pub struct Once(AtomicU8);

impl Once {
    /// A `Once` whose closure has not run.
    pub const fn new() -> Once {
        Once(AtomicU8::new(0))
    }

    /// A `Once` that is already complete: `call_once` on it does nothing.
    pub const fn new_completed() -> Once {
        Once(AtomicU8::new(DONE))
    }

    /// The current state.
    pub fn state(&self) -> OnceState {
        let state = self.0.load(Ordering::Acquire);
        if state & DONE != 0 {
            OnceState::Done
        } else if state & RUNNING != 0 {
            OnceState::InProgress
        } else if state & POISONED != 0 {
            OnceState::Poisoned
        } else {
            OnceState::New
        }
    }

    /// Whether a closure has completed.
    pub fn is_completed(&self) -> bool {
        self.0.load(Ordering::Acquire) & DONE != 0
    }

    /// Blocks until a closure has completed.
    ///
    /// # Panics
    ///
    /// If the `Once` is or becomes poisoned.
    pub fn wait(&self) {
        if !self.is_completed() {
            self.wait_slow(false);
        }
    }

    /// Blocks until a closure has completed, ignoring poison.
    pub fn wait_force(&self) {
        if !self.is_completed() {
            self.wait_slow(true);
        }
    }

    /// Runs `f` if no closure has completed yet, exactly once across threads;
    /// other callers block until it finishes.
    ///
    /// # Panics
    ///
    /// If the `Once` is poisoned by an earlier panicking closure.
    pub fn call_once<F: FnOnce()>(&self, f: F) {
        if self.0.load(Ordering::Acquire) == DONE {
            return;
        }
        let mut f = Some(f);
        self.call_once_slow(false, &mut |_| {
            if let Some(f) = f.take() {
                f();
            }
        });
    }

    /// As [`Once::call_once`], but also runs on a poisoned `Once`; the closure
    /// learns whether it was poisoned from its argument.
    pub fn call_once_force<F: FnOnce(OnceState)>(&self, f: F) {
        if self.0.load(Ordering::Acquire) == DONE {
            return;
        }
        let mut f = Some(f);
        self.call_once_slow(true, &mut |state| {
            if let Some(f) = f.take() {
                f(state);
            }
        });
    }

    fn key(&self) -> usize {
        core::ptr::from_ref(self).addr()
    }

    #[cold]
    fn call_once_slow(&self, ignore_poison: bool, f: &mut dyn FnMut(OnceState)) {
        let mut spin = SpinWait::new();
        let mut state = self.0.load(Ordering::Acquire);
        loop {
            if state & DONE != 0 {
                return;
            }
            if state & POISONED != 0 && state & RUNNING == 0 && !ignore_poison {
                panic!("Once instance has previously been poisoned");
            }
            if state & RUNNING == 0 {
                match self.0.compare_exchange_weak(
                    state,
                    state | RUNNING,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        let seen = if state & POISONED != 0 {
                            OnceState::Poisoned
                        } else {
                            OnceState::New
                        };
                        return self.run(seen, f);
                    }
                    Err(now) => {
                        state = now;
                        continue;
                    }
                }
            }
            state = self.park_while(&mut spin, state, |state| state & RUNNING != 0);
        }
    }

    /// Runs the closure as the one thread that set RUNNING; publishes DONE,
    /// or POISONED if it unwinds, and wakes every waiter either way.
    fn run(&self, seen: OnceState, f: &mut dyn FnMut(OnceState)) {
        struct PoisonOnUnwind<'a>(&'a Once);
        impl Drop for PoisonOnUnwind<'_> {
            fn drop(&mut self) {
                self.0.finish(POISONED);
            }
        }
        let poison = PoisonOnUnwind(self);
        f(seen);
        core::mem::forget(poison);
        self.finish(DONE);
    }

    fn finish(&self, outcome: u8) {
        let before = self.0.swap(outcome, Ordering::Release);
        if before & PARKED != 0 {
            // SAFETY: the key is this Once's address; no callback.
            unsafe {
                park::unpark_all(self.key(), UnparkToken(0));
            }
        }
    }

    #[cold]
    fn wait_slow(&self, ignore_poison: bool) {
        let mut spin = SpinWait::new();
        let mut state = self.0.load(Ordering::Acquire);
        loop {
            if state & DONE != 0 {
                return;
            }
            if state & POISONED != 0 && state & RUNNING == 0 && !ignore_poison {
                panic!("Once instance has previously been poisoned");
            }
            state = self.park_while(&mut spin, state, |state| state & DONE == 0);
        }
    }

    /// Spins, then parks while `blocked` holds; returns the fresh state.
    fn park_while(&self, spin: &mut SpinWait, state: u8, blocked: impl Fn(u8) -> bool) -> u8 {
        if state & PARKED == 0 && spin.spin() {
            return self.0.load(Ordering::Acquire);
        }
        if state & PARKED == 0
            && let Err(now) = self.0.compare_exchange_weak(
                state,
                state | PARKED,
                Ordering::Relaxed,
                Ordering::Acquire,
            )
        {
            return now;
        }
        let validate = || {
            let state = self.0.load(Ordering::Relaxed);
            state & PARKED != 0 && blocked(state)
        };
        // SAFETY: the key is this Once's address; validate only reads the byte.
        unsafe {
            park::park(self.key(), validate, || {}, |_, _| {}, ParkToken(0), None);
        }
        spin.reset();
        self.0.load(Ordering::Acquire)
    }
}

impl Default for Once {
    fn default() -> Once {
        Once::new()
    }
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once")
            .field("state", &self.state())
            .finish()
    }
}
