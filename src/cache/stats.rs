//! Counters: per-thread stripes for the get path, per-shard words for the
//! write path, and the [`CacheStats`] snapshot that adds them up.
//!
//! A get must not pay for a locked read-modify-write on a shared line just to
//! count itself. Each thread that touches a cache claims one stripe of that
//! cache (a compare-exchange, once per thread and cache) and from then on is
//! its only writer: a count is a relaxed load and store on a line no other
//! thread writes. A thread gives its stripe back when it exits; the counts
//! stay, and the next owner continues them. If every stripe is taken, the
//! thread shares an overflow stripe updated with `fetch_add`.
//!
//! A hit costs one count: a stripe counts gets and misses (hits are the
//! difference), and the get count also picks the sampled gets (one in
//! `interval`, a power of two). Inserts are counted, and picked for
//! sampling, the same way.
//!
//! The other write-path counters (admissions, evictions, ...) change under
//! the shard's write lock, so they too are a load and a store.
//!
//! The stripes' atomics are `std`'s, not the `sync` facade's: a stripe
//! belongs to an OS thread (claimed through a thread-local, released by its
//! destructor, which runs outside any checker execution), and under shuttle
//! every task of an execution runs on one OS thread and so shares one
//! stripe. With `std` atomics a count's load and store cannot be split by a
//! task switch; with the checker's, each would be a scheduling point and
//! two tasks' counts would be lost to each other. The shard's counters go
//! through the facade.

use core::cell::{Cell, RefCell};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use std::sync::{Arc, Weak};

use crate::histogram::{Histogram, Recorder};

/// A snapshot of a cache's counters. All zero when observability is off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found the key.
    pub hits: u64,
    /// Lookups that did not find the key.
    pub misses: u64,
    /// Calls that stored a value (new keys and replacements).
    pub inserts: u64,
    /// Entries that left the admission window for the main region and were
    /// kept there (into free room, or beating the main region's victim).
    pub admissions: u64,
    /// Entries that left the admission window and were evicted at once,
    /// being no more frequent than the main region's victim; plus values
    /// refused by `insert` for weighing more than a shard's capacity.
    pub rejections: u64,
    /// Entries moved from probation to the protected segment.
    pub promotions: u64,
    /// Entries moved from the protected segment back to probation.
    pub demotions: u64,
    /// Entries evicted for capacity (rejected window entries included).
    pub evictions: u64,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 with no lookups.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// Adds one to a shard counter (written only under the shard's write
/// lock).
#[inline]
pub(crate) fn bump_owned(c: &crate::sync::atomic::AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// One thread's counters for the get path, on a line of its own, and its
/// latency histograms.
#[repr(align(128))]
pub(crate) struct Stripe {
    owned: AtomicBool,
    /// Its position: `0..n` for the claimable stripes, `n` for the overflow
    /// stripe (it names the thread's batch in the pattern detector).
    pub(crate) index: usize,
    /// Gets, hits and misses alike: a hit costs this one count, which
    /// also paces sampling (hits = gets - misses).
    gets: AtomicU64,
    misses: AtomicU64,
    /// Inserts, which also pace the sampled inserts.
    inserts: AtomicU64,
    /// Latencies of this stripe's sampled gets and inserts, summed over the
    /// stripes by `Stripes::latencies`.
    pub(crate) get_latency: Latency,
    pub(crate) insert_latency: Latency,
}

impl Stripe {
    fn new(index: usize) -> Self {
        Stripe {
            owned: AtomicBool::new(false),
            index,
            gets: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            get_latency: Latency(Recorder::new()),
            insert_latency: Latency(Recorder::new()),
        }
    }
}

/// A stripe's histogram of sampled latencies.
pub(crate) struct Latency(Recorder);

impl Latency {
    /// Records one latency. `owned`: the caller is the stripe's only writer
    /// (see [`Local::owned`]), so each count is a relaxed load and store;
    /// otherwise a `fetch_add`.
    #[inline]
    pub(crate) fn record(&self, d: Duration, owned: bool) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if owned {
            self.0.record_owned(ns);
        } else {
            self.0.record(ns);
        }
    }
}

/// The calling thread's stripe, as it may use it.
pub(crate) struct Local<'a> {
    pub(crate) stripe: &'a Stripe,
    /// Whether this thread is the stripe's only writer (else it shares the
    /// overflow stripe and must use read-modify-writes).
    pub(crate) owned: bool,
}

impl<'a> Local<'a> {
    /// A stripe the calling thread has claimed.
    #[inline(always)]
    pub(crate) fn mine(stripe: &'a Stripe) -> Self {
        Local {
            stripe,
            owned: true,
        }
    }

    #[inline]
    fn add(&self, c: &AtomicU64) -> u64 {
        if self.owned {
            let n = c.load(Ordering::Relaxed).wrapping_add(1);
            c.store(n, Ordering::Relaxed);
            n
        } else {
            c.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
        }
    }

    /// Counts a get and returns its ordinal on this stripe (for 1-in-N
    /// sampling): a relaxed load and store on a line only this thread
    /// writes (a `fetch_add` on the shared overflow stripe).
    #[inline]
    pub(crate) fn tick(&self) -> u64 {
        self.add(&self.stripe.gets)
    }

    /// Counts a get that missed (after its [`Self::tick`]).
    #[inline]
    pub(crate) fn miss(&self) {
        self.add(&self.stripe.misses);
    }

    /// Counts an insert and returns its ordinal on this stripe (for 1-in-N
    /// sampling), like [`Self::tick`] for gets.
    #[inline]
    pub(crate) fn insert(&self) -> u64 {
        self.add(&self.stripe.inserts)
    }
}

/// The per-thread stripes of one cache.
pub(crate) struct Stripes {
    /// Unique for the life of the process, unlike an address.
    id: u64,
    slots: Box<[Stripe]>,
    overflow: Stripe,
}

/// A cache's stripes, with their id beside the pointer, so that the get
/// path's check of the thread's last stripe reads no other line.
pub(crate) struct StripeSet {
    id: u64,
    stripes: Arc<Stripes>,
}

impl core::ops::Deref for StripeSet {
    type Target = Stripes;

    fn deref(&self) -> &Stripes {
        &self.stripes
    }
}

impl StripeSet {
    /// `n` claimable stripes plus the overflow stripe.
    pub(crate) fn new(n: usize) -> Self {
        let stripes = Stripes::new(n);
        StripeSet {
            id: stripes.id,
            stripes,
        }
    }

    /// The calling thread's stripe, claimed on first use. The thread-local
    /// borrow ends before this returns, so user code run later may use the
    /// cache again.
    #[inline(always)]
    pub(crate) fn local(&self) -> Local<'_> {
        match self.mine() {
            Some(stripe) => Local::mine(stripe),
            None => Stripes::local_slow(&self.stripes),
        }
    }

    /// The calling thread's own stripe, if it used it last: one
    /// thread-local load and a compare with the id.
    #[inline(always)]
    pub(crate) fn mine(&self) -> Option<&Stripe> {
        match LAST.try_with(Cell::get) {
            // SAFETY: `LAST` holds a pointer into the stripes with id
            // `last` (set in `local_slow`, and reset when the claim ends);
            // ids are unique for the life of the process and `self.id` is
            // `self.stripes`' (both are set together in `new`), so those
            // stripes are `self.stripes`, which outlive the returned borrow.
            Ok((last, stripe)) if last == self.id => Some(unsafe { &*stripe }),
            _ => None,
        }
    }
}

/// A thread's claim on a stripe; released when the thread exits.
struct Claim {
    stripes: Weak<Stripes>,
    index: usize,
}

impl Drop for Claim {
    fn drop(&mut self) {
        // The fast path must not outlive the claim.
        let _ = LAST.try_with(|last| last.set((0, ptr::null())));
        if let Some(s) = self.stripes.upgrade() {
            s.slots[self.index].owned.store(false, Ordering::Release);
        }
    }
}

thread_local! {
    static CLAIMS: RefCell<Vec<Claim>> = const { RefCell::new(Vec::new()) };
    /// The last `(stripes id, stripe)` this thread used: the fast path.
    static LAST: Cell<(u64, *const Stripe)> = const { Cell::new((0, ptr::null())) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Stripes {
    /// `n` claimable stripes plus the overflow stripe.
    fn new(n: usize) -> Arc<Self> {
        let n = n.max(1);
        Arc::new(Stripes {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            slots: (0..n).map(Stripe::new).collect(),
            overflow: Stripe::new(n),
        })
    }

    /// The stripes a thread can claim (the overflow stripe not included).
    pub(crate) fn claimable(&self) -> usize {
        self.slots.len()
    }

    #[cold]
    fn local_slow(this: &Arc<Self>) -> Local<'_> {
        let me = Arc::as_ptr(this);
        let index = CLAIMS
            .try_with(|claims| {
                let mut claims = claims.try_borrow_mut().ok()?;
                if let Some(c) = claims.iter().find(|c| c.stripes.as_ptr() == me) {
                    return Some(c.index);
                }
                Self::claim(this, &mut claims)
            })
            .ok()
            .flatten();
        match index {
            Some(i) => {
                let stripe = &this.slots[i];
                let _ = LAST.try_with(|last| last.set((this.id, ptr::from_ref(stripe))));
                Local::mine(stripe)
            }
            // Shared by every thread without a stripe.
            None => Local {
                stripe: &this.overflow,
                owned: false,
            },
        }
    }

    #[cold]
    fn claim(this: &Arc<Self>, claims: &mut Vec<Claim>) -> Option<usize> {
        // Forget claims on caches that are gone.
        claims.retain(|c| c.stripes.strong_count() > 0);
        let index = this.slots.iter().position(|s| {
            s.owned
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })?;
        claims.push(Claim {
            stripes: Arc::downgrade(this),
            index,
        });
        Some(index)
    }

    /// Every stripe, the overflow one included.
    fn all(&self) -> impl Iterator<Item = &Stripe> {
        self.slots.iter().chain(core::iter::once(&self.overflow))
    }

    /// The get and insert latency histograms summed over all stripes.
    pub(crate) fn latencies(&self) -> (Histogram, Histogram) {
        let (mut get, mut insert) = (Histogram::default(), Histogram::default());
        for s in self.all() {
            s.get_latency.0.add_to(&mut get);
            s.insert_latency.0.add_to(&mut insert);
        }
        (get, insert)
    }

    /// Inserts summed over all stripes.
    pub(crate) fn inserts(&self) -> u64 {
        self.all().map(|s| s.inserts.load(Ordering::Relaxed)).sum()
    }

    /// Hits and misses summed over all stripes.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let (mut gets, mut misses) = (0u64, 0u64);
        for s in self.all() {
            // A miss is counted after its get: reading misses first keeps
            // hits = gets - misses from going below zero.
            misses += s.misses.load(Ordering::Acquire);
            gets += s.gets.load(Ordering::Acquire);
        }
        (gets.saturating_sub(misses), misses)
    }
}

/// Write-path counters of one shard; changed only under its write lock.
#[derive(Default)]
pub(crate) struct ShardCounters {
    pub(crate) admissions: crate::sync::atomic::AtomicU64,
    pub(crate) rejections: crate::sync::atomic::AtomicU64,
    pub(crate) promotions: crate::sync::atomic::AtomicU64,
    pub(crate) demotions: crate::sync::atomic::AtomicU64,
    pub(crate) evictions: crate::sync::atomic::AtomicU64,
}

impl ShardCounters {
    /// Adds this shard's counts into `out`.
    pub(crate) fn add_to(&self, out: &mut CacheStats) {
        out.admissions += self.admissions.load(Ordering::Relaxed);
        out.rejections += self.rejections.load(Ordering::Relaxed);
        out.promotions += self.promotions.load(Ordering::Relaxed);
        out.demotions += self.demotions.load(Ordering::Relaxed);
        out.evictions += self.evictions.load(Ordering::Relaxed);
    }
}
