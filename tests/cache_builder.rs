//! Builder validation: clear errors, no panics.

use lockscope::cache::{BuildError, TwoTierCache};

fn builder() -> lockscope::cache::TwoTierCacheBuilder<u32, u32> {
    TwoTierCache::builder()
}

#[test]
fn rejects_bad_configurations() {
    assert_eq!(builder().build().unwrap_err(), BuildError::ZeroCapacity);
    assert_eq!(
        builder().capacity(0).build().unwrap_err(),
        BuildError::ZeroCapacity
    );
    assert_eq!(
        builder().capacity(10).shards(0).build().unwrap_err(),
        BuildError::ZeroShards
    );
    for f in [0.0, 1.0, -0.5, 1.5] {
        assert_eq!(
            builder().capacity(10).hot_fraction(f).build().unwrap_err(),
            BuildError::HotFractionOutOfRange(f)
        );
    }
    assert!(matches!(
        builder().capacity(10).hot_fraction(f64::NAN).build(),
        Err(BuildError::HotFractionOutOfRange(_))
    ));
    assert_eq!(
        builder()
            .capacity(10)
            .sample_interval(0)
            .build()
            .unwrap_err(),
        BuildError::ZeroSampleInterval
    );
    let msg = BuildError::ZeroCapacity.to_string();
    assert!(msg.contains("capacity"), "{msg}");
    let _: &dyn std::error::Error = &BuildError::ZeroShards;
}

#[test]
fn accepts_edge_configurations() {
    let c = builder().capacity(1).shards(8).build().unwrap();
    assert_eq!(c.shard_count(), 1);
    c.insert(1, 1);
    c.insert(2, 2);
    assert!(c.len() <= 1);
    let c = builder()
        .capacity(1_000)
        .hot_fraction(0.01)
        .shards(3)
        .hasher(std::hash::RandomState::new())
        .build()
        .unwrap();
    assert_eq!(c.capacity(), 1_000);
    assert_eq!(c.shard_count(), 3);
    for k in 0..5_000 {
        c.insert(k, k);
        assert!(c.len() <= 1_000);
    }
}
