//! Issue 20, black-box: edge pools. Two `sipedge run` replicas on loopback share one real Redis
//! (Debian's `redis-server`, started by the test on a free port), a real DNS server (dnsmasq) gives
//! the discovered partner `found.test` its SRV record, and the partner — presenting the certificate
//! of that SRV target — sends MESSAGEs to both replicas' external listeners alternately, as a
//! partner following two SRV records of equal priority spreads its load. Each replica's front end
//! is the same UAS.
//!
//! What is measured: how many of the partner's messages the pool admits per second against the
//! configured discovered-partner rate, with `[pool]` (the rate holds for the pool) and without it
//! (each replica admits its own rate: the standalone behaviour); Redis killed and restarted mid-run
//! in both `redis_down` modes. Every wait is bounded.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "support/dnsmasq.rs"]
mod dnsmasq;
#[path = "support/redis.rs"]
mod redis;
mod support;

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dnsmasq::{Dnsmasq, Record};
use redis::RedisServer;
use support::front_end::{fe_client, final_for};
use support::sip::{self, p, reply};
use support::{http, Edge, EdgeOpts, TestPki, TlsPeer, TlsUas};

/// The discovered-partner rate of every test here (messages per second).
const LIMIT: u64 = 20;
/// The partner offers three times the limit, spread evenly over the two replicas.
const OFFERED: u64 = 3 * LIMIT;
/// The buckets start full (a second's worth): admissions are counted after this.
const WARM_UP: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(5);

struct World {
    pki: TestPki,
    _fe: TlsUas,
    _dns: Dnsmasq,
    edges: Vec<Edge>,
}

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two replicas (`edge-a`, `edge-b`), each with `pool` appended to its configuration (with
/// `{replica}` replaced by its name; empty: standalone).
fn world(pool: &str) -> World {
    world_with(pool, |_| {})
}

fn world_with(pool: &str, tweak: impl Fn(&mut EdgeOpts)) -> World {
    let pki = TestPki::new();
    let fe = TlsUas::start(
        &pki.fe,
        &pki.internal_ca.cert,
        |m: &sip_codec::Message<'_>| match m.method() {
            Some("ACK") => vec![],
            _ => vec![reply(m, 200, "OK", Some("fe-tag"))],
        },
    );
    let dns = Dnsmasq::start(&[
        Record::srv("found.test", "sip.found.test", closed_port(), 0, 0),
        Record::a("sip.found.test"),
    ]);
    let edges = ["edge-a", "edge-b"]
        .iter()
        .map(|replica| {
            let mut o = EdgeOpts::new(fe.port(), closed_port());
            o.dns_servers = vec![dns.server()];
            o.enable_partner_discovery = true;
            o.discovery_messages_per_second = Some(LIMIT);
            o.extra_toml = pool.replace("{replica}", replica);
            tweak(&mut o);
            Edge::start(&o.render(&pki), &pki)
        })
        .collect();
    World {
        pki,
        _fe: fe,
        _dns: dns,
        edges,
    }
}

fn pool_toml(redis: &RedisServer, extra: &str) -> String {
    format!(
        "[pool]\nredis = \"{}\"\nreplica = \"{{replica}}\"\n{extra}\n",
        redis.url()
    )
}

/// One message the partner sent: when (from the start of the run), its status, how long its
/// final response took.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Duration,
    status: u16,
    latency: Duration,
}

/// The partner `found.test` (certificate of its SRV target `sip.found.test`) on the external
/// listener of `edge`.
fn partner(w: &World, edge: &Edge) -> TlsPeer {
    let id = w.pki.partner_leaf("sip.found.test");
    TlsPeer::connect(edge.external_addr, &id, &w.pki.internal_ca.cert, "edge.corp.test")
        .unwrap_or_else(|e| panic!("the partner cannot connect: {e}\n{}", edge.log_dump()))
}

/// Waits (bounded) until every replica counts both in the pool.
fn pool_formed(edges: &[Edge]) {
    for e in edges {
        metric_until(e, "sipedge_pool_replicas", |v| v == 2.0);
    }
}

/// A MESSAGE from carol@found.test to alice@corp.test, sent on `peer`.
fn partner_send(peer: &mut TlsPeer, branch: &str) {
    peer.send(&sip::message(
        "sip:alice@corp.test",
        "sip.found.test:5061",
        branch,
        "sip:carol@found.test",
    ));
}

/// [`partner_send`], then its final response.
fn partner_message(peer: &mut TlsPeer, edge: &Edge, branch: &str) -> String {
    partner_send(peer, branch);
    final_for(peer, edge, branch, WAIT)
}

/// The partner sends [`OFFERED`] messages a second in all for `secs`, half to each replica (one
/// connection each, messages evenly spaced), each answered before the next; `during(elapsed)` runs
/// between messages on the first replica's thread (to kill Redis mid-run).
fn offer(w: &World, secs: u64, during: &(dyn Fn(Duration) + Sync)) -> Vec<Sent> {
    let start = Instant::now();
    let per_edge = OFFERED / 2;
    let period = Duration::from_micros(1_000_000 / per_edge);
    let mut all = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = w
            .edges
            .iter()
            .enumerate()
            .map(|(e, edge)| {
                let mut peer = partner(w, edge);
                s.spawn(move || {
                    let mut sent = Vec::new();
                    for i in 0..per_edge * secs {
                        let due = start + period * u32::try_from(i).unwrap();
                        if let Some(d) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(d);
                        }
                        if e == 0 {
                            during(start.elapsed());
                        }
                        let t = Instant::now();
                        let r = partner_message(&mut peer, edge, &format!("z9hG4bKpool-{e}-{i}"));
                        sent.push(Sent {
                            at: t.duration_since(start),
                            status: sip::status(&r),
                            latency: t.elapsed(),
                        });
                        if sip::status(&r) == 503 {
                            check_503(&r);
                        }
                    }
                    sent
                })
            })
            .collect();
        for h in handles {
            all.extend(h.join().unwrap());
        }
    });
    all
}

/// A refusal of the pool's limits towards the partner: 503, Retry-After, the public diagnostic
/// 1007 naming the partner, nothing internal.
fn check_503(r: &str) {
    assert!(sip::header(r, "Retry-After").is_some(), "no Retry-After:\n{r}");
    assert!(
        sip::header(r, "ms-diagnostics").is_none(),
        "internal diagnostic to a partner:\n{r}"
    );
    let diag = p(r)
        .ms_diagnostics_public()
        .unwrap_or_else(|e| panic!("no diagnostic ({e:?}):\n{r}"));
    assert_eq!(diag.id, 1007, "{r}");
    assert_eq!(diag.param("domain"), Some("found.test"), "{r}");
}

/// Messages admitted (200) per second among those sent in `[from, to)`.
fn admitted_rate(sent: &[Sent], from: Duration, to: Duration) -> f64 {
    let n = sent
        .iter()
        .filter(|s| s.at >= from && s.at < to && s.status == 200)
        .count();
    n as f64 / (to - from).as_secs_f64()
}

fn statuses(sent: &[Sent]) -> String {
    let ok = sent.iter().filter(|s| s.status == 200).count();
    let refused = sent.iter().filter(|s| s.status == 503).count();
    format!("{} sent, {ok} × 200, {refused} × 503", sent.len())
}

fn metric(edge: &Edge, series: &str) -> Option<f64> {
    let (status, body) = http::get(edge.metrics_addr.unwrap(), "/metrics").unwrap();
    assert_eq!(status, 200);
    http::sample(&body, series)
}

/// Polls `series` on `edge` until `pred` holds (bounded).
fn metric_until(edge: &Edge, series: &str, pred: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = metric(edge, series);
        if let Some(v) = v.filter(|v| pred(*v)) {
            return v;
        }
        assert!(Instant::now() < deadline, "{series}: {v:?}\n{}", edge.log_dump());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The acceptance case: with `[pool]` the two replicas admit the configured rate ± 10 % between
/// them; the Redis password (from `redis_password_file`) is used and never shown.
#[test]
fn two_replicas_admit_the_pool_rate_together() {
    let redis = RedisServer::start(Some("pool-s3cret"));
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("redis-password");
    std::fs::write(&pw, "pool-s3cret\n").unwrap();
    let w = world(&pool_toml(
        &redis,
        &format!("redis_password_file = \"{}\"", pw.display()),
    ));
    pool_formed(&w.edges);
    let secs = 8;
    let commands = |e: &Edge| metric(e, "sipedge_pool_redis_commands_total").unwrap();
    let before = (Instant::now(), commands(&w.edges[0]));
    let sent = offer(&w, secs, &|_| {});
    let per_sec = (commands(&w.edges[0]) - before.1) / before.0.elapsed().as_secs_f64();
    let rate = admitted_rate(&sent, WARM_UP, Duration::from_secs(secs));
    let limit = LIMIT as f64;
    assert!(
        (0.9 * limit..=1.1 * limit).contains(&rate),
        "the pool admitted {rate:.1}/s of a {LIMIT}/s limit ({})",
        statuses(&sent)
    );
    // Five syncs a second, a handful of commands each: bounded whatever the message rate.
    assert!(per_sec < 100.0, "{per_sec:.1} Redis commands a second");
    eprintln!("pool: {per_sec:.1} Redis commands/s on edge-a with one active discovered partner");
    assert!(
        sent.iter().all(|s| s.status == 200 || s.status == 503),
        "{}",
        statuses(&sent)
    );
    for (e, name) in w.edges.iter().zip(["edge-a", "edge-b"]) {
        let (status, json) = http::get(e.metrics_addr.unwrap(), "/status.json").unwrap();
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["pool"]["replica"], name, "{json}");
        assert_eq!(v["pool"]["redis_up"], true, "{json}");
        assert_eq!(v["pool"]["replicas"], 2, "{json}");
        assert!(
            !json.contains("pool-s3cret"),
            "the password on the status page: {json}"
        );
        assert!(!e.log_dump().contains("pool-s3cret"), "the password in the log");
        assert_eq!(e.events("pool_redis_up").len(), 1, "{}", e.log_dump());
        let unnamed: Vec<String> = e
            .logs()
            .into_iter()
            .filter(|l| !l.contains(&format!("\"replica\":\"{name}\"")))
            .collect();
        assert!(unnamed.is_empty(), "log lines without the replica: {unnamed:#?}");
        assert!(e.events("pool_redis_down").is_empty(), "{}", e.log_dump());
        assert!(metric(e, "sipedge_pool_redis_commands_total").unwrap() > 0.0);
    }
    eprintln!("pool: {rate:.1}/s admitted of {LIMIT}/s ({})", statuses(&sent));
}

/// The distinct-internal-contacts limit holds for the pool too: with 6 contacts a window, the
/// partner writing to 12 different users alternately through both replicas reaches 6 of them in
/// all (standalone: 6 through each, 12).
#[test]
fn the_pool_counts_distinct_contacts_together() {
    let redis = RedisServer::start(None);
    for (pool, expected) in [(pool_toml(&redis, ""), 6), (String::new(), 12)] {
        let w = world_with(&pool, |o| {
            o.discovery_messages_per_second = Some(100);
            o.discovery_contacts_per_hour = Some(6);
        });
        if !pool.is_empty() {
            for e in &w.edges {
                metric_until(e, "sipedge_pool_replicas", |v| v == 2.0);
            }
        }
        let mut peers: Vec<TlsPeer> = w.edges.iter().map(|e| partner(&w, e)).collect();
        let mut reached = 0;
        for i in 0..12usize {
            let (e, peer) = (i % 2, &mut peers[i % 2]);
            let branch = format!("z9hG4bKct-{i}");
            peer.send(&sip::message(
                &format!("sip:user{i}@corp.test"),
                "sip.found.test:5061",
                &branch,
                "sip:carol@found.test",
            ));
            let r = final_for(peer, &w.edges[e], &branch, WAIT);
            match sip::status(&r) {
                200 => reached += 1,
                503 => {
                    check_503(&r);
                    let diag = p(&r).ms_diagnostics_public().unwrap();
                    assert_eq!(diag.param("limit"), Some("distinct internal contacts"), "{r}");
                }
                other => panic!("{other}: {r}"),
            }
            // Two syncs (200 ms each: the admitting replica's, then the other's) between two
            // messages: the count each replica checks is the pool's. Closer together, a replica may
            // admit one more than the pool's limit — the accuracy the README states.
            std::thread::sleep(Duration::from_millis(500));
        }
        assert_eq!(reached, expected, "pool: {}", !pool.is_empty());
        if !pool.is_empty() {
            let members = redis
                .command(&["SMEMBERS", "sipedge:pool:contacts:found.test"])
                .unwrap();
            assert!(
                members.starts_with("*6\r\n"),
                "six in the pool's set: {members:?}"
            );
            assert!(
                !members.contains('@') && !members.contains("corp.test"),
                "hashes only: {members:?}"
            );
        }
    }
}

/// Redis over TLS (`rediss://`, the server's certificate checked against the trust store the
/// edge is given with `SSL_CERT_FILE`) with an ACL user and password in the URL: both replicas sync
/// as that user; the password appears nowhere the edge writes.
#[test]
fn the_pool_syncs_over_tls_as_an_acl_user() {
    let pki = TestPki::new();
    let cert = pki.internal_leaf("localhost");
    let redis = RedisServer::start_tls(None, &cert.cert_file, &cert.key_file, &pki.internal_ca.file);
    let acl = redis.command(&[
        "ACL",
        "SETUSER",
        "edge",
        "on",
        ">acl-s3cret",
        "~sipedge:*",
        "+@all",
    ]);
    assert_eq!(acl.as_deref(), Some("+OK\r\n"));
    let url = redis.tls_url().replace("rediss://", "rediss://edge:acl-s3cret@");
    let fe = TlsUas::start(&pki.fe, &pki.internal_ca.cert, |m: &sip_codec::Message<'_>| {
        vec![reply(m, 200, "OK", None)]
    });
    let ca = pki.internal_ca.file.display().to_string();
    let edges: Vec<Edge> = ["edge-a", "edge-b"]
        .iter()
        .map(|replica| {
            let mut o = EdgeOpts::new(fe.port(), closed_port());
            o.extra_toml = format!("[pool]\nredis = \"{url}\"\nreplica = \"{replica}\"\n");
            Edge::start_with_env(&o.render(&pki), &[("SSL_CERT_FILE", &ca)])
        })
        .collect();
    for e in &edges {
        metric_until(e, "sipedge_pool_replicas", |v| v == 2.0);
        metric_until(e, "sipedge_pool_redis_up", |v| v == 1.0);
        assert!(!e.log_dump().contains("acl-s3cret"), "the password in the log");
        let (_, json) = http::get(e.metrics_addr.unwrap(), "/status.json").unwrap();
        assert!(!json.contains("acl-s3cret"), "{json}");
        assert!(
            json.contains(&redis.tls_url()),
            "the URL without credentials: {json}"
        );
    }
    let clients = redis.command(&["CLIENT", "LIST"]).unwrap();
    assert!(
        clients.lines().filter(|l| l.contains("user=edge")).count() >= 2,
        "both replicas connected as the ACL user: {clients}"
    );
}

/// Without `[pool]` each replica admits its own limit: the pool of two admits twice the rate
/// (today's standalone behaviour, as the README says).
#[test]
fn without_a_pool_each_replica_admits_its_own_rate() {
    let w = world("");
    let secs = 6;
    let sent = offer(&w, secs, &|_| {});
    let rate = admitted_rate(&sent, WARM_UP, Duration::from_secs(secs));
    let twice = 2.0 * LIMIT as f64;
    assert!(
        (0.9 * twice..=1.1 * twice).contains(&rate),
        "standalone replicas admitted {rate:.1}/s; each {LIMIT}/s ({})",
        statuses(&sent)
    );
    assert_eq!(metric(&w.edges[0], "sipedge_pool_replicas"), Some(0.0));
    let (_, json) = http::get(w.edges[0].metrics_addr.unwrap(), "/status.json").unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["pool"].is_null(), "{json}");
    eprintln!("standalone: {rate:.1}/s admitted by two replicas of {LIMIT}/s each");
}

/// `redis_down = "divide"`: Redis killed mid-run, each replica admits the limit ÷ 2 (the replicas
/// seen at the last sync), so the pool still admits about the limit; no message waits on Redis;
/// the transition is logged once per replica and counted; Redis restarted, the sync resumes.
#[test]
fn redis_killed_divide_keeps_the_pool_rate_and_nothing_waits() {
    let mut redis = RedisServer::start(None);
    let w = world(&pool_toml(&redis, "redis_down = \"divide\""));
    pool_formed(&w.edges);
    let killed = std::sync::Mutex::new(None::<Duration>);
    let kill_at = Duration::from_secs(1);
    let secs = 8;
    let redis_cell = std::sync::Mutex::new(&mut redis);
    let sent = offer(&w, secs, &|t| {
        let mut k = killed.lock().unwrap();
        if k.is_none() && t >= kill_at {
            redis_cell.lock().unwrap().kill();
            *k = Some(t);
        }
    });
    let killed_at = killed.lock().unwrap().expect("Redis was killed");
    // From a second after the kill (the replicas notice within one sync) to the end.
    let rate = admitted_rate(
        &sent,
        killed_at + Duration::from_secs(1),
        Duration::from_secs(secs),
    );
    let limit = LIMIT as f64;
    assert!(
        (0.85 * limit..=1.15 * limit).contains(&rate),
        "with Redis away the pool admitted {rate:.1}/s of {LIMIT}/s ({})",
        statuses(&sent)
    );
    let slowest = sent.iter().map(|s| s.latency).max().unwrap();
    assert!(
        slowest < Duration::from_millis(250),
        "a message waited {slowest:?} while Redis was away"
    );
    for e in &w.edges {
        let down = e.wait_event("pool_redis_down", 1, WAIT);
        assert_eq!(down["mode"], "divide", "{down}");
        assert!(down["text"].as_str().unwrap().contains("÷ 2"), "{down}");
        assert_eq!(metric(e, "sipedge_pool_redis_up"), Some(0.0));
        assert_eq!(
            metric(e, r#"sipedge_pool_redis_transitions_total{to="down"}"#),
            Some(1.0)
        );
        assert_eq!(
            e.events("pool_redis_down").len(),
            1,
            "logged once: {}",
            e.log_dump()
        );
    }
    redis_cell.into_inner().unwrap().restart();
    for e in &w.edges {
        e.wait_event("pool_redis_up", 2, WAIT);
        metric_until(e, "sipedge_pool_redis_up", |v| v == 1.0);
        metric_until(e, "sipedge_pool_replicas", |v| v == 2.0);
    }
    eprintln!("Redis away, divide: {rate:.1}/s admitted of {LIMIT}/s; slowest answer {slowest:?}");
}

/// `redis_down = "refuse"`: Redis killed, discovered partners get 503 with Retry-After and a
/// diagnostic that says why, at once; Redis back, they are admitted again.
#[test]
fn redis_killed_refuse_answers_503_until_redis_returns() {
    let mut redis = RedisServer::start(None);
    let w = world(&pool_toml(&redis, "redis_down = \"refuse\""));
    for e in &w.edges {
        metric_until(e, "sipedge_pool_redis_up", |v| v == 1.0);
    }
    let mut peer = partner(&w, &w.edges[0]);
    let send = |peer: &mut TlsPeer, branch: &str| partner_message(peer, &w.edges[0], branch);
    assert_eq!(sip::status(&send(&mut peer, "z9hG4bKref-0")), 200);
    redis.kill();
    w.edges[0].wait_event("pool_redis_down", 1, WAIT);
    let t = Instant::now();
    let r = send(&mut peer, "z9hG4bKref-1");
    assert!(t.elapsed() < Duration::from_millis(250), "{:?}", t.elapsed());
    assert_eq!(sip::status(&r), 503, "{r}");
    check_503(&r);
    let diag = p(&r).ms_diagnostics_public().unwrap();
    assert_eq!(diag.param("limit"), Some("pool state unavailable"), "{r}");
    redis.restart();
    w.edges[0].wait_event("pool_redis_up", 2, WAIT);
    let admitted = (0..20).any(|i| {
        std::thread::sleep(Duration::from_millis(100));
        sip::status(&send(&mut peer, &format!("z9hG4bKref-back{i}"))) == 200
    });
    assert!(admitted, "Redis back: admitted again\n{}", w.edges[0].log_dump());
}

// ---- push breakers shared by the pool ---------------------------------------------------------

const PUSH_URI: &str = "sip:push@push.lync.com";

/// One push from the front end through `edge`; its final response.
fn push(fe: &mut TlsPeer, edge: &Edge, branch: &str) -> String {
    fe.send(&sip::message(
        PUSH_URI,
        "fe1.corp.test:5061",
        branch,
        "sip:mobility@corp.test",
    ));
    final_for(fe, edge, branch, WAIT + WAIT)
}

/// The acceptance case: LyncOnline failing behind two replicas. Three failures through `edge-a`
/// open its breaker; within a second `edge-b`'s is open too (nothing more reaches the provider).
/// The provider back and the cool-down over, a push to each replica at the same moment sends one
/// probe, not two (`edge-a`'s: it opened the breaker); its success closes `edge-b`'s as well.
#[test]
fn a_breaker_opened_on_one_replica_opens_on_both_and_one_probes() {
    let redis = RedisServer::start(None);
    let pki = TestPki::new();
    let back = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&back);
    let provider = TlsUas::start_with(
        &pki.partner_leaf("sipfed.online.lync.com"),
        &pki.internal_ca.cert,
        move |m: &sip_codec::Message<'_>| match (m.method(), flag.load(Ordering::SeqCst)) {
            (Some("MESSAGE"), false) => vec![support::Reply::Now(reply(m, 503, "Down", Some("lo")))],
            (Some("MESSAGE"), true) => vec![support::Reply::Now(reply(m, 200, "OK", Some("lo")))],
            _ => vec![],
        },
    );
    let fe = TlsUas::start(&pki.fe, &pki.internal_ca.cert, |m: &sip_codec::Message<'_>| {
        vec![reply(m, 200, "OK", Some("fe"))]
    });
    let dns = Dnsmasq::lync_online(provider.port());
    let edges: Vec<Edge> = ["edge-a", "edge-b"]
        .iter()
        .map(|replica| {
            let mut o = EdgeOpts::new(fe.port(), closed_port());
            o.dns_servers = vec![dns.server()];
            o.lync_online();
            o.allowed_srv.push("push.lync.com".into());
            o.transaction_timeout_ms = 8000;
            o.extra_toml = format!(
                "[push]\nproxy_uri = \"{PUSH_URI}\"\ntimeout_ms = 1500\nmax_retries = 0\n\
                 breaker_failures = 3\nbreaker_cooldown_ms = 2000\n\n{}",
                pool_toml(&redis, "").replace("{replica}", replica)
            );
            Edge::start(&o.render(&pki), &pki)
        })
        .collect();
    pool_formed(&edges);
    let (a, b) = (&edges[0], &edges[1]);
    let (mut fe_a, mut fe_b) = (fe_client(a, &pki), fe_client(b, &pki));
    let seen = || {
        provider
            .requests()
            .iter()
            .filter(|r| sip::method(r) == "MESSAGE")
            .count()
    };
    for i in 0..3 {
        let r = push(&mut fe_a, a, &format!("z9hG4bKbrk-a{i}"));
        assert_eq!(sip::status(&r), 503, "the provider's own 503: {r}");
    }
    let opened = Instant::now();
    let series = r#"sipedge_push_breaker_state{partner="LyncOnline"}"#;
    metric_until(a, series, |v| v == 2.0);
    metric_until(b, series, |v| v == 2.0);
    let took = opened.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "edge-b's breaker opened {took:?} after edge-a's"
    );
    let r = push(&mut fe_b, b, "z9hG4bKbrk-b-open");
    assert_eq!(sip::status(&r), 503, "{r}");
    assert!(
        sip::header(&r, "Retry-After").is_some(),
        "answered by the breaker: {r}"
    );
    assert_eq!(seen(), 3, "nothing reached the provider through edge-b");

    back.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(2_100).saturating_sub(opened.elapsed()));
    // One push to each replica at the same moment: one probe reaches the provider.
    fe_a.send(&sip::message(
        PUSH_URI,
        "fe1.corp.test:5061",
        "z9hG4bKbrk-pa",
        "sip:mobility@corp.test",
    ));
    fe_b.send(&sip::message(
        PUSH_URI,
        "fe1.corp.test:5061",
        "z9hG4bKbrk-pb",
        "sip:mobility@corp.test",
    ));
    let ra = final_for(&mut fe_a, a, "z9hG4bKbrk-pa", WAIT);
    let rb = final_for(&mut fe_b, b, "z9hG4bKbrk-pb", WAIT);
    assert_eq!(sip::status(&ra), 200, "edge-a's probe: {ra}");
    assert_eq!(sip::status(&rb), 503, "edge-b holds while edge-a probes: {rb}");
    assert_eq!(seen(), 4, "one probe, not two");
    // The probe closed edge-a's breaker; the pool closes edge-b's.
    metric_until(b, series, |v| v == 0.0);
    let r = push(&mut fe_b, b, "z9hG4bKbrk-b-after");
    assert_eq!(sip::status(&r), 200, "{r}");
    assert_eq!(seen(), 5);
    eprintln!("breaker: edge-b open {took:?} after edge-a; one probe after the cool-down");
}

// ---- drain and kill -9 under load ------------------------------------------------------------

/// How a transaction of [`FollowingPartner`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Final(u16),
    /// Sent, and the connection closed before a final response: in flight on a replica that died.
    Lost,
}

/// A partner that follows `found.test`'s two SRV targets of equal priority (the two replicas):
/// transactions alternate between them; a target that refuses the connection, closes it, or
/// answers 503 (RFC 3263 §4.3: try the next target) is marked down and the request sent to the
/// other.
struct FollowingPartner<'w> {
    w: &'w World,
    conns: [Option<TlsPeer>; 2],
    down: [bool; 2],
    next: usize,
}

impl<'w> FollowingPartner<'w> {
    fn new(w: &'w World) -> Self {
        FollowingPartner {
            w,
            conns: [None, None],
            down: [false, false],
            next: 0,
        }
    }

    fn transact(&mut self, branch: &str) -> Ended {
        let mut last = Ended::Final(503);
        for _ in 0..2 {
            let t = match (self.down[self.next], self.down[1 - self.next]) {
                (false, _) => self.next,
                (true, false) => 1 - self.next,
                (true, true) => return last,
            };
            self.next = 1 - t;
            let edge = &self.w.edges[t];
            if self.conns[t].is_none() {
                let id = self.w.pki.partner_leaf("sip.found.test");
                match TlsPeer::connect(
                    edge.external_addr,
                    &id,
                    &self.w.pki.internal_ca.cert,
                    "edge.corp.test",
                ) {
                    Ok(p) => self.conns[t] = Some(p),
                    Err(_) => {
                        self.down[t] = true;
                        continue;
                    }
                }
            }
            let Some(peer) = self.conns[t].as_mut() else {
                continue;
            };
            let msg = sip::message(
                "sip:alice@corp.test",
                "sip.found.test:5061",
                branch,
                "sip:carol@found.test",
            );
            if peer.try_send(&msg).is_err() {
                // Not sent: safe to send to the other target.
                self.conns[t] = None;
                self.down[t] = true;
                continue;
            }
            match peer.recv_matching(WAIT, |m| sip::status(m) >= 200 && sip::top_branch(m) == branch) {
                Some(r) if sip::status(&r) == 503 => {
                    self.down[t] = true;
                    last = Ended::Final(503);
                }
                Some(r) => return Ended::Final(sip::status(&r)),
                None => {
                    self.conns[t] = None;
                    self.down[t] = true;
                    return Ended::Lost;
                }
            }
        }
        last
    }
}

/// The replicas with `found.test` an allowed partner (no discovery limit in the way), a front
/// end that answers a request whose Call-ID says `slow` after 600 ms (a transaction in flight when
/// the replica is stopped), in a pool.
fn failover_world(redis: &RedisServer) -> World {
    let pki = TestPki::new();
    let fe = TlsUas::start_with(&pki.fe, &pki.internal_ca.cert, |m: &sip_codec::Message<'_>| {
        let r = reply(m, 200, "OK", Some("fe-tag"));
        match m.method() {
            Some("ACK") => vec![],
            // The Call-ID carries the partner's branch (the top Via at the front end is the edge's).
            _ if m.call_id().is_ok_and(|c| c.contains("slow")) => {
                vec![support::Reply::After(Duration::from_millis(600), r)]
            }
            _ => vec![support::Reply::Now(r)],
        }
    });
    let dns = Dnsmasq::start(&[
        Record::srv("found.test", "sip.found.test", closed_port(), 0, 0),
        Record::a("sip.found.test"),
    ]);
    let edges = ["edge-a", "edge-b"]
        .iter()
        .map(|replica| {
            let mut o = EdgeOpts::new(fe.port(), closed_port());
            o.dns_servers = vec![dns.server()];
            o.allowed_srv.push("found.test".into());
            o.extra_toml = pool_toml(redis, "").replace("{replica}", replica);
            Edge::start(&o.render(&pki), &pki)
        })
        .collect();
    World {
        pki,
        _fe: fe,
        _dns: dns,
        edges,
    }
}

/// Runs the following partner for `secs` (a transaction every 10 ms) while `act` runs on this
/// thread once the partner has run for one second; the outcomes by transaction.
fn under_load(w: &World, secs: u64, act: impl FnOnce()) -> Vec<Ended> {
    std::thread::scope(|s| {
        let client = s.spawn(|| {
            let mut partner = FollowingPartner::new(w);
            let start = Instant::now();
            let mut out = Vec::new();
            let mut i = 0;
            while start.elapsed() < Duration::from_secs(secs) {
                out.push(partner.transact(&format!("z9hG4bKsrv-{i}")));
                i += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            out
        });
        std::thread::sleep(Duration::from_secs(1));
        act();
        client.join().unwrap()
    })
}

fn signal(edge: &Edge, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &edge.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// SIGTERM on one replica under load: its `/readyz` fails at once, the transaction it has in
/// flight finishes (200), new connections to it are refused, and a partner that follows SRV sees
/// no failed transaction — every one ends 200, on the other replica once this one drains.
#[test]
fn sigterm_drains_one_replica_and_a_following_partner_loses_nothing() {
    let redis = RedisServer::start(None);
    let mut w = failover_world(&redis);
    pool_formed(&w.edges);
    let mut slow = partner(&w, &w.edges[0]);
    let mut drained = None;
    let ended = under_load(&w, 3, || {
        partner_send(&mut slow, "z9hG4bKslow-term");
        std::thread::sleep(Duration::from_millis(100));
        signal(&w.edges[0], "-TERM");
        std::thread::sleep(Duration::from_millis(100));
        let ready = http::get(w.edges[0].metrics_addr.unwrap(), "/readyz");
        let r = final_for(&mut slow, &w.edges[0], "z9hG4bKslow-term", WAIT);
        drained = Some((ready.map(|(s, _)| s), sip::status(&r)));
    });
    let (ready, slow_status) = drained.unwrap();
    assert_eq!(ready.ok(), Some(503), "/readyz fails while draining");
    assert_eq!(slow_status, 200, "the transaction in flight at SIGTERM finished");
    let failed: Vec<&Ended> = ended.iter().filter(|e| **e != Ended::Final(200)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} transactions failed: {failed:?}",
        failed.len(),
        ended.len()
    );
    let status = w.edges[0].stop(Duration::from_secs(12));
    assert!(
        status.is_some_and(|s| s.success()),
        "the drained replica exits 0: {status:?}"
    );
    assert!(
        TcpStream::connect(w.edges[0].external_addr).is_err(),
        "the drained replica accepts nothing"
    );
    eprintln!(
        "SIGTERM: {} transactions, 0 failed; in flight at SIGTERM: finished 200",
        ended.len()
    );
    w.edges.truncate(1);
}

/// `kill -9` of one replica under load: what was in flight on it gets no final response (the
/// partner's transaction on a dead connection: here the slow one, and at most the one the
/// following partner had outstanding there), everything after goes to the other replica.
#[test]
fn kill_9_of_one_replica_loses_only_what_was_in_flight_on_it() {
    let redis = RedisServer::start(None);
    let w = failover_world(&redis);
    pool_formed(&w.edges);
    let mut slow = partner(&w, &w.edges[0]);
    let mut slow_final = None;
    let ended = under_load(&w, 3, || {
        partner_send(&mut slow, "z9hG4bKslow-kill");
        std::thread::sleep(Duration::from_millis(100));
        signal(&w.edges[0], "-KILL");
        slow_final = slow.recv_matching(WAIT, |m| sip::status(m) >= 200);
    });
    assert!(
        slow_final.is_none(),
        "the transaction in flight on the killed replica got {slow_final:?}"
    );
    let lost = ended.iter().filter(|e| **e == Ended::Lost).count();
    let other: Vec<&Ended> = ended
        .iter()
        .filter(|e| **e != Ended::Lost && **e != Ended::Final(200))
        .collect();
    assert!(other.is_empty(), "failed otherwise: {other:?}");
    assert!(
        lost <= 1,
        "the partner had at most one transaction outstanding on the killed replica: {lost} lost"
    );
    eprintln!(
        "kill -9: {} transactions of the following partner, {lost} without a final response, plus the slow one in flight",
        ended.len()
    );
}

// ---- in-dialog requests across replicas --------------------------------------------------------

/// A dialog made through one replica continues through the other: the front end's SUBSCRIBE to
/// bob@partner.test crosses `edge-a` (which record-routes it with the pool's names, at its own
/// ports); the partner sends the NOTIFY to `edge-b`, whose listeners are on other ports; `edge-b`
/// recognises the Route set as the pool's and forwards the NOTIFY to the front end from it — no
/// state is needed on the replica that forwards an in-dialog request.
#[test]
fn an_in_dialog_request_crosses_the_replica_that_did_not_make_the_dialog() {
    let redis = RedisServer::start(None);
    let pki = TestPki::new();
    let fe = TlsUas::start(&pki.fe, &pki.internal_ca.cert, |m: &sip_codec::Message<'_>| {
        vec![reply(m, 200, "OK", None)]
    });
    let presentity = TlsUas::start(
        &pki.partner,
        &pki.internal_ca.cert,
        |m: &sip_codec::Message<'_>| vec![sip::reply_with(m, 200, "OK", Some("n1"), "Expires: 3600\n")],
    );
    // The partner's remote target (its Contact), at its port.
    let target = format!("sip:bob@edge.partner.test:{};transport=tls", presentity.port());
    let edges: Vec<Edge> = ["edge-a", "edge-b"]
        .iter()
        .map(|replica| {
            let mut o = EdgeOpts::new(fe.port(), presentity.port());
            o.extra_toml = pool_toml(&redis, "").replace("{replica}", replica);
            Edge::start(&o.render(&pki), &pki)
        })
        .collect();
    let (a, b) = (&edges[0], &edges[1]);
    assert_ne!(a.external_addr.port(), b.external_addr.port());
    let mut fe_a = fe_client(a, &pki);
    let fe_host = format!("fe1.corp.test:{}", fe.port());
    fe_a.send(&format!(
        "SUBSCRIBE sip:bob@partner.test SIP/2.0\r\nVia: SIP/2.0/TLS {fe_host};branch=z9hG4bKdlg1\r\n\
         Record-Route: <sip:{fe_host};transport=tls;lr>\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@corp.test>;tag=w1\r\nTo: <sip:bob@partner.test>\r\nCall-ID: dialog-1\r\n\
         CSeq: 1 SUBSCRIBE\r\nContact: <sip:alice@{fe_host};transport=tls>\r\nEvent: presence\r\n\
         Expires: 3600\r\nContent-Length: 0\r\n\r\n"
    ));
    let ok = final_for(&mut fe_a, a, "z9hG4bKdlg1", WAIT);
    assert_eq!(sip::status(&ok), 200, "{ok}");
    let sub = presentity
        .wait_request(WAIT, |r| sip::method(r) == "SUBSCRIBE")
        .expect("the partner got the SUBSCRIBE");
    let rr = sip::record_route_uris(&sub);
    assert!(
        rr.iter()
            .any(|u| u.contains(&format!("edge.corp.test:{}", a.external_addr.port()))),
        "edge-a record-routed it: {rr:?}"
    );
    // The NOTIFY, from the partner, to edge-b.
    let routes: String = rr.iter().map(|u| format!("Route: <{u}>\r\n")).collect();
    let mut partner_b = TlsPeer::connect(
        b.external_addr,
        &pki.partner,
        &pki.internal_ca.cert,
        "edge.corp.test",
    )
    .unwrap();
    partner_b.send(&format!(
        "NOTIFY sip:alice@{fe_host};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS edge.partner.test:5061;branch=z9hG4bKdlgn1\r\n\
         {routes}Max-Forwards: 70\r\nFrom: <sip:bob@partner.test>;tag=n1\r\nTo: <sip:alice@corp.test>;tag=w1\r\n\
         Call-ID: dialog-1\r\nCSeq: 1 NOTIFY\r\nContact: <sip:bob@edge.partner.test;transport=tls>\r\n\
         Event: presence\r\nSubscription-State: active;expires=3599\r\nContent-Length: 0\r\n\r\n"
    ));
    let r = final_for(&mut partner_b, b, "z9hG4bKdlgn1", WAIT);
    assert_eq!(
        sip::status(&r),
        200,
        "edge-b forwarded the NOTIFY: {r}\n{}",
        b.log_dump()
    );
    let at_fe = fe
        .wait_request(WAIT, |r| sip::method(r) == "NOTIFY")
        .expect("the front end got the NOTIFY");
    assert_eq!(
        sip::top_sent_by(&at_fe),
        format!("edge-int.corp.test:{}", b.internal_addr.port()),
        "through edge-b: {at_fe}"
    );
    assert!(
        sip::route_uris(&at_fe)
            .iter()
            .all(|u| !u.contains("edge.corp.test") && !u.contains("edge-int.corp.test")),
        "edge-b consumed the pool's Route entries: {at_fe}"
    );
    // The other way: the front end refreshes the subscription in the dialog, through edge-b, with
    // the route set edge-a made (the 200's Record-Route, reversed, without its own entry).
    let route_set: String = sip::record_route_uris(&ok)
        .iter()
        .rev()
        .filter(|u| !u.contains("fe1.corp.test"))
        .map(|u| format!("Route: <{u}>\r\n"))
        .collect();
    let mut fe_b = fe_client(b, &pki);
    fe_b.send(&format!(
        "SUBSCRIBE {target} SIP/2.0\r\nVia: SIP/2.0/TLS {fe_host};branch=z9hG4bKdlg2\r\n\
         {route_set}Max-Forwards: 70\r\nFrom: <sip:alice@corp.test>;tag=w1\r\nTo: <sip:bob@partner.test>;tag=n1\r\n\
         Call-ID: dialog-1\r\nCSeq: 2 SUBSCRIBE\r\nContact: <sip:alice@{fe_host};transport=tls>\r\n\
         Event: presence\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
    ));
    let ok2 = final_for(&mut fe_b, b, "z9hG4bKdlg2", WAIT);
    assert_eq!(
        sip::status(&ok2),
        200,
        "the refresh through edge-b: {ok2}\n{}",
        b.log_dump()
    );
    let refresh = presentity
        .wait_request(WAIT, |r| {
            sip::method(r) == "SUBSCRIBE" && r.contains("CSeq: 2 SUBSCRIBE")
        })
        .expect("the partner got the refresh");
    assert_eq!(
        sip::top_sent_by(&refresh),
        format!("edge.corp.test:{}", b.external_addr.port()),
        "straight from edge-b to the partner: {refresh}"
    );
}
