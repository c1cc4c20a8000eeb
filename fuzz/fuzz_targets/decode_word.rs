//! The lock-word decoders on arbitrary words: `RawRwLock::decode` (usize)
//! and `RawMutex::decode` (u8) never panic, every field agrees with the bits,
//! the fields rebuild the word exactly, validity matches an independent
//! statement of the layout's invariants, and the report text (`Display` of
//! the words and of a `Violation`) never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lockscope::{RawMutex, RawRwLock, Violation};

fuzz_target!(|input: (u64, u8, usize)| {
    let (rw, mutex, address) = input;
    check_rwlock_word(rw as usize);
    check_mutex_word(mutex);

    // A report built from arbitrary words renders without panicking.
    let v = Violation {
        lock: "RawRwLock",
        address,
        operation: "unlock_shared",
        problem: "fuzzed",
        word: rw as usize,
        decoded: RawRwLock::decode(rw as usize).to_string(),
        detail: (address % 2 == 0).then(|| format!("fuzzed detail {address:#x}")),
        name: (address % 3 == 0).then(|| format!("fuzzed name {address:#x}")),
        sites: if address % 5 == 0 {
            vec![core::panic::Location::caller()]
        } else {
            Vec::new()
        },
    };
    let text = v.to_string();
    assert!(
        text.starts_with("lockscope: lock invariant violated"),
        "{text}"
    );
});

fn check_rwlock_word(raw: usize) {
    let w = RawRwLock::decode(raw);
    assert_eq!(w.raw, raw);
    assert_eq!(w.parked, raw & 0b0001 != 0);
    assert_eq!(w.writer_parked, raw & 0b0010 != 0);
    assert_eq!(w.upgradable, raw & 0b0100 != 0);
    assert_eq!(w.writer, raw & 0b1000 != 0);
    assert_eq!(w.readers, raw >> 4);

    // The fields say everything the word does.
    let rebuilt = (w.readers << 4)
        | usize::from(w.writer) << 3
        | usize::from(w.upgradable) << 2
        | usize::from(w.writer_parked) << 1
        | usize::from(w.parked);
    assert_eq!(rebuilt, raw);

    // The invariants of the layout, stated independently (README, "The lock words").
    // (A parked writer with no readers counted is the instant after the last
    // reader left, before it clears the bit: valid.)
    let broken = (w.writer_parked && !w.writer)
        || w.readers > usize::MAX >> 5
        || (w.upgradable && w.writer)
        || (w.upgradable && w.readers == 0);
    assert_eq!(w.problem.is_some(), broken, "{raw:#x}: {w:?}");
    assert_eq!(w.is_valid(), !broken);
    assert_eq!(w.write_locked(), w.writer && w.readers == 0);

    let text = w.to_string();
    assert!(text.contains(&format!("readers: {}", w.readers)), "{text}");
    assert_eq!(text.contains("INVALID"), broken, "{text}");
}

fn check_mutex_word(raw: u8) {
    let w = RawMutex::decode(raw);
    assert_eq!(w.raw, raw);
    assert_eq!(w.locked, raw & 0b01 != 0);
    assert_eq!(w.parked, raw & 0b10 != 0);
    assert_eq!(w.unknown_bits, raw & !0b11);
    let rebuilt = w.unknown_bits | u8::from(w.parked) << 1 | u8::from(w.locked);
    assert_eq!(rebuilt, raw);
    assert_eq!(w.is_valid(), raw & !0b11 == 0);
    let text = w.to_string();
    assert!(text.contains(&format!("locked: {}", w.locked)), "{text}");
    assert_eq!(text.contains("unknown bits"), !w.is_valid(), "{text}");
}
