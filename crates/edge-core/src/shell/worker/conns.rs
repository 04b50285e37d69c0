//! The worker's connections: accepting (the edge-wide and per-address bounds), the slab and ids,
//! driving a connection's I/O and timers with the core hearing its events (`EventSink`), and
//! removing one — the core told of the close and of each send that never went out, the close
//! counted and logged.

use super::*;

impl<C: Core> Worker<C> {
    pub(super) fn accept(&mut self, i: usize, now: Instant) {
        loop {
            let Some((listener, side)) = self.parts.listeners.get(i) else {
                return;
            };
            let (side, accepted) = (*side, listener.accept());
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the pending connection stays queued; retry on the next
                    // event rather than spin.
                    self.refusal("accept_failed", format!("accept failed: {e}"), side);
                    return;
                }
            };
            let Some(slot) = ConnSlot::acquire(&self.parts.conn_count) else {
                self.stats.refused(side, "max_connections");
                self.refusal(
                    "max_connections",
                    format!("connection from {remote} refused: max_connections reached"),
                    side,
                );
                continue;
            };
            let ip = remote.ip();
            let from_ip = self.per_ip.get(&ip).copied().unwrap_or(0);
            if from_ip >= self.parts.per_ip_limit {
                self.stats.refused(side, "per_ip");
                self.refusal(
                    "max_connections_per_ip",
                    format!("connection from {remote} refused: per-IP limit reached"),
                    side,
                );
                continue;
            }
            let _ = listener::tune(&stream);
            let id = self.next_conn_id();
            let tls = &self.parts.tls.side(side).server;
            match Conn::accept(id, side, stream, remote, tls, self.parts.limits, now) {
                Ok(conn) => {
                    if self.insert(conn, slot).is_some() {
                        self.per_ip.insert(ip, from_ip + 1);
                        self.stats.accepted(side);
                    }
                }
                Err(reason) => self.log_close(id, side, remote, &reason),
            }
        }
    }

    pub(super) fn next_conn_id(&mut self) -> ConnId {
        self.next_id += 1;
        ConnId(self.next_id)
    }

    pub(super) fn insert(&mut self, mut conn: Conn, slot: ConnSlot) -> Option<usize> {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key >= LISTENER_BASE - MAX_LISTENERS {
            return None;
        }
        if let Err(e) = conn.register(self.parts.poll.registry(), MioToken(key)) {
            self.log_shell(
                Level::Error,
                "register_failed",
                format!("cannot register a socket: {e}"),
                vec![],
            );
            return None;
        }
        let id = conn.id();
        entry.insert(Entry {
            conn,
            announced: false,
            _slot: slot,
        });
        self.ids.insert(id, key);
        self.rearm(key);
        Some(key)
    }

    pub(super) fn conn_ready(&mut self, key: usize, now: Instant) {
        let Some(result) = self.drive(key, now, Drive::Ready) else {
            return;
        };
        self.settle(key, result);
        // Stopped at its read budget: come back next turn, after the effects of what was read.
        if self.conns.get(key).is_some_and(|e| e.conn.input_pending()) && !self.backlog.contains(&key) {
            self.backlog.push(key);
        }
    }

    /// One call into connection `key` — its readiness or its deadline — with what it reports
    /// handed to the core as it happens (`EventSink`). `None`: no such connection.
    pub(super) fn drive(&mut self, key: usize, now: Instant, call: Drive) -> Option<Result<(), CloseReason>> {
        let entry = self.conns.get_mut(key)?;
        let mut sink = EventSink {
            id: entry.conn.id(),
            now,
            core: &mut self.core,
            effects: &mut self.effects,
            announced: &mut entry.announced,
            stats: &mut self.stats,
            side: entry.conn.side(),
        };
        let (conn, registry, token) = (&mut entry.conn, self.parts.poll.registry(), MioToken(key));
        let mut report = |event: ConnEvent<'_>| sink.event(event);
        Some(match call {
            Drive::Ready => conn.on_ready(now, registry, token, &mut report),
            Drive::Timer => {
                conn.armed = None;
                conn.on_timer(now, registry, token, &mut report)
            }
        })
    }

    /// After a connection call: re-arm its deadline, or remove it. The buffers it finished writing
    /// go back to the core, which writes the next messages into them.
    pub(super) fn settle(&mut self, key: usize, result: Result<(), CloseReason>) {
        if let Some(entry) = self.conns.get_mut(key) {
            for buf in entry.conn.take_spent() {
                self.core.recycle(buf);
            }
        }
        match result {
            Ok(()) => self.rearm(key),
            Err(reason) => self.remove(key, reason),
        }
    }

    pub(super) fn rearm(&mut self, key: usize) {
        if let Some(entry) = self.conns.get_mut(key) {
            entry.conn.armed = self.deadlines.rearm(key, entry.conn.armed, entry.conn.deadline());
        }
    }

    pub(super) fn fire_timers(&mut self, now: Instant) {
        for key in self.deadlines.expired(now) {
            if let Some(result) = self.drive(key, now, Drive::Timer) {
                self.settle(key, result);
            }
        }
        self.run_effects(now);
    }

    /// Forgets a connection: the core hears `ConnClosed` (if it saw it up) and `DeliveryFailed` for
    /// what never went out; counters and the log hear why.
    pub(super) fn remove(&mut self, key: usize, reason: CloseReason) {
        let Some(mut entry) = self.conns.try_remove(key) else {
            return;
        };
        self.deadlines.rearm(key, entry.conn.armed, None);
        entry.conn.deregister(self.parts.poll.registry());
        let id = entry.conn.id();
        self.ids.remove(&id);
        match entry.conn.hop().cloned() {
            Some(hop) => self.pool.remove(&hop, key),
            None => {
                let ip = entry.conn.remote().ip();
                match self.per_ip.get(&ip).copied() {
                    Some(n) if n > 1 => {
                        self.per_ip.insert(ip, n - 1);
                    }
                    _ => {
                        self.per_ip.remove(&ip);
                    }
                }
            }
        }
        let side = entry.conn.side();
        self.stats.closed(side, &reason);
        self.log_close(id, side, entry.conn.remote(), &reason);
        if entry.announced {
            self.learned.push(Input::ConnClosed {
                conn: id,
                reason: reason.link_end(),
            });
        }
        for token in entry.conn.take_pending_tokens() {
            let failure = reason.delivery_failure();
            self.learned.push(Input::DeliveryFailed { token, failure });
        }
        // The core hears of it with the next `run_effects` (every caller's turn ends in one).
    }

    pub(super) fn log_close(
        &self,
        id: ConnId,
        side: Side,
        remote: std::net::SocketAddr,
        reason: &CloseReason,
    ) {
        let (level, detail) = reason.log_level();
        self.log_shell(
            level,
            "connection_closed",
            format!(
                "connection {} ({}) from/to {remote} closed: {}",
                id.0,
                side.as_str(),
                reason.as_str()
            ),
            vec![
                ("conn", id.0.to_string()),
                ("side", side.as_str().to_owned()),
                ("remote", remote.to_string()),
                ("reason", reason.as_str().to_owned()),
                ("detail", detail),
            ],
        );
    }

    /// A refused or failed accept: counted by the caller, logged at most once per period and reason.
    pub(super) fn refusal(&mut self, reason: &'static str, text: String, side: Side) {
        let now = Instant::now();
        let due = self
            .last_refusal_log
            .get(reason)
            .is_none_or(|last| now.saturating_duration_since(*last) >= REFUSAL_LOG_PERIOD);
        if due {
            self.last_refusal_log.insert(reason, now);
            let fields = vec![("reason", reason.to_owned()), ("side", side.as_str().to_owned())];
            self.log_shell(Level::Warn, "connection_refused", text, fields);
        }
    }
}

/// Which call [`Worker::drive`] makes into a connection.
#[derive(Debug, Clone, Copy)]
pub(super) enum Drive {
    Ready,
    Timer,
}

/// Turns what one connection reports ([`ConnEvent`]) into the core's [`Input`]s, counting what the
/// shell counts on the way. Borrowed per call, from `conn_ready` and `fire_timers`.
pub(super) struct EventSink<'w, C: Core> {
    id: ConnId,
    now: Instant,
    core: &'w mut C,
    effects: &'w mut Vec<Effect>,
    announced: &'w mut bool,
    stats: &'w mut WorkerSnapshot,
    side: Side,
}

impl<C: Core> EventSink<'_, C> {
    pub(super) fn event(&mut self, event: ConnEvent<'_>) {
        let (conn, now) = (self.id, self.now);
        match event {
            ConnEvent::Up(peer) => {
                *self.announced = true;
                self.stats.handshake_ok(peer.side);
                self.core.handle(Input::ConnUp { conn, peer }, now, self.effects);
            }
            ConnEvent::Delivered(token) => {
                self.core
                    .handle(Input::Delivered { token, conn }, now, self.effects)
            }
            ConnEvent::Message(bytes) => self
                .core
                .handle(Input::Message { conn, bytes }, now, self.effects),
            ConnEvent::Unframeable { head, error } => {
                // Counted like any framing error (a stalled message as a message timeout); the core
                // may still answer before the close.
                self.stats.framing_error(self.side, &error);
                self.core
                    .handle(Input::Unframeable { conn, head, error }, now, self.effects)
            }
        }
    }
}
