//! Model-check your own code with loom, using lockscope's locks as they ship.
//!
//! Copy this file into your crate's `tests/`, add
//!
//! ```toml
//! [target.'cfg(loom)'.dev-dependencies]
//! loom = "0.7"
//! ```
//!
//! and run `RUSTFLAGS="--cfg loom" cargo test --release --test model_loom`.
//! Under `--cfg loom` every lockscope lock is a loom-visible lock, so loom
//! explores the interleavings around each acquisition of your code.
//!
//! The two `should_panic` tests are deliberately wrong code that loom must
//! reject: they show what a finding looks like.
#![cfg(loom)]

use std::time::Duration;

use lockscope::{Condvar, Mutex, RwLock};
use loom::sync::Arc;
use loom::thread;

/// The code under test: a counter that each caller bumps by one.
fn bump_correctly(counter: &Mutex<u64>) {
    *counter.lock() += 1;
}

/// The same, wrong: it reads under one acquisition and writes under another,
/// so another thread can bump in between and its update is lost.
fn bump_with_lost_update(counter: &Mutex<u64>) {
    let seen = *counter.lock();
    *counter.lock() = seen + 1;
}

fn two_bumps(bump: fn(&Mutex<u64>)) {
    loom::model(move || {
        let counter = Arc::new(Mutex::new(0));
        let other = Arc::clone(&counter);
        let t = thread::spawn(move || bump(&other));
        bump(&counter);
        t.join().unwrap();
        assert_eq!(*counter.lock(), 2, "an update was lost");
    });
}

#[test]
fn counter_is_correct() {
    two_bumps(bump_correctly);
}

#[test]
#[should_panic(expected = "an update was lost")]
fn lost_update_is_found() {
    two_bumps(bump_with_lost_update);
}

/// Code that assumes a timed acquisition always succeeds. Under the checker
/// a timed acquisition of a held lock may time out, whatever the timeout.
#[test]
#[should_panic(expected = "assumed the lock would be free in time")]
fn timed_lock_assumption_is_found() {
    loom::model(|| {
        let config = Arc::new(RwLock::new(1));
        let other = Arc::clone(&config);
        let t = thread::spawn(move || {
            *other.write() += 1;
        });
        let value = *config
            .try_read_for(Duration::from_secs(10))
            .expect("assumed the lock would be free in time");
        assert!(value == 1 || value == 2);
        t.join().unwrap();
    });
}

/// A handshake through a condvar: loom checks that no notification is lost.
#[test]
fn condvar_handshake() {
    loom::model(|| {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let other = Arc::clone(&pair);
        let t = thread::spawn(move || {
            *other.0.lock() = true;
            other.1.notify_one();
        });
        let mut ready = pair.0.lock();
        while !*ready {
            pair.1.wait(&mut ready);
        }
        drop(ready);
        t.join().unwrap();
    });
}

/// The README's example, as written there (`tests/readme.rs` checks that
/// the two stay the same).
#[test]
fn readme_two_bumps() {
    loom::model(|| {
        let counter = loom::sync::Arc::new(lockscope::Mutex::new(0));
        let other = counter.clone();
        let t = loom::thread::spawn(move || *other.lock() += 1);
        *counter.lock() += 1;
        t.join().unwrap();
        assert_eq!(*counter.lock(), 2);
    });
}
