//! The CI smoke run of `sipedge-bench` (issue 11), so the benchmark cannot rot: the real
//! `sipedge run` between the bench's generator (as the front end `fe1.corp.test`, mutual TLS to the
//! internal listener) and the bench's sink (as the partner `edge.partner.test`, the pinned
//! `proxy_fqdn`), about two seconds at a low rate. No thresholds: it asserts only that transactions
//! completed, none failed, and the `--json` report parses with the fields `compare.sh` reads.
//! Both binaries come from the same `cargo test --workspace` build (`sipedge`, `sipedge-bench`).

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

// Only the edge process, its options and the PKI are used here; the rest of the harness
// re-exports would warn.
#[allow(unused_imports)]
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use support::{Edge, EdgeOpts, TestPki};

/// The sink as a child process, killed on drop.
struct Sink {
    child: Child,
    addr: SocketAddr,
}

impl Sink {
    fn start(pki: &TestPki) -> Sink {
        let bin = sipedge_tests::workspace_bin("sipedge-bench");
        let mut child = Command::new(&bin)
            .arg("sink")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--cert")
            .arg(&pki.partner.cert_file)
            .arg("--key")
            .arg(&pki.partner.key_file)
            .arg("--ca")
            .arg(&pki.internal_ca.file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); build it first: cargo build -p sipedge-benches",
                    bin.display()
                )
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("listening sip+tls ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("the sink printed {line:?}, not its listening line"));
        Sink { child, addr }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_seconds_of_load_through_the_edge_complete_without_failures() {
    let pki = TestPki::new();
    let sink = Sink::start(&pki);
    // The generator is the front end; the internal next hop is never dialled (port 9, discard).
    let opts = EdgeOpts::new(9, sink.addr.port());
    let edge = Edge::start(&opts.render(&pki), &pki);
    let out = Command::new(sipedge_tests::workspace_bin("sipedge-bench"))
        .arg("run")
        .arg("--target")
        .arg(edge.internal_addr.to_string())
        .args(["--server-name", "edge-int.corp.test"])
        .arg("--cert")
        .arg(&pki.fe.cert_file)
        .arg("--key")
        .arg(&pki.fe.key_file)
        .arg("--ca")
        .arg(&pki.internal_ca.file)
        .args(["--uri", "sip:bob@partner.test", "--from", "sip:alice@corp.test"])
        .args(["-c", "2", "--inflight", "4", "--rate", "200"])
        .args(["--warmup", "0.5", "--duration", "2", "--timeout-ms", "1500"])
        .arg("--pid")
        .arg(edge.pid().to_string())
        .args(["--label", "sipedge", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sipedge-bench run failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the report is not JSON ({e}):\n{stdout}"));
    let num = |k: &str| {
        r[k].as_f64()
            .unwrap_or_else(|| panic!("report field {k} missing or not a number:\n{stdout}"))
    };
    assert!(num("completed") > 0.0, "nothing completed:\n{stdout}");
    assert_eq!(num("failed"), 0.0, "failures:\n{stdout}");
    assert_eq!(r["failures"]["unmatched"], 0, "{stdout}");
    assert!(num("tps") > 0.0, "{stdout}");
    assert!(
        num("proxy_cpu_s") >= 0.0,
        "the edge's CPU was not read:\n{stdout}"
    );
    for k in ["p50", "p99", "max"] {
        assert!(
            r["latency_us"][k].as_u64().is_some_and(|v| v > 0),
            "{k}: {stdout}"
        );
    }
    assert_eq!(r["label"], "sipedge");
    assert_eq!(r["transport"], "tls");
}
