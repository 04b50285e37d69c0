//! [`RedisServer`]: a real Redis for the pool tests — Debian's `redis-server` in the foreground on
//! 127.0.0.1:<free port>, no persistence, optionally with a password (`requirepass`). Killed (the
//! child we started) on drop; [`RedisServer::kill`] and [`RedisServer::restart`] for the tests
//! where Redis goes away mid-run and comes back on the same port. Readiness: `PING` answered,
//! bounded.
//!
//! Included by the test targets that need it with `#[path = "support/redis.rs"] mod redis;`.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
    /// `--tls-port` with this certificate, key and CA (the plain port stays, for [`RedisServer::command`]).
    tls: Option<Tls>,
}

struct Tls {
    port: u16,
    cert: String,
    key: String,
    ca: String,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port and waits until it answers.
    pub fn start(password: Option<&str>) -> RedisServer {
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            password: password.map(str::to_owned),
            dir: tempfile::tempdir().unwrap(),
            tls: None,
        };
        r.restart();
        r
    }

    /// [`RedisServer::start`] also listening for TLS (`rediss://localhost:<tls_port>`) with `cert`
    /// and `key` (a certificate for `localhost`); clients are not asked for a certificate.
    pub fn start_tls(password: Option<&str>, cert: &Path, key: &Path, ca: &Path) -> RedisServer {
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            password: password.map(str::to_owned),
            dir: tempfile::tempdir().unwrap(),
            tls: Some(Tls {
                port: free_port(),
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                ca: ca.display().to_string(),
            }),
        };
        r.restart();
        r
    }

    /// `rediss://localhost:<tls port>` (panics without TLS).
    pub fn tls_url(&self) -> String {
        format!("rediss://localhost:{}", self.tls.as_ref().unwrap().port)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// SIGKILL: Redis gone at once, nothing flushed.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it (again) on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &self.dir.path().display().to_string(),
        ]);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        if let Some(t) = &self.tls {
            cmd.args([
                "--tls-port",
                &t.port.to_string(),
                "--tls-cert-file",
                &t.cert,
                "--tls-key-file",
                &t.key,
                "--tls-ca-cert-file",
                &t.ca,
                "--tls-auth-clients",
                "no",
            ]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): apt-get install redis-server"));
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.command(&["PING"]).is_some_and(|r| r.starts_with("+PONG")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {} never answered PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One command (after AUTH when a password is set); the raw RESP answer, `None` if Redis is
    /// unreachable.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).ok()?;
        let mut wire = Vec::new();
        let mut push = |args: &[&str]| {
            wire.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                wire.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
        };
        if let Some(p) = &self.password {
            push(&["AUTH", p]);
        }
        push(args);
        s.write_all(&wire).ok()?;
        // The answer is whatever arrived until the connection stays quiet for 100 ms (bounded).
        s.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) if !got.is_empty() => break,
                Err(_) => {}
            }
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        Some(match self.password {
            Some(_) => text
                .split_once("\r\n")
                .map_or(text.clone(), |(_, rest)| rest.to_owned()),
            None => text,
        })
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
