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
use crate::sip_client::{self, ClientError, Event, Request, Target};

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
        Some(p) => Config::load(p).map_err(|issues| {
            let all: Vec<String> = issues.iter().map(ToString::to_string).collect();
            fail(
                &unnamed,
                format!("{} is not a valid configuration: {}", p.display(), all.join("; ")),
                format!("fix the configuration (sipedge check-config {})", p.display()),
            )
        })?,
        None => crate::send::embedded_default().map_err(|e| fail(&unnamed, e, String::new()))?,
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
                    e,
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
                    e,
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

/// The edge's internal certificate and key as a client identity, trusting `internal.ca_file` and
/// the CAs of its own chain; the certificate's first name.
pub fn internal_identity(config: &Config) -> Result<(Arc<ClientConfig>, Option<String>), String> {
    let TlsIdentity::Files(f) = &config.internal().tls else {
        return Err("internal.cert_file is not set (the embedded default)".into());
    };
    let mut roots: Vec<_> = f.chain.iter().skip(1).cloned().collect();
    if let Some(ca) = &config.internal().client_ca {
        roots.extend(ca.certs.iter().cloned());
    }
    let name = f.chain.first().and_then(sip_client::first_name_der);
    let tls = sip_client::client_config_der(f.chain.clone(), f.key.clone_key(), roots).map_err(|e| {
        format!(
            "the internal certificate {} is not usable as a client identity: {e:?}",
            f.cert_file.display()
        )
    })?;
    Ok((tls, name))
}

/// The client identity for the embedded default: the local PKI's client files.
pub fn local_identity(dir: &Path) -> Result<(Arc<ClientConfig>, Option<String>), String> {
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

/// What to check when no final response came.
fn unreachable_edge(e: &ClientError, setup: &Setup) -> String {
    let cli = setup.runner == Runner::Cli;
    let edge = setup.target.edge;
    let name = &setup.target.server_name;
    let client = setup.client_name.as_deref().unwrap_or("the client certificate");
    let known = format!(
        "{client} must be a known server: [[internal.known_servers]] fqdn = \"{client}\" in the edge's configuration"
    );
    match e {
        ClientError::Setup(e) => e.clone(),
        ClientError::Connect { .. } if cli => format!(
            "cannot reach the edge's internal listener at {edge}: check --edge (the address `sipedge run` \
             printed as `listening internal sip+tls`) and that the edge runs"
        ),
        ClientError::Connect { .. } => {
            format!("the edge cannot reach its own internal listener at {edge}: check internal.listen")
        }
        ClientError::Tls { .. } if cli => format!(
            "the TLS handshake with the edge failed: check --fqdn ({name} must be a name in the edge's \
             internal certificate), --ca (the edge's certificate must chain to it) and --cert/--key (issued \
             by a CA in the edge's internal.ca_file)"
        ),
        ClientError::Tls { .. } => format!(
            "the probe's TLS handshake with the internal listener failed: internal.cert_file must name \
             {name}, chain to internal.ca_file or its own CAs, and be usable for client authentication"
        ),
        ClientError::Closed | ClientError::Connection(_) if cli => format!(
            "the edge refused the connection: {known} (check --cert), and --cert must be issued by a CA in \
             its internal.ca_file"
        ),
        ClientError::Closed | ClientError::Connection(_) => format!(
            "the internal listener refused the probe: the probe connects with the edge's internal \
             certificate, so {known}"
        ),
        ClientError::Stream(_) => format!("{edge} does not speak SIP over TLS: check the address"),
        ClientError::Timeout(ms) => format!(
            "{FIELD_504} No final response within {ms} ms: the provider timed out and the edge did not \
             answer in time; check that the provider is reachable from the edge and push.timeout_ms"
        ),
    }
}

/// Ids the edge generates itself (MS-OCER ids it uses, and its own 1900–1999).
fn edge_generated(id: u32) -> bool {
    matches!(
        id,
        1002 | 1005 | 1007 | 1008 | 1009 | 1010 | 1014 | 1017 | 1027 | 1047 | 1900..=1999
    )
}

fn reload_hint() -> &'static str {
    "to the configuration and reload (kill -HUP)"
}

/// The operator's fix for a failed test push: from the final status, its reason phrase and its
/// `ms-diagnostics` value, and (when known) the configuration. Empty for a 2xx.
pub fn diagnose(
    status: u16,
    reason: &str,
    ms_diagnostics: Option<&str>,
    facts: Option<&PushFacts>,
) -> String {
    if (200..300).contains(&status) {
        return String::new();
    }
    let diag = ms_diagnostics.and_then(|v| Diagnostic::parse(v).ok());
    let Some(d) = diag else {
        return match status {
            504 | 408 => format!(
                "{FIELD_504} The provider timed out: the edge got no answer from it (check that it is \
                 reachable from the edge, and push.timeout_ms)"
            ),
            _ => format!("the edge answered {status} {reason} without a diagnostic"),
        };
    };
    let text = d.reason().unwrap_or_default();
    let lower = text.to_ascii_lowercase();
    let param = |n: &str| d.param(n).unwrap_or_default();
    let domain = d
        .param("domain")
        .map(str::to_owned)
        .or_else(|| facts.map(|f| f.push_domain.clone()))
        .unwrap_or_else(|| "push.lync.com".to_owned());
    let header = ms_diagnostics.unwrap_or_default();
    // The URL filter: match its text and the prefix, not an id.
    if let Some(prefix) = d.param("prefix") {
        if lower.contains("push notification request was rejected") || lower.contains("im filter") {
            // What will fail next once the filter lets pushes through, so one edit fixes all.
            let next: Vec<String> = facts
                .map(PushFacts::causes)
                .unwrap_or_default()
                .into_iter()
                .filter(|c| !c.starts_with(FIELD_REJECTED))
                .collect();
            let next = if next.is_empty() {
                String::new()
            } else {
                format!(". After that the push would still fail: {}", next.join("; and "))
            };
            return format!(
                "{FIELD_REJECTED} The IM URL filter blocked the prefix \"{prefix}\" in the push body: remove \
                 \"{prefix}\" from [im_filter] blocked_prefixes, or set [im_filter] action = \"warn\" (or \
                 \"allow\"), and reload (kill -HUP){next}"
            );
        }
    }
    // The breaker: its text and an `until`.
    if let Some(until) = d.param("until") {
        if lower.contains("temporarily cannot route") {
            let who = ["breaker", "provider", "fqdn", "PeerServer"]
                .iter()
                .find_map(|n| d.param(n))
                .unwrap_or("the provider");
            return format!(
                "the circuit breaker for {who} is open until {until}: the provider failed repeatedly and \
                 pushes are refused at once until then; check the provider (sipedge explain-route {domain})"
            );
        }
    }
    let fqdn1 = param("fqdn1");
    let host = fqdn1.rsplit_once(':').map_or(fqdn1, |(h, _)| h);
    let routing = routing_causes(facts);
    match d.id {
        1005 if !fqdn1.is_empty() => not_allowed(&domain, fqdn1, host, facts),
        1005 => format!(
            "the domain {domain} is refused by policy ({text}): remove it from [[federation.blocked]] and \
             reload (kill -HUP)"
        ),
        1009 => no_provider(&domain, fqdn1, host, facts, true),
        1008 | 1014 if !routing.is_empty() => {
            let causes = routing.join("; and ");
            let dns = match d.id {
                1008 => format!("no DNS SRV record _sipfederationtls._tcp.{domain}"),
                _ => format!("{} has no DNS A record", param("fqdn")),
            };
            format!("{causes}; then reload (kill -HUP). The edge also found {dns}, which matters only after that")
        }
        1008 => {
            let servers = match facts.map(|f| f.dns_servers.as_slice()) {
                Some([]) => " (the nameservers of /etc/resolv.conf)".to_owned(),
                Some(s) => format!(" ([dns] servers = {s:?})"),
                None => String::new(),
            };
            let err = d
                .param("dns-error")
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            format!(
                "no DNS SRV record _sipfederationtls._tcp.{domain}{err}: check the edge's DNS{servers} and \
                 [dns] settings, or push.proxy_uri if {domain} is not the push domain"
            )
        }
        1014 => format!(
            "the edge cannot resolve {} (DNS A record): check DNS or add it to [[dns.hosts]]",
            param("fqdn")
        ),
        1904 => format!(
            "the edge cannot connect to the provider {} ({}): check the network path from the edge",
            param("fqdn"),
            param("error")
        ),
        1047 => format!(
            "the TLS handshake with the provider {} failed ({}): the provider must trust the edge's external \
             certificate and the edge the provider's (external.ca_file)",
            param("fqdn1"),
            param("WinsockFailureDescription")
        ),
        1010 => format!(
            "the provider's certificate does not name {} (it names {}): check the hosted provider's \
             proxy_fqdn",
            param("tls-target"),
            param("PeerServer")
        ),
        1907 => format!(
            "the edge refused the From domain {}: it is not one of edge.sip_domains (give --from \
             sip:user@<one of them>, or --config)",
            param("domain")
        ),
        1017 => format!(
            "{domain} is one of the edge's own domains: push.proxy_uri must name the push service (default \
             sip:push@push.lync.com)"
        ),
        1007 => format!(
            "the edge cannot route now ({}): retry; if it persists check {}",
            param("error"),
            param("fqdn")
        ),
        1034 => format!("the provider answered {status} {reason} without a diagnostic of its own ({header})"),
        1911 => format!(
            "{FIELD_504} The provider {} did not answer within push.timeout_ms ({} ms) in {}: check \
             that it is up and reachable from the edge (sipedge explain-route {domain}); after \
             push.breaker_failures such failures the edge refuses pushes at once for push.breaker_cooldown_ms",
            param("provider"),
            param("timeout-ms"),
            crate::log::count(param("attempts").parse().unwrap_or(0), "attempt")
        ),
        1910 => format!(
            "No push subscription for target device: the push request's RFC 8599 identity is incomplete or \
             names no known provider ({}): the sender must give pn-provider (apns, fcm, webpush) with pn-prid",
            param("problem")
        ),
        id if !edge_generated(id) => format!("the provider answered {status} {reason}: {header}"),
        _ => format!("the edge answered {status} {reason}: {text}"),
    }
}

/// The configuration's causes that apply once a push was routed: the edge answered from routing, so
/// its filter let the push through (the facts may be a guess, e.g. the embedded default's).
fn routing_causes(facts: Option<&PushFacts>) -> Vec<String> {
    facts
        .map(PushFacts::causes)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !c.starts_with(FIELD_REJECTED))
        .collect()
}

/// 1005 with an SRV target: the push domain is not allowed (the field case), or its SRV target is
/// no enabled hosted provider.
fn not_allowed(domain: &str, fqdn1: &str, host: &str, facts: Option<&PushFacts>) -> String {
    let allow = format!(
        "the push domain {domain} is not allowed: add [[federation.allowed]] domain = \"{domain}\" {}",
        reload_hint()
    );
    match facts.map(|f| (f, f.provider(host))) {
        Some((_, Some(p))) if p.enabled => format!(
            "{allow} (its SRV record points at {fqdn1}, the hosted provider {}, which is enabled)",
            p.name
        ),
        Some((f, _)) => format!("{allow}; and {}", no_provider(domain, fqdn1, host, Some(f), false)),
        None => format!(
            "{allow} (its SRV record points at {fqdn1}; that must be an enabled [[federation.hosted_providers]] \
             entry)"
        ),
    }
}

/// The SRV target `host` of `domain` is no enabled hosted provider.
fn no_provider(domain: &str, fqdn1: &str, host: &str, facts: Option<&PushFacts>, lead: bool) -> String {
    let what = match facts.and_then(|f| f.provider(host)) {
        Some(p) => format!(
            "the hosted provider {} ({host}) is disabled: set enabled = true in its [[federation.hosted_providers]] \
             entry",
            p.name
        ),
        None => {
            let enabled: Vec<&str> = facts
                .map(|f| f.providers.iter().filter(|p| p.enabled).map(|p| p.name.as_str()).collect())
                .unwrap_or_default();
            let none = match (facts, enabled.as_slice()) {
                (Some(_), []) => "no enabled hosted provider is configured".to_owned(),
                (Some(_), names) => format!("the enabled hosted providers ({}) are not {host}", names.join(", ")),
                (None, _) => format!("{host} is not an enabled hosted provider"),
            };
            format!(
                "{none}: add [[federation.hosted_providers]] name = \"LyncOnline\" proxy_fqdn = \"{host}\" \
                 enabled = true"
            )
        }
    };
    if lead {
        format!(
            "the SRV record of {domain} points at {fqdn1}, outside {domain}, and {what} {}",
            reload_hint()
        )
    } else {
        format!("{what} {}", reload_hint())
    }
}

#[cfg(test)]
mod tests;
