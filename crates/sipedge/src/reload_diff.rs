//! What a reload changes, as structured log records (issue 9, "SIGHUP reload"): [`changes`] compares
//! the running [`Config`] with the newly validated one and returns one JSON record per difference —
//! allowed and blocked domains added or removed, hosted providers, known servers (Lync events 14493 and
//! 14495, from `known_servers.rs`), certificates replaced (old and new subject, serial and expiry),
//! trust roots, limits and the other runtime settings. [`Fixed`] holds what only a restart changes
//! (listener addresses, workers, our names, DNS) as the edge started with it, and
//! [`Fixed::refused`] names each such key a new configuration changes. `reload.rs` logs both.

use std::net::SocketAddr;
use std::num::NonZeroUsize;

use federation_policy::{AllowedDomain, HostedProvider, Policy};
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};

use crate::config::{date, CaBundle, Config, LimitSettings, PoolSettings, StaticHost, TlsIdentity};

/// A key whose new value needs a restart: refused, the rest of the reload applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub key: &'static str,
    pub old: String,
    pub new: String,
}

/// The settings fixed at start: listeners, workers, the names written into dialogs' Via and
/// Record-Route, and the resolver each worker built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixed {
    internal_listen: SocketAddr,
    external_listen: SocketAddr,
    metrics_listen: SocketAddr,
    workers: Option<NonZeroUsize>,
    edge_fqdn: String,
    internal_fqdn: String,
    dns_servers: Vec<SocketAddr>,
    dns_hosts: Vec<StaticHost>,
    /// `[pool]` (its `Debug` masks the password): the sync thread runs with what it started with.
    pool: Option<PoolSettings>,
}

impl Fixed {
    pub fn of(c: &Config) -> Fixed {
        Fixed {
            internal_listen: c.internal().listen,
            external_listen: c.external().listen,
            metrics_listen: c.metrics().listen,
            workers: c.edge().workers,
            edge_fqdn: c.edge().fqdn.to_string(),
            internal_fqdn: c.internal().fqdn.to_string(),
            dns_servers: c.dns().servers.clone(),
            dns_hosts: c.dns().hosts.clone(),
            pool: c.pool().cloned(),
        }
    }

    /// Each key `new` changes that only a restart applies (old → new as written).
    pub fn refused(&self, new: &Config) -> Vec<Refused> {
        let n = Fixed::of(new);
        let mut out = Vec::new();
        let mut check = |key: &'static str, old: String, new: String| {
            if old != new {
                out.push(Refused { key, old, new });
            }
        };
        let workers =
            |w: Option<NonZeroUsize>| w.map_or_else(|| "0 (one per core)".to_owned(), |w| w.to_string());
        check(
            "internal.listen",
            self.internal_listen.to_string(),
            n.internal_listen.to_string(),
        );
        check(
            "external.listen",
            self.external_listen.to_string(),
            n.external_listen.to_string(),
        );
        check(
            "metrics.listen",
            self.metrics_listen.to_string(),
            n.metrics_listen.to_string(),
        );
        check("edge.workers", workers(self.workers), workers(n.workers));
        check("edge.fqdn", self.edge_fqdn.clone(), n.edge_fqdn);
        check("internal.fqdn", self.internal_fqdn.clone(), n.internal_fqdn);
        check("dns.servers", list(&self.dns_servers), list(&n.dns_servers));
        let hosts = |h: &[StaticHost]| {
            list(
                &h.iter()
                    .map(|h| format!("{}={}", h.name, h.ip))
                    .collect::<Vec<_>>(),
            )
        };
        check("dns.hosts", hosts(&self.dns_hosts), hosts(&n.dns_hosts));
        let (old_pool, new_pool) = (pool_text(self.pool.as_ref()), pool_text(n.pool.as_ref()));
        let password = |p: &Option<PoolSettings>| p.as_ref().and_then(|p| p.password.clone());
        if old_pool == new_pool && password(&self.pool) != password(&n.pool) {
            // Said without either password.
            check(
                "pool.redis_password",
                "(running)".to_owned(),
                "(changed)".to_owned(),
            );
        }
        check("pool", old_pool, new_pool);
        out
    }
}

/// `[pool]` as the restart line quotes it (no password).
fn pool_text(p: Option<&PoolSettings>) -> String {
    match p {
        None => "none (standalone)".to_owned(),
        Some(p) => format!(
            "{} as replica {} (redis_down {}{})",
            p.redis,
            p.replica,
            p.redis_down.as_str(),
            p.username
                .as_ref()
                .map_or(String::new(), |u| format!(", user {u}"))
        ),
    }
}

/// `[a, b]` of anything displayable.
fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// Every difference from `old` to `new` that the reload applies, one log record each.
pub fn changes(old: &Config, new: &Config) -> Vec<Value> {
    let mut out = Vec::new();
    policy_changes(old.policy(), new.policy(), &mut out);
    out.extend(crate::known_servers::reload_events(
        old.policy().known_servers(),
        new.policy().known_servers(),
    ));
    certificate_change("internal", &old.internal().tls, &new.internal().tls, &mut out);
    certificate_change("external", &old.external().tls, &new.external().tls, &mut out);
    roots_change(
        "internal.ca_file",
        old.internal().client_ca.as_ref(),
        new.internal().client_ca.as_ref(),
        &mut out,
    );
    roots_change(
        "external.ca_file",
        old.external().extra_roots.as_ref(),
        new.external().extra_roots.as_ref(),
        &mut out,
    );
    if old.external().system_roots != new.external().system_roots {
        out.push(setting(
            "external.system_roots",
            format!("{} roots", old.external().system_roots.len()),
            format!("{} roots", new.external().system_roots.len()),
        ));
    }
    for ((key, a), (_, b)) in limit_fields(old.limits())
        .into_iter()
        .zip(limit_fields(new.limits()))
    {
        if a != b {
            out.push(json!({
                "level": "info", "event": "limit_changed", "key": key, "old": a, "new": b,
                "text": format!("{key} changed from {a} to {b}; connections opened from now on use it"),
            }));
        }
    }
    let mut settings = |key: &str, a: String, b: String| {
        if a != b {
            out.push(setting(key, a, b));
        }
    };
    settings(
        "internal.next_hop",
        old.internal().next_hop.to_string(),
        new.internal().next_hop.to_string(),
    );
    settings(
        "push.proxy_uri",
        old.push().proxy_uri.to_string(),
        new.push().proxy_uri.to_string(),
    );
    let (a, b) = (old.push(), new.push());
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    settings("push.timeout_ms", ms(a.timeout), ms(b.timeout));
    settings(
        "push.max_retries",
        a.max_retries.to_string(),
        b.max_retries.to_string(),
    );
    settings("push.backoff_ms", ms(a.backoff), ms(b.backoff));
    settings("push.backoff_max_ms", ms(a.backoff_max), ms(b.backoff_max));
    settings(
        "push.breaker_failures",
        a.breaker_failures.to_string(),
        b.breaker_failures.to_string(),
    );
    settings(
        "push.breaker_cooldown_ms",
        ms(a.breaker_cooldown),
        ms(b.breaker_cooldown),
    );
    out
}

fn setting(key: &str, old: String, new: String) -> Value {
    json!({
        "level": "info", "event": "setting_changed", "key": key, "old": old, "new": new,
        "text": format!("{key} changed from {old} to {new}"),
    })
}

fn policy_changes(old: &Policy, new: &Policy, out: &mut Vec<Value>) {
    let shown = |a: &AllowedDomain| a.proxy_fqdn.as_ref().map(ToString::to_string);
    for a in old.allowed_domains() {
        match new.allowed(&a.domain) {
            None => out.push(domain_event(
                "federation_allowed",
                "removed",
                &a.domain.to_string(),
                shown(a),
                None,
            )),
            Some(n) if n.proxy_fqdn != a.proxy_fqdn => out.push(domain_event(
                "federation_allowed",
                "changed",
                &a.domain.to_string(),
                shown(n),
                Some(shown(a)),
            )),
            Some(_) => {}
        }
    }
    for n in new.allowed_domains().filter(|n| old.allowed(&n.domain).is_none()) {
        out.push(domain_event(
            "federation_allowed",
            "added",
            &n.domain.to_string(),
            shown(n),
            None,
        ));
    }
    let (ob, nb) = (old.blocked_domains(), new.blocked_domains());
    for d in ob.iter().filter(|d| !nb.contains(d)) {
        out.push(domain_event(
            "federation_blocked",
            "removed",
            &d.to_string(),
            None,
            None,
        ));
    }
    for d in nb.iter().filter(|d| !ob.contains(d)) {
        out.push(domain_event(
            "federation_blocked",
            "added",
            &d.to_string(),
            None,
            None,
        ));
    }
    provider_changes(old.providers(), new.providers(), out);
    let domains = |p: &Policy| list(p.our_domains());
    if domains(old) != domains(new) {
        out.push(setting("edge.sip_domains", domains(old), domains(new)));
    }
    let discovery = |p: &Policy| match p.discovery() {
        None => "off".to_owned(),
        Some(l) => format!(
            "on ({}/s, {} contacts per {} s)",
            l.messages_per_second, l.distinct_contacts, l.contact_window_secs
        ),
    };
    if old.discovery() != new.discovery() {
        out.push(setting(
            "federation.enable_partner_discovery",
            discovery(old),
            discovery(new),
        ));
    }
    // As the configuration writes it, not Rust's Debug text.
    let filter = |p: &Policy| {
        let prefixes: Vec<String> = p
            .im_filter()
            .prefixes()
            .iter()
            .map(|x| format!("\"{x}\""))
            .collect();
        format!(
            "action = \"{}\", blocked_prefixes = [{}]",
            p.im_filter().action().as_str(),
            prefixes.join(", ")
        )
    };
    if old.im_filter() != new.im_filter() {
        out.push(setting("im_filter", filter(old), filter(new)));
    }
}

fn domain_event(
    event: &str,
    change: &str,
    domain: &str,
    proxy_fqdn: Option<String>,
    old_proxy_fqdn: Option<Option<String>>,
) -> Value {
    let list_name = if event == "federation_blocked" {
        "blocked"
    } else {
        "allowed"
    };
    let mut text = format!("federation {list_name} domain {domain} {change}");
    if let Some(p) = &proxy_fqdn {
        text.push_str(&format!(" (proxy_fqdn {p})"));
    }
    let mut record = json!({
        "level": "info", "event": event, "change": change, "domain": domain, "text": text,
    });
    if let Some(map) = record.as_object_mut() {
        if let Some(p) = proxy_fqdn {
            map.insert("proxy_fqdn".into(), p.into());
        }
        if let Some(old) = old_proxy_fqdn {
            map.insert("old_proxy_fqdn".into(), old.map_or(Value::Null, Value::from));
        }
    }
    record
}

fn provider_changes(old: &[HostedProvider], new: &[HostedProvider], out: &mut Vec<Value>) {
    let find = |list: &'_ [HostedProvider], name: &str| list.iter().find(|p| p.name == name).cloned();
    let describe = |p: &HostedProvider| {
        format!(
            "{} (enabled {}, {})",
            p.proxy_fqdn,
            p.enabled,
            p.verification_level.as_str()
        )
    };
    let mut record = |change: &str, p: &HostedProvider, old: Option<&HostedProvider>| {
        let mut text = format!("hosted provider {} {change}: {}", p.name, describe(p));
        if let Some(o) = old {
            text.push_str(&format!("; was {}", describe(o)));
        }
        let mut r = json!({
            "level": "info", "event": "hosted_provider", "change": change, "name": p.name,
            "proxy_fqdn": p.proxy_fqdn.to_string(), "enabled": p.enabled, "text": text,
        });
        if let (Some(o), Some(map)) = (old, r.as_object_mut()) {
            map.insert("old_proxy_fqdn".into(), o.proxy_fqdn.to_string().into());
            map.insert("old_enabled".into(), o.enabled.into());
        }
        out.push(r);
    };
    for o in old {
        match find(new, &o.name) {
            None => record("removed", o, None),
            Some(n) if &n != o => record("changed", &n, Some(o)),
            Some(_) => {}
        }
    }
    for n in new.iter().filter(|n| find(old, &n.name).is_none()) {
        record("added", n, None);
    }
}

/// The serial number of a certificate, hex (`01:a2:…`), or empty when it does not parse.
fn serial(der: Option<&CertificateDer<'_>>) -> String {
    der.and_then(|d| x509_parser::parse_x509_certificate(d.as_ref()).ok())
        .map(|(_, c)| c.raw_serial_as_string())
        .unwrap_or_default()
}

fn certificate_change(side: &str, old: &TlsIdentity, new: &TlsIdentity, out: &mut Vec<Value>) {
    let (TlsIdentity::Files(o), TlsIdentity::Files(n)) = (old, new) else {
        // The embedded default's local PKI is made once at start: nothing to replace.
        return;
    };
    if o.chain == n.chain {
        return;
    }
    let (old_serial, new_serial) = (serial(o.chain.first()), serial(n.chain.first()));
    out.push(json!({
        "level": "info", "event": "certificate_replaced", "side": side,
        "cert_file": n.cert_file.display().to_string(),
        "subject": n.leaf.subject, "serial": new_serial,
        "not_after": n.leaf.not_after, "expires": date(n.leaf.not_after),
        "old_subject": o.leaf.subject, "old_serial": old_serial,
        "old_not_after": o.leaf.not_after, "old_expires": date(o.leaf.not_after),
        "text": format!(
            "{side} certificate replaced: {:?} serial {new_serial} expiring {} (was {:?} serial {old_serial} \
             expiring {}); new TLS handshakes present it, open connections keep theirs",
            n.leaf.subject, date(n.leaf.not_after), o.leaf.subject, date(o.leaf.not_after)
        ),
    }));
}

fn roots_change(key: &str, old: Option<&CaBundle>, new: Option<&CaBundle>, out: &mut Vec<Value>) {
    let certs = |b: Option<&CaBundle>| b.map(|b| b.certs.clone()).unwrap_or_default();
    let (o, n) = (certs(old), certs(new));
    if o != n {
        out.push(json!({
            "level": "info", "event": "trust_roots_changed", "key": key,
            "old_roots": o.len(), "new_roots": n.len(),
            "text": format!("{key}: trust roots replaced ({} → {} certificates); new TLS handshakes verify against them", o.len(), n.len()),
        }));
    }
}

/// `[limits]` as (key, value) pairs in a fixed order.
fn limit_fields(l: &LimitSettings) -> Vec<(&'static str, String)> {
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    vec![
        ("limits.max_message_bytes", l.max_message_bytes.to_string()),
        ("limits.max_connections", l.max_connections.to_string()),
        (
            "limits.max_connections_per_ip",
            l.max_connections_per_ip.to_string(),
        ),
        ("limits.handshake_timeout_ms", ms(l.handshake_timeout)),
        (
            "limits.keepalive_interval_s",
            l.keepalive_interval.as_secs().to_string(),
        ),
        ("limits.idle_timeout_s", l.idle_timeout.as_secs().to_string()),
        ("limits.message_timeout_ms", ms(l.message_timeout)),
        ("limits.connect_timeout_ms", ms(l.connect_timeout)),
        (
            "limits.outgoing_tls_per_partner",
            l.outgoing_tls_per_partner.to_string(),
        ),
        ("limits.transaction_timeout_ms", ms(l.transaction_timeout)),
        ("limits.invite_timeout_ms", ms(l.invite_timeout)),
    ]
}

#[cfg(test)]
mod tests;
