//! One shared reader behind a `Mutex` (`Read + Seek` needs `&mut`), which
//! serialises every thread that reads, against a reader per thread. The
//! contention profile ranks the shared reader's lock first; with the fix it
//! is gone from the ranking.
//!
//! ```text
//! cargo run --release --example shared_reader
//! ```

use std::io::{Cursor, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use lockscope::Mutex;
use lockscope::diag::{self, Inspect};

const THREADS: usize = 4;
const CHUNK: usize = 16 * 1024;
const RUN: Duration = Duration::from_millis(700);

/// A stand-in for an archive: bytes to seek into and read.
fn archive() -> Arc<[u8]> {
    (0..4 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Reads one chunk at `at` into `buf` and checksums it (the work a reader
/// does with an entry).
fn read_entry(reader: &mut (impl Read + Seek), at: u64, buf: &mut [u8]) -> u64 {
    reader.seek(SeekFrom::Start(at)).unwrap();
    reader.read_exact(buf).unwrap();
    buf.iter().map(|&b| u64::from(b)).sum()
}

/// Runs `THREADS` readers for `RUN`; returns entries read per second.
fn run(read: impl Fn(usize, u64, &mut [u8]) -> u64 + Send + Sync + 'static) -> f64 {
    let read = Arc::new(read);
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let read = Arc::clone(&read);
            thread::spawn(move || {
                let mut buf = vec![0; CHUNK];
                let mut n = 0u64;
                let mut at = t as u64 * 7919;
                while start.elapsed() < RUN {
                    at = (at * 6_364_136_223_846_793_005 + 1) % (4 * 1024 * 1024 - CHUNK as u64);
                    std::hint::black_box(read(t, at, &mut buf));
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

fn top(title: &str) {
    println!("{title}");
    let profile = diag::profile();
    let mut shown = profile.clone();
    shown.locks.retain(|l| l.contended > 0);
    shown.locks.truncate(3);
    if shown.locks.is_empty() {
        println!("  (no lock was waited for)");
    } else {
        print!("{shown}");
    }
}

fn main() {
    let bytes = archive();

    let shared = Arc::new(Mutex::new(Cursor::new(Arc::clone(&bytes))));
    shared.set_label("shared archive reader");
    let before = {
        let shared = Arc::clone(&shared);
        run(move |_, at, buf| read_entry(&mut *shared.lock(), at, buf))
    };
    top("\nprofile with one shared reader behind a Mutex:");
    let profile = diag::profile();
    let ranked_first = profile
        .locks
        .first()
        .is_some_and(|l| l.name == "shared archive reader");
    let waits = |profile: &diag::Profile| {
        profile
            .get("shared archive reader")
            .map_or(0, |l| l.contended)
    };
    let waits_before = waits(&profile);
    drop(shared);

    let readers: Vec<_> = (0..THREADS)
        .map(|_| Mutex::new(Cursor::new(Arc::clone(&bytes))))
        .collect();
    let readers = Arc::new(readers);
    let after = run(move |t, at, buf| read_entry(&mut *readers[t].lock(), at, buf));
    top("\nprofile with a reader per thread:");

    println!("\n| readers ({THREADS} threads) | entries/s |");
    println!("|---|---|");
    println!("| one shared, behind a Mutex | {before:.0} |");
    println!("| one per thread | {after:.0} |");
    if diag::enabled() {
        println!(
            "\nthe profile ranked the shared reader's lock first: {}",
            if ranked_first { "yes" } else { "no" }
        );
        // The profile is per class and cumulative, as the kernel's
        // lock_stat: the class stays, and its waits stop growing.
        let stopped = waits(&diag::profile()) == waits_before;
        println!(
            "after the fix the shared reader's waits stopped growing: {}",
            if stopped { "yes" } else { "no" }
        );
    } else {
        println!("\n(diagnostics are off: no profile)");
    }
}
