//! `sipedge run [--config FILE]`: load and validate the configuration (the embedded local-only
//! default without `--config`), start the edge (`edge_core::shell`), print the contract lines
//! (`listening <role> sip+tls <addr>`), then wait for signals: SIGTERM/SIGINT drain and exit 0.
//! Log records and start-up warnings go to stderr as JSON lines.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use edge_core::proxy::{Proxy, ProxySettings};
use edge_core::shell::{self, ShellLimits, ShellSettings, TlsIdentity as ShellIdentity};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::{Config, TlsIdentity};

/// How long open transactions may take to finish after SIGTERM.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

pub fn run(config_path: Option<&Path>) -> ExitCode {
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
    if config_path.is_none() {
        log(
            "warn",
            "embedded_default",
            crate::config::EMBEDDED_DEFAULT_WARNING,
        );
    }
    for w in config.warnings() {
        log("warn", "config_warning", &w.to_string());
    }
    crate::known_servers::log_changes([], config.policy().known_servers());
    let settings = match shell_settings(&config) {
        Ok(s) => s,
        Err(e) => {
            log("error", "tls_setup", &e);
            return ExitCode::FAILURE;
        }
    };
    let policy = Arc::clone(config.policy());
    let edge_fqdn = config.edge().fqdn.to_string();
    let internal_fqdn = config.internal().fqdn.to_string();
    let next_hop = config.internal().next_hop.clone();
    let limits = config.limits();
    let (timer_f, timer_c) = (limits.transaction_timeout, limits.invite_timeout);
    // One discovered-partner limiter for the edge: the limits hold whichever worker a partner's
    // connection lands on.
    let limiter = Proxy::discovery_limiter(&policy);
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
        Proxy::with_limiter(
            s,
            Arc::clone(&policy),
            u16::try_from(worker).unwrap_or(u16::MAX),
            Arc::clone(&limiter),
        )
    };
    // No other process may hold the metrics address either (the SIP listeners are probed by the
    // shell before its workers bind them).
    if let Err(e) = shell::ensure_listen_address_free("metrics", config.metrics().listen) {
        log(
            "error",
            "listen_failed",
            &format!("cannot start the listeners: {e}"),
        );
        return ExitCode::FAILURE;
    }
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
    println!("listening internal sip+tls {}", handle.internal_addr());
    println!("listening external sip+tls {}", handle.external_addr());
    wait_for_signals(handle)
}

fn wait_for_signals(handle: shell::EdgeHandle) -> ExitCode {
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            log(
                "error",
                "signals",
                &format!("cannot install signal handlers: {e}"),
            );
            handle.shutdown(Duration::ZERO);
            handle.join();
            return ExitCode::FAILURE;
        }
    };
    for sig in signals.forever() {
        match sig {
            SIGHUP => log(
                "warn",
                "reload_unsupported",
                "SIGHUP: configuration reload is not implemented yet; restart to apply changes",
            ),
            _ => {
                log(
                    "info",
                    "shutdown",
                    &format!(
                        "signal {sig}: draining open transactions (up to {}s)",
                        DRAIN_GRACE.as_secs()
                    ),
                );
                handle.shutdown(DRAIN_GRACE);
                handle.join();
                log("info", "stopped", "all workers stopped");
                return ExitCode::SUCCESS;
            }
        }
    }
    ExitCode::SUCCESS
}

/// One JSON log line on stderr (the shell writes its records the same way).
fn log(level: &str, event: &str, text: &str) {
    eprintln!(
        "{}",
        serde_json::json!({ "level": level, "event": event, "text": text })
    );
}

fn certs_pem(certs: &[rustls_pki_types::CertificateDer<'_>]) -> Vec<u8> {
    certs
        .iter()
        .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.as_ref().to_vec())))
        .collect::<String>()
        .into_bytes()
}

fn key_pem(key: &rustls_pki_types::PrivateKeyDer<'_>) -> Vec<u8> {
    let tag = match key {
        rustls_pki_types::PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        rustls_pki_types::PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    pem::encode(&pem::Pem::new(tag, key.secret_der().to_vec())).into_bytes()
}

fn shell_settings(config: &Config) -> Result<ShellSettings, String> {
    let mut generated: Option<(ShellIdentity, Vec<u8>)> = None;
    let mut identity = |tls: &TlsIdentity| -> Result<ShellIdentity, String> {
        match tls {
            // Exactly what check-config validated, not a second read of files that may have changed.
            TlsIdentity::Files(f) => Ok(ShellIdentity {
                cert_chain_pem: certs_pem(&f.chain),
                key_pem: key_pem(&f.key),
            }),
            TlsIdentity::SelfSigned => {
                if generated.is_none() {
                    generated = Some(self_signed(&config.edge().fqdn.to_string())?);
                }
                Ok(generated
                    .as_ref()
                    .map(|(id, _)| id.clone())
                    .unwrap_or(ShellIdentity {
                        cert_chain_pem: vec![],
                        key_pem: vec![],
                    }))
            }
        }
    };
    let internal_identity = identity(&config.internal().tls)?;
    let external_identity = identity(&config.external().tls)?;
    let internal_client_ca_pem = match (&config.internal().client_ca, &generated) {
        (Some(ca), _) => certs_pem(&ca.certs),
        (None, Some((_, ca))) => ca.clone(),
        (None, None) => return Err("internal.ca_file is required".into()),
    };
    // The partners' roots: the system's trust store (read by validation) plus external.ca_file.
    let mut external_extra_roots_pem = certs_pem(&config.external().system_roots);
    external_extra_roots_pem.extend(match &config.external().extra_roots {
        Some(ca) => certs_pem(&ca.certs),
        None => generated.as_ref().map(|(_, ca)| ca.clone()).unwrap_or_default(),
    });
    let l = config.limits();
    Ok(ShellSettings {
        internal_listen: config.internal().listen,
        external_listen: config.external().listen,
        internal_identity,
        external_identity,
        internal_client_ca_pem,
        external_extra_roots_pem,
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

/// The embedded default's certificates: a throw-away CA and a leaf for `name`, localhost and
/// 127.0.0.1, signed by it. Returns the leaf identity and the CA certificate (PEM).
fn self_signed(name: &str) -> Result<(ShellIdentity, Vec<u8>), String> {
    let err = |e: rcgen::Error| format!("cannot generate the self-signed certificate: {e}");
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sipedge local CA (embedded default)");
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut names = vec![name.to_owned(), "localhost".to_owned()];
    names.dedup();
    let mut params = rcgen::CertificateParams::new(names).map_err(err)?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let leaf = params.signed_by(&leaf_key, &issuer).map_err(err)?;
    let identity = ShellIdentity {
        cert_chain_pem: leaf.pem().into_bytes(),
        key_pem: leaf_key.serialize_pem().into_bytes(),
    };
    Ok((identity, ca.pem().into_bytes()))
}
