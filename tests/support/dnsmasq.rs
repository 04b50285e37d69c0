//! [`Dnsmasq`]: a real DNS server on loopback for the federation tests — `dnsmasq` in the foreground
//! on 127.0.0.1:<free port>, answering only from its command line (`--srv-host`, `--host-record`):
//! no upstream, no /etc/hosts, no resolv.conf, and every other name NXDOMAIN (`--local=/#/`, so a
//! missing SRV record is a clean "no record", not REFUSED). Its query log is kept for assertion
//! messages. Killed (the child we started, by its own handle) on drop. Readiness: a hand-built
//! UDP DNS query, bounded.
//!
//! Included by the test targets that need it with `#[path = "support/dnsmasq.rs"] mod dnsmasq;`.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One record dnsmasq serves.
#[derive(Debug, Clone)]
pub enum Record {
    /// `_sipfederationtls._tcp.<domain> SRV <priority> <weight> <port> <target>`.
    FederationSrv {
        domain: String,
        target: String,
        port: u16,
        priority: u16,
        weight: u16,
    },
    /// `<name> A 127.0.0.1`.
    A { name: String },
}

impl Record {
    pub fn srv(domain: &str, target: &str, port: u16, priority: u16, weight: u16) -> Record {
        Record::FederationSrv {
            domain: domain.to_owned(),
            target: target.to_owned(),
            port,
            priority,
            weight,
        }
    }

    pub fn a(name: &str) -> Record {
        Record::A {
            name: name.to_owned(),
        }
    }

    fn arg(&self) -> String {
        match self {
            Record::FederationSrv {
                domain,
                target,
                port,
                priority,
                weight,
            } => format!("--srv-host=_sipfederationtls._tcp.{domain},{target},{port},{priority},{weight}"),
            Record::A { name } => format!("--host-record={name},127.0.0.1"),
        }
    }
}

pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Dnsmasq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dnsmasq")
            .field("addr", &self.addr)
            .field("pid", &self.child.id())
            .finish()
    }
}

const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// A loopback port free for UDP and TCP right now (dnsmasq binds both).
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port for dnsmasq");
}

/// A DNS query (RD set) for `name`, type `qtype`, id `id`.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

impl Dnsmasq {
    /// The push field's DNS: `_sipfederationtls._tcp.push.lync.com` → LyncOnline's
    /// `sipfed.online.lync.com` on `provider_port`, and its A record.
    pub fn lync_online(provider_port: u16) -> Dnsmasq {
        Dnsmasq::start(&[
            Record::srv("push.lync.com", "sipfed.online.lync.com", provider_port, 0, 0),
            Record::a("sipfed.online.lync.com"),
        ])
    }

    /// Starts dnsmasq serving `records` and waits (bounded) until it answers a query.
    pub fn start(records: &[Record]) -> Dnsmasq {
        let mut last_err = String::new();
        for _attempt in 0..3 {
            match Dnsmasq::try_start(records) {
                Ok(d) => return d,
                Err(e) => last_err = e,
            }
        }
        panic!("dnsmasq did not start: {last_err}");
    }

    fn try_start(records: &[Record]) -> Result<Dnsmasq, String> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new("dnsmasq");
        cmd.arg("--no-daemon")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg(format!("--port={port}"))
            .arg("--listen-address=127.0.0.1")
            .arg("--bind-interfaces")
            .arg("--conf-file=/dev/null")
            .arg(format!("--pid-file={}", dir.path().join("dnsmasq.pid").display()))
            .arg("--log-queries")
            .arg("--log-facility=-")
            // Every name not given here: NXDOMAIN from us, never forwarded (there is no upstream).
            .arg("--local=/#/");
        for r in records {
            cmd.arg(r.arg());
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            format!("cannot run dnsmasq ({e}); install it: apt-get install --no-install-recommends dnsmasq")
        })?;
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        for pipe in [
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line);
                }
            });
        }
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut d = Dnsmasq {
            child,
            addr,
            log,
            _dir: dir,
        };
        // Readiness: any answer to a query for a name we serve (or the root when none).
        let probe = records
            .iter()
            .find_map(|r| match r {
                Record::A { name } => Some(name.clone()),
                Record::FederationSrv { .. } => None,
            })
            .unwrap_or_else(|| "ready.probe".to_owned());
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut id: u16 = 0x5e00;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(format!("dnsmasq exited ({status}):\n{}", d.log_dump()));
            }
            id = id.wrapping_add(1);
            let _ = sock.send_to(&query(id, &probe, 1), addr);
            let mut buf = [0u8; 512];
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                if from == addr && n >= 12 && buf[..2] == id.to_be_bytes() {
                    return Ok(d);
                }
            }
        }
        Err(format!(
            "dnsmasq on {addr} did not answer within {READY_TIMEOUT:?}:\n{}",
            d.log_dump()
        ))
    }

    /// `[dns] servers` entry for the edge.
    pub fn server(&self) -> String {
        self.addr.to_string()
    }

    /// dnsmasq's log so far (one line per query and answer).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn log_dump(&self) -> String {
        self.log().join("\n")
    }

    /// Queries logged for `name` (`query[SRV] <name> from ...`).
    pub fn queries_for(&self, name: &str) -> usize {
        let needle = format!("] {name} from");
        self.log()
            .iter()
            .filter(|l| l.contains("query[") && l.contains(&needle))
            .count()
    }

    /// [`Dnsmasq::queries_for`] once it reaches `at_least`, or what it is after `timeout`: dnsmasq's
    /// log reaches us through a pipe and a reader thread, a little after the answer.
    pub fn wait_queries_for(&self, name: &str, at_least: usize, timeout: std::time::Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let n = self.queries_for(name);
            if n >= at_least || std::time::Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        // Only the process this value started, by its own handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- dnsmasq {} log ----\n{}\n---- end of dnsmasq log ----",
                self.addr,
                self.log_dump()
            );
        }
    }
}
