//! The contention profile: ranking by wait time, per-site waits, the table,
//! Prometheus text and JSON.
#![cfg(feature = "diagnostics")]

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use lockscope::Mutex;
use lockscope::diag::{self, Inspect};

/// Four threads that each take `lock` 20 times and hold it 1 ms.
fn contend(lock: &Arc<Mutex<u64>>) {
    let start = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (lock, start) = (Arc::clone(lock), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for _ in 0..20 {
                    let mut g = lock.lock();
                    *g += 1;
                    thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn the_contended_lock_ranks_above_an_idle_one_with_its_waiting_site() {
    let hot = Arc::new(Mutex::new(0));
    hot.set_label("profile-hot");
    let cold = Mutex::new(0);
    cold.set_label("profile-cold");
    for _ in 0..100 {
        *cold.lock() += 1;
    }
    contend(&hot);
    let profile = diag::profile();
    let rank = |name: &str| profile.locks.iter().position(|l| l.name == name).unwrap();
    assert!(rank("profile-hot") < rank("profile-cold"), "{profile}");
    let row = profile.get("profile-hot").unwrap();
    assert_eq!(row.acquisitions, 80);
    assert!(row.contended > 0, "{profile}");
    assert!(row.wait_total > Duration::ZERO && row.wait_max >= row.wait_avg);
    let site = row.top_sites[0].site.expect("a named site");
    assert!(site.file().ends_with("profile.rs"), "{site}");
    assert_eq!(
        row.top_sites.iter().map(|s| s.waits).sum::<u64>(),
        row.contended
    );
    // The wait histogram holds every contended acquisition; its quantiles
    // stay within what was recorded.
    assert_eq!(row.wait.count(), row.contended);
    assert_eq!(row.wait.sum(), row.wait_total);
    assert_eq!(row.wait.quantile(1.0), row.wait_max);
    assert!(row.wait.quantile(0.5) <= row.wait.quantile(0.99));
    let buckets = row.wait.buckets();
    assert_eq!(buckets.iter().map(|&(_, n)| n).sum::<u64>(), row.contended);
    assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0), "{buckets:?}");
    let cold_row = profile.get("profile-cold").unwrap();
    assert_eq!(cold_row.acquisitions, 100);
    assert_eq!(cold_row.contended, 0);
    let table = profile.to_string();
    assert!(
        table.contains("profile-hot") && table.contains("waits at "),
        "{table}"
    );
}

#[test]
fn prometheus_text_has_conventional_names_and_escaped_labels() {
    let lock = Arc::new(Mutex::new(0));
    lock.set_label("prom \"quoted\" \\ lock");
    contend(&lock);
    let text = diag::profile().to_prometheus();
    let label = r#"lock="prom \"quoted\" \\ lock",kind="Mutex""#;
    assert!(text.contains("# TYPE lockscope_wait_seconds histogram"));
    assert!(text.contains("# TYPE lockscope_acquisitions_total counter"));
    assert!(
        text.contains(&format!("lockscope_acquisitions_total{{{label}}} 80\n")),
        "{text}"
    );
    assert!(text.contains(&format!("lockscope_contended_total{{{label}}} ")));
    assert!(text.contains(&format!("lockscope_timeouts_total{{{label}}} 0\n")));
    assert!(text.contains(&format!(
        "lockscope_wait_seconds_bucket{{{label},le=\"+Inf\"}} "
    )));
    assert!(text.contains(&format!("lockscope_wait_seconds_sum{{{label}}} ")));
    // Cumulative buckets never decrease.
    let counts: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("lockscope_wait_seconds_bucket{{{label}")))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    // The last (`+Inf`) bucket counts every wait of the class.
    let waits = diag::profile()
        .get("prom \"quoted\" \\ lock")
        .unwrap()
        .wait
        .count();
    assert_eq!(counts.last(), Some(&waits), "{text}");
}

#[cfg(feature = "serde")]
#[test]
fn json_names_call_sites_as_file_and_line() {
    let lock = Arc::new(Mutex::new(0));
    lock.set_label("profile-json");
    contend(&lock);
    let profile = diag::profile();
    let json = serde_json::to_value(&profile).unwrap();
    let row = json["locks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "profile-json")
        .unwrap();
    assert_eq!(row["acquisitions"], 80);
    assert!(row["contended"].as_u64().unwrap() > 0);
    let site = row["top_sites"][0]["site"].as_str().unwrap();
    assert!(site.contains("profile.rs:"), "{site}");
    assert!(row["wait_total"].as_f64().unwrap() > 0.0);
}
