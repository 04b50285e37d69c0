//! Issue 4's interop acceptance: the real `sipedge run` between two real Kamailio 5.6 proxies, driven
//! by SIPp (Debian `sip-tester`), all on 127.0.0.1 with ports picked at run time:
//!
//! ```text
//! SIPp UAC --TCP--> Kamailio "FE" --mTLS--> sipedge internal | sipedge external --mTLS--> Kamailio
//! "partner edge" --TCP--> SIPp UAS
//! ```
//!
//! and back for in-dialog requests from the UAS side (NOTIFY, BYE): partner Kamailio → sipedge
//! external → internal next hop (the FE Kamailio's TLS listener) → SIPp UAC.
//!
//! Every TLS server is named `localhost` (certificates with SAN localhost from a PKI made here with
//! rcgen): sipedge checks the dialled name exactly against the peer's SAN, and Kamailio must resolve
//! the Record-Route hosts sipedge inserts (`localhost:<port>`) and the ones it advertises itself.
//! sipedge requires client certificates on both listeners: the FE presents one from the CA of
//! `internal.ca_file` (SAN localhost, the known server), the partner one from the CA of
//! `external.ca_file` (SAN localhost, the pinned `proxy_fqdn` of `partner.test`).
//!
//! The Kamailio configuration and the SIPp scenarios are files under `tests/interop/`. Needs
//! `kamailio`, `kamailio-tls-modules` and `sip-tester`: `scripts/test.sh` installs them.
//! The three tests share the machine's two cores, so they run one at a time.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

// Only the edge process and the harness PKI type are used here; the rest of the harness re-exports
// would warn.
#[allow(unused_imports)]
mod support;

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use support::{Edge, TestPki};

/// One chain at a time: the throughput figure must not share the two cores with another chain.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

// ---------------------------------------------------------------------------------------------
// The tools

struct Tools {
    kamailio: PathBuf,
    sipp: PathBuf,
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// kamailio (with its tls module) and sipp, or a failure that says how to get them.
fn tools() -> Tools {
    const HINT: &str = "run scripts/test.sh, which installs the Debian packages kamailio, \
                        kamailio-tls-modules and sip-tester";
    let kamailio = find_tool("kamailio")
        .unwrap_or_else(|| panic!("kamailio is not installed (the interop test drives it): {HINT}"));
    let sipp = find_tool("sipp")
        .unwrap_or_else(|| panic!("sipp is not installed (the interop test drives it): {HINT}"));
    // The tls module is a package of its own.
    let info = Command::new(&kamailio)
        .arg("-I")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} -I: {e}", kamailio.display()));
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    if let Some(mpath) = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Default paths to modules:"))
    {
        let has_tls = mpath
            .split(':')
            .any(|d| Path::new(d.trim()).join("tls.so").is_file());
        assert!(
            has_tls,
            "kamailio's tls module (tls.so) is not in {mpath}: {HINT}"
        );
    }
    Tools { kamailio, sipp }
}

// ---------------------------------------------------------------------------------------------
// The PKI: everything is `localhost`

struct Leaf {
    cert: PathBuf,
    key: PathBuf,
}

struct Pki {
    /// Issues sipedge's two listener certificates and the FE's (internal.ca_file).
    corp_ca: PathBuf,
    /// Issues the partner edge's certificate (external.ca_file).
    partner_ca: PathBuf,
    edge: Leaf,
    fe: Leaf,
    partner: Leaf,
}

struct CaKey {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn make_ca(dir: &Path, file: &str, cn: &str) -> (CaKey, PathBuf) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let path = dir.join(file);
    fs::write(&path, cert.pem()).unwrap();
    (
        CaKey {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        },
        path,
    )
}

/// A `localhost` certificate (chain: leaf then CA) and its key (PKCS#8 PEM) issued by `ca`.
fn make_leaf(dir: &Path, ca: &CaKey, file: &str, cn: &str) -> Leaf {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let leaf = Leaf {
        cert: dir.join(format!("{file}.crt")),
        key: dir.join(format!("{file}.key")),
    };
    fs::write(&leaf.cert, format!("{}{}", cert.pem(), ca.pem)).unwrap();
    fs::write(&leaf.key, key.serialize_pem()).unwrap();
    leaf
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let (corp, corp_ca) = make_ca(dir, "corp-ca.pem", "sipedge interop corp CA");
        let (partner, partner_ca) = make_ca(dir, "partner-ca.pem", "sipedge interop partner CA");
        Pki {
            edge: make_leaf(dir, &corp, "edge", "sipedge (localhost)"),
            fe: make_leaf(dir, &corp, "fe", "FE Kamailio (localhost)"),
            partner: make_leaf(dir, &partner, "partner", "partner Kamailio (localhost)"),
            corp_ca,
            partner_ca,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ports and processes

/// `n` distinct free loopback ports (the listeners are held until all are picked).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// Whether something listens on 127.0.0.1:`port` (TCP), from /proc/net/tcp, without connecting.
fn listening(port: u16) -> bool {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let want = format!("0100007F:{port:04X}");
    let any = format!("00000000:{port:04X}");
    table.lines().skip(1).any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.len() > 3 && (cols[1] == want || cols[1] == any) && cols[3] == "0A"
    })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// One Kamailio (`kamailio -DD -E`, foreground, in its own process group: its children go with it).
struct Kamailio {
    role: &'static str,
    child: Child,
    log: PathBuf,
    cfg: PathBuf,
}

struct KamailioSpec<'a> {
    role: &'static str,
    tcp_port: u16,
    tls_port: u16,
    /// Where initial requests from the TCP side go ("" = refuse them).
    tls_target: String,
    /// Where initial requests from the TLS side go ("" = refuse them).
    tcp_target: String,
    leaf: &'a Leaf,
    /// The CA of sipedge's certificates.
    ca: &'a Path,
}

impl Kamailio {
    fn start(tools: &Tools, dir: &Path, spec: &KamailioSpec<'_>) -> Kamailio {
        let role = spec.role;
        let template = |name: &str| fs::read_to_string(interop_dir().join(name)).unwrap();
        let tls_cfg = dir.join(format!("{role}-tls.cfg"));
        let tls = template("kamailio-tls.cfg.in")
            .replace("@CERT@", &spec.leaf.cert.display().to_string())
            .replace("@KEY@", &spec.leaf.key.display().to_string())
            .replace("@CA@", &spec.ca.display().to_string());
        fs::write(&tls_cfg, tls).unwrap();
        let cfg = dir.join(format!("{role}.cfg"));
        let text = template("kamailio.cfg.in")
            .replace("@ROLE@", role)
            .replace("@TCP_PORT@", &spec.tcp_port.to_string())
            .replace("@TLS_PORT@", &spec.tls_port.to_string())
            .replace("@TLS_CFG@", &tls_cfg.display().to_string())
            .replace("@TLS_TARGET@", &spec.tls_target)
            .replace("@TCP_TARGET@", &spec.tcp_target);
        fs::write(&cfg, text).unwrap();
        let log = dir.join(format!("{role}.log"));
        let workdir = dir.join(format!("{role}-run"));
        fs::create_dir_all(&workdir).unwrap();
        // 256 MB of shared memory: tm keeps every transaction for its wait timer (5 s) after the
        // final response, so at ~2,500 MESSAGE/s the partner holds >10,000 of them, with its TLS
        // buffers; 64 MB ran out (tls: "not enough memory for safe operation") within seconds.
        let child = Command::new(&tools.kamailio)
            .args(["-DD", "-E", "-m", "256", "-M", "8", "-f"])
            .arg(&cfg)
            .arg("-w")
            .arg(&workdir)
            .arg("-Y")
            .arg(&workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                fs::File::create(dir.join(format!("{role}.out"))).unwrap(),
            ))
            .stderr(Stdio::from(fs::File::create(&log).unwrap()))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", tools.kamailio.display()));
        let mut k = Kamailio {
            role,
            child,
            log,
            cfg,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(listening(spec.tcp_port) && listening(spec.tls_port)) {
            if let Ok(Some(status)) = k.child.try_wait() {
                panic!(
                    "kamailio {role} exited at start ({status}); is kamailio-tls-modules installed \
                     (scripts/test.sh)?\nconfig {}\nlog:\n{}",
                    k.cfg.display(),
                    tail(&k.log, 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "kamailio {role} not listening on tcp {} and tls {} within 10 s; log:\n{}",
                spec.tcp_port,
                spec.tls_port,
                tail(&k.log, 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        k
    }

    /// Log lines at ERROR level or worse.
    fn errors(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ERROR:") || l.contains("CRITICAL:") || l.contains("ALERT:"))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let pgid = self.child.id();
        if let Ok(None) = self.child.try_wait() {
            signal_group(pgid, "TERM");
            if wait_bounded(&mut self.child, Duration::from_secs(3)).is_none() {
                signal_group(pgid, "KILL");
                let _ = self.child.wait();
            }
        }
        // Children that outlived the main process (they are in its group).
        signal_group(pgid, "KILL");
        if std::thread::panicking() {
            eprintln!(
                "---- kamailio {} log (last 60 lines of {}) ----\n{}\n---- end of kamailio {} log ----",
                self.role,
                self.log.display(),
                tail(&self.log, 60),
                self.role
            );
        }
    }
}

/// Waits at most `timeout` for `child` (`None` past it; the child is left alone).
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// SIPp

/// One SIPp process (TCP, one socket: `-t t1`), killed on drop.
struct Sipp {
    name: String,
    child: Child,
    started: Instant,
    stdout: PathBuf,
    errors: PathBuf,
}

/// The outcome of a finished SIPp: exit status (`None`: it had to be stopped), the final
/// statistics' cumulative counters, the time from its start.
#[derive(Debug)]
struct SippResult {
    status: Option<ExitStatus>,
    elapsed: Duration,
    successful: Option<u64>,
    failed: Option<u64>,
}

impl Sipp {
    /// Runs `tests/interop/<name>.xml`. `remote`: the UAC's target (`None` for a UAS).
    /// `timeout_s`: SIPp's own global timeout (it fails past it); the test waits a little longer
    /// before killing it.
    fn start(
        tools: &Tools,
        dir: &Path,
        name: &str,
        local_port: u16,
        remote: Option<u16>,
        extra: &[&str],
        timeout_s: u64,
    ) -> Sipp {
        let stdout = dir.join(format!("{name}.out"));
        let errors = dir.join(format!("{name}_errors.log"));
        let mut cmd = Command::new(&tools.sipp);
        if let Some(port) = remote {
            cmd.arg(format!("127.0.0.1:{port}"));
        }
        cmd.arg("-sf")
            .arg(interop_dir().join(format!("{name}.xml")))
            .args(["-t", "t1", "-i", "127.0.0.1", "-p"])
            .arg(local_port.to_string())
            // A failed call is a failure, not a reason for SIPp to send BYE or CANCEL.
            .args(["-nostdin", "-default_behaviors", "none", "-timeout"])
            .arg(format!("{timeout_s}s"))
            .args([
                "-timeout_error",
                "-recv_timeout",
                "15000",
                "-trace_err",
                "-error_file",
            ])
            .arg(&errors)
            .args(extra)
            .current_dir(dir);
        // SIPEDGE_INTEROP_TRACE=1: every message SIPp sends and receives, in <scenario>_<pid>_messages.log
        // (with SIPEDGE_INTEROP_KEEP=1 to read it afterwards).
        if std::env::var_os("SIPEDGE_INTEROP_TRACE").is_some() {
            cmd.arg("-trace_msg");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(fs::File::create(&stdout).unwrap()))
            .stderr(Stdio::from(
                fs::File::create(dir.join(format!("{name}.err"))).unwrap(),
            ));
        let started = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", tools.sipp.display()));
        Sipp {
            name: name.to_owned(),
            child,
            started,
            stdout,
            errors,
        }
    }

    /// Waits (bounded) until the UAS listens.
    fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listening(port) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sipp {} exited at start ({status}):\n{}",
                    self.name,
                    self.report()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sipp {} not listening on {port} within 10 s",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for SIPp to exit; past `timeout` stops it with SIGTERM (it prints its final
    /// statistics), then SIGKILL.
    fn finish(&mut self, timeout: Duration) -> SippResult {
        let status = wait_bounded(&mut self.child, timeout);
        let elapsed = self.started.elapsed();
        if status.is_none() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let _ = wait_bounded(&mut self.child, Duration::from_secs(3));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let out = fs::read_to_string(&self.stdout).unwrap_or_default();
        SippResult {
            status,
            elapsed,
            successful: last_counter(&out, "Successful call"),
            failed: last_counter(&out, "Failed call"),
        }
    }

    /// The end of SIPp's screen output and its error log, for assertion messages.
    fn report(&self) -> String {
        format!(
            "---- sipp {} screen (end) ----\n{}\n---- sipp {} error log {} ----\n{}\n---- sipp {} stderr ----\n{}",
            self.name,
            tail(&self.stdout, 45),
            self.name,
            self.errors.display(),
            tail(&self.errors, 60),
            self.name,
            tail(&self.stdout.with_extension("err"), 20),
        )
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The cumulative column of the last `  <label> | periodic | cumulative` statistics line.
fn last_counter(screen: &str, label: &str) -> Option<u64> {
    screen
        .lines()
        .filter(|l| l.trim_start().starts_with(label))
        .filter_map(|l| l.rsplit('|').next()?.trim().parse().ok())
        .next_back()
}

// ---------------------------------------------------------------------------------------------
// The chain

/// sipedge between the two Kamailios. Fields drop in order: the edge first (its stderr is printed if
/// the test panicked), then the Kamailios (their logs too), then the files.
struct Chain {
    edge: Edge,
    fe: Kamailio,
    partner: Kamailio,
    tools: Tools,
    fe_tcp: u16,
    uac_port: u16,
    uas_port: u16,
    _harness_pki: TestPki,
    dir: tempfile::TempDir,
}

fn edge_config(pki: &Pki, fe_tls: u16, partner_tls: u16) -> String {
    let p = |path: &Path| path.display().to_string();
    format!(
        r#"[edge]
fqdn = "localhost"
sip_domains = ["corp.test"]
workers = 2

[internal]
fqdn = "localhost"
listen = "127.0.0.1:0"
next_hop = "localhost:{fe_tls}"
cert_file = "{cert}"
key_file = "{key}"
ca_file = "{corp_ca}"

[[internal.known_servers]]
fqdn = "localhost"
version = "7.0"

[external]
listen = "127.0.0.1:0"
cert_file = "{cert}"
key_file = "{key}"
ca_file = "{partner_ca}"

[federation]
enable_partner_discovery = false

[[federation.allowed]]
domain = "partner.test"
proxy_fqdn = "localhost:{partner_tls}"

[dns]
servers = ["127.0.0.1:53"]

[[dns.hosts]]
name = "localhost"
ip = "127.0.0.1"

[metrics]
listen = "127.0.0.1:0"

[limits]
transaction_timeout_ms = 10000
connect_timeout_ms = 2000
"#,
        cert = p(&pki.edge.cert),
        key = p(&pki.edge.key),
        corp_ca = p(&pki.corp_ca),
        partner_ca = p(&pki.partner_ca),
    )
}

impl Chain {
    fn start() -> Chain {
        let tools = tools();
        // SIPEDGE_INTEROP_KEEP=1 keeps the configurations, logs and SIPp traces for a look.
        let keep = std::env::var_os("SIPEDGE_INTEROP_KEEP").is_some();
        let dir = tempfile::Builder::new()
            .prefix("sipedge-interop-")
            .disable_cleanup(keep)
            .tempdir()
            .unwrap();
        if keep {
            eprintln!("interop: keeping {}", dir.path().display());
        }
        let pki = Pki::new(dir.path());
        let ports = free_ports(6);
        let (fe_tcp, fe_tls, partner_tcp, partner_tls, uac_port, uas_port) =
            (ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]);
        // `Edge::start` wants the harness PKI; this chain uses its own `localhost` one.
        let harness_pki = TestPki::new();
        let config = edge_config(&pki, fe_tls, partner_tls);
        let edge = Edge::start(&config, &harness_pki);
        let fe = Kamailio::start(
            &tools,
            dir.path(),
            &KamailioSpec {
                role: "fe",
                tcp_port: fe_tcp,
                tls_port: fe_tls,
                tls_target: format!("sip:localhost:{};transport=tls", edge.internal_addr.port()),
                tcp_target: String::new(),
                leaf: &pki.fe,
                ca: &pki.corp_ca,
            },
        );
        let partner = Kamailio::start(
            &tools,
            dir.path(),
            &KamailioSpec {
                role: "partner",
                tcp_port: partner_tcp,
                tls_port: partner_tls,
                tls_target: String::new(),
                tcp_target: format!("sip:127.0.0.1:{uas_port};transport=tcp"),
                leaf: &pki.partner,
                ca: &pki.corp_ca,
            },
        );
        Chain {
            edge,
            fe,
            partner,
            tools,
            fe_tcp,
            uac_port,
            uas_port,
            _harness_pki: harness_pki,
            dir,
        }
    }

    /// The partner Kamailio stops (SIGTERM to its process group, bounded; then SIGKILL).
    fn stop_partner(&mut self) {
        let pgid = self.partner.child.id();
        signal_group(pgid, "TERM");
        if wait_bounded(&mut self.partner.child, Duration::from_secs(3)).is_none() {
            signal_group(pgid, "KILL");
            let _ = self.partner.child.wait();
        }
        signal_group(pgid, "KILL");
    }

    fn uas(&self, name: &str, calls: u64, timeout_s: u64) -> Sipp {
        let mut uas = Sipp::start(
            &self.tools,
            self.dir.path(),
            name,
            self.uas_port,
            None,
            &["-m", &calls.to_string()],
            timeout_s,
        );
        uas.wait_listening(self.uas_port);
        uas
    }

    fn uac(&self, name: &str, extra: &[&str], timeout_s: u64) -> Sipp {
        Sipp::start(
            &self.tools,
            self.dir.path(),
            name,
            self.uac_port,
            Some(self.fe_tcp),
            extra,
            timeout_s,
        )
    }

    /// Runs UAS and UAC to completion (bounded) and asserts both succeeded on every call; the time
    /// the UAC took.
    fn run(&self, what: &str, uac: &mut Sipp, uas: &mut Sipp, calls: u64, timeout_s: u64) -> Duration {
        let uac_result = uac.finish(Duration::from_secs(timeout_s + 15));
        let elapsed = uac_result.elapsed;
        let uas_result = uas.finish(Duration::from_secs(15));
        let ok = |r: &SippResult| {
            r.status.is_some_and(|s| s.success()) && r.successful == Some(calls) && r.failed == Some(0)
        };
        assert!(
            ok(&uac_result) && ok(&uas_result),
            "{what}: SIPp did not complete {calls} calls cleanly\nUAC: {uac_result:?}\nUAS: {uas_result:?}\n{}\n{}\n{}",
            uac.report(),
            uas.report(),
            self.edge_complaints().join("\n")
        );
        elapsed
    }

    /// sipedge's log records at warn or error level (but the start-up configuration warnings:
    /// this configuration has no push relay).
    fn edge_complaints(&self) -> Vec<String> {
        self.edge
            .logs()
            .into_iter()
            .filter(|l| l.contains("\"level\":\"error\"") || l.contains("\"level\":\"warn\""))
            .filter(|l| !l.contains("\"event\":\"config_warning\""))
            .collect()
    }

    /// No error-level record from sipedge, none from either Kamailio.
    fn assert_quiet(&self, what: &str) {
        let edge_errors: Vec<String> = self
            .edge
            .logs()
            .into_iter()
            .filter(|l| l.contains("\"level\":\"error\""))
            .collect();
        assert!(
            edge_errors.is_empty(),
            "{what}: sipedge logged errors:\n{}",
            edge_errors.join("\n")
        );
        let warns = self.edge_complaints();
        if !warns.is_empty() {
            eprintln!(
                "{what}: sipedge warnings ({}):\n{}",
                warns.len(),
                warns.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
            );
        }
        for k in [&self.fe, &self.partner] {
            let errors = k.errors();
            assert!(
                errors.is_empty(),
                "{what}: kamailio {} logged errors:\n{}",
                k.role,
                errors.join("\n")
            );
        }
    }
}

/// utime + stime of `pid` (all its threads), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which may hold spaces) start at field 3 (state).
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields[11].parse().unwrap();
    let stime: u64 = fields[12].parse().unwrap();
    utime + stime
}

fn clock_ticks_per_second() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The tests

/// 10,000 MESSAGE transactions through the chain, zero failures; prints the throughput and what
/// they cost sipedge in CPU (the README quotes this line).
#[test]
fn ten_thousand_messages_through_kamailio_sipedge_kamailio() {
    let _serial = serial();
    let chain = Chain::start();
    const N: u64 = 10_000;
    const TIMEOUT_S: u64 = 240;
    let mut uas = chain.uas("message_uas", N, TIMEOUT_S + 10);
    let ticks_before = cpu_ticks(chain.edge.pid());
    let mut uac = chain.uac(
        "message_uac",
        &["-m", &N.to_string(), "-r", "5000", "-l", "200"],
        TIMEOUT_S,
    );
    let elapsed = chain.run("MESSAGE", &mut uac, &mut uas, N, TIMEOUT_S);
    let ticks = cpu_ticks(chain.edge.pid()) - ticks_before;
    let hz = clock_ticks_per_second();
    let cpu_ms = ticks as f64 * 1000.0 / hz as f64;
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "interop: {N} MESSAGE in {secs:.2} s = {:.0} tx/s; sipedge CPU {cpu_ms:.0} ms = {:.1} µs per transaction",
        N as f64 / secs,
        cpu_ms * 1000.0 / N as f64
    );
    chain.assert_quiet("MESSAGE");
}

/// SUBSCRIBE → 200 ← NOTIFY (in-dialog from the partner side, through sipedge external → internal →
/// FE Kamailio) → 200, then an in-dialog unSUBSCRIBE along the route set and the final NOTIFY.
#[test]
fn subscribe_notify_dialog_crosses_the_chain_both_ways() {
    let _serial = serial();
    let chain = Chain::start();
    const N: u64 = 20;
    const TIMEOUT_S: u64 = 60;
    let mut uas = chain.uas("subscribe_uas", N, TIMEOUT_S + 10);
    let mut uac = chain.uac(
        "subscribe_uac",
        &["-m", &N.to_string(), "-r", "10", "-l", "5"],
        TIMEOUT_S,
    );
    chain.run("SUBSCRIBE/NOTIFY", &mut uac, &mut uas, N, TIMEOUT_S);
    chain.assert_quiet("SUBSCRIBE/NOTIFY");
}

/// Subscription liveness through real SIP stacks: the SIPp watcher subscribes through FE Kamailio,
/// sipedge and the partner Kamailio; once sipedge tracks the subscription the partner Kamailio is
/// stopped, and the watcher's next NOTIFY is the edge's terminating one (the scenario checks
/// `terminated;reason=deactivated` and `ms-diagnostics: 1912`), routed back through FE Kamailio.
#[test]
fn a_stopped_partner_kamailio_ends_the_sipp_watchers_subscription() {
    let _serial = serial();
    let mut chain = Chain::start();
    const TIMEOUT_S: u64 = 60;
    let mut uas = chain.uas("liveness_uas", 1, TIMEOUT_S + 10);
    let mut uac = chain.uac("liveness_uac", &["-m", "1"], TIMEOUT_S);
    // Wait until the edge tracks the subscription (its 200 passed), then stop the partner.
    let metrics = chain.edge.metrics_addr.expect("a metrics listener");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = support::http::get(metrics, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let tracked = body
            .lines()
            .filter(|l| l.starts_with("sipedge_subscriptions_active{"))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum::<f64>();
        if tracked >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edge never tracked the subscription\n{}\n{}",
            uac.report(),
            chain.edge_complaints().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = uas.finish(Duration::from_secs(5));
    let t0 = Instant::now();
    chain.stop_partner();
    let result = uac.finish(Duration::from_secs(TIMEOUT_S + 15));
    let took = t0.elapsed();
    assert!(
        result.status.is_some_and(|s| s.success())
            && result.successful == Some(1)
            && result.failed == Some(0),
        "the SIPp watcher did not get the terminating NOTIFY: {result:?}\n{}\n{}",
        uac.report(),
        chain.edge.logs().join("\n")
    );
    eprintln!("interop: SIPp watcher got NOTIFY terminated;reason=deactivated {took:?} after the partner Kamailio was stopped");
    assert!(
        chain
            .edge
            .wait_log("subscription_link_failed", Duration::from_secs(1))
            .is_some(),
        "the failed link is logged"
    );
}

/// INVITE → 180 → 200 → ACK along the Record-Route set (both Kamailios and sipedge's double
/// Record-Route), then BYE from the callee back through the chain → 200.
#[test]
fn invite_ack_bye_dialog_honours_record_route() {
    let _serial = serial();
    let chain = Chain::start();
    const N: u64 = 20;
    const TIMEOUT_S: u64 = 60;
    let mut uas = chain.uas("invite_uas", N, TIMEOUT_S + 10);
    let mut uac = chain.uac(
        "invite_uac",
        &["-m", &N.to_string(), "-r", "10", "-l", "5"],
        TIMEOUT_S,
    );
    chain.run("INVITE/ACK/BYE", &mut uac, &mut uas, N, TIMEOUT_S);
    chain.assert_quiet("INVITE/ACK/BYE");
}
