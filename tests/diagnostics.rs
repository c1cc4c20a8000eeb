//! What every lock records, read from other threads: holders, last holder,
//! waiters, context, labels, counts, timeouts, self-deadlock reports and the
//! registry.
#![cfg(feature = "diagnostics")]

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use lockscope::diag::{self, Inspect, Mode};
use lockscope::{Mutex, RawMutex, RawRwLock, RwLock};

use common::wait_for;

fn snapshot(lock: &impl Inspect) -> diag::Snapshot {
    lock.snapshot().expect("the lock has been used")
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn mutex_holder_is_seen_from_another_thread_with_site_name_and_context() {
    let lock = Arc::new(Mutex::new(0));
    let (held_tx, held_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let holder = {
        let lock = Arc::clone(&lock);
        thread::Builder::new()
            .name("holder".into())
            .spawn(move || {
                diag::with_context(77, || {
                    let _guard = lock.lock();
                    held_tx.send(line!() - 1).unwrap();
                    done_rx.recv().unwrap();
                })
            })
            .unwrap()
    };
    let line = held_rx.recv().unwrap();
    let seen = snapshot(&*lock);
    assert_eq!(seen.holders.len(), 1, "{seen}");
    let h = &seen.holders[0];
    assert_eq!(h.mode, Mode::Exclusive);
    assert_eq!(h.thread.name.as_deref(), Some("holder"));
    assert_eq!(h.context, 77);
    let site = h.site.expect("call site recorded");
    assert!(site.file().ends_with("diagnostics.rs"), "{site}");
    assert_eq!(site.line(), line);
    assert!(seen.last_holder.is_none());
    assert_eq!(
        seen.word.as_deref(),
        Some("{ locked: true, parked: false }")
    );

    done_tx.send(()).unwrap();
    holder.join().unwrap();
    let seen = snapshot(&*lock);
    assert!(seen.holders.is_empty(), "{seen}");
    let last = seen.last_holder.expect("the last holder is kept");
    assert_eq!(last.thread.name.as_deref(), Some("holder"));
    assert_eq!(last.site.unwrap().line(), line);
    assert_eq!(last.context, 77);
}

#[test]
fn readers_are_listed_one_by_one() {
    let lock = Arc::new(RwLock::new(()));
    let barrier = Arc::new(Barrier::new(4));
    let readers: Vec<_> = (0..3)
        .map(|i| {
            let (lock, barrier) = (Arc::clone(&lock), Arc::clone(&barrier));
            thread::Builder::new()
                .name(format!("reader-{i}"))
                .spawn(move || {
                    let _guard = lock.read();
                    barrier.wait();
                    barrier.wait();
                })
                .unwrap()
        })
        .collect();
    barrier.wait();
    let seen = snapshot(&*lock);
    let mut names: Vec<_> = seen
        .holders
        .iter()
        .map(|h| {
            assert_eq!(h.mode, Mode::Shared);
            h.thread.name.clone().unwrap().to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["reader-0", "reader-1", "reader-2"]);
    barrier.wait();
    for r in readers {
        r.join().unwrap();
    }
    assert!(snapshot(&*lock).holders.is_empty());
}

#[test]
fn several_read_holds_of_one_thread_end_in_any_order() {
    let (a, b, c) = (RwLock::new(()), RwLock::new(()), RwLock::new(()));
    let holders = |lock: &RwLock<()>| snapshot(lock).holders.len();
    let ga = a.read();
    let gb = b.read();
    assert_eq!((holders(&a), holders(&b)), (1, 1));
    // The first hold ends first: the second stays listed.
    drop(ga);
    assert_eq!((holders(&a), holders(&b)), (0, 1));
    // A new hold takes the freed place; the older one still ends cleanly.
    let gc = c.read();
    assert_eq!((holders(&b), holders(&c)), (1, 1));
    drop(gb);
    assert_eq!((holders(&b), holders(&c)), (0, 1));
    drop(gc);
    assert_eq!(holders(&c), 0);
    // More holds than the thread's record has places for are still taken
    // and released; the ones it could list are listed.
    let many: Vec<RwLock<()>> = (0..20).map(|_| RwLock::new(())).collect();
    let guards: Vec<_> = many.iter().map(RwLock::read).collect();
    let listed = many.iter().filter(|l| holders(l) == 1).count();
    assert_eq!(
        listed, 16,
        "a thread lists at most 16 holds (README, Limits)"
    );
    drop(guards);
    assert!(many.iter().all(|l| holders(l) == 0 && !l.is_locked()));
}

#[test]
fn waiters_show_mode_site_and_age() {
    let lock = Arc::new(RwLock::new(()));
    let writer = lock.write();
    let reader = {
        let lock = Arc::clone(&lock);
        thread::Builder::new()
            .name("waiting-reader".into())
            .spawn(move || drop(lock.read()))
            .unwrap()
    };
    wait_for("the reader to park", || {
        !snapshot(&*lock).waiters.is_empty()
    });
    let seen = snapshot(&*lock);
    let w = &seen.waiters[0];
    assert_eq!(w.mode, Mode::Shared);
    assert_eq!(w.thread.name.as_deref(), Some("waiting-reader"));
    assert!(w.site.unwrap().file().ends_with("diagnostics.rs"));
    drop(writer);
    reader.join().unwrap();
    let seen = snapshot(&*lock);
    assert!(seen.waiters.is_empty());
    assert_eq!(seen.stats.contended, 1);
    assert_eq!(seen.stats.wait.count(), 1);
}

#[test]
fn class_counts_are_exact_and_hold_times_sampled() {
    let lock = Arc::new(RwLock::new(0u64));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let lock = Arc::clone(&lock);
            thread::spawn(move || {
                for _ in 0..1000 {
                    *lock.write() += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The lock is the only one of its class (its first site). Each thread
    // counts its acquisitions in its own record, exactly, and moves them to
    // the class when it exits.
    let stats = snapshot(&*lock).stats;
    assert_eq!(stats.exclusive_acquisitions, 4000);
    // One acquisition in 256 per thread and class is timed, picked by a
    // multiplicative hash of the thread's count: about 15.6 of 4000.
    let timed = stats.hold.count();
    assert!((5..=32).contains(&timed), "{timed} timed exclusive holds");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let lock = Arc::clone(&lock);
            thread::spawn(move || {
                for _ in 0..10_000 {
                    drop(lock.read());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = snapshot(&*lock).stats;
    assert_eq!(stats.exclusive_acquisitions, 4000);
    assert_eq!(stats.shared_acquisitions, 40_000);
    // And one shared acquisition in 256 per thread (a quarter of the 625
    // counted samples): about 156 more, with a standard deviation of 11.
    let timed_shared = stats.hold.count() - timed;
    assert!(
        (100..=220).contains(&timed_shared),
        "{timed_shared} timed shared holds"
    );
}

#[test]
fn a_timeout_is_recorded_with_the_holder() {
    let lock = Arc::new(Mutex::from_raw(RawMutex::labelled("timeouts"), ()));
    let guard = lock.lock();
    let line = line!() - 1;
    let other = Arc::clone(&lock);
    let got = thread::spawn(move || other.try_lock_for(Duration::from_millis(20)).is_some())
        .join()
        .unwrap();
    assert!(!got);
    let seen = snapshot(&*lock);
    assert_eq!(seen.name, "timeouts");
    assert_eq!(seen.stats.timeouts, 1);
    let timeout = &seen.recent_timeouts[0];
    // Timed from the call, as its timeout (to within the clock reads around it).
    assert!(
        timeout.waited >= Duration::from_millis(19),
        "{:?}",
        timeout.waited
    );
    assert_eq!(timeout.holders.len(), 1);
    assert_eq!(timeout.holders[0].site.unwrap().line(), line);
    drop(guard);
}

#[test]
fn labels_work_for_statics_and_at_run_time() {
    static ROUTES: RwLock<u32> = RwLock::from_raw(RawRwLock::labelled("routes"), 0);
    *ROUTES.write() += 1;
    assert_eq!(snapshot(&ROUTES).name, "routes");

    let plain = Mutex::new(());
    drop(plain.lock());
    let name = snapshot(&plain).name;
    assert!(
        name.starts_with("Mutex first locked at ") && name.contains("diagnostics.rs"),
        "{name}"
    );
    plain.set_label("renamed");
    assert_eq!(snapshot(&plain).name, "renamed");
}

#[test]
fn relocking_a_held_mutex_is_reported_with_both_sites() {
    drop(common::received_violations());
    let lock = Mutex::new(());
    let _held = lock.lock();
    let first = line!() - 1;
    let result = panic::catch_unwind(AssertUnwindSafe(|| drop(lock.lock())));
    let second = line!() - 1;
    let message = panic_message(result.unwrap_err());
    assert!(message.contains("self-deadlock"), "{message}");
    assert!(
        message.contains(&format!("diagnostics.rs:{first}")),
        "{message}"
    );
    assert!(
        message.contains(&format!("diagnostics.rs:{second}")),
        "{message}"
    );
    assert!(lock.is_locked(), "the first guard still holds the lock");
    // The same report as a value: both sites, in order, and the lock's name.
    let address = core::ptr::from_ref(unsafe { lock.raw() }).addr();
    let got = common::received_violations();
    let v = got
        .iter()
        .rfind(|v| v.address == address && v.problem == "self-deadlock")
        .expect("the callback received the self-deadlock");
    let lines: Vec<u32> = v.sites.iter().map(|s| s.line()).collect();
    assert_eq!(lines, [first, second], "{v:?}");
    assert!(v.name.is_some(), "{v:?}");
}

#[test]
fn writing_while_reading_is_reported_and_leaves_the_lock_usable() {
    // The `if let` bug: a read guard kept alive into the branch that writes.
    let lock = Arc::new(RwLock::new(Some(1)));
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        if let Some(v) = *lock.read() {
            *lock.write() = Some(v + 1);
        }
    }));
    let message = panic_message(result.unwrap_err());
    assert!(
        message.contains("self-deadlock") && message.contains("Shared"),
        "{message}"
    );
    // The writer's claim was given back: others can still write and read.
    let other = Arc::clone(&lock);
    thread::spawn(move || *other.write() = Some(5))
        .join()
        .unwrap();
    assert_eq!(*lock.read(), Some(5));
    assert!(
        lock.lock_word().contains("readers: 0"),
        "{}",
        lock.lock_word()
    );
}

#[test]
fn upgradable_misuse_is_reported() {
    let lock = RwLock::new(0);
    // Asking for a second upgradable read while holding one.
    let held = lock.upgradable_read();
    let result = panic::catch_unwind(AssertUnwindSafe(|| drop(lock.upgradable_read())));
    assert!(panic_message(result.unwrap_err()).contains("self-deadlock"));
    // Upgrading while a plain read of the same thread is alive.
    let plain = lock.read();
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        drop(lockscope::RwLockUpgradableReadGuard::upgrade(held));
    }));
    assert!(panic_message(result.unwrap_err()).contains("self-deadlock"));
    drop(plain);
    // Neither the upgrade's claim nor its upgradable read is left behind.
    *lock.write() += 1;
    assert_eq!(*lock.read(), 1);
}

#[test]
fn held_locks_are_listed_and_released_ones_are_not() {
    let labelled = |n| format!("registry-test-{n}");
    let count = || {
        diag::locks()
            .iter()
            .filter(|l| l.name.starts_with("registry-test-"))
            .count()
    };
    assert_eq!(count(), 0);
    let locks: Vec<Mutex<u32>> = (0..10).map(Mutex::new).collect();
    for (i, l) in locks.iter().enumerate() {
        l.set_label(&labelled(i));
    }
    // Listed while held (a lock has no record of its own to list it by).
    let guards: Vec<_> = locks.iter().map(|l| l.lock()).collect();
    assert_eq!(count(), 10);
    drop(guards);
    assert_eq!(count(), 0);
    // Labelled, used, released: each still snapshots through itself.
    for (i, l) in locks.iter().enumerate() {
        assert_eq!(l.snapshot().unwrap().name, labelled(i));
    }
    drop(locks);
    assert_eq!(count(), 0);
}

#[test]
fn sizes_stay_within_budget() {
    // The lock word and the lock's diagnostics (16 bytes), nothing on the heap.
    assert!(std::mem::size_of::<RwLock<()>>() <= 24);
    assert!(std::mem::size_of::<Mutex<()>>() <= 24);
    assert!(std::mem::size_of::<Mutex<u64>>() <= 32);
}

/// Collects `lockscope` events (message and fields) from every thread of
/// this test binary, through one global subscriber. (A subscriber scoped to
/// the test thread missed events in about half the runs while another test
/// emitted the same events without one: `tracing`'s per-callsite interest
/// cache.) A test picks out its own events by its locks' labels.
mod capture {
    use std::sync::{Arc, Mutex as StdMutex, OnceLock};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    #[derive(Clone, Default)]
    pub struct Events(pub Arc<StdMutex<Vec<String>>>);

    struct Fields(String);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!("{}={:?} ", field.name(), value));
        }
    }

    impl Subscriber for Events {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            metadata.target() == "lockscope"
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// The events of the whole binary so far; installs the subscriber on
    /// first use.
    pub fn events() -> &'static Events {
        static EVENTS: OnceLock<Events> = OnceLock::new();
        EVENTS.get_or_init(|| {
            let events = Events::default();
            tracing::subscriber::set_global_default(events.clone())
                .expect("no other global subscriber in this test binary");
            events
        })
    }
}

#[test]
fn slow_holds_and_timeouts_emit_tracing_events() {
    let events = capture::events();
    let lock = Mutex::from_raw(RawMutex::labelled("slow-one"), ());

    diag::set_slow_hold_threshold(Duration::from_millis(20));
    diag::with_context(9, || {
        let _guard = lock.lock();
        thread::sleep(Duration::from_millis(60));
    });
    let quick_site = format!("diagnostics.rs:{}", line!() + 1);
    let quick = lock.lock();
    drop(quick);
    // A slow read, and a quick one.
    let shared = RwLock::from_raw(RawRwLock::labelled("slow-reader"), ());
    diag::with_context(11, || {
        let _guard = shared.read();
        thread::sleep(Duration::from_millis(60));
    });
    let quick_read_site = format!("diagnostics.rs:{}", line!() + 1);
    drop(shared.read());
    // A timeout on this thread while another thread holds the lock.
    let lock = Arc::new(lock);
    let (held_tx, held_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let holder = {
        let lock = Arc::clone(&lock);
        thread::spawn(move || {
            let _guard = lock.lock();
            held_tx.send(()).unwrap();
            done_rx.recv().unwrap();
        })
    };
    held_rx.recv().unwrap();
    assert!(lock.try_lock_for(Duration::from_millis(5)).is_none());
    done_tx.send(()).unwrap();
    holder.join().unwrap();
    diag::set_slow_hold_threshold(Duration::from_millis(100));

    // This test's events: those of its two locks (the holder thread's hold
    // above may be slow too, under load; other tests' locks have other
    // labels).
    let events: Vec<String> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains("slow-one") || e.contains("slow-reader"))
        .cloned()
        .collect();
    let slow: Vec<_> = events
        .iter()
        .filter(|e| e.contains("slow lock hold"))
        .collect();
    let exclusive: Vec<_> = slow.iter().filter(|e| e.contains("context=9")).collect();
    assert_eq!(exclusive.len(), 1, "{events:#?}");
    assert!(exclusive[0].contains("slow-one"), "{}", exclusive[0]);
    let shared: Vec<_> = slow.iter().filter(|e| e.contains("context=11")).collect();
    assert_eq!(shared.len(), 1, "{events:#?}");
    assert!(
        shared[0].contains("slow-reader") && shared[0].contains("Shared"),
        "{}",
        shared[0]
    );
    for event in exclusive.iter().chain(&shared) {
        assert!(event.contains("diagnostics.rs"), "the call site: {event}");
    }
    // The quick holds are not reported.
    assert!(
        !slow
            .iter()
            .any(|e| e.contains(&quick_site) || e.contains(&quick_read_site)),
        "{events:#?}"
    );
    let gave_up: Vec<_> = events.iter().filter(|e| e.contains("gave up")).collect();
    assert_eq!(gave_up.len(), 1, "{events:#?}");
    assert!(
        gave_up[0].contains("slow-one") && gave_up[0].contains("holds it Exclusive"),
        "{}",
        gave_up[0]
    );
}

#[test]
fn cache_shard_locks_are_one_labelled_class_in_the_profile() {
    let cache: lockscope::cache::TwoTierCache<u64, u64> = lockscope::cache::TwoTierCache::builder()
        .capacity(1024)
        .shards(4)
        .build()
        .unwrap();
    for k in 0..5000 {
        cache.insert(k, k);
        let _ = cache.get(&k);
    }
    // Every shard's lock counts for one class, named by its label: the
    // profile has one row for the cache's shards, whichever shard a key
    // went to.
    let shards: Vec<_> = diag::profile()
        .locks
        .into_iter()
        .filter(|l| l.name == lockscope::cache::SHARD_LOCK_LABEL)
        .collect();
    assert_eq!(
        shards.len(),
        1,
        "{:?}",
        shards.iter().map(|l| &l.name).collect::<Vec<_>>()
    );
    // 5,000 inserts (write locks) and 5,000 gets (read locks), from this
    // thread alone (other tests' caches add theirs).
    assert!(shards[0].acquisitions >= 10_000, "{:?}", shards[0]);
    drop(cache);
}
