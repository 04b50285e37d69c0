//! `[pool]`: this edge as one replica of a pool whose discovered-partner limits hold for the pool,
//! not per replica. One thread (`pool`) syncs with Redis every [`SYNC`]; the message path never
//! waits on it — each worker admits from the edge's own token buckets
//! (`edge_core::proxy::SharedDiscoveryLimiter`) at the *share* of each partner's limit this thread
//! last computed (`federation_policy::pool`: the replica's part of the pool's measured demand).
//!
//! One sync, two round trips of pipelined commands:
//! 1. `ZADD sipedge:pool:replicas <now ms> <replica>` (this replica is alive), drop the members not
//!    seen for [`REPLICA_TTL`], `ZRANGE` the live ones; `SET sipedge:pool:demand:<partner>:<replica>
//!    <rate> PX <DEMAND_TTL>` for each partner with a demand here;
//! 2. `MGET` of each such partner's demand on every live replica (the shares follow) and `SCARD`
//!    of its distinct-contact set, to which each replica `SADD`s the hashes of the contacts new
//!    to it (`federation_policy::contact_hash`: no user's address in Redis), the set expiring
//!    with the contact window. Open push breakers ride along (see [`Sync::apply_breakers`]).
//!
//! Redis unreachable (or a command failing): the limiter falls back to the configured mode —
//! `divide` (each replica admits the limit ÷ the replicas seen at the last sync) or `refuse`
//! (discovered partners get 503 + Retry-After) — logged once per transition, counted, shown on the
//! status page; `/readyz` does not depend on it. The thread reconnects every [`SYNC`] (each try
//! bounded by [`TIMEOUT`]). The password is never logged: errors are quoted by kind.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge_core::proxy::push::SharedRelay;
use edge_core::proxy::SharedDiscoveryLimiter;
use federation_policy::pool::{even_share, share, DemandMeter};
use federation_policy::{DomainName, PoolMode};
use parking_lot::Mutex;
use push_relay::BreakerNews;

use crate::config::{PoolSettings, RedisDown};

/// How often a replica syncs with the pool.
pub const SYNC: Duration = Duration::from_millis(200);
/// Connect, read and write bound of each Redis round trip.
const TIMEOUT: Duration = Duration::from_millis(500);
/// A replica not heard from for this long has left the pool.
const REPLICA_TTL: Duration = Duration::from_secs(3);
/// A replica's published demand for a partner expires after this (it left, or the demand ended).
const DEMAND_TTL: Duration = Duration::from_secs(2);
const REPLICAS_KEY: &str = "sipedge:pool:replicas";
/// The providers whose breaker some replica opened (each has a `sipedge:pool:breaker:<provider>`).
const BREAKERS_KEY: &str = "sipedge:pool:breakers";

/// What the pool thread reports (metrics, status page).
#[derive(Debug)]
pub struct PoolStatus {
    pub replica: String,
    /// The Redis URL without its credentials.
    pub redis: String,
    pub redis_down: RedisDown,
    pub up: AtomicBool,
    /// Live replicas at the last successful sync (this one included).
    pub replicas: AtomicU64,
    pub syncs_ok: AtomicU64,
    pub syncs_failed: AtomicU64,
    pub went_up: AtomicU64,
    pub went_down: AtomicU64,
    /// Redis commands sent (each command of a pipeline counts).
    pub commands: AtomicU64,
    /// Partners whose limit is divided by demand now.
    pub partners: AtomicU64,
    /// Why the last sync failed, and since when Redis is away (`None` while up).
    pub down: Mutex<Option<(String, SystemTime)>>,
}

/// The running pool thread.
pub struct Pool {
    pub status: Arc<PoolStatus>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pool {
    /// Starts the sync thread for `settings`, dividing `limiter`'s limits with the pool and
    /// sharing `relay`'s push breakers.
    pub fn start(
        settings: &PoolSettings,
        limiter: Arc<SharedDiscoveryLimiter>,
        relay: SharedRelay,
    ) -> std::io::Result<Pool> {
        let status = Arc::new(PoolStatus {
            replica: settings.replica.clone(),
            redis: settings.redis.clone(),
            redis_down: settings.redis_down,
            up: AtomicBool::new(false),
            replicas: AtomicU64::new(0),
            syncs_ok: AtomicU64::new(0),
            syncs_failed: AtomicU64::new(0),
            went_up: AtomicU64::new(0),
            went_down: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            partners: AtomicU64::new(0),
            down: Mutex::new(Some(("not synced yet".to_owned(), SystemTime::now()))),
        });
        // Until the first sync: the fallback mode, as if Redis were away (one replica known).
        limiter.set_pool(fallback(settings.redis_down, 1));
        if settings.redis.starts_with("rediss://") {
            // redis-rs builds its rustls client from the process's default provider: the edge's.
            let _ = rustls::crypto::CryptoProvider::install_default(
                edge_core::shell::crypto_provider().as_ref().clone(),
            );
        }
        relay.lock().set_pooled(true);
        let stop = Arc::new(AtomicBool::new(false));
        let mut sync = Sync {
            settings: settings.clone(),
            limiter,
            relay,
            stale_breakers: Vec::new(),
            status: Arc::clone(&status),
            meter: DemandMeter::default(),
            conn: None,
            last: Instant::now(),
            replicas: 1,
        };
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("pool".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    sync.once();
                    std::thread::sleep(SYNC.saturating_sub(started.elapsed()));
                }
            })?;
        Ok(Pool {
            status,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (at most one sync's time).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The limiter's mode while Redis is away.
fn fallback(mode: RedisDown, replicas: u64) -> PoolMode {
    match mode {
        RedisDown::Divide => PoolMode::Shared {
            default_share: even_share(usize::try_from(replicas).unwrap_or(usize::MAX)),
        },
        RedisDown::Refuse => PoolMode::Refuse,
    }
}

struct Sync {
    settings: PoolSettings,
    limiter: Arc<SharedDiscoveryLimiter>,
    relay: SharedRelay,
    /// Providers in [`BREAKERS_KEY`] whose breaker key had expired at the last sync.
    stale_breakers: Vec<String>,
    status: Arc<PoolStatus>,
    meter: DemandMeter,
    conn: Option<redis::Connection>,
    last: Instant,
    /// Live replicas at the last successful sync.
    replicas: u64,
}

impl Sync {
    fn once(&mut self) {
        let now = Instant::now();
        let interval = u64::try_from(now.duration_since(self.last).as_millis()).unwrap_or(u64::MAX);
        self.last = now;
        self.meter.observe(&self.limiter.take_demand(), interval);
        match self.exchange() {
            Ok((replicas, shares)) => {
                self.replicas = replicas;
                self.limiter.set_pool(PoolMode::Shared {
                    default_share: even_share(usize::try_from(replicas).unwrap_or(usize::MAX)),
                });
                self.limiter.set_shares(&shares);
                let s = &self.status;
                s.replicas.store(replicas, Ordering::Relaxed);
                s.partners.store(shares.len() as u64, Ordering::Relaxed);
                s.syncs_ok.fetch_add(1, Ordering::Relaxed);
                if !s.up.swap(true, Ordering::Relaxed) {
                    s.went_up.fetch_add(1, Ordering::Relaxed);
                    let away = s.down.lock().take();
                    let since = away
                        .and_then(|(_, t)| t.elapsed().ok())
                        .map_or(String::new(), |d| format!(" after {:.1} s", d.as_secs_f64()));
                    crate::log::emit(serde_json::json!({
                        "level": "info", "event": "pool_redis_up", "replica": s.replica,
                        "redis": s.redis, "replicas": replicas,
                        "text": format!(
                            "pool: Redis at {} reachable{since}; {replicas} replica(s) share the discovered-partner limits",
                            s.redis
                        ),
                    }));
                }
            }
            Err(e) => {
                self.conn = None;
                let why = self.quoted(&e);
                self.limiter.reset_shares();
                self.limiter
                    .set_pool(fallback(self.settings.redis_down, self.replicas));
                let s = &self.status;
                s.syncs_failed.fetch_add(1, Ordering::Relaxed);
                let was_up = s.up.swap(false, Ordering::Relaxed);
                let mut down = s.down.lock();
                let first = was_up || down.as_ref().is_some_and(|(w, _)| w == "not synced yet");
                match down.as_mut() {
                    Some((w, _)) if !was_up => *w = why.clone(),
                    _ => *down = Some((why.clone(), SystemTime::now())),
                }
                drop(down);
                if first {
                    s.went_down.fetch_add(u64::from(was_up), Ordering::Relaxed);
                    let what = match self.settings.redis_down {
                        RedisDown::Divide => format!(
                            "each replica admits the discovered-partner limit ÷ {} (redis_down = \"divide\")",
                            self.replicas
                        ),
                        RedisDown::Refuse => {
                            "discovered partners are refused with 503 (redis_down = \"refuse\")".to_owned()
                        }
                    };
                    crate::log::emit(serde_json::json!({
                        "level": "warn", "event": "pool_redis_down", "replica": s.replica,
                        "redis": s.redis, "error": why, "mode": self.settings.redis_down.as_str(),
                        "text": format!("pool: Redis at {} unreachable ({why}); {what}", s.redis),
                    }));
                }
            }
        }
    }

    /// An error of the Redis client as logged: its kind and text, the password (should a server
    /// ever echo it) masked.
    fn quoted(&self, e: &redis::RedisError) -> String {
        let text = e.to_string();
        match &self.settings.password {
            Some(p) if !p.is_empty() => text.replace(p.as_str(), "<password>"),
            _ => text,
        }
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(self.settings.redis.as_str())?;
        let mut redis = info.redis_settings().clone();
        if let Some(u) = &self.settings.username {
            redis = redis.set_username(u);
        }
        if let Some(p) = &self.settings.password {
            redis = redis.set_password(p);
        }
        info = info.set_redis_settings(redis);
        let conn = redis::Client::open(info)?.get_connection_with_timeout(TIMEOUT)?;
        conn.set_read_timeout(Some(TIMEOUT))?;
        conn.set_write_timeout(Some(TIMEOUT))?;
        Ok(conn)
    }

    /// One exchange with Redis: the live replicas and this replica's shares.
    fn exchange(&mut self) -> redis::RedisResult<(u64, Vec<(DomainName, u32)>)> {
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(redis::RedisError::from((redis::ErrorKind::Io, "no connection")));
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let ttl = u64::try_from(REPLICA_TTL.as_millis()).unwrap_or(u64::MAX);
        let replica = &self.settings.replica;
        let partners: Vec<(DomainName, u64)> = self.meter.rates().map(|(d, r)| (d.clone(), r)).collect();
        let (news, probe_budget) = {
            let mut relay = self.relay.lock();
            (relay.take_news(), relay.settings().budget())
        };
        let mut pipe = redis::pipe();
        let mut sent = 0u64;
        for n in &news {
            match n {
                BreakerNews::Opened { provider, until } => {
                    let left = until.saturating_duration_since(Instant::now());
                    let until_ms = now_ms.saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX));
                    let ttl = left + probe_budget + 10 * SYNC;
                    pipe.cmd("SET")
                        .arg(breaker_key(provider))
                        .arg(format!("{until_ms} {replica}"))
                        .arg("PX")
                        .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
                        .ignore();
                    pipe.cmd("SADD").arg(BREAKERS_KEY).arg(provider).ignore();
                }
                BreakerNews::Closed { provider } => {
                    pipe.cmd("DEL").arg(breaker_key(provider)).ignore();
                    pipe.cmd("SREM").arg(BREAKERS_KEY).arg(provider).ignore();
                }
            }
            sent += 2;
        }
        for (d, hashes, left) in self.limiter.take_new_contacts(Instant::now()) {
            let key = contacts_key(&d);
            pipe.cmd("SADD").arg(&key).arg(hashes).ignore();
            // The window's end as this replica counts it, unless another replica set one first.
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
                .arg("NX")
                .ignore();
            sent += 2;
        }
        for p in std::mem::take(&mut self.stale_breakers) {
            pipe.cmd("SREM").arg(BREAKERS_KEY).arg(p).ignore();
            sent += 1;
        }
        pipe.cmd("ZADD")
            .arg(REPLICAS_KEY)
            .arg(now_ms)
            .arg(replica)
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(REPLICAS_KEY)
            .arg("-inf")
            .arg(now_ms.saturating_sub(ttl))
            .ignore();
        pipe.cmd("PEXPIRE").arg(REPLICAS_KEY).arg(ttl * 10).ignore();
        pipe.cmd("ZRANGE").arg(REPLICAS_KEY).arg(0).arg(-1);
        pipe.cmd("SMEMBERS").arg(BREAKERS_KEY);
        let demand_ttl = u64::try_from(DEMAND_TTL.as_millis()).unwrap_or(u64::MAX);
        for (d, rate) in &partners {
            pipe.cmd("SET")
                .arg(demand_key(d, replica))
                .arg(*rate)
                .arg("PX")
                .arg(demand_ttl)
                .ignore();
        }
        let (mut live, open_breakers): (Vec<String>, Vec<String>) = pipe.query(conn)?;
        sent += 5 + partners.len() as u64;
        if !live.iter().any(|r| r == replica) {
            live.push(replica.clone());
        }
        let n = live.len();
        let mut shares = Vec::with_capacity(partners.len());
        if !partners.is_empty() || !open_breakers.is_empty() {
            let mut pipe = redis::pipe();
            for (d, _) in &partners {
                let keys: Vec<String> = live.iter().map(|r| demand_key(d, r)).collect();
                pipe.cmd("MGET").arg(keys);
                pipe.cmd("SCARD").arg(contacts_key(d));
            }
            if !open_breakers.is_empty() {
                // MGET answers a list even for one key (and refuses none).
                let keys: Vec<String> = open_breakers.iter().map(|p| breaker_key(p)).collect();
                pipe.cmd("MGET").arg(keys);
                sent += 1;
            }
            let mut answers: Vec<redis::Value> = pipe.query(conn)?;
            sent += 2 * partners.len() as u64;
            let breakers: Vec<Option<String>> = match answers.pop() {
                Some(v) if !open_breakers.is_empty() => redis::from_redis_value(v)?,
                Some(v) => {
                    answers.push(v);
                    Vec::new()
                }
                None => Vec::new(),
            };
            let mut contacts = Vec::with_capacity(partners.len());
            let mut answers = answers.into_iter();
            for (d, own) in partners {
                let (Some(all), Some(count)) = (answers.next(), answers.next()) else {
                    break;
                };
                let all: Vec<Option<u64>> = redis::from_redis_value(all)?;
                let pool: u64 = all.into_iter().flatten().fold(0, u64::saturating_add);
                let count: usize = redis::from_redis_value(count)?;
                shares.push((d.clone(), share(own, pool, n)));
                contacts.push((d, count));
            }
            self.limiter.set_pool_contacts(&contacts);
            self.apply_breakers(&open_breakers, &breakers, now_ms, probe_budget);
        } else {
            self.relay.lock().release_except(&[]);
        }
        self.status.commands.fetch_add(sent, Ordering::Relaxed);
        Ok((n as u64, shares))
    }

    /// The pool's open breakers (`"<until unix ms> <replica>"` each, `None`: expired): another
    /// replica's is held here until its end plus the time its probe may take (and two syncs to
    /// hear of it); one no longer open anywhere is released.
    fn apply_breakers(&mut self, names: &[String], values: &[Option<String>], now_ms: u64, probe: Duration) {
        let mut open = Vec::new();
        let mut relay = self.relay.lock();
        for (name, value) in names.iter().zip(values) {
            let Some((until_ms, owner)) = value.as_deref().and_then(|v| v.split_once(' ')) else {
                self.stale_breakers.push(name.clone());
                continue;
            };
            open.push(name.as_str());
            let Ok(until_ms) = until_ms.parse::<u64>() else {
                continue;
            };
            if owner == self.settings.replica {
                continue;
            }
            let left = Duration::from_millis(until_ms.saturating_sub(now_ms));
            relay.hold(name, Instant::now() + left + probe + 2 * SYNC);
        }
        relay.release_except(&open);
    }
}

/// Where the replica that opened `provider`'s breaker says until when, and that it probes.
fn breaker_key(provider: &str) -> String {
    format!("sipedge:pool:breaker:{provider}")
}

/// The pool's distinct internal contacts of partner `d` in its window (hashes, not addresses).
fn contacts_key(d: &DomainName) -> String {
    format!("sipedge:pool:contacts:{}", d.as_str())
}

/// Where `replica` publishes its demand for partner `d`.
fn demand_key(d: &DomainName, replica: &str) -> String {
    format!("sipedge:pool:demand:{}:{replica}", d.as_str())
}
