//! Warnings on a configuration: combinations that load fine but fail in the field, each said in
//! the words of the symptom an operator will see. Push routing (the push domain not allowed, or no
//! enabled hosted provider → 504), the IM URL filter blocking `http:`/`https:` (pushes rejected),
//! partner discovery with nothing blocked, certificates whose SANs miss the name of their side
//! (`internal.fqdn`, `edge.fqdn`), a known-servers table that admits nobody, and one without the
//! edge's own internal name (the push probe's identity). Certificate expiry warnings come from
//! `tls.rs`. Each warning needs only the sections it reads ([`View`]), so a file with errors
//! elsewhere still gets it: `check-config` lists the errors and every warning at once.

use federation_policy::{DomainName, KnownServer, Policy};

use super::settings::{ConfigSource, PushSettings, TlsIdentity};
use super::{tls, Issue, Issues};

/// The validated sections the warnings read; `None` where the section had errors.
#[derive(Debug)]
pub(super) struct View<'a> {
    pub source: &'a ConfigSource,
    pub policy: Option<&'a Policy>,
    pub push: Option<&'a PushSettings>,
    pub edge_fqdn: Option<&'a DomainName>,
    pub internal_fqdn: Option<&'a DomainName>,
    pub internal_tls: Option<&'a TlsIdentity>,
    pub external_tls: Option<&'a TlsIdentity>,
    pub known: &'a [(usize, KnownServer)],
    /// The length of `federation.blocked` (the policy does not list it).
    pub blocked_entries: usize,
}

pub(super) fn compute(v: &View<'_>) -> Vec<Issue> {
    let mut w = Issues::default();
    if let (Some(policy), Some(push)) = (v.policy, v.push) {
        push_routing(policy, push, &mut w);
    }
    if let Some(policy) = v.policy {
        let filter = policy.im_filter();
        let blocked: Vec<&str> = ["http:", "https:"]
            .into_iter()
            .filter(|s| filter.blocks_scheme(s))
            .collect();
        if !blocked.is_empty() {
            w.push(
                "im_filter.blocked_prefixes",
                format!(
                    "the IM filter blocks {} with action block: push requests will be rejected \
                     (Push Notification request was rejected); remove them from blocked_prefixes or set action = \"warn\"",
                    blocked.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" and ")
                ),
            );
        }
        if policy.discovery().is_some() && v.blocked_entries == 0 {
            w.push(
                "federation.enable_partner_discovery",
                "partner discovery is on and federation.blocked is empty: any domain with a \
                 _sipfederationtls._tcp SRV record can federate with you",
            );
        }
    }
    // Each listener's certificate must carry the name peers reach that side by.
    for (section, identity, key, name) in [
        ("internal", v.internal_tls, "internal.fqdn", v.internal_fqdn),
        ("external", v.external_tls, "edge.fqdn", v.edge_fqdn),
    ] {
        if let (Some(TlsIdentity::Files(files)), Some(name)) = (identity, name) {
            let fqdn = name.as_str();
            if !tls::san_covers(&files.leaf, fqdn) {
                let sans = if files.leaf.dns_names.is_empty() {
                    "none".to_owned()
                } else {
                    files.leaf.dns_names.join(", ")
                };
                let wildcard = if files.leaf.dns_names.iter().any(|n| n.starts_with("*.")) {
                    " (wildcards are not accepted for federation)"
                } else {
                    ""
                };
                w.push(
                    format!("{section}.cert_file"),
                    format!(
                        "the certificate in {} does not cover {key} {fqdn}: its DNS SANs are {sans}{wildcard}; \
                         peers that check the edge's name will refuse the TLS handshake",
                        files.cert_file.display()
                    ),
                );
            }
        }
    }
    if v.known.is_empty() && *v.source != ConfigSource::Embedded {
        w.push(
            "internal.known_servers",
            "is empty: the internal listener admits only known servers, so it will refuse every connection",
        );
    } else if let Some(fqdn) = v.internal_fqdn {
        if !v.known.iter().any(|(_, k)| k.fqdn.host() == fqdn) {
            // The push checks connect to the internal listener with the edge's own certificate.
            w.push(
                "internal.known_servers",
                format!(
                    "internal.fqdn {fqdn} is not a known server: GET /probe/push and `sipedge test-push --config` \
                     connect with the edge's internal certificate and will be refused; add \
                     [[internal.known_servers]] fqdn = \"{fqdn}\" version = 0"
                ),
            );
        }
    }
    w.into_vec()
}

/// The push domain must be allowed, and (unless pinned to a proxy FQDN) reached through an enabled
/// hosted provider (docs/architecture.md, Push); otherwise every push ends in 504 Server time-out.
fn push_routing(policy: &Policy, push: &PushSettings, w: &mut Issues) {
    let domain = push.proxy_uri.domain();
    let entry = policy.allowed(domain);
    if entry.is_none() {
        w.push(
            "push.proxy_uri",
            format!(
                "the push domain {domain} is not on federation.allowed: pushes will fail with 504 Server time-out \
                 (add [[federation.allowed]] domain = \"{domain}\")"
            ),
        );
    }
    let pinned = entry.is_some_and(|a| a.proxy_fqdn.is_some());
    if !pinned && !policy.providers().iter().any(|p| p.enabled) {
        w.push(
            "federation.hosted_providers",
            format!(
                "no enabled hosted provider: pushes to {domain} are routed through one (e.g. LyncOnline, \
                 sipfed.online.lync.com) and will fail with 504 Server time-out"
            ),
        );
    }
}
