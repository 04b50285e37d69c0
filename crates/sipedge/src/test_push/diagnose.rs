//! The Diagnosis of `sipedge test-push`: from what the edge answered (or could not be reached) and
//! the configuration's push facts, the cause in the words of the field's `Test-CsMcxPushNotification`
//! failures and what to change.

use super::*;

/// Ids the edge generates itself (MS-OCER ids it uses, and its own 1900–1999).
pub(super) fn edge_generated(id: u32) -> bool {
    matches!(
        id,
        1002 | 1005 | 1007 | 1008 | 1009 | 1010 | 1014 | 1017 | 1027 | 1047 | 1900..=1999
    )
}

pub(super) fn reload_hint() -> &'static str {
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
pub(super) fn routing_causes(facts: Option<&PushFacts>) -> Vec<String> {
    facts
        .map(PushFacts::causes)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !c.starts_with(FIELD_REJECTED))
        .collect()
}

/// 1005 with an SRV target: the push domain is not allowed (the field case), or its SRV target is
/// no enabled hosted provider.
pub(super) fn not_allowed(domain: &str, fqdn1: &str, host: &str, facts: Option<&PushFacts>) -> String {
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
pub(super) fn no_provider(
    domain: &str,
    fqdn1: &str,
    host: &str,
    facts: Option<&PushFacts>,
    lead: bool,
) -> String {
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

/// What to check when no final response came.
pub(super) fn unreachable_edge(e: &ClientError, setup: &Setup) -> String {
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
