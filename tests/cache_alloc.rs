//! The get path allocates nothing, sampled gets included, even for keys
//! whose clone would allocate.
//!
//! This binary counts the calling thread's allocations with a global
//! allocator of its own, so it holds only this test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use lockscope::cache::TwoTierCache;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to `System` unchanged; the count is a
// thread-local `Cell` with a const initialiser, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is `System::alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn sampled_gets_of_string_keys_allocate_nothing() {
    // Every get is offered to the pattern detector and timed.
    let cache = TwoTierCache::<String, u64>::builder()
        .capacity(256)
        .sample_interval(1)
        .latency_interval(1)
        .build()
        .unwrap();
    let keys: Vec<String> = (0..100).map(|i| format!("key number {i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        cache.insert(k.clone(), i as u64);
    }
    let missing = "not cached".to_string();
    // Warm up: the first get claims the thread's stats stripe, the locks
    // create their records, and the hill climber's lock (first taken after
    // 1024 gets) does too.
    for _ in 0..11 {
        for k in &keys {
            assert!(cache.get(k).is_some());
        }
    }
    assert_eq!(cache.get(&missing), None);

    let before = allocations();
    // keys[0] takes half the gets.
    for _ in 0..20 {
        for k in &keys {
            assert!(cache.get(&keys[0]).is_some());
            assert!(cache.get(k).is_some());
        }
        assert_eq!(cache.get(&missing), None);
    }
    let allocated = allocations() - before;
    assert_eq!(allocated, 0, "allocations on the get path");

    // The samples were recorded, and the hot keys are named all the same.
    let p = cache.patterns();
    assert!(p.samples > 4000, "{p:?}");
    assert_eq!(p.hot_keys[0].key, keys[0], "{p:?}");
    assert!(p.hot_keys[0].share > 0.4, "{p:?}");
}
