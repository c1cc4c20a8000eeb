//! Reading a lock's diagnostics through the lock itself.

use core::panic::Location;

use super::Snapshot;
use crate::{RawFairMutex, RawMutex, RawRwLock, RawThreadId};

/// Inspects any lockscope lock: holders, waiters, last holder, counters,
/// histograms and the decoded lock word.
///
/// ```
/// use lockscope::diag::Inspect;
/// let lock = lockscope::RwLock::new(0);
/// lock.set_label("settings");
/// let _a = lock.read();
/// let _b = lock.read();
/// assert_eq!(lock.lock_word(), "{ readers: 2, writer: false, upgradable: false, writer_parked: false, parked: false }");
/// if lockscope::diag::enabled() {
///     let seen = lock.snapshot().unwrap();
///     assert_eq!(seen.name, "settings");
///     assert_eq!(seen.holders.len(), 2);
/// }
/// ```
pub trait Inspect {
    /// Everything the lock has recorded, or `None` if it has never been
    /// acquired or labelled, or diagnostics are off.
    fn snapshot(&self) -> Option<Snapshot>;

    /// Names the lock in reports, replacing any label: the lock joins the
    /// class of that label, whose statistics it is counted in from then on.
    #[track_caller]
    fn set_label(&self, label: &str);

    /// The lock word, decoded (it may change at once).
    fn lock_word(&self) -> String;
}

/// A raw lock with diagnostics.
pub(crate) trait RawDiag {
    fn diag(&self) -> &crate::record::LockDiag;
    fn kind(&self) -> crate::record::Kind;
    fn word_string(&self) -> String;
    /// Whether the word says a thread holds the lock exclusively.
    #[cfg_attr(not(lockscope_diag), allow(dead_code))]
    fn exclusive(&self) -> bool;
}

impl RawDiag for RawMutex {
    fn diag(&self) -> &crate::record::LockDiag {
        &self.diag
    }
    fn kind(&self) -> crate::record::Kind {
        crate::raw::mutex::KIND
    }
    fn word_string(&self) -> String {
        self.word().to_string()
    }
    fn exclusive(&self) -> bool {
        self.word().locked
    }
}

impl RawDiag for RawFairMutex {
    fn diag(&self) -> &crate::record::LockDiag {
        &self.inner().diag
    }
    fn kind(&self) -> crate::record::Kind {
        crate::raw::mutex::KIND
    }
    fn word_string(&self) -> String {
        self.inner().word().to_string()
    }
    fn exclusive(&self) -> bool {
        self.inner().word().locked
    }
}

impl<const RECURSIVE: bool> RawDiag for RawRwLock<RECURSIVE> {
    fn diag(&self) -> &crate::record::LockDiag {
        &self.diag
    }
    fn kind(&self) -> crate::record::Kind {
        Self::KIND
    }
    fn word_string(&self) -> String {
        self.word().to_string()
    }
    fn exclusive(&self) -> bool {
        self.word().write_locked()
    }
}

fn snapshot_of<R: RawDiag>(raw: &R) -> Option<Snapshot> {
    #[cfg(lockscope_diag)]
    {
        super::view::snapshot(raw.diag(), raw.kind(), raw.word_string(), raw.exclusive())
    }
    #[cfg(not(lockscope_diag))]
    {
        let _ = raw;
        None
    }
}

#[track_caller]
fn set_label_of<R: RawDiag>(raw: &R, label: &str) {
    raw.diag()
        .set_label(raw.kind(), Location::caller(), label, || raw.exclusive());
}

macro_rules! inspect_via_raw {
    ($($ty:ty => [$($gen:tt)*]),* $(,)?) => {$(
        impl<$($gen)* T: ?Sized> Inspect for $ty {
            fn snapshot(&self) -> Option<Snapshot> {
                // SAFETY: only reads the raw lock; never locks or unlocks it.
                snapshot_of(unsafe { self.raw() })
            }

            #[track_caller]
            fn set_label(&self, label: &str) {
                // SAFETY: as above.
                set_label_of(unsafe { self.raw() }, label)
            }

            fn lock_word(&self) -> String {
                // SAFETY: as above.
                unsafe { self.raw() }.word_string()
            }
        }
    )*};
}

inspect_via_raw! {
    lock_api::Mutex<RawMutex, T> => [],
    lock_api::Mutex<RawFairMutex, T> => [],
    lock_api::RwLock<RawRwLock<RECURSIVE>, T> => [const RECURSIVE: bool,],
    lock_api::ReentrantMutex<RawMutex, RawThreadId, T> => [],
}
