//! The file layer: serde structs mirroring exactly the sections and keys of the configuration
//! contract (`deploy/sipedge.toml` documents every key), every struct `deny_unknown_fields`, and
//! the production defaults of the optional keys. Every leaf is an `Option` (and every list of
//! tables defaults to empty) so that a missing required key is reported by validation with its key
//! path, together with every other error, instead of by serde's first "missing field". Nothing
//! here checks a value: `validate.rs` does.

use serde::Deserialize;

/// `edge.workers`: 0 = one worker per core.
pub const DEFAULT_WORKERS: u64 = 0;
/// `federation.discovery_messages_per_second` (Lync's discovered-partner default).
pub const DEFAULT_DISCOVERY_MESSAGES_PER_SECOND: u64 = 20;
/// `federation.discovery_contacts_per_hour` (Lync's discovered-partner default).
pub const DEFAULT_DISCOVERY_CONTACTS_PER_HOUR: u64 = 1000;
/// `push.proxy_uri`: the Lync push clearinghouse.
pub const DEFAULT_PUSH_PROXY_URI: &str = "sip:push@push.lync.com";
/// `push.timeout_ms`: well under Timer F (32 s), so the mobility service hears our answer first.
pub const DEFAULT_PUSH_TIMEOUT_MS: u64 = 10_000;
/// `push.max_retries`: one retry after a 503 or an attempt that got no response at all.
pub const DEFAULT_PUSH_MAX_RETRIES: u64 = 1;
/// `push.backoff_ms`: the wait before the first retry, doubled for each later one.
pub const DEFAULT_PUSH_BACKOFF_MS: u64 = 200;
/// `push.backoff_max_ms`: the longest wait between two attempts.
pub const DEFAULT_PUSH_BACKOFF_MAX_MS: u64 = 2_000;
/// `push.breaker_failures`: consecutive failed attempts that open a provider's breaker.
pub const DEFAULT_PUSH_BREAKER_FAILURES: u64 = 5;
/// `push.breaker_cooldown_ms`: how long an open breaker answers 503 at once before a probe.
pub const DEFAULT_PUSH_BREAKER_COOLDOWN_MS: u64 = 30_000;
/// `im_filter.action`.
pub const DEFAULT_IM_FILTER_ACTION: &str = "block";
/// `metrics.listen`: loopback unless the operator opens it on purpose (never on the external side).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
/// `limits.max_message_bytes`: one SIP message, head and body.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 128 * 1024;
/// `limits.max_connections`: both listeners together.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;
/// `limits.handshake_timeout_ms`: a TLS handshake that takes longer is dropped.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// `limits.keepalive_interval_s`: RFC 5626 CRLF ping interval on idle connections.
pub const DEFAULT_KEEPALIVE_INTERVAL_S: u64 = 30;
/// `limits.max_connections_per_ip`: one source address (a partner's edge pool shares a few).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u64 = 1_000;
/// `limits.idle_timeout_s`: a connection with no traffic (keepalives included) is closed.
pub const DEFAULT_IDLE_TIMEOUT_S: u64 = 600;
/// `limits.message_timeout_ms`: from the first octet of a message to its last; a peer that sends
/// part of a message and goes silent is answered 408 (when its header section arrived) and closed.
pub const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 5_000;
/// `limits.connect_timeout_ms`: TCP connect to a next hop; past it the request gets 504.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// `limits.outgoing_tls_per_partner`: connections the edge opens to one next hop.
pub const DEFAULT_OUTGOING_TLS_PER_PARTNER: u64 = 4;
/// `limits.transaction_timeout_ms`: RFC 3261 Timer F (non-INVITE) and Timer B (INVITE, until a
/// provisional response).
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: u64 = 32_000;
/// `limits.invite_timeout_ms`: Timer C, an INVITE after its provisional response (> 3 minutes; mobile
/// endpoints may take 60 s to answer).
pub const DEFAULT_INVITE_TIMEOUT_MS: u64 = 181_000;
/// `limits.max_subscriptions`: SUBSCRIBE dialogs the edge tracks for liveness (~1 KiB each).
pub const DEFAULT_MAX_SUBSCRIPTIONS: u64 = 100_000;

/// The whole file. Every section may be omitted (its keys then take their defaults or are reported
/// missing).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub edge: EdgeFile,
    pub internal: InternalFile,
    pub external: ExternalFile,
    pub federation: FederationFile,
    pub push: PushFile,
    pub im_filter: ImFilterFile,
    pub dns: DnsFile,
    pub metrics: MetricsFile,
    pub limits: LimitsFile,
    pub pool: Option<PoolFile>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct EdgeFile {
    pub fqdn: Option<String>,
    pub sip_domains: Option<Vec<String>>,
    pub workers: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct InternalFile {
    pub fqdn: Option<String>,
    pub listen: Option<String>,
    pub next_hop: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
    pub known_servers: Vec<KnownServerFile>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct KnownServerFile {
    pub fqdn: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct ExternalFile {
    pub listen: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct FederationFile {
    pub enable_partner_discovery: Option<bool>,
    pub discovery_messages_per_second: Option<i64>,
    pub discovery_contacts_per_hour: Option<i64>,
    pub allowed: Vec<AllowedFile>,
    pub blocked: Vec<BlockedFile>,
    pub hosted_providers: Vec<ProviderFile>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct AllowedFile {
    pub domain: Option<String>,
    pub proxy_fqdn: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct BlockedFile {
    pub domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct ProviderFile {
    pub name: Option<String>,
    pub proxy_fqdn: Option<String>,
    pub enabled: Option<bool>,
    pub verification_level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct PushFile {
    pub proxy_uri: Option<String>,
    pub timeout_ms: Option<i64>,
    pub max_retries: Option<i64>,
    pub backoff_ms: Option<i64>,
    pub backoff_max_ms: Option<i64>,
    pub breaker_failures: Option<i64>,
    pub breaker_cooldown_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct ImFilterFile {
    pub blocked_prefixes: Option<Vec<String>>,
    pub action: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct DnsFile {
    pub servers: Option<Vec<String>>,
    pub hosts: Vec<HostFile>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct HostFile {
    pub name: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct MetricsFile {
    pub listen: Option<String>,
    pub network_policy: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct LimitsFile {
    pub max_message_bytes: Option<i64>,
    pub max_connections: Option<i64>,
    pub handshake_timeout_ms: Option<i64>,
    pub keepalive_interval_s: Option<i64>,
    pub max_connections_per_ip: Option<i64>,
    pub idle_timeout_s: Option<i64>,
    pub message_timeout_ms: Option<i64>,
    pub connect_timeout_ms: Option<i64>,
    pub outgoing_tls_per_partner: Option<i64>,
    pub transaction_timeout_ms: Option<i64>,
    pub invite_timeout_ms: Option<i64>,
    pub max_subscriptions: Option<i64>,
}

/// `[pool]`: present, the edge is one replica of a pool sharing its limits through Redis.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct PoolFile {
    pub redis: Option<String>,
    pub replica: Option<String>,
    pub redis_down: Option<String>,
    pub redis_password_file: Option<String>,
}
