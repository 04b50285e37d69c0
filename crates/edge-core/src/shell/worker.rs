//! [`Worker`]: one thread's event loop — its own `mio::Poll`, its own listener per side, the slab of
//! connections keyed by `mio::Token`, the outbound [`Pool`], the connection deadlines and its own core.
//! Each turn: sleep until the earliest of the core's deadline, a connection deadline and the shutdown
//! deadline; accept until `WouldBlock`; hand connection I/O to `conn.rs`; turn what happened into
//! `Input`s for the core and carry out the `Effect`s it returns (sends, closes, lookups, log lines).
//! Control from other threads (`mod.rs`) arrives on a channel, announced by a `mio::Waker`. Effects
//! are carried out in `worker/effects.rs`, log lines written by `log.rs`.
//!
//! Per-IP limits are per worker: `max_connections_per_ip` is split evenly (rounded up) across workers,
//! since the kernel spreads one address's connections across them and only the global count is shared
//! (`shared.rs`).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::TcpListener;
use mio::{Events, Poll, Token as MioToken};
use slab::Slab;

mod conns;
mod effects;

use super::conn::{CloseReason, Conn, ConnEvent, ConnLimits};
use super::listener;
use super::log::write_log;
use super::pool::Pool;
use super::resolver::{self, Resolver};
use super::shared::{side_slot, ConnCount, ConnSlot, Published, WorkerSnapshot, PUBLISH_PERIOD};
use super::timers::{earliest, sleep_until, Deadlines};
use super::tls::TlsConfigs;
use super::Core;
use crate::proxy::io::{ConnId, Effect, Input, Level, LogRecord, NextHop, Side, Token};

use crate::Runtime;

/// Wakes the loop for a [`Control`] message.
pub(crate) const WAKER: MioToken = MioToken(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 4;
/// At most one warning per reason in this period for refused connections (they are counted anyway).
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// What other threads ask of a worker.
#[derive(Debug)]
pub(crate) enum Control {
    /// Stop accepting, let the core refuse new requests, exit when no transaction is open and what
    /// was queued is written, or at `deadline`, closing every connection.
    Shutdown { deadline: Instant },
    /// A reload's snapshot (`EdgeHandle::reload`): applied at once, then the worker's index is sent
    /// on `done`.
    Reload {
        runtime: Arc<Runtime>,
        /// This worker's share of `max_connections_per_ip`.
        per_ip_limit: usize,
        done: Sender<usize>,
    },
}

/// Everything a worker is built from (moved into its thread).
pub(crate) struct WorkerParts {
    pub index: usize,
    pub poll: Poll,
    /// `(listener, side)`, already registered with `poll` under `listener_token(i)`.
    pub listeners: Vec<(TcpListener, Side)>,
    pub tls: Arc<TlsConfigs>,
    pub limits: ConnLimits,
    pub per_ip_limit: usize,
    pub per_hop_limit: usize,
    pub conn_count: Arc<ConnCount>,
    pub published: Arc<Published>,
    pub control: Receiver<Control>,
    pub log_debug: bool,
    /// `ShellSettings::idle_hook`.
    pub idle_hook: Option<fn()>,
}

pub(crate) fn listener_token(i: usize) -> MioToken {
    MioToken(LISTENER_BASE - i)
}

fn listener_index(token: MioToken) -> Option<usize> {
    LISTENER_BASE.checked_sub(token.0).filter(|&i| i < MAX_LISTENERS)
}

/// Listeners per worker (one per side).
const MAX_LISTENERS: usize = 8;

/// A message for a hop whose address is being looked up, with its delivery token.
type WaitingSend = (Vec<u8>, Option<Token>);

struct Entry {
    conn: Conn,
    /// The core has seen `ConnUp` (so it must see `ConnClosed`).
    announced: bool,
    _slot: ConnSlot,
}

pub(crate) struct Worker<C> {
    parts: WorkerParts,
    core: C,
    resolver: Resolver,
    /// Sends waiting for a hop's address lookup, by hop (one lookup per hop at a time).
    resolving: HashMap<NextHop, Vec<WaitingSend>>,
    /// Lookup tokens in flight: host lookups for hops, SRV lookups for the core's tokens.
    host_lookups: HashMap<u64, NextHop>,
    srv_lookups: HashMap<u64, Token>,
    next_lookup: u64,
    conns: Slab<Entry>,
    ids: HashMap<ConnId, usize>,
    next_id: u64,
    pool: Pool,
    per_ip: HashMap<IpAddr, usize>,
    deadlines: Deadlines,
    /// Connections with input left after their read budget, served again next turn.
    backlog: Vec<usize>,
    effects: Vec<Effect>,
    /// What the shell learned while carrying out effects or closing a connection, for the core once
    /// the running batch is done (`run_effects`): the shell never calls into the core while it
    /// carries out the core's effects.
    learned: Vec<Input<'static>>,
    shutdown: Option<Instant>,
    /// The last input read from any connection: a draining worker closes its connections only once
    /// they have been quiet for [`DRAIN_QUIET`] (so a request already on its way is answered 503,
    /// which sends an RFC 3263 client to the next target, instead of meeting a closed connection).
    last_input: Option<Instant>,
    last_refusal_log: HashMap<&'static str, Instant>,
    /// Links with messages queued this turn, flushed once at its end (`flush_dirty`).
    dirty: Vec<usize>,
    /// What this worker publishes for the scrape (the core's part is copied in at publication).
    stats: WorkerSnapshot,
    next_publish: Instant,
    /// The last turn with I/O, while the idle hook is still due (`idle_check`).
    last_active: Option<Instant>,
}

/// How long a draining worker's connections must have been quiet before it closes them.
const DRAIN_QUIET: Duration = Duration::from_millis(250);

impl<C: Core> Worker<C> {
    pub fn new(parts: WorkerParts, core: C, resolver: Resolver) -> Worker<C> {
        Worker {
            parts,
            core,
            resolver,
            resolving: HashMap::new(),
            host_lookups: HashMap::new(),
            srv_lookups: HashMap::new(),
            next_lookup: 0,
            conns: Slab::new(),
            ids: HashMap::new(),
            next_id: 0,
            pool: Pool::default(),
            per_ip: HashMap::new(),
            deadlines: Deadlines::default(),
            backlog: Vec::new(),
            effects: Vec::new(),
            learned: Vec::new(),
            shutdown: None,
            last_input: None,
            last_refusal_log: HashMap::new(),
            dirty: Vec::new(),
            stats: WorkerSnapshot::default(),
            next_publish: Instant::now(),
            last_active: None,
        }
    }

    /// The end of a loop turn: every link that got messages during it writes them (coalesced), and
    /// what a failed write sets off (the core hearing of the close) runs too. Bounded: each round
    /// writes every link dirty at its start.
    fn flush_dirty(&mut self, now: Instant) {
        for _ in 0..8 {
            if self.dirty.is_empty() {
                return;
            }
            for key in std::mem::take(&mut self.dirty) {
                if let Some(entry) = self.conns.get_mut(key) {
                    let result = entry.conn.flush_pending();
                    self.settle(key, result);
                }
            }
            self.run_effects(now);
        }
    }

    /// Once per turn: the heartbeat; every `PUBLISH_PERIOD`: a copy of the counters for the scrape.
    fn publish(&mut self, now: Instant) {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.parts
            .published
            .heartbeat_unix_ms
            .store(unix_ms, std::sync::atomic::Ordering::Relaxed);
        if now < self.next_publish {
            return;
        }
        self.next_publish = now + PUBLISH_PERIOD;
        let mut open = [0u64; 2];
        for (_, e) in self.conns.iter() {
            if let Some(n) = open.get_mut(side_slot(e.conn.side())) {
                *n += 1;
            }
        }
        self.stats.open_connections = open;
        let mut slot = self.parts.published.snapshot.lock();
        slot.clone_from(&self.stats);
        slot.core = self.core.stats().cloned();
        slot.dns.clone_from(self.resolver.dns_stats());
    }

    /// The loop; returns when shutdown completes, or with the error that stopped polling.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        // A heartbeat before the first sleep: the worker is alive from its first instant.
        self.publish(Instant::now());
        loop {
            let now = Instant::now();
            let quiet_at = self.last_input.map(|t| t + DRAIN_QUIET);
            if let Some(deadline) = self.shutdown {
                let drained = self.core.open_transactions() == 0
                    && self.conns.iter().all(|(_, e)| !e.conn.has_output())
                    && quiet_at.is_none_or(|q| now >= q);
                if drained || now >= deadline {
                    self.close_all(now);
                    return Ok(());
                }
            }
            let wake = earliest(
                earliest(
                    earliest(self.core.poll_timeout(), self.deadlines.next()),
                    self.resolver.poll_timeout(),
                ),
                self.shutdown,
            );
            // Draining: also wake when the connections will have been quiet long enough.
            let wake = earliest(wake, self.shutdown.and(quiet_at.filter(|q| *q > now)));
            // Answers a lookup call produced on the spot (from a failure, say) are collected here.
            if self.resolver.has_answers() {
                self.dns_answers(now);
            }
            // Nothing queued may wait through a sleep.
            self.flush_dirty(now);
            // With a backlog or uncollected answers the poll only gathers what is ready; no sleep.
            let busy = !self.backlog.is_empty() || self.resolver.has_answers() || !self.dirty.is_empty();
            let wake = if busy { Some(now) } else { wake };
            // Turn at least every publication period: the heartbeat and the counters stay fresh.
            let wake = earliest(wake, Some(now + PUBLISH_PERIOD));
            if let Err(e) = self.parts.poll.poll(&mut events, sleep_until(now, wake)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.log_shell(
                    Level::Error,
                    "worker_failed",
                    format!("polling failed: {e}"),
                    vec![],
                );
                return Err(e);
            }
            let now = Instant::now();
            let turn_started = now;
            self.idle_check(now, !events.is_empty());
            for event in events.iter() {
                let token = event.token();
                if token == WAKER {
                    self.control(now);
                } else if let Some(i) = listener_index(token) {
                    self.accept(i, now);
                } else if resolver::is_dns_token(token) {
                    self.resolver.ready(token, now, self.parts.poll.registry());
                    self.dns_answers(now);
                } else {
                    if event.is_readable() {
                        self.last_input = Some(now);
                    }
                    self.conn_ready(token.0, now);
                }
                self.run_effects(now);
            }
            for key in std::mem::take(&mut self.backlog) {
                self.conn_ready(key, now);
                self.run_effects(now);
            }
            self.fire_timers(now);
            if self.resolver.poll_timeout().is_some_and(|t| t <= now) {
                self.resolver.handle_timeout(now, self.parts.poll.registry());
                self.dns_answers(now);
            }
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now, &mut self.effects);
            }
            self.run_effects(now);
            self.flush_dirty(now);
            self.stats.loop_turns.observe(turn_started.elapsed());
            self.publish(now);
        }
    }

    /// Runs the idle hook once after [`super::settings::IDLE_AFTER`] without I/O, following work.
    fn idle_check(&mut self, now: Instant, active: bool) {
        if active {
            self.last_active = Some(now);
            return;
        }
        let Some(since) = self.last_active else { return };
        if now.saturating_duration_since(since) >= super::settings::IDLE_AFTER {
            self.last_active = None;
            if let Some(hook) = self.parts.idle_hook {
                hook();
            }
        }
    }

    fn control(&mut self, now: Instant) {
        while let Ok(message) = self.parts.control.try_recv() {
            match message {
                Control::Shutdown { deadline } => self.begin_shutdown(now, deadline),
                Control::Reload {
                    runtime,
                    per_ip_limit,
                    done,
                } => {
                    self.apply_runtime(&runtime, per_ip_limit);
                    let _ = done.send(self.parts.index);
                }
            }
        }
    }

    /// New handshakes (accepted and dialled) and new connections' limits from `runtime`; open
    /// connections keep the configs and limits they were made with.
    fn apply_runtime(&mut self, runtime: &Runtime, per_ip_limit: usize) {
        self.parts.tls = Arc::clone(&runtime.tls);
        self.parts.limits = ConnLimits::from(&runtime.limits);
        self.parts.per_ip_limit = per_ip_limit;
        self.parts.per_hop_limit = runtime.limits.outgoing_tls_per_hop;
        self.parts.log_debug = runtime.limits.log_debug;
        self.core.apply(&runtime.policy, &runtime.proxy);
    }

    fn begin_shutdown(&mut self, now: Instant, deadline: Instant) {
        if let Some(current) = self.shutdown {
            self.shutdown = Some(current.min(deadline));
            return;
        }
        for (mut l, _) in self.parts.listeners.drain(..) {
            let _ = self.parts.poll.registry().deregister(&mut l);
        }
        self.core.begin_shutdown();
        self.shutdown = Some(deadline);
        let open = self.core.open_transactions();
        let grace = deadline.saturating_duration_since(now);
        self.log_shell(
            Level::Info,
            "shutdown_started",
            format!(
                "draining {open} open transactions for at most {} ms",
                grace.as_millis()
            ),
            vec![("open_transactions", open.to_string())],
        );
    }

    fn close_all(&mut self, now: Instant) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(mut entry) = self.conns.try_remove(key) {
                // Best effort: whatever fits in the socket now, then close_notify.
                let _ = entry.conn.close(now, CloseReason::Shutdown);
                entry.conn.deregister(self.parts.poll.registry());
            }
        }
        self.log_shell(Level::Info, "worker_stopped", "worker stopped".to_owned(), vec![]);
    }

    fn log_shell(
        &self,
        level: Level,
        event: &'static str,
        text: String,
        fields: Vec<(&'static str, String)>,
    ) {
        if level > Level::Debug || self.parts.log_debug {
            write_log(
                self.parts.index,
                &LogRecord {
                    level,
                    event,
                    text,
                    fields,
                },
            );
        }
    }
}
