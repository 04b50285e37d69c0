//! The proxy core on a virtual clock: every input is synthetic, every effect inspected, no sockets.
//! A front end (conn 1, internal, known server) and a partner (conn 2, external) talk through the
//! core; outbound links get connection ids from 100 up when the test reports them delivered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use federation_policy::{DomainName, Fqdn, PolicyBuilder, RefusalReason, SrvRecord};
use sip_codec::{parse, HeaderName};

use super::io::*;
use super::{EdgeShared, Proxy, ProxySettings};

pub(super) const FE: ConnId = ConnId(1);
const PARTNER_IN: ConnId = ConnId(2);

pub(super) struct H {
    pub(super) proxy: Proxy,
    pub(super) now: Instant,
    out: Vec<Effect>,
}

pub(super) fn d(s: &str) -> DomainName {
    DomainName::parse(s).unwrap()
}
pub(super) fn f(s: &str) -> Fqdn {
    Fqdn::parse(s).unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

impl H {
    pub(super) fn new() -> H {
        let mut b = PolicyBuilder::new();
        b.edge_fqdn("edge.corp.example")
            .our_domain(d("corp.example"))
            .allow(d("partner.example"), Some(f("edge.partner.example")), None)
            .allow(d("srvpartner.example"), None, None)
            .block(d("evil.example"))
            .known_server(f("fe1.corp.example"), "7.0");
        let policy = Arc::new(b.build().unwrap());
        let mut settings = ProxySettings::new(
            "edge.corp.example",
            "edge-int.corp.example:5061",
            "edge.corp.example:5061",
            f("pool.corp.example"),
        );
        settings.timer_c = Duration::from_secs(181);
        let mut h = H {
            proxy: Proxy::new(
                settings,
                Arc::clone(&policy),
                0,
                &EdgeShared::new(&policy, Default::default()),
            ),
            now: Instant::now(),
            out: Vec::new(),
        };
        h.input(Input::ConnUp {
            conn: FE,
            peer: peer(Side::Internal, "fe1.corp.example"),
        });
        h.input(Input::ConnUp {
            conn: PARTNER_IN,
            peer: peer(Side::External, "edge.partner.example"),
        });
        h
    }

    pub(super) fn input(&mut self, i: Input<'_>) -> Vec<Effect> {
        self.proxy.handle(i, self.now, &mut self.out);
        std::mem::take(&mut self.out)
    }

    pub(super) fn msg(&mut self, conn: ConnId, text: &str) -> Vec<Effect> {
        let bytes = text.replace('\n', "\r\n");
        self.input(Input::Message {
            conn,
            bytes: bytes.as_bytes(),
        })
    }

    /// The shell dialled the partner (conn 100, announced once) and sent the bytes of `token`.
    pub(super) fn delivered(&mut self, token: Token) {
        if !self.proxy.peers.contains_key(&ConnId(100)) {
            let mut p = peer(Side::External, "edge.partner.example");
            p.dialled = Some(f("edge.partner.example"));
            self.input(Input::ConnUp {
                conn: ConnId(100),
                peer: p,
            });
        }
        self.input(Input::Delivered {
            token,
            conn: ConnId(100),
        });
    }

    pub(super) fn advance(&mut self, by: Duration) -> Vec<Effect> {
        self.now += by;
        let mut out = Vec::new();
        self.proxy.handle_timeout(self.now, &mut out);
        out
    }
}

pub(super) fn peer(side: Side, name: &str) -> PeerInfo {
    PeerInfo {
        side,
        remote: addr("127.0.0.1:40000"),
        identities: vec![name.to_owned()],
        dialled: None,
    }
}

/// (destination, text) of every Send.
pub(super) fn sends(effects: &[Effect]) -> Vec<(Destination, String, Option<Token>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { dest, bytes, token } => {
                Some((dest.clone(), String::from_utf8_lossy(bytes).into_owned(), *token))
            }
            _ => None,
        })
        .collect()
}

fn status_of(text: &str) -> u16 {
    parse(text.as_bytes()).unwrap().status().unwrap()
}

fn request(method: &str, uri: &str, branch: &str, extra: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\nVia: SIP/2.0/TLS fe1.corp.example:5061;branch={branch}\nMax-Forwards: 70\nFrom: <sip:alice@corp.example>;tag=a1\nTo: <{uri}>\nCall-ID: call-{branch}\nCSeq: 1 {method}\n{extra}Content-Length: 0\n\n"
    )
}

/// The response `status` to a forwarded request `fwd` (which carries our Via on top), as the
/// partner would send it.
pub(super) fn answer(fwd: &str, status: u16, reason: &str, to_tag: Option<&str>) -> String {
    let m = parse(fwd.as_bytes()).unwrap();
    let mut s = format!("SIP/2.0 {status} {reason}\n");
    for h in m.headers() {
        let v = String::from_utf8_lossy(h.raw_value);
        match h.name {
            HeaderName::Via
            | HeaderName::From
            | HeaderName::CallId
            | HeaderName::CSeq
            | HeaderName::RecordRoute => s.push_str(&format!("{}: {v}\n", h.name_str())),
            HeaderName::To => match to_tag {
                Some(t) => s.push_str(&format!("To: {v};tag={t}\n")),
                None => s.push_str(&format!("To: {v}\n")),
            },
            _ => {}
        }
    }
    s.push_str("Content-Length: 0\n\n");
    s
}

#[test]
fn message_out_and_its_200_back() {
    let mut h = H::new();
    let eff = h.msg(
        FE,
        &request("MESSAGE", "sip:bob@partner.example", "z9hG4bKm1", ""),
    );
    let out = sends(&eff);
    assert_eq!(out.len(), 1, "{eff:?}");
    let (dest, fwd, token) = &out[0];
    assert_eq!(
        *dest,
        Destination::Hop(NextHop {
            fqdn: f("edge.partner.example"),
            side: Side::External
        })
    );
    let m = parse(fwd.as_bytes()).unwrap();
    let top = m.top_via().unwrap();
    assert_eq!(top.host, "edge.corp.example");
    assert!(top.branch().unwrap().starts_with("z9hG4bKse"));
    assert_eq!(
        m.vias().count(),
        1,
        "the front end's Via stays inside (topology hiding)"
    );
    assert_eq!(m.max_forwards(), Some(69));
    assert!(
        m.header(HeaderName::RecordRoute).is_none(),
        "MESSAGE creates no dialog"
    );
    h.delivered(token.unwrap());
    let back = sends(&h.msg(ConnId(100), &answer(fwd, 200, "OK", Some("b1"))));
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, Destination::Conn(FE));
    let r = parse(back[0].1.as_bytes()).unwrap();
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.vias().count(), 1);
    assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bKm1"));
    // The transaction lingers, then is gone; nothing else fires.
    assert!(sends(&h.advance(Duration::from_secs(40))).is_empty());
    assert_eq!(h.proxy.txns.servers.len(), 0);
    assert_eq!(h.proxy.txns.clients.len(), 0);
}

#[test]
fn invite_dialog_with_record_route_forks_and_ack() {
    let mut h = H::new();
    let eff = h.msg(
        FE,
        &request(
            "INVITE",
            "sip:bob@partner.example",
            "z9hG4bKi1",
            "Contact: <sip:alice@fe1.corp.example;transport=tls>\n",
        ),
    );
    let out = sends(&eff);
    assert_eq!(out.len(), 2);
    assert_eq!(status_of(&out[0].1), 100, "100 Trying at once");
    let (_, fwd, token) = &out[1];
    let m = parse(fwd.as_bytes()).unwrap();
    // Towards the partner: the edge's external face alone, its internal face sealed in it
    // (topology hiding, docs/topology.md).
    let rr: Vec<String> = m.record_routes().map(|r| r.unwrap().uri.to_owned()).collect();
    assert_eq!(rr.len(), 1, "{fwd}");
    assert!(
        rr[0].starts_with("sip:edge.corp.example:5061;transport=tls;lr;sh="),
        "{fwd}"
    );
    assert!(!fwd.contains("edge-int"), "{fwd}");
    h.delivered(token.unwrap());
    let ringing = sends(&h.msg(ConnId(100), &answer(fwd, 180, "Ringing", Some("b1"))));
    assert_eq!(status_of(&ringing[0].1), 180);
    // A mobile endpoint answers after 60 s: Timer C (181 s) keeps the transaction alive.
    assert!(sends(&h.advance(Duration::from_secs(60))).is_empty());
    let ok1 = sends(&h.msg(ConnId(100), &answer(fwd, 200, "OK", Some("b1"))));
    let ok2 = sends(&h.msg(ConnId(100), &answer(fwd, 200, "OK", Some("b2"))));
    assert_eq!(
        (status_of(&ok1[0].1), ok1[0].0.clone()),
        (200, Destination::Conn(FE))
    );
    assert_eq!(
        status_of(&ok2[0].1),
        200,
        "a second 2xx from a fork is forwarded too"
    );
    // Back inside, the 2xx's Record-Route has the sealed entries opened after the face.
    let back: Vec<String> = parse(ok1[0].1.as_bytes())
        .unwrap()
        .record_routes()
        .map(|r| r.unwrap().uri.to_owned())
        .collect();
    assert_eq!(back.len(), 2, "{}", ok1[0].1);
    assert!(back[0].starts_with("sip:edge.corp.example:5061;transport=tls;lr;sh="));
    assert_eq!(back[1], "sip:edge-int.corp.example:5061;transport=tls;lr");
    // The ACK for the 2xx comes with the route set (our two Record-Routes reversed) and goes out.
    let ack = "ACK sip:bob@10.9.9.9;transport=tls SIP/2.0\nVia: SIP/2.0/TLS fe1.corp.example:5061;branch=z9hG4bKack1\nRoute: <sip:edge-int.corp.example:5061;transport=tls;lr>\nRoute: <sip:edge.corp.example:5061;transport=tls;lr>, <sip:edge.partner.example;lr>\nMax-Forwards: 70\nFrom: <sip:alice@corp.example>;tag=a1\nTo: <sip:bob@partner.example>;tag=b1\nCall-ID: call-z9hG4bKi1\nCSeq: 1 ACK\nContent-Length: 0\n\n";
    let fwd_ack = sends(&h.msg(FE, ack));
    assert_eq!(fwd_ack.len(), 1);
    assert_eq!(
        fwd_ack[0].0,
        Destination::Hop(NextHop {
            fqdn: f("edge.partner.example"),
            side: Side::External
        })
    );
    let a = parse(fwd_ack[0].1.as_bytes()).unwrap();
    let routes: Vec<String> = a.routes().map(|r| r.unwrap().uri.to_owned()).collect();
    assert_eq!(
        routes,
        ["sip:edge.partner.example;lr"],
        "our own Route entries are removed"
    );
}

#[test]
fn timer_f_answers_408_exactly_once() {
    let mut h = H::new();
    let eff = h.msg(
        FE,
        &request("OPTIONS", "sip:bob@partner.example", "z9hG4bKo1", ""),
    );
    let token = sends(&eff)[0].2.unwrap();
    h.delivered(token);
    assert!(sends(&h.advance(Duration::from_secs(31))).is_empty());
    let t = sends(&h.advance(Duration::from_secs(2)));
    assert_eq!(t.len(), 1);
    assert_eq!((status_of(&t[0].1), t[0].0.clone()), (408, Destination::Conn(FE)));
    assert_eq!(h.proxy.open_transactions(), 0);
    // A late 200 is not forwarded: the requester already has its final response.
    let fwd = sends(&eff)[0].1.clone();
    assert!(sends(&h.msg(ConnId(100), &answer(&fwd, 200, "OK", Some("x")))).is_empty());
}

#[test]
fn timer_c_cancels_a_callee_that_never_answers() {
    let mut h = H::new();
    let eff = h.msg(FE, &request("INVITE", "sip:bob@partner.example", "z9hG4bKi2", ""));
    let (_, fwd, token) = sends(&eff)[1].clone();
    h.delivered(token.unwrap());
    h.msg(ConnId(100), &answer(&fwd, 180, "Ringing", Some("b1")));
    assert!(sends(&h.advance(Duration::from_secs(180))).is_empty());
    let t = sends(&h.advance(Duration::from_secs(2)));
    let kinds: Vec<String> = t
        .iter()
        .map(|(d, txt, _)| format!("{d:?} {}", txt.lines().next().unwrap()))
        .collect();
    assert_eq!(t.len(), 2, "{kinds:?}");
    assert!(t[0].1.starts_with("CANCEL sip:bob@partner.example SIP/2.0"));
    assert_eq!(t[0].0, Destination::Conn(ConnId(100)));
    assert_eq!(status_of(&t[1].1), 408);
}

/// Design brief §4: a mobile endpoint may take 60 s to answer. With the real timers (Timer B 32 s,
/// Timer C 181 s) on the virtual clock: 100 Trying at once, the 180 stops Timer B, a 183 at 50 s
/// restarts Timer C, the 200 at 60 s reaches the caller; nothing is invented before it.
#[test]
fn a_mobile_answer_after_60_s_reaches_the_caller() {
    let mut h = H::new();
    assert_eq!(h.proxy.settings.timer_b, Duration::from_secs(32));
    let eff = h.msg(
        FE,
        &request("INVITE", "sip:bob@partner.example", "z9hG4bKmob", ""),
    );
    let out = sends(&eff);
    assert_eq!(status_of(&out[0].1), 100, "100 Trying at once");
    let (_, fwd, token) = out[1].clone();
    h.delivered(token.unwrap());
    assert_eq!(
        sends(&h.msg(ConnId(100), &answer(&fwd, 180, "Ringing", Some("m1")))).len(),
        1
    );
    // Past Timer B: the 180 stopped it.
    assert!(sends(&h.advance(Duration::from_secs(50))).is_empty());
    assert_eq!(
        sends(&h.msg(ConnId(100), &answer(&fwd, 183, "Session Progress", Some("m1")))).len(),
        1
    );
    assert!(sends(&h.advance(Duration::from_secs(10))).is_empty());
    let back = sends(&h.msg(ConnId(100), &answer(&fwd, 200, "OK", Some("m1"))));
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, Destination::Conn(FE));
    assert_eq!(status_of(&back[0].1), 200);
    // Timer C was refreshed by the 183 and is now stopped: nothing fires later either.
    assert!(sends(&h.advance(Duration::from_secs(200))).is_empty());
}

#[test]
fn cancel_after_ringing_goes_downstream_and_487_comes_back() {
    let mut h = H::new();
    let inv = request("INVITE", "sip:bob@partner.example", "z9hG4bKi3", "");
    let eff = h.msg(FE, &inv);
    let (_, fwd, token) = sends(&eff)[1].clone();
    h.delivered(token.unwrap());
    h.msg(ConnId(100), &answer(&fwd, 180, "Ringing", Some("b1")));
    let cancel = inv
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("1 INVITE", "1 CANCEL");
    let c = sends(&h.msg(FE, &cancel));
    assert_eq!(c.len(), 2);
    assert_eq!((status_of(&c[0].1), c[0].0.clone()), (200, Destination::Conn(FE)));
    let down = parse(c[1].1.as_bytes()).unwrap();
    assert_eq!(down.method(), Some("CANCEL"));
    assert_eq!(
        down.top_via().unwrap().branch(),
        parse(fwd.as_bytes()).unwrap().top_via().unwrap().branch()
    );
    // The partner answers our CANCEL first: same branch, CSeq method CANCEL — absorbed, not forwarded.
    let cancel_ok = answer(&fwd, 200, "OK", Some("b1")).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    assert!(sends(&h.msg(ConnId(100), &cancel_ok)).is_empty());
    let r = sends(&h.msg(ConnId(100), &answer(&fwd, 487, "Request Terminated", Some("b1"))));
    assert_eq!(r.len(), 2, "ACK downstream and 487 upstream");
    assert!(r[0].1.starts_with("ACK sip:bob@partner.example"));
    assert_eq!((status_of(&r[1].1), r[1].0.clone()), (487, Destination::Conn(FE)));
}

#[test]
fn delivery_failures_become_diagnosed_responses() {
    let mut h = H::new();
    let eff = h.msg(
        FE,
        &request("MESSAGE", "sip:bob@partner.example", "z9hG4bKm2", ""),
    );
    let token = sends(&eff)[0].2.unwrap();
    let r = sends(&h.input(Input::DeliveryFailed {
        token,
        failure: DeliveryFailure::CertificateMismatch {
            presented: vec!["rogue.example".into()],
        },
    }));
    let m = parse(r[0].1.as_bytes()).unwrap();
    assert_eq!(m.status(), Some(504));
    let diag = m.ms_diagnostics().unwrap();
    assert_eq!(diag.id, 1010);
    assert_eq!(diag.source(), Some("edge.corp.example"));
    assert_eq!(
        diag.param("ErrorType"),
        Some("The peer certificate does not contain a matching FQDN")
    );
    assert_eq!(diag.param("PeerServer"), Some("rogue.example"));
    // Towards a partner, the public form without source.
    let inbound = "MESSAGE sip:alice@corp.example SIP/2.0\nVia: SIP/2.0/TLS edge.partner.example;branch=z9hG4bKp1\nMax-Forwards: 70\nFrom: <sip:bob@partner.example>;tag=b1\nTo: <sip:alice@corp.example>\nCall-ID: in-1\nCSeq: 1 MESSAGE\nContent-Length: 0\n\n";
    let eff = h.msg(PARTNER_IN, inbound);
    let s = sends(&eff);
    assert_eq!(
        s[0].0,
        Destination::Hop(NextHop {
            fqdn: f("pool.corp.example"),
            side: Side::Internal
        })
    );
    let r = sends(&h.input(Input::DeliveryFailed {
        token: s[0].2.unwrap(),
        failure: DeliveryFailure::Connect("connection refused".into()),
    }));
    let m = parse(r[0].1.as_bytes()).unwrap();
    assert_eq!(
        (m.status(), r[0].0.clone()),
        (Some(504), Destination::Conn(PARTNER_IN))
    );
    assert!(m.ms_diagnostics().is_err());
    assert_eq!(m.ms_diagnostics_public().unwrap().source(), None);
    assert_eq!(
        m.ms_diagnostics_public().unwrap().id,
        1904,
        "cannot connect to the next hop"
    );
}

#[test]
fn a_dead_link_answers_every_open_transaction() {
    let mut h = H::new();
    let mut tokens = Vec::new();
    for i in 0..5 {
        let eff = h.msg(
            FE,
            &request("MESSAGE", "sip:bob@partner.example", &format!("z9hG4bKd{i}"), ""),
        );
        tokens.push(sends(&eff)[0].2.unwrap());
    }
    for t in &tokens {
        h.delivered(*t);
    }
    assert_eq!(h.proxy.open_transactions(), 5);
    let r = sends(&h.input(Input::ConnClosed {
        conn: ConnId(100),
        reason: LinkEnd::PeerClosed,
    }));
    assert_eq!(r.len(), 5);
    assert!(r
        .iter()
        .all(|(d, t, _)| *d == Destination::Conn(FE) && status_of(t) == 503));
    assert_eq!(h.proxy.open_transactions(), 0);
}

#[test]
fn refusals_checks_and_limits() {
    let mut h = H::new();
    let blocked = sends(&h.msg(FE, &request("MESSAGE", "sip:x@evil.example", "z9hG4bKb1", "")));
    let m = parse(blocked[0].1.as_bytes()).unwrap();
    assert_eq!(m.status(), Some(403));
    assert_eq!(m.ms_diagnostics().unwrap().id, 1005);
    let mf0 = request("MESSAGE", "sip:bob@partner.example", "z9hG4bKb2", "")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(status_of(&sends(&h.msg(FE, &mf0))[0].1), 483);
    let looped = request(
        "MESSAGE",
        "sip:bob@partner.example",
        "z9hG4bKb3",
        "Via: SIP/2.0/TLS edge.corp.example:5061;branch=z9hG4bKse0x99\n",
    );
    let r = sends(&h.msg(FE, &looped));
    assert_eq!(status_of(&r[0].1), 482);
    assert_eq!(
        parse(r[0].1.as_bytes()).unwrap().ms_diagnostics().unwrap().id,
        1906
    );
    let no_callid = request("MESSAGE", "sip:bob@partner.example", "z9hG4bKb4", "")
        .replace("Call-ID: call-z9hG4bKb4\n", "");
    let bad = sends(&h.msg(FE, &no_callid));
    let m = parse(bad[0].1.as_bytes()).unwrap();
    assert_eq!(m.status(), Some(400));
    let warning = String::from_utf8_lossy(m.header(HeaderName::Warning).unwrap().raw_value).into_owned();
    assert!(warning.contains("Call-ID: missing"), "{warning}");
    let register = sends(&h.msg(FE, &request("REGISTER", "sip:partner.example", "z9hG4bKb5", "")));
    assert_eq!(
        parse(register[0].1.as_bytes())
            .unwrap()
            .ms_diagnostics()
            .unwrap()
            .id,
        1027
    );
    let spoof = "MESSAGE sip:alice@corp.example SIP/2.0\nVia: SIP/2.0/TLS edge.partner.example;branch=z9hG4bKp2\nMax-Forwards: 70\nFrom: <sip:ceo@corp.example>;tag=b1\nTo: <sip:alice@corp.example>\nCall-ID: in-2\nCSeq: 1 MESSAGE\nContent-Length: 0\n\n";
    let r = sends(&h.msg(PARTNER_IN, spoof));
    let m = parse(r[0].1.as_bytes()).unwrap();
    assert_eq!(
        (m.status(), m.ms_diagnostics_public().unwrap().id),
        (Some(403), 1902)
    );
    // Unparseable start line: nothing to answer, the connection is closed.
    let eff = h.input(Input::Message {
        conn: FE,
        bytes: b"\x00\x01garbage\r\n\r\n",
    });
    assert!(eff.contains(&Effect::Close { conn: FE }));
}

#[test]
fn unknown_internal_peers_are_disconnected() {
    let mut h = H::new();
    let eff = h.input(Input::ConnUp {
        conn: ConnId(7),
        peer: peer(Side::Internal, "laptop.corp.example"),
    });
    assert!(eff.contains(&Effect::Close { conn: ConnId(7) }));
}

#[test]
fn srv_routing_with_failover() {
    let mut h = H::new();
    let eff = h.msg(
        FE,
        &request("MESSAGE", "sip:bob@srvpartner.example", "z9hG4bKs1", ""),
    );
    let Some(Effect::LookupSrv { name, token }) = eff
        .iter()
        .find(|e| matches!(e, Effect::LookupSrv { .. }))
        .cloned()
    else {
        panic!("{eff:?}")
    };
    assert_eq!(name, "_sipfederationtls._tcp.srvpartner.example");
    let records = vec![
        SrvRecord {
            priority: 10,
            weight: 1,
            port: 5061,
            target: "a.srvpartner.example".into(),
        },
        SrvRecord {
            priority: 20,
            weight: 1,
            port: 5062,
            target: "b.srvpartner.example".into(),
        },
    ];
    let s = sends(&h.input(Input::Srv {
        token,
        result: SrvResult::Records(records),
    }));
    assert_eq!(
        s[0].0,
        Destination::Hop(NextHop {
            fqdn: f("a.srvpartner.example:5061"),
            side: Side::External
        })
    );
    let s2 = sends(&h.input(Input::DeliveryFailed {
        token: s[0].2.unwrap(),
        failure: DeliveryFailure::Connect("refused".into()),
    }));
    assert_eq!(
        s2[0].0,
        Destination::Hop(NextHop {
            fqdn: f("b.srvpartner.example:5062"),
            side: Side::External
        })
    );
    assert_eq!(s2[0].1, s[0].1, "the same request goes to the next target");
    let eff = h.msg(
        FE,
        &request("MESSAGE", "sip:bob@srvpartner.example", "z9hG4bKs2", ""),
    );
    let Some(Effect::LookupSrv { token, .. }) =
        eff.into_iter().find(|e| matches!(e, Effect::LookupSrv { .. }))
    else {
        panic!()
    };
    let r = sends(&h.input(Input::Srv {
        token,
        result: SrvResult::NoRecord,
    }));
    assert_eq!(
        parse(r[0].1.as_bytes()).unwrap().ms_diagnostics().unwrap().id,
        1008
    );
}

/// A partner that saw a front end's Via (it travels with the forwarded request) and sends a request
/// with that branch on its own connection gets 482, never the response stored for the front end
/// (which carries the inside's ms-diagnostics).
#[test]
fn a_copied_branch_from_another_connection_is_not_a_retransmission() {
    let mut h = H::new();
    let inv = request("INVITE", "sip:bob@partner.example", "z9hG4bKcopy", "");
    let eff = h.msg(FE, &inv);
    let (_, fwd, token) = sends(&eff)
        .into_iter()
        .find(|(d, _, _)| matches!(d, Destination::Hop(_)))
        .unwrap();
    h.delivered(token.unwrap());
    let r = sends(&h.msg(ConnId(100), &answer(&fwd, 486, "Busy Here", Some("b"))));
    let busy = r
        .iter()
        .find(|(d, _, _)| *d == Destination::Conn(FE))
        .unwrap()
        .1
        .clone();
    let copied = sends(&h.msg(PARTNER_IN, &inv));
    assert_eq!(copied.len(), 1, "{copied:?}");
    assert_eq!(copied[0].0, Destination::Conn(PARTNER_IN));
    assert_ne!(copied[0].1, busy);
    let m = parse(copied[0].1.as_bytes()).unwrap();
    assert_eq!(m.status(), Some(482));
    assert!(
        m.ms_diagnostics().is_err(),
        "nothing of the inside: {}",
        copied[0].1
    );
    // The front end's own retransmission still gets its final.
    assert_eq!(sends(&h.msg(FE, &inv))[0].1, busy);
}

#[test]
fn retransmissions_and_partner_failures_without_diagnostics() {
    let mut h = H::new();
    let req = request("MESSAGE", "sip:bob@partner.example", "z9hG4bKr1", "");
    let eff = h.msg(FE, &req);
    let (_, fwd, token) = sends(&eff)[0].clone();
    h.delivered(token.unwrap());
    let r = sends(&h.msg(ConnId(100), &answer(&fwd, 486, "Busy Here", Some("b"))));
    let m = parse(r[0].1.as_bytes()).unwrap();
    let diag = m.ms_diagnostics().unwrap();
    assert_eq!((m.status(), diag.id), (Some(486), 1034));
    assert_eq!(
        diag.param("PeerServer"),
        Some("edge.partner.example"),
        "the certificate name of the link the failure came on"
    );
    // A non-INVITE transaction keeps nothing after its final on a reliable transport (RFC 3261
    // Timer J = 0): gone at the end of the turn.
    h.advance(Duration::ZERO);
    assert_eq!((h.proxy.txns.servers.len(), h.proxy.txns.clients.len()), (0, 0));
    // An INVITE lingers (Timer L): its retransmission gets the same final again, nothing forwarded.
    let inv = request("INVITE", "sip:bob@partner.example", "z9hG4bKr2", "");
    let eff = h.msg(FE, &inv);
    let (_, fwd, token) = sends(&eff)
        .into_iter()
        .find(|(d, _, _)| matches!(d, Destination::Hop(_)))
        .unwrap();
    h.delivered(token.unwrap());
    let r = sends(&h.msg(ConnId(100), &answer(&fwd, 486, "Busy Here", Some("b"))));
    let busy = r
        .iter()
        .find(|(d, _, _)| *d == Destination::Conn(FE))
        .unwrap()
        .1
        .clone();
    h.advance(Duration::from_secs(1));
    let again = sends(&h.msg(FE, &inv));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1, busy);
    h.advance(Duration::from_secs(32));
    assert_eq!(h.proxy.txns.servers.len(), 0, "gone after Timer L");
}

#[test]
fn draining_refuses_new_requests() {
    let mut h = H::new();
    h.proxy.begin_shutdown();
    let r = sends(&h.msg(
        FE,
        &request("MESSAGE", "sip:bob@partner.example", "z9hG4bKq1", ""),
    ));
    let m = parse(r[0].1.as_bytes()).unwrap();
    assert_eq!(m.status(), Some(503));
    assert!(m.header(HeaderName::RetryAfter).is_some());
}

#[test]
fn an_unframeable_request_is_answered_from_its_head_then_closed() {
    let mut h = H::new();
    let head = request("MESSAGE", "sip:bob@partner.example", "z9hG4bKu1", "")
        .replace("Content-Length: 0", "Content-Length: 99999999");
    let bytes = head.replace('\n', "\r\n");
    let eff = h.input(Input::Unframeable {
        conn: FE,
        head: bytes.as_bytes(),
        error: sip_codec::FrameError::BodyTooLarge(99_999_999),
    });
    let s = sends(&eff);
    let m = parse(s[0].1.as_bytes()).unwrap();
    assert_eq!((m.status(), s[0].0.clone()), (Some(513), Destination::Conn(FE)));
    assert!(
        String::from_utf8_lossy(m.header(HeaderName::Warning).unwrap().raw_value).contains("99999999 octets")
    );
    assert_eq!(eff.last(), Some(&Effect::Close { conn: FE }));
    let bad = bytes.replace("Content-Length: 99999999", "Content-Length: many");
    let eff = h.input(Input::Unframeable {
        conn: FE,
        head: bad.as_bytes(),
        error: sip_codec::FrameError::BadContentLength,
    });
    assert_eq!(status_of(&sends(&eff)[0].1), 400);
    // Not even a request line: nothing to answer, only the close.
    let eff = h.input(Input::Unframeable {
        conn: FE,
        head: b"\x01\x02\r\n\r\n",
        error: sip_codec::FrameError::MissingContentLength,
    });
    assert_eq!(eff.iter().filter(|e| matches!(e, Effect::Send { .. })).count(), 0);
    assert!(eff.contains(&Effect::Close { conn: FE }));
}

#[test]
fn re_arming_timer_c_leaves_no_dead_timers_behind() {
    let mut h = H::new();
    let eff = h.msg(FE, &request("INVITE", "sip:bob@partner.example", "z9hG4bKt1", ""));
    let (_, fwd, token) = sends(&eff)[1].clone();
    h.delivered(token.unwrap());
    let armed = h.proxy.timers.len();
    for _ in 0..1000 {
        h.msg(ConnId(100), &answer(&fwd, 180, "Ringing", Some("b1")));
    }
    assert_eq!(
        h.proxy.timers.len(),
        armed,
        "each 180 replaces Timer C, it does not add one"
    );
    assert_eq!(h.proxy.timers.len(), h.proxy.timers.kinds_len());
}

#[test]
fn the_im_filter_refuses_a_blocked_link_with_1905() {
    let mut h = H::new();
    let body = "see http://example.com/x";
    let text = request(
        "MESSAGE",
        "sip:bob@partner.example",
        "z9hG4bKim1",
        "Content-Type: text/plain\n",
    )
    .replace("Content-Length: 0", &format!("Content-Length: {}", body.len()))
        + body;
    let r = sends(&h.msg(FE, &text));
    let m = parse(r[0].1.as_bytes()).unwrap();
    assert_eq!((m.status(), m.ms_diagnostics().unwrap().id), (Some(403), 1905));
    assert_eq!(m.ms_diagnostics().unwrap().param("prefix"), Some("http:"));
    // A link-free message goes through.
    let plain = "lunch at noon?";
    let text = request(
        "MESSAGE",
        "sip:bob@partner.example",
        "z9hG4bKim2",
        "Content-Type: text/plain\n",
    )
    .replace("Content-Length: 0", &format!("Content-Length: {}", plain.len()))
        + plain;
    assert!(matches!(
        sends(&h.msg(FE, &text)).first(),
        Some((Destination::Hop(_), _, _))
    ));
}

/// RFC 4475 §3.1.2.1 (`badinv01`): empty Via and Contact parameters are refused with 400 and a
/// Warning naming the header, from either side, and nothing is forwarded.
#[test]
fn extraneous_header_field_separators_get_400() {
    let mut h = H::new();
    let bad = "INVITE sip:alice@corp.example SIP/2.0\nTo: sip:alice@corp.example\nFrom: sip:bob@partner.example;tag=134161461246\nMax-Forwards: 7\nCall-ID: badinv01.0ha0isndaksdjasdf3234nas\nCSeq: 8 INVITE\nVia: SIP/2.0/TLS edge.partner.example;branch=z9hG4bKbadinv;;,;,,\nContact: \"Joe\" <sip:joe@example.org>;;;;\nContent-Length: 0\n\n";
    for conn in [PARTNER_IN, FE] {
        let eff = h.msg(conn, bad);
        let s = sends(&eff);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].0, Destination::Conn(conn));
        let m = parse(s[0].1.as_bytes()).unwrap();
        assert_eq!(m.status(), Some(400));
        let warning = String::from_utf8_lossy(m.header(HeaderName::Warning).unwrap().raw_value).into_owned();
        assert!(warning.contains("Via"), "{warning}");
    }
    // The Contact alone (a well-formed Via) is refused too.
    let contact_only = bad.replace(";branch=z9hG4bKbadinv;;,;,,", ";branch=z9hG4bKbadinv2");
    let s = sends(&h.msg(PARTNER_IN, &contact_only));
    let m = parse(s[0].1.as_bytes()).unwrap();
    assert_eq!(m.status(), Some(400));
    let warning = String::from_utf8_lossy(m.header(HeaderName::Warning).unwrap().raw_value).into_owned();
    assert!(warning.contains("Contact"), "{warning}");
}

/// Issue 8.1: a response is matched only on the connection its request went out on, and branches
/// are unguessable. Another peer holding the real branch (a second partner's inbound link, a front
/// end) cannot answer the transaction; the real partner still can.
#[test]
fn responses_on_another_connection_are_dropped_and_counted() {
    let mut h = H::new();
    let eff = h.msg(
        FE,
        &request("MESSAGE", "sip:bob@partner.example", "z9hG4bKinj1", ""),
    );
    let (_, fwd, token) = sends(&eff)[0].clone();
    h.delivered(token.unwrap());
    let forged = answer(&fwd, 200, "OK", Some("forged"));
    for conn in [PARTNER_IN, FE] {
        let eff = h.msg(conn, &forged);
        assert!(
            sends(&eff).is_empty(),
            "a forged answer on {conn:?} went through: {eff:?}"
        );
        assert!(eff
            .iter()
            .any(|e| matches!(e, Effect::Log(r) if r.event == "response_wrong_connection")));
    }
    assert_eq!(h.proxy.stats().responses_wrong_connection, 2);
    let back = sends(&h.msg(ConnId(100), &answer(&fwd, 202, "Accepted", Some("real"))));
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, Destination::Conn(FE));
    assert!(back[0].1.contains("tag=real"), "{}", back[0].1);
    // An unknown branch is counted apart.
    let stray = answer(&fwd, 200, "OK", None).replace("z9hG4bKse", "z9hG4bKsf");
    assert!(sends(&h.msg(ConnId(100), &stray)).is_empty());
    assert_eq!(h.proxy.stats().responses_unknown_branch, 1);
}

/// Branches carry 64 secret bits: two cores seeded differently write different branches for the
/// same sequence of requests, and consecutive branches share no guessable counter suffix alone.
#[test]
fn branches_are_unguessable() {
    let branch_of = |seed: u64| {
        let mut h = H::new();
        h.proxy.seed(seed);
        (0..2)
            .map(|i| {
                let eff = h.msg(
                    FE,
                    &request("MESSAGE", "sip:bob@partner.example", &format!("z9hG4bKg{i}"), ""),
                );
                let fwd = sends(&eff)[0].1.clone();
                parse(fwd.as_bytes())
                    .unwrap()
                    .top_via()
                    .unwrap()
                    .branch()
                    .unwrap()
                    .to_owned()
            })
            .collect::<Vec<_>>()
    };
    let (a, b) = (branch_of(1), branch_of(2));
    assert_ne!(a, b);
    assert_eq!(branch_of(1), a, "the seed alone decides them");
    for br in a.iter().chain(&b) {
        assert!(
            br.starts_with("z9hG4bKse") && br.len() >= "z9hG4bKse".len() + 16 + 3,
            "{br}"
        );
    }
    let secret = |br: &str| br["z9hG4bKse".len().."z9hG4bKse".len() + 16].to_owned();
    assert_ne!(secret(&a[0]), secret(&a[1]));
}

/// Issue 8.2: a front end may not send From a domain the edge does not serve (403, 1907 naming
/// it, towards internal with `source`); nothing goes out.
#[test]
fn outbound_from_a_foreign_domain_is_refused_1907() {
    let mut h = H::new();
    let spoof = request("MESSAGE", "sip:bob@partner.example", "z9hG4bKsp1", "")
        .replace("From: <sip:alice@corp.example>", "From: <sip:ceo@bank.example>");
    let s = sends(&h.msg(FE, &spoof));
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].0, Destination::Conn(FE));
    let m = parse(s[0].1.as_bytes()).unwrap();
    assert_eq!(m.status(), Some(403));
    let d = m.ms_diagnostics().unwrap();
    assert_eq!(d.id, 1907);
    assert!(s[0].1.contains("domain=\"bank.example\""), "{}", s[0].1);
    assert!(s[0].1.contains("source=\"edge.corp.example\""), "{}", s[0].1);
    // In dialog too: the edge vouches for its own users only.
    let bye = request("BYE", "sip:bob@edge.partner.example", "z9hG4bKsp2", "")
        .replace("From: <sip:alice@corp.example>", "From: <sip:x@partner.example>")
        .replace(
            "To: <sip:bob@edge.partner.example>",
            "To: <sip:bob@partner.example>;tag=t",
        );
    let s = sends(&h.msg(FE, &bye));
    assert_eq!(
        parse(s[0].1.as_bytes()).unwrap().ms_diagnostics().unwrap().id,
        1907
    );
    assert_eq!(h.proxy.stats().generated_for(RefusalReason::FromNotOurs), 2);
    // Our own domain still goes out.
    let ok = sends(&h.msg(
        FE,
        &request("MESSAGE", "sip:bob@partner.example", "z9hG4bKsp3", ""),
    ));
    assert!(matches!(ok[0].0, Destination::Hop(_)), "{ok:?}");
}

/// Issue 8.3: a partner's out-of-dialog request for a domain that is not ours is refused (403,
/// 1908, `ms-diagnostics-public` without `source`) instead of being relayed to the front ends; an
/// in-dialog request carrying our Route still crosses.
#[test]
fn inbound_requests_for_foreign_domains_are_not_relayed_1908() {
    let mut h = H::new();
    let relay = "MESSAGE sip:victim@bank.example SIP/2.0\nVia: SIP/2.0/TLS edge.partner.example;branch=z9hG4bKr1\nMax-Forwards: 70\nFrom: <sip:bob@partner.example>;tag=b1\nTo: <sip:victim@bank.example>\nCall-ID: relay-1\nCSeq: 1 MESSAGE\nContent-Length: 0\n\n";
    for text in [
        relay.to_owned(),
        relay
            .replace("sip:victim@bank.example SIP", "sip:victim@127.0.0.1 SIP")
            .replace("z9hG4bKr1", "z9hG4bKr2"),
    ] {
        let eff = h.msg(PARTNER_IN, &text);
        // The log line says the reason once, then what the partner was told.
        let logged: Vec<&LogRecord> = eff
            .iter()
            .filter_map(|e| match e {
                Effect::Log(r) if r.event == "relay" => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(logged.len(), 1, "{eff:?}");
        assert_eq!(
            logged[0].text,
            "Request-URI domain is not one of this edge's domains (403 Forbidden, 1908)"
        );
        let s = sends(&eff);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].0, Destination::Conn(PARTNER_IN));
        let m = parse(s[0].1.as_bytes()).unwrap();
        assert_eq!(m.status(), Some(403));
        assert_eq!(m.ms_diagnostics_public().unwrap().id, 1908);
        assert!(m.header(HeaderName::MsDiagnostics).is_none());
        assert!(!s[0].1.contains("source="), "{}", s[0].1);
    }
    assert_eq!(h.proxy.stats().generated_for(RefusalReason::Relay), 2);
    // In dialog (our Route first), to the front end's contact: forwarded.
    let bye = "BYE sip:alice@fe1.corp.example:5061;transport=tls SIP/2.0\nVia: SIP/2.0/TLS edge.partner.example;branch=z9hG4bKr3\nRoute: <sip:edge.corp.example:5061;transport=tls;lr>\nMax-Forwards: 70\nFrom: <sip:bob@partner.example>;tag=b1\nTo: <sip:alice@corp.example>;tag=a1\nCall-ID: dlg-1\nCSeq: 2 BYE\nContent-Length: 0\n\n";
    let s = sends(&h.msg(PARTNER_IN, bye));
    assert!(
        matches!(&s[0].0, Destination::Hop(hop) if hop.side == Side::Internal),
        "{s:?}"
    );
    // For our domain: forwarded.
    let ok = relay
        .replace("bank.example", "corp.example")
        .replace("z9hG4bKr1", "z9hG4bKr4");
    let s = sends(&h.msg(PARTNER_IN, &ok));
    assert!(matches!(&s[0].0, Destination::Hop(_)), "{s:?}");
}

/// The one outcome path: each way a client transaction ends is counted exactly once (by method),
/// with its latency, and what arrives after the outcome (a late 200, a close) counts nothing more.
#[test]
fn every_client_outcome_is_counted_once() {
    use super::stats::{MethodLabel, OutcomeLabel};
    let mut h = H::new();
    let outcome = |h: &H, m: MethodLabel, o: OutcomeLabel| h.proxy.stats().outcomes[m as usize][o as usize];
    // Answered.
    let eff = h.msg(
        FE,
        &request("MESSAGE", "sip:bob@partner.example", "z9hG4bKoc1", ""),
    );
    let (_, fwd, token) = sends(&eff)[0].clone();
    h.delivered(token.unwrap());
    h.now += Duration::from_millis(20);
    h.msg(ConnId(100), &answer(&fwd, 200, "OK", Some("b")));
    h.msg(ConnId(100), &answer(&fwd, 200, "OK", Some("b")));
    assert_eq!(outcome(&h, MethodLabel::Message, OutcomeLabel::Answered), 1);
    let lat = &h.proxy.stats().latency[MethodLabel::Message as usize];
    assert_eq!((lat.count(), lat.sum_micros), (1, 20_000));
    // Timed out, then a late answer.
    let eff = h.msg(
        FE,
        &request("OPTIONS", "sip:bob@partner.example", "z9hG4bKoc2", ""),
    );
    let (_, fwd, token) = sends(&eff)[0].clone();
    h.delivered(token.unwrap());
    h.advance(Duration::from_secs(33));
    h.msg(ConnId(100), &answer(&fwd, 200, "OK", Some("late")));
    assert_eq!(outcome(&h, MethodLabel::Options, OutcomeLabel::TimedOut), 1);
    assert_eq!(outcome(&h, MethodLabel::Options, OutcomeLabel::Answered), 0);
    // Delivery failed.
    let eff = h.msg(
        FE,
        &request("MESSAGE", "sip:bob@partner.example", "z9hG4bKoc3", ""),
    );
    let token = sends(&eff)[0].2.unwrap();
    h.input(Input::DeliveryFailed {
        token,
        failure: DeliveryFailure::Connect("refused".into()),
    });
    assert_eq!(outcome(&h, MethodLabel::Message, OutcomeLabel::DeliveryFailed), 1);
    // Link lost, then the close again.
    let eff = h.msg(
        FE,
        &request(
            "SUBSCRIBE",
            "sip:bob@partner.example",
            "z9hG4bKoc4",
            "Event: presence\n",
        ),
    );
    let token = sends(&eff)[0].2.unwrap();
    h.delivered(token);
    h.input(Input::ConnClosed {
        conn: ConnId(100),
        reason: LinkEnd::PeerClosed,
    });
    h.input(Input::ConnClosed {
        conn: ConnId(100),
        reason: LinkEnd::PeerClosed,
    });
    assert_eq!(outcome(&h, MethodLabel::Subscribe, OutcomeLabel::LinkLost), 1);
    let s = h.proxy.stats();
    assert_eq!(s.requests_in[0][MethodLabel::Message as usize], 2);
    assert_eq!(s.requests_out[1][MethodLabel::Message as usize], 2);
    assert_eq!(s.responses_in[1][MethodLabel::Message as usize][1], 2);
    assert_eq!(s.generated.get(&(408, RefusalReason::NoRefusal)), Some(&1));
    assert_eq!(s.generated.get(&(504, RefusalReason::ConnectFailed)), Some(&1));
    assert_eq!(s.generated.get(&(503, RefusalReason::LinkLost)), Some(&1));
    assert_eq!(
        s.decisions.get(&(Side::Internal, "accept", "allowed_partner")),
        Some(&4)
    );
    assert_eq!(s.partner_decisions.get("partner.example"), Some(&[4, 0]));
    // Counting off: the same traffic counts nothing.
    let mut h = H::new();
    h.proxy.set_counting(false);
    h.msg(
        FE,
        &request("MESSAGE", "sip:bob@partner.example", "z9hG4bKoc5", ""),
    );
    // The two links that came up in H::new, before counting was switched off, stay as they were.
    let expected = super::stats::CoreStats {
        links: h.proxy.stats().links.clone(),
        ..Default::default()
    };
    assert_eq!(expected.links.len(), 2);
    assert_eq!(h.proxy.stats(), &expected);
}

/// RFC 3261 §16.6 step 3: a request without Max-Forwards is forwarded with `Max-Forwards: 70`
/// (real equipment sends them; the shared corpus expects "handle normally"), not refused.
#[test]
fn a_request_without_max_forwards_is_forwarded_with_70() {
    let mut h = H::new();
    let text =
        request("MESSAGE", "sip:bob@partner.example", "z9hG4bKmf1", "").replace("Max-Forwards: 70\n", "");
    let out = sends(&h.msg(FE, &text));
    let (dest, fwd, _) = out.first().cloned().unwrap();
    assert!(matches!(dest, Destination::Hop(_)), "{fwd}");
    let m = parse(fwd.as_bytes()).unwrap();
    assert_eq!(m.max_forwards(), Some(70), "{fwd}");
}

#[test]
fn the_cores_of_one_edge_share_its_limiter_relay_and_subscription_count() {
    let mut b = PolicyBuilder::new();
    b.edge_fqdn("edge.corp.example")
        .our_domain(DomainName::parse("corp.example").unwrap());
    let policy = Arc::new(b.build().unwrap());
    let settings = ProxySettings::new(
        "edge.corp.example",
        "edge-int.corp.example:5061",
        "edge.corp.example:5061",
        f("pool.corp.example"),
    );
    let shared = EdgeShared::new(&policy, Default::default());
    let one = Proxy::new(settings.clone(), Arc::clone(&policy), 0, &shared);
    let two = Proxy::new(settings, Arc::clone(&policy), 1, &shared.clone());
    assert!(Arc::ptr_eq(&one.shared.limiter, &two.shared.limiter));
    assert!(Arc::ptr_eq(&one.shared.relay, &two.shared.relay));
    assert!(Arc::ptr_eq(&one.shared.subscriptions, &two.shared.subscriptions));
    // Topology hiding's key: what one worker seals, another opens (a dialog's later messages land
    // on any worker); the found-in-the-field bug was a key per worker.
    assert!(Arc::ptr_eq(&one.shared.sealer, &two.shared.sealer));
    let token = one
        .shared
        .sealer
        .seal(&mut rand::rng(), &["<sip:fe1.corp.example;lr>"]);
    assert_eq!(
        two.shared.sealer.open(&token).unwrap(),
        ["<sip:fe1.corp.example;lr>"]
    );
    let other = Proxy::new(
        one.settings.clone(),
        policy.clone(),
        0,
        &EdgeShared::new(&policy, Default::default()),
    );
    assert!(
        !Arc::ptr_eq(&one.shared.limiter, &other.shared.limiter),
        "another edge shares nothing"
    );
}
