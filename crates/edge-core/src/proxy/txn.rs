//! Transaction tables and timers. A [`ServerTxn`] answers the peer that sent a request; each attempt
//! to forward it is a [`ClientTxn`] with our own branch. Timers live in one ordered set keyed by
//! deadline; a transaction remembers the sequence number of its live timer, and re-arming removes
//! the old one.
//!
//! Server lifecycle: Proceeding → final sent (`final_status`) → lingering → removed.
//! Client lifecycle: sent (Timer B/F) → provisional (INVITE: Timer C) → final → lingering → removed.

use std::time::{Duration, Instant};

use sip_codec::{parse, Message};

use super::io::{ConnId, DeliveryFailure, Effect, Level, NextHop, Side, Token};
use super::respond::{self, Extra};
use super::Proxy;

#[derive(Debug)]
pub(crate) struct ServerTxn {
    pub conn: ConnId,
    pub side: Side,
    pub is_invite: bool,
    pub key: String,
    /// The request as received (responses are generated from it).
    pub request: Vec<u8>,
    pub to_tag: String,
    pub final_status: Option<u16>,
    pub last_response: Option<Vec<u8>>,
    pub client: Option<u64>,
    /// The connection it came on is gone: responses have nowhere to go.
    pub orphaned: bool,
}

#[derive(Debug)]
pub(crate) struct ClientTxn {
    pub server: u64,
    pub branch: String,
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
    pub timer: Option<u64>,
}

/// What a token stands for until the shell reports back.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Delivery {
        client: u64,
    },
    OutboundSrv {
        server: u64,
    },
    InboundSrv {
        server: u64,
    },
    /// ACK for 2xx and other stateless forwards: the outcome changes nothing.
    Stateless,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum TimerKind {
    /// Timer F (non-INVITE), B or C (INVITE) of a client transaction.
    ClientTimeout(u64),
    /// Remove a finished server transaction (and its client).
    Linger(u64),
}

impl Proxy {
    pub(crate) fn arm(&mut self, at: Instant, kind: TimerKind) -> u64 {
        let seq = self.next_id();
        self.timers.insert((at, seq));
        self.timer_kinds.insert(seq, (at, kind));
        seq
    }

    /// Removes a timer entirely: a peer that makes us re-arm often (a stream of provisional
    /// responses re-arms Timer C) must not leave dead entries behind until their deadlines.
    pub(crate) fn disarm(&mut self, seq: Option<u64>) {
        let Some(seq) = seq else { return };
        if let Some((at, _)) = self.timer_kinds.remove(&seq) {
            self.timers.remove(&(at, seq));
        }
    }

    /// (Re)arms the client transaction's timeout `after` from now.
    pub(crate) fn arm_client(&mut self, id: u64, now: Instant, after: Duration) {
        let old = self.clients.get(&id).and_then(|c| c.timer);
        self.disarm(old);
        let seq = self.arm(now + after, TimerKind::ClientTimeout(id));
        if let Some(c) = self.clients.get_mut(&id) {
            c.timer = Some(seq);
        }
    }

    pub(crate) fn new_server(
        &mut self,
        conn: ConnId,
        side: Side,
        key: String,
        is_invite: bool,
        request: &[u8],
    ) -> u64 {
        let id = self.next_id();
        let to_tag = format!("se{:x}x{id:x}", self.worker);
        self.server_keys.insert(key.clone(), id);
        self.servers.insert(
            id,
            ServerTxn {
                conn,
                side,
                is_invite,
                key,
                request: request.to_vec(),
                to_tag,
                final_status: None,
                last_response: None,
                client: None,
                orphaned: false,
            },
        );
        id
    }

    /// Sends a generated final response for server transaction `sid`, unless it already has one.
    pub(crate) fn respond(
        &mut self,
        sid: u64,
        status: u16,
        extra: Extra,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        // Later events (timers, failures) only have the stored request: parse a copy of it.
        let Some(raw) = self.servers.get(&sid).map(|s| s.request.clone()) else {
            return;
        };
        let Ok(req) = parse(&raw) else { return };
        self.respond_to(sid, &req, status, extra, now, out);
    }

    /// As [`Proxy::respond`], with the request already parsed (the request path has it at hand).
    pub(crate) fn respond_to(
        &mut self,
        sid: u64,
        req: &Message<'_>,
        status: u16,
        extra: Extra,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let edge = &self.settings.edge_fqdn;
        let Some(s) = self.servers.get_mut(&sid) else {
            return;
        };
        if s.final_status.is_some() && status >= 200 {
            return;
        }
        let bytes = respond::build(req, status, &s.to_tag, edge, s.side, &extra);
        if status >= 200 {
            s.final_status = Some(status);
            s.last_response = Some(bytes.clone());
        }
        if !s.orphaned {
            out.push(Effect::Send {
                dest: super::io::Destination::Conn(s.conn),
                bytes,
                token: None,
            });
        }
        if let Some(r) = &extra.refusal {
            *self.counters.refusals.entry(r.metric_reason).or_default() += 1;
            // The facts of the diagnostic as fields of their own (domain, fqdn1, PeerServer, ...).
            let mut fields = vec![
                ("status", status.to_string()),
                ("reason", r.metric_reason.to_owned()),
                ("diagnostic", r.id.0.to_string()),
            ];
            fields.extend(r.params.iter().map(|(k, v)| (*k, v.clone())));
            let text = format!("{} ({} {})", r.event.text, status, r.reason);
            self.log(out, Level::Info, r.event.name, text, fields);
        }
        if status >= 200 {
            self.finish(sid, now);
        }
    }

    /// Answers server transaction `sid` with a policy or routing refusal (its own status).
    pub(crate) fn refuse(
        &mut self,
        sid: u64,
        refusal: federation_policy::Refusal,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let status = refusal.status;
        self.respond(
            sid,
            status,
            Extra {
                refusal: Some(refusal),
                ..Extra::default()
            },
            now,
            out,
        );
    }

    /// A server transaction has its final response: linger, then forget it.
    pub(crate) fn finish(&mut self, sid: u64, now: Instant) {
        let at = now + self.settings.linger;
        self.arm(at, TimerKind::Linger(sid));
    }

    pub(crate) fn on_timer(&mut self, seq: u64, kind: TimerKind, now: Instant, out: &mut Vec<Effect>) {
        match kind {
            TimerKind::Linger(sid) => {
                if let Some(s) = self.servers.remove(&sid) {
                    self.server_keys.remove(&s.key);
                    if let Some(c) = s.client.and_then(|cid| self.clients.remove(&cid)) {
                        self.disarm(c.timer);
                        self.client_branches.remove(&c.branch);
                    }
                }
            }
            TimerKind::ClientTimeout(cid) => {
                let Some(c) = self.clients.get_mut(&cid) else {
                    return;
                };
                if c.timer != Some(seq) || c.final_status.is_some() {
                    return;
                }
                c.timer = None;
                c.final_status = Some(408);
                let (sid, invite_proceeding) = (c.server, c.is_invite && c.provisional);
                if invite_proceeding {
                    // Timer C: the callee never answered; cancel downstream (RFC 3261 §16.8).
                    self.send_cancel(cid, out);
                }
                let which = if invite_proceeding {
                    "Timer C"
                } else if self.clients.get(&cid).is_some_and(|c| c.is_invite) {
                    "Timer B"
                } else {
                    "Timer F"
                };
                self.log(
                    out,
                    Level::Info,
                    "client_transaction_timeout",
                    format!("no final response before {which}: 408"),
                    vec![],
                );
                self.respond(sid, 408, Extra::default(), now, out);
            }
        }
    }

    pub(crate) fn on_conn_closed(&mut self, conn: ConnId, now: Instant, out: &mut Vec<Effect>) {
        self.peers.remove(&conn);
        // Client transactions that went out on this connection and have no final response: answer them.
        let lost: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.conn == Some(conn) && c.final_status.is_none())
            .map(|(id, _)| *id)
            .collect();
        for cid in lost {
            let Some(c) = self.clients.get_mut(&cid) else {
                continue;
            };
            c.final_status = Some(503);
            let (sid, timer, hop) = (c.server, c.timer.take(), c.hop.fqdn.to_string());
            self.disarm(timer);
            let refusal = super::route::refusal_for_lost_link(&hop);
            self.respond(
                sid,
                503,
                Extra {
                    refusal: Some(refusal),
                    retry_after: Some(10),
                    ..Extra::default()
                },
                now,
                out,
            );
        }
        // Server transactions whose requester is gone: nothing to answer; abandon their INVITEs.
        let orphans: Vec<u64> = self
            .servers
            .iter()
            .filter(|(_, s)| s.conn == conn)
            .map(|(id, _)| *id)
            .collect();
        for sid in orphans {
            let Some(s) = self.servers.get_mut(&sid) else {
                continue;
            };
            s.orphaned = true;
            let (client, open) = (s.client, s.final_status.is_none());
            if open {
                if let Some(cid) = client {
                    if self
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
        if let Some(Pending::Delivery { client }) = self.pending.remove(&token) {
            if let Some(c) = self.clients.get_mut(&client) {
                c.conn = Some(conn);
            }
        }
    }

    pub(crate) fn on_delivery_failed(
        &mut self,
        token: Token,
        failure: DeliveryFailure,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let Some(Pending::Delivery { client }) = self.pending.remove(&token) else {
            return;
        };
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        if c.final_status.is_some() {
            return;
        }
        let failed_hop = c.hop.fqdn.to_string();
        if !c.spare_hops.is_empty() {
            // SRV failover (Lync never did this): the same request to the next target.
            let next = c.spare_hops.remove(0);
            c.hop = next.clone();
            let bytes = c.bytes.clone();
            self.log(
                out,
                Level::Warn,
                "srv_failover",
                format!("next hop {failed_hop} failed ({failure:?}); trying {}", next.fqdn),
                vec![("failed", failed_hop), ("next", next.fqdn.to_string())],
            );
            let token = Token(self.next_id());
            self.pending.insert(token, Pending::Delivery { client });
            out.push(Effect::Send {
                dest: super::io::Destination::Hop(next),
                bytes,
                token: Some(token),
            });
            return;
        }
        c.final_status = Some(504);
        let (sid, timer) = (c.server, c.timer.take());
        self.disarm(timer);
        let (status, refusal) = super::route::refusal_for_delivery(&failed_hop, &failure);
        let retry_after = (status == 503).then_some(10);
        self.respond(
            sid,
            status,
            Extra {
                refusal: Some(refusal),
                retry_after,
                ..Extra::default()
            },
            now,
            out,
        );
    }
}
