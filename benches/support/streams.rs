//! Deterministic key streams for the cache benchmarks, shared by
//! `benches/cache.rs`, `examples/cache_bench.rs` and
//! `examples/cache_hitratio.rs` (through `#[path]`: the helpers of
//! benchmarks and examples all live in `benches/support/`).

#![allow(dead_code)]

/// Keys in every Zipf universe.
pub const UNIVERSE: usize = 1_000_000;
/// Cache capacity used by the benchmarks.
pub const CAPACITY: usize = 10_000;

/// SplitMix64: a small, fast, deterministic RNG.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf(s) over ranks 0..n by a precomputed CDF and binary search.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for i in 1..=n {
            acc += 1.0 / (i as f64).powf(s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    /// A rank in 0..n; rank 0 is the most popular.
    pub fn sample(&self, rng: &mut SplitMix64) -> u64 {
        let u = rng.next_f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u64
    }

    /// The best hit ratio any cache of `capacity` entries can reach on an
    /// infinite stream: the probability mass of the top `capacity` ranks.
    pub fn static_optimum(&self, capacity: usize) -> f64 {
        self.cdf[capacity.min(self.cdf.len()) - 1]
    }
}

/// Scatters ranks over the key space so that popular keys are not
/// neighbours (the caches hash anyway; this keeps the streams honest).
fn scatter(rank: u64) -> u64 {
    rank.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 8
}

/// A named, pre-generated stream of keys.
pub struct Stream {
    pub name: &'static str,
    pub keys: Vec<u64>,
}

/// Zipf(s) over [`UNIVERSE`] keys.
pub fn zipf(name: &'static str, s: f64, len: usize, seed: u64) -> Stream {
    let z = Zipf::new(UNIVERSE, s);
    let mut rng = SplitMix64::new(seed);
    Stream {
        name,
        keys: (0..len).map(|_| scatter(z.sample(&mut rng))).collect(),
    }
}

/// Zipf 1.0 whose hot set moves to entirely new keys `phases` times.
pub fn phase_change(len: usize, phases: usize, seed: u64) -> Stream {
    let z = Zipf::new(UNIVERSE, 1.0);
    let mut rng = SplitMix64::new(seed);
    let per = len.div_ceil(phases);
    Stream {
        name: "phase-change",
        keys: (0..len)
            .map(|i| scatter(z.sample(&mut rng) + (i / per * UNIVERSE) as u64))
            .collect(),
    }
}

/// Zipf 1.0 interrupted, every `period` accesses, by a sequential scan of
/// `scan` keys that are never seen again.
pub fn zipf_with_scans(len: usize, period: usize, scan: usize, seed: u64) -> Stream {
    let z = Zipf::new(UNIVERSE, 1.0);
    let mut rng = SplitMix64::new(seed);
    let mut next_scan_key = 1u64 << 40;
    let mut keys = Vec::with_capacity(len);
    while keys.len() < len {
        for _ in 0..period.saturating_sub(scan) {
            keys.push(scatter(z.sample(&mut rng)));
        }
        for _ in 0..scan {
            keys.push(next_scan_key);
            next_scan_key += 1;
        }
    }
    keys.truncate(len);
    Stream {
        name: "zipf1.0+scans",
        keys,
    }
}

/// The four benchmark streams, each `len` keys long.
pub fn all(len: usize) -> Vec<Stream> {
    NAMES
        .iter()
        .map(|n| by_name(n, len).expect("a known stream"))
        .collect()
}

/// The names of the streams of [`all`], in order.
pub const NAMES: [&str; 4] = ["zipf1.0", "zipf0.8", "phase-change", "zipf1.0+scans"];

/// The stream of [`all`] called `name`, alone (cheaper than all four).
pub fn by_name(name: &str, len: usize) -> Option<Stream> {
    Some(match name {
        "zipf1.0" => zipf("zipf1.0", 1.0, len, 1),
        "zipf0.8" => zipf("zipf0.8", 0.8, len, 2),
        "phase-change" => phase_change(len, 4, 3),
        "zipf1.0+scans" => zipf_with_scans(len, 100_000, 20_000, 4),
        _ => return None,
    })
}
