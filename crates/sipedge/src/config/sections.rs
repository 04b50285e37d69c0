//! The sections validated value by value: `edge` (FQDN, SIP domains), listener addresses and their
//! overlaps, `internal.known_servers`, `push` (the URI checked with `sip_codec::SipUri::parse`; its
//! host is the push domain), `dns` and `limits`. Each function records its problems under their key
//! paths and returns `None` for a section that did not validate.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use federation_policy::{DomainName, KnownServer};
use sip_codec::{Host, SipUri, Uri};

use super::file::*;
use super::settings::*;
use super::validate::{domain_value, fqdn_value, number, required};
use super::Issues;

pub(super) fn edge_fqdn(edge: &EdgeFile, i: &mut Issues) -> Option<DomainName> {
    let s = required(&edge.fqdn, "edge.fqdn", "this edge's FQDN", i)?;
    DomainName::parse(s)
        .map_err(|e| {
            let hint = if s.contains(':') {
                " (a host name, without a port)"
            } else {
                ""
            };
            i.push("edge.fqdn", format!("{e}{hint}"));
        })
        .ok()
        .filter(|d| super::validate::host_name(d, s, "edge.fqdn", i))
}

pub(super) fn socket(v: &Option<String>, key: &str, i: &mut Issues) -> Option<SocketAddr> {
    let s = required(v, key, "an address and port, e.g. 192.0.2.10:5061", i)?;
    s.trim()
        .parse::<SocketAddr>()
        .map_err(|_| {
            i.push(
                key,
                format!("{s:?} is not an address and port (e.g. 192.0.2.10:5061 or [2001:db8::1]:5061)"),
            )
        })
        .ok()
}

pub(super) fn sip_domains(edge: &EdgeFile, i: &mut Issues) -> Option<Vec<DomainName>> {
    let list = match &edge.sip_domains {
        Some(l) if !l.is_empty() => l,
        _ => {
            if !i.covers("edge.sip_domains") {
                i.push(
                    "edge.sip_domains",
                    "missing: the SIP domains this edge serves (at least one)",
                );
            }
            return None;
        }
    };
    let mut out: Vec<DomainName> = Vec::new();
    let mut ok = true;
    for (n, s) in list.iter().enumerate() {
        let key = format!("edge.sip_domains[{n}]");
        match domain_value(s, &key, i) {
            Some(d) if out.contains(&d) => {
                i.push(key, format!("{d} is listed twice"));
                ok = false;
            }
            Some(d) => out.push(d),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// `internal.known_servers`: each entry's FQDN and version (a number, kept in its shortest form so
/// that `7` and `"7.0"` are one version); an exact repeat of an earlier entry is a warning naming both
/// (a repeat with another version is the policy's error, `federation.rs`).
pub(super) fn known_servers(
    list: &[KnownServerFile],
    i: &mut Issues,
    w: &mut Issues,
) -> Vec<(usize, KnownServer)> {
    let mut out: Vec<(usize, KnownServer)> = Vec::new();
    for (n, k) in list.iter().enumerate() {
        let key = format!("internal.known_servers[{n}]");
        let fqdn = required(&k.fqdn, &format!("{key}.fqdn"), "the server's FQDN", i)
            .and_then(|s| fqdn_value(s, &format!("{key}.fqdn"), i));
        let what = "the server's version, a number as Lync writes it (6 = Lync 2013, 5 = Lync 2010, 0 = any)";
        let version = required(&k.version, &format!("{key}.version"), what, i).and_then(|v| {
            let canonical = version_number(v);
            if canonical.is_none() {
                let entry = k.fqdn.as_deref().map(|f| format!(" ({f})")).unwrap_or_default();
                i.push(
                    format!("{key}.version"),
                    format!("{v:?} is not a version number{entry}: write {what}"),
                );
            }
            canonical
        });
        let (Some(fqdn), Some(version)) = (fqdn, version) else {
            continue;
        };
        let same = |o: &KnownServer| o.fqdn.host() == fqdn.host() && o.fqdn.port() == fqdn.port();
        if let Some((first, _)) = out.iter().find(|(_, o)| same(o) && o.version == version) {
            w.push(
                key.clone(),
                format!(
                    "{fqdn} version {version} repeats internal.known_servers[{first}] exactly: \
                     keep one of the two entries"
                ),
            );
        }
        out.push((n, KnownServer { fqdn, version }));
    }
    out
}

/// A version number in its shortest form (`"07.10"` → `7.1`, `"7.0"` → `7`), or `None` when `v` is
/// not digits with at most one decimal point.
pub(super) fn version_number(v: &str) -> Option<String> {
    let (int, frac) = v.trim().split_once('.').unwrap_or((v.trim(), ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (v.contains('.') && frac.is_empty()) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let frac = frac.trim_end_matches('0');
    Some(if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    })
}

/// Two listeners on one port where the addresses overlap (equal, or either a wildcard); and metrics
/// reachable on the external listener's address (metrics never face the partners) — an error, or
/// with `network_policy` (a pod: one IP for every port, a network policy keeping partners off the
/// metrics port) a warning that says what then protects it.
pub(super) fn listener_conflicts(
    listeners: &[(&str, Option<SocketAddr>)],
    network_policy: bool,
    i: &mut Issues,
    w: &mut Issues,
) {
    for (n, (key, addr)) in listeners.iter().enumerate() {
        let Some(a) = addr else { continue };
        for (other, b) in listeners.iter().take(n).filter_map(|(k, b)| b.map(|b| (k, b))) {
            let overlap = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
            let clash = a.port() != 0 && a.port() == b.port() && overlap;
            let facing = overlap && !a.ip().is_loopback();
            let metrics_external = (*key, *other) == ("metrics.listen", "external.listen");
            if metrics_external && facing && !clash && network_policy {
                w.push(
                    "metrics.network_policy",
                    format!(
                        "metrics.listen {a} shares the external listener's address (external.listen {b}): only a \
                         network policy keeps partners away from /metrics, /status and /probe/push — make sure one \
                         admits only your monitoring to port {} (deploy/k8s has one)",
                        a.port()
                    ),
                );
            } else if metrics_external && (clash || facing) {
                i.push(
                    *key,
                    format!(
                        "{a} is on the external listener's address (external.listen {b}): metrics never face \
                         the partners; listen on the internal side's address or loopback (default {DEFAULT_METRICS_LISTEN}), \
                         or, in a pod where a network policy separates the ports, set metrics.network_policy = true"
                    ),
                );
            } else if clash {
                i.push(
                    *key,
                    format!("{a} overlaps {other} ({b}): each listener needs its own address or port"),
                );
            }
        }
    }
}

/// `[push]`. `timer_f` is `limits.transaction_timeout_ms` when it validated: `push.timeout_ms` must
/// be below it, and its default is 10000 ms or a third of Timer F, whichever is shorter (at least
/// 100), so lowering Timer F alone (to 300 ms or more) never makes a file invalid, and with the
/// default retry a whole push still ends before Timer F.
pub(super) fn push(
    p: &PushFile,
    timer_f: Option<Duration>,
    i: &mut Issues,
    w: &mut Issues,
) -> Option<PushSettings> {
    let text = p
        .proxy_uri
        .clone()
        .unwrap_or_else(|| DEFAULT_PUSH_PROXY_URI.to_owned());
    let uri = match SipUri::parse(text.trim()) {
        Ok(u) => Some(u),
        Err(e) => {
            let problem = match Uri::parse(text.trim()) {
                Ok(Uri::Other { scheme, .. }) => {
                    format!("{text:?} is a {scheme}: URI; expected a sip: or sips: URI such as {DEFAULT_PUSH_PROXY_URI}")
                }
                _ => format!("{text:?} is not a valid SIP URI ({e})"),
            };
            i.push("push.proxy_uri", problem);
            None
        }
    };
    let proxy_uri = uri.and_then(|u| {
        let domain = match u.host {
            Host::Domain(h) => domain_value(h, "push.proxy_uri", i),
            Host::Ipv4(_) | Host::Ipv6(_) => {
                i.push("push.proxy_uri", format!("{text:?}: the host must be the push domain (a name routed by federation), not an IP address"));
                None
            }
        }?;
        Some(PushUri {
            text: text.trim().to_owned(),
            domain,
        })
    });
    let default_timeout = timer_f.map_or(DEFAULT_PUSH_TIMEOUT_MS, |f| {
        let third = u64::try_from(f.as_millis() / 3).unwrap_or(u64::MAX);
        DEFAULT_PUSH_TIMEOUT_MS.min(third).max(100)
    });
    let timeout = number(p.timeout_ms, default_timeout, "push.timeout_ms", 100, 32_000, i);
    let max_retries = number(
        p.max_retries,
        DEFAULT_PUSH_MAX_RETRIES,
        "push.max_retries",
        0,
        5,
        i,
    );
    let backoff = number(
        p.backoff_ms,
        DEFAULT_PUSH_BACKOFF_MS,
        "push.backoff_ms",
        0,
        10_000,
        i,
    );
    let backoff_max = number(
        p.backoff_max_ms,
        DEFAULT_PUSH_BACKOFF_MAX_MS,
        "push.backoff_max_ms",
        0,
        60_000,
        i,
    );
    if let (Some(first), Some(max)) = (backoff, backoff_max) {
        if max < first {
            i.push(
                "push.backoff_max_ms",
                format!("{max} is below push.backoff_ms ({first}): the longest wait cannot be shorter than the first"),
            );
        }
    }
    let breaker_failures = number(
        p.breaker_failures,
        DEFAULT_PUSH_BREAKER_FAILURES,
        "push.breaker_failures",
        1,
        1_000,
        i,
    );
    let breaker_cooldown = number(
        p.breaker_cooldown_ms,
        DEFAULT_PUSH_BREAKER_COOLDOWN_MS,
        "push.breaker_cooldown_ms",
        1_000,
        3_600_000,
        i,
    );
    let backoff_max = backoff_max.filter(|&max| backoff.is_none_or(|first| max >= first));
    let push = PushSettings {
        proxy_uri: proxy_uri?,
        timeout: Duration::from_millis(timeout?),
        max_retries: u32::try_from(max_retries?).ok()?,
        backoff: Duration::from_millis(backoff?),
        backoff_max: Duration::from_millis(backoff_max?),
        breaker_failures: u32::try_from(breaker_failures?).ok()?,
        breaker_cooldown: Duration::from_millis(breaker_cooldown?),
    };
    match timer_f {
        Some(f) if within_timer_f(&push, f, i, w) => Some(push),
        Some(_) => None,
        None => Some(push),
    }
}

/// The relay's own timeout must end before Timer F, or the sender's transaction times out (408)
/// before the edge can answer 504 itself (an error). A whole push with its retries longer than Timer
/// F is a warning: the sender may give up before the last retry's answer.
fn within_timer_f(push: &PushSettings, timer_f: Duration, i: &mut Issues, w: &mut Issues) -> bool {
    if push.timeout >= timer_f {
        i.push(
            "push.timeout_ms",
            format!(
                "{} ms is not below limits.transaction_timeout_ms ({} ms): the relay's own timeout must be \
                 shorter than Timer F, so the sender hears the edge's 504 rather than its own 408",
                push.timeout.as_millis(),
                timer_f.as_millis()
            ),
        );
        return false;
    }
    let budget = push.relay_settings().budget();
    if budget > timer_f {
        w.push(
            "push.max_retries",
            format!(
                "a push with all its retries may take {} ms (push.timeout_ms x (1 + push.max_retries) plus the \
                 backoffs), longer than Timer F (limits.transaction_timeout_ms {} ms): the sender may time out \
                 (408) before the last retry is answered; lower push.timeout_ms or push.max_retries",
                budget.as_millis(),
                timer_f.as_millis()
            ),
        );
    }
    true
}

pub(super) fn dns(d: &DnsFile, i: &mut Issues) -> Option<DnsSettings> {
    let mut ok = true;
    let mut servers = Vec::new();
    for (n, s) in d.servers.iter().flatten().enumerate() {
        let t = s.trim();
        match t
            .parse::<SocketAddr>()
            .or_else(|_| t.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        {
            Ok(a) => servers.push(a),
            Err(_) => {
                i.push(
                    format!("dns.servers[{n}]"),
                    format!("{s:?} is not ip:port (e.g. 192.0.2.53:53)"),
                );
                ok = false;
            }
        }
    }
    let max = edge_core::dns::MAX_SERVERS;
    if servers.len() > max {
        // Each server has a socket of its own per worker (so a refused port fails over at once).
        i.push(
            "dns.servers",
            format!(
                "{} servers: at most {max} are used; list the {max} to ask",
                servers.len()
            ),
        );
        ok = false;
    }
    let mut hosts = Vec::new();
    for (n, h) in d.hosts.iter().enumerate() {
        let key = format!("dns.hosts[{n}]");
        let name = required(&h.name, &format!("{key}.name"), "the host name", i)
            .and_then(|s| domain_value(s, &format!("{key}.name"), i));
        let ip = required(&h.ip, &format!("{key}.ip"), "the IPv4 or IPv6 address", i).and_then(|s| {
            s.trim()
                .parse::<IpAddr>()
                .map_err(|_| i.push(format!("{key}.ip"), format!("{s:?} is not an IP address")))
                .ok()
        });
        match (name, ip) {
            (Some(name), Some(ip)) => hosts.push(StaticHost { name, ip }),
            _ => ok = false,
        }
    }
    ok.then_some(DnsSettings { servers, hosts })
}

/// Timer C below this is warned about (RFC 3261: Timer C > 3 minutes).
const TIMER_C_MIN_MS: u64 = 180_000;

pub(super) fn limits(l: &LimitsFile, i: &mut Issues, w: &mut Issues) -> Option<LimitSettings> {
    let bytes = number(
        l.max_message_bytes,
        DEFAULT_MAX_MESSAGE_BYTES,
        "limits.max_message_bytes",
        4096,
        16 << 20,
        i,
    );
    let conns = number(
        l.max_connections,
        DEFAULT_MAX_CONNECTIONS,
        "limits.max_connections",
        1,
        1_000_000,
        i,
    );
    let handshake = number(
        l.handshake_timeout_ms,
        DEFAULT_HANDSHAKE_TIMEOUT_MS,
        "limits.handshake_timeout_ms",
        100,
        120_000,
        i,
    );
    let keepalive = number(
        l.keepalive_interval_s,
        DEFAULT_KEEPALIVE_INTERVAL_S,
        "limits.keepalive_interval_s",
        1,
        3600,
        i,
    );
    let per_ip = number(
        l.max_connections_per_ip,
        DEFAULT_MAX_CONNECTIONS_PER_IP,
        "limits.max_connections_per_ip",
        1,
        1_000_000,
        i,
    );
    let idle = number(
        l.idle_timeout_s,
        DEFAULT_IDLE_TIMEOUT_S,
        "limits.idle_timeout_s",
        5,
        86_400,
        i,
    );
    let message = number(
        l.message_timeout_ms,
        DEFAULT_MESSAGE_TIMEOUT_MS,
        "limits.message_timeout_ms",
        100,
        120_000,
        i,
    );
    let connect = number(
        l.connect_timeout_ms,
        DEFAULT_CONNECT_TIMEOUT_MS,
        "limits.connect_timeout_ms",
        100,
        60_000,
        i,
    );
    let per_hop = number(
        l.outgoing_tls_per_partner,
        DEFAULT_OUTGOING_TLS_PER_PARTNER,
        "limits.outgoing_tls_per_partner",
        1,
        64,
        i,
    );
    let timer_f = number(
        l.transaction_timeout_ms,
        DEFAULT_TRANSACTION_TIMEOUT_MS,
        "limits.transaction_timeout_ms",
        100,
        300_000,
        i,
    );
    let timer_c = number(
        l.invite_timeout_ms,
        DEFAULT_INVITE_TIMEOUT_MS,
        "limits.invite_timeout_ms",
        100,
        3_600_000,
        i,
    );
    let subscriptions = number(
        l.max_subscriptions,
        DEFAULT_MAX_SUBSCRIPTIONS,
        "limits.max_subscriptions",
        0,
        10_000_000,
        i,
    );
    if let Some(ms) = timer_c.filter(|&ms| ms < TIMER_C_MIN_MS) {
        w.push(
            "limits.invite_timeout_ms",
            format!(
                "{ms} ms is below 3 minutes (RFC 3261 Timer C > 3 min; default {DEFAULT_INVITE_TIMEOUT_MS}): \
                 mobile endpoints have 60 s to answer an INVITE (desktops 15 s), and a call still ringing \
                 when this expires is cancelled with 408"
            ),
        );
    }
    Some(LimitSettings {
        max_message_bytes: usize::try_from(bytes?).ok()?,
        max_connections: usize::try_from(conns?).ok()?,
        handshake_timeout: Duration::from_millis(handshake?),
        keepalive_interval: Duration::from_secs(keepalive?),
        max_connections_per_ip: usize::try_from(per_ip?).ok()?,
        idle_timeout: Duration::from_secs(idle?),
        message_timeout: Duration::from_millis(message?),
        connect_timeout: Duration::from_millis(connect?),
        outgoing_tls_per_partner: usize::try_from(per_hop?).ok()?,
        transaction_timeout: Duration::from_millis(timer_f?),
        invite_timeout: Duration::from_millis(timer_c?),
        max_subscriptions: usize::try_from(subscriptions?).ok()?,
    })
}
