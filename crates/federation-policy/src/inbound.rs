//! Inbound decision (docs/architecture.md, Federation decision): a request from a partner on the
//! external side. The peer's certificate identities (SAN DNS names; exact, no wildcards) must be
//! the allowed partner's pinned proxy FQDN, an enabled hosted provider's FQDN (for an allowed From
//! domain), or — for an allowed domain without a pin, or with partner discovery — a target of the
//! From domain's SRV record inside that domain. The From domain must not be blocked or one of
//! ours.

use crate::names::DomainName;
use crate::outbound::{srv_name, SrvAnswer, NOT_CONFIGURED};
use crate::policy::{Policy, Relationship};
use crate::verdict::{DiagnosticId, Refusal};
use crate::RefusalReason;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundVerdict {
    Accept {
        relationship: Relationship,
    },
    /// Look up this SRV name and decide again with the answer.
    LookupSrv {
        name: String,
    },
    Refuse(Refusal),
}

fn names_match(identity: &str, host: &DomainName) -> bool {
    !identity.contains('*') && DomainName::parse(identity).is_ok_and(|i| &i == host)
}

impl Policy {
    pub fn decide_inbound(
        &self,
        peer_identities: &[&str],
        from_domain: &DomainName,
        srv: SrvAnswer<'_>,
    ) -> InboundVerdict {
        let peer = peer_identities.first().copied().unwrap_or("");
        let refuse = |id, reason: &str, metric: RefusalReason, event: String| {
            InboundVerdict::Refuse(
                Refusal::new(403, id, reason, metric)
                    .public_param("domain", from_domain.as_str())
                    .public_param("PeerServer", peer)
                    .event(metric.as_str(), event),
            )
        };
        if self.is_our_domain(from_domain) {
            return refuse(
                DiagnosticId::FROM_DOMAIN_OURS,
                "From domain is one of this edge's own domains",
                RefusalReason::FromOwnDomain,
                format!("peer [{peer}] sent a request From our own domain [{from_domain}]"),
            );
        }
        if self.is_blocked(from_domain) {
            return refuse(
                DiagnosticId::FROM_DOMAIN_BLOCKED,
                "From domain is blocked",
                RefusalReason::FromBlocked,
                format!("domain [{from_domain}] is on the blocked list (peer [{peer}])"),
            );
        }
        let allowed = self.allowed(from_domain);
        for id in peer_identities {
            if let Some(p) = self.enabled_provider_for_host(id).filter(|_| !id.contains('*')) {
                if allowed.is_some() {
                    return InboundVerdict::Accept {
                        relationship: Relationship::HostedProvider(p.name.clone()),
                    };
                }
            }
        }
        let mismatch = |detail: String| {
            refuse(
                DiagnosticId::PEER_NOT_OF_DOMAIN,
                "Peer certificate does not identify a server of the From domain",
                RefusalReason::PeerMismatch,
                format!("peer [{peer}] is not a server of domain [{from_domain}]: {detail}"),
            )
        };
        if let Some(pinned) = allowed.and_then(|a| a.proxy_fqdn.as_ref()) {
            if peer_identities.iter().any(|id| names_match(id, pinned.host())) {
                return InboundVerdict::Accept {
                    relationship: Relationship::AllowedPartner,
                };
            }
            return mismatch(format!("expected the pinned proxy {}", pinned.host()));
        }
        let discovery = self.discovery().is_some();
        if allowed.is_none() && !discovery {
            return refuse(
                DiagnosticId::CANNOT_ROUTE,
                NOT_CONFIGURED,
                RefusalReason::UnknownDomain,
                format!("domain [{from_domain}] is unknown and partner discovery is off (peer [{peer}])"),
            );
        }
        let records = match srv {
            SrvAnswer::NotLookedUp => {
                return InboundVerdict::LookupSrv {
                    name: srv_name(from_domain),
                }
            }
            SrvAnswer::NoRecord => return mismatch(format!("no DNS SRV record {}", srv_name(from_domain))),
            SrvAnswer::Failed(why) => return mismatch(format!("DNS SRV lookup failed: {why}")),
            SrvAnswer::Records(r) => r,
        };
        let matched = records
            .iter()
            .filter_map(|r| DomainName::parse(&r.target).ok())
            .any(|target| {
                target.is_within(from_domain) && peer_identities.iter().any(|id| names_match(id, &target))
            });
        match (matched, allowed.is_some()) {
            (true, true) => InboundVerdict::Accept {
                relationship: Relationship::AllowedPartner,
            },
            (true, false) => InboundVerdict::Accept {
                relationship: Relationship::DiscoveredPartner,
            },
            (false, _) => mismatch(format!(
                "not a target of {} within the domain",
                srv_name(from_domain)
            )),
        }
    }
}
