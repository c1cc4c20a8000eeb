//! The facade's atomics under a checker: same names and methods as the
//! `std` ones the locks use, and `const fn new`, which lock_api's
//! `const INIT` requires.
//!
//! loom's atomics are registered with the running execution when they are
//! created, so they cannot be built in a `const`; and loom requires every
//! access to an atomic to happen after its creation, which a lock created
//! lazily by whichever thread touches it first would break. shuttle's are
//! `const`, but keep their value from one execution to the next. Ours
//! therefore keep the initial value and, on first use, leak one checker
//! `lazy_static` cell of their own that creates the checker's atomic: both
//! checkers reset such cells at the start of every execution, and loom
//! publishes their creation to every thread that reads them, exactly as for
//! the statics that `loom::lazy_static!` declares. Consequences:
//!
//! - A lock in a `static` works across executions: each execution starts
//!   from the lock's initial word, whatever the last one left. (The data
//!   behind the lock is an ordinary value and is not reset: reset it
//!   yourself, or use the checker's `lazy_static!`.)
//! - Under loom, the first use of a lock in an execution publishes the state
//!   of the thread that used it to later users, as the first use of a
//!   `loom::lazy_static!` does; the first operation on a fresh lock always
//!   acquires it or only reads it, so this hides no missing synchronisation
//!   of the lock itself.
//! - Each lock leaks a few dozen bytes per execution it is created in.
//!
//! Orderings: shuttle models every ordering as `SeqCst`, and prints a
//! warning on every run when asked for another; ours ask it for `SeqCst`.
//! loom checks the orderings the locks ask for, exactly as given.
//!
//! Stores: loom keeps each location's modification order partial, a plain
//! store being ordered only after the stores its thread has seen. When a lock
//! word is stored over (a release that rewrites the word under the parking
//! queue's lock) just after another thread's compare-exchange that the
//! storing thread has not seen, loom may later let that other thread read its
//! own compare-exchange again, although by the C++ model the store is after
//! it in the total order (the compare-exchange read an earlier value, so the
//! store cannot precede it) and happens before the read: an execution no
//! machine can produce, which would make the model report a corrupted
//! mutex. Under loom a store is therefore a swap, a read-modify-write, which
//! loom always orders after the latest value; it writes the same value. The
//! one thing it adds is continuing release sequences through the store,
//! which could only hide a bug, never invent one.
//!
//! In unit tests every value read or written is shown to [`super::watch`].

pub(crate) use std::sync::atomic::Ordering;

#[cfg(loom)]
use loom::sync::atomic as imp;
#[cfg(all(feature = "shuttle", not(loom)))]
use shuttle::sync::atomic as imp;

#[cfg(loom)]
use loom::lazy_static::Lazy;
#[cfg(all(feature = "shuttle", not(loom)))]
use shuttle::lazy_static::Lazy;

/// A checker `lazy_static` cell of our own, never freed: the checker keys its
/// per-execution values by the cell's address, which must therefore never be
/// reused by another lock.
fn leak_lazy<T: Sync + 'static>(init: fn() -> T) -> &'static Lazy<T> {
    #[cfg(loom)]
    let lazy = Lazy {
        init,
        _p: core::marker::PhantomData,
    };
    #[cfg(all(feature = "shuttle", not(loom)))]
    let lazy = Lazy::new(init);
    Box::leak(Box::new(lazy))
}

std::thread_local! {
    /// The initial value of the atomic being created (see `inner`).
    static PENDING: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
    /// The initial pointer of the atomic pointer being created.
    static PENDING_PTR: core::cell::Cell<*mut ()> = const { core::cell::Cell::new(core::ptr::null_mut()) };
}

/// The ordering the checker is asked for.
#[cfg(loom)]
#[inline]
fn ord(order: Ordering) -> Ordering {
    order
}

#[cfg(all(feature = "shuttle", not(loom)))]
#[inline]
fn ord(_order: Ordering) -> Ordering {
    Ordering::SeqCst
}

/// An atomic fence.
#[inline]
pub(crate) fn fence(order: Ordering) {
    imp::fence(ord(order));
}

/// Defines a wrapper with `std`'s method names over the checker's atomic.
macro_rules! atomic_int {
    ($(#[$meta:meta])* $name:ident, $int:ty) => {
        $(#[$meta])*
        pub(crate) struct $name {
            init: $int,
            cell: std::sync::OnceLock<&'static Lazy<imp::$name>>,
        }

        impl Default for $name {
            /// Zero, as `std`'s atomics default to (the cache's counters
            /// and sketch are built with `Default`).
            fn default() -> Self {
                Self::new(0)
            }
        }

        impl $name {
            /// An atomic holding `value`; usable in a `const`.
            #[inline]
            pub(crate) const fn new(value: $int) -> Self {
                $name {
                    init: value,
                    cell: std::sync::OnceLock::new(),
                }
            }

            #[inline]
            fn inner(&self) -> &imp::$name {
                fn create() -> imp::$name {
                    imp::$name::new(PENDING.get() as $int)
                }
                let lazy = self.cell.get_or_init(|| leak_lazy(create));
                // Read by `create` if this execution has not created the
                // atomic yet; the checker runs it at once, on this OS thread.
                PENDING.set(self.init as u64);
                lazy.get()
            }

            #[inline]
            #[allow(clippy::unnecessary_cast)]
            fn seen(&self, _op: &'static str, _value: $int) {
                #[cfg(test)]
                super::watch::observe(_op, core::ptr::from_ref(self).addr(), _value as u64);
            }

            #[inline]
            pub(crate) fn load(&self, order: Ordering) -> $int {
                let value = self.inner().load(ord(order));
                self.seen("load", value);
                value
            }

            /// Under loom, a swap: see "Stores" in the module docs.
            #[inline]
            #[allow(dead_code)]
            pub(crate) fn store(&self, value: $int, order: Ordering) {
                #[cfg(loom)]
                let _ = self.inner().swap(value, ord(order));
                #[cfg(not(loom))]
                self.inner().store(value, ord(order));
                self.seen("store", value);
            }

            #[inline]
            #[allow(dead_code)]
            pub(crate) fn swap(&self, value: $int, order: Ordering) -> $int {
                let old = self.inner().swap(value, ord(order));
                self.seen("swap old", old);
                self.seen("swap new", value);
                old
            }

            #[inline]
            #[allow(dead_code)]
            pub(crate) fn compare_exchange(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                let result = self
                    .inner()
                    .compare_exchange(current, new, ord(success), ord(failure));
                match result {
                    Ok(old) => {
                        self.seen("cas old", old);
                        self.seen("cas new", new);
                    }
                    Err(now) => self.seen("cas failed", now),
                }
                result
            }

            /// Never fails spuriously under a checker: a spurious failure is
            /// only a retry, and would multiply the states to explore.
            #[inline]
            #[allow(dead_code)]
            pub(crate) fn compare_exchange_weak(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                self.compare_exchange(current, new, success, failure)
            }

            #[inline]
            #[allow(dead_code)]
            pub(crate) fn fetch_or(&self, value: $int, order: Ordering) -> $int {
                let old = self.inner().fetch_or(value, ord(order));
                self.seen("fetch_or old", old);
                self.seen("fetch_or new", old | value);
                old
            }

            #[inline]
            #[allow(dead_code)]
            pub(crate) fn fetch_and(&self, value: $int, order: Ordering) -> $int {
                let old = self.inner().fetch_and(value, ord(order));
                self.seen("fetch_and old", old);
                self.seen("fetch_and new", old & value);
                old
            }

            #[inline]
            #[allow(dead_code)]
            pub(crate) fn fetch_add(&self, value: $int, order: Ordering) -> $int {
                let old = self.inner().fetch_add(value, ord(order));
                self.seen("fetch_add old", old);
                self.seen("fetch_add new", old.wrapping_add(value));
                old
            }

            #[inline]
            #[allow(dead_code)]
            pub(crate) fn fetch_sub(&self, value: $int, order: Ordering) -> $int {
                let old = self.inner().fetch_sub(value, ord(order));
                self.seen("fetch_sub old", old);
                self.seen("fetch_sub new", old.wrapping_sub(value));
                old
            }
        }
    };
}

atomic_int!(
    /// The checker's `AtomicU8`, constructible in a `const`.
    AtomicU8,
    u8
);
atomic_int!(
    /// The checker's `AtomicUsize`, constructible in a `const`.
    AtomicUsize,
    usize
);
atomic_int!(
    /// The checker's `AtomicU64`, constructible in a `const`.
    AtomicU64,
    u64
);

/// The checker's `AtomicPtr`, constructible in a `const`.
pub(crate) struct AtomicPtr<T: 'static> {
    init: *mut T,
    cell: std::sync::OnceLock<&'static Lazy<imp::AtomicPtr<T>>>,
}

// SAFETY: as for `std::sync::atomic::AtomicPtr`: the pointer is only stored
// and loaded atomically, never dereferenced by this type; the initial pointer
// is only read to create the checker's atomic.
unsafe impl<T> Send for AtomicPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for AtomicPtr<T> {}

impl<T: 'static> AtomicPtr<T> {
    /// An atomic pointer holding `ptr`; usable in a `const`.
    #[inline]
    pub(crate) const fn new(ptr: *mut T) -> Self {
        AtomicPtr {
            init: ptr,
            cell: std::sync::OnceLock::new(),
        }
    }

    #[inline]
    fn inner(&self) -> &imp::AtomicPtr<T> {
        fn create<T>() -> imp::AtomicPtr<T> {
            imp::AtomicPtr::new(PENDING_PTR.get().cast())
        }
        let lazy = self.cell.get_or_init(|| leak_lazy(create::<T>));
        PENDING_PTR.set(self.init.cast());
        lazy.get()
    }

    #[inline]
    pub(crate) fn load(&self, order: Ordering) -> *mut T {
        self.inner().load(ord(order))
    }

    /// Under loom, a swap: see "Stores" in the module docs.
    #[inline]
    pub(crate) fn store(&self, ptr: *mut T, order: Ordering) {
        #[cfg(loom)]
        let _ = self.inner().swap(ptr, ord(order));
        #[cfg(not(loom))]
        self.inner().store(ptr, ord(order));
    }
}
