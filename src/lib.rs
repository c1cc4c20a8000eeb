//! `lockscope`: parking_lot-compatible locks that you can see inside.
//!
//! The public lock types are [`lock_api`] type aliases over this crate's own
//! raw locks, exactly as in parking_lot 0.13, so replacing
//! `parking_lot = "0.13"` with `parking_lot = { package = "lockscope", .. }`
//! builds and runs a program unchanged:
//!
//! ```
//! use lockscope::{Mutex, RwLock};
//!
//! static COUNTER: Mutex<u64> = Mutex::new(0);
//! *COUNTER.lock() += 1;
//!
//! let config = RwLock::new(String::from("v1"));
//! assert_eq!(*config.read(), "v1");
//! config.write().push('!');
//! assert_eq!(*config.read(), "v1!");
//! ```
//!
//! What parking_lot does not have: every raw lock checks each transition of
//! its lock word against the state it starts from. A release of a lock that is
//! not held, or a reader count that would wrap, leaves the word unchanged and
//! produces a [`Violation`] report through the [`ViolationPolicy`]; the word
//! can be decoded at any time ([`RawRwLock::decode`], [`RawMutex::decode`]).

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

/// A concurrent two-tier cache built on this crate's locks.
pub mod cache;
#[cfg(feature = "deadlock_detection")]
pub mod deadlock;
pub mod diag;
mod histogram;
mod once;
mod raw;
mod record;
mod sync;

pub use ::lock_api;

pub use once::{Once, OnceState};
pub use raw::condvar::RawCondvar;
pub use raw::mutex::{MutexWord, RawFairMutex, RawMutex};
pub use raw::rwlock::{RawRwLock, RawRwLockRecursive, RwLockWord};
pub use raw::thread_id::RawThreadId;
pub use raw::violation::{
    Violation, ViolationCallback, ViolationPolicy, set_violation_callback, set_violation_policy,
    violation_policy, violations_reported,
};

/// The guard state of every raw lock: zero-sized, as in parking_lot 0.13, so
/// that code that names it (`force_unlock(GuardNoSend::new())`) still builds.
/// `Send` only with the `send_guard` feature.
#[cfg(feature = "send_guard")]
pub(crate) type GuardMarker = lock_api::GuardSend;
#[cfg(not(feature = "send_guard"))]
pub(crate) type GuardMarker = lock_api::GuardNoSend;

/// A mutual-exclusion lock: spins briefly, then parks; no poisoning.
pub type Mutex<T> = lock_api::Mutex<RawMutex, T>;
/// The RAII guard of a [`Mutex`]; the lock is released when it drops.
pub type MutexGuard<'a, T> = lock_api::MutexGuard<'a, RawMutex, T>;
/// A [`MutexGuard`] mapped to a part of the protected data.
pub type MappedMutexGuard<'a, T> = lock_api::MappedMutexGuard<'a, RawMutex, T>;

/// A mutex that always hands the lock to the next waiter on release.
pub type FairMutex<T> = lock_api::Mutex<RawFairMutex, T>;
/// The RAII guard of a [`FairMutex`].
pub type FairMutexGuard<'a, T> = lock_api::MutexGuard<'a, RawFairMutex, T>;
/// A [`FairMutexGuard`] mapped to a part of the protected data.
pub type MappedFairMutexGuard<'a, T> = lock_api::MappedMutexGuard<'a, RawFairMutex, T>;

/// A reader-writer lock with upgradable reads; writers are preferred.
pub type RwLock<T> = lock_api::RwLock<RawRwLock, T>;
/// The shared guard of an [`RwLock`].
pub type RwLockReadGuard<'a, T> = lock_api::RwLockReadGuard<'a, RawRwLock, T>;
/// The exclusive guard of an [`RwLock`].
pub type RwLockWriteGuard<'a, T> = lock_api::RwLockWriteGuard<'a, RawRwLock, T>;
/// The upgradable read guard of an [`RwLock`].
pub type RwLockUpgradableReadGuard<'a, T> = lock_api::RwLockUpgradableReadGuard<'a, RawRwLock, T>;
/// An [`RwLockReadGuard`] mapped to a part of the protected data.
pub type MappedRwLockReadGuard<'a, T> = lock_api::MappedRwLockReadGuard<'a, RawRwLock, T>;
/// An [`RwLockWriteGuard`] mapped to a part of the protected data.
pub type MappedRwLockWriteGuard<'a, T> = lock_api::MappedRwLockWriteGuard<'a, RawRwLock, T>;

/// A reader-writer lock whose read lock may be taken recursively.
pub type RecursiveRwLock<T> = lock_api::RwLock<RawRwLockRecursive, T>;
/// The shared guard of a [`RecursiveRwLock`].
pub type RecursiveRwLockReadGuard<'a, T> = lock_api::RwLockReadGuard<'a, RawRwLockRecursive, T>;
/// The exclusive guard of a [`RecursiveRwLock`].
pub type RecursiveRwLockWriteGuard<'a, T> = lock_api::RwLockWriteGuard<'a, RawRwLockRecursive, T>;
/// The upgradable read guard of a [`RecursiveRwLock`].
pub type RecursiveRwLockUpgradableReadGuard<'a, T> =
    lock_api::RwLockUpgradableReadGuard<'a, RawRwLockRecursive, T>;
/// A [`RecursiveRwLockReadGuard`] mapped to a part of the protected data.
pub type MappedRecursiveRwLockReadGuard<'a, T> =
    lock_api::MappedRwLockReadGuard<'a, RawRwLockRecursive, T>;
/// A [`RecursiveRwLockWriteGuard`] mapped to a part of the protected data.
pub type MappedRecursiveRwLockWriteGuard<'a, T> =
    lock_api::MappedRwLockWriteGuard<'a, RawRwLockRecursive, T>;

/// A mutex that the thread holding it may lock again.
pub type ReentrantMutex<T> = lock_api::ReentrantMutex<RawMutex, RawThreadId, T>;
/// The guard of a [`ReentrantMutex`].
pub type ReentrantMutexGuard<'a, T> = lock_api::ReentrantMutexGuard<'a, RawMutex, RawThreadId, T>;
/// A [`ReentrantMutexGuard`] mapped to a part of the protected data.
pub type MappedReentrantMutexGuard<'a, T> =
    lock_api::MappedReentrantMutexGuard<'a, RawMutex, RawThreadId, T>;

/// A condition variable, used with [`Mutex`].
pub type Condvar = lock_api::Condvar<RawCondvar>;
pub use lock_api::WaitTimeoutResult;

/// The README's examples, compiled and run as doctests so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "arc_lock")]
pub use lock_api::{
    ArcMutexGuard, ArcReentrantMutexGuard, ArcRwLockReadGuard, ArcRwLockUpgradableReadGuard,
    ArcRwLockWriteGuard,
};
