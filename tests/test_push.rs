//! Issue 10, black-box: `sipedge test-push` and `GET /probe/push` against the real `sipedge run`, with
//! `dnsmasq` as the edge's DNS server (`_sipfederationtls._tcp.push.lync.com` → the hosted provider
//! LyncOnline's `sipfed.online.lync.com` at a loopback UAS presenting a partner-CA certificate for
//! that name). The field case: push.lync.com not allowed → Failure with 504 and the missing
//! `[[federation.allowed]]` line named, by the command and by the probe; the line added, SIGHUP,
//! `reload_applied` → Success from both, without a restart. The test push carries a URL as real
//! pushes do, so an IM URL filter that rejects every push fails it too (then `action = "warn"`,
//! SIGHUP, Success). And the embedded default with no flags: the five lines, a Failure with the
//! first cause the edge knows — its filter, then (filter relaxed) the push domain not allowed and
//! no hosted provider, before the missing DNS record.
//!
//! Loopback only; every wait is bounded.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "support/dnsmasq.rs"]
mod dnsmasq;
// Not every harness export is used here.
#[allow(unused_imports)]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dnsmasq::Dnsmasq;
use sip_codec::Message;
use support::sip::{self, p, reply};
use support::{http, Edge, EdgeOpts, Reply, TestPki, TlsUas};

const WAIT: Duration = Duration::from_secs(10);
const KEYS: [&str; 5] = ["TargetFqdn", "Result", "Latency", "Error", "Diagnosis"];
const ALLOW_LINE: &str =
    "add [[federation.allowed]] domain = \"push.lync.com\" to the configuration and reload (kill -HUP)";

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn test_push(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(sipedge_tests::sipedge_bin());
    for (name, _) in std::env::vars_os() {
        let upper = name.to_string_lossy().to_ascii_uppercase();
        if upper.starts_with("SIPEDGE__") || upper == "SIPEDGE_STATE_DIR" {
            cmd.env_remove(name);
        }
    }
    cmd.arg("test-push").args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The five lines, checked for their exact form (`<key padded to 11>: <value>`), as key → value.
fn five_lines(out: &Output) -> BTreeMap<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        5,
        "five lines:\n{stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map = BTreeMap::new();
    for (line, key) in lines.iter().zip(KEYS) {
        let prefix = format!("{key:<11}: ");
        let value = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}\n{stdout}"));
        map.insert(key.to_owned(), value.to_owned());
    }
    let latency = &map["Latency"];
    let b = latency.as_bytes();
    assert!(
        latency.len() == 16 && b[2] == b':' && b[5] == b':' && b[8] == b'.',
        "hh:mm:ss.fffffff: {latency}"
    );
    map
}

/// `GET /probe/push` as JSON, with its status.
fn probe(addr: SocketAddr) -> (u16, serde_json::Value) {
    let (status, body) = http::get(addr, "/probe/push").unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {status} {body}"));
    for k in KEYS {
        assert!(json[k].is_string(), "{k} in {json}");
    }
    assert!(json["cached"].is_boolean(), "{json}");
    (status, json)
}

/// A provider answering 200 behind LyncOnline's name, a front end answering 200, the push field's
/// DNS, and edge options routing through them.
fn lync_online(pki: &TestPki) -> (TlsUas, TlsUas, Dnsmasq, EdgeOpts) {
    let provider_id = pki.partner_leaf("sipfed.online.lync.com");
    let provider = TlsUas::start_with(&provider_id, &pki.internal_ca.cert, |m: &Message<'_>| {
        match m.method() {
            Some("ACK") => vec![],
            _ => vec![Reply::Now(reply(m, 200, "OK", Some("lync-online")))],
        }
    });
    let fe_uas = TlsUas::start(&pki.fe, &pki.internal_ca.cert, |m: &Message<'_>| {
        vec![reply(m, 200, "OK", Some("fe"))]
    });
    let dns = Dnsmasq::lync_online(provider.port());
    let mut opts = EdgeOpts::new(fe_uas.port(), closed_port());
    opts.dns_servers = vec![dns.server()];
    opts.lync_online();
    (provider, fe_uas, dns, opts)
}

#[test]
fn push_lync_com_not_allowed_fails_with_its_fix_then_succeeds_after_sighup() {
    let pki = TestPki::new();
    let (provider, _fe_uas, dns, opts) = lync_online(&pki);
    // The probe (and test-push --config) present the edge's internal certificate: a known server.
    let config = format!(
        "{}\n[[internal.known_servers]]\nfqdn = \"edge-int.corp.test\"\nversion = \"7.0\"\n{}",
        opts.render(&pki),
        "[im_filter]\naction = \"warn\"\n"
    );
    let edge = Edge::start(&config, &pki);
    let metrics = edge.metrics_addr.unwrap();
    let addr = edge.internal_addr.to_string();
    let (cert, key, ca) = (
        pki.fe.cert_file.display().to_string(),
        pki.fe.key_file.display().to_string(),
        pki.internal_ca.file.display().to_string(),
    );
    let flags = [
        "--edge",
        &addr,
        "--fqdn",
        "edge-int.corp.test",
        "--cert",
        &cert,
        "--key",
        &key,
        "--ca",
        &ca,
        "--from",
        "sip:alice@corp.test",
        "--timeout-ms",
        "10000",
    ];

    // As the front end, with flags: the field case.
    let out = test_push(&flags, &[]);
    let f = five_lines(&out);
    assert_eq!(out.status.code(), Some(1), "{f:?}\n{}", edge.log_dump());
    assert_eq!(f["TargetFqdn"], "edge-int.corp.test");
    assert_eq!(f["Result"], "Failure");
    assert_eq!(f["Error"], "504 Server Time-out", "{f:?}");
    assert!(
        f["Diagnosis"].contains("the push domain push.lync.com is not allowed")
            && f["Diagnosis"].contains(ALLOW_LINE),
        "{f:?}"
    );
    assert!(
        dns.wait_queries_for("_sipfederationtls._tcp.push.lync.com", 1, Duration::from_secs(5)) >= 1,
        "{}",
        dns.log_dump()
    );
    assert!(provider.requests().is_empty(), "nothing reaches the provider");

    // The probe says the same, with the configuration's facts (LyncOnline is enabled); then cached.
    let (status, j) = probe(metrics);
    assert_eq!(status, 503, "{j}\n{}", edge.log_dump());
    assert_eq!(
        (&j["Result"], &j["Error"], &j["cached"]),
        (&"Failure".into(), &"504 Server Time-out".into(), &false.into()),
        "{j}"
    );
    let d = j["Diagnosis"].as_str().unwrap();
    assert!(
        d.contains(ALLOW_LINE) && d.contains("the hosted provider LyncOnline, which is enabled"),
        "{j}"
    );
    assert_eq!(j["TargetFqdn"], "edge-int.corp.test");
    let (status, again) = probe(metrics);
    assert_eq!((status, &again["cached"]), (503, &true.into()), "{again}");
    assert_eq!(again["Diagnosis"], j["Diagnosis"]);

    // The fix, by SIGHUP: no restart.
    let mut text = std::fs::read_to_string(&edge.config_path).unwrap();
    text.push_str("\n[[federation.allowed]]\ndomain = \"push.lync.com\"\n");
    std::fs::write(&edge.config_path, text).unwrap();
    edge.reload_applied(WAIT);

    let out = test_push(&flags, &[]);
    let f = five_lines(&out);
    assert_eq!(out.status.code(), Some(0), "{f:?}\n{}", edge.log_dump());
    assert_eq!(
        (f["Result"].as_str(), f["Error"].as_str(), f["Diagnosis"].as_str()),
        ("Success", "", "")
    );
    let fwd = provider
        .wait_request(WAIT, |r| sip::method(r) == "MESSAGE")
        .unwrap_or_else(|| panic!("the provider got no MESSAGE\n{}", edge.log_dump()));
    let m = p(&fwd);
    assert_eq!(m.request_uri(), Some("sip:push@push.lync.com"), "{fwd}");
    assert!(
        String::from_utf8_lossy(m.body()).starts_with("sipedge test-push ")
            && String::from_utf8_lossy(m.body()).contains(" https://"),
        "{fwd}"
    );

    // With --config: the edge's own internal identity, the names from the file.
    let cfg = edge.config_path.display().to_string();
    let out = test_push(&["--config", &cfg, "--edge", &addr, "--timeout-ms", "10000"], &[]);
    let f = five_lines(&out);
    assert_eq!(out.status.code(), Some(0), "{f:?}\n{}", edge.log_dump());
    assert_eq!(
        (f["TargetFqdn"].as_str(), f["Result"].as_str()),
        ("edge-int.corp.test", "Success")
    );

    // The reload emptied the probe's cache: Success at once.
    let (status, j) = probe(metrics);
    assert_eq!(
        (status, &j["Result"], &j["cached"]),
        (200, &"Success".into(), &false.into()),
        "{j}"
    );
    assert_eq!((&j["Error"], &j["Diagnosis"]), (&"".into(), &"".into()), "{j}");
    assert!(
        provider.wait_count(WAIT, 3, |r| sip::method(r) == "MESSAGE") >= 3,
        "three pushes reached the provider"
    );
    let mut edge = edge;
    assert!(edge.alive(), "never restarted");
}

/// The embedded default's process, killed (by its own handle) on drop.
struct DefaultEdge(std::process::Child);

impl Drop for DefaultEdge {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sipedge run` on the embedded default (ports 0, state in `state`, DNS `dns`): its metrics address.
fn start_default(state: &Path, dns: &str, env: &[(&str, &str)]) -> (DefaultEdge, SocketAddr) {
    let mut cmd = Command::new(sipedge_tests::sipedge_bin());
    cmd.envs(env.iter().copied());
    cmd.arg("run")
        .env("SIPEDGE_STATE_DIR", state)
        .env("SIPEDGE__INTERNAL__LISTEN", "127.0.0.1:0")
        .env("SIPEDGE__EXTERNAL__LISTEN", "127.0.0.1:0")
        .env("SIPEDGE__METRICS__LISTEN", "127.0.0.1:0")
        .env("SIPEDGE__DNS__SERVERS", dns)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = DefaultEdge(sipedge_tests::spawn(&mut cmd));
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|e| panic!("no `metrics http` line: {e:?}"));
        if let Some(a) = line.strip_prefix("metrics http ") {
            return (child, a.parse().unwrap());
        }
    }
}

#[test]
fn the_embedded_default_with_no_flags_prints_the_five_lines_and_the_first_cause() {
    let dns = Dnsmasq::start(&[]);
    let state = tempfile::tempdir().unwrap();
    let (child, metrics) = start_default(state.path(), &dns.server(), &[]);
    // The embedded default's certificate is exported like a configured one (issue 17).
    let (_, exposition) = http::get(metrics, "/metrics").unwrap();
    for role in ["internal", "external"] {
        let line = format!("sipedge_certificate_expiry_timestamp_seconds{{certificate=\"{role}\",subject=\"CN=localhost\"}} ");
        assert!(exposition.contains(&line), "{line}\n{exposition}");
    }
    let out = test_push(&["--timeout-ms", "10000"], &[("SIPEDGE_STATE_DIR", state.path())]);
    let probed = probe(metrics);
    drop(child);

    // The embedded default keeps Lync's IM URL filter (http: and https: blocked): every push is
    // rejected there first, and the diagnosis names what would fail after it.
    let f = five_lines(&out);
    assert_eq!(out.status.code(), Some(1), "{f:?}");
    assert_eq!(
        (
            f["TargetFqdn"].as_str(),
            f["Result"].as_str(),
            f["Error"].as_str()
        ),
        ("localhost", "Failure", "403 Forbidden"),
        "{f:?}"
    );
    let d = &f["Diagnosis"];
    assert!(
        d.starts_with(
            "Push Notification request was rejected. The IM URL filter blocked the prefix \"https:\""
        ) && d.contains("After that the push would still fail: the push domain push.lync.com is not allowed")
            && d.contains("no enabled hosted provider is configured"),
        "{f:?}"
    );
    // The probe of the embedded default (the local PKI's client certificate) says the same.
    let (status, j) = probed;
    assert_eq!(status, 503, "{j}");
    assert_eq!(
        (&j["TargetFqdn"], &j["Error"]),
        (&"localhost".into(), &"403 Forbidden".into()),
        "{j}"
    );
    assert!(
        j["Diagnosis"]
            .as_str()
            .unwrap()
            .contains("After that the push would still fail"),
        "{j}"
    );
    assert_eq!(
        dns.queries_for("_sipfederationtls._tcp.push.lync.com"),
        0,
        "filtered before routing"
    );

    // The filter relaxed: the edge looks the push domain up and finds no SRV record, but the first
    // cause it knows is its own configuration, not DNS.
    let (child, metrics) = start_default(
        state.path(),
        &dns.server(),
        &[("SIPEDGE__IM_FILTER__ACTION", "warn")],
    );
    let out = test_push(&["--timeout-ms", "10000"], &[("SIPEDGE_STATE_DIR", state.path())]);
    let probed = probe(metrics);
    drop(child);
    let f = five_lines(&out);
    assert_eq!(
        (f["Result"].as_str(), f["Error"].as_str()),
        ("Failure", "504 Server Time-out"),
        "{f:?}"
    );
    for (what, d) in [
        ("test-push", f["Diagnosis"].clone()),
        ("probe", probed.1["Diagnosis"].as_str().unwrap().to_owned()),
    ] {
        assert!(
            d.starts_with("the push domain push.lync.com is not allowed: add [[federation.allowed]] domain = \"push.lync.com\"")
                && d.contains("; and no enabled hosted provider is configured")
                && d.contains("The edge also found no DNS SRV record _sipfederationtls._tcp.push.lync.com"),
            "{what}: {d}"
        );
    }
    assert!(
        dns.wait_queries_for("_sipfederationtls._tcp.push.lync.com", 1, Duration::from_secs(5)) >= 1,
        "{}",
        dns.log_dump()
    );

    // No edge at all: still five lines, the flag to check, exit 1.
    let out = test_push(
        &["--edge", &format!("127.0.0.1:{}", closed_port())],
        &[("SIPEDGE_STATE_DIR", state.path())],
    );
    let f = five_lines(&out);
    assert_eq!((out.status.code(), f["Result"].as_str()), (Some(1), "Failure"));
    assert!(f["Error"].starts_with("cannot connect to 127.0.0.1:"), "{f:?}");
    assert!(f["Diagnosis"].contains("check --edge"), "{f:?}");
}

/// Issue 16, item 8: an IM URL filter that rejects every real push (they carry a URL) must fail the
/// synthetic push too — it once reported Success with a URL-free body. Then `action = "warn"`,
/// SIGHUP, Success.
#[test]
fn a_filter_that_rejects_every_push_fails_the_test_push_until_relaxed() {
    let pki = TestPki::new();
    let (provider, _fe_uas, _dns, opts) = lync_online(&pki);
    let config = format!(
        "{}\n[[internal.known_servers]]\nfqdn = \"edge-int.corp.test\"\nversion = \"7.0\"\n\n[[federation.allowed]]\ndomain = \"push.lync.com\"\n",
        opts.render(&pki)
    );
    let edge = Edge::start(&config, &pki);
    let cfg = edge.config_path.display().to_string();
    let addr = edge.internal_addr.to_string();
    let args = [
        "--config",
        cfg.as_str(),
        "--edge",
        addr.as_str(),
        "--timeout-ms",
        "10000",
    ];
    let out = test_push(&args, &[]);
    let f = five_lines(&out);
    assert_eq!(out.status.code(), Some(1), "{f:?}\n{}", edge.log_dump());
    assert_eq!(f["Error"], "403 Forbidden", "{f:?}");
    assert!(
        f["Diagnosis"].starts_with(
            "Push Notification request was rejected. The IM URL filter blocked the prefix \"https:\""
        ),
        "{f:?}"
    );
    assert!(
        !f["Diagnosis"].contains("After that"),
        "nothing else is wrong: {f:?}"
    );
    assert!(provider.requests().is_empty(), "nothing reaches the provider");

    let mut text = std::fs::read_to_string(&edge.config_path).unwrap();
    text.push_str("\n[im_filter]\naction = \"warn\"\n");
    std::fs::write(&edge.config_path, text).unwrap();
    edge.reload_applied(WAIT);
    let out = test_push(&args, &[]);
    let f = five_lines(&out);
    assert_eq!(
        (out.status.code(), f["Result"].as_str()),
        (Some(0), "Success"),
        "{f:?}\n{}",
        edge.log_dump()
    );
}
