//! lockscope's showcase: how it compares with parking_lot 0.13 and std.
//!
//! ```text
//! cargo run --release --example showcase              # ~45 s
//! cargo run --release --example showcase -- --quick   # ~10 s smoke run
//! cargo run --release --example showcase -- --secs 0.5 --repeats 7
//! ```
//!
//! Prints markdown tables on stdout (progress goes to stderr), ready to paste
//! into a README. Every case measures the three implementations in turn,
//! rotating which goes first, several times, and reports the median of each,
//! so that noise from the rest of the machine falls on all columns alike.

use std::mem::size_of;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[path = "../benches/common/mod.rs"]
mod common;

use common::{Impl, Workload};

/// The bars lockscope is held to, against parking_lot in the same run.
/// With diagnostics on (the default build): uncontended at most 1.3x
/// parking_lot's time, contended at least 0.9x its throughput. With
/// `--no-default-features` (recording off): at least 0.95x throughput
/// everywhere, uncontended within 1.05x time.
struct Bars {
    uncontended_time: f64,
    contended_throughput: f64,
}

const BARS: Bars = if lockscope::diag::enabled() {
    Bars {
        uncontended_time: 1.3,
        contended_throughput: 0.9,
    }
} else {
    Bars {
        uncontended_time: 1.05,
        contended_throughput: 0.95,
    }
};

struct Settings {
    /// Target length of one measurement.
    secs: f64,
    /// Measurements per implementation and case; the median is reported.
    repeats: usize,
    /// Only the cases whose id contains this, e.g. `rwlock` or `threads=16`.
    only: Option<String>,
}

const USAGE: &str = "\
usage: showcase [--quick] [--secs N] [--repeats N] [--only TEXT]

  --quick       short runs (about 10 s in all), for CI smoke tests
  --secs N      length of one measurement in seconds (default 0.2, quick 0.05)
  --repeats N   measurements per case and implementation, median reported
                (default 5, quick 3)
  --only TEXT   only the cases whose name contains TEXT, e.g. `rwlock_99`,
                `threads=16`, `uncontended`";

fn parse_args() -> Result<Settings, String> {
    let mut quick = false;
    let mut secs = None;
    let mut repeats = None;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--secs" => {
                let value = args.next().ok_or("--secs needs a value")?;
                let n: f64 = value
                    .parse()
                    .map_err(|_| format!("--secs: not a number: {value}"))?;
                if !(n.is_finite() && n > 0.0) {
                    return Err(format!("--secs must be positive, got {value}"));
                }
                secs = Some(n);
            }
            "--repeats" => {
                let value = args.next().ok_or("--repeats needs a value")?;
                let n: usize = value
                    .parse()
                    .map_err(|_| format!("--repeats: not a whole number: {value}"))?;
                if n == 0 {
                    return Err("--repeats must be at least 1".to_owned());
                }
                repeats = Some(n);
            }
            "--only" => only = Some(args.next().ok_or("--only needs a value")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    let (default_secs, default_repeats) = if quick { (0.05, 3) } else { (0.2, 5) };
    Ok(Settings {
        secs: secs.unwrap_or(default_secs),
        repeats: repeats.unwrap_or(default_repeats),
        only,
    })
}

/// How many operations of `case` on `imp` take about `target`.
fn calibrate(case: Workload, imp: Impl, target: Duration) -> u64 {
    let mut ops = 1_000u64;
    loop {
        let took = case.run(imp, ops).as_secs_f64().max(1e-9);
        let scale = target.as_secs_f64() / took;
        // Trust the estimate once a run is a tenth of the target long.
        if scale <= 10.0 {
            return ((ops as f64 * scale) as u64).max(1);
        }
        ops = (ops as f64 * scale.min(100.0) / 5.0) as u64;
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    }
}

/// Median seconds per operation of each implementation, in [`Impl::ALL`]
/// order.
fn measure(case: Workload, settings: &Settings) -> [f64; 3] {
    let target = Duration::from_secs_f64(settings.secs);
    let ops = Impl::ALL.map(|imp| calibrate(case, imp, target));
    let mut samples: [Vec<f64>; 3] = Default::default();
    for round in 0..settings.repeats {
        for k in 0..Impl::ALL.len() {
            let i = (round + k) % Impl::ALL.len();
            let took = case.run(Impl::ALL[i], ops[i]);
            samples[i].push(took.as_secs_f64() / ops[i] as f64);
        }
    }
    samples.map(median)
}

fn progress(case: Workload) {
    eprintln!("measuring {}", case.id());
}

/// The implementation columns of a table header: `lockscope | parking_lot | std`.
fn impl_columns() -> String {
    Impl::ALL.map(Impl::name).join(" | ")
}

fn print_sizes() {
    println!("### Sizes (bytes)\n");
    println!("| type | lockscope | parking_lot | std |");
    println!("|---|---:|---:|---:|");
    let rows: [(&str, usize, usize, Option<usize>); 6] = [
        (
            "`Mutex<()>`",
            size_of::<lockscope::Mutex<()>>(),
            size_of::<parking_lot::Mutex<()>>(),
            Some(size_of::<std::sync::Mutex<()>>()),
        ),
        (
            "`RwLock<()>`",
            size_of::<lockscope::RwLock<()>>(),
            size_of::<parking_lot::RwLock<()>>(),
            Some(size_of::<std::sync::RwLock<()>>()),
        ),
        (
            "`FairMutex<()>`",
            size_of::<lockscope::FairMutex<()>>(),
            size_of::<parking_lot::FairMutex<()>>(),
            None,
        ),
        (
            "`ReentrantMutex<()>`",
            size_of::<lockscope::ReentrantMutex<()>>(),
            size_of::<parking_lot::ReentrantMutex<()>>(),
            None,
        ),
        (
            "`Condvar`",
            size_of::<lockscope::Condvar>(),
            size_of::<parking_lot::Condvar>(),
            Some(size_of::<std::sync::Condvar>()),
        ),
        (
            "`Once`",
            size_of::<lockscope::Once>(),
            size_of::<parking_lot::Once>(),
            Some(size_of::<std::sync::Once>()),
        ),
    ];
    for (name, ours, theirs, std) in rows {
        let std = std.map_or_else(|| "-".to_owned(), |n| n.to_string());
        println!("| {name} | {ours} | {theirs} | {std} |");
    }
    println!();
}

fn main() -> ExitCode {
    let settings = match parse_args() {
        Ok(settings) => settings,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("showcase: {message}\n");
            }
            eprintln!("{USAGE}");
            return if message.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    if cfg!(debug_assertions) {
        eprintln!("showcase: built without optimizations; use `--release` for real figures");
    }
    let started = Instant::now();
    let cases: Vec<Workload> = Workload::all()
        .into_iter()
        .filter(|case| {
            settings
                .only
                .as_ref()
                .is_none_or(|only| case.id().contains(only))
        })
        .collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!("## lockscope vs parking_lot 0.13 vs std\n");
    println!(
        "{cpus} hardware threads; each figure is the median of {} runs of ~{} s, \
         the three implementations measured in turn. lockscope diagnostics: {}.\n",
        settings.repeats,
        settings.secs,
        if lockscope::diag::enabled() {
            "on (default build)"
        } else {
            "off (--no-default-features)"
        }
    );
    print_sizes();

    let mut below_bar = Vec::new();
    let mut table = String::new();

    table.push_str("### Uncontended, one thread (ns per operation, lower is better)\n\n");
    table.push_str(&format!(
        "| operation | {} | lockscope / parking_lot time (lower is better) |\n",
        impl_columns()
    ));
    table.push_str("|---|---:|---:|---:|---:|\n");
    for &case in cases.iter().filter(|c| c.threads().is_none()) {
        progress(case);
        let [ours, theirs, std] = measure(case, &settings).map(|s| s * 1e9);
        let ratio = ours / theirs;
        let flag = if ratio > BARS.uncontended_time {
            " (over budget)"
        } else {
            ""
        };
        if !flag.is_empty() {
            below_bar.push(format!("{} ({ratio:.2}x time)", case.id()));
        }
        table.push_str(&format!(
            "| {} | {ours:.2} | {theirs:.2} | {std:.2} | {ratio:.2}x{flag} |\n",
            case.kind().trim_start_matches("uncontended/"),
        ));
    }

    table.push_str("\n### Contended (million operations per second, higher is better)\n\n");
    table.push_str(&format!(
        "| workload | threads | {} | lockscope / parking_lot throughput (higher is better) |\n",
        impl_columns()
    ));
    table.push_str("|---|---:|---:|---:|---:|---:|\n");
    for &case in cases.iter() {
        let Some(threads) = case.threads() else {
            continue;
        };
        progress(case);
        let [ours, theirs, std] = measure(case, &settings).map(|s| 1e-6 / s);
        let ratio = ours / theirs;
        let flag = if ratio < BARS.contended_throughput {
            " (over budget)"
        } else {
            ""
        };
        if !flag.is_empty() {
            below_bar.push(format!("{} ({ratio:.2}x throughput)", case.id()));
        }
        table.push_str(&format!(
            "| {} | {threads} | {ours:.2} | {theirs:.2} | {std:.2} | {ratio:.2}x{flag} |\n",
            case.kind(),
        ));
    }

    print!("{table}");
    println!();
    println!(
        "`mutex_counter`: every thread increments one shared `Mutex<u64>`. \
         `rwlock_99read_1write`: every thread reads one shared `RwLock<u64>`, \
         writing it once per 100 operations. \
         (over budget) marks lockscope above {}x parking_lot's time uncontended \
         or below {}x its throughput contended.",
        BARS.uncontended_time, BARS.contended_throughput
    );
    if below_bar.is_empty() {
        eprintln!("lockscope is within budget against parking_lot in every case");
    } else {
        eprintln!("lockscope over budget: {}", below_bar.join(", "));
    }
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
