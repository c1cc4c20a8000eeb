//! Single flight for `get_or_insert_with` and its fallible and
//! borrowed-key forms: concurrent misses on one key run one loader, and the
//! others wait for its outcome.
//!
//! A flight is registered in its shard's list (a short `Mutex`-protected
//! vector, taken only after a miss) by the caller that becomes its leader.
//! The leader's [`Lead`] guard takes it out again and wakes the waiters
//! however the leader leaves: with a value (waiters return it), with an
//! error (waiters return the same error; nothing is cached), or by
//! unwinding from a panicking loader (waiters retry, one of them leading).

use core::any::Any;
use core::num::NonZeroUsize;
use std::sync::Arc;

use super::shard::Shard;
use crate::{Condvar, Mutex};

/// The flights of one shard: the key's hash, the key, the flight.
pub(crate) type FlightList<K, V> = Vec<(u64, K, Arc<Flight<V>>)>;

/// A loader in flight.
pub(crate) struct Flight<V> {
    pub(crate) state: Mutex<State<V>>,
    pub(crate) done: Condvar,
    /// The thread running the loader: if it asks for the same key from
    /// inside the loader, waiting would wait for itself.
    pub(crate) leader: NonZeroUsize,
}

/// Where a flight is.
pub(crate) enum State<V> {
    Running,
    Done(V),
    /// The loader returned this error (an `Arc<E>`, type-erased: callers
    /// with another error type retry instead).
    Failed(Arc<dyn Any + Send + Sync>),
    /// The loader panicked; waiters retry.
    Abandoned,
}

impl<V> Flight<V> {
    pub(crate) fn new() -> Self {
        Flight {
            state: Mutex::new(State::Running),
            done: Condvar::new(),
            leader: crate::sync::current_thread_id(),
        }
    }
}

/// The leader's hold on a flight: on drop (normal or unwinding) it leaves
/// the shard's list, marks an unfinished flight abandoned and wakes waiters.
pub(crate) struct Lead<'a, K, V> {
    pub(crate) shard: &'a Shard<K, V>,
    pub(crate) flight: &'a Arc<Flight<V>>,
}

impl<K, V> Lead<'_, K, V> {
    /// Publishes the loader's outcome to the waiters.
    pub(crate) fn finish(self, outcome: State<V>) {
        // single flight, off the get path: a miss that loads takes it.
        *self.flight.state.lock() = outcome;
    }
}

impl<K, V> Drop for Lead<'_, K, V> {
    fn drop(&mut self) {
        // single flight, off the get path: held to edit the short list.
        let mut flights = self.shard.flights.lock();
        flights.retain(|(_, _, f)| !Arc::ptr_eq(f, self.flight));
        drop(flights);
        {
            // single flight, off the get path: only a loader's leader and
            // waiters take a flight's state lock.
            let mut st = self.flight.state.lock();
            if matches!(*st, State::Running) {
                *st = State::Abandoned;
            }
        }
        self.flight.done.notify_all();
    }
}
