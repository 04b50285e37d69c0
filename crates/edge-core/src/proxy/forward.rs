//! Forwarding: the request edits of RFC 3261 §16.6 (strip our Route entries, Max-Forwards, our Via,
//! double Record-Route per RFC 5658 so in-dialog requests cross both listeners), the client
//! transaction, and the way back — responses matched by our branch, our Via removed, forwarded to the
//! requester; CANCEL and ACK towards the next hop built from the forwarded request.

use std::sync::Arc;
use std::time::Instant;

use federation_policy::DiagnosticId;
use sip_codec::{parse, Editor, HeaderName, MaxForwards, Message, RequestBuilder};

use super::hiding;
use super::ids;
use super::ids::{ClientId, ServerId};
use super::io::{ConnId, Destination, Effect, Level, NextHop, PeerInfo, Side, Token};
use super::respond::Extra;
use super::route;
use super::stats::MethodLabel;
use super::txn::{ClientTxn, Concluded, Outcome, Pending};
use super::Proxy;

/// Every branch this edge writes starts with this (RFC 3261 cookie + "se").
pub(crate) const BRANCH_PREFIX: &str = "z9hG4bKse";

/// Requests whose Record-Route matters: they create dialogs (or may, for NOTIFY).
fn creates_dialog(method: &str) -> bool {
    matches!(method, "INVITE" | "SUBSCRIBE" | "REFER" | "NOTIFY")
}

impl Proxy {
    /// `z9hG4bKse` + 64 bits from the worker's CSPRNG + a counter (unique even if the bits repeat).
    /// RFC 3261 §17.2.3 only asks for uniqueness; the secret bits make a branch unguessable, so a
    /// peer cannot address a transaction it did not see.
    pub(crate) fn new_branch(&mut self) -> String {
        let mut b = String::with_capacity(BRANCH_PREFIX.len() + 40);
        self.write_new_branch(&mut b);
        b
    }

    /// [`Proxy::new_branch`] written over `b` (the forwarding path reuses one string).
    fn write_new_branch(&mut self, b: &mut String) {
        let id = self.next_id();
        let secret = self.secret_bits();
        b.clear();
        b.push_str(BRANCH_PREFIX);
        ids::push_hex_width(b, secret, 16);
        ids::push_hex(b, u64::from(self.worker));
        b.push('x');
        ids::push_hex(b, id);
    }

    /// [`Proxy::forward`] to the first of `hops` (failover to the rest); nothing when there is none.
    pub(crate) fn forward_all(
        &mut self,
        sid: ServerId,
        msg: &Message<'_>,
        mut hops: Vec<NextHop>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        if hops.is_empty() {
            return;
        }
        let hop = hops.remove(0);
        self.forward(sid, msg, hop, hops, now, out);
    }

    /// `msg` (the request of server transaction `sid`, as parsed by the caller), edited for `hop`
    /// (failover to `hops`, in order).
    pub(crate) fn forward(
        &mut self,
        sid: ServerId,
        msg: &Message<'_>,
        hop: NextHop,
        hops: Vec<NextHop>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let Some(s) = self.txns.servers.get(&sid) else {
            return;
        };
        let (in_side, is_invite, is_push) = (s.side, s.is_invite, s.push.is_some());
        let first_push_attempt = s.push.as_ref().is_some_and(|p| p.attempt <= 1);
        let mut branch = std::mem::take(&mut self.scratch.branch);
        self.write_new_branch(&mut branch);
        let branch_key = self.txns.keys.of(&[&branch]);
        let edited = self.edit_request(msg, in_side, hop.side, &branch);
        self.scratch.branch = branch;
        let Some(bytes) = edited else {
            return self.respond(sid, 483, Extra::default(), now, out);
        };
        let cid = ClientId(self.next_id());
        let method = MethodLabel::of(msg.method().unwrap_or(""));
        self.count(|s| s.request_out(hop.side, method));
        self.txns.clients.insert(
            cid,
            ClientTxn {
                server: sid,
                branch_key,
                is_invite,
                // Only an INVITE (CANCEL, ACK) or a request with SRV targets to fail over to needs
                // the forwarded bytes again.
                bytes: if is_invite || !hops.is_empty() {
                    bytes.clone()
                } else {
                    Vec::new()
                },
                hop: hop.clone(),
                spare_hops: hops,
                conn: None,
                provisional: false,
                final_status: None,
                cancel_pending: false,
                cancelled: false,
                timer: None,
                method,
                started: now,
            },
        );
        self.txns.client_branches.insert(branch_key, cid);
        if let Some(s) = self.txns.servers.get_mut(&sid) {
            s.client = Some(cid);
        }
        let token = Token(self.next_id());
        self.txns.pending.insert(token, Pending::Delivery { client: cid });
        out.push(Effect::Send {
            dest: Destination::Hop(hop),
            bytes,
            token: Some(token),
        });
        // A push gets the relay's own timeout per attempt (shorter than Timer F).
        let after = match (is_push, is_invite) {
            (true, _) => self.settings.push_timeout,
            (false, true) => self.settings.timer_b,
            (false, false) => self.settings.timer_f,
        };
        if first_push_attempt {
            self.count(|s| s.push.sent += 1);
        }
        self.arm_client(cid, now, after);
    }

    /// ACK for a 2xx and the like: edited and sent, no transaction.
    pub(crate) fn forward_stateless(&mut self, msg: &Message<'_>, hop: NextHop, out: &mut Vec<Effect>) {
        let in_side = match hop.side {
            Side::Internal => Side::External,
            Side::External => Side::Internal,
        };
        let branch = self.new_branch();
        if let Some(bytes) = self.edit_request(msg, in_side, hop.side, &branch) {
            let method = MethodLabel::of(msg.method().unwrap_or(""));
            self.count(|s| s.request_out(hop.side, method));
            let token = Token(self.next_id());
            self.txns.pending.insert(token, Pending::Stateless);
            out.push(Effect::Send {
                dest: Destination::Hop(hop),
                bytes,
                token: Some(token),
            });
        }
    }

    /// A message leaving for a partner: each Contact naming a host that is not one of our domains
    /// leaves as the edge's external face with the original sealed (`hiding.rs`).
    fn seal_contacts(&mut self, msg: &Message<'_>, ed: &mut Editor<'_, '_>) {
        if msg.header(HeaderName::Contact).is_none() {
            return;
        }
        let policy = &self.policy;
        if let Some(contacts) = hiding::sealed_contacts(
            &self.settings,
            &self.shared.sealer,
            &mut self.rng,
            |h| policy.is_our_host(h),
            msg,
        ) {
            ed.set_header(HeaderName::Contact, &contacts);
        }
    }

    /// `None` when Max-Forwards is exhausted.
    fn edit_request(
        &mut self,
        msg: &Message<'_>,
        in_side: Side,
        out_side: Side,
        branch: &str,
    ) -> Option<Vec<u8>> {
        let mut ed = Editor::with_buf(msg, std::mem::take(&mut self.scratch.edit_buf));
        let no_to_tag = msg.to().ok().and_then(|t| t.tag()).is_none();
        let outward = in_side == Side::Internal && out_side == Side::External;
        let inward = in_side == Side::External && out_side == Side::Internal;
        // A partner's in-dialog request whose Route carries a route set the edge sealed
        // (`hiding.rs`): the inside's entries go back in place of the edge's own.
        let unsealed = (inward && !no_to_tag && msg.header(HeaderName::Route).is_some())
            .then(|| {
                hiding::unsealed_route(
                    &self.settings,
                    &self.shared.sealer,
                    &hiding::values_of(msg, HeaderName::Route),
                )
            })
            .flatten();
        if inward && no_to_tag {
            // A partner's out-of-dialog request: a Route past our own would steer it to a host
            // inside that the partner chose; the front-end pool routes it by its Request-URI.
            // Stripped, not honoured (docs/topology.md).
            ed.remove_header(HeaderName::Route);
        } else if let Some(routes) = &unsealed {
            ed.remove_header(HeaderName::Route);
            if !routes.is_empty() {
                ed.append_header("Route", &routes.join(", "));
            }
        } else {
            let ours = route::our_leading_routes(&self.settings, msg);
            ed.remove_values(HeaderName::Route, ours);
        }
        if ed.decrement_max_forwards() == MaxForwards::Exhausted {
            self.scratch.edit_buf = ed.into_buf();
            return None;
        }
        if inward {
            // A partner's request to a Contact the edge rewrote (`hiding.rs`): the original target.
            if let Some(target) = msg
                .request_uri()
                .and_then(|r| hiding::unsealed_target(&self.settings, &self.shared.sealer, r))
            {
                ed.set_request_uri(&target);
            }
        } else if outward {
            self.seal_contacts(msg, &mut ed);
        }
        if in_side == Side::Internal && out_side == Side::External {
            // Topology hiding: the Via headers of the inside (front ends, their proxies) stay
            // inside; the response gets them back from the stored request (`on_response`).
            ed.remove_header(HeaderName::Via);
        }
        let host = self.settings.host(out_side);
        ed.prepend_via_parts(&["SIP/2.0/TLS ", host, ";branch=", branch]);
        let dialog_creating = msg.method().is_some_and(creates_dialog) && no_to_tag;
        if outward {
            // Topology hiding: the partner sees the edge's external face alone; the inside's
            // entries and the edge's internal face ride sealed in it (`hiding.rs`) and come back
            // on the response and the partner's in-dialog requests. A Record-Route on any other
            // request from the inside means nothing to the partner and names the inside: removed.
            let inside_rr = hiding::values_of(msg, HeaderName::RecordRoute);
            ed.remove_header(HeaderName::RecordRoute);
            if dialog_creating {
                let inner = format!("<sip:{};transport=tls;lr>", self.settings.host(in_side));
                let mut sealed: Vec<&str> = Vec::with_capacity(inside_rr.len() + 1);
                sealed.push(&inner);
                sealed.extend(inside_rr);
                let face = hiding::sealed_face(&self.settings, &self.shared.sealer, &mut self.rng, &sealed);
                ed.add_record_route(&face);
            }
        } else if dialog_creating {
            // Outgoing side first, then incoming: the callee's route set starts at our outer face,
            // the caller's (reversed) at our inner one.
            ed.add_record_route_parts(&["<sip:", host, ";transport=tls;lr>"]);
            ed.add_record_route_parts(&["<sip:", self.settings.host(in_side), ";transport=tls;lr>"]);
        }
        let mut bytes = self.scratch.take_buf();
        ed.write_to(&mut bytes);
        self.scratch.edit_buf = ed.into_buf();
        Some(bytes)
    }

    pub(crate) fn on_response(
        &mut self,
        conn: ConnId,
        peer: &PeerInfo,
        msg: &Message<'_>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let Some(branch) = msg.top_via().ok().and_then(|v| v.branch()) else {
            return;
        };
        let Some(&cid) = self.txns.client_branches.get(&self.txns.keys.of(&[branch])) else {
            // An answer to a request the edge originated (dialogs.rs) is absorbed there; looked
            // up only when no forwarded transaction has the branch, off the forwarding path.
            if self.local_response(branch, conn, msg.status().unwrap_or(0)) {
                return;
            }
            // Not ours, or for a transaction already forgotten: a proxy drops stray responses.
            self.count(|s| s.responses_unknown_branch += 1);
            self.log(
                out,
                Level::Debug,
                "stray_response",
                format!("response with unknown branch {branch} dropped"),
                vec![],
            );
            return;
        };
        // RFC 3261 §17.1.3: a response matches a client transaction by branch *and* CSeq method. Our
        // CANCEL shares the INVITE's branch; its responses end here (the INVITE's 487 follows).
        let cseq_method = msg.cseq().map(|c| c.method);
        if cseq_method == Some("CANCEL") {
            return;
        }
        let status = msg.status().unwrap_or(0);
        let Some(c) = self.txns.clients.get_mut(&cid) else {
            return;
        };
        // Only the connection the request went out on may answer it (RFC 3261 §18.2.2: responses
        // come back on the same connection). Anyone else holding our branch — another partner's
        // link, a front end — is injecting: dropped and counted, the transaction goes on.
        if c.conn != Some(conn) {
            let expected = c.hop.fqdn.to_string();
            self.count(|s| s.responses_wrong_connection += 1);
            self.log(
                out,
                Level::Warn,
                "response_wrong_connection",
                format!(
                    "{status} response for a transaction sent to {expected} arrived from {} ({:?}): dropped",
                    peer.remote, peer.identities
                ),
                vec![
                    ("status", status.to_string()),
                    ("expected_hop", expected),
                    ("peer", peer.remote.to_string()),
                    ("side", peer.side.as_str().to_owned()),
                ],
            );
            return;
        }
        let sid = c.server;
        // The dialog layer wants the hop of a SUBSCRIBE's answer and of any 481 (dialogs.rs).
        let hop = (cseq_method == Some("SUBSCRIBE") || status == 481).then(|| c.hop.clone());
        // `c` borrows `self.txns.clients`: count through the field, not `count()`, and look it up once.
        if self.counting {
            self.stats.response_in(peer.side, c.method, status);
        }
        if status < 200 {
            if c.is_invite && c.final_status.is_none() {
                // Timer B stops, Timer C (re)starts: the callee is alerting and may take 60 s.
                c.provisional = true;
                let send_cancel = c.cancel_pending && !c.cancelled;
                let timer_c = self.settings.timer_c;
                self.arm_client(cid, now, timer_c);
                if send_cancel {
                    self.send_cancel(cid, out);
                }
            }
            if status == 100 {
                return; // hop by hop
            }
        } else {
            let is_invite = c.is_invite;
            // The one outcome path: counts the transaction and says whether this response is the
            // one that concluded it.
            let first_final =
                self.conclude(cid, Outcome::Response(status, Proxy::retry_after(msg)), now, out)
                    == Concluded::ForwardResponse;
            if is_invite && status >= 300 {
                self.send_ack(cid, msg, out);
            }
            // After a final, only further 2xx of a forked INVITE still go upstream.
            let forward = first_final || (is_invite && (200..300).contains(&status));
            if !forward {
                return;
            }
        }
        let Some(s) = self.txns.servers.get(&sid) else {
            return;
        };
        if s.orphaned
            || (status >= 200 && s.final_status.is_some() && !(s.is_invite && (200..300).contains(&status)))
        {
            return;
        }
        let (dest, to_side) = (s.conn, s.side);
        if status >= 200 && hop.is_some() {
            self.dialog_response(sid, hop.as_ref(), msg, now);
        }
        // The request went from the inside out with its Via headers hidden (`edit_request`): the
        // response gets exactly the stored request's back, whatever the partner put below ours.
        let hidden = (to_side == Side::Internal && peer.side == Side::External)
            .then(|| self.txns.servers.get(&sid).map(|s| Arc::clone(&s.request)))
            .flatten();
        let mut ed = Editor::with_buf(msg, std::mem::take(&mut self.scratch.edit_buf));
        match &hidden {
            Some(req) => {
                ed.remove_header(HeaderName::Via);
                for v in req.values(HeaderName::Via) {
                    ed.prepend_via_raw(v);
                }
            }
            None => {
                ed.remove_top_via();
            }
        }
        // Record-Route (`hiding.rs`): out to a partner, the inside above the edge's external face
        // is sealed into it; in from a partner, sealed entries are opened back into place.
        if msg.header(HeaderName::RecordRoute).is_some() {
            let values = hiding::values_of(msg, HeaderName::RecordRoute);
            let rewritten = match to_side {
                Side::External => Some(hiding::sealed_response_record_route(
                    &self.settings,
                    &self.shared.sealer,
                    &mut self.rng,
                    &values,
                )),
                Side::Internal => hiding::unsealed_record_route(&self.shared.sealer, &values),
            };
            if let Some(list) = rewritten {
                ed.remove_header(HeaderName::RecordRoute);
                if !list.is_empty() {
                    ed.append_header("Record-Route", &list.join(", "));
                }
            }
        }
        if to_side == Side::External {
            self.seal_contacts(msg, &mut ed);
        }
        let needs_diag = status >= 400
            && peer.side == Side::External
            && to_side == Side::Internal
            && msg.header(HeaderName::MsDiagnostics).is_none()
            && msg.header(HeaderName::MsDiagnosticsPublic).is_none();
        if needs_diag {
            // The partner failed without saying why: name it for the operator (MS-OCER 1034).
            let peer_server = peer
                .identities
                .first()
                .cloned()
                .unwrap_or_else(|| peer.remote.to_string());
            let domain = route::target_domain_of_response(msg);
            let r = route::simple_refusal(
                status,
                DiagnosticId::PEER_NO_DIAGNOSTIC,
                "Previous hop federated peer did not report diagnostic information",
                federation_policy::RefusalReason::NoRefusal,
                vec![("Domain", domain), ("PeerServer", peer_server)],
            );
            ed.append_header("ms-diagnostics", &r.ms_diagnostics(&self.settings.edge_fqdn));
        }
        let mut bytes = self.scratch.take_buf();
        ed.write_to(&mut bytes);
        self.scratch.edit_buf = ed.into_buf();
        if status >= 200 {
            if let Some(s) = self.txns.servers.get_mut(&sid) {
                if s.final_status.is_none() {
                    s.final_status = Some(status);
                    // Only an INVITE outlives its final (Timer L) and can see a retransmission to
                    // answer again; a non-INVITE is gone at the end of this turn.
                    if s.is_invite {
                        s.last_response = Some(bytes.clone());
                    }
                    if s.push.is_some() {
                        let outcome = match status {
                            200..=299 => super::push::PushOutcome::Accepted,
                            _ => super::push::PushOutcome::Rejected,
                        };
                        self.push_finished(sid, status, outcome, now);
                    }
                    self.finish(sid, now);
                }
            }
        }
        out.push(Effect::Send {
            dest: Destination::Conn(dest),
            bytes,
            token: None,
        });
    }

    /// CANCEL for client transaction `cid`, on the connection its INVITE went out on (§9.1, §16.10).
    pub(crate) fn send_cancel(&mut self, cid: ClientId, out: &mut Vec<Effect>) {
        let Some(c) = self.txns.clients.get_mut(&cid) else {
            return;
        };
        if c.cancelled {
            return;
        }
        c.cancelled = true;
        let Some(conn) = c.conn else { return };
        let Ok(inv) = parse(&c.bytes) else { return };
        let bytes = build_in_transaction(&inv, "CANCEL", None);
        out.push(Effect::Send {
            dest: Destination::Conn(conn),
            bytes,
            token: None,
        });
    }

    /// ACK for a non-2xx final response to our INVITE: same branch, the response's To (§17.1.1.3).
    fn send_ack(&mut self, cid: ClientId, resp: &Message<'_>, out: &mut Vec<Effect>) {
        let Some(c) = self.txns.clients.get(&cid) else {
            return;
        };
        let Some(conn) = c.conn else { return };
        let Ok(inv) = parse(&c.bytes) else { return };
        let to = resp
            .header(HeaderName::To)
            .map(|h| String::from_utf8_lossy(&h.unfolded()).into_owned());
        let bytes = build_in_transaction(&inv, "ACK", to.as_deref());
        out.push(Effect::Send {
            dest: Destination::Conn(conn),
            bytes,
            token: None,
        });
    }
}

/// CANCEL or ACK for the INVITE we forwarded: its Request-URI, our top Via only, its Route set,
/// From, Call-ID, CSeq number; To from the INVITE (CANCEL) or the response (ACK). Empty if the
/// INVITE's values cannot make a request (the builder refuses CR/LF; ours were parsed, so never).
fn build_in_transaction(inv: &Message<'_>, method: &str, to: Option<&str>) -> Vec<u8> {
    let via = inv
        .header(HeaderName::Via)
        .and_then(|v| std::str::from_utf8(v.raw_value).ok())
        .and_then(|v| sip_codec::split_values(v).next())
        .unwrap_or("");
    let routes: Vec<_> = inv
        .headers()
        .iter()
        .filter(|h| h.name == HeaderName::Route)
        .map(|h| h.unfolded())
        .collect();
    let unfolded = |name| inv.header(name).map(|h| h.unfolded());
    let (from, call_id, inv_to) = (
        unfolded(HeaderName::From),
        unfolded(HeaderName::CallId),
        unfolded(HeaderName::To),
    );
    let cseq = format!("{} {method}", inv.cseq().map_or(1, |c| c.number));
    let mut b = RequestBuilder::new(method, inv.request_uri().unwrap_or("")).header("Via", via);
    for r in &routes {
        b = b.header_bytes("Route", r);
    }
    b = b.header("Max-Forwards", "70");
    if let Some(f) = &from {
        b = b.header_bytes("From", f);
    }
    if let Some(c) = &call_id {
        b = b.header_bytes("Call-ID", c);
    }
    match (to, &inv_to) {
        (Some(t), _) => b = b.header("To", t),
        (None, Some(t)) => b = b.header_bytes("To", t),
        (None, None) => {}
    }
    b.header("CSeq", &cseq).build().unwrap_or_default()
}
