//! Single-threaded hit ratios of `TwoTierCache` (for a few hot fractions,
//! and with hill climbing on, from the default 0.7) and its peers on the
//! benchmark streams; the measurements behind the choice of eviction policy.
//!
//! ```text
//! cargo run --release --example cache_hitratio [-- LEN [HOT_FRACTIONS]]
//! cargo run --release --example cache_hitratio -- 4000000 0.5,0.7
//! ```

#[path = "../benches/support/streams.rs"]
mod streams;

use lockscope::cache::TwoTierCache;
use streams::CAPACITY;

fn replay(keys: &[u64], mut get: impl FnMut(u64) -> bool) -> f64 {
    keys.iter().filter(|&&k| get(k)).count() as f64 / keys.len() as f64
}

/// Hit ratio of `cache` on `keys`, inserting each key that misses.
fn replay_cache(cache: &TwoTierCache<u64, u64>, keys: &[u64]) -> f64 {
    replay(keys, |k| {
        cache.get(&k).is_some() || {
            cache.insert(k, k);
            false
        }
    })
}

fn main() {
    let len = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let streams = streams::all(len);
    // Hot fractions to try: the second argument, comma-separated.
    let fractions: Vec<f64> = std::env::args()
        .nth(2)
        .map(|a| a.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![0.3, 0.5, 0.7, 0.8]);
    print!("| stream |");
    for &f in &fractions {
        print!(" lockscope hot={f} |");
    }
    println!(" lockscope climbing (final hot) | quick_cache | moka |");
    println!("|---|{}", "---|".repeat(fractions.len() + 3));
    for s in &streams {
        print!("| {} |", s.name);
        for &f in &fractions {
            let c = TwoTierCache::<u64, u64>::builder()
                .capacity(CAPACITY)
                .hot_fraction(f)
                .observability(false)
                .build()
                .expect("valid configuration");
            let h = replay_cache(&c, &s.keys);
            print!(" {h:.4} |");
        }
        // Hill climbing reads the hit counts, so observability is on.
        let c = TwoTierCache::<u64, u64>::builder()
            .capacity(CAPACITY)
            .hill_climbing(true)
            .build()
            .expect("valid configuration");
        let h = replay_cache(&c, &s.keys);
        print!(" {h:.4} ({:.2}) |", c.patterns().hot_fraction);
        let q = quick_cache::sync::Cache::<u64, u64>::new(CAPACITY);
        let h = replay(&s.keys, |k| {
            q.get(&k).is_some() || {
                q.insert(k, k);
                false
            }
        });
        print!(" {h:.4} |");
        let m = moka::sync::Cache::<u64, u64>::new(CAPACITY as u64);
        let h = replay(&s.keys, |k| {
            m.get(&k).is_some() || {
                m.insert(k, k);
                false
            }
        });
        println!(" {h:.4} |");
    }
}
