//! What the hit-ratio benchmark replays beside the Zipf streams of
//! `streams.rs`: the real traces of `../shared/traces/` (read at run time,
//! skipped when absent, never copied into the repository), synthetic
//! recency- and loop-heavy streams, and the two reference policies printed
//! beside the caches: exact LRU and Belady's optimum.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::streams::{SplitMix64, Stream};

/// A stream to replay and the capacities to replay it at.
pub struct Workload {
    pub name: String,
    pub keys: Vec<u64>,
    pub capacities: Vec<usize>,
}

/// The folder of the shared traces: `../shared/traces/` from the project
/// root (the crate's manifest directory), or `$LOCKSCOPE_TRACES`.
pub fn trace_dir() -> PathBuf {
    std::env::var_os("LOCKSCOPE_TRACES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/traces"),
        PathBuf::from,
    )
}

/// An ARC trace (zstd text, `start count ignored request` per line), each
/// request expanded into `count` block accesses, as the ARC paper and
/// Caffeine's simulator do.
pub fn arc_trace(path: &Path) -> std::io::Result<Vec<u64>> {
    let file = std::fs::File::open(path)?;
    let decoder = ruzstd::decoding::StreamingDecoder::new(BufReader::new(file))
        .map_err(|e| std::io::Error::other(format!("{path:?}: {e}")))?;
    let mut keys = Vec::new();
    for line in BufReader::new(decoder).lines() {
        let line = line?;
        let mut f = line.split_ascii_whitespace();
        let (Some(start), Some(count)) = (f.next(), f.next()) else {
            continue;
        };
        let start: u64 = start
            .parse()
            .map_err(|e| std::io::Error::other(format!("{path:?}: {line:?}: {e}")))?;
        let count: u64 = count
            .parse()
            .map_err(|e| std::io::Error::other(format!("{path:?}: {line:?}: {e}")))?;
        keys.extend(start..start + count);
    }
    Ok(keys)
}

/// An xz file of big-endian 64-bit keys (Caffeine's scarab format).
pub fn u64_be_xz(path: &Path) -> std::io::Result<Vec<u64>> {
    let file = std::fs::File::open(path)?;
    let mut raw = Vec::new();
    lzma_rs::xz_decompress(&mut BufReader::new(file), &mut raw)
        .map_err(|e| std::io::Error::other(format!("{path:?}: {e:?}")))?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

/// The shared traces found, with the capacities of the traces' README.
/// A missing folder or file is reported on stderr and skipped.
pub fn real(only: impl Fn(&str) -> bool) -> Vec<Workload> {
    let dir = trace_dir();
    let mut out = Vec::new();
    let mut add = |name: &str,
                   file: &str,
                   capacities: &[usize],
                   load: &dyn Fn(&Path) -> std::io::Result<Vec<u64>>| {
        if !only(name) {
            return;
        }
        let path = dir.join(file);
        if !path.exists() {
            eprintln!("skipped {name}: {path:?} not found");
            return;
        }
        match load(&path) {
            Ok(keys) => out.push(Workload {
                name: name.to_string(),
                keys,
                capacities: capacities.to_vec(),
            }),
            Err(e) => eprintln!("skipped {name}: {e}"),
        }
    };
    add("OLTP", "OLTP.lis.zst", &[512, 2_000, 10_000], &|p| {
        arc_trace(p)
    });
    add(
        "scarab-recs",
        "scarab-recs.trace.xz",
        &[25_000, 50_000, 100_000],
        &|p| u64_be_xz(p),
    );
    out
}

/// Recency-heavy: 30% of accesses are new keys, the rest re-reference an
/// access made shortly before (distance exponential, mean `capacity / 2`
/// accesses back): what LRU is made for and frequency admission hurts.
pub fn recency(len: usize, capacity: usize, seed: u64) -> Stream {
    let mut rng = SplitMix64::new(seed);
    let mut keys: Vec<u64> = Vec::with_capacity(len);
    let mut next_new = 1u64 << 50;
    let mean = capacity as f64 / 2.0;
    for _ in 0..len {
        let k = if keys.is_empty() || rng.next_f64() < 0.3 {
            next_new += 1;
            next_new
        } else {
            let d = (-(1.0 - rng.next_f64()).ln() * mean) as usize;
            keys[keys.len() - 1 - d.min(keys.len() - 1)]
        };
        keys.push(k);
    }
    Stream {
        name: "recency",
        keys,
    }
}

/// Loop-heavy: a loop over `1.5 * capacity` keys, repeated, with 20% of
/// accesses to a Zipf-free uniform background: LRU's worst case.
pub fn looping(len: usize, capacity: usize, seed: u64) -> Stream {
    let mut rng = SplitMix64::new(seed);
    let n = (capacity * 3 / 2) as u64;
    let mut i = 0u64;
    let keys = (0..len)
        .map(|_| {
            if rng.next_f64() < 0.2 {
                (1 << 45) + rng.next_u64() % (capacity as u64 * 20)
            } else {
                i += 1;
                (1 << 40) + i % n
            }
        })
        .collect();
    Stream { name: "loop", keys }
}

/// Hit ratio of exact LRU of `capacity` entries on `keys`.
pub fn lru(keys: &[u64], capacity: usize) -> f64 {
    let mut last: HashMap<u64, u64> = HashMap::with_capacity(capacity * 2);
    let mut order: BTreeMap<u64, u64> = BTreeMap::new();
    let mut hits = 0usize;
    for (t, &k) in keys.iter().enumerate() {
        let t = t as u64;
        if let Some(old) = last.insert(k, t) {
            order.remove(&old);
            hits += 1;
        } else if order.len() == capacity {
            let (_, victim) = order.pop_first().expect("a full cache has entries");
            last.remove(&victim);
        }
        order.insert(t, k);
    }
    hits as f64 / keys.len() as f64
}

/// Hit ratio of Belady's optimum (evict the key used furthest in the
/// future; a key used later than every cached one is not cached at all).
pub fn belady(keys: &[u64], capacity: usize) -> f64 {
    let mut next = vec![u64::MAX; keys.len()];
    let mut seen: HashMap<u64, u64> = HashMap::new();
    for (i, &k) in keys.iter().enumerate().rev() {
        if let Some(&j) = seen.get(&k) {
            next[i] = j;
        }
        seen.insert(k, i as u64);
    }
    drop(seen);
    // (next use, key) of every cached key; the map gives a key's next use.
    let mut by_next: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut cached: HashMap<u64, u64> = HashMap::with_capacity(capacity * 2);
    let mut hits = 0usize;
    for (i, &k) in keys.iter().enumerate() {
        let n = next[i];
        if let Some(at) = cached.get_mut(&k) {
            hits += 1;
            by_next.remove(&(*at, k));
            *at = n;
            by_next.insert((n, k));
            continue;
        }
        if n == u64::MAX {
            continue;
        }
        if cached.len() == capacity {
            let &(far, victim) = by_next.last().expect("a full cache has entries");
            if far <= n {
                continue;
            }
            by_next.pop_last();
            cached.remove(&victim);
        }
        cached.insert(k, n);
        by_next.insert((n, k));
    }
    hits as f64 / keys.len() as f64
}
