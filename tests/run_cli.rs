//! `sipedge run` without `--config`, black-box: the embedded local-only default starts (ports moved
//! to 0 through the documented SIPEDGE__SECTION__KEY overrides), prints the contract lines, warns
//! loudly, accepts TCP connections on both listeners, and drains and exits 0 on SIGTERM.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn embedded_default_starts_listens_and_stops_on_sigterm() {
    let bin = sipedge_tests::sipedge_bin();
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(&bin)
        .arg("run")
        .env("SIPEDGE_STATE_DIR", state.path())
        .env("SIPEDGE__INTERNAL__LISTEN", "127.0.0.1:0")
        .env("SIPEDGE__EXTERNAL__LISTEN", "127.0.0.1:0")
        .env("SIPEDGE__METRICS__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); build it first: cargo build -p sipedge",
                bin.display()
            )
        });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut addrs: Vec<(String, SocketAddr)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while addrs.len() < 2 && Instant::now() < deadline {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let ["listening", role, "sip+tls", addr] = parts[..] {
            addrs.push((role.to_owned(), addr.parse().unwrap()));
        }
    }
    let roles: Vec<&str> = addrs.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["internal", "external"], "contract lines");
    for (role, addr) in &addrs {
        assert!(
            addr.ip().is_loopback(),
            "{role} must listen on loopback in the embedded default"
        );
        assert_ne!(addr.port(), 0);
        TcpStream::connect_timeout(addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{role} {addr}: {e}"));
    }
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit:?}");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let has = |name: &str| events.iter().any(|e| e["event"] == name);
    assert!(has("embedded_default"), "the loud local-only warning: {stderr}");
    assert!(has("shutdown") && has("stopped"), "{stderr}");
}
