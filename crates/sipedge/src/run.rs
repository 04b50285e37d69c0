//! `sipedge run [--config FILE]`: load and validate the configuration (the embedded local-only
//! default without `--config`), start the edge (`edge_core::shell`), print the contract lines
//! (`listening <role> sip+tls <addr>`; on the embedded default then `local pki <dir>`, see
//! `config::local_pki`), then wait for signals: SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the
//! configuration (`reload.rs`). `--pid-file F` (opt-in) writes the process id there for
//! `sipedge reload --pid-file F`, and removes it at exit. `--watch` (opt-in) also reloads when the
//! configuration file or a certificate, key or CA file it loaded changes (`watch.rs`); signals and
//! file changes meet in one queue, so reloads run one at a time on this thread.
//! Log records and start-up warnings go to stderr as JSON lines.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use edge_core::proxy::{EdgeShared, Proxy, ProxySettings};
use edge_core::shell::{self, ShellLimits, ShellSettings, TlsIdentity as ShellIdentity};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::local_pki::LocalPki;
use crate::config::{Config, TlsIdentity};
use crate::exporter::{EdgeMetrics, EdgeState};
use crate::fd_limit::{FdLimit, FdLimitError};
use crate::reload::{Reloader, Trigger};
use crate::watch::Watch;

/// How long open transactions may take to finish after SIGTERM.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

pub fn run(config_path: Option<&Path>, pid_file: Option<&Path>, watch: bool) -> ExitCode {
    // First: every connection is a descriptor (see fd_limit.rs).
    let fd_limit = crate::fd_limit::raise();
    let loaded = match config_path {
        Some(p) => Config::load(p),
        None => Config::embedded_default(),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(issues) => {
            for i in &issues {
                log("error", "config_error", &i.to_string());
            }
            return ExitCode::FAILURE;
        }
    };
    // `--watch`: what the files held when the configuration read them, the watch's starting point
    // (taken now, not once the listeners are up: a change made meanwhile is a change).
    let watch_baseline = match (watch, config_path) {
        (true, Some(path)) => {
            let files = crate::watch::files_of(path, &config);
            let baseline = crate::watch::Fingerprint::of(&files);
            Some((files, baseline))
        }
        _ => None,
    };
    // The embedded default's CA, edge and client certificates, kept in the state directory.
    let local_pki = match config_path {
        Some(_) => None,
        None => match LocalPki::for_embedded(&config) {
            Ok(pki) => {
                log("warn", "embedded_default", &pki.embedded_warning());
                let (level, text) = pki.origin_text();
                log(level, "local_pki", &text);
                if let Some(note) = &pki.dir_note {
                    log("warn", "local_pki", note);
                }
                Some(pki)
            }
            Err(e) => {
                log("error", "local_pki", &e.to_string());
                return ExitCode::FAILURE;
            }
        },
    };
    if let Some(p) = config.pool() {
        // From here on every log line names this replica.
        edge_core::shell::log::set_replica(&p.replica);
    }
    log(
        "info",
        "config_loaded",
        &format!("configuration from {}", config.source()),
    );
    for w in config.warnings() {
        log("warn", "config_warning", &w.to_string());
    }
    log_fd_limit(
        &fd_limit,
        config.limits().max_connections,
        config.edge().worker_count(),
    );
    log(
        "info",
        "tls_provider",
        &format!("rustls crypto provider {}", edge_core::shell::CRYPTO_PROVIDER),
    );
    crate::known_servers::log_table(config.policy().known_servers());
    let settings = match shell_settings(&config, local_pki.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            log("error", "tls_setup", &e.to_string());
            return ExitCode::FAILURE;
        }
    };
    let policy = Arc::clone(config.policy());
    let edge_fqdn = config.edge().fqdn.to_string();
    let internal_fqdn = config.internal().fqdn.to_string();
    let next_hop = config.internal().next_hop.clone();
    let limits = config.limits();
    let (timer_f, timer_c) = (limits.transaction_timeout, limits.invite_timeout);
    let max_subscriptions = limits.max_subscriptions;
    let pooled = config.pool().is_some();
    // What the workers' cores share (the discovered-partner limiter, the push relay and its
    // breakers, the subscription count), made once here: every core gets these.
    let mut shared = EdgeShared::new(&policy, config.push().relay_settings());
    if let TlsIdentity::Files(f) = &config.external().tls {
        // Topology hiding's key from the external certificate's private key: every replica of a
        // pool holds it, so each opens the route sets another sealed, and a restart keeps dialogs.
        shared = shared.with_sealer(edge_core::proxy::Sealer::from_secret(f.key.secret_der()));
    }
    let reload_limiter = Arc::clone(&shared.limiter);
    let relay = Arc::clone(&shared.relay);
    let (push_uri, push_timeout) = (config.push().proxy_uri.to_string(), config.push().timeout);
    let make_proxy = move |worker: usize, internal: std::net::SocketAddr, external: std::net::SocketAddr| {
        let mut s = ProxySettings::new(
            &edge_fqdn,
            &format!("{internal_fqdn}:{}", internal.port()),
            &format!("{edge_fqdn}:{}", external.port()),
            next_hop.clone(),
        );
        s.timer_f = timer_f;
        s.timer_b = timer_f;
        s.timer_c = timer_c;
        s.push_uri = Some(push_uri.clone());
        s.push_timeout = push_timeout;
        s.max_subscriptions = max_subscriptions;
        s.pool_routes = pooled;
        Proxy::new(
            s,
            Arc::clone(&policy),
            u16::try_from(worker).unwrap_or(u16::MAX),
            &shared,
        )
    };
    // No other process may hold any of the three addresses (the shell probes the SIP ones again
    // before its workers bind them). All are checked, in the order they are printed, and every
    // conflict is named at once.
    let busy: Vec<String> = [
        ("internal", config.internal().listen),
        ("external", config.external().listen),
        ("metrics", config.metrics().listen),
    ]
    .into_iter()
    .filter_map(|(role, addr)| shell::ensure_listen_address_free(role, addr).err())
    .map(|e| e.to_string())
    .collect();
    if !busy.is_empty() {
        for e in &busy {
            log(
                "error",
                "listen_failed",
                &format!("cannot start the listeners: {e}"),
            );
        }
        return ExitCode::FAILURE;
    }
    // Before the listeners start: a SIGTERM sent as soon as the contract lines appear must drain,
    // not kill.
    let signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            log(
                "error",
                "signals",
                &format!("cannot install signal handlers: {e}"),
            );
            return ExitCode::FAILURE;
        }
    };
    let handle = match shell::start(settings, Arc::new(make_proxy)) {
        Ok(h) => h,
        Err(e) => {
            log(
                "error",
                "listen_failed",
                &format!("cannot start the listeners: {e}"),
            );
            return ExitCode::FAILURE;
        }
    };
    contract_line(&format!("listening internal sip+tls {}", handle.internal_addr()));
    contract_line(&format!("listening external sip+tls {}", handle.external_addr()));
    if let Some(pki) = &local_pki {
        // Written first: once the line is out, clients find everything in the directory.
        if let Err(e) = pki.write_internal_addr(handle.internal_addr()) {
            log("warn", "local_pki", &e.to_string());
        }
        contract_line(&format!("local pki {}", pki.dir.display()));
    }
    if let Some(f) = pid_file {
        if let Err(e) = std::fs::write(f, format!("{}\n", std::process::id())) {
            log("warn", "pid_file", &format!("cannot write {}: {e}", f.display()));
        }
    }
    // `[pool]`: the sync thread that divides the discovered-partner limits with the other replicas.
    let pool = match config.pool() {
        Some(p) => match crate::pool::Pool::start(p, Arc::clone(&reload_limiter), Arc::clone(&relay)) {
            Ok(pool) => Some(pool),
            Err(e) => {
                log(
                    "error",
                    "pool",
                    &format!("cannot start the pool's sync thread: {e}"),
                );
                handle.shutdown(Duration::ZERO);
                handle.join();
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let state = Arc::new(EdgeState::default());
    state.probe.set_internal_addr(handle.internal_addr());
    if let Some(pki) = &local_pki {
        state.observe_local_pki(pki);
    }
    state.observe(&config);
    let metrics_listen = config.metrics().listen;
    let status_limiter = Arc::clone(&reload_limiter);
    let mut reloader = Reloader::new(config_path, local_pki, config, reload_limiter);
    reloader.observe_with(Arc::clone(&state));
    reloader.relay_with(Arc::clone(&relay));
    let source = EdgeMetrics {
        stats: handle.stats(),
        state: Arc::clone(&state),
        reload: reloader.status(),
        relay,
        limiter: status_limiter,
        pool: pool.as_ref().map(|p| Arc::clone(&p.status)),
    };
    let exporter = match sipedge_metrics::serve(metrics_listen, Arc::new(source)) {
        Ok(e) => e,
        Err(e) => {
            log(
                "error",
                "listen_failed",
                &format!("cannot start the listeners: {e}"),
            );
            handle.shutdown(Duration::ZERO);
            handle.join();
            return ExitCode::FAILURE;
        }
    };
    state.set_listeners(vec![
        ("internal", handle.internal_addr()),
        ("external", handle.external_addr()),
        ("metrics", exporter.addr()),
    ]);
    // Ready before the line: a client that reads `metrics http` may ask /readyz at once.
    state.listening.store(true, std::sync::atomic::Ordering::Relaxed);
    contract_line(&format!("metrics http {}", exporter.addr()));
    let code = wait_for_signals(handle, signals, reloader, &state, watch_baseline);
    exporter.stop();
    if let Some(pool) = pool {
        pool.stop();
    }
    if let Some(f) = pid_file {
        let _ = std::fs::remove_file(f);
    }
    code
}

/// What the main thread waits for: a signal, or a change `run --watch` saw.
enum Wake {
    Signal(i32),
    /// Logged by the watch thread (`config_changed`, which files, seen how).
    FilesChanged,
}

fn wait_for_signals(
    mut handle: shell::EdgeHandle,
    mut signals: Signals,
    mut reloader: Reloader,
    state: &EdgeState,
    watch: Option<(Vec<std::path::PathBuf>, crate::watch::Fingerprint)>,
) -> ExitCode {
    let (tx, rx) = mpsc::channel::<Wake>();
    let signal_tx = tx.clone();
    let forward = std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            for sig in signals.forever() {
                if signal_tx.send(Wake::Signal(sig)).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = forward {
        log(
            "error",
            "signals",
            &format!("cannot start the signal thread: {e}"),
        );
        handle.shutdown(Duration::ZERO);
        handle.join();
        return ExitCode::FAILURE;
    }
    // Dropped at return: the watch thread stops.
    let mut watcher = match watch {
        Some((files, baseline)) => start_watch(&reloader, files, baseline, tx),
        None => {
            drop(tx);
            None
        }
    };
    // Wakes that arrive while a reload runs are coalesced: one more reload follows, reading the
    // files as they are then.
    while let Ok(first) = rx.recv() {
        let batch: Vec<Wake> = std::iter::once(first).chain(rx.try_iter()).collect();
        let stop = batch.iter().find_map(|w| match w {
            Wake::Signal(sig) if *sig != SIGHUP => Some(*sig),
            _ => None,
        });
        if let Some(sig) = stop {
            // /readyz fails at once (a load balancer stops sending); /healthz stays 200.
            state.draining.store(true, std::sync::atomic::Ordering::Relaxed);
            log(
                "info",
                "shutdown",
                &format!(
                    "signal {sig}: draining open transactions (up to {}s)",
                    DRAIN_GRACE.as_secs()
                ),
            );
            // No reload starts during the drain: the watch goes first.
            drop(watcher.take());
            handle.shutdown(DRAIN_GRACE);
            handle.join();
            log("info", "stopped", "all workers stopped");
            return ExitCode::SUCCESS;
        }
        let trigger = if batch.iter().any(|w| matches!(w, Wake::Signal(_))) {
            Trigger::Signal
        } else {
            Trigger::Watch
        };
        reloader.reload(&mut handle, trigger);
        if let Some(w) = &watcher {
            w.set_files(reloader.watched_files());
            reloader.status().lock().watched_files = w.file_count();
        }
    }
    ExitCode::SUCCESS
}

/// `run --watch`: the watch thread over the running configuration's files, its changes logged
/// (`config_changed`) and queued as reloads. `None` (logged) when it cannot start: the edge runs on,
/// reloading by SIGHUP.
fn start_watch(
    reloader: &Reloader,
    files: Vec<std::path::PathBuf>,
    baseline: crate::watch::Fingerprint,
    tx: mpsc::Sender<Wake>,
) -> Option<Watch> {
    let count = files.len();
    let started = Watch::start(files, baseline, move |changed, by| {
        let shown: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
        crate::log::emit(serde_json::json!({
            "level": "info", "event": "config_changed", "files": shown, "by": by.as_str(),
            "text": format!("changed on disk: {}; reloading", shown.join(", ")),
        }));
        let _ = tx.send(Wake::FilesChanged);
    });
    match started {
        Ok(w) => {
            reloader.status().lock().watched_files = count;
            Some(w)
        }
        Err(e) => {
            log("error", "config_watch", &format!("{e}; reload by SIGHUP only"));
            None
        }
    }
}

/// The open-file limit as raised at start (`fd_limit` info), and the warning when
/// `limits.max_connections` does not fit under it (`fd_limit` warn).
fn log_fd_limit(limit: &Result<FdLimit, FdLimitError>, max_connections: usize, workers: usize) {
    use crate::fd_limit::{shortfall_warning, show};
    match limit {
        Ok(l) => {
            let text = if l.before == l.soft {
                format!("open-file limit {} (hard {})", show(l.soft), show(l.hard))
            } else {
                format!(
                    "open-file limit raised from {} to {} (hard {})",
                    show(l.before),
                    show(l.soft),
                    show(l.hard)
                )
            };
            log("info", "fd_limit", &text);
            if let Some(w) = shortfall_warning(max_connections, workers, l) {
                log("warn", "fd_limit", &w);
            }
        }
        Err(e) => log("warn", "fd_limit", &e.to_string()),
    }
}

/// A start-up contract line on stdout, after every log record made before it is written: a tool
/// that reads the line may look for those records at once (the log goes through the log thread).
fn contract_line(text: &str) {
    edge_core::shell::log::flush(Duration::from_secs(1));
    println!("{text}");
}

/// One JSON log line on stderr, with `ts` (`crate::log`).
fn log(level: &str, event: &str, text: &str) {
    crate::log::event(level, event, text);
}

/// Why the shell's TLS settings cannot be made from a configuration ([`shell_settings`]).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("no certificate: only the embedded default may omit cert_file")]
    NoCertificate,
    #[error("{what}: unreadable PEM: {source}")]
    UnreadablePem {
        what: &'static str,
        source: rustls_pki_types::pem::Error,
    },
    #[error("internal.ca_file is required")]
    NoInternalCa,
}

/// The certificates of a PEM text (the embedded default's local PKI, kept as PEM files).
fn pem_certs(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsSetupError::UnreadablePem { what, source })
}

/// The shell's settings from `config`: the certificates, keys and roots exactly as the
/// configuration parsed them (DER, read once per load: no PEM round trip).
pub(crate) fn shell_settings(
    config: &Config,
    local_pki: Option<&LocalPki>,
) -> Result<ShellSettings, TlsSetupError> {
    let identity = |tls: &TlsIdentity| -> Result<ShellIdentity, TlsSetupError> {
        match tls {
            // Exactly what check-config validated, not a second read of files that may have changed.
            TlsIdentity::Files(f) => Ok(ShellIdentity {
                chain: f.chain.clone(),
                key: f.key.clone_key(),
            }),
            TlsIdentity::SelfSigned => {
                let p = local_pki.ok_or(TlsSetupError::NoCertificate)?;
                Ok(ShellIdentity {
                    chain: pem_certs(&p.edge_cert_pem, "the local PKI's edge certificate")?,
                    key: PrivateKeyDer::from_pem_slice(&p.edge_key_pem).map_err(|source| {
                        TlsSetupError::UnreadablePem {
                            what: "the local PKI's edge key",
                            source,
                        }
                    })?,
                })
            }
        }
    };
    let internal_identity = identity(&config.internal().tls)?;
    let external_identity = identity(&config.external().tls)?;
    let local_ca = local_pki
        .map(|p| pem_certs(&p.ca_pem, "the local PKI's CA"))
        .transpose()?;
    let internal_client_ca = match (&config.internal().client_ca, &local_ca) {
        (Some(ca), _) => ca.certs.clone(),
        (None, Some(ca)) => ca.clone(),
        (None, None) => return Err(TlsSetupError::NoInternalCa),
    };
    // The partners' roots: the system's trust store (read by validation) plus external.ca_file.
    let mut external_roots = config.external().system_roots.clone();
    external_roots.extend(match &config.external().extra_roots {
        Some(ca) => ca.certs.clone(),
        None => local_ca.unwrap_or_default(),
    });
    let l = config.limits();
    Ok(ShellSettings {
        internal_listen: config.internal().listen,
        external_listen: config.external().listen,
        internal_identity,
        external_identity,
        internal_client_ca,
        external_roots,
        hosts: config
            .dns()
            .hosts
            .iter()
            .map(|h| (h.name.to_string(), h.ip))
            .collect(),
        dns_servers: dns_servers(config),
        dns_cache_entries: 10_000,
        workers: config.edge().worker_count(),
        limits: ShellLimits {
            max_message_bytes: l.max_message_bytes,
            max_connections: l.max_connections,
            max_connections_per_ip: l.max_connections_per_ip,
            handshake_timeout: l.handshake_timeout,
            idle_timeout: l.idle_timeout,
            message_timeout: l.message_timeout,
            connect_timeout: l.connect_timeout,
            keepalive_interval: l.keepalive_interval,
            outgoing_tls_per_hop: l.outgoing_tls_per_partner,
            ..ShellLimits::default()
        },
        idle_hook: Some(crate::return_free_memory),
    })
}

/// `[dns] servers`, else the nameservers of /etc/resolv.conf (none readable: DNS is off and only
/// IP literals and `[dns] hosts` resolve).
pub(crate) fn dns_servers(config: &Config) -> Vec<std::net::SocketAddr> {
    if !config.dns().servers.is_empty() {
        return config.dns().servers.clone();
    }
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| edge_core::dns::nameservers(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_setup_errors_keep_their_texts() {
        assert_eq!(
            TlsSetupError::NoCertificate.to_string(),
            "no certificate: only the embedded default may omit cert_file"
        );
        assert_eq!(
            TlsSetupError::NoInternalCa.to_string(),
            "internal.ca_file is required"
        );
        let source = PrivateKeyDer::from_pem_slice(b"not pem").unwrap_err();
        let shown = source.to_string();
        let e = TlsSetupError::UnreadablePem {
            what: "the local PKI's edge key",
            source,
        };
        assert_eq!(
            e.to_string(),
            format!("the local PKI's edge key: unreadable PEM: {shown}")
        );
    }
}
