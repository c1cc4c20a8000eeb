//! The recording engine: what the raw locks call on their paths, and the
//! records it keeps (thread records, lock classes, the coarse clock). Below
//! the raw locks; the public reports (`crate::diag`) read it.
//!
//! Compiled in with `cfg(lockscope_diag)` (the `diagnostics` feature, no
//! model checker; see build.rs). Otherwise `off` provides the same hooks,
//! doing nothing, with no state in the locks.

pub(crate) use crate::diag::Mode;

#[cfg(lockscope_diag)]
pub(crate) mod class;
#[cfg(lockscope_diag)]
pub(crate) mod clock;
#[cfg(lockscope_diag)]
#[cfg(lockscope_diag)]
pub(crate) mod hot;
#[cfg(lockscope_diag)]
pub(crate) mod lock;
#[cfg(lockscope_diag)]
pub(crate) mod sites;
#[cfg(lockscope_diag)]
pub(crate) mod thread;
#[cfg(lockscope_diag)]
pub(crate) use lock::{LockDiag, Wait};

#[cfg(not(lockscope_diag))]
mod off;
#[cfg(not(lockscope_diag))]
pub(crate) use off::{LockDiag, Wait};

/// A wait that cannot end, found before parking: this thread holds what it
/// asks for.
pub(crate) struct Hopeless {
    /// The report's detail: both holds, with their call sites.
    pub(crate) why: String,
    /// Where this thread acquired the hold that blocks it.
    pub(crate) held_at: Option<&'static core::panic::Location<'static>>,
}

/// What kind of lock a record is about.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// `RawMutex` (also behind fair and reentrant mutexes).
    Mutex = 1,
    /// `RawRwLock`.
    RwLock = 2,
    /// `RawRwLockRecursive`.
    RecursiveRwLock = 3,
}

#[cfg_attr(not(lockscope_diag), allow(dead_code))]
impl Kind {
    /// The name reports use.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Kind::Mutex => "Mutex",
            Kind::RwLock => "RwLock",
            Kind::RecursiveRwLock => "RecursiveRwLock",
        }
    }

    pub(crate) const fn from_code(code: u8) -> Kind {
        match code {
            2 => Kind::RwLock,
            3 => Kind::RecursiveRwLock,
            _ => Kind::Mutex,
        }
    }
}

/// The slow-hold threshold in milliseconds.
#[cfg(lockscope_diag)]
#[inline]
pub(crate) fn slow_hold_ms() -> u32 {
    hot::HOT
        .slow_hold_ms
        .load(std::sync::atomic::Ordering::Relaxed)
}
