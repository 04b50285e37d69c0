//! Replays the committed fuzz seed corpus (`fuzz/corpus/<target>/seed-*`) through the same functions
//! the cargo-fuzz targets call, so CI checks the fuzz invariants on stable Rust without libFuzzer.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
        })
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 50, "{target}: only {} seeds", out.len());
    out
}

#[test]
fn parse_seeds() {
    for (_, data) in seeds("parse") {
        sip_codec::fuzzing::parse_target(&data);
    }
}

#[test]
fn framer_seeds() {
    for (_, data) in seeds("framer") {
        sip_codec::fuzzing::framer_target(&data);
    }
}

#[test]
fn roundtrip_seeds() {
    for (_, data) in seeds("roundtrip") {
        sip_codec::fuzzing::roundtrip_target(&data);
    }
}

/// The input already holds lines equal to the editor's own Via and Record-Route (a message that
/// crossed this edge before): the check must find our lines by position, not by value.
#[test]
fn roundtrip_input_with_our_own_lines() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/roundtrip");
    let data = std::fs::read(dir.join("seed-regression-own-via-and-rr-in-input")).unwrap();
    sip_codec::fuzzing::roundtrip_target(&data);
}
