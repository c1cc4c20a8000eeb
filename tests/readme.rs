//! The README's code blocks are compiled and run as doctests (`src/lib.rs`),
//! except its model-checking example, which needs `--cfg loom`: that one is
//! run by the loom suite (`tests/model_loom.rs`, in `.ci/model-check`), and
//! this test keeps the README's copy the same as the one the suite runs.

#[test]
fn the_readme_loom_example_is_the_one_the_loom_suite_runs() {
    let readme = include_str!("../README.md");
    let suite = include_str!("model_loom.rs");
    let blocks: Vec<&str> = readme
        .split("```rust,ignore\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or(rest))
        .collect();
    assert_eq!(blocks.len(), 1, "the README has one uncompiled block");
    assert!(
        suite.contains(blocks[0]),
        "tests/model_loom.rs must contain the README's loom example:\n{}",
        blocks[0]
    );
}
