//! The proxy core driven through one whole MESSAGE transaction, sans-IO (shared by the `counting`
//! and `allocs` benches): the front end's request in, the forwarded request out, the shell's
//! `Delivered`, the partner's 200 in, the 200 out to the front end.

// Each bench uses a part of the fixture.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use edge_core::proxy::io::{ConnId, Destination, Effect, Input, PeerInfo, Side};
use edge_core::proxy::{Proxy, ProxySettings};
use federation_policy::{DomainName, Fqdn, PolicyBuilder};

pub const FE: ConnId = ConnId(1);
pub const PARTNER: ConnId = ConnId(100);

pub fn proxy(counting: bool) -> Proxy {
    let d = |s: &str| DomainName::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let f = |s: &str| Fqdn::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let mut b = PolicyBuilder::new();
    b.edge_fqdn("edge.corp.example")
        .our_domain(d("corp.example"))
        .allow(d("partner.example"), Some(f("edge.partner.example")), None)
        .known_server(f("fe1.corp.example"), "6");
    let policy = Arc::new(b.build().unwrap_or_else(|e| panic!("{e:?}")));
    let settings = ProxySettings::new(
        "edge.corp.example",
        "edge-int.corp.example:5061",
        "edge.corp.example:5061",
        f("pool.corp.example"),
    );
    let shared = edge_core::proxy::EdgeShared::new(&policy, Default::default());
    let mut p = Proxy::new(settings, policy, 0, &shared);
    p.seed(1);
    p.set_counting(counting);
    let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap_or_else(|e| panic!("{e}"));
    let peer = |side, name: &str, dialled: Option<Fqdn>| PeerInfo {
        side,
        remote: addr,
        identities: vec![name.to_owned()],
        dialled,
    };
    let now = Instant::now();
    let mut out = Vec::new();
    p.handle(
        Input::ConnUp {
            conn: FE,
            peer: peer(Side::Internal, "fe1.corp.example", None),
        },
        now,
        &mut out,
    );
    p.handle(
        Input::ConnUp {
            conn: PARTNER,
            peer: peer(
                Side::External,
                "edge.partner.example",
                Some(f("edge.partner.example")),
            ),
        },
        now,
        &mut out,
    );
    p
}

pub fn request(i: u64) -> Vec<u8> {
    let body = "x".repeat(300);
    format!(
        "MESSAGE sip:bob@partner.example SIP/2.0\r\nVia: SIP/2.0/TLS fe1.corp.example:5061;branch=z9hG4bKb{i}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@corp.example>;tag=a{i}\r\nTo: <sip:bob@partner.example>\r\nCall-ID: c{i}@fe1.corp.example\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The partner's 200 to the forwarded request: its Via lines, From, To with a tag, Call-ID, CSeq.
pub fn answer(fwd: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(fwd);
    let mut s = String::from("SIP/2.0 200 OK\r\n");
    for line in text.split("\r\n").take_while(|l| !l.is_empty()) {
        let keep = ["Via:", "From:", "Call-ID:", "CSeq:"];
        if keep.iter().any(|k| line.starts_with(k)) {
            s.push_str(line);
            s.push_str("\r\n");
        } else if line.starts_with("To:") {
            s.push_str(line);
            s.push_str(";tag=b\r\n");
        }
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s.into_bytes()
}

/// One whole transaction through `p`; returns the bytes written back to the front end.
pub fn transaction(p: &mut Proxy, i: u64, now: Instant, out: &mut Vec<Effect>) -> usize {
    let req = request(i);
    out.clear();
    p.handle(
        Input::Message {
            conn: FE,
            bytes: &req,
        },
        now,
        out,
    );
    let (fwd, token) = forwarded(out);
    p.handle(Input::Delivered { token, conn: PARTNER }, now, out);
    let resp = answer(&fwd);
    out.clear();
    p.handle(
        Input::Message {
            conn: PARTNER,
            bytes: &resp,
        },
        now,
        out,
    );
    out.iter()
        .map(|e| match e {
            Effect::Send { bytes, .. } => bytes.len(),
            _ => 0,
        })
        .sum()
}

/// A copy of the request the core forwarded to a hop in `out`, and its token.
pub fn forwarded(out: &[Effect]) -> (Vec<u8>, edge_core::proxy::io::Token) {
    out.iter()
        .find_map(|e| match e {
            Effect::Send {
                dest: Destination::Hop(_),
                bytes,
                token: Some(t),
            } => Some((bytes.clone(), *t)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("not forwarded: {out:?}"))
}

/// Every 1,000th transaction `i`, 40 s pass and the due timers run, so what lingers (an INVITE's
/// Timer L) goes and the tables stay the size a live edge has.
pub fn linger(p: &mut Proxy, i: u64, now: &mut Instant) {
    if i % 1000 == 0 {
        *now += std::time::Duration::from_secs(40);
        let mut t = Vec::new();
        p.handle_timeout(*now, &mut t);
    }
}
