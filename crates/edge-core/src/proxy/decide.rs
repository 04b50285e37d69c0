//! The route decision for a request that has its server transaction: from a partner
//! (`route_inbound`: the inbound policy on the From domain and the peer's certificate, then the
//! internal next hop), from a front end (`route_outbound`: in-dialog route set, or the federation
//! decision for the Request-URI's domain), the pause for a DNS SRV answer (`lookup`, `on_srv`), the
//! discovered-partner limits (`within_limits`) and the decision counters. `route.rs` has the pure
//! helpers these apply; `forward.rs` sends what they decide.

use std::sync::Arc;
use std::time::Instant;

use federation_policy::{
    DiagnosticId, DomainName, InboundVerdict, LimitVerdict, OutboundVerdict, RefusalReason, Relationship,
    SrvAnswer,
};
use sip_codec::{HeaderName, Message};

use super::ids::ServerId;
use super::io::{Effect, NextHop, PeerInfo, Side, SrvResult, Token};
use super::respond::Extra;
use super::route;
use super::txn::Pending;
use super::Proxy;

impl Proxy {
    /// Partner → front ends: the inbound policy, then the internal next hop.
    pub(super) fn route_inbound(
        &mut self,
        sid: ServerId,
        peer: &PeerInfo,
        msg: &Message<'_>,
        srv: SrvAnswer<'_>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let Some(domain) = route::from_domain(msg) else {
            let r = route::simple_refusal(
                403,
                DiagnosticId::NOT_AUTHORIZED,
                "From URI not authorized to communicate with federated partners",
                RefusalReason::FromUri,
                vec![],
            );
            return self.refuse(sid, msg, r, now, out);
        };
        let ids: Vec<&str> = peer.identities.iter().map(String::as_str).collect();
        match self.policy.decide_inbound(&ids, &domain, srv) {
            InboundVerdict::Refuse(r) => {
                self.count_decision(Side::External, &domain, "refuse", r.metric_reason.as_str());
                self.refuse(sid, msg, r, now, out);
            }
            InboundVerdict::LookupSrv { name } => self.lookup(name, Pending::InboundSrv { server: sid }, out),
            InboundVerdict::Accept { relationship } => {
                self.count_decision(
                    Side::External,
                    &domain,
                    "accept",
                    relationship_label(&relationship),
                );
                if relationship == Relationship::DiscoveredPartner
                    && !self.within_limits(sid, &domain, msg, HeaderName::To, now, out)
                {
                    return;
                }
                let hop = NextHop {
                    fqdn: self.settings.internal_next_hop.clone(),
                    side: Side::Internal,
                };
                self.forward(sid, msg, hop, Vec::new(), now, out);
            }
        }
    }

    /// Front ends → partners: in-dialog requests follow their route set; others the federation decision.
    pub(super) fn route_outbound(
        &mut self,
        sid: ServerId,
        msg: &Message<'_>,
        srv: SrvAnswer<'_>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let in_dialog = msg.to().ok().and_then(|t| t.tag()).is_some();
        if in_dialog {
            let to_domain = msg
                .to()
                .ok()
                .and_then(|t| t.parsed_uri().ok())
                .and_then(|u| u.as_sip().and_then(|s| DomainName::parse(s.host_str()).ok()));
            if let Some(d) = to_domain.filter(|d| self.policy.is_blocked(d)) {
                let r = route::simple_refusal(
                    403,
                    DiagnosticId::CANNOT_ROUTE,
                    "Cannot route to destination domain",
                    RefusalReason::Blocked,
                    vec![("domain", d.to_string())],
                );
                return self.refuse(sid, msg, r, now, out);
            }
            let Some(fqdn) = route::in_dialog_hop(&self.settings, msg) else {
                let r = route::simple_refusal(
                    404,
                    DiagnosticId::CANNOT_ROUTE,
                    "Cannot route to destination domain",
                    RefusalReason::NoRoute,
                    vec![],
                );
                return self.refuse(sid, msg, r, now, out);
            };
            let hop = NextHop {
                fqdn,
                side: Side::External,
            };
            return self.forward(sid, msg, hop, Vec::new(), now, out);
        }
        let Some(domain) = route::target_domain(msg) else {
            let r = route::simple_refusal(
                404,
                DiagnosticId::CANNOT_ROUTE,
                "Cannot route to destination domain",
                RefusalReason::NoDomain,
                vec![],
            );
            return self.refuse(sid, msg, r, now, out);
        };
        match self.policy.decide_outbound(&domain, srv) {
            OutboundVerdict::Refuse(r) => {
                self.count_decision(Side::Internal, &domain, "refuse", r.metric_reason.as_str());
                self.refuse(sid, msg, r, now, out);
            }
            OutboundVerdict::LookupSrv { name } => {
                self.lookup(name, Pending::OutboundSrv { server: sid }, out)
            }
            OutboundVerdict::RoutePinned { fqdn } => {
                self.count_decision(Side::Internal, &domain, "accept", "allowed_partner");
                let hop = NextHop {
                    fqdn,
                    side: Side::External,
                };
                if self.pushing(sid) {
                    let provider = hop.fqdn.host().to_string();
                    if !self.push_admit(sid, provider, std::slice::from_ref(&hop), now, out) {
                        return;
                    }
                }
                self.forward(sid, msg, hop, Vec::new(), now, out)
            }
            OutboundVerdict::RouteSrv { targets } => {
                let label = targets
                    .first()
                    .map_or("srv", |t| relationship_label(&t.relationship));
                self.count_decision(Side::Internal, &domain, "accept", label);
                if targets
                    .iter()
                    .any(|t| t.relationship == Relationship::DiscoveredPartner)
                    && !self.within_limits(sid, &domain, msg, HeaderName::From, now, out)
                {
                    return;
                }
                let ordered =
                    federation_policy::order_srv(&targets, |t| (t.priority, t.weight), |n| self.random(n));
                // A push's breaker key: the hosted provider it goes through, else the target.
                let provider = ordered.first().map(|t| match &t.relationship {
                    Relationship::HostedProvider(name) => name.clone(),
                    _ => t.fqdn.host().to_string(),
                });
                let hops: Vec<NextHop> = ordered
                    .into_iter()
                    .map(|t| NextHop {
                        fqdn: t.fqdn,
                        side: Side::External,
                    })
                    .collect();
                if self.pushing(sid) && !self.push_admit(sid, provider.unwrap_or_default(), &hops, now, out) {
                    return;
                }
                self.forward_all(sid, msg, hops, now, out);
            }
        }
    }

    /// One federation decision about `domain`, for a request from `side`: by verdict and reason,
    /// and, for a configured (allowed) partner, by partner.
    pub(super) fn count_decision(
        &mut self,
        side: Side,
        domain: &DomainName,
        verdict: &'static str,
        reason: &'static str,
    ) {
        if !self.counting {
            return;
        }
        self.stats.decision(side, verdict, reason);
        if self.policy.allowed(domain).is_some() {
            self.stats.partner_decision(domain.as_str(), verdict == "accept");
        }
    }

    /// Discovered-partner limits (Lync defaults: 20 msg/s, 1000 internal contacts per hour).
    pub(super) fn within_limits(
        &mut self,
        sid: ServerId,
        domain: &DomainName,
        msg: &Message<'_>,
        internal: HeaderName,
        now: Instant,
        out: &mut Vec<Effect>,
    ) -> bool {
        let contact = route::contact_key(msg, internal);
        let (retry_after_secs, what) = match self.shared.limiter.check(domain, &contact, now) {
            LimitVerdict::Allow => return true,
            LimitVerdict::Throttle {
                retry_after_secs,
                rate: true,
            } => (retry_after_secs, "message rate"),
            LimitVerdict::Throttle { retry_after_secs, .. } => {
                (retry_after_secs, "distinct internal contacts")
            }
            LimitVerdict::PoolUnavailable { retry_after_secs } => {
                (retry_after_secs, "pool state unavailable")
            }
        };
        let r = route::simple_refusal(
            503,
            DiagnosticId::TEMPORARILY_CANNOT_ROUTE,
            "Temporarily cannot route",
            RefusalReason::DiscoveryLimit,
            vec![("domain", domain.to_string()), ("limit", what.to_owned())],
        )
        .with_public(&["domain", "limit"]);
        self.respond(
            sid,
            503,
            Extra {
                refusal: Some(r),
                retry_after: Some(retry_after_secs),
                ..Extra::default()
            },
            now,
            out,
        );
        false
    }

    pub(super) fn lookup(&mut self, name: String, pending: Pending, out: &mut Vec<Effect>) {
        let token = Token(self.next_id());
        self.txns.pending.insert(token, pending);
        out.push(Effect::LookupSrv { name, token });
    }

    pub(crate) fn on_srv(&mut self, token: Token, result: SrvResult, now: Instant, out: &mut Vec<Effect>) {
        let Some(p) = self.txns.pending.remove(&token) else {
            return;
        };
        let answer = result.as_answer();
        let (sid, inbound) = match p {
            Pending::OutboundSrv { server } => (server, false),
            Pending::InboundSrv { server } => (server, true),
            _ => return,
        };
        let Some(s) = self.txns.servers.get(&sid) else {
            return;
        };
        if s.final_status.is_some() || s.orphaned {
            return; // cancelled or abandoned while the lookup ran
        }
        let (kept, conn) = (Arc::clone(&s.request), s.conn);
        // An inbound decision needs the peer: its connection's identities.
        let peer = match inbound {
            true => match self.peers.get(&conn) {
                Some(p) => Some(Arc::clone(p)),
                None => return,
            },
            false => None,
        };
        let Some(msg) = kept.message_reusing(&mut self.scratch.header_buf) else {
            return;
        };
        match peer {
            Some(peer) => self.route_inbound(sid, &peer, &msg, answer, now, out),
            None => self.route_outbound(sid, &msg, answer, now, out),
        }
        self.scratch.header_buf = msg.into_header_buf();
    }
}

/// The bounded label of a federation relationship (a provider's name is not a label).
pub(super) fn relationship_label(r: &Relationship) -> &'static str {
    match r {
        Relationship::AllowedPartner => "allowed_partner",
        Relationship::HostedProvider(_) => "hosted_provider",
        Relationship::DiscoveredPartner => "discovered_partner",
    }
}
