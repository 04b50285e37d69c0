//! Validation of the file structs into the [`Config`]: the driver that validates every section (the
//! sections themselves are in `sections.rs`, federation in `federation.rs`, TLS in `tls.rs`), records
//! each problem under its key path and goes on, so one run lists every error; then assembles the
//! config and computes its warnings. Also the small value checks every section shares.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use federation_policy::{DomainName, Fqdn, KnownServer, Policy};

use super::file::*;
use super::sections;
use super::settings::*;
use super::{federation, tls, warnings, Invalid, Issues};

/// Every section, validated or `None` (its problems recorded).
struct Parts {
    fqdn: Option<DomainName>,
    sip_domains: Option<Vec<DomainName>>,
    workers: Option<Option<NonZeroUsize>>,
    internal_fqdn: Option<DomainName>,
    internal_listen: Option<std::net::SocketAddr>,
    next_hop: Option<Fqdn>,
    internal_tls: Option<TlsIdentity>,
    client_ca: Option<Option<CaBundle>>,
    known: Vec<(usize, KnownServer)>,
    external_listen: Option<std::net::SocketAddr>,
    external_tls: Option<TlsIdentity>,
    extra_roots: Option<Option<CaBundle>>,
    system_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    metrics_listen: Option<std::net::SocketAddr>,
    push: Option<PushSettings>,
    dns: Option<DnsSettings>,
    limits: Option<LimitSettings>,
    pool: Option<Option<PoolSettings>>,
    policy: Option<Policy>,
}

impl Parts {
    fn assemble(self, source: ConfigSource) -> Option<Config> {
        Some(Config {
            source,
            edge: EdgeSettings {
                fqdn: self.fqdn?,
                sip_domains: self.sip_domains?,
                workers: self.workers?,
            },
            internal: InternalSettings {
                fqdn: self.internal_fqdn?,
                listen: self.internal_listen?,
                next_hop: self.next_hop?,
                tls: self.internal_tls?,
                client_ca: self.client_ca?,
                known_servers: self.known.into_iter().map(|(_, k)| k).collect(),
            },
            external: ExternalSettings {
                listen: self.external_listen?,
                tls: self.external_tls?,
                extra_roots: self.extra_roots?,
                system_roots: self.system_roots,
            },
            push: self.push?,
            dns: self.dns?,
            metrics: MetricsSettings {
                listen: self.metrics_listen?,
            },
            limits: self.limits?,
            pool: self.pool?,
            policy: Arc::new(self.policy?),
            warnings: Vec::new(),
        })
    }
}

pub(super) fn build(
    file: FileConfig,
    source: ConfigSource,
    base: Option<&Path>,
    mut issues: Issues,
) -> Result<Config, Invalid> {
    let mut warns = Issues::default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let ctx = tls::Context {
        base,
        now,
        embedded: source == ConfigSource::Embedded,
    };
    let i = &mut issues;

    let fqdn = sections::edge_fqdn(&file.edge, i);
    let sip_domains = sections::sip_domains(&file.edge, i);
    let workers = number(file.edge.workers, DEFAULT_WORKERS, "edge.workers", 0, 1024, i)
        .map(|n| usize::try_from(n).ok().and_then(NonZeroUsize::new));

    let internal = &file.internal;
    let internal_fqdn = match &internal.fqdn {
        Some(s) => domain_value(s, "internal.fqdn", i),
        None => fqdn.clone(),
    };
    let internal_listen = sections::socket(&internal.listen, "internal.listen", i);
    let next_hop = required(
        &internal.next_hop,
        "internal.next_hop",
        "the front-end pool FQDN[:port]",
        i,
    )
    .and_then(|s| fqdn_value(s, "internal.next_hop", i));
    let internal_tls = tls::identity(
        "internal",
        &internal.cert_file,
        &internal.key_file,
        &ctx,
        i,
        &mut warns,
    );
    let client_ca = match &internal.ca_file {
        Some(p) => tls::ca_bundle("internal.ca_file", p, &ctx, i, &mut warns).map(Some),
        None if ctx.embedded => Some(None),
        None => {
            let what = "the PEM CA bundle that issued the known servers' client certificates (mutual TLS)";
            i.push("internal.ca_file", format!("missing: {what}"));
            None
        }
    };
    let known = sections::known_servers(&internal.known_servers, i, &mut warns);

    let external = &file.external;
    let external_listen = sections::socket(&external.listen, "external.listen", i);
    let external_tls = tls::identity(
        "external",
        &external.cert_file,
        &external.key_file,
        &ctx,
        i,
        &mut warns,
    );
    let extra_roots = match &external.ca_file {
        Some(p) => tls::ca_bundle("external.ca_file", p, &ctx, i, &mut warns).map(Some),
        None => Some(None),
    };
    let extra = extra_roots.as_ref().and_then(Option::as_ref);
    let system_roots = tls::system_roots(extra, &ctx, i, &mut warns);

    let metrics = Some(
        file.metrics
            .listen
            .clone()
            .unwrap_or_else(|| DEFAULT_METRICS_LISTEN.to_owned()),
    );
    let metrics_listen = sections::socket(&metrics, "metrics.listen", i);
    let network_policy = file.metrics.network_policy.unwrap_or(false);
    sections::listener_conflicts(
        &[
            ("internal.listen", internal_listen),
            ("external.listen", external_listen),
            ("metrics.listen", metrics_listen),
        ],
        network_policy,
        i,
        &mut warns,
    );
    if let (Some(hop), Some(listen)) = (&next_hop, internal_listen) {
        let own_ip = hop
            .host()
            .as_str()
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip == listen.ip());
        if own_ip && hop.port() == listen.port() {
            i.push(
                "internal.next_hop",
                format!("{hop} is this edge's own internal listener: requests would loop"),
            );
        }
    }

    let dns = sections::dns(&file.dns, i);
    let pool = super::pool::validate(file.pool.as_ref(), base, i);
    let limits = sections::limits(&file.limits, i, &mut warns);
    let timer_f = limits.as_ref().map(|l| l.transaction_timeout);
    let push = sections::push(&file.push, timer_f, i, &mut warns);
    let our = sip_domains.as_deref().unwrap_or_default();
    let policy = federation::build(&file, fqdn.as_ref(), our, &known, i);

    let parts = Parts {
        fqdn,
        sip_domains,
        workers,
        internal_fqdn,
        internal_listen,
        next_hop,
        internal_tls,
        client_ca,
        known,
        external_listen,
        external_tls,
        extra_roots,
        system_roots,
        metrics_listen,
        push,
        dns,
        limits,
        pool,
        policy,
    };
    // The cross-section warnings come with the errors too: each needs only the sections it reads.
    let cross = warnings::compute(&warnings::View {
        source: &source,
        policy: parts.policy.as_ref(),
        push: parts.push.as_ref(),
        edge_fqdn: parts.fqdn.as_ref(),
        internal_fqdn: parts.internal_fqdn.as_ref(),
        internal_tls: parts.internal_tls.as_ref(),
        external_tls: parts.external_tls.as_ref(),
        known: &parts.known,
        blocked_entries: file.federation.blocked.len(),
    });
    for w in cross {
        warns.push(w.key, w.problem);
    }
    match parts.assemble(source) {
        Some(mut config) if issues.is_empty() => {
            config.warnings = warns.into_vec();
            Ok(config)
        }
        _ => {
            if issues.is_empty() {
                issues.push(
                    "config",
                    "internal error: a section failed to validate without saying why",
                );
            }
            Err(Invalid {
                errors: issues.into_vec(),
                warnings: warns.into_vec(),
            })
        }
    }
}

/// The value of a required key, or "missing" (unless something was already said about it).
pub(super) fn required<'a>(v: &'a Option<String>, key: &str, what: &str, i: &mut Issues) -> Option<&'a str> {
    match v {
        Some(s) => Some(s.as_str()),
        None => {
            if !i.covers(key) {
                i.push(key, format!("missing: {what}"));
            }
            None
        }
    }
}

/// A server name with an optional port (`next_hop`, `proxy_fqdn`, a known server); a URI written
/// there (`sip:host`, `http://host/`) is said to be one rather than read as a bad port.
pub(super) fn fqdn_value(s: &str, key: &str, i: &mut Issues) -> Option<Fqdn> {
    if let Some(host) = uri_host(s) {
        i.push(
            key,
            format!("{s:?} is a URI: write a host name, not a URI, with an optional :port (here {host:?})"),
        );
        return None;
    }
    Fqdn::parse(s)
        .map_err(|e| i.push(key, e.to_string()))
        .ok()
        .filter(|f| host_name(f.host(), s, key, i))
}

/// A name in the configuration is a host name (RFC 1123: letters, digits, `-` and `.`): what a
/// certificate, a Via and a DNS A record can carry. [`DomainName`] also takes `_`, which DNS
/// allows in other names and peers may send; the operator's own names may not.
pub(super) fn host_name(name: &DomainName, written: &str, key: &str, i: &mut Issues) -> bool {
    if name.as_str().contains('_') {
        i.push(
            key,
            format!("{written:?} contains '_': a host name has letters, digits, '-' and '.' only (RFC 1123)"),
        );
        return false;
    }
    true
}

/// The `host[:port]` of `s` when it is written as a URI: `sip:host`, `sips:user@host;transport=tls`,
/// `http://host:80/path`. `None` for `host` and `host:port`.
fn uri_host(s: &str) -> Option<&str> {
    let (scheme, rest) = s.trim().split_once(':')?;
    let known = ["sip", "sips", "http", "https"]
        .iter()
        .any(|k| scheme.eq_ignore_ascii_case(k));
    let is_port = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    if !(rest.starts_with("//") || known) || is_port {
        return None;
    }
    let rest = rest.trim_start_matches('/');
    let authority = rest.split(['/', ';', '?', '>']).next().unwrap_or(rest);
    Some(authority.rsplit_once('@').map_or(authority, |(_, host)| host))
}

pub(super) fn domain_value(s: &str, key: &str, i: &mut Issues) -> Option<DomainName> {
    DomainName::parse(s)
        .map_err(|e| i.push(key, e.to_string()))
        .ok()
        .filter(|d| host_name(d, s, key, i))
}

/// An integer key with a default, within `min..=max`.
pub(super) fn number(
    v: Option<i64>,
    default: u64,
    key: &str,
    min: u64,
    max: u64,
    i: &mut Issues,
) -> Option<u64> {
    // The one range message of the key, whatever the value: negative, zero or too large.
    let n = v.map_or(Ok(default), u64::try_from);
    match n {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            let shown = v.map_or(default.to_string(), |n| n.to_string());
            i.push(key, format!("{shown} is out of range: expected {min}..={max}"));
            None
        }
    }
}
