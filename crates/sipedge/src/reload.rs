//! SIGHUP reload (issue 9): [`Reloader::reload`] reads and validates the whole configuration off the
//! event loops with the code `check-config` uses. Any error keeps the running configuration: every
//! error is logged (`reload_error`, one JSON line each), then `reload_failed` with the count. A valid
//! one has its differences logged (`reload_diff.rs`), each key only a restart applies refused with a
//! `restart_needed` line (old → new), the discovered-partner limiter set once for the edge, and a new
//! `edge_core::Runtime` (policy, timers, limits, TLS configs built here) handed to every worker;
//! `reload_applied` then carries the new configuration generation (1 at start, +1 per applied reload).
//! [`ReloadStatus`] is what the metrics and `/readyz` read. `sipedge reload` ([`send_hup`]) sends the
//! signal, like `kill -HUP <pid>`. `run --watch` (`watch.rs`) starts the same reload when a file
//! changes; the records name the [`Trigger`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_core::proxy::SharedDiscoveryLimiter;
use edge_core::shell::EdgeHandle;
use edge_core::{ProxyRuntime, Runtime};
use federation_policy::DiscoveryLimits;
use parking_lot::Mutex;
use serde_json::json;

use crate::config::local_pki::LocalPki;
use crate::config::{Config, Issue};
use crate::reload_diff::{self, Fixed};

/// How long a reload waits for every worker to apply the snapshot (a worker applies it between two
/// events, so this is only reached by a worker that is stuck).
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of the last reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    Ok,
    Failed,
}

impl ReloadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Failed => "failed",
        }
    }
}

/// What the last reload did, for the metrics, `/readyz` and `/status` (shared as [`SharedReloadStatus`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// The configuration generation running: 1 at start, +1 per applied reload.
    pub generation: u64,
    /// When the last reload (applied or failed) finished; `None` before the first.
    pub last_reload_unix_secs: Option<u64>,
    /// `Ok` at start.
    pub last_result: ReloadResult,
    /// Errors of the last failed reload; 0 after an applied one.
    pub last_error_count: usize,
    /// Their texts (the first [`KEPT_ERRORS`]), for the status page; empty after an applied one.
    pub last_errors: Vec<String>,
    /// Reloads applied and refused since start.
    pub applied: u64,
    pub failed: u64,
    /// Files `run --watch` follows (0 without it).
    pub watched_files: usize,
}

impl Default for ReloadStatus {
    fn default() -> Self {
        ReloadStatus {
            generation: 1,
            last_reload_unix_secs: None,
            last_result: ReloadResult::Ok,
            last_error_count: 0,
            last_errors: Vec::new(),
            applied: 0,
            failed: 0,
            watched_files: 0,
        }
    }
}

/// The errors of a refused reload the status page shows (all are logged).
pub const KEPT_ERRORS: usize = 20;

/// The reload status, written by the signal thread and read by whoever reports it.
pub type SharedReloadStatus = Arc<Mutex<ReloadStatus>>;

/// What a reload needs besides the edge: where the configuration comes from, the running one, and
/// what was fixed at start.
#[derive(Debug)]
pub struct Reloader {
    /// `None`: the embedded default.
    path: Option<PathBuf>,
    local_pki: Option<LocalPki>,
    fixed: Fixed,
    current: Config,
    limiter: Arc<SharedDiscoveryLimiter>,
    status: SharedReloadStatus,
    /// Told the facts of each applied configuration (the metrics' partners and certificates).
    observer: Option<Arc<crate::exporter::EdgeState>>,
    /// The edge's push relay: its retry and breaker settings follow the configuration.
    relay: Option<edge_core::proxy::push::SharedRelay>,
    /// What started the reload running now, for its records.
    trigger: Trigger,
}

/// What asked for a reload: SIGHUP (or `sipedge reload`), or `run --watch` seeing a file change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    Watch,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "signal",
            Trigger::Watch => "watch",
        }
    }
}

impl Reloader {
    pub fn new(
        path: Option<&Path>,
        local_pki: Option<LocalPki>,
        current: Config,
        limiter: Arc<SharedDiscoveryLimiter>,
    ) -> Reloader {
        Reloader {
            path: path.map(Path::to_path_buf),
            local_pki,
            fixed: Fixed::of(&current),
            current,
            limiter,
            status: SharedReloadStatus::default(),
            observer: None,
            relay: None,
            trigger: Trigger::Signal,
        }
    }

    /// `relay` takes the push settings of every configuration applied from now on (its breakers'
    /// state carries over).
    pub fn relay_with(&mut self, relay: edge_core::proxy::push::SharedRelay) {
        self.relay = Some(relay);
    }

    /// `state` hears the facts of every configuration applied from now on.
    pub fn observe_with(&mut self, state: Arc<crate::exporter::EdgeState>) {
        self.observer = Some(state);
    }

    /// The status the metrics and `/readyz` read.
    pub fn status(&self) -> SharedReloadStatus {
        Arc::clone(&self.status)
    }

    /// The files the running configuration was read from (`run --watch` follows them); empty for
    /// the embedded default.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        match &self.path {
            Some(p) => crate::watch::files_of(p, &self.current),
            None => Vec::new(),
        }
    }

    /// One reload, start to end (see the module comment), asked for by `trigger` (named in its
    /// `reload_applied` / `reload_failed` record). Never stops the edge.
    pub fn reload(&mut self, handle: &mut EdgeHandle, trigger: Trigger) {
        self.trigger = trigger;
        let loaded = match &self.path {
            Some(p) => Config::check(p),
            None => Config::check_embedded_default(),
        };
        let new = match loaded {
            Ok(c) => c,
            Err(invalid) => return self.failed(&invalid.errors),
        };
        let generation = self.status.lock().generation + 1;
        let runtime = match runtime(&new, self.local_pki.as_ref(), generation) {
            Ok(r) => r,
            Err(e) => return self.failed(&[e]),
        };
        for w in new.warnings() {
            log_record(json!({ "level": "warn", "event": "config_warning", "text": w.to_string() }));
        }
        // A larger limits.max_connections must still fit the open-file limit raised at start.
        let workers = handle.stats().heartbeats().len();
        if let Some(w) = crate::fd_limit::current()
            .and_then(|l| crate::fd_limit::shortfall_warning(new.limits().max_connections, workers, &l))
        {
            log_record(json!({ "level": "warn", "event": "fd_limit", "text": w }));
        }
        let refused = self.fixed.refused(&new);
        for r in &refused {
            log_record(json!({
                "level": "warn", "event": "restart_needed", "key": r.key, "old": r.old, "new": r.new,
                "text": format!(
                    "{}: {} → {}: restart needed; this key keeps its running value, the rest of the reload applies",
                    r.key, r.old, r.new
                ),
            }));
        }
        let changes = reload_diff::changes(&self.current, &new);
        for record in &changes {
            log_record(record.clone());
        }
        let discovery = new.policy().discovery().copied().unwrap_or_default();
        let before = self.limiter.limits();
        if self.limiter.set_limits(discovery) {
            log_record(discovery_changed(before, discovery));
        }
        let workers = handle.reload(Arc::new(runtime), APPLY_TIMEOUT);
        // Hosted providers the new configuration no longer has: their breakers go (a breaker keyed
        // by a hop's name, for a push routed to no provider, stays).
        let dropped: Vec<String> = self
            .current
            .policy()
            .providers()
            .iter()
            .map(|p| p.name.clone())
            .filter(|name| !new.policy().providers().iter().any(|p| &p.name == name))
            .collect();
        self.current = new;
        {
            let mut s = self.status.lock();
            s.generation = generation;
            s.last_reload_unix_secs = Some(unix_now());
            s.last_result = ReloadResult::Ok;
            s.last_error_count = 0;
            s.last_errors.clear();
            s.applied += 1;
        }
        if let Some(state) = &self.observer {
            state.observe(&self.current);
        }
        if let Some(relay) = &self.relay {
            let mut relay = relay.lock();
            relay.set_settings(self.current.push().relay_settings());
            relay.retain_providers(|key| !dropped.iter().any(|d| d == key));
        }
        log_record(json!({
            "level": "info", "event": "reload_applied", "generation": generation,
            "trigger": self.trigger.as_str(),
            "changes": changes.len(), "restart_needed": refused.len(), "workers": workers,
            "text": format!(
                "configuration generation {generation} applied by {}: {}, {} a restart",
                crate::log::count(workers, "worker"),
                crate::log::count(changes.len(), "change"),
                match refused.len() {
                    1 => "1 key needs".to_owned(),
                    n => format!("{n} keys need"),
                }
            ),
        }));
    }

    fn failed(&self, errors: &[Issue]) {
        for e in errors {
            log_record(json!({
                "level": "error", "event": "reload_error", "key": e.key, "problem": e.problem,
                "text": e.to_string().replace(['\r', '\n'], " "),
            }));
        }
        let generation = {
            let mut s = self.status.lock();
            s.last_reload_unix_secs = Some(unix_now());
            s.last_result = ReloadResult::Failed;
            s.last_error_count = errors.len();
            s.last_errors = errors.iter().take(KEPT_ERRORS).map(ToString::to_string).collect();
            s.failed += 1;
            s.generation
        };
        log_record(json!({
            "level": "error", "event": "reload_failed", "errors": errors.len(), "generation": generation,
            "trigger": self.trigger.as_str(),
            "text": format!(
                "reload refused: {} errors; the running configuration (generation {generation}) stays",
                errors.len()
            ),
        }));
    }
}

/// The snapshot of `config` for the workers: TLS built here, off the event loops.
pub fn runtime(config: &Config, local_pki: Option<&LocalPki>, generation: u64) -> Result<Runtime, Issue> {
    let tls_issue = |problem: String| Issue {
        key: "tls".to_owned(),
        problem,
    };
    let settings = crate::run::shell_settings(config, local_pki).map_err(|e| tls_issue(e.to_string()))?;
    Runtime::build(
        &settings,
        Arc::clone(config.policy()),
        proxy_runtime(config),
        generation,
    )
    .map_err(|e| tls_issue(e.to_string()))
}

/// The proxy core's reloadable settings from `config`.
pub fn proxy_runtime(config: &Config) -> ProxyRuntime {
    let l = config.limits();
    ProxyRuntime {
        internal_next_hop: config.internal().next_hop.clone(),
        timer_f: l.transaction_timeout,
        timer_b: l.transaction_timeout,
        timer_c: l.invite_timeout,
        push_uri: Some(config.push().proxy_uri.to_string()),
        push_timeout: config.push().timeout,
        max_subscriptions: l.max_subscriptions,
    }
}

fn discovery_changed(old: DiscoveryLimits, new: DiscoveryLimits) -> serde_json::Value {
    let show = |l: DiscoveryLimits| {
        format!(
            "{}/s, {} contacts per {} s",
            l.messages_per_second, l.distinct_contacts, l.contact_window_secs
        )
    };
    json!({
        "level": "info", "event": "limit_changed", "key": "federation.discovery_limits",
        "old": show(old), "new": show(new),
        "text": format!(
            "discovered-partner limits changed from {} to {}: the limiter starts fresh",
            show(old), show(new)
        ),
    })
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn log_record(record: serde_json::Value) {
    crate::log::emit(record);
}

/// Why `sipedge reload` refuses to signal a pid ([`running_edge`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnEdge {
    /// `/proc/<pid>/cmdline` cannot be read.
    #[error("no process {pid} is running; refusing to signal it")]
    NoProcess { pid: i32 },
    /// Another program, another sipedge command, or an edge that exited; `what` shows which.
    #[error(
        "process {pid} is not a running sipedge edge (it is `{what}`); refusing to signal it: give the pid of `sipedge run` (or the --pid-file it wrote)"
    )]
    Other { pid: i32, what: String },
}

/// Why `sipedge reload` sent no SIGHUP (printed after `sipedge reload: `, exit 1).
#[derive(Debug, thiserror::Error)]
pub enum SendHupError {
    #[error("cannot read {}: {source}", .path.display())]
    ReadPidFile { path: PathBuf, source: std::io::Error },
    #[error("{} holds no pid: {source}", .path.display())]
    NoPidInFile {
        path: PathBuf,
        source: std::num::ParseIntError,
    },
    #[error("give --pid PID or --pid-file FILE")]
    NoPid,
    #[error("{pid} is not a process id")]
    NotAProcessId { pid: i32 },
    #[error(transparent)]
    NotAnEdge(#[from] NotAnEdge),
    #[error("cannot signal process {pid}: {source}")]
    Signal { pid: i32, source: rustix::io::Errno },
}

/// Whether process `pid` is a running `sipedge run` — its executable is named `sipedge` and its
/// command line has the `run` subcommand — read from `proc` (`/proc`). SIGHUP ends a process that
/// does not handle it: a wrong or stale pid (a pid file outliving its edge, the pid reused) must
/// not kill whatever holds that number now, nor another sipedge command (`send`, `test-push`).
fn running_edge(pid: i32, proc: &Path) -> Result<(), NotAnEdge> {
    let dir = proc.join(pid.to_string());
    let cmdline = std::fs::read(dir.join("cmdline")).map_err(|_| NotAnEdge::NoProcess { pid })?;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    // The executable: /proc/PID/exe where readable (another user's is not), else argv[0].
    let exe = std::fs::read_link(dir.join("exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(args.first().copied().unwrap_or_default()).into_owned());
    let name = exe
        .trim_end_matches(" (deleted)")
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let is_run = args.iter().skip(1).any(|a| *a == b"run");
    let state = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
    // The state field follows the command name's closing parenthesis: Z is a zombie.
    let zombie = state
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'));
    if name != "sipedge" || !is_run || zombie {
        let what = if zombie {
            format!("{exe} (exited)")
        } else {
            shown_command(&args)
        };
        return Err(NotAnEdge::Other { pid, what });
    }
    Ok(())
}

/// A process's command line for an error message, at most 120 characters.
fn shown_command(args: &[&[u8]]) -> String {
    let line = args
        .iter()
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    match line.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", line.get(..i).unwrap_or_default()),
        None => line,
    }
}

/// `sipedge reload`: SIGHUP to `pid`, or to the pid written in `pid_file` (`run --pid-file`).
/// The same as `kill -HUP <pid>`.
pub fn send_hup(pid: Option<i32>, pid_file: Option<&Path>) -> ExitCode {
    let pid = match (pid, pid_file) {
        (Some(p), _) => Ok(p),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|source| SendHupError::ReadPidFile {
                path: f.to_path_buf(),
                source,
            })
            .and_then(|t| {
                t.trim()
                    .parse::<i32>()
                    .map_err(|source| SendHupError::NoPidInFile {
                        path: f.to_path_buf(),
                        source,
                    })
            }),
        (None, None) => Err(SendHupError::NoPid),
    };
    let sent = pid.and_then(|p| {
        let target = rustix::process::Pid::from_raw(p).ok_or(SendHupError::NotAProcessId { pid: p })?;
        running_edge(p, Path::new("/proc"))?;
        rustix::process::kill_process(target, rustix::process::Signal::HUP)
            .map(|()| p)
            .map_err(|source| SendHupError::Signal { pid: p, source })
    });
    match sent {
        Ok(p) => {
            println!("reload requested: SIGHUP sent to {p}; the edge logs reload_applied or reload_failed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sipedge reload: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusal as `sipedge reload` prints it (the texts these tests pin).
    fn running_edge(pid: i32, proc: &Path) -> Result<(), String> {
        super::running_edge(pid, proc).map_err(|e| e.to_string())
    }

    /// A fake `/proc/<pid>` with its command line, executable link and state.
    fn fake(proc: &Path, pid: i32, args: &[&str], exe: Option<&str>, state: char) {
        let dir = proc.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmdline = args.join("\0");
        cmdline.push('\0');
        std::fs::write(dir.join("cmdline"), cmdline).unwrap();
        if let Some(exe) = exe {
            std::os::unix::fs::symlink(exe, dir.join("exe")).unwrap();
        }
        std::fs::write(dir.join("stat"), format!("{pid} (x) y) {state} 1 2 3")).unwrap();
    }

    #[test]
    fn only_a_running_sipedge_run_is_signalled() {
        let proc = tempfile::tempdir().unwrap();
        let p = proc.path();
        fake(
            p,
            10,
            &["/usr/bin/sipedge", "run", "--config", "/etc/sipedge.toml"],
            Some("/usr/bin/sipedge"),
            'S',
        );
        fake(
            p,
            11,
            &["sipedge", "run"],
            Some("/opt/sipedge/sipedge (deleted)"),
            'S',
        );
        // Another user's process: no exe link, argv[0] decides.
        fake(p, 12, &["/usr/local/bin/sipedge", "run"], None, 'R');
        fake(p, 20, &["sleep", "100"], Some("/usr/bin/sleep"), 'S');
        fake(
            p,
            21,
            &["/usr/bin/sipedge", "send", "--to", "sip:run@x"],
            Some("/usr/bin/sipedge"),
            'S',
        );
        fake(p, 22, &["/usr/bin/sipedge", "run"], Some("/usr/bin/sipedge"), 'Z');
        fake(
            p,
            23,
            &["python3", "fake-sipedge.py", "run"],
            Some("/usr/bin/python3.11"),
            'S',
        );
        for pid in [10, 11, 12] {
            assert_eq!(running_edge(pid, p), Ok(()), "{pid}");
        }
        for (pid, shown) in [
            (20, "`sleep 100`"),
            (21, "`/usr/bin/sipedge send --to sip:run@x`"),
            (22, "`/usr/bin/sipedge (exited)`"),
            (23, "`python3 fake-sipedge.py run`"),
        ] {
            let e = running_edge(pid, p).unwrap_err();
            assert!(
                e.contains("is not a running sipedge edge") && e.contains(shown),
                "{pid}: {e}"
            );
        }
        assert!(running_edge(99, p)
            .unwrap_err()
            .contains("no process 99 is running"));
    }

    #[test]
    fn refusals_to_signal_say_why() {
        let p = Path::new("/run/sipedge.pid");
        let read = SendHupError::ReadPidFile {
            path: p.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(
            read.to_string().starts_with("cannot read /run/sipedge.pid: "),
            "{read}"
        );
        let parse = "x1".parse::<i32>().unwrap_err();
        let no_pid = SendHupError::NoPidInFile {
            path: p.to_path_buf(),
            source: parse.clone(),
        };
        assert_eq!(
            no_pid.to_string(),
            format!("/run/sipedge.pid holds no pid: {parse}")
        );
        assert_eq!(
            SendHupError::NoPid.to_string(),
            "give --pid PID or --pid-file FILE"
        );
        assert_eq!(
            SendHupError::NotAProcessId { pid: -3 }.to_string(),
            "-3 is not a process id"
        );
        let gone = SendHupError::from(NotAnEdge::NoProcess { pid: 7 });
        assert_eq!(gone.to_string(), "no process 7 is running; refusing to signal it");
    }

    #[test]
    fn this_test_process_is_not_an_edge() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(running_edge(me, Path::new("/proc")).is_err());
    }
}
