//! The body of the transaction-core fuzz target (`fuzz/fuzz_targets/core.rs` calls
//! [`core_target`]), kept here so that a unit test replays seeds on stable Rust in CI.
//!
//! The input is a program: each byte picks an event for one `Proxy` — a front end's or a partner's
//! request (of every method, in and out of a dialog, to allowed, SRV, blocked and unknown domains),
//! raw bytes on either side, deliveries and delivery failures, answers from the far side, SRV
//! answers, closed links, time passing. Then time runs out far past every timer. The invariants:
//! - nothing panics;
//! - a response goes only to the connection its request came on (its branch was seen there);
//! - every request the program sent (but ACK) on a link that stayed up gets a final response, and a
//!   non-INVITE exactly one;
//! - nothing is left: no open transaction once every timer ran.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use federation_policy::{DomainName, Fqdn, PolicyBuilder, SrvRecord};

use super::io::{
    ConnId, DeliveryFailure, Destination, Effect, Input, LinkEnd, PeerInfo, Side, SrvResult, Token,
};
use super::{EdgeShared, Proxy, ProxySettings};

const FE: ConnId = ConnId(1);
const PARTNER_IN: ConnId = ConnId(2);
const PARTNER_OUT: ConnId = ConnId(100);
const POOL: ConnId = ConnId(101);

const METHODS: [&str; 9] = [
    "MESSAGE",
    "INVITE",
    "OPTIONS",
    "SUBSCRIBE",
    "NOTIFY",
    "BYE",
    "INFO",
    "CANCEL",
    "ACK",
];
const STATUSES: [u16; 10] = [100, 180, 200, 202, 403, 404, 481, 486, 500, 503];

struct World {
    proxy: Proxy,
    now: Instant,
    /// Every message that arrived, by connection (a response's branch must be in one of them).
    arrived: BTreeMap<ConnId, Vec<Vec<u8>>>,
    /// Requests the program sent: (conn, branch, method) → finals seen.
    sent: BTreeMap<(ConnId, String, String), usize>,
    /// Branches sent as raw bytes too (retransmissions may then legitimately repeat a final).
    raw_branches: BTreeSet<String>,
    /// Requests whose link closed before their answer: they may go unanswered.
    exempt: BTreeSet<(ConnId, String, String)>,
    /// Connections the edge asked to close (reported back as closed once its effects are done).
    to_close: Vec<ConnId>,
    /// Hop sends not yet reported, with their side and bytes.
    pending: Vec<(Token, Side, Vec<u8>)>,
    /// Forwarded requests delivered, on the connection they went out on.
    forwarded: Vec<(ConnId, Vec<u8>)>,
    lookups: Vec<Token>,
    next: u64,
}

fn peer(side: Side, name: &str, dialled: bool) -> PeerInfo {
    PeerInfo {
        side,
        remote: SocketAddr::from(([127, 0, 0, 1], 40000)),
        identities: vec![name.to_owned()],
        dialled: dialled.then(|| Fqdn::parse(name).ok()).flatten(),
    }
}

fn d(s: &str) -> Option<DomainName> {
    DomainName::parse(s).ok()
}

impl World {
    fn new() -> Option<World> {
        let mut b = PolicyBuilder::new();
        b.edge_fqdn("edge.corp.example")
            .our_domain(d("corp.example")?)
            .allow(
                d("partner.example")?,
                Fqdn::parse("edge.partner.example").ok(),
                None,
            )
            .allow(d("srvpartner.example")?, None, None)
            .block(d("evil.example")?)
            .known_server(Fqdn::parse("fe1.corp.example").ok()?, "7.0");
        let policy = Arc::new(b.build().ok()?);
        let settings = ProxySettings::new(
            "edge.corp.example",
            "edge-int.corp.example:5061",
            "edge.corp.example:5061",
            Fqdn::parse("pool.corp.example").ok()?,
        );
        let shared = EdgeShared::new(&policy, Default::default());
        let mut w = World {
            proxy: Proxy::new(settings, Arc::clone(&policy), 0, &shared),
            now: Instant::now(),
            arrived: BTreeMap::new(),
            sent: BTreeMap::new(),
            raw_branches: BTreeSet::new(),
            exempt: BTreeSet::new(),
            to_close: Vec::new(),
            pending: Vec::new(),
            forwarded: Vec::new(),
            lookups: Vec::new(),
            next: 0,
        };
        w.up(FE);
        w.up(PARTNER_IN);
        Some(w)
    }

    fn up(&mut self, conn: ConnId) {
        let p = match conn {
            FE => peer(Side::Internal, "fe1.corp.example", false),
            PARTNER_IN => peer(Side::External, "edge.partner.example", false),
            POOL => peer(Side::Internal, "pool.corp.example", true),
            _ => peer(Side::External, "edge.partner.example", true),
        };
        self.input(Input::ConnUp { conn, peer: p });
    }

    fn input(&mut self, i: Input<'_>) {
        let mut out = Vec::new();
        self.proxy.handle(i, self.now, &mut out);
        self.effects(out);
        // What the edge closed, the shell reports closed (and the peer comes back).
        while let Some(conn) = self.to_close.pop() {
            self.closed_link(conn, LinkEnd::PeerClosed);
        }
    }

    /// `conn` is gone: what was sent on it may go unanswered; the front end and the partner
    /// connect again.
    fn closed_link(&mut self, conn: ConnId, reason: LinkEnd) {
        if !self.proxy.peers.contains_key(&conn) {
            return;
        }
        let gone: Vec<_> = self.sent.keys().filter(|k| k.0 == conn).cloned().collect();
        self.exempt.extend(gone);
        self.forwarded.retain(|(c, _)| *c != conn);
        let mut out = Vec::new();
        self.proxy
            .handle(Input::ConnClosed { conn, reason }, self.now, &mut out);
        self.effects(out);
        if conn == FE || conn == PARTNER_IN {
            self.up(conn);
        }
    }

    fn message(&mut self, conn: ConnId, bytes: &[u8]) {
        self.arrived.entry(conn).or_default().push(bytes.to_vec());
        self.input(Input::Message { conn, bytes });
    }

    fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
        let mut out = Vec::new();
        self.proxy.handle_timeout(self.now, &mut out);
        self.effects(out);
    }

    fn effects(&mut self, out: Vec<Effect>) {
        for e in out {
            match e {
                Effect::Send {
                    dest: Destination::Conn(c),
                    bytes,
                    ..
                } => self.answered(c, &bytes),
                Effect::Send {
                    dest: Destination::Hop(hop),
                    bytes,
                    token: Some(t),
                } => self.pending.push((t, hop.side, bytes)),
                Effect::Send { .. } | Effect::Log(_) => {}
                Effect::LookupSrv { token, .. } => self.lookups.push(token),
                Effect::Close { conn } => self.to_close.push(conn),
            }
        }
    }

    /// A message the edge wrote to connection `c`: a response must answer something that came on
    /// `c`; a final is counted against the program's request it answers.
    fn answered(&mut self, c: ConnId, bytes: &[u8]) {
        let parsed = sip_codec::parse(bytes);
        // Only whole messages the edge built itself go out.
        assert!(parsed.is_ok(), "the edge wrote an unparseable message to {c:?}");
        let Ok(m) = parsed else { return };
        let Some(status) = m.status() else {
            return; // a request of the edge's own (a liveness NOTIFY)
        };
        let branch = m.top_via().ok().and_then(|v| v.branch()).unwrap_or("").to_owned();
        let seen_here = self.arrived.get(&c).is_some_and(|all| {
            all.iter()
                .any(|a| memchr::memmem::find(a, branch.as_bytes()).is_some())
        });
        assert!(
            seen_here,
            "a {status} for branch {branch:?} went to {c:?}, where no such request came"
        );
        if status >= 200 {
            let method = m.cseq().map(|c| c.method.to_owned()).unwrap_or_default();
            if let Some(n) = self.sent.get_mut(&(c, branch, method)) {
                *n += 1;
            }
        }
    }

    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// A request of the program from `conn`, shaped by `b`.
    fn request(&mut self, conn: ConnId, b: u8) {
        let method = METHODS
            .get(usize::from(b) % METHODS.len())
            .copied()
            .unwrap_or("MESSAGE");
        let n = self.id();
        let branch = format!("z9hG4bKfz{n}");
        let in_dialog = b & 0x40 != 0;
        let (via, from, uri) = if conn == FE {
            let targets = [
                "sip:bob@partner.example",
                "sip:bob@srvpartner.example",
                "sip:bob@evil.example",
                "sip:bob@unknown.example",
            ];
            let t = targets
                .get(usize::from(b >> 4) % targets.len())
                .copied()
                .unwrap_or("");
            ("fe1.corp.example:5061", "sip:alice@corp.example", t)
        } else {
            let froms = [
                "sip:bob@partner.example",
                "sip:eve@evil.example",
                "sip:bob@srvpartner.example",
            ];
            let f = froms
                .get(usize::from(b >> 4) % froms.len())
                .copied()
                .unwrap_or("");
            ("edge.partner.example:5061", f, "sip:alice@corp.example")
        };
        let to_tag = if in_dialog { ";tag=t1" } else { "" };
        let route = if in_dialog && b & 0x20 != 0 {
            "Route: <sip:edge.corp.example:5061;transport=tls;lr;sh=AAAA>\r\n"
        } else {
            ""
        };
        let contact = if b & 0x10 != 0 {
            "Contact: <sip:alice@fe1.corp.example:5061;transport=tls>\r\n"
        } else {
            ""
        };
        let rr = if b & 0x08 != 0 {
            "Record-Route: <sip:fe1.corp.example:5061;transport=tls;lr>\r\n"
        } else {
            ""
        };
        let text = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/TLS {via};branch={branch}\r\n{route}{rr}Max-Forwards: 70\r\n\
             From: <{from}>;tag=f{n}\r\nTo: <{uri}>{to_tag}\r\nCall-ID: fz-{n}\r\nCSeq: 1 {method}\r\n{contact}\
             Content-Length: 0\r\n\r\n"
        );
        if method != "ACK" {
            self.sent.insert((conn, branch, method.to_owned()), 0);
        }
        self.message(conn, text.as_bytes());
    }

    fn deliver(&mut self, fail: Option<u8>) {
        if self.pending.is_empty() {
            return;
        }
        let (token, side, bytes) = self.pending.remove(0);
        match fail {
            None => {
                let conn = if side == Side::External { PARTNER_OUT } else { POOL };
                if !self.proxy.peers.contains_key(&conn) {
                    self.up(conn);
                }
                self.forwarded.push((conn, bytes));
                self.input(Input::Delivered { token, conn });
            }
            Some(b) => {
                let failure = match b % 5 {
                    0 => DeliveryFailure::Resolve("no address".into()),
                    1 => DeliveryFailure::Connect("refused".into()),
                    2 => DeliveryFailure::Tls("reset".into()),
                    3 => DeliveryFailure::CertificateMismatch {
                        presented: vec!["other.example".into()],
                    },
                    _ => DeliveryFailure::Overloaded("full".into()),
                };
                self.input(Input::DeliveryFailed { token, failure });
            }
        }
    }

    /// The far side answers the `i`-th forwarded request with a status picked by `b`.
    fn respond(&mut self, i: u8, b: u8) {
        if self.forwarded.is_empty() {
            return;
        }
        let Some((conn, req)) = self.forwarded.get(usize::from(i) % self.forwarded.len()).cloned() else {
            return;
        };
        let Ok(m) = sip_codec::parse(&req) else { return };
        if m.method() == Some("ACK") {
            return;
        }
        let status = STATUSES
            .get(usize::from(b) % STATUSES.len())
            .copied()
            .unwrap_or(200);
        let mut text = format!("SIP/2.0 {status} Fuzz\r\n");
        for h in m.headers() {
            let v = String::from_utf8_lossy(h.raw_value);
            match h.name {
                sip_codec::HeaderName::Via
                | sip_codec::HeaderName::From
                | sip_codec::HeaderName::CallId
                | sip_codec::HeaderName::CSeq
                | sip_codec::HeaderName::RecordRoute => text.push_str(&format!("{}: {v}\r\n", h.name_str())),
                sip_codec::HeaderName::To if status > 100 => text.push_str(&format!("To: {v};tag=r{b}\r\n")),
                sip_codec::HeaderName::To => text.push_str(&format!("To: {v}\r\n")),
                _ => {}
            }
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        self.message(conn, text.as_bytes());
    }

    fn close(&mut self, b: u8) {
        let conns = [FE, PARTNER_IN, PARTNER_OUT, POOL];
        let reasons = [LinkEnd::PeerClosed, LinkEnd::Reset, LinkEnd::KeepaliveFailed];
        let conn = conns.get(usize::from(b) % conns.len()).copied().unwrap_or(FE);
        let reason = reasons
            .get(usize::from(b >> 2) % reasons.len())
            .copied()
            .unwrap_or(LinkEnd::Reset);
        self.closed_link(conn, reason);
    }

    fn srv(&mut self, b: u8) {
        if self.lookups.is_empty() {
            return;
        }
        let token = self.lookups.remove(0);
        let result = match b % 3 {
            0 => SrvResult::Records(vec![SrvRecord {
                priority: 0,
                weight: 0,
                port: 5061,
                target: "sip.srvpartner.example".to_owned(),
            }]),
            1 => SrvResult::NoRecord,
            _ => SrvResult::Failed("timeout".into()),
        };
        self.input(Input::Srv { token, result });
    }
}

/// Runs one program (see the module's documentation); panics on a broken invariant.
pub fn core_target(data: &[u8]) {
    let Some(mut w) = World::new() else { return };
    let mut i = 0;
    let byte = |i: &mut usize| {
        let b = data.get(*i).copied().unwrap_or(0);
        *i += 1;
        b
    };
    while i < data.len() {
        let op = byte(&mut i);
        let arg = byte(&mut i);
        match op % 11 {
            0 | 1 => w.request(FE, arg),
            2 => w.request(PARTNER_IN, arg),
            3 | 4 => w.deliver(None),
            5 => w.deliver(Some(arg)),
            6 => {
                let b = byte(&mut i);
                w.respond(arg, b);
            }
            7 => w.close(arg),
            8 => w.advance(u64::from(arg % 64)),
            9 => w.srv(arg),
            _ => {
                // Raw bytes on either side: up to 255 octets of the program as one message.
                let len = usize::from(arg);
                let conn = if len % 2 == 0 { FE } else { PARTNER_IN };
                let raw = data.get(i..(i + len).min(data.len())).unwrap_or(&[]).to_vec();
                i += len;
                if let Ok(m) = sip_codec::parse(&raw) {
                    if let Some(b) = m.top_via().ok().and_then(|v| v.branch()) {
                        w.raw_branches.insert(b.to_owned());
                    }
                }
                w.message(conn, &raw);
            }
        }
    }
    // Everything still owed happens: deliveries succeed, lookups fail, then time runs out.
    while !w.pending.is_empty() || !w.lookups.is_empty() {
        w.deliver(None);
        w.srv(2);
    }
    for _ in 0..8 {
        w.advance(120);
    }
    assert_eq!(
        w.proxy.open_transactions(),
        0,
        "transactions left after every timer ran"
    );
    for (key, finals) in &w.sent {
        let (conn, branch, method) = key;
        if w.exempt.contains(key) || w.raw_branches.contains(branch) {
            continue;
        }
        assert!(
            *finals >= 1,
            "{method} {branch} on {conn:?} got no final response"
        );
        if method != "INVITE" {
            assert_eq!(
                *finals, 1,
                "{method} {branch} on {conn:?}: {finals} final responses"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds CI replays: hand-written programs (each op pair as the module says), then 400
    /// programs from a fixed xorshift sequence — the same every run.
    #[test]
    fn seeds_keep_the_invariants() {
        let hand: [&[u8]; 6] = [
            &[],
            // FE MESSAGE out, delivered, answered 200.
            &[0, 0, 3, 0, 6, 0, 2],
            // FE INVITE out, delivered, 180 then 200, time passes.
            &[0, 1, 3, 0, 6, 0, 1, 6, 0, 2, 8, 40],
            // A partner's MESSAGE in, delivered to the pool, answered; a failed delivery.
            &[2, 0, 3, 0, 6, 0, 2, 0, 0, 5, 1],
            // SRV partner: lookup answered, delivered; the front end's link drops mid-way.
            &[0, 0x10, 9, 0, 3, 0, 7, 0, 0, 0x20],
            // Raw garbage on both sides.
            &[10, 4, b'x', b'y', b'z', b'w', 10, 3, 0xff, 0, 1],
        ];
        for p in hand {
            core_target(p);
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..400 {
            let mut p = Vec::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 2 + (x % 120) as usize;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                p.push((x >> 24) as u8);
            }
            core_target(&p);
        }
    }
}

#[cfg(test)]
mod harness_tests {
    use super::*;

    /// The harness sees what it claims to: a program's requests are answered and counted, and a
    /// response to the wrong connection is caught.
    #[test]
    fn the_harness_counts_finals_and_catches_a_misdirected_response() {
        let mut w = World::new().unwrap();
        w.request(FE, 0); // MESSAGE to partner.example
        w.deliver(None);
        w.respond(0, 2); // 200
        w.request(FE, 2); // OPTIONS
        w.deliver(None);
        w.advance(40); // Timer F: 408
        let finals: Vec<usize> = w.sent.values().copied().collect();
        assert_eq!(finals, [1, 1], "{:?}", w.sent);
        assert_eq!(w.proxy.open_transactions(), 0);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            w.answered(
                PARTNER_IN,
                b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS fe1.corp.example;branch=z9hG4bKfz1\r\nFrom: <sip:a@corp.example>;tag=1\r\nTo: <sip:b@partner.example>;tag=2\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
            )
        }));
        assert!(
            caught.is_err(),
            "a response for the front end's branch on the partner's link"
        );
    }
}
