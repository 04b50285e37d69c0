//! The CI smoke run of `sipedge-bench` (issue 11), so the benchmark cannot rot: the real
//! `sipedge run` between the bench's generator (as the front end `fe1.corp.test`, mutual TLS to the
//! internal listener) and the bench's sink (as the partner `edge.partner.test`, the pinned
//! `proxy_fqdn`), about two seconds at a low rate. No thresholds: it asserts only that transactions
//! completed, none failed, and the `--json` report parses with the fields `compare.sh` reads.
//! The connection scenarios of `connections.sh` the same way, a second or so each at a small
//! scale: `handshakes` (full and resumed) and `idle` and `burst` against the edge, `handshakes`
//! against the reference `tls-server` on an RSA-2048 leaf of `sipedge-bench pki`.
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
use std::path::Path;
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

/// Runs `sipedge-bench ARGS… --json` and returns its report (panics with its output otherwise).
fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(sipedge_tests::workspace_bin("sipedge-bench"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sipedge-bench {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The generator's connection flags against the edge's internal listener, as the front end.
fn edge_args<'a>(pki: &'a TestPki, target: &'a str, pid: &'a str) -> Vec<&'a str> {
    vec![
        "--target",
        target,
        "--server-name",
        "edge-int.corp.test",
        "--cert",
        path(&pki.fe.cert_file),
        "--key",
        path(&pki.fe.key_file),
        "--ca",
        path(&pki.internal_ca.file),
        "--source",
        "127.0.0.1,127.0.0.2",
        "--pid",
        pid,
        "--label",
        "sipedge",
    ]
}

fn no_failures(r: &serde_json::Value) {
    assert_eq!(r["failures"], serde_json::json!({}), "{r}");
}

#[test]
fn handshakes_idle_and_burst_against_the_edge_run_and_report() {
    let pki = TestPki::new();
    let sink = Sink::start(&pki);
    let edge = Edge::start(&EdgeOpts::new(9, sink.addr.port()).render(&pki), &pki);
    let (target, pid) = (edge.internal_addr.to_string(), edge.pid().to_string());
    let conn = edge_args(&pki, &target, &pid);
    let short = ["--warmup", "0.2", "--duration", "1", "--concurrency", "2"];

    let full = bench_json(&[&["handshakes"], conn.as_slice(), &short].concat());
    assert_eq!(full["scenario"], "handshakes");
    assert_eq!(full["mode"], "full");
    assert!(full["handshakes"].as_u64().unwrap() > 0, "{full}");
    assert_eq!(full["resumed"], 0, "no session cache, no resumption: {full}");
    assert!(full["target_cpu_s"].as_f64().is_some(), "{full}");
    no_failures(&full);

    let resumed = bench_json(&[&["handshakes", "--resume"], conn.as_slice(), &short].concat());
    assert_eq!(resumed["mode"], "resume");
    assert!(
        resumed["resumed"].as_u64().unwrap() > 0,
        "the edge's session cache resumes: {resumed}"
    );
    no_failures(&resumed);

    let idle = bench_json(
        &[
            &["idle", "--steps", "1,5,20", "--settle-ms", "200"],
            conn.as_slice(),
        ]
        .concat(),
    );
    let steps = idle["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{idle}");
    assert_eq!(steps[2]["held"], 20, "{idle}");
    assert!(steps[2]["pss_kib"].as_u64().unwrap() > 0, "{idle}");
    assert!(steps[2]["pss_per_conn_kib"].as_f64().is_some(), "{idle}");
    assert_eq!(
        idle["answers"],
        serde_json::json!({"200": 20}),
        "each OPTIONS answered by the sink through the edge"
    );
    no_failures(&idle);

    let burst = bench_json(
        &[
            &["burst", "--count", "40", "--concurrency", "10"],
            conn.as_slice(),
        ]
        .concat(),
    );
    assert_eq!(burst["established"], 40, "{burst}");
    assert!(burst["peak_rss_kib"].as_u64().unwrap() > 0, "{burst}");
    assert!(burst["latency_us"]["p99"].as_u64().unwrap() > 0, "{burst}");
    no_failures(&burst);
}

#[test]
fn handshakes_against_the_reference_server_on_an_rsa_key_run_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let bin = sipedge_tests::workspace_bin("sipedge-bench");
    let ok = Command::new(&bin)
        .args(["pki", "--dir"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let f = |name: &str| dir.path().join(name);
    let mut server = Command::new(&bin)
        .arg("tls-server")
        .arg("--cert")
        .arg(f("edge-int.corp.test.rsa.crt"))
        .arg("--key")
        .arg(f("edge-int.corp.test.rsa.key"))
        .arg("--ca")
        .arg(f("internal-ca.pem"))
        .args(["--provider", "aws-lc-rs"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .strip_prefix("listening tls ")
        .map(str::trim)
        .unwrap_or_else(|| panic!("tls-server printed {line:?}"))
        .to_owned();
    let pid = server.id().to_string();
    let (cert, key, ca) = (
        f("fe1.corp.test.crt"),
        f("fe1.corp.test.key"),
        f("internal-ca.pem"),
    );
    let r = bench_json(&[
        "handshakes",
        "--target",
        &addr,
        "--cert",
        path(&cert),
        "--key",
        path(&key),
        "--ca",
        path(&ca),
        "--pid",
        &pid,
        "--label",
        "rustls-ref-aws-lc-rs",
        "--key-type",
        "rsa",
        "--warmup",
        "0.2",
        "--duration",
        "1",
        "--concurrency",
        "2",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(r["handshakes"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["key"], "rsa");
    no_failures(&r);
}
