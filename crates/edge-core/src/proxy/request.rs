//! Requests entering the core: checks (syntax, version, hops, loops, method), the server transaction,
//! then the route decision (`decide.rs`). ACK and CANCEL follow RFC 3261 §16.

use std::time::Instant;

use federation_policy::{DiagnosticId, FilterVerdict, RefusalReason, SrvAnswer};
use sip_codec::{parse, Message, Version};

use super::ids::ServerId;
use super::io::{ConnId, Effect, Level, NextHop, PeerInfo, Side};
use super::respond::{self, Extra};
use super::route;
use super::stats::MethodLabel;
use super::Proxy;

impl Proxy {
    pub(crate) fn on_message(&mut self, conn: ConnId, bytes: &[u8], now: Instant, out: &mut Vec<Effect>) {
        let Some(peer) = self.peers.get(&conn).cloned() else {
            // Bytes in flight when the core closed the connection (e.g. an unknown internal peer).
            self.log(
                out,
                Level::Debug,
                "message_on_closed_connection",
                "message on a connection the core does not know dropped".into(),
                vec![],
            );
            return;
        };
        match sip_codec::parse_reusing(bytes, &mut self.scratch.header_buf) {
            Ok(msg) => {
                if msg.is_request() {
                    self.on_request(conn, &peer, &msg, now, out);
                } else {
                    self.on_response(conn, &peer, &msg, now, out);
                }
                // The header table serves the next message.
                self.scratch.header_buf = msg.into_header_buf();
            }
            Err(e) => match e.partial.as_deref() {
                // The header section was readable: answer 400 saying what is wrong (not to an ACK).
                Some(req) if req.is_request() && req.method() != Some("ACK") => {
                    let extra = Extra {
                        warning: Some(e.kind.to_string()),
                        ..Extra::default()
                    };
                    self.respond_stateless(conn, peer.side, req, 400, &extra, out);
                }
                _ => {
                    self.log(
                        out,
                        Level::Warn,
                        "unparseable_message",
                        format!("closing {}: {e}", peer.remote),
                        vec![("peer", peer.remote.to_string())],
                    );
                    out.push(Effect::Close { conn });
                }
            },
        }
    }

    /// A message the stream cannot frame (body over the limit, bad or missing Content-Length): answered
    /// from its header section when it is a request — 513 for size, 400 otherwise, with a `Warning`
    /// saying which — then the connection is closed (its boundaries are lost).
    pub(crate) fn on_unframeable(
        &mut self,
        conn: ConnId,
        head: &[u8],
        error: sip_codec::FrameError,
        out: &mut Vec<Effect>,
    ) {
        let side = self.peers.get(&conn).map(|p| p.side);
        let msg = match parse(head) {
            Ok(m) => Some(m),
            Err(e) => e.partial.map(|m| *m),
        };
        let req = msg.filter(|m| m.is_request() && m.method() != Some("ACK"));
        if let (Some(side), Some(req)) = (side, req) {
            let (status, warning) = match error {
                sip_codec::FrameError::BodyTooLarge(n) => (
                    513,
                    format!("message body of {n} octets exceeds this edge's limit"),
                ),
                // The peer went silent inside the body: the message will never be whole.
                sip_codec::FrameError::Stalled(ms) => (408, format!("message incomplete after {ms} ms")),
                other => (400, other.to_string()),
            };
            self.respond_stateless(
                conn,
                side,
                &req,
                status,
                &Extra {
                    warning: Some(warning),
                    ..Extra::default()
                },
                out,
            );
        }
        self.log(
            out,
            Level::Info,
            "unframeable_message",
            format!("closing the connection: {error}"),
            vec![("error", error.to_string())],
        );
        out.push(Effect::Close { conn });
    }

    /// A response that needs no transaction (400 to a malformed request, 481, 503 while draining).
    pub(crate) fn respond_stateless(
        &mut self,
        conn: ConnId,
        side: Side,
        req: &Message<'_>,
        status: u16,
        extra: &Extra,
        out: &mut Vec<Effect>,
    ) {
        let id = self.next_id();
        let tag = format!("se{:x}s{id:x}", self.worker);
        let bytes = respond::build(req, status, &tag, &self.settings.edge_fqdn, side, extra);
        let reason = extra
            .refusal
            .as_ref()
            .map_or(RefusalReason::NoRefusal, |r| r.metric_reason);
        self.count(|s| s.generated(status, reason));
        out.push(Effect::Send {
            dest: super::io::Destination::Conn(conn),
            bytes,
            token: None,
        });
    }

    fn on_request(
        &mut self,
        conn: ConnId,
        peer: &PeerInfo,
        msg: &Message<'_>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let method = msg.method().unwrap_or("");
        self.count(|s| s.request_in(peer.side, MethodLabel::of(method)));
        if method == "ACK" {
            return self.on_ack(conn, peer, msg, out);
        }
        if let Err(d) = msg.check() {
            let extra = Extra {
                warning: Some(d.to_string()),
                ..Extra::default()
            };
            return self.respond_stateless(conn, peer.side, msg, 400, &extra, out);
        }
        if msg.version() != Version::SIP_2_0 {
            return self.respond_stateless(conn, peer.side, msg, 505, &Extra::default(), out);
        }
        let key = self.txn_key(msg, method);
        if let Some(&sid) = self.txns.server_keys.get(&key) {
            // The same key on another connection is not a retransmission (over TLS there is none
            // from elsewhere) but a copy of someone's Via: merged, answered 482 alone — the stored
            // response, written for the transaction's own side, never goes to another peer.
            if self.txns.servers.get(&sid).is_some_and(|s| s.conn != conn) {
                return self.respond_stateless(conn, peer.side, msg, 482, &Extra::default(), out);
            }
            // A retransmission: repeat the final response if there is one (RFC 3261 §17.2).
            if let Some(bytes) = self.txns.servers.get(&sid).and_then(|s| s.last_response.clone()) {
                out.push(Effect::Send {
                    dest: super::io::Destination::Conn(conn),
                    bytes,
                    token: None,
                });
            }
            return;
        }
        if method == "CANCEL" {
            return self.on_cancel(conn, peer, msg, now, out);
        }
        if self.shutting_down {
            let extra = Extra {
                refusal: Some(route::simple_refusal(
                    503,
                    DiagnosticId::TEMPORARILY_CANNOT_ROUTE,
                    "Temporarily cannot route",
                    RefusalReason::ShuttingDown,
                    vec![],
                )),
                retry_after: Some(5),
                ..Extra::default()
            };
            return self.respond_stateless(conn, peer.side, msg, 503, &extra, out);
        }
        let is_invite = method == "INVITE";
        let sid = self.new_server(conn, peer.side, key, is_invite, msg);
        if is_invite {
            self.respond_to(sid, msg, 100, Extra::default(), now, out);
        }
        if route::is_loop(&self.settings, msg) {
            let r = route::simple_refusal(
                482,
                DiagnosticId::LOOP_DETECTED,
                "Request already passed through this edge",
                RefusalReason::Loop,
                vec![],
            );
            return self.refuse(sid, msg, r, now, out);
        }
        if msg.max_forwards() == Some(0) {
            return self.respond(sid, 483, Extra::default(), now, out);
        }
        if !route::method_is_federated(method) {
            let r = route::simple_refusal(
                403,
                DiagnosticId::METHOD_NOT_FEDERATED,
                "Cannot route this type of SIP request to or from federated partners",
                RefusalReason::Method,
                vec![("method", method.to_owned())],
            )
            .with_public(&["method"]);
            return self.refuse(sid, msg, r, now, out);
        }
        // A push is answered as a push (its own filter check, 1909, below), whatever its body.
        let is_push = self.is_push(peer.side, msg);
        if method == "MESSAGE"
            && !is_push
            && msg
                .content_type()
                .is_some_and(|ct| ct.get(..5).is_some_and(|t| t.eq_ignore_ascii_case("text/")))
        {
            match self.policy.im_filter().check_bytes(msg.body()) {
                FilterVerdict::Block { prefix } => {
                    let r = route::simple_refusal(
                        403,
                        DiagnosticId::IM_FILTER_BLOCKED,
                        "Instant message contains a URL prefix blocked by the IM filter",
                        RefusalReason::ImFilter,
                        vec![("prefix", prefix)],
                    )
                    .with_public(&["prefix"]);
                    return self.refuse(sid, msg, r, now, out);
                }
                FilterVerdict::Warn { prefix } => {
                    self.log(
                        out,
                        Level::Info,
                        "im_filter_warn",
                        format!("message with URL prefix {prefix} delivered (filter action warn)"),
                        vec![],
                    );
                }
                FilterVerdict::Pass => {}
            }
        }
        if let Some(r) = self.foreign_domain(peer.side, msg) {
            return self.refuse(sid, msg, r, now, out);
        }
        if method == "SUBSCRIBE" && msg.to().ok().and_then(|t| t.tag()).is_none() && self.subscriptions_full()
        {
            let r = route::simple_refusal(
                503,
                DiagnosticId::SUBSCRIPTIONS_FULL,
                "Temporarily cannot route: this edge tracks as many subscriptions as it may",
                RefusalReason::SubscriptionsFull,
                vec![("limit", self.settings.max_subscriptions.to_string())],
            );
            let extra = Extra {
                refusal: Some(r),
                retry_after: Some(60),
                ..Extra::default()
            };
            return self.respond(sid, 503, extra, now, out);
        }
        // A NOTIFY in a tracked dialog: the notifier's CSeq, or the dialog's end.
        self.dialog_request(peer.side, msg);
        if is_push {
            if let Some(s) = self.txns.servers.get_mut(&sid) {
                s.push = Some(super::push::PushTxn {
                    provider: String::new(),
                    attempt: 0,
                    hops: Vec::new(),
                    started: now,
                    first_sent: None,
                });
            }
            if let Some(r) = self.push_refusal(msg, out) {
                return self.refuse(sid, msg, r, now, out);
            }
        }
        match peer.side {
            Side::External => self.route_inbound(sid, peer, msg, SrvAnswer::NotLookedUp, now, out),
            Side::Internal => self.route_outbound(sid, msg, SrvAnswer::NotLookedUp, now, out),
        }
    }

    /// The edge speaks for `edge.sip_domains` only. From the front ends: the From domain must be
    /// ours (no spoofing other organisations towards partners). From partners: an out-of-dialog
    /// request must be for one of our domains (no open relay: it would be routed back out under our
    /// identity); an in-dialog request is recognised by our own leading Route.
    fn foreign_domain(&self, side: Side, msg: &Message<'_>) -> Option<federation_policy::Refusal> {
        match side {
            Side::Internal => {
                let ours = route::from_is_ours(&self.policy, msg);
                // The host as written is only needed for the refusal's diagnostic.
                (!ours).then(|| {
                    route::simple_refusal(
                        403,
                        DiagnosticId::FROM_DOMAIN_NOT_OURS,
                        "From domain is not one of this edge's domains",
                        RefusalReason::FromNotOurs,
                        vec![("domain", route::from_host(msg))],
                    )
                })
            }
            Side::External => {
                if route::our_leading_routes(&self.settings, msg) > 0 {
                    return None;
                }
                let target = route::target_domain(msg);
                let ours = target.as_ref().is_some_and(|d| self.policy.is_our_domain(d));
                (!ours).then(|| {
                    let host = msg
                        .parsed_request_uri()
                        .and_then(Result::ok)
                        .and_then(|u| u.as_sip().map(|s| s.host_str().to_owned()))
                        .unwrap_or_default();
                    route::simple_refusal(
                        403,
                        DiagnosticId::RELAY_REFUSED,
                        "Request-URI domain is not one of this edge's domains",
                        RefusalReason::Relay,
                        vec![("domain", host)],
                    )
                    .with_public(&["domain"])
                })
            }
        }
    }

    /// ACK for a non-2xx final is absorbed by its INVITE transaction; ACK for a 2xx is end-to-end and
    /// forwarded statelessly along the route set.
    fn on_ack(&mut self, _conn: ConnId, peer: &PeerInfo, msg: &Message<'_>, out: &mut Vec<Effect>) {
        if self.txns.server_keys.contains_key(&self.txn_key(msg, "INVITE")) {
            return;
        }
        let hop = match peer.side {
            Side::External => Some(NextHop {
                fqdn: self.settings.internal_next_hop.clone(),
                side: Side::Internal,
            }),
            Side::Internal => route::in_dialog_hop(&self.settings, msg).map(|fqdn| NextHop {
                fqdn,
                side: Side::External,
            }),
        };
        let Some(hop) = hop else {
            self.log(
                out,
                Level::Warn,
                "ack_unroutable",
                "ACK without a route dropped".into(),
                vec![],
            );
            return;
        };
        self.forward_stateless(msg, hop, out);
    }

    fn on_cancel(
        &mut self,
        conn: ConnId,
        peer: &PeerInfo,
        msg: &Message<'_>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let Some(&sid) = self.txns.server_keys.get(&self.txn_key(msg, "INVITE")) else {
            return self.respond_stateless(conn, peer.side, msg, 481, &Extra::default(), out);
        };
        self.respond_stateless(conn, peer.side, msg, 200, &Extra::default(), out);
        let Some(s) = self.txns.servers.get(&sid) else {
            return;
        };
        if s.final_status.is_some() {
            return;
        }
        match s.client {
            Some(cid) => {
                let provisional = self.txns.clients.get(&cid).is_some_and(|c| c.provisional);
                if provisional {
                    self.send_cancel(cid, out);
                } else if let Some(c) = self.txns.clients.get_mut(&cid) {
                    c.cancel_pending = true;
                }
            }
            // Still deciding where to send it (SRV lookup): nothing went out, terminate here.
            None => self.respond(sid, 487, Extra::default(), now, out),
        }
    }
}

impl Proxy {
    /// Whether server transaction `sid` is a push not yet routed.
    pub(super) fn pushing(&self, sid: ServerId) -> bool {
        self.txns
            .servers
            .get(&sid)
            .and_then(|s| s.push.as_ref())
            .is_some_and(|p| p.provider.is_empty())
    }
}

impl Proxy {
    /// Server transaction key (RFC 3261 §17.2.3): the branch with the magic cookie, plus the sent-by
    /// host and the method class (ACK and CANCEL look up their INVITE); for RFC 2543 peers, the
    /// Call-ID, CSeq number and sent-by. Hashed ([`super::ids::TxnKey`]): no string is kept, and none
    /// is built but an RFC 2543 key's CSeq number.
    pub(crate) fn txn_key(&self, msg: &Message<'_>, method: &str) -> super::ids::TxnKey {
        let via = msg.top_via().ok();
        let class = if method == "ACK" { "INVITE" } else { method };
        let host = via.as_ref().map_or("", |v| v.host);
        match via
            .as_ref()
            .and_then(|v| v.branch().filter(|_| v.is_rfc3261_branch()))
        {
            Some(b) => self.txns.keys.of(&[b, host, class]),
            None => {
                let mut number = String::with_capacity(10);
                super::ids::push_hex(&mut number, u64::from(msg.cseq().map_or(0, |c| c.number)));
                self.txns
                    .keys
                    .of(&["2543", msg.call_id().unwrap_or(""), &number, host, class])
            }
        }
    }
}
