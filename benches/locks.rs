//! lockscope vs parking_lot vs std, in one run.
//!
//! Each criterion group is one case (e.g. `mutex_counter/threads=4`) and holds
//! one benchmark per implementation, so the three figures of a case are
//! printed next to each other. Throughput is one element per lock operation:
//! `Melem/s` reads as millions of operations per second.
//!
//! `cargo bench --bench locks` runs everything (about 39 benchmarks of
//! ~4 s each); criterion's usual arguments narrow or shorten it, e.g.
//! `cargo bench --bench locks -- mutex_counter --measurement-time 1`.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/lock_workloads.rs"]
mod workloads;

use workloads::{Impl, Workload};

fn locks(c: &mut Criterion) {
    for case in Workload::all() {
        let mut group = c.benchmark_group(case.id());
        group.throughput(Throughput::Elements(1));
        for imp in Impl::ALL {
            group.bench_function(imp.name(), |b| b.iter_custom(|ops| case.run(imp, ops)));
        }
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = locks
}
criterion_main!(benches);
