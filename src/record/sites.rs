//! Wait time per call site of one lock: which lines of code wait for it.
//!
//! Updated only by a thread whose wait parked (the slow path, after the wait
//! ended): a few call sites claim a slot each with a compare-exchange, and
//! add to it with atomic adds. Waits from further sites are counted
//! together, unnamed.

use core::panic::Location;
use core::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::time::Duration;

/// Call sites named per lock.
pub(crate) const SITES: usize = 4;

struct SiteSlot {
    site: AtomicPtr<Location<'static>>,
    waits: AtomicU64,
    total_ns: AtomicU64,
}

/// Per-site wait counts and totals of one lock.
pub(crate) struct WaitSites {
    slots: [SiteSlot; SITES],
    other_waits: AtomicU64,
    other_ns: AtomicU64,
}

impl WaitSites {
    pub(crate) const fn new() -> Self {
        WaitSites {
            slots: [const {
                SiteSlot {
                    site: AtomicPtr::new(ptr::null_mut()),
                    waits: AtomicU64::new(0),
                    total_ns: AtomicU64::new(0),
                }
            }; SITES],
            other_waits: AtomicU64::new(0),
            other_ns: AtomicU64::new(0),
        }
    }

    /// Adds one wait of `ns` nanoseconds from `site` (slow path only).
    #[cold]
    pub(crate) fn add(&self, site: &'static Location<'static>, ns: u64) {
        let mine = ptr::from_ref(site).cast_mut();
        for slot in &self.slots {
            let seen = slot.site.load(Ordering::Acquire);
            let claimed = seen == mine
                || (seen.is_null()
                    && match slot.site.compare_exchange(
                        ptr::null_mut(),
                        mine,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => true,
                        Err(now) => now == mine,
                    });
            if claimed {
                slot.waits.fetch_add(1, Ordering::Relaxed);
                slot.total_ns.fetch_add(ns, Ordering::Relaxed);
                return;
            }
        }
        self.other_waits.fetch_add(1, Ordering::Relaxed);
        self.other_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The named sites, most waited-for first, then the rest as `None`.
    pub(crate) fn snapshot(&self) -> Vec<crate::diag::profile::SiteWaits> {
        let mut all: Vec<_> = self
            .slots
            .iter()
            .filter_map(|slot| {
                // SAFETY: site pointers only ever come from `&'static Location`.
                let site = unsafe { slot.site.load(Ordering::Acquire).cast_const().as_ref() }?;
                Some(crate::diag::profile::SiteWaits {
                    site: Some(site),
                    waits: slot.waits.load(Ordering::Relaxed),
                    total: Duration::from_nanos(slot.total_ns.load(Ordering::Relaxed)),
                })
            })
            .collect();
        all.sort_by_key(|s| core::cmp::Reverse(s.total));
        let other = self.other_waits.load(Ordering::Relaxed);
        if other != 0 {
            all.push(crate::diag::profile::SiteWaits {
                site: None,
                waits: other,
                total: Duration::from_nanos(self.other_ns.load(Ordering::Relaxed)),
            });
        }
        all
    }
}
