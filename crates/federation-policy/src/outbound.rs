//! Outbound decision (docs/architecture.md, Federation decision): a request from the internal side
//! to domain D.
//!
//! 1. D blocked → 403 (1005). D one of ours → 403 (1017).
//! 2. D allowed with a pinned proxy FQDN → route there, no DNS.
//! 3. Otherwise `_sipfederationtls._tcp.D` decides; the caller looks it up when told `LookupSrv` and
//!    calls again with the answer. Each SRV target is accepted as
//!    - an enabled hosted provider's FQDN, only if D is allowed (push.lync.com → sipfed.online.lync.com);
//!    - a server in D or a subdomain of D, if D is allowed (allowed partner) or partner discovery is on
//!      (discovered partner, subject to the discovery limits).
//!
//!    No record → 504 (1008). Targets but none acceptable → 504 with 1009 (allowed/discovery: the SRV
//!    points outside the domain) or 1005 with the field text (the domain is not configured at all).
//!
//! Target order (RFC 2782 priority, then weight) needs randomness, so [`order_srv`] takes it as input.

use crate::names::{DomainName, Fqdn};
use crate::policy::{Policy, Relationship};
use crate::verdict::{DiagnosticId, Refusal};
use crate::RefusalReason;

/// The field text operators search for.
pub const NOT_CONFIGURED: &str =
    "The domain of the message is not configured and does not appear to belong to a federated partner";

/// One SRV record as DNS returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// What the SRV lookup for the domain gave, if it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrvAnswer<'r> {
    NotLookedUp,
    /// NXDOMAIN or no SRV records.
    NoRecord,
    /// Timeout, SERVFAIL, ...: the text says which.
    Failed(&'r str),
    Records(&'r [SrvRecord]),
}

/// An acceptable SRV target, with the relationship it was accepted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    pub fqdn: Fqdn,
    pub priority: u16,
    pub weight: u16,
    pub relationship: Relationship,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundVerdict {
    /// Connect to this server (allowed partner with a pinned proxy FQDN); its certificate must name it.
    RoutePinned {
        fqdn: Fqdn,
    },
    /// Look up this SRV name and decide again with the answer.
    LookupSrv {
        name: String,
    },
    /// Try these targets in order (failing over on connect/TLS failure); each certificate must name
    /// its target.
    RouteSrv {
        targets: Vec<SrvTarget>,
    },
    Refuse(Refusal),
}

/// The SRV name for federation with `domain`.
pub fn srv_name(domain: &DomainName) -> String {
    format!("_sipfederationtls._tcp.{domain}")
}

impl Policy {
    pub fn decide_outbound(&self, domain: &DomainName, srv: SrvAnswer<'_>) -> OutboundVerdict {
        if self.is_our_domain(domain) {
            let r = Refusal::new(
                403,
                DiagnosticId::FROM_TO_COMBINATION,
                "Cannot route From and To domains in this combination",
                RefusalReason::OwnDomain,
            )
            .param("domain", domain.as_str())
            .event(
                "own_domain",
                format!("domain [{domain}] is one of this edge's own domains; not federated"),
            );
            return OutboundVerdict::Refuse(r);
        }
        if self.is_blocked(domain) {
            let r = Refusal::new(
                403,
                DiagnosticId::CANNOT_ROUTE,
                "Cannot route to destination domain",
                RefusalReason::Blocked,
            )
            .param("domain", domain.as_str())
            .event(
                "domain_blocked",
                format!("domain [{domain}] is on the blocked list"),
            );
            return OutboundVerdict::Refuse(r);
        }
        let allowed = self.allowed(domain);
        if let Some(fqdn) = allowed.and_then(|a| a.proxy_fqdn.clone()) {
            return OutboundVerdict::RoutePinned { fqdn };
        }
        let records = match srv {
            SrvAnswer::NotLookedUp => {
                return OutboundVerdict::LookupSrv {
                    name: srv_name(domain),
                }
            }
            SrvAnswer::NoRecord | SrvAnswer::Records([]) => {
                let r = Refusal::new(
                    504,
                    DiagnosticId::NO_SRV,
                    "Unable to resolve DNS SRV record",
                    RefusalReason::NoSrv,
                )
                .param("domain", domain.as_str())
                .event("srv_no_record", format!("no DNS SRV record {}", srv_name(domain)));
                return OutboundVerdict::Refuse(r);
            }
            SrvAnswer::Failed(why) => {
                let r = Refusal::new(
                    504,
                    DiagnosticId::NO_SRV,
                    "Unable to resolve DNS SRV record",
                    RefusalReason::DnsError,
                )
                .param("domain", domain.as_str())
                .param("dns-error", why)
                .event(
                    "srv_lookup_failed",
                    format!("DNS SRV lookup {} failed: {why}", srv_name(domain)),
                );
                return OutboundVerdict::Refuse(r);
            }
            SrvAnswer::Records(r) => r,
        };
        let discovery = self.discovery().is_some();
        let mut targets = Vec::new();
        for rec in records {
            let Ok(host) = DomainName::parse(&rec.target) else {
                continue;
            };
            let relationship = if let Some(p) = self.enabled_provider_for_host(host.as_str()) {
                allowed.map(|_| Relationship::HostedProvider(p.name.clone()))
            } else if host.is_within(domain) && allowed.is_some() {
                Some(Relationship::AllowedPartner)
            } else if host.is_within(domain) && discovery {
                Some(Relationship::DiscoveredPartner)
            } else {
                None
            };
            if let Some(relationship) = relationship {
                let fqdn = Fqdn::new(host, Some(rec.port));
                targets.push(SrvTarget {
                    fqdn,
                    priority: rec.priority,
                    weight: rec.weight,
                    relationship,
                });
            }
        }
        if !targets.is_empty() {
            targets.sort_by_key(|t| t.priority);
            return OutboundVerdict::RouteSrv { targets };
        }
        let fqdn1 = records
            .first()
            .map(|r| format!("{}:{}", r.target.trim_end_matches('.'), r.port))
            .unwrap_or_default();
        // Which answer depends on whether the domain is *configured*, not on discovery: a domain
        // that is not allowed gets the field's texts whether discovery is on or off — discovery
        // only adds targets inside the domain, and those were tried above.
        let via_provider = records
            .iter()
            .find_map(|r| self.enabled_provider_for_host(r.target.trim_end_matches('.')));
        let r = if allowed.is_some() {
            Refusal::new(504, DiagnosticId::NO_SRV_MATCH, "No match for domain in DNS SRV results", RefusalReason::SrvNoMatch)
                .param("domain", domain.as_str())
                .param("fqdn1", fqdn1)
                .event(
                    "SIPPROXY_E_EPROUTING_MSG_ALLOWED_DOMAIN_NO_SRV_MATCH",
                    format!(
                        "The domain of the message resolved by DNS SRV but none of the FQDNs is in the same domain (domain [{domain}])"
                    ),
                )
        } else {
            // The event name says what happened; the text is the one the field searches for.
            let (metric, event) = match via_provider {
                Some(_) => (
                    RefusalReason::ProviderNotAllowed,
                    "domain_not_allowed_srv_is_hosted_provider",
                ),
                None => (RefusalReason::UnknownDomain, "domain_unknown_srv_outside_domain"),
            };
            Refusal::new(504, DiagnosticId::CANNOT_ROUTE, NOT_CONFIGURED, metric)
                .param("domain", domain.as_str())
                .param("fqdn1", fqdn1)
                .event(
                    event,
                    format!("domain [{domain}] is unknown and DNS SRV results did not match anything"),
                )
        };
        OutboundVerdict::Refuse(r)
    }
}

/// RFC 2782 order: ascending priority; within a priority, weighted random selection. `random(n)` must
/// return a value in `0..=n` (the caller's RNG; tests pass a fixed sequence).
pub fn order_srv<T: Clone>(
    items: &[T],
    key: impl Fn(&T) -> (u16, u16),
    mut random: impl FnMut(u32) -> u32,
) -> Vec<T> {
    let mut sorted: Vec<T> = items.to_vec();
    sorted.sort_by_key(|t| key(t).0);
    let mut out = Vec::with_capacity(sorted.len());
    let mut rest = sorted.as_slice();
    while let Some(first) = rest.first() {
        let prio = key(first).0;
        let n = rest.iter().take_while(|t| key(t).0 == prio).count();
        let (group, tail) = rest.split_at(n);
        // Zero weights first, as RFC 2782 suggests, so they get a small chance.
        let mut pool: Vec<T> = group.iter().filter(|t| key(t).1 == 0).cloned().collect();
        pool.extend(group.iter().filter(|t| key(t).1 != 0).cloned());
        while !pool.is_empty() {
            let total: u32 = pool.iter().map(|t| u32::from(key(t).1)).sum();
            let pick = random(total).min(total);
            let mut acc = 0u32;
            let idx = pool
                .iter()
                .position(|t| {
                    acc += u32::from(key(t).1);
                    acc >= pick
                })
                .unwrap_or(0);
            out.push(pool.remove(idx));
        }
        rest = tail;
    }
    out
}
