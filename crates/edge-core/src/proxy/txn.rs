//! Transaction tables and timers. A [`ServerTxn`] answers the peer that sent a request; each attempt
//! to forward it is a [`ClientTxn`] with our own branch. Timers live in one ordered set keyed by
//! deadline; a transaction remembers the sequence number of its live timer, and re-arming removes
//! the old one.
//!
//! Server lifecycle: Proceeding → final sent (`final_status`) → lingering → removed.
//! Client lifecycle: sent (Timer B/F) → provisional (INVITE: Timer C) → final → lingering → removed.
//!
//! However a client transaction ends, it ends in one place: `outcome.rs`, [`Proxy::conclude`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use federation_policy::RefusalReason;
use sip_codec::{Kept, Message};

use super::ids::{ClientId, ServerId, SubscriptionId, TimerId};
use super::io::{ConnId, DeliveryFailure, Effect, Level, NextHop, Side, Token};
use super::respond::{self, Extra};
use super::stats::MethodLabel;
use super::{FastMap, Proxy};

#[derive(Debug)]
pub(crate) struct ServerTxn {
    pub conn: ConnId,
    pub side: Side,
    pub is_invite: bool,
    pub key: super::ids::TxnKey,
    /// The request as received and parsed (responses are generated from it; a DNS answer or a
    /// push retry routes it). Shared with the step that reads it, which may change the tables.
    pub request: Arc<Kept>,
    pub final_status: Option<u16>,
    pub last_response: Option<Vec<u8>>,
    pub client: Option<ClientId>,
    /// The connection it came on is gone: responses have nowhere to go.
    pub orphaned: bool,
    /// A push request (`push.rs`): its provider, attempts and route.
    pub push: Option<super::push::PushTxn>,
}

/// The transaction tables of one worker's core: server transactions by id and by the sender's
/// branch, client transactions by id and by the branch this edge wrote, and what waits on the shell
/// (a DNS answer, a delivery) by token.
#[derive(Debug, Default)]
pub(crate) struct Transactions {
    pub servers: FastMap<ServerId, ServerTxn>,
    /// Keyed by the *sender's* branch, hashed with per-process random SipHash keys
    /// ([`super::ids::TxnKey`]): a peer cannot choose branches that collide.
    pub server_keys: FastMap<super::ids::TxnKey, ServerId>,
    pub clients: FastMap<ClientId, ClientTxn>,
    /// Keyed by branches this edge wrote (random, see `forward.rs`), hashed the same way: peers can
    /// look up, not insert.
    pub client_branches: FastMap<super::ids::TxnKey, ClientId>,
    /// The keys of both tables.
    pub keys: super::ids::TxnKeys,
    pub pending: FastMap<Token, Pending>,
}

impl Transactions {
    /// Removes client transaction `cid` and its branch: a late answer to that branch is dropped.
    pub fn remove_client(&mut self, cid: ClientId) -> Option<ClientTxn> {
        let c = self.clients.remove(&cid)?;
        self.client_branches.remove(&c.branch_key);
        Some(c)
    }

    /// Server transactions still waiting for their final response.
    pub fn open(&self) -> usize {
        self.servers
            .values()
            .filter(|s| s.final_status.is_none() && !s.orphaned)
            .count()
    }
}

#[derive(Debug)]
pub(crate) struct ClientTxn {
    pub server: ServerId,
    /// The key of the branch it went out with, in `client_branches` (the branch itself is in the
    /// forwarded bytes, where CANCEL and ACK read it).
    pub branch_key: super::ids::TxnKey,
    pub is_invite: bool,
    /// The request as forwarded (resent on failover, source of CANCEL and ACK); empty for a
    /// non-INVITE without spare hops, which needs neither.
    pub bytes: Vec<u8>,
    pub hop: NextHop,
    /// Further SRV targets to fail over to.
    pub spare_hops: Vec<NextHop>,
    pub conn: Option<ConnId>,
    pub provisional: bool,
    pub final_status: Option<u16>,
    pub cancel_pending: bool,
    pub cancelled: bool,
    pub timer: Option<TimerId>,
    pub method: MethodLabel,
    /// When the request first went out (latency runs from here to the outcome, failovers included).
    pub started: Instant,
}

/// How a client transaction ended: the input of [`Proxy::conclude`].
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A final response (status, its Retry-After) from the next hop; the caller forwards it.
    Response(u16, Option<std::time::Duration>),
    /// The bytes could not be delivered to the hop.
    DeliveryFailed(DeliveryFailure),
    /// Timer F, B or C expired without a final response.
    TimedOut,
    /// The connection the request went out on closed before its final response.
    LinkLost,
}

/// What [`Proxy::conclude`] leaves to its caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Concluded {
    /// The response that concluded the transaction goes upstream (the caller has it parsed).
    ForwardResponse,
    /// Nothing left to do: answered, failed over, or already final.
    Done,
}

/// What a token stands for until the shell reports back.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Delivery {
        client: ClientId,
    },
    OutboundSrv {
        server: ServerId,
    },
    InboundSrv {
        server: ServerId,
    },
    /// ACK for 2xx and other stateless forwards: the outcome changes nothing.
    Stateless,
    /// A request the edge originated (`dialogs.rs`): its answer is absorbed.
    Local {
        token: Token,
    },
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum TimerKind {
    /// Timer F (non-INVITE), B or C (INVITE) of a client transaction.
    ClientTimeout(ClientId),
    /// Remove a finished server transaction (and its client).
    Linger(ServerId),
    /// The next attempt of a push request (server transaction id).
    PushRetry(ServerId),
    /// A subscription was not refreshed in time (`dialogs.rs`).
    SubscriptionExpiry(SubscriptionId),
    /// The edge's own NOTIFY got no answer in time (its token).
    LocalTimeout(Token),
}

impl Proxy {
    pub(crate) fn arm(&mut self, at: Instant, kind: TimerKind) -> TimerId {
        let id = TimerId(self.next_id());
        self.timers.arm(id, at, kind);
        id
    }

    /// Removes a timer entirely: a peer that makes us re-arm often (a stream of provisional
    /// responses re-arms Timer C) must not leave dead entries behind until their deadlines.
    pub(crate) fn disarm(&mut self, seq: Option<TimerId>) {
        self.timers.disarm(seq);
    }

    /// (Re)arms the client transaction's timeout `after` from now.
    pub(crate) fn arm_client(&mut self, id: ClientId, now: Instant, after: Duration) {
        let old = self.txns.clients.get(&id).and_then(|c| c.timer);
        self.disarm(old);
        let seq = self.arm(now + after, TimerKind::ClientTimeout(id));
        if let Some(c) = self.txns.clients.get_mut(&id) {
            c.timer = Some(seq);
        }
    }

    pub(crate) fn new_server(
        &mut self,
        conn: ConnId,
        side: Side,
        key: super::ids::TxnKey,
        is_invite: bool,
        request: &Message<'_>,
    ) -> ServerId {
        let id = ServerId(self.next_id());
        self.txns.server_keys.insert(key, id);
        let stored = self.scratch.keep(request);
        self.txns.servers.insert(
            id,
            ServerTxn {
                conn,
                side,
                is_invite,
                key,
                request: stored,
                final_status: None,
                last_response: None,
                client: None,
                orphaned: false,
                push: None,
            },
        );
        id
    }

    /// Sends a generated final response for server transaction `sid`, unless it already has one.
    pub(crate) fn respond(
        &mut self,
        sid: ServerId,
        status: u16,
        extra: Extra,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        // Later events (timers, failures) only have the stored request.
        let Some(kept) = self.txns.servers.get(&sid).map(|s| Arc::clone(&s.request)) else {
            return;
        };
        let Some(req) = kept.message_reusing(&mut self.scratch.header_buf) else {
            return;
        };
        self.respond_to(sid, &req, status, extra, now, out);
        self.scratch.header_buf = req.into_header_buf();
    }

    /// As [`Proxy::respond`], with the request already parsed (the request path has it at hand).
    pub(crate) fn respond_to(
        &mut self,
        sid: ServerId,
        req: &Message<'_>,
        status: u16,
        extra: Extra,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let edge = &self.settings.edge_fqdn;
        let Some(s) = self.txns.servers.get_mut(&sid) else {
            return;
        };
        if s.final_status.is_some() && status >= 200 {
            return;
        }
        // The To tag is derived from the transaction's id when a response is generated: most
        // transactions never need one.
        let to_tag = super::ids::to_tag(u64::from(self.worker), sid.0);
        let side = s.side;
        let bytes = respond::build(req, status, &to_tag, edge, side, &extra);
        let reason = extra
            .refusal
            .as_ref()
            .map_or(RefusalReason::NoRefusal, |r| r.metric_reason);
        if self.counting {
            self.stats.generated(status, reason);
        }
        let Some(s) = self.txns.servers.get_mut(&sid) else {
            return;
        };
        if status >= 200 {
            s.final_status = Some(status);
            // Kept to answer a retransmission only where one can come: an INVITE (Timer L).
            if s.is_invite {
                s.last_response = Some(bytes.clone());
            }
        }
        if !s.orphaned {
            out.push(Effect::Send {
                dest: super::io::Destination::Conn(s.conn),
                bytes,
                token: None,
            });
        }
        // Kept for the status page (only when counting: the diagnostic is rendered for it).
        if let (Some(r), true, true) = (&extra.refusal, status >= 200, self.counting) {
            let recent = super::stats::RecentRefusal {
                at: now,
                side,
                method: req.method().unwrap_or_default().to_owned(),
                status,
                reason: r.metric_reason,
                diagnostic: r.ms_diagnostics(&self.settings.edge_fqdn),
            };
            self.count(|st| st.refused(recent));
        }
        if let Some(r) = &extra.refusal {
            // The facts of the diagnostic as fields of their own (domain, fqdn1, PeerServer, ...).
            let mut fields = vec![
                ("status", status.to_string()),
                ("reason", r.metric_reason.as_str().to_owned()),
                ("diagnostic", r.id.0.to_string()),
            ];
            fields.extend(r.params.iter().map(|(k, v)| (*k, v.clone())));
            // The event's own text, then what the peer was told; a simple refusal's text is its
            // diagnostic reason, said once.
            let text = if r.event.text == r.reason {
                format!(
                    "{} ({status} {}, {})",
                    r.reason,
                    sip_codec::reason_phrase(status),
                    r.id.0
                )
            } else {
                format!("{} ({} {})", r.event.text, status, r.reason)
            };
            self.log(out, Level::Info, r.event.name, text, fields);
        }
        if status >= 200 {
            let outcome = super::push::PushOutcome::of_refusal(reason);
            self.push_finished(sid, status, outcome, now);
            self.finish(sid, now);
        }
    }

    /// Answers server transaction `sid` with a policy or routing refusal (its own status).
    pub(crate) fn refuse(
        &mut self,
        sid: ServerId,
        req: &Message<'_>,
        refusal: federation_policy::Refusal,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let (status, extra) = refusal_answer(refusal);
        self.respond_to(sid, req, status, extra, now, out);
    }

    /// As [`Proxy::refuse`], for a later step (a timer) that has only the stored request.
    pub(crate) fn refuse_stored(
        &mut self,
        sid: ServerId,
        refusal: federation_policy::Refusal,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let (status, extra) = refusal_answer(refusal);
        self.respond(sid, status, extra, now, out);
    }

    /// A server transaction has its final response: forget it once the RFC lets us. Every link of
    /// this edge is reliable (TLS over TCP), so a non-INVITE transaction keeps nothing: RFC 3261
    /// Timer J (server) and Timer K (client) are zero on reliable transports — no retransmission
    /// can arrive — and it goes at the end of this loop turn. An INVITE lingers `linger` (32 s,
    /// RFC 6026 Timer L) to forward the further 2xx of a forked call and absorb the ACK of a
    /// non-2xx final. Memory therefore follows the work in flight, not the rate times 32 s.
    pub(crate) fn finish(&mut self, sid: ServerId, now: Instant) {
        let is_invite = self.txns.servers.get(&sid).is_some_and(|s| s.is_invite);
        let at = if is_invite {
            now + self.settings.linger
        } else {
            now
        };
        self.arm(at, TimerKind::Linger(sid));
    }

    pub(crate) fn on_timer(&mut self, seq: TimerId, kind: TimerKind, now: Instant, out: &mut Vec<Effect>) {
        match kind {
            TimerKind::Linger(sid) => {
                if let Some(s) = self.txns.servers.remove(&sid) {
                    self.txns.server_keys.remove(&s.key);
                    if let Some(c) = s.client.and_then(|cid| self.txns.remove_client(cid)) {
                        self.disarm(c.timer);
                        self.recycle(c.bytes);
                    }
                    self.scratch.recycle_kept(s.request);
                    if let Some(r) = s.last_response {
                        self.recycle(r);
                    }
                }
            }
            TimerKind::PushRetry(sid) => self.push_retry(sid, now, out),
            TimerKind::SubscriptionExpiry(id) => self.subscription_expired(id),
            TimerKind::LocalTimeout(token) => self.local_done(token),
            TimerKind::ClientTimeout(cid) => {
                let live = self
                    .txns
                    .clients
                    .get(&cid)
                    .is_some_and(|c| c.timer == Some(seq) && c.final_status.is_none());
                if live {
                    if let Some(c) = self.txns.clients.get_mut(&cid) {
                        c.timer = None;
                    }
                    self.conclude(cid, Outcome::TimedOut, now, out);
                }
            }
        }
    }
}

/// The status and the extras of the answer a refusal makes.
fn refusal_answer(refusal: federation_policy::Refusal) -> (u16, Extra) {
    let status = refusal.status;
    let extra = Extra {
        refusal: Some(refusal),
        ..Extra::default()
    };
    (status, extra)
}
