//! The validated layer: the immutable [`Config`] and its sections, built only by loading (`load.rs`)
//! and read through `&` everywhere else. Every value is already a checked type — [`DomainName`],
//! [`Fqdn`], [`SocketAddr`], [`Duration`], a parsed push URI, loaded TLS material, the federation
//! [`Policy`] snapshot — so nothing downstream parses configuration text again.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use federation_policy::{DomainName, Fqdn, KnownServer, Policy};
use push_relay::RelaySettings;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::Issue;

/// Where a configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The default compiled into the binary (local use only).
    Embedded,
    File(PathBuf),
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Embedded => f.write_str("<embedded default>"),
            ConfigSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A validated configuration. Immutable: a reload builds a new one.
#[derive(Debug)]
pub struct Config {
    pub(super) source: ConfigSource,
    pub(super) edge: EdgeSettings,
    pub(super) internal: InternalSettings,
    pub(super) external: ExternalSettings,
    pub(super) push: PushSettings,
    pub(super) dns: DnsSettings,
    pub(super) metrics: MetricsSettings,
    pub(super) limits: LimitSettings,
    pub(super) pool: Option<PoolSettings>,
    pub(super) policy: Arc<Policy>,
    pub(super) warnings: Vec<Issue>,
}

impl Config {
    pub fn source(&self) -> &ConfigSource {
        &self.source
    }
    pub fn edge(&self) -> &EdgeSettings {
        &self.edge
    }
    pub fn internal(&self) -> &InternalSettings {
        &self.internal
    }
    pub fn external(&self) -> &ExternalSettings {
        &self.external
    }
    pub fn push(&self) -> &PushSettings {
        &self.push
    }
    pub fn dns(&self) -> &DnsSettings {
        &self.dns
    }
    pub fn metrics(&self) -> &MetricsSettings {
        &self.metrics
    }
    pub fn limits(&self) -> &LimitSettings {
        &self.limits
    }
    /// `[pool]`: `None` for a standalone edge.
    pub fn pool(&self) -> Option<&PoolSettings> {
        self.pool.as_ref()
    }
    /// The federation policy snapshot (allowed, blocked, providers, discovery, known servers, IM filter).
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }
    /// What is valid but likely to bite (printed by `check-config`, logged at start).
    pub fn warnings(&self) -> &[Issue] {
        &self.warnings
    }
}

#[derive(Debug)]
pub struct EdgeSettings {
    pub fqdn: DomainName,
    pub sip_domains: Vec<DomainName>,
    /// `None`: one worker per core.
    pub workers: Option<NonZeroUsize>,
}

impl EdgeSettings {
    /// The number of workers to start.
    pub fn worker_count(&self) -> usize {
        self.workers
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get)
    }
}

#[derive(Debug)]
pub struct InternalSettings {
    /// The name front ends reach the edge's internal listener by (Via, Record-Route, its certificate).
    pub fqdn: DomainName,
    pub listen: SocketAddr,
    /// The front-end pool requests from partners go to.
    pub next_hop: Fqdn,
    pub tls: TlsIdentity,
    /// The CA(s) that issued the known servers' client certificates (mutual TLS).
    pub client_ca: Option<CaBundle>,
    pub known_servers: Vec<KnownServer>,
}

#[derive(Debug)]
pub struct ExternalSettings {
    pub listen: SocketAddr,
    pub tls: TlsIdentity,
    /// Extra roots for partner certificates (`external.ca_file`), on top of `system_roots`.
    pub extra_roots: Option<CaBundle>,
    /// The operating system's trust store (`rustls-native-certs`: /etc/ssl/certs/ca-certificates.crt
    /// on Debian, or SSL_CERT_FILE / SSL_CERT_DIR), read once at validation.
    pub system_roots: Vec<CertificateDer<'static>>,
}

/// The certificate a listener presents.
#[derive(Debug)]
pub enum TlsIdentity {
    /// Loaded and checked from the configured PEM files.
    Files(TlsFiles),
    /// Only the embedded default: a self-signed certificate generated at start.
    SelfSigned,
}

#[derive(Debug)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub leaf: CertSummary,
}

/// What the checks read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    /// DNS subject alternative names, as written.
    pub dns_names: Vec<String>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

#[derive(Debug)]
pub struct CaBundle {
    pub file: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
}

#[derive(Debug)]
pub struct PushSettings {
    pub proxy_uri: PushUri,
    /// One attempt's timeout (`push.timeout_ms`), below Timer F.
    pub timeout: Duration,
    /// `push.max_retries` (0..=5).
    pub max_retries: u32,
    /// `push.backoff_ms`: the first retry's wait.
    pub backoff: Duration,
    /// `push.backoff_max_ms` (>= `backoff`).
    pub backoff_max: Duration,
    /// `push.breaker_failures` (1..=1000).
    pub breaker_failures: u32,
    /// `push.breaker_cooldown_ms` (1 s..=1 h).
    pub breaker_cooldown: Duration,
}

impl PushSettings {
    /// The push relay's policy settings (`push_relay::Relay::new` / `set_settings` on reload).
    pub fn relay_settings(&self) -> RelaySettings {
        RelaySettings {
            timeout: self.timeout,
            max_retries: self.max_retries,
            backoff_initial: self.backoff,
            backoff_max: self.backoff_max,
            breaker_failures: self.breaker_failures,
            breaker_cooldown: self.breaker_cooldown,
        }
    }
}

/// `push.proxy_uri`, checked with `sip_codec::SipUri::parse`; its host is the push domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushUri {
    pub(super) text: String,
    pub(super) domain: DomainName,
}

impl PushUri {
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// The push domain, routed like any federated domain (`push.lync.com`).
    pub fn domain(&self) -> &DomainName {
        &self.domain
    }
}

impl fmt::Display for PushUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug)]
pub struct DnsSettings {
    /// Empty: the resolvers of /etc/resolv.conf.
    pub servers: Vec<SocketAddr>,
    /// Static entries consulted before DNS.
    pub hosts: Vec<StaticHost>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticHost {
    pub name: DomainName,
    pub ip: IpAddr,
}

#[derive(Debug)]
pub struct MetricsSettings {
    pub listen: SocketAddr,
}

#[derive(Debug)]
pub struct LimitSettings {
    pub max_message_bytes: usize,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub keepalive_interval: Duration,
    pub max_connections_per_ip: usize,
    pub idle_timeout: Duration,
    /// From a message's first octet to its last.
    pub message_timeout: Duration,
    pub connect_timeout: Duration,
    pub outgoing_tls_per_partner: usize,
    /// Timer F / Timer B.
    pub transaction_timeout: Duration,
    /// Timer C.
    pub invite_timeout: Duration,
    /// SUBSCRIBE dialogs tracked for liveness, edge-wide.
    pub max_subscriptions: usize,
}

/// Resolves a configured path: relative paths are taken from the config file's directory.
pub(super) fn resolve_path(base: Option<&Path>, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    match base {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    }
}

/// `[pool]`, validated (`config/pool.rs`).
#[derive(Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// `redis://host:port[/db]` or `rediss://…` (TLS), user and password removed (they are in
    /// `username` and `password`).
    pub redis: String,
    pub username: Option<String>,
    /// From the URL or `redis_password_file`; never logged, printed or compared in a reload diff.
    pub password: Option<String>,
    /// This replica's name in the pool (default: the host name).
    pub replica: String,
    pub redis_down: RedisDown,
}

impl std::fmt::Debug for PoolSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSettings")
            .field("redis", &self.redis)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("replica", &self.replica)
            .field("redis_down", &self.redis_down)
            .finish()
    }
}

/// `[pool] redis_down`: what the replica does with discovered partners while Redis is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisDown {
    /// Each replica admits the limit ÷ the replicas seen at the last sync (the default).
    Divide,
    /// Discovered partners are refused with 503 + Retry-After.
    Refuse,
}

impl RedisDown {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisDown::Divide => "divide",
            RedisDown::Refuse => "refuse",
        }
    }
}
