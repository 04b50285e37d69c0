//! The sans-IO proxy core: a transaction-stateful SIP proxy (RFC 3261 §16/§17) for the edge.
//! Inputs and effects are in [`io`]; time is passed in. One `Proxy` per worker; what the workers
//! share is two small edge-wide policies behind their own locks, taken only on their traffic: the
//! discovered-partner limiter (`limits.rs`) and the push relay (`push.rs`).
//!
//! Lifecycle of a request (not ACK/CANCEL) that enters on connection C:
//! parse and check → a *server transaction* keyed by its Via branch (INVITE: 100 Trying at once) →
//! route decision (`route.rs`: external → the internal next hop after the inbound policy; internal →
//! the federation decision, possibly after an SRV lookup) → the edited request goes out as a *client
//! transaction* with our branch (Timer F for non-INVITE, Timer B then Timer C for INVITE) → responses
//! come back by that branch, lose our Via and go to C. A request that cannot be forwarded gets the
//! core's own final response with a diagnostic. Each server transaction sends exactly one final
//! response (an INVITE may add further 2xx from forks); a non-INVITE is then forgotten at once (Timer
//! J/K are zero on TLS), an INVITE lingers 32 s (Timer L). However a client transaction ends, it
//! ends in one place, `txn.rs::conclude`.
//!
//! Files: `txn.rs` (transaction tables, timers, the one outcome path, final responses),
//! `request.rs` (requests, ACK, CANCEL), `route.rs` (where a request goes), `forward.rs` (edit and
//! send, responses back), `respond.rs` (generated responses), `push.rs` (push requests: checks,
//! breaker, retries), `limits.rs` (discovered-partner limits), `stats.rs` (the counters).

mod decide;
mod dialogs;
mod forward;
#[doc(hidden)]
pub mod fuzzing;
mod hiding;
mod ids;
pub mod io;
mod limits;
mod outcome;
pub mod push;
mod request;
mod respond;
mod route;
mod scratch;
pub mod stats;
pub use dialogs::{SubscriptionCount, SubscriptionEnd, CSEQ_MARGIN};
mod timers;
mod txn;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use federation_policy::{DiscoveryLimits, Fqdn, Policy};
pub use hiding::Sealer;
pub use limits::SharedDiscoveryLimiter;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use io::{ConnId, Effect, Input, Level, LogRecord, PeerInfo, Side, Token};

/// Maps keyed by what the edge itself chose (its ids, tokens, its own random branches): foldhash,
/// seeded per process, instead of SipHash — the profile put ~4 % of the CPU in SipHash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What the core needs to know about this edge.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Written as `source` in diagnostics and as the warn-agent.
    pub edge_fqdn: String,
    /// `host:port` of the internal listener, as peers reach it: Via sent-by and Record-Route there.
    pub internal_host: String,
    /// `host:port` of the external listener.
    pub external_host: String,
    /// Where requests from partners go (the front-end pool).
    pub internal_next_hop: Fqdn,
    /// Non-INVITE client transaction timeout (RFC 3261 Timer F, 32 s).
    pub timer_f: Duration,
    /// INVITE: time allowed until a provisional response (Timer B, 32 s).
    pub timer_b: Duration,
    /// INVITE after a provisional response (Timer C, > 3 min: mobile endpoints take 60 s to answer).
    pub timer_c: Duration,
    /// How long a finished transaction lingers to absorb retransmissions and further 2xx.
    pub linger: Duration,
    /// `push.proxy_uri`: requests from the internal side to it are push requests (`push.rs`).
    pub push_uri: Option<String>,
    /// `push.timeout_ms`: each attempt of a push (shorter than Timer F).
    pub push_timeout: Duration,
    /// `limits.max_subscriptions`: SUBSCRIBE dialogs tracked for liveness, edge-wide (`dialogs.rs`).
    pub max_subscriptions: usize,
    /// One replica of a pool (`[pool]`): a Route naming this edge's internal or external host at
    /// *any* port is the pool's, so an in-dialog request record-routed by another replica (the
    /// same names, its own ports) is forwarded here from its route set (docs/architecture.md,
    /// "Edge pools").
    pub pool_routes: bool,
}

impl ProxySettings {
    pub fn new(edge_fqdn: &str, internal_host: &str, external_host: &str, internal_next_hop: Fqdn) -> Self {
        ProxySettings {
            edge_fqdn: edge_fqdn.to_owned(),
            internal_host: internal_host.to_owned(),
            external_host: external_host.to_owned(),
            internal_next_hop,
            timer_f: Duration::from_secs(32),
            timer_b: Duration::from_secs(32),
            timer_c: Duration::from_secs(181),
            linger: Duration::from_secs(32),
            push_uri: None,
            push_timeout: Duration::from_secs(10),
            max_subscriptions: 100_000,
            pool_routes: false,
        }
    }

    pub(crate) fn host(&self, side: Side) -> &str {
        match side {
            Side::Internal => &self.internal_host,
            Side::External => &self.external_host,
        }
    }
}

/// The proxy state of one worker.
#[derive(Debug)]
pub struct Proxy {
    settings: ProxySettings,
    policy: Arc<Policy>,
    worker: u16,
    next_id: u64,
    /// A CSPRNG seeded from the OS per worker: the secret part of every branch we write (a partner
    /// that sees our branches cannot predict the next one) and SRV weight draws.
    rng: StdRng,
    stats: stats::CoreStats,
    /// Off only for the benchmark that measures what counting costs.
    counting: bool,
    /// Shared so the per-message path takes a reference count, not a copy of the identities.
    peers: FastMap<ConnId, Arc<PeerInfo>>,
    /// The transaction tables (`txn.rs`).
    txns: txn::Transactions,
    /// Every armed timer (`timers.rs`).
    timers: timers::Timers,
    /// Edge-wide, shared by every worker's core: the discovered-partner limiter (`limits.rs`), the
    /// push relay policy and its breakers (`push.rs`), the count of tracked subscriptions.
    shared: EdgeShared,
    /// The SUBSCRIBE dialogs this worker record-routes and the links they depend on.
    dialogs: dialogs::Subscriptions,
    /// Tokens of the edge's own NOTIFYs → their branch.
    local_tokens: FastMap<Token, String>,
    shutting_down: bool,
    /// Storage kept between messages, so that the message path allocates nothing once warm
    /// (`scratch.rs`).
    scratch: scratch::Scratch,
}

/// What the cores of one edge's workers share, made once ([`EdgeShared::new`]) and given to every
/// core ([`Proxy::new`]): the discovered-partner limiter (`limits.rs`: a partner's limits hold
/// whichever worker its connection lands on), the push relay with its breakers (`push.rs`), and the
/// count of tracked subscriptions that `limits.max_subscriptions` bounds (`dialogs.rs`). A core
/// cannot be made without one, so no worker ends up with a private copy; clones share.
#[derive(Debug, Clone)]
pub struct EdgeShared {
    pub limiter: Arc<SharedDiscoveryLimiter>,
    pub relay: push::SharedRelay,
    pub subscriptions: SubscriptionCount,
    /// The key that seals the inside's route set into the edge's external Record-Route
    /// (`hiding.rs`): one for all workers, since a dialog's later messages land on any of them.
    /// Random per process unless set ([`EdgeShared::with_sealer`]: the binary derives it from the
    /// external certificate's key, so replicas of a pool and restarts agree).
    pub sealer: Arc<Sealer>,
}

impl EdgeShared {
    /// Fresh shared state for an edge running `policy` (its discovered-partner limits), the push
    /// relay on `relay` settings.
    pub fn new(policy: &Policy, relay: push_relay::RelaySettings) -> EdgeShared {
        let limits = policy
            .discovery()
            .copied()
            .unwrap_or_else(DiscoveryLimits::default);
        EdgeShared {
            limiter: SharedDiscoveryLimiter::new(limits),
            relay: Arc::new(parking_lot::Mutex::new(push_relay::Relay::new(relay))),
            subscriptions: SubscriptionCount::default(),
            sealer: Arc::new(Sealer::from_secret(&rand::random::<[u8; 32]>())),
        }
    }

    /// The same, sealing route sets with `sealer` (shared by every core given this `EdgeShared`).
    pub fn with_sealer(mut self, sealer: Sealer) -> EdgeShared {
        self.sealer = Arc::new(sealer);
        self
    }
}

impl Proxy {
    /// Worker `worker`'s core, sharing `shared` with the other workers of the edge.
    pub fn new(settings: ProxySettings, policy: Arc<Policy>, worker: u16, shared: &EdgeShared) -> Self {
        Proxy {
            settings,
            policy,
            worker,
            next_id: 1,
            rng: StdRng::from_os_rng(),
            stats: stats::CoreStats::default(),
            counting: true,
            peers: FastMap::default(),
            txns: txn::Transactions::default(),
            timers: timers::Timers::default(),
            shared: shared.clone(),
            dialogs: dialogs::Subscriptions::default(),
            local_tokens: FastMap::default(),
            shutting_down: false,
            scratch: scratch::Scratch::default(),
        }
    }

    /// Gives back a buffer whose bytes are written (the shell, once rustls took them), for the core
    /// to fill again (`scratch.rs` keeps at most 128, each of 256 B to 16 KiB).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.scratch.recycle(buf);
    }

    /// Replaces the OS-seeded generator (tests that want repeatable branches and SRV draws).
    pub fn seed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    /// What this worker's core counted so far (plain counters; the shell publishes a copy for the
    /// metrics scrape, which sums the workers).
    pub fn stats(&self) -> &stats::CoreStats {
        &self.stats
    }

    /// Turns counting off or on (the counting-cost benchmark compares both).
    pub fn set_counting(&mut self, on: bool) {
        self.counting = on;
    }

    /// Applies `f` to the counters unless counting is off.
    #[inline]
    fn count(&mut self, f: impl FnOnce(&mut stats::CoreStats)) {
        if self.counting {
            f(&mut self.stats);
        }
    }

    /// A reload's part for the core (sans-IO: the policy and [`crate::ProxyRuntime`]; the TLS
    /// configs and connection limits of the same snapshot are the shell's): the policy, the internal
    /// next hop and the transaction timers apply from the next request on; transactions in flight
    /// keep their decisions and their armed timers. The discovered-partner limiter is edge-wide and
    /// set once by the caller ([`SharedDiscoveryLimiter::set_limits`]), not here.
    pub fn apply(&mut self, policy: &Arc<Policy>, p: &crate::ProxyRuntime) {
        self.policy = Arc::clone(policy);
        self.settings.internal_next_hop = p.internal_next_hop.clone();
        self.settings.timer_f = p.timer_f;
        self.settings.timer_b = p.timer_b;
        self.settings.timer_c = p.timer_c;
        self.settings.push_uri.clone_from(&p.push_uri);
        self.settings.push_timeout = p.push_timeout;
        self.settings.max_subscriptions = p.max_subscriptions;
    }

    pub fn handle(&mut self, input: Input<'_>, now: Instant, out: &mut Vec<Effect>) {
        match input {
            Input::ConnUp { conn, peer } => self.on_conn_up(conn, peer, out),
            Input::Message { conn, bytes } => self.on_message(conn, bytes, now, out),
            Input::Unframeable { conn, head, error } => self.on_unframeable(conn, head, error, out),
            Input::ConnClosed { conn, reason } => self.on_conn_closed(conn, reason, now, out),
            Input::Delivered { token, conn } => self.on_delivered(token, conn),
            Input::DeliveryFailed { token, failure } => self.on_delivery_failed(token, failure, now, out),
            Input::Srv { token, result } => self.on_srv(token, result, now, out),
        }
    }

    /// The next instant at which [`Proxy::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Effect>) {
        while let Some((id, kind)) = self.timers.pop_due(now) {
            self.on_timer(id, kind, now, out);
        }
    }

    /// Server transactions still waiting for their final response (graceful drain waits for 0).
    pub fn open_transactions(&self) -> usize {
        self.txns.open()
    }

    /// From now on new requests are answered 503 with Retry-After; transactions in flight finish.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    fn on_conn_up(&mut self, conn: ConnId, peer: PeerInfo, out: &mut Vec<Effect>) {
        // Internal side, accepted: the client certificate must name a known server
        // (docs/architecture.md, Sides).
        if peer.side == Side::Internal && peer.dialled.is_none() {
            let known = peer.identities.iter().find_map(|id| self.policy.known_server(id));
            if known.is_none() {
                self.log(
                    out,
                    Level::Warn,
                    "internal_peer_not_known_server",
                    format!(
                        "internal connection from {} refused: certificate {:?} names no known server",
                        peer.remote, peer.identities
                    ),
                    vec![("peer", peer.remote.to_string())],
                );
                out.push(Effect::Close { conn });
                return;
            }
        }
        self.dialog_link_up(&peer);
        self.peers.insert(conn, Arc::new(peer));
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A uniform draw in `0..=bound` (SRV weight selection).
    fn random(&mut self, bound: u32) -> u32 {
        self.rng.random_range(0..=bound)
    }

    /// 64 secret bits for a branch.
    fn secret_bits(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn log(
        &self,
        out: &mut Vec<Effect>,
        level: Level,
        event: &'static str,
        text: String,
        fields: Vec<(&'static str, String)>,
    ) {
        out.push(Effect::Log(LogRecord {
            level,
            event,
            text,
            fields,
        }));
    }
}

#[cfg(test)]
mod dialog_tests;
#[cfg(test)]
mod push_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod topology_tests;
