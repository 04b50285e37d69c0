//! Helpers for the black-box tests: where the built `sipedge` binary is, where `../shared` is.

use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `../shared` beside the checkout, if present (CI has it; a bare clone may not).
///
/// Under CI (`CI` set) its absence is a failure, not a skip: the corpus tests must not pass there
/// having checked nothing.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = workspace_root()
        .parent()
        .map(|p| p.join("shared"))
        .filter(|d| d.is_dir());
    assert!(
        dir.is_some() || std::env::var_os("CI").is_none(),
        "CI without ../shared: the corpus tests cannot run"
    );
    dir
}

/// The `sipedge` binary cargo built for this test run.
pub fn sipedge_bin() -> PathBuf {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target.join(profile).join("sipedge")
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
