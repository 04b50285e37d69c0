//! `sipedge test-push`: the synthetic push transaction (docs/architecture.md, Push; after Lync's
//! `Test-CsMcxPushNotification`). It connects to a running edge's internal listener as a known
//! server (mutual TLS, `sip_client`), sends one MESSAGE to `push.proxy_uri` (default
//! `sip:push@push.lync.com`) From `sip:sipedge-test-push@<first edge.sip_domains domain>`
//! with a `text/plain` body `sipedge test-push <random id>`, waits for the final response
//! and prints exactly
//!
//! ```text
//! TargetFqdn : <the edge's internal FQDN>
//! Result     : Success | Failure
//! Latency    : 00:00:00.1234567
//! Error      : <status and reason, empty on success>
//! Diagnosis  : <what to fix, empty on success>
//! ```
//!
//! Each line is `<key padded to 11>: <value>`, so an empty value leaves `Error      : ` (trailing
//! space). Latency is the cmdlet's `hh:mm:ss.fffffff` (100 ns ticks), from the connect to the final
//! response (or to the failure). Exit 0 on a 2xx, 1 otherwise — a connect, TLS or setup failure
//! too, with the five lines saying what failed.
//!
//! `Diagnosis` is [`diagnose`]: the final response's status, reason and `ms-diagnostics` (id,
//! reason text, params) turned into the operator's fix; with a configuration (`--config`, or the
//! running one for `/probe/push`) it also checks `federation.hosted_providers` and the allowed list.
//!
//! Where the facts come from, first that applies: the flags (`--edge`, `--fqdn`, `--cert`, `--key`,
//! `--ca`, `--from`); `--config FILE` (`push.proxy_uri`, `internal.listen`, `internal.fqdn`,
//! `edge.sip_domains`, and as client identity the edge's own `internal.cert_file`/`key_file` —
//! whose name must then be a known server — trusting `internal.ca_file` and the chain's CAs); the
//! embedded default (the local PKI and `internal.addr` in the state directory, as `sipedge send`).
//! The same [`Setup`] and [`transaction`] serve `GET /probe/push` (`push_probe.rs`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use sip_codec::Diagnostic;

use crate::config::local_pki::{self, LocalPki};
use crate::config::{Config, TlsIdentity};
use crate::sip_client::{self, ClientConfigError, ClientError, DerError, Event, Request, Target};

/// The field text of the cmdlet for a push that timed out (diagnostics.md).
pub const FIELD_504: &str =
    "A 504 (Server time-out) response was received from the network and the operation failed.";
/// The field text of the cmdlet for a push the IM URL filter rejected (diagnostics.md).
pub const FIELD_REJECTED: &str = "Push Notification request was rejected.";
/// The user part of the test push's From.
const FROM_USER: &str = "sipedge-test-push";
const USER_AGENT: &str = "sipedge-test-push";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The edge's internal listener. Default: internal.listen of --config, else the address the
    /// last `sipedge run` without --config recorded (internal.addr), else the embedded default's.
    #[arg(long, value_name = "ADDR")]
    edge: Option<SocketAddr>,
    #[command(flatten)]
    files: crate::send::ClientFiles,
    /// The edge's FQDN: the TLS server name and the TargetFqdn. Default: internal.fqdn.
    #[arg(long, value_name = "NAME")]
    fqdn: Option<String>,
    /// From. Default: sip:sipedge-test-push@<first edge.sip_domains domain>.
    #[arg(long, value_name = "URI")]
    from: Option<String>,
    /// The configuration of the edge under test (read, not changed).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How long to wait for the final response, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 35_000)]
    timeout_ms: u64,
}

/// The configuration facts [`diagnose`] can check (from `--config` or the running edge).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushFacts {
    pub edge_fqdn: String,
    /// The host of `push.proxy_uri`.
    pub push_domain: String,
    pub allowed: Vec<String>,
    pub providers: Vec<ProviderFact>,
    /// Whether the push domain's `[[federation.allowed]]` entry pins a `proxy_fqdn` (then no hosted
    /// provider is needed).
    pub push_pinned: bool,
    /// The prefix the IM URL filter blocks in a push (which carries a URL), when its action is
    /// block: every push is then rejected (1909).
    pub filter_rejects: Option<String>,
    /// `[dns] servers` as written (empty: /etc/resolv.conf).
    pub dns_servers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFact {
    pub name: String,
    pub host: String,
    pub enabled: bool,
}

impl PushFacts {
    pub fn of(config: &Config) -> PushFacts {
        let policy = config.policy();
        let push_domain = config.push().proxy_uri.domain();
        let filter_rejects = match policy.im_filter().check(&test_body("0")) {
            federation_policy::FilterVerdict::Block { prefix } => Some(prefix),
            _ => None,
        };
        PushFacts {
            edge_fqdn: config.edge().fqdn.to_string(),
            push_domain: config.push().proxy_uri.domain().to_string(),
            allowed: policy.allowed_domains().map(|a| a.domain.to_string()).collect(),
            providers: policy
                .providers()
                .iter()
                .map(|p| ProviderFact {
                    name: p.name.clone(),
                    host: p.proxy_fqdn.host().to_string(),
                    enabled: p.enabled,
                })
                .collect(),
            push_pinned: policy
                .allowed_domains()
                .any(|a| a.domain == *push_domain && a.proxy_fqdn.is_some()),
            filter_rejects,
            dns_servers: config.dns().servers.iter().map(ToString::to_string).collect(),
        }
    }

    fn provider(&self, host: &str) -> Option<&ProviderFact> {
        self.providers.iter().find(|p| p.host.eq_ignore_ascii_case(host))
    }

    fn push_allowed(&self) -> bool {
        self.allowed
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&self.push_domain))
    }

    /// What the configuration alone says will fail every push, in the order the edge meets it (the
    /// URL filter, the allowed list, the hosted provider): the first cause the edge knows, before
    /// anything DNS or the network says.
    pub fn causes(&self) -> Vec<String> {
        let domain = &self.push_domain;
        let mut causes = Vec::new();
        if let Some(prefix) = &self.filter_rejects {
            causes.push(format!(
                "{FIELD_REJECTED} The IM URL filter blocks \"{prefix}\", which every push carries: remove it from \
                 [im_filter] blocked_prefixes, or set [im_filter] action = \"warn\""
            ));
        }
        if !self.push_allowed() {
            causes.push(format!(
                "the push domain {domain} is not allowed: add [[federation.allowed]] domain = \"{domain}\""
            ));
        }
        if !self.push_pinned && !self.providers.iter().any(|p| p.enabled) {
            causes.push(format!(
                "no enabled hosted provider is configured, and pushes to {domain} go through one: add \
                 [[federation.hosted_providers]] name = \"LyncOnline\" proxy_fqdn = \"sipfed.online.lync.com\" \
                 enabled = true"
            ));
        }
        causes
    }
}

/// The test push's body: like a real push it carries a URL, so the IM URL filter judges it as it
/// judges every real push (a test without one would pass a filter that rejects them all).
pub fn test_body(id: &str) -> String {
    format!("sipedge test-push {id} https://push.sipedge.invalid/test/{id}")
}

/// Who runs the transaction: the fixes for a failure to reach the edge differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// `sipedge test-push`: name the flags.
    Cli,
    /// `/probe/push` inside the edge: name the configuration keys.
    Probe,
}

/// Everything one test push needs.
#[derive(Debug, Clone)]
pub struct Setup {
    pub target: Target,
    /// TargetFqdn.
    pub target_fqdn: String,
    pub proxy_uri: String,
    pub from: String,
    pub timeout: Duration,
    /// The client certificate's name (for the known-server hint).
    pub client_name: Option<String>,
    pub facts: Option<PushFacts>,
    pub runner: Runner,
}

/// The result, as printed and as `/probe/push` serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub target_fqdn: String,
    pub success: bool,
    pub latency: Duration,
    pub error: String,
    pub diagnosis: String,
}

impl Outcome {
    /// A failure before anything was sent.
    pub fn setup_failure(target_fqdn: &str, error: &str, diagnosis: &str) -> Outcome {
        Outcome {
            target_fqdn: target_fqdn.to_owned(),
            success: false,
            latency: Duration::ZERO,
            error: one_line(error),
            diagnosis: one_line(diagnosis),
        }
    }

    pub fn result(&self) -> &'static str {
        if self.success {
            "Success"
        } else {
            "Failure"
        }
    }

    /// The five lines of the contract, each ending in `\n`.
    pub fn lines(&self) -> String {
        [
            ("TargetFqdn", self.target_fqdn.as_str()),
            ("Result", self.result()),
            ("Latency", &cmdlet_duration(self.latency)),
            ("Error", &self.error),
            ("Diagnosis", &self.diagnosis),
        ]
        .iter()
        .map(|(k, v)| format!("{k:<11}: {}\n", one_line(v)))
        .collect()
    }

    /// The same fields as a JSON object, plus whether the answer came from the probe's cache.
    pub fn json(&self, cached: bool) -> String {
        serde_json::json!({
            "TargetFqdn": self.target_fqdn,
            "Result": self.result(),
            "Latency": cmdlet_duration(self.latency),
            "Error": self.error,
            "Diagnosis": self.diagnosis,
            "cached": cached,
        })
        .to_string()
    }
}

/// `hh:mm:ss.fffffff`, as PowerShell prints a TimeSpan (100 ns ticks).
pub fn cmdlet_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let ticks = d.subsec_nanos() / 100;
    format!(
        "{:02}:{:02}:{:02}.{ticks:07}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

pub fn run(args: &Args) -> ExitCode {
    let outcome = match setup_from_args(args) {
        Ok(setup) => transaction(&setup),
        Err(failed) => *failed,
    };
    print!("{}", outcome.lines());
    if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The setup from the flags, `--config` and the embedded default; a failure already as the
/// outcome to print.
fn setup_from_args(args: &Args) -> Result<Setup, Box<Outcome>> {
    let fail = |fqdn: &str, error: String, diagnosis: String| {
        Box::new(Outcome::setup_failure(fqdn, &error, &diagnosis))
    };
    let unnamed = args.fqdn.clone().unwrap_or_default();
    let config = match &args.config {
        Some(p) => crate::send::load_config(p).map_err(|e| {
            fail(
                &unnamed,
                e.to_string(),
                format!("fix the configuration (sipedge check-config {})", p.display()),
            )
        })?,
        None => crate::send::embedded_default().map_err(|e| fail(&unnamed, e.to_string(), String::new()))?,
    };
    let from_file = args.config.is_some();
    let target_fqdn = args
        .fqdn
        .clone()
        .unwrap_or_else(|| config.internal().fqdn.to_string());
    let state = local_pki::state_dir();
    let edge = match args.edge {
        Some(a) => a,
        None if from_file => connectable(config.internal().listen).ok_or_else(|| {
            fail(
                &target_fqdn,
                format!(
                    "internal.listen is {}: no address to connect to",
                    config.internal().listen
                ),
                "give --edge ADDR (the address the edge printed as `listening internal sip+tls`)".into(),
            )
        })?,
        None => local_pki::read_internal_addr(&state.path).unwrap_or(config.internal().listen),
    };
    let files = LocalPki::client_paths(&state.path);
    let (tls, client_name) = match (
        &config.internal().tls,
        &args.files.cert,
        &args.files.key,
        &args.files.ca,
    ) {
        // The edge's own internal identity, trusting its CAs (as the probe does).
        (TlsIdentity::Files(_), None, None, None) if from_file => {
            let (tls, name) = internal_identity(&config).map_err(|e| {
                fail(
                    &target_fqdn,
                    e.to_string(),
                    "give --cert, --key and --ca of a known server".into(),
                )
            })?;
            (tls, name)
        }
        _ => {
            let cert = args.files.cert.clone().unwrap_or(files.cert);
            let key = args.files.key.clone().unwrap_or(files.key);
            let ca = args.files.ca.clone().unwrap_or(files.ca);
            let tls = sip_client::client_config(&cert, &key, &ca).map_err(|e| {
                fail(
                    &target_fqdn,
                    e.to_string(),
                    format!(
                        "check --cert, --key and --ca (without them: the local PKI that `sipedge run` \
                         without --config writes into {}, chosen by {})",
                        state.path.display(),
                        state.from
                    ),
                )
            })?;
            (tls, sip_client::first_name(&cert))
        }
    };
    let target = Target {
        edge,
        server_name: target_fqdn,
        tls,
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut setup = Setup::of(&config, target, client_name, timeout, Runner::Cli);
    if let Some(f) = &args.from {
        setup.from.clone_from(f);
    }
    if !from_file && args.edge.is_some() {
        // Another edge than the local `sipedge run` without --config: its facts are unknown.
        setup.facts = None;
    }
    Ok(setup)
}

impl Setup {
    /// The test push of `config` to `target` (whose server name is the TargetFqdn).
    pub fn of(
        config: &Config,
        target: Target,
        client_name: Option<String>,
        timeout: Duration,
        runner: Runner,
    ) -> Setup {
        Setup {
            target_fqdn: target.server_name.clone(),
            target,
            proxy_uri: config.push().proxy_uri.as_str().to_owned(),
            from: default_from(config),
            timeout,
            client_name,
            facts: Some(PushFacts::of(config)),
            runner,
        }
    }
}

/// The test push's From: a user of the edge's first domain (the edge vouches for its own domains
/// only and refuses any other From with 1907).
pub fn default_from(config: &Config) -> String {
    format!("sip:{FROM_USER}@{}", crate::send::first_domain(Some(config)))
}

/// A listen address a client can dial: the wildcard becomes loopback; port 0 cannot be dialled.
pub fn connectable(listen: SocketAddr) -> Option<SocketAddr> {
    if listen.port() == 0 {
        return None;
    }
    let ip = match listen.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(SocketAddr::new(ip, listen.port()))
}

/// Why the edge's own identity ([`internal_identity`], [`local_identity`]) cannot be a client's.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("internal.cert_file is not set (the embedded default)")]
    NoCertFile,
    /// rustls refused the internal certificate, key or CAs (shown as [`DerError`]'s `Debug`).
    #[error("the internal certificate {} is not usable as a client identity: {error:?}", .cert_file.display())]
    Unusable { cert_file: PathBuf, error: DerError },
    #[error(transparent)]
    LocalPki(#[from] ClientConfigError),
}

/// The edge's internal certificate and key as a client identity, trusting `internal.ca_file` and
/// the CAs of its own chain; the certificate's first name.
pub fn internal_identity(config: &Config) -> Result<(Arc<ClientConfig>, Option<String>), IdentityError> {
    let TlsIdentity::Files(f) = &config.internal().tls else {
        return Err(IdentityError::NoCertFile);
    };
    let mut roots: Vec<_> = f.chain.iter().skip(1).cloned().collect();
    if let Some(ca) = &config.internal().client_ca {
        roots.extend(ca.certs.iter().cloned());
    }
    let name = f.chain.first().and_then(sip_client::first_name_der);
    let tls = sip_client::client_config_der(f.chain.clone(), f.key.clone_key(), roots).map_err(|error| {
        IdentityError::Unusable {
            cert_file: f.cert_file.clone(),
            error,
        }
    })?;
    Ok((tls, name))
}

/// The client identity for the embedded default: the local PKI's client files.
pub fn local_identity(dir: &Path) -> Result<(Arc<ClientConfig>, Option<String>), IdentityError> {
    let files = LocalPki::client_paths(dir);
    let tls = sip_client::client_config(&files.cert, &files.key, &files.ca)?;
    Ok((tls, sip_client::first_name(&files.cert)))
}

/// Sends the test push and judges the answer.
pub fn transaction(setup: &Setup) -> Outcome {
    let id = format!("{:016x}", sip_client::random());
    let body = test_body(&id);
    let req = Request {
        method: "MESSAGE",
        to: &setup.proxy_uri,
        from: &setup.from,
        body: &body,
        user_agent: USER_AGENT,
    };
    let started = Instant::now();
    let result = sip_client::transact(&setup.target, &req, setup.timeout, &mut |_: Event<'_>| {});
    let latency = started.elapsed();
    let (success, error, diagnosis) = match result {
        Ok(r) if (200..300).contains(&r.status) => (true, String::new(), String::new()),
        Ok(r) => (
            false,
            format!("{} {}", r.status, r.reason),
            diagnose(r.status, &r.reason, r.ms_diagnostics(), setup.facts.as_ref()),
        ),
        Err(e) => (false, e.to_string(), unreachable_edge(&e, setup)),
    };
    Outcome {
        target_fqdn: setup.target_fqdn.clone(),
        success,
        latency,
        error: one_line(&error),
        diagnosis: one_line(&diagnosis),
    }
}

mod diagnose;
pub use diagnose::diagnose;
use diagnose::unreachable_edge;

#[cfg(test)]
mod tests;
