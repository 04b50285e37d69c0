//! Replays the committed seeds of the transaction-core fuzz target (`fuzz/corpus/core/seed-*`,
//! picked from a 600 s `cargo +nightly fuzz run core` with no finding) through the same function
//! the target calls, on stable Rust in CI.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

#[test]
fn the_core_seeds_keep_the_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/core");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .and_then(|f| f.to_str())
            .is_some_and(|f| f.starts_with("seed-"))
        {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        edge_core::proxy::fuzzing::core_target(&data);
        n += 1;
    }
    assert!(n >= 20, "{n} seeds in {}", dir.display());
}
