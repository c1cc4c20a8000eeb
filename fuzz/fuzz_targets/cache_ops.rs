//! `TwoTierCache` operation sequences (small capacity, few shards) against a
//! sequential model.
//!
//! The model holds, per key, the last value inserted and not removed since.
//! The cache may forget any key (eviction, admission rejection), but:
//! - a value returned by `get`, `remove` or `get_or_insert_with` for a key is
//!   the model's value for it (every value inserted is unique, so a stale or
//!   foreign value is caught);
//! - `contains_key` is never true for a key the model does not hold;
//! - `insert` of a key that is cached replaces its value (documented);
//! - with one shard, a new key inserted while `len() < capacity` is admitted
//!   (only a full shard runs admission);
//! - `len() <= capacity()` after every operation (documented slack: zero);
//! - `clear` empties it;
//! - a loader that panics caches nothing, and leaves no flight behind (a
//!   later call for the key would wait for it forever: a libFuzzer timeout).
//!
//! Keys hash through a fixed multiply-and-mix hasher (deterministic runs,
//! keys spread over shards and sketch counters) or, chosen by the input, a
//! hasher that sends every key to the same hash.
//!
//! Speed (see README.md, "Speed"): at most one loader per input unwinds
//! (an unwinding panic under AddressSanitizer costs about as much as the
//! rest of a short input); once one has, a panicking `get_or_insert_with`
//! runs as a plain one. The model is an array indexed by key.
//!
//! The input is two configuration bytes and then one byte per operation
//! (`Config::parse`, `op`): the operation in the low three bits, the key
//! (one of 32) in the high five. Every byte the mutator changes is another
//! operation or key, with no length fields or enum tags to break; 32 keys
//! against capacities of 1 to 32 still overflow every configuration.
//! Each input ends by reading back every key, and one input in two (a
//! configuration bit) also renders `stats`, `metrics`, `patterns` and
//! `Debug`, which walk every stripe and histogram of the cache.

#![no_main]

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use lockscope::cache::TwoTierCache;

#[derive(Debug, Clone, Copy)]
enum Op {
    Get(u8),
    Insert(u8),
    Remove(u8),
    Contains(u8),
    GetOrInsert(u8),
    /// `get_or_insert_with` whose loader panics (if it runs at all).
    GetOrInsertPanicking(u8),
    Clear,
}

/// Keys are `0..KEYS`.
const KEYS: u8 = 32;
/// Operations per input at most (one byte each).
const MAX_OPS: usize = 1024;

/// Low three bits: the operation (inserts twice as likely as the others,
/// as a cache under load sees them); high five bits: the key.
fn op(byte: u8) -> Op {
    let k = byte >> 3;
    match byte & 7 {
        0 => Op::Get(k),
        1 | 7 => Op::Insert(k),
        2 => Op::Remove(k),
        3 => Op::Contains(k),
        4 => Op::GetOrInsert(k),
        5 => Op::GetOrInsertPanicking(k),
        _ => Op::Clear,
    }
}

/// The first two bytes of an input.
#[derive(Debug)]
struct Config {
    /// 1 to 32.
    capacity: usize,
    /// 1 to 4 asked for (the cache may use fewer).
    shards: usize,
    hot: f64,
    observability: bool,
    sample_every_op: bool,
    colliding: bool,
    /// Render the reports at the end.
    reports: bool,
}

impl Config {
    /// Byte 0: capacity - 1 in bits 0-4, `reports` in bit 5, shards - 1 in
    /// bits 6-7. Byte 1: the hot fraction in bits 0-2, `observability`,
    /// `sample_every_op` and `colliding` in bits 3, 4 and 5.
    fn parse(a: u8, b: u8) -> Config {
        Config {
            capacity: usize::from(a & 31) + 1,
            shards: usize::from(a >> 6) + 1,
            reports: a & 32 != 0,
            hot: [0.05, 0.3, 0.5, 0.7, 0.95][usize::from(b & 7) % 5],
            observability: b & 8 != 0,
            sample_every_op: b & 16 != 0,
            colliding: b & 32 != 0,
        }
    }
}

/// A fixed hasher: bytes folded in by multiplication, then mixed (the
/// finalizer of MurmurHash3), so that the few bits of a `u8` key reach
/// every bit the shards and the sketch use. SipHash (`DefaultHasher`) cost
/// a few percent of each execution for nothing a fuzzer needs.
#[derive(Clone, Default)]
struct Mixing;

struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl BuildHasher for Mixing {
    type Hasher = Mix;
    fn build_hasher(&self) -> Mix {
        Mix(0xcbf2_9ce4_8422_2325)
    }
}

/// Every key hashes to the same value.
#[derive(Clone, Default)]
struct Colliding;

struct Constant;

impl Hasher for Constant {
    fn finish(&self) -> u64 {
        0x5151_5151
    }
    fn write(&mut self, _: &[u8]) {}
}

impl BuildHasher for Colliding {
    type Hasher = Constant;
    fn build_hasher(&self) -> Constant {
        Constant
    }
}

thread_local! {
    /// Set while a loader panics on purpose.
    static EXPECTING_PANIC: Cell<bool> = const { Cell::new(false) };
}

/// libfuzzer-sys aborts in its panic hook; let the loader's panic unwind,
/// quietly. Any other panic still aborts and counts as a crash.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !EXPECTING_PANIC.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    install_hook();
    let [a, b, ops @ ..] = data else {
        return;
    };
    let config = Config::parse(*a, *b);
    let ops = &ops[..ops.len().min(MAX_OPS)];
    if config.colliding {
        run(&config, ops, Colliding);
    } else {
        run(&config, ops, Mixing);
    }
});

fn run<S: BuildHasher>(config: &Config, ops: &[u8], hasher: S) {
    let capacity = config.capacity;
    let shards = config.shards;
    let cache: TwoTierCache<u8, u32, S> = TwoTierCache::builder()
        .capacity(capacity)
        .shards(shards)
        .hot_fraction(config.hot)
        .observability(config.observability)
        .sample_interval(if config.sample_every_op { 1 } else { 64 })
        .hasher(hasher)
        .build()
        .expect("a valid configuration");
    assert_eq!(cache.capacity(), capacity);
    assert!(cache.shard_count() >= 1 && cache.shard_count() <= shards.min(capacity));
    let single_shard = cache.shard_count() == 1;

    let mut model = Model([None; KEYS as usize]);
    // Whether a loader has unwound in this input.
    let mut unwound = false;
    let mut next_value = 0u32;
    let mut fresh = || {
        next_value += 1;
        next_value
    };
    for &byte in ops {
        let op = match op(byte) {
            Op::GetOrInsertPanicking(k) if unwound => Op::GetOrInsert(k),
            op => op,
        };
        match op {
            Op::Get(k) => {
                if let Some(v) = cache.get(&k) {
                    assert_eq!(
                        Some(&v),
                        model.get(&k),
                        "get({k}) returned a value not stored last"
                    );
                }
            }
            Op::Insert(k) => {
                let v = fresh();
                let was_cached = cache.contains_key(&k);
                let len_before = cache.len();
                cache.insert(k, v);
                model.insert(k, v);
                if was_cached {
                    assert_eq!(
                        cache.get(&k),
                        Some(v),
                        "insert did not replace cached key {k}"
                    );
                } else if single_shard && len_before < capacity {
                    assert!(
                        cache.contains_key(&k),
                        "new key {k} rejected with room left ({len_before} of {capacity})"
                    );
                }
            }
            Op::Remove(k) => {
                let got = cache.remove(&k);
                if let Some(v) = got {
                    assert_eq!(
                        Some(&v),
                        model.get(&k),
                        "remove({k}) returned a value not stored last"
                    );
                }
                model.remove(&k);
                assert!(!cache.contains_key(&k), "key {k} still cached after remove");
            }
            Op::Contains(k) => {
                if cache.contains_key(&k) {
                    assert!(
                        model.contains_key(&k),
                        "contains_key({k}) for a key never stored"
                    );
                }
            }
            Op::GetOrInsert(k) => {
                let v = fresh();
                let got = cache.get_or_insert_with(k, || v);
                if got == v {
                    model.insert(k, v);
                } else {
                    assert_eq!(
                        Some(&got),
                        model.get(&k),
                        "get_or_insert_with({k}) returned a stale value"
                    );
                }
            }
            Op::GetOrInsertPanicking(k) => {
                EXPECTING_PANIC.with(|e| e.set(true));
                let got = catch_unwind(AssertUnwindSafe(|| {
                    cache.get_or_insert_with(k, || panic!("loader failed"))
                }));
                EXPECTING_PANIC.with(|e| e.set(false));
                match got {
                    Ok(v) => assert_eq!(
                        Some(&v),
                        model.get(&k),
                        "get_or_insert_with({k}) returned a stale value"
                    ),
                    Err(_) => {
                        unwound = true;
                        assert!(!cache.contains_key(&k), "a panicking loader cached {k}");
                    }
                }
            }
            Op::Clear => {
                cache.clear();
                model.clear();
                assert!(cache.is_empty());
            }
        }
        let len = cache.len();
        assert!(len <= capacity, "len {len} over capacity {capacity}");
        assert_eq!(cache.is_empty(), len == 0);
    }
    // Whatever is still cached is the model's value.
    for k in 0..KEYS {
        if let Some(v) = cache.get(&k) {
            assert_eq!(Some(&v), model.get(&k));
        }
    }
    if config.reports {
        let _ = (cache.stats(), cache.metrics(), cache.patterns());
        // `Debug` into a sink that keeps nothing: the formatting runs (and
        // must not panic) without a `String` growing under ASan's allocator.
        struct Sink;
        impl std::fmt::Write for Sink {
            fn write_str(&mut self, _: &str) -> std::fmt::Result {
                Ok(())
            }
        }
        let _ = std::fmt::Write::write_fmt(&mut Sink, format_args!("{cache:?}"));
    }
}

/// The sequential model: per key, the value inserted last and not removed
/// since (`HashMap`'s methods on an array: keys are below `KEYS`).
struct Model([Option<u32>; KEYS as usize]);

impl Model {
    fn get(&self, k: &u8) -> Option<&u32> {
        self.0[usize::from(*k)].as_ref()
    }
    fn insert(&mut self, k: u8, v: u32) {
        self.0[usize::from(k)] = Some(v);
    }
    fn remove(&mut self, k: &u8) {
        self.0[usize::from(*k)] = None;
    }
    fn contains_key(&self, k: &u8) -> bool {
        self.0[usize::from(*k)].is_some()
    }
    fn clear(&mut self) {
        self.0 = [None; KEYS as usize];
    }
}
