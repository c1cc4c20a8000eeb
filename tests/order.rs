//! Lock-order checking: an inversion is reported the moment it happens,
//! with both call-site pairs, though no deadlock occurs.
#![cfg(feature = "diagnostics")]

use std::sync::{Arc, mpsc};
use std::thread;

use lockscope::diag::{Inspect, order};
use lockscope::{Mutex, RwLock};

#[test]
fn an_inversion_is_reported_without_a_deadlock() {
    order::enable();
    let (tx, rx) = mpsc::channel();
    order::set_callback(Some(Arc::new(move |v: &order::OrderViolation| {
        if v.held == "order-a" || v.held == "order-b" {
            let _ = tx.send(v.clone());
        }
    })));
    let a = Arc::new(Mutex::new(()));
    a.set_label("order-a");
    let b = Arc::new(RwLock::new(()));
    b.set_label("order-b");
    let first = {
        let (a, b) = (Arc::clone(&a), Arc::clone(&b));
        thread::spawn(move || {
            let _a = a.lock();
            let _b = b.read();
            (line!() - 2, line!() - 1)
        })
        .join()
        .unwrap()
    };
    // The same order again, and each lock alone: nothing to report.
    {
        let _a = a.lock();
        let _b = b.write();
    }
    drop(b.read());
    drop(a.lock());
    assert!(rx.try_recv().is_err());
    let _b = b.write();
    let _a = a.lock();
    let second = (line!() - 2, line!() - 1);
    let v = rx.try_recv().expect("reported at the inverted acquisition");
    assert_eq!(
        (v.held.as_str(), v.acquiring.as_str()),
        ("order-b", "order-a")
    );
    assert_eq!((v.held_site.line(), v.acquiring_site.line()), second);
    assert_eq!(
        (v.earlier_held_site.line(), v.earlier_acquiring_site.line()),
        first
    );
    assert!(v.held_site.file().ends_with("order.rs"));
    let text = v.to_string();
    assert!(text.contains("lock order inversion"), "{text}");
    assert!(order::violations().iter().any(|w| w.held == "order-b"));
    order::set_callback(None);
}

#[test]
fn locks_of_one_class_and_consistent_orders_are_not_reported() {
    order::enable();
    let shards: Vec<_> = (0..2).map(|_| Mutex::new(())).collect();
    for s in &shards {
        s.set_label("order-shard");
    }
    let outer = Mutex::new(());
    outer.set_label("order-outer");
    for _ in 0..3 {
        let _o = outer.lock();
        let _x = shards[1].lock();
        let _y = shards[0].lock();
    }
    assert!(
        !order::violations()
            .iter()
            .any(|v| v.held.contains("order-shard") || v.held == "order-outer")
    );
}

#[test]
fn an_inversion_can_carry_a_backtrace() {
    order::enable();
    order::set_backtraces(true);
    let (a, b) = (Mutex::new(()), Mutex::new(()));
    a.set_label("order-bt-a");
    b.set_label("order-bt-b");
    drop((a.lock(), b.lock()));
    let _b = b.lock();
    let _a = lock_the_inverted_pair_here(&a);
    let v = order::violations()
        .into_iter()
        .find(|v| v.held == "order-bt-b")
        .expect("reported");
    let backtrace = v.backtrace.expect("captured");
    assert!(
        backtrace.contains("lock_the_inverted_pair_here"),
        "{backtrace}"
    );
}

/// Not inlined, so that its name is in the backtrace in release builds too.
#[inline(never)]
fn lock_the_inverted_pair_here(m: &Mutex<()>) -> lockscope::MutexGuard<'_, ()> {
    m.lock()
}
