//! **One outcome path**: however a client transaction ends — a final response, a failed delivery, a
//! timer, a lost link — it ends in [`Proxy::conclude`], which fails over to the next SRV target
//! where one is left, else marks the transaction final, counts the outcome and its latency once,
//! and answers the server transaction (or, for a response, tells the caller to forward it). The
//! push relay's retries and breaker and the dialog layer hook in there. The shell's reports that
//! end transactions arrive here too: a connection closed, a delivery made or failed.

use std::time::Instant;

use super::ids::{ClientId, ServerId};
use super::io::{ConnId, DeliveryFailure, Effect, Level, LinkEnd, Token};
use super::respond::Extra;
use super::stats::OutcomeLabel;
use super::txn::{Concluded, Outcome, Pending};
use super::Proxy;

impl Proxy {
    /// The hop client transaction `cid` went to, as text (for a refusal's diagnostic only: the
    /// answered path builds no string).
    pub(super) fn hop_name(&self, cid: ClientId) -> String {
        self.txns
            .clients
            .get(&cid)
            .map(|c| c.hop.fqdn.to_string())
            .unwrap_or_default()
    }

    /// The one place a client transaction ends (see the module doc). Idempotent: a transaction
    /// already final is left alone.
    pub(crate) fn conclude(
        &mut self,
        cid: ClientId,
        outcome: Outcome,
        now: Instant,
        out: &mut Vec<Effect>,
    ) -> Concluded {
        let Some(c) = self.txns.clients.get_mut(&cid) else {
            return Concluded::Done;
        };
        if c.final_status.is_some() {
            return Concluded::Done;
        }
        if let Outcome::DeliveryFailed(failure) = &outcome {
            if !c.spare_hops.is_empty() {
                // SRV failover (Lync never did this): the same request to the next target.
                let failed_hop = c.hop.fqdn.to_string();
                let next = c.spare_hops.remove(0);
                c.hop = next.clone();
                c.conn = None;
                let bytes = c.bytes.clone();
                let method = c.method;
                self.log(
                    out,
                    Level::Warn,
                    "srv_failover",
                    format!("next hop {failed_hop} failed ({failure:?}); trying {}", next.fqdn),
                    vec![("failed", failed_hop), ("next", next.fqdn.to_string())],
                );
                let token = Token(self.next_id());
                self.txns.pending.insert(token, Pending::Delivery { client: cid });
                self.count(|s| s.request_out(next.side, method));
                out.push(Effect::Send {
                    dest: super::io::Destination::Hop(next),
                    bytes,
                    token: Some(token),
                });
                return Concluded::Done;
            }
        }
        let status = match &outcome {
            Outcome::Response(s, _) => *s,
            Outcome::DeliveryFailed(f) => super::route::refusal_for_delivery("", f).0,
            Outcome::TimedOut => 408,
            Outcome::LinkLost => 503,
        };
        c.final_status = Some(status);
        let (sid, timer) = (c.server, c.timer.take());
        let (method, took) = (c.method, now.saturating_duration_since(c.started));
        let attempt_started = c.started;
        let invite_proceeding = c.is_invite && c.provisional;
        let (is_invite, provisional) = (c.is_invite, c.provisional);
        self.disarm(timer);
        let label = match &outcome {
            Outcome::Response(..) => OutcomeLabel::Answered,
            Outcome::DeliveryFailed(_) => OutcomeLabel::DeliveryFailed,
            Outcome::TimedOut => OutcomeLabel::TimedOut,
            Outcome::LinkLost => OutcomeLabel::LinkLost,
        };
        self.count(|s| s.outcome(method, label, took));
        // A push: the relay policy may retry (a 503, or no answer at all) instead of answering. A
        // timeout is judged at its nominal instant (the attempt's start + push.timeout_ms): a timer
        // that fires a little late must not cost the retry the budget has room for.
        let judged_at = match &outcome {
            Outcome::TimedOut => now.min(attempt_started + self.settings.push_timeout),
            _ => now,
        };
        if let Some(after) = self.push_decide(sid, &outcome, provisional, judged_at) {
            let retry_at = judged_at + after;
            self.push_schedule_retry(sid, retry_at.saturating_duration_since(now), now, out);
            return Concluded::Done;
        }
        match outcome {
            Outcome::Response(..) => return Concluded::ForwardResponse,
            Outcome::DeliveryFailed(failure) => {
                let (status, refusal) = super::route::refusal_for_delivery(&self.hop_name(cid), &failure);
                let retry_after = (status == 503).then_some(10);
                let extra = Extra {
                    refusal: Some(refusal),
                    retry_after,
                    ..Extra::default()
                };
                self.respond(sid, status, extra, now, out);
            }
            Outcome::TimedOut => {
                if invite_proceeding {
                    // Timer C: the callee never answered; cancel downstream (RFC 3261 §16.8).
                    self.send_cancel(cid, out);
                }
                let which = match (invite_proceeding, is_invite) {
                    (true, _) => "Timer C",
                    (false, true) => "Timer B",
                    (false, false) => "Timer F",
                };
                self.log(
                    out,
                    Level::Info,
                    "client_transaction_timeout",
                    format!("no final response before {which}: 408"),
                    vec![],
                );
                match self.push_timeout_refusal(sid) {
                    // A push the provider never answered: 504, as the field knows it.
                    Some(r) => self.refuse_stored(sid, r, now, out),
                    None => self.respond(sid, 408, Extra::default(), now, out),
                }
            }
            Outcome::LinkLost => {
                let extra = Extra {
                    refusal: Some(super::route::refusal_for_lost_link(&self.hop_name(cid))),
                    retry_after: Some(10),
                    ..Extra::default()
                };
                self.respond(sid, 503, extra, now, out);
            }
        }
        Concluded::Done
    }

    pub(crate) fn on_conn_closed(
        &mut self,
        conn: ConnId,
        reason: LinkEnd,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        if let Some(peer) = self.peers.remove(&conn) {
            // Subscriptions whose link this was the last connection of end first: their NOTIFYs
            // go out before the transactions below are answered.
            self.dialog_link_down(&peer, reason, now, out);
        }
        // Client transactions that went out on this connection and have no final response: answer them.
        let lost: Vec<ClientId> = self
            .txns
            .clients
            .iter()
            .filter(|(_, c)| c.conn == Some(conn) && c.final_status.is_none())
            .map(|(id, _)| *id)
            .collect();
        for cid in lost {
            self.conclude(cid, Outcome::LinkLost, now, out);
        }
        // Server transactions whose requester is gone: nothing to answer; abandon their INVITEs.
        let orphans: Vec<ServerId> = self
            .txns
            .servers
            .iter()
            .filter(|(_, s)| s.conn == conn)
            .map(|(id, _)| *id)
            .collect();
        for sid in orphans {
            let Some(s) = self.txns.servers.get_mut(&sid) else {
                continue;
            };
            s.orphaned = true;
            let (client, open) = (s.client, s.final_status.is_none());
            if open {
                if let Some(cid) = client {
                    if self
                        .txns
                        .clients
                        .get(&cid)
                        .is_some_and(|c| c.is_invite && c.final_status.is_none())
                    {
                        self.send_cancel(cid, out);
                    }
                }
                self.finish(sid, now);
            }
        }
    }

    pub(crate) fn on_delivered(&mut self, token: Token, conn: ConnId) {
        match self.txns.pending.remove(&token) {
            Some(Pending::Delivery { client }) => {
                if let Some(c) = self.txns.clients.get_mut(&client) {
                    c.conn = Some(conn);
                }
            }
            Some(Pending::Local { token }) => self.local_delivered(token, conn),
            _ => {}
        }
    }

    pub(crate) fn on_delivery_failed(
        &mut self,
        token: Token,
        failure: DeliveryFailure,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let client = match self.txns.pending.remove(&token) {
            Some(Pending::Delivery { client }) => client,
            Some(Pending::Local { token }) => return self.local_done(token),
            _ => return,
        };
        // A hop that cannot be reached: the subscriptions that depend on it end too.
        if let Some(hop) = self.txns.clients.get(&client).map(|c| c.hop.clone()) {
            let cause = match &failure {
                DeliveryFailure::Resolve(_) => "resolve_failed",
                DeliveryFailure::Connect(_) => "connect_failed",
                DeliveryFailure::Tls(_) | DeliveryFailure::CertificateMismatch { .. } => "tls_failed",
                DeliveryFailure::Overloaded(_) => "",
            };
            if !cause.is_empty() {
                self.dialog_hop_unreachable(&hop, cause, now, out);
            }
        }
        self.conclude(client, Outcome::DeliveryFailed(failure), now, out);
    }
}
