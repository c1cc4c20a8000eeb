//! The cache's frequency sketch (a doorkeeper in front of a Count-Min
//! Sketch, reached through the `cfg(fuzzing)` hook
//! `lockscope::cache::fuzzing::Sketch`): an estimate is never under the true
//! count (capped at 16: 15 counted, one in the doorkeeper) of its key before
//! aging, and after each aging (the TinyLFU halving, which also clears the
//! doorkeeper) never under the halved bound.
//!
//! The model keeps, per key, a lower bound on its estimate: the true count
//! capped at 16 until the first halving, then lowered to `(b - 1) / 2` at
//! each halving and raised by each increment. Halvings are detected
//! exactly: one sequential increment of a key whose estimate is `e < 16`
//! leaves it at `e + 1` (the doorkeeper bit, or conservative update raising
//! every counter at the minimum), unless that increment triggered a
//! halving, which leaves it at `e / 2`.

#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lockscope::cache::fuzzing::Sketch;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Increment the key with this index in the pool.
    Increment(u8),
    /// Increment the same key several times in a row.
    Burst(u8, u8),
    /// Increment an arbitrary hash (a key outside the pool).
    IncrementHash(u64),
    Clear,
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    keys: Vec<u64>,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let sketch = Sketch::new(usize::from(input.capacity));
    let keys: Vec<u64> = if input.keys.is_empty() {
        vec![0]
    } else {
        input.keys.iter().copied().take(32).collect()
    };
    // Lower bound on each counted key's estimate.
    let mut bound: HashMap<u64, u8> = HashMap::new();
    let mut halvings = 0u32;
    for op in input.ops.iter().take(4096) {
        match *op {
            Op::Increment(i) => increment(
                &sketch,
                &mut bound,
                &mut halvings,
                keys[usize::from(i) % keys.len()],
            ),
            Op::Burst(i, n) => {
                for _ in 0..n % 32 {
                    increment(
                        &sketch,
                        &mut bound,
                        &mut halvings,
                        keys[usize::from(i) % keys.len()],
                    );
                }
            }
            Op::IncrementHash(h) => increment(&sketch, &mut bound, &mut halvings, h),
            Op::Clear => {
                sketch.clear();
                for (&h, b) in bound.iter_mut() {
                    *b = 0;
                    assert_eq!(sketch.frequency(h), 0, "clear left a count");
                }
            }
        }
        for (&h, &b) in &bound {
            let e = sketch.frequency(h);
            assert!(e <= 16, "a 4-bit counter plus the doorkeeper reads {e}");
            assert!(
                e >= b,
                "estimate {e} under the bound {b} for {h:#x} ({halvings} halvings so far)"
            );
        }
    }
});

fn increment(sketch: &Sketch, bound: &mut HashMap<u64, u8>, halvings: &mut u32, h: u64) {
    let before = sketch.frequency(h);
    let prior = sketch.increment(h);
    assert_eq!(
        prior, before,
        "increment returned another estimate than frequency"
    );
    let after = sketch.frequency(h);
    let b = bound.entry(h).or_insert(0);
    *b = (*b + 1).min(16);
    if before == 16 {
        // Saturated: nothing is written, nothing is counted.
        assert_eq!(after, 16);
        return;
    }
    let raised = before + 1;
    if after != raised {
        assert_eq!(
            after,
            before / 2,
            "estimate went from {before} to {after}: neither +1 nor a halving"
        );
        *halvings += 1;
        for b in bound.values_mut() {
            *b = b.saturating_sub(1) / 2;
        }
    }
}
