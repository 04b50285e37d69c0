//! A real Prometheus server (the Debian package `prometheus`) on loopback, scraping the edges under
//! test every second, optionally loading rule files (recording and alerting rules, evaluated every
//! second); its data in a temporary directory, killed on drop. Queried through its HTTP API.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http;

/// A Prometheus server scraping `targets` every second.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// A loopback port nothing listens on now (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    pub fn start(target: SocketAddr) -> Prometheus {
        Prometheus::start_with_rules(&[target], &[])
    }

    /// Scraping every target (job `sipedge`), evaluating `rule_files` every second.
    pub fn start_with_rules(targets: &[SocketAddr], rule_files: &[&Path]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let mut text = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: sipedge\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        if !rule_files.is_empty() {
            text.push_str("rule_files:\n");
            for f in rule_files {
                text.push_str(&format!("  - '{}'\n", f.display()));
            }
        }
        std::fs::write(&cfg, text).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start prometheus ({e}): install the Debian package `prometheus` (scripts/test.sh does)")
            });
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The result array of the instant query `q` (empty on an error answer).
    pub fn query(&self, q: &str) -> Result<Vec<serde_json::Value>, String> {
        let (code, body) = http::get(self.addr, &format!("/api/v1/query?query={}", http::encode(q)))
            .map_err(|e| e.to_string())?;
        let body = dechunk(&body);
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if code != 200 || v["status"] != "success" {
            return Err(body);
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The value of the instant query `q` once it returns one series whose value satisfies
    /// `pred` (scrapes are every second; bounded at 30 s).
    pub fn value_when(&self, q: &str, pred: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.query(q) {
                Ok(result) => {
                    let value = result
                        .first()
                        .and_then(|r| r["value"][1].as_str())
                        .and_then(|s| s.parse::<f64>().ok());
                    if let Some(x) = value.filter(|x| pred(*x)) {
                        return x;
                    }
                    last = format!("{result:?}");
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("Prometheus never had {q} as expected; last answer: {last}");
    }

    /// The alerts Prometheus holds now (pending or firing), from `/api/v1/alerts`.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let (_, body) = http::get(self.addr, "/api/v1/alerts").unwrap();
        let v: serde_json::Value = serde_json::from_str(&dechunk(&body)).unwrap();
        v["data"]["alerts"].as_array().cloned().unwrap_or_default()
    }
}

/// A body sent with `Transfer-Encoding: chunked` (Prometheus does for larger answers) put back
/// together; any other body unchanged.
fn dechunk(body: &str) -> String {
    let first = body.split("\r\n").next().unwrap_or_default();
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_hexdigit()) {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(after.get(..n).unwrap_or(after));
        rest = after.get(n..).unwrap_or_default().trim_start_matches("\r\n");
    }
    out
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
