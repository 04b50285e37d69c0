//! [`Edge`]: the real `sipedge run --config FILE`, started on a generated configuration, its
//! listener addresses read from the contract lines on stdout (`listening <role> sip+tls <addr>`),
//! its stderr (JSON log records, one per line) kept for assertions. Dropped: SIGTERM (`kill`), a
//! bounded wait, then SIGKILL.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::pki::TestPki;

pub struct Edge {
    child: Child,
    pub internal_addr: SocketAddr,
    pub external_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
    pub config_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("internal_addr", &self.internal_addr)
            .field("external_addr", &self.external_addr)
            .finish()
    }
}

const START_TIMEOUT: Duration = Duration::from_secs(10);

impl Edge {
    /// Writes `config_toml`, starts the edge on it and waits (10 s at most) for both listeners.
    pub fn start(config_toml: &str, pki: &TestPki) -> Edge {
        Edge::start_with(config_toml, pki, None)
    }

    /// [`Edge::start`] with the soft open-file limit lowered to `soft` for the edge process
    /// (`ulimit -Sn` in a shell that then `exec`s it, so the pid is the edge's).
    pub fn start_with_soft_nofile(config_toml: &str, pki: &TestPki, soft: u64) -> Edge {
        Edge::start_with(config_toml, pki, Some(soft))
    }

    fn start_with(config_toml: &str, _pki: &TestPki, soft_nofile: Option<u64>) -> Edge {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("sipedge.toml");
        std::fs::write(&config_path, config_toml).unwrap();
        Edge::launch(config_path, dir, soft_nofile, &[], &[])
    }

    /// [`Edge::start`] with environment variables set for the edge process (e.g. `SSL_CERT_FILE`,
    /// the trust store a `rediss://` pool verifies its Redis with).
    pub fn start_with_env(config_toml: &str, env: &[(&str, &str)]) -> Edge {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("sipedge.toml");
        std::fs::write(&config_path, config_toml).unwrap();
        Edge::launch(config_path, dir, None, &[], env)
    }

    /// `sipedge run --config <config_path> <args…>` on a file the caller laid out (e.g. a
    /// kubelet-style mount of symlinks); `dir` lives as long as the edge.
    pub fn start_at(config_path: &std::path::Path, dir: tempfile::TempDir, args: &[&str]) -> Edge {
        Edge::launch(config_path.to_path_buf(), dir, None, args, &[])
    }

    fn launch(
        config_path: std::path::PathBuf,
        dir: tempfile::TempDir,
        soft_nofile: Option<u64>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Edge {
        let config_toml = std::fs::read_to_string(&config_path).unwrap_or_default();
        let bin = sipedge_tests::sipedge_bin();
        let mut cmd = match soft_nofile {
            None => Command::new(&bin),
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -Sn {n} && exec \"$0\" \"$@\""))
                    .arg(&bin);
                c
            }
        };
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name
                .to_string_lossy()
                .to_ascii_uppercase()
                .starts_with("SIPEDGE__")
            {
                cmd.env_remove(name);
            }
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); build it first: cargo build -p sipedge",
                bin.display()
            )
        });
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let stdout_lines: Arc<Mutex<Vec<String>>> = Arc::default();
        {
            let err = child.stderr.take().unwrap();
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let (tx, rx) = mpsc::channel::<String>();
        {
            let out = child.stdout.take().unwrap();
            let stdout_lines = Arc::clone(&stdout_lines);
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    stdout_lines.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut internal, mut external, mut metrics) = (None, None, None);
        while internal.is_none() || external.is_none() || metrics.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    match words.as_slice() {
                        ["listening", "internal", "sip+tls", a] => internal = a.parse().ok(),
                        ["listening", "external", "sip+tls", a] => external = a.parse().ok(),
                        ["metrics", "http", a] => metrics = a.parse().ok(),
                        _ => {}
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(200));
                    let status = child.try_wait().ok().flatten();
                    panic!(
                        "sipedge run exited before listening ({status:?});\nstdout: {:?}\nstderr:\n{}\nconfig:\n{config_toml}",
                        stdout_lines.lock().unwrap(),
                        logs.lock().unwrap().join("\n")
                    );
                }
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sipedge run did not print its listening and metrics lines within {START_TIMEOUT:?};\nstdout: {:?}\nstderr:\n{}",
                    stdout_lines.lock().unwrap(),
                    logs.lock().unwrap().join("\n")
                );
            }
        }
        // `metrics http <addr>` comes after the listener lines (docs/architecture.md, Logging).
        // The edge writes its start-up records before those lines; stderr is read by a thread of
        // its own, so wait (bounded) until it has caught up to the last of them, for tests that
        // look at start-up records at once.
        let caught_up = Instant::now() + START_TIMEOUT;
        while !logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("\"event\":\"tls_provider\""))
            && Instant::now() < caught_up
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        Edge {
            child,
            internal_addr: internal.unwrap(),
            external_addr: external.unwrap(),
            metrics_addr: metrics,
            logs,
            stdout: stdout_lines,
            config_path,
            _dir: dir,
        }
    }

    /// The stderr lines so far (JSON log records).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Log lines containing `needle`.
    pub fn logs_with(&self, needle: &str) -> Vec<String> {
        self.logs().into_iter().filter(|l| l.contains(needle)).collect()
    }

    /// The log records whose `event` is `event`, parsed.
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.logs_with(&format!("\"event\":\"{event}\""))
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Waits (bounded by `timeout`) for the `n`-th (1-based) record of `event`; panics without.
    pub fn wait_event(&self, event: &str, n: usize, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.events(event).into_iter().nth(n.saturating_sub(1)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no {event} #{n} within {timeout:?}\n{}",
                self.log_dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.logs_with(needle).into_iter().next() {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The edge's stderr, for assertion messages.
    pub fn log_dump(&self) -> String {
        self.logs().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGHUP (`kill -HUP`), then waits (bounded) for the `reload_applied` record (panics without).
    pub fn reload_applied(&self, timeout: Duration) -> String {
        let before = self.logs_with("reload_applied").len();
        let ok = Command::new("kill")
            .arg("-HUP")
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -HUP {} failed", self.pid());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.logs_with("reload_applied").into_iter().nth(before) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no reload_applied within {timeout:?}:\n{}",
                self.log_dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, up to `grace` for the exit, then SIGKILL. The exit status if it exited by itself.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(s)) = self.child.try_wait() {
            return Some(s);
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
        if std::thread::panicking() {
            eprintln!(
                "---- sipedge stderr ({} lines) ----\n{}\n---- end of sipedge stderr ----",
                self.logs().len(),
                self.log_dump()
            );
        }
    }
}
