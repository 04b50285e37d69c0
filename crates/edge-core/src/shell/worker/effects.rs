//! The worker carrying out the core's `Effect`s: writes to a connection, sends to a hop through the
//! pool (reuse, queue on a link still connecting, or dial: resolve, connect, TLS), SRV lookups through
//! the resolver, closes and log lines. Each `Send` to a hop ends in exactly one `Delivered` or
//! `DeliveryFailed` for its token. What the shell learns on the way (a delivery, a failure, an SRV
//! answer from the cache) is queued as `Input`s (`Worker::learned`) and handed to the core after the batch, never by a
//! call into the core while its effects run. The loop itself is in `worker.rs`, the choice of link
//! in `pool.rs`.

use std::time::Instant;

use super::{Core, Worker};
use crate::proxy::io::{DeliveryFailure, Destination, Effect, Input, Level, NextHop, SrvResult, Token};
use crate::shell::conn::{CloseReason, Conn, Phase};
use crate::shell::log::write_log;
use crate::shell::pool::{choose, Choice, LinkView};
use crate::shell::resolver::{host_result, Lookup};
use crate::shell::shared::ConnSlot;

impl<C: Core> Worker<C> {
    /// Carries out the core's effects, then hands the core what was learned meanwhile, and again
    /// with what that produced, until both are empty. The vectors keep their capacity.
    pub(super) fn run_effects(&mut self, now: Instant) {
        loop {
            let mut batch = std::mem::take(&mut self.effects);
            for effect in batch.drain(..) {
                self.apply(effect, now);
            }
            // Nothing adds effects while a batch runs (the core is not called): the emptied vector,
            // with its capacity, takes the next ones.
            debug_assert!(self.effects.is_empty());
            self.effects = batch;
            if self.learned.is_empty() {
                if self.effects.is_empty() {
                    return;
                }
                continue;
            }
            let mut learned = std::mem::take(&mut self.learned);
            for fact in learned.drain(..) {
                self.core.handle(fact, now, &mut self.effects);
            }
            self.learned = learned;
        }
    }

    fn apply(&mut self, effect: Effect, now: Instant) {
        match effect {
            Effect::Send {
                dest: Destination::Conn(id),
                bytes,
                ..
            } => {
                let Some(&key) = self.ids.get(&id) else {
                    // Gone: the core hears ConnClosed; the buffer serves again.
                    return self.core.recycle(bytes);
                };
                if let Some(entry) = self.conns.get_mut(key) {
                    let clean = !entry.conn.is_dirty();
                    let result = entry.conn.send(bytes, None);
                    if clean && entry.conn.is_dirty() {
                        self.dirty.push(key);
                    }
                    self.settle(key, result);
                }
            }
            Effect::Send {
                dest: Destination::Hop(hop),
                bytes,
                token,
            } => self.send_to_hop(hop, bytes, token, now),
            Effect::LookupSrv { name, token } => {
                let t = self.lookup_token();
                match self.resolver.srv(&name, t, now, self.parts.poll.registry()) {
                    Lookup::Ready(result) => self.learned.push(Input::Srv { token, result }),
                    Lookup::Pending => {
                        self.srv_lookups.insert(t, token);
                    }
                }
            }
            Effect::Close { conn } => {
                let Some(&key) = self.ids.get(&conn) else {
                    return;
                };
                if let Some(entry) = self.conns.get_mut(key) {
                    let result = entry.conn.close(now, CloseReason::Requested);
                    self.settle(key, result);
                }
            }
            Effect::Log(record) => {
                if record.level > Level::Debug || self.parts.log_debug {
                    write_log(self.parts.index, &record);
                }
            }
        }
    }

    fn send_to_hop(&mut self, hop: NextHop, bytes: Vec<u8>, token: Option<Token>, now: Instant) {
        let links: Vec<LinkView> = self
            .pool
            .links(&hop)
            .iter()
            .filter_map(|&key| {
                let conn = &self.conns.get(key)?.conn;
                (conn.phase() != Phase::Closing).then(|| LinkView {
                    key,
                    up: conn.phase() == Phase::Up,
                    queued: conn.queued_bytes(),
                })
            })
            .collect();
        match choose(&links, self.parts.per_hop_limit, self.shutdown.is_none()) {
            Choice::Use(key) => self.send_on(key, bytes, token),
            Choice::Open => {
                // A busy up link stays the fallback if the new link's address is not at hand.
                let busy_up = links
                    .iter()
                    .filter(|l| l.up)
                    .min_by_key(|l| l.queued)
                    .map(|l| l.key);
                self.open(hop, bytes, token, busy_up, now)
            }
            Choice::Refuse => {
                let failure = DeliveryFailure::Overloaded("the edge is shutting down".to_owned());
                self.fail(token, failure);
            }
        }
    }

    /// Queues one message on link `key`, reporting `Delivered` at once if the link is up.
    fn send_on(&mut self, key: usize, bytes: Vec<u8>, token: Option<Token>) {
        let Some(entry) = self.conns.get_mut(key) else {
            return self.fail(
                token,
                DeliveryFailure::Overloaded("the link went away".to_owned()),
            );
        };
        let was_up = entry.conn.phase() == Phase::Up;
        let id = entry.conn.id();
        let clean = !entry.conn.is_dirty();
        match entry.conn.send(bytes, token) {
            Ok(()) => {
                if clean && entry.conn.is_dirty() {
                    self.dirty.push(key);
                }
                self.rearm(key);
                if let (true, Some(token)) = (was_up, token) {
                    self.learned.push(Input::Delivered { token, conn: id });
                }
            }
            // A link still connecting refuses a message that does not fit its queue before taking
            // it: only that message fails, the link and what waits on it stay.
            Err(CloseReason::WriteOverflow) if !was_up => {
                let failure =
                    DeliveryFailure::Overloaded("the link's queue is full while it connects".to_owned());
                self.fail(token, failure);
            }
            Err(reason) => {
                self.fail(token, reason.delivery_failure());
                self.remove(key, reason);
            }
        }
    }

    fn lookup_token(&mut self) -> u64 {
        self.next_lookup += 1;
        self.next_lookup
    }

    /// Resolves `hop` (literal, static entry, cache, or DNS — then the sends wait for the answer)
    /// and dials it.
    fn open(
        &mut self,
        hop: NextHop,
        bytes: Vec<u8>,
        token: Option<Token>,
        fallback: Option<usize>,
        now: Instant,
    ) {
        if let (Some(key), true) = (fallback, self.resolving.contains_key(&hop)) {
            return self.send_on(key, bytes, token);
        }
        if let Some(waiting) = self.resolving.get_mut(&hop) {
            // Bounded like a link still connecting: a hop whose DNS does not answer must not
            // collect every message sent to it meanwhile.
            let queued: usize = waiting.iter().map(|(b, _)| b.len()).sum();
            if queued + bytes.len() > self.parts.limits.write_bound {
                let failure = DeliveryFailure::Overloaded(
                    "too much queued while the hop's address is looked up".to_owned(),
                );
                return self.fail(token, failure);
            }
            waiting.push((bytes, token));
            return;
        }
        let t = self.lookup_token();
        match self.resolver.host(&hop.fqdn, t, now, self.parts.poll.registry()) {
            Lookup::Ready(Ok(addrs)) => self.dial(hop, addrs, bytes, token, now),
            // The address is not at hand but a working link is: use it (the lookup still refreshes
            // the cache for the next time the link is busy).
            Lookup::Ready(Err(_)) | Lookup::Pending if fallback.is_some() => {
                if let Some(key) = fallback {
                    self.send_on(key, bytes, token);
                }
            }
            Lookup::Ready(Err(failure)) => self.fail(token, failure),
            Lookup::Pending => {
                self.resolving.insert(hop.clone(), vec![(bytes, token)]);
                self.host_lookups.insert(t, hop);
            }
        }
    }

    /// Answers from the resolver: SRV results to the core, addresses to the sends waiting for them.
    pub(in crate::shell) fn dns_answers(&mut self, now: Instant) {
        while let Some((t, answer)) = self.resolver.poll_answer() {
            if let Some(token) = self.srv_lookups.remove(&t) {
                let result = SrvResult::from(answer);
                self.learned.push(Input::Srv { token, result });
            } else if let Some(hop) = self.host_lookups.remove(&t) {
                let waiting = self.resolving.remove(&hop).unwrap_or_default();
                let answer = match host_result(answer, hop.fqdn.port(), &hop.fqdn) {
                    // Shutting down: no new links, whatever DNS said.
                    Ok(_) if self.shutdown.is_some() => Err(DeliveryFailure::Overloaded(
                        "the edge is shutting down".to_owned(),
                    )),
                    other => other,
                };
                match answer {
                    Ok(addrs) => {
                        let mut sends = waiting.into_iter();
                        if let Some((bytes, token)) = sends.next() {
                            self.dial(hop.clone(), addrs, bytes, token, now);
                        }
                        // The rest take the link now connecting (or open more, per the pool).
                        for (bytes, token) in sends {
                            self.send_to_hop(hop.clone(), bytes, token, now);
                        }
                    }
                    Err(failure) => {
                        for (_, token) in waiting {
                            self.fail(token, failure.clone());
                        }
                    }
                }
            }
        }
        self.run_effects(now);
    }

    /// Dials a new connection to `hop` at `addrs`; `bytes` wait on it until it is up.
    fn dial(
        &mut self,
        hop: NextHop,
        addrs: Vec<std::net::SocketAddr>,
        bytes: Vec<u8>,
        token: Option<Token>,
        now: Instant,
    ) {
        let Some(slot) = ConnSlot::acquire(&self.parts.conn_count) else {
            // Not a refused connection (that is an incoming one): the core counts the 503 it
            // answers for the failed delivery.
            let failure = DeliveryFailure::Overloaded("max_connections reached".to_owned());
            return self.fail(token, failure);
        };
        let id = self.next_conn_id();
        let config = &self.parts.tls.side(hop.side).client;
        let conn = match Conn::dial(id, hop.clone(), addrs, config, self.parts.limits, now) {
            Ok(conn) => conn,
            Err(reason) => {
                self.stats.closed(hop.side, &reason);
                return self.fail(token, reason.delivery_failure());
            }
        };
        let Some(key) = self.insert(conn, slot) else {
            let failure = DeliveryFailure::Connect("cannot register the socket".to_owned());
            return self.fail(token, failure);
        };
        self.stats.dialled(hop.side);
        self.pool.insert(hop, key);
        if let Some(entry) = self.conns.get_mut(key) {
            let result = entry.conn.send(bytes, token);
            if let Err(reason) = &result {
                self.fail(token, reason.delivery_failure());
            }
            self.settle(key, result);
        }
    }

    fn fail(&mut self, token: Option<Token>, failure: DeliveryFailure) {
        if let Some(token) = token {
            self.learned.push(Input::DeliveryFailed { token, failure });
        }
    }
}
