//! Single-threaded hit ratios of `TwoTierCache` (default builder settings)
//! and its peers, beside exact LRU and Belady's optimum, on synthetic
//! streams and on the real traces of `../shared/traces/` (skipped when the
//! folder is absent; see `benches/support/traces.rs`). Deterministic: the
//! streams are seeded and the caches run on one thread.
//!
//! ```text
//! cargo run --release --example cache_hitratio                 # everything
//! cargo run --release --example cache_hitratio -- --len 1000000 # shorter synthetic streams
//! cargo run --release --example cache_hitratio -- --only OLTP,loop
//! cargo run --release --example cache_hitratio -- --lockscope-only # peers, LRU, Belady left out
//! ```
//!
//! Every access is a `get`; a miss is followed by an `insert` of the key.
//! The last column is lockscope's hit ratio minus the best of moka,
//! quick_cache and LRU, in points.

#[path = "../benches/support/streams.rs"]
mod streams;
#[path = "../benches/support/traces.rs"]
mod traces;

use lockscope::cache::TwoTierCache;
use streams::CAPACITY;
use traces::Workload;

fn replay(keys: &[u64], mut get: impl FnMut(u64) -> bool) -> f64 {
    keys.iter().filter(|&&k| get(k)).count() as f64 / keys.len() as f64
}

/// Hit ratio, and the admission window's share of the capacity at the end.
fn lockscope(keys: &[u64], capacity: usize) -> (f64, f64) {
    let c = TwoTierCache::<u64, u64>::new(capacity);
    let h = replay(keys, |k| {
        c.get(&k).is_some() || {
            c.insert(k, k);
            false
        }
    });
    (h, c.patterns().window_fraction)
}

fn quick(keys: &[u64], capacity: usize) -> f64 {
    let q = quick_cache::sync::Cache::<u64, u64>::new(capacity);
    replay(keys, |k| {
        q.get(&k).is_some() || {
            q.insert(k, k);
            false
        }
    })
}

fn moka(keys: &[u64], capacity: usize) -> f64 {
    let m = moka::sync::Cache::<u64, u64>::new(capacity as u64);
    replay(keys, |k| {
        m.get(&k).is_some() || {
            m.insert(k, k);
            false
        }
    })
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

fn main() {
    let len: usize = arg("--len")
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let only: Option<Vec<String>> = arg("--only").map(|a| a.split(',').map(String::from).collect());
    let alone = std::env::args().any(|a| a == "--lockscope-only");
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));
    let mut work: Vec<Workload> = Vec::new();
    for name in streams::NAMES {
        if wanted(name) {
            let s = streams::by_name(name, len).expect("a known stream");
            work.push(Workload {
                name: s.name.to_string(),
                keys: s.keys,
                capacities: vec![CAPACITY],
            });
        }
    }
    for s in [
        traces::recency(len, CAPACITY, 5),
        traces::looping(len, CAPACITY, 6),
    ] {
        if wanted(s.name) {
            work.push(Workload {
                name: s.name.to_string(),
                keys: s.keys,
                capacities: vec![CAPACITY],
            });
        }
    }
    work.extend(traces::real(|n| wanted(n)));
    println!(
        "hit ratio in %, one thread, get then insert on a miss; synthetic streams {len} accesses"
    );
    println!();
    println!(
        "| stream | capacity | lockscope | moka | quick_cache | LRU | Belady | lockscope - best of the others |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for w in &work {
        for &cap in &w.capacities {
            let (l, window) = lockscope(&w.keys, cap);
            let others = |f: &dyn Fn() -> f64| if alone { f64::NAN } else { f() };
            let m = others(&|| moka(&w.keys, cap));
            let q = others(&|| quick(&w.keys, cap));
            let r = others(&|| traces::lru(&w.keys, cap));
            let b = others(&|| traces::belady(&w.keys, cap));
            let best = m.max(q).max(r);
            println!(
                "| {} | {cap} | {:.2} ({:.0}%) | {:.2} | {:.2} | {:.2} | {:.2} | {:+.2} |",
                w.name,
                l * 100.0,
                window * 100.0,
                m * 100.0,
                q * 100.0,
                r * 100.0,
                b * 100.0,
                (l - best) * 100.0
            );
        }
    }
}
