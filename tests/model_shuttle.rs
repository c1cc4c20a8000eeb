//! Model-check your own code with shuttle, using lockscope's locks as they
//! ship.
//!
//! Copy this file into your crate's `tests/` and give your crate a feature
//! that switches lockscope to shuttle only when you ask for it (with the
//! feature on, every lockscope lock must be used inside a shuttle test):
//!
//! ```toml
//! [features]
//! shuttle = ["lockscope/shuttle", "dep:shuttle"]
//!
//! [dependencies]
//! shuttle = { version = "0.9", optional = true }
//! ```
//!
//! then run `cargo test --release --features shuttle --test model_shuttle`.
//!
//! The two `should_panic` tests are deliberately wrong code that shuttle must
//! reject: they show what a finding looks like.
#![cfg(feature = "shuttle")]

use std::time::Duration;

use lockscope::{Condvar, Mutex, RwLock};
use shuttle::sync::Arc;
use shuttle::thread;

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

fn two_bumps(bump: fn(&Mutex<u64>)) -> impl Fn() + Send + Sync + 'static {
    move || {
        let counter = Arc::new(Mutex::new(0));
        let other = Arc::clone(&counter);
        let t = thread::spawn(move || bump(&other));
        bump(&counter);
        t.join().unwrap();
        assert_eq!(*counter.lock(), 2, "an update was lost");
    }
}

#[test]
fn counter_is_correct() {
    shuttle::check_random(two_bumps(bump_correctly), 1000);
    shuttle::check_pct(two_bumps(bump_correctly), 1000, 3);
    shuttle::check_dfs(two_bumps(bump_correctly), None);
}

#[test]
#[should_panic(expected = "an update was lost")]
fn lost_update_is_found_by_random() {
    shuttle::check_random(two_bumps(bump_with_lost_update), 1000);
}

#[test]
#[should_panic(expected = "an update was lost")]
fn lost_update_is_found_by_pct() {
    shuttle::check_pct(two_bumps(bump_with_lost_update), 1000, 3);
}

#[test]
#[should_panic(expected = "an update was lost")]
fn lost_update_is_found_by_dfs() {
    shuttle::check_dfs(two_bumps(bump_with_lost_update), None);
}

/// Code that assumes a timed acquisition always succeeds. Under the checker
/// a timed acquisition of a held lock may time out, whatever the timeout.
#[test]
#[should_panic(expected = "assumed the lock would be free in time")]
fn timed_lock_assumption_is_found() {
    shuttle::check_random(
        || {
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
        },
        1000,
    );
}

/// A handshake through a condvar: shuttle checks that no notification is
/// lost.
#[test]
fn condvar_handshake() {
    shuttle::check_pct(
        || {
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
        },
        1000,
        3,
    );
}
