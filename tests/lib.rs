//! Helpers for the black-box tests: where the built `sipedge` binary is, where `../shared` is.

use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `../shared` beside the checkout. Its absence fails the test that needs it, with a message saying
/// where it was looked for — in CI and locally alike: a corpus test must never pass having checked
/// nothing.
pub fn shared_dir() -> PathBuf {
    let dir = workspace_root()
        .parent()
        .map(|p| p.join("shared"))
        .unwrap_or_default();
    assert!(
        dir.join("corpus").join("manifest.tsv").is_file(),
        "{} is missing (or has no corpus/manifest.tsv): the corpus tests need the shared folder \
         beside the checkout (../shared, as CI lays it out)",
        dir.display()
    );
    dir
}

/// The `sipedge` binary cargo built for this test run.
pub fn sipedge_bin() -> PathBuf {
    workspace_bin("sipedge")
}

/// A binary of the workspace named `name` (e.g. `sipedge-bench` of the benches crate), in the
/// profile this test run was built with; `cargo test --workspace` builds them all.
pub fn workspace_bin(name: &str) -> PathBuf {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target.join(profile).join(name)
}

/// Spawns `cmd` (a command of [`sipedge_bin`]); a missing binary fails with how to build it.
#[allow(clippy::panic)]
pub fn spawn(cmd: &mut std::process::Command) -> std::process::Child {
    cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start {} ({e}); build it first: cargo build -p sipedge",
            cmd.get_program().to_string_lossy()
        )
    })
}
