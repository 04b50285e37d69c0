//! `sipedge run` and the open-file limit, black-box (issue 11): started with a low soft limit, the
//! edge raises it to the hard limit (read back from `/proc/PID/limits`) and says so in an
//! `fd_limit` info record; when `limits.max_connections` plus its own descriptors do not fit under
//! the limit it warns (`fd_limit`, level warn, with the numbers) and still starts; when they fit it
//! does not warn; a reload that raises `max_connections` past the limit is warned about the same way.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[allow(unused_imports)]
mod support;

use support::{Edge, EdgeOpts, TestPki};

/// (soft, hard) of "Max open files" in a `/proc/PID/limits` text; `None` for "unlimited".
fn open_files(limits: &str) -> (Option<u64>, Option<u64>) {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no Max open files line:\n{limits}"));
    let nums: Vec<Option<u64>> = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .take(2)
        .map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

fn limits_of(pid: u32) -> (Option<u64>, Option<u64>) {
    open_files(&std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap())
}

/// The soft limit the edge is started with: low, and below the hard limit so raising shows.
fn low_soft(hard: Option<u64>) -> u64 {
    hard.map_or(256, |h| h.min(256).saturating_sub(1).max(64))
}

fn warnings(edge: &Edge) -> Vec<String> {
    edge.logs_with("\"fd_limit\"")
        .into_iter()
        .filter(|l| l.contains("\"level\":\"warn\""))
        .collect()
}

#[test]
fn the_soft_limit_is_raised_to_the_hard_limit_and_a_fitting_limit_is_not_warned_about() {
    let (_, hard) = limits_of(std::process::id());
    let soft = low_soft(hard);
    let pki = TestPki::new();
    let mut opts = EdgeOpts::new(9, 9);
    opts.max_connections = Some(16);
    let edge = Edge::start_with_soft_nofile(&opts.render(&pki), &pki, soft);
    let (now_soft, now_hard) = limits_of(edge.pid());
    assert_eq!(now_hard, hard, "the hard limit is left alone");
    // An unlimited hard limit raises the soft one to fs.nr_open.
    match hard {
        Some(h) => assert_eq!(now_soft, Some(h), "{}", edge.log_dump()),
        None => assert!(now_soft.unwrap() > soft, "{}", edge.log_dump()),
    }
    let info = edge
        .logs_with("\"fd_limit\"")
        .into_iter()
        .find(|l| l.contains("\"level\":\"info\""))
        .unwrap_or_else(|| panic!("no fd_limit info record:\n{}", edge.log_dump()));
    let want = format!(
        "open-file limit raised from {soft} to {}",
        now_soft.map_or("unlimited".to_owned(), |n| n.to_string())
    );
    assert!(info.contains(&want), "{info}");
    assert_eq!(warnings(&edge), Vec::<String>::new(), "{}", edge.log_dump());
}

#[test]
fn max_connections_above_the_hard_limit_is_warned_about_and_the_edge_still_starts() {
    let (_, hard) = limits_of(std::process::id());
    // The configuration accepts up to 1,000,000; a hard limit above that cannot be exceeded here.
    let Some(hard) = hard.filter(|&h| h < 1_000_000) else {
        eprintln!("skipped: the hard open-file limit is {hard:?}, not below 1,000,000");
        return;
    };
    let pki = TestPki::new();
    let mut opts = EdgeOpts::new(9, 9);
    // Exactly the hard limit: the edge's own descriptors no longer fit beside the connections.
    opts.max_connections = Some(hard);
    let edge = Edge::start_with_soft_nofile(&opts.render(&pki), &pki, low_soft(Some(hard)));
    let w = warnings(&edge);
    assert_eq!(w.len(), 1, "{}", edge.log_dump());
    assert!(
        w[0].contains(&format!("limits.max_connections = {hard} does not fit")),
        "{}",
        w[0]
    );
    assert!(
        w[0].contains(&format!("the soft limit is {hard} (hard {hard})")),
        "{}",
        w[0]
    );
    assert!(w[0].contains("EMFILE"), "{}", w[0]);
    // Still serving: the listeners are up (Edge::start waited for their lines) and it is alive.
    assert_eq!(limits_of(edge.pid()).0, Some(hard));
}

#[test]
fn a_reload_that_raises_max_connections_past_the_limit_is_warned_about() {
    let (_, hard) = limits_of(std::process::id());
    let Some(hard) = hard.filter(|&h| h < 1_000_000) else {
        eprintln!("skipped: the hard open-file limit is {hard:?}, not below 1,000,000");
        return;
    };
    let pki = TestPki::new();
    let mut opts = EdgeOpts::new(9, 9);
    opts.max_connections = Some(16);
    let edge = Edge::start_with_soft_nofile(&opts.render(&pki), &pki, low_soft(Some(hard)));
    assert_eq!(warnings(&edge), Vec::<String>::new(), "{}", edge.log_dump());
    opts.max_connections = Some(hard);
    std::fs::write(&edge.config_path, opts.render(&pki)).unwrap();
    edge.reload_applied(std::time::Duration::from_secs(10));
    let w = warnings(&edge);
    assert_eq!(w.len(), 1, "{}", edge.log_dump());
    assert!(
        w[0].contains(&format!("limits.max_connections = {hard} does not fit")),
        "{}",
        w[0]
    );
}

#[test]
fn limits_lines_parse() {
    let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                Max cpu time              unlimited            unlimited            seconds   \n\
                Max open files            1024                 524288               files     \n";
    assert_eq!(open_files(text), (Some(1024), Some(524_288)));
    let unlimited = "Max open files            unlimited            unlimited            files\n";
    assert_eq!(open_files(unlimited), (None, None));
}
