//! `sipedge run` without `--config`, black-box: the embedded local-only default starts (ports moved
//! to 0 through the documented SIPEDGE__SECTION__KEY overrides, the state directory a temporary one
//! through SIPEDGE_STATE_DIR), prints the contract lines and `local pki <dir>`, warns loudly, writes
//! its CA, edge and known-server client certificates there (keys 0600), answers a rustls client that
//! uses those files with a real SIP response, reuses the files on restart and regenerates them when
//! one is missing; `sipedge send` without flags gets the answer and its diagnostic; SIGTERM drains
//! and exits 0. DNS is a loopback stub that answers NXDOMAIN to everything (so the refusal for a
//! partner domain is the same on every machine).

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

// Not every harness export is used here.
#[allow(unused_imports)]
mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use support::pki::Identity;
use support::sip::{self, p, reply};
use support::{Edge, EdgeOpts, TestPki, TlsPeer, TlsUas};

const WAIT: Duration = Duration::from_secs(10);

/// A DNS server on loopback answering every query NXDOMAIN (question echoed, no records).
fn nxdomain_dns() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let q = &buf[..n];
            if n < 12 {
                continue;
            }
            // The question: labels to the root, then type and class.
            let mut end = 12;
            while end < n && q[end] != 0 {
                end += 1 + usize::from(q[end]);
            }
            let end = (end + 5).min(n);
            let mut r = q[..end].to_vec();
            r[2] = 0x80 | (q[2] & 0x01); // QR, RD copied
            r[3] = 0x83; // RA, NXDOMAIN
            r[6..12].fill(0); // no answer, authority or additional records
            let _ = sock.send_to(&r, from);
        }
    });
    addr
}

/// `sipedge run` on the embedded default, its stdout lines and JSON stderr records collected.
struct DefaultEdge {
    child: Child,
    stdout: Vec<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    internal: SocketAddr,
}

impl DefaultEdge {
    /// Starts and waits for `local pki <dir>` (the line after both listening lines).
    fn start(state: &Path, dns: SocketAddr) -> DefaultEdge {
        let mut cmd = Command::new(sipedge_tests::sipedge_bin());
        cmd.arg("run");
        without_sipedge_env(&mut cmd);
        cmd.env("SIPEDGE_STATE_DIR", state)
            .env("SIPEDGE__INTERNAL__LISTEN", "127.0.0.1:0")
            .env("SIPEDGE__EXTERNAL__LISTEN", "127.0.0.1:0")
            .env("SIPEDGE__METRICS__LISTEN", "127.0.0.1:0")
            .env("SIPEDGE__DNS__SERVERS", dns.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = sipedge_tests::spawn(&mut cmd);
        let stderr: Arc<Mutex<Vec<String>>> = Arc::default();
        let err = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let mut stdout = Vec::new();
        while !stdout.iter().any(|l: &String| l.starts_with("local pki ")) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => stdout.push(line),
                Err(e) => {
                    let _ = child.kill();
                    panic!(
                        "no `local pki` line ({e:?}); stdout {stdout:?}\nstderr:\n{}",
                        stderr.lock().unwrap().join("\n")
                    );
                }
            }
        }
        let internal = stdout
            .iter()
            .find_map(|l| l.strip_prefix("listening internal sip+tls "))
            .unwrap()
            .parse()
            .unwrap();
        DefaultEdge {
            child,
            stdout,
            stderr,
            internal,
        }
    }

    /// The stderr record of `event` (the first one), waited for (bounded): stderr is read by a
    /// thread of its own, which may lag behind the stdout line that said the edge is up.
    fn event(&self, event: &str) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = self.stderr.lock().unwrap().clone();
            let found = lines
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|e| e["event"] == event);
            match found {
                Some(e) => return e,
                None if Instant::now() >= deadline => {
                    panic!("no {event} record in:\n{}", lines.join("\n"))
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// SIGTERM, then the exit status and every stderr record.
    fn stop(mut self) -> (std::process::ExitStatus, Vec<serde_json::Value>) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let started = Instant::now();
        let exit = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread sees EOF once the process is gone.
        std::thread::sleep(Duration::from_millis(100));
        let events = self
            .stderr
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (exit, events)
    }
}

impl Drop for DefaultEdge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn without_sipedge_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let upper = name.to_string_lossy().to_ascii_uppercase();
        if upper.starts_with("SIPEDGE__") || upper == "SIPEDGE_STATE_DIR" {
            cmd.env_remove(name);
        }
    }
}

fn mode(path: PathBuf) -> u32 {
    std::fs::metadata(&path).unwrap().permissions().mode() & 0o777
}

/// The known server of the embedded default, as the local PKI issued it.
fn local_client(state: &Path) -> (Identity, rustls_pki_types::CertificateDer<'static>) {
    use rustls_pki_types::pem::PemObject;
    let id = Identity::from_pem_files("localhost", &state.join("client.pem"), &state.join("client.key"));
    let ca = rustls_pki_types::CertificateDer::from_pem_file(state.join("ca.pem")).unwrap();
    (id, ca)
}

/// An OPTIONS from the internal side to a partner domain the embedded default does not know: the
/// edge looks up its SRV record (NXDOMAIN) and refuses with 504 and 1008.
fn options_is_refused_with_1008(
    edge: &DefaultEdge,
    client: &Identity,
    ca: &rustls_pki_types::CertificateDer<'static>,
) {
    let mut peer = TlsPeer::connect(edge.internal, client, ca, "localhost").unwrap_or_else(|e| {
        panic!(
            "TLS with the local PKI's client.pem/ca.pem failed: {e}\n{}",
            edge.stderr.lock().unwrap().join("\n")
        )
    });
    peer.send(&sip::request(
        "OPTIONS",
        "sip:bob@partner.example",
        "127.0.0.1:5099",
        "z9hG4bKfirst1",
        "sip:alice@localhost",
        "",
    ));
    let resp = peer.recv_final(WAIT, "OPTIONS").unwrap_or_else(|| {
        panic!(
            "no final response; received {:?}\n{}",
            peer.received,
            edge.stderr.lock().unwrap().join("\n")
        )
    });
    assert_eq!(sip::status(&resp), 504, "{resp}");
    let diag = sip::header(&resp, "ms-diagnostics").unwrap_or_default();
    assert!(
        diag.starts_with("1008;reason=\"Unable to resolve DNS SRV record\"")
            && diag.contains("domain=\"partner.example\""),
        "{resp}"
    );
}

#[test]
fn embedded_default_starts_listens_and_stops_on_sigterm() {
    let state = tempfile::tempdir().unwrap();
    let edge = DefaultEdge::start(state.path(), nxdomain_dns());
    let contract: Vec<(String, SocketAddr)> = edge
        .stdout
        .iter()
        .filter_map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["listening", role, "sip+tls", addr] => Some((role.to_owned(), addr.parse().unwrap())),
            _ => None,
        })
        .collect();
    let roles: Vec<&str> = contract.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        roles,
        ["internal", "external"],
        "contract lines: {:?}",
        edge.stdout
    );
    for (role, addr) in &contract {
        assert!(
            addr.ip().is_loopback(),
            "{role} must listen on loopback in the embedded default"
        );
        assert_ne!(addr.port(), 0);
        TcpStream::connect_timeout(addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{role} {addr}: {e}"));
    }
    // A reload, so its events are among those checked below.
    let pid = edge.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + WAIT;
    while !edge
        .stderr
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("\"reload_applied\""))
    {
        assert!(Instant::now() < deadline, "no reload_applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    let raw = Arc::clone(&edge.stderr);
    let (exit, events) = edge.stop();
    assert!(exit.success(), "exit status {exit:?}");
    let has = |name: &str| events.iter().any(|e| e["event"] == name);
    assert!(has("embedded_default"), "the loud local-only warning: {events:?}");
    assert!(has("shutdown") && has("stopped"), "{events:?}");
    // Every line is one event in one format, the process's own (outside the workers) included.
    let lines = raw.lock().unwrap().clone();
    assert_eq!(
        events.len(),
        lines.len(),
        "every stderr line is a JSON event: {lines:?}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for e in &events {
        let ts = e["ts"].as_f64().unwrap_or_else(|| panic!("no ts: {e}"));
        assert!((now - 60.0..=now + 1.0).contains(&ts), "{e}");
        for key in ["level", "event", "text"] {
            assert!(e[key].is_string(), "{key} in {e}");
        }
    }
    for name in [
        "embedded_default",
        "local_pki",
        "known_server",
        "reload_applied",
        "shutdown",
        "stopped",
    ] {
        assert!(has(name), "{name}: {events:?}");
    }
}

#[test]
fn the_local_pki_is_written_privately_answers_over_tls_and_survives_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("nested/sipedge");
    let dns = nxdomain_dns();
    let edge = DefaultEdge::start(&dir, dns);
    assert_eq!(
        edge.stdout.last().unwrap(),
        &format!("local pki {}", dir.display()),
        "the location, after the listening lines: {:?}",
        edge.stdout
    );
    assert_eq!(mode(dir.clone()), 0o700);
    for key in ["ca.key", "edge.key", "client.key"] {
        assert_eq!(mode(dir.join(key)), 0o600, "{key}");
    }
    for cert in ["ca.pem", "edge.pem", "client.pem"] {
        assert!(dir.join(cert).is_file(), "{cert}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("internal.addr")).unwrap().trim(),
        edge.internal.to_string()
    );
    let warning = edge.event("embedded_default")["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        warning.contains(&dir.display().to_string()) && warning.contains("sipedge send"),
        "the warning names the directory and the client command: {warning}"
    );
    let origin = edge.event("local_pki")["text"].as_str().unwrap().to_owned();
    assert!(origin.starts_with("created the local PKI in "), "{origin}");

    let (client, ca) = local_client(&dir);
    options_is_refused_with_1008(&edge, &client, &ca);
    let ca_before = std::fs::read(dir.join("ca.pem")).unwrap();
    let (exit, _) = edge.stop();
    assert!(exit.success());

    // Restart: the same CA, and the client set up before the restart still connects.
    let edge = DefaultEdge::start(&dir, dns);
    let origin = edge.event("local_pki")["text"].as_str().unwrap().to_owned();
    assert!(origin.starts_with("reusing the local PKI in "), "{origin}");
    assert_eq!(
        std::fs::read(dir.join("ca.pem")).unwrap(),
        ca_before,
        "same CA after restart"
    );
    options_is_refused_with_1008(&edge, &client, &ca);
}

#[test]
fn a_missing_key_regenerates_the_local_pki_and_the_log_says_which() {
    let state = tempfile::tempdir().unwrap();
    let dns = nxdomain_dns();
    let (exit, _) = DefaultEdge::start(state.path(), dns).stop();
    assert!(exit.success());
    let ca_before = std::fs::read(state.path().join("ca.pem")).unwrap();
    std::fs::remove_file(state.path().join("edge.key")).unwrap();

    let edge = DefaultEdge::start(state.path(), dns);
    let origin = edge.event("local_pki");
    assert_eq!(origin["level"], "warn");
    let text = origin["text"].as_str().unwrap();
    assert!(text.contains("(edge.key is missing)"), "{text}");
    assert_ne!(
        std::fs::read(state.path().join("ca.pem")).unwrap(),
        ca_before,
        "a new CA"
    );
    let (client, ca) = local_client(state.path());
    options_is_refused_with_1008(&edge, &client, &ca);
}

fn send(state: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(sipedge_tests::sipedge_bin());
    without_sipedge_env(&mut cmd);
    cmd.arg("send")
        .args(args)
        .env("SIPEDGE_STATE_DIR", state)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn send_without_flags_prints_the_answer_and_its_diagnostic() {
    let state = tempfile::tempdir().unwrap();
    let edge = DefaultEdge::start(state.path(), nxdomain_dns());
    let out = send(state.path(), &["--timeout-ms", "10000"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a non-2xx final answer\n{stdout}\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "OPTIONS sip:bob@partner.example -> {} (TLS as localhost, server localhost)",
                edge.internal
            )
            .as_str(),
            "SIP/2.0 504 Server Time-out",
            "ms-diagnostics: 1008;reason=\"Unable to resolve DNS SRV record\";source=\"localhost\";domain=\"partner.example\"",
        ],
        "{stderr}"
    );

    // The edge's own domain, as a MESSAGE: refused by policy at once.
    let out = send(
        state.path(),
        &["--method", "MESSAGE", "--to", "sip:bob@localhost"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("\nSIP/2.0 403 Forbidden\nms-diagnostics: 1017;"),
        "{stdout}"
    );

    drop(edge);
    let out = send(state.path(), &["--timeout-ms", "3000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "no edge: no answer\n{stderr}");
    assert!(stderr.contains("cannot connect to"), "{stderr}");
}

#[test]
fn send_without_a_local_pki_says_where_it_looked() {
    let state = tempfile::tempdir().unwrap();
    let out = send(state.path(), &["--edge", "127.0.0.1:9"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&state.path().join("client.pem").display().to_string())
            && stderr.contains("$SIPEDGE_STATE_DIR")
            && stderr.contains("--cert"),
        "{stderr}"
    );
}

/// A front end and the pinned partner, both answering 200 to all but ACK.
fn answering_peers(pki: &TestPki) -> (TlsUas, TlsUas) {
    let ok = |m: &sip_codec::Message<'_>| match m.method() {
        Some("ACK") => vec![],
        _ => vec![reply(m, 200, "OK", Some("b1"))],
    };
    (
        TlsUas::start(&pki.fe, &pki.internal_ca.cert, ok),
        TlsUas::start(&pki.partner, &pki.internal_ca.cert, ok),
    )
}

/// With flags, `send` is a known server's client of any edge: a front end of the proxy scenarios
/// sends a MESSAGE to the pinned partner, which answers 200 → exit 0.
#[test]
fn send_with_flags_reaches_a_partner_and_exits_0_on_2xx() {
    let pki = TestPki::new();
    let (fe_uas, partner) = answering_peers(&pki);
    let edge = Edge::start(&EdgeOpts::new(fe_uas.port(), partner.port()).render(&pki), &pki);
    let state = tempfile::tempdir().unwrap();
    let (addr, cert, key, ca) = (
        edge.internal_addr.to_string(),
        pki.fe.cert_file.display().to_string(),
        pki.fe.key_file.display().to_string(),
        pki.internal_ca.file.display().to_string(),
    );
    let out = send(
        state.path(),
        &[
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
            "--method",
            "message",
            "--to",
            "sip:bob@partner.test",
            "--from",
            "sip:alice@corp.test",
            "--body",
            "hello partner",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{stderr}\n{}",
        edge.log_dump()
    );
    assert!(stdout.contains("\nSIP/2.0 200 OK\n"), "{stdout}");
    let fwd = partner
        .wait_request(WAIT, |m| sip::method(m) == "MESSAGE")
        .unwrap();
    assert_eq!(p(&fwd).body(), b"hello partner", "{fwd}");
    assert!(
        std::fs::read_dir(state.path()).unwrap().next().is_none(),
        "no state written by send"
    );
}

/// `send --config` is a client of the edge that file configures (its listener, name, domain and
/// internal certificate); a certificate that names no known server is told why the edge closed;
/// a From outside the edge's domains (1907) gets the flag to give.
#[test]
fn send_with_config_and_the_reasons_it_can_be_refused() {
    let pki = TestPki::new();
    let (fe_uas, partner) = answering_peers(&pki);
    let config = format!(
        "{}\n[[internal.known_servers]]\nfqdn = \"edge-int.corp.test\"\nversion = 0\n",
        EdgeOpts::new(fe_uas.port(), partner.port()).render(&pki)
    );
    let edge = Edge::start(&config, &pki);
    let state = tempfile::tempdir().unwrap();
    let cfg = edge.config_path.display().to_string();
    let addr = edge.internal_addr.to_string();
    let out = send(
        state.path(),
        &[
            "--config",
            &cfg,
            "--edge",
            &addr,
            "--method",
            "message",
            "--to",
            "sip:bob@partner.test",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", edge.log_dump());
    assert!(
        stdout.contains("(TLS as edge-int.corp.test, server edge-int.corp.test)"),
        "{stdout}"
    );
    let fwd = partner
        .wait_request(WAIT, |m| sip::method(m) == "MESSAGE")
        .unwrap();
    assert!(fwd.contains("From: <sip:alice@corp.test>"), "{fwd}");

    let flags = |who: &support::pki::Identity| {
        vec![
            "--edge".to_owned(),
            addr.clone(),
            "--fqdn".to_owned(),
            "edge-int.corp.test".to_owned(),
            "--cert".to_owned(),
            who.cert_file.display().to_string(),
            "--key".to_owned(),
            who.key_file.display().to_string(),
            "--ca".to_owned(),
            pki.internal_ca.file.display().to_string(),
            "--timeout-ms".to_owned(),
            "5000".to_owned(),
        ]
    };
    // A certificate of the internal CA that names no known server.
    let laptop = flags(&pki.laptop);
    let out = send(
        state.path(),
        &laptop.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("names no known server")
            && stderr.contains("internal_peer_not_known_server")
            && stderr.contains("[[internal.known_servers]] fqdn = \"laptop.corp.test\""),
        "{stderr}"
    );
    assert!(
        edge.wait_log("internal_peer_not_known_server", WAIT).is_some(),
        "the edge's log says the same\n{}",
        edge.log_dump()
    );
    // A known server without --from: the embedded default's domain is not this edge's.
    let fe = flags(&pki.fe);
    let out = send(state.path(), &fe.iter().map(String::as_str).collect::<Vec<_>>());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("ms-diagnostics: 1907;")
            && stdout.contains("hint: the edge accepts From URIs of its own edge.sip_domains only"),
        "{stdout}"
    );
}

/// Help reads in a terminal: every line of the top-level and each subcommand's `--help` fits in
/// 100 columns (clap wraps; one-line summaries at the top level), and decode's help states its exit
/// codes.
#[test]
fn help_fits_in_100_columns_and_decode_says_its_exit_codes() {
    let bin = sipedge_tests::sipedge_bin();
    let sub = [
        "run",
        "reload",
        "explain-route",
        "send",
        "test-push",
        "decode",
        "check-config",
    ];
    for args in std::iter::once(vec!["--help"]).chain(sub.iter().map(|s| vec![*s, "--help"])) {
        let out = Command::new(&bin)
            .args(&args)
            .env("COLUMNS", "300")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            assert!(
                line.chars().count() <= 100,
                "{args:?}: {} columns: {line}",
                line.chars().count()
            );
        }
        if args == ["decode", "--help"] {
            assert!(text.contains("Exit 0 when it decoded; 1 when not"), "{text}");
        }
    }
}

/// A `run` whose addresses are all held by another process names every one, in the order the
/// listeners are printed (internal first, as the README shows), and does not start.
#[test]
fn every_busy_listen_address_is_named_internal_first() {
    let held: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addr = |i: usize| held[i].local_addr().unwrap().to_string();
    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(sipedge_tests::sipedge_bin());
    without_sipedge_env(&mut cmd);
    let out = cmd
        .arg("run")
        .env("SIPEDGE_STATE_DIR", state.path())
        .env("SIPEDGE__INTERNAL__LISTEN", addr(0))
        .env("SIPEDGE__EXTERNAL__LISTEN", addr(1))
        .env("SIPEDGE__METRICS__LISTEN", addr(2))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
    let failed: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "listen_failed")
        .map(|e| e["text"].as_str().unwrap().to_owned())
        .collect();
    let roles = ["internal", "external", "metrics"];
    assert_eq!(failed.len(), 3, "{failed:?}");
    for (i, (text, role)) in failed.iter().zip(roles).enumerate() {
        assert!(
            text.contains(&format!(
                "{role} listener {}: address already in use by another process",
                addr(i)
            )),
            "{text}"
        );
    }
}

/// `sipedge health` (issue 18: a container health check without curl) against the real edge:
/// 0 on 200 (the embedded default's metrics.listen, found through the same environment as `run`),
/// 1 on another answer, 2 when nothing answers.
#[test]
fn health_asks_the_edges_own_endpoint() {
    let port = support::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(sipedge_tests::sipedge_bin());
    without_sipedge_env(&mut cmd);
    let mut edge = cmd
        .arg("run")
        .env("SIPEDGE_STATE_DIR", state.path())
        .env("SIPEDGE__INTERNAL__LISTEN", "127.0.0.1:0")
        .env("SIPEDGE__EXTERNAL__LISTEN", "127.0.0.1:0")
        .env("SIPEDGE__METRICS__LISTEN", &metrics)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let health = |args: &[&str]| {
        let mut cmd = Command::new(sipedge_tests::sipedge_bin());
        without_sipedge_env(&mut cmd);
        let out = cmd
            .arg("health")
            .args(args)
            .env("SIPEDGE__METRICS__LISTEN", &metrics)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let deadline = Instant::now() + WAIT;
    let (code, text) = loop {
        let r = health(&[]);
        if r.0 == Some(0) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(text.trim(), format!("healthy: {metrics}/healthz answered 200 ok"));
    let (code, text) = health(&["--url", &format!("http://{metrics}/readyz")]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = health(&["--url", &format!("http://{metrics}/nothing-here")]);
    assert_eq!(
        (code, text.starts_with("not healthy:") && text.contains("404")),
        (Some(1), true),
        "{text}"
    );
    let _ = edge.kill();
    let _ = edge.wait();
    let (code, text) = health(&[]);
    assert_eq!(
        (code, text.starts_with("no answer: cannot connect to")),
        (Some(2), true),
        "{text}"
    );
    let (code, text) = health(&["--url", "https://x"]);
    assert_eq!((code, text.starts_with("no answer:")), (Some(2), true), "{text}");
}
