//! The proxy scenarios of `edge-core`'s unit tests (`crates/edge-core/src/proxy/tests.rs`), for real:
//! the `sipedge run` binary on loopback, a front end (`fe1.corp.test`: a TLS client on the internal
//! listener and the UAS the edge forwards partner traffic to) and a partner edge
//! (`edge.partner.test`: the UAS the edge dials, and a TLS client on the external listener), all
//! with certificates from a test PKI. Each test has its own edge and peers.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sip_codec::{ContactValue, HeaderName, Message};
use support::sip::{self, p, reply, reply_with};
use support::{Edge, EdgeOpts, Reply, TestPki, TlsPeer, TlsUas};

const WAIT: Duration = Duration::from_secs(5);

/// One edge with its two UAS peers (front end and partner), and clients for both listeners.
/// Fields drop in order: the edge first (its stderr is printed if the test panicked), then the peers.
struct World {
    edge: Edge,
    fe_uas: TlsUas,
    partner: Option<TlsUas>,
    pki: Arc<TestPki>,
}

impl World {
    /// `partner_port`: the partner UAS's port, or (no partner UAS) where the pinned FQDN points.
    fn start(
        pki: Arc<TestPki>,
        fe_uas: TlsUas,
        partner: Option<TlsUas>,
        partner_port: u16,
        tweak: impl FnOnce(&mut EdgeOpts),
    ) -> World {
        let mut opts = EdgeOpts::new(fe_uas.port(), partner_port);
        tweak(&mut opts);
        let edge = Edge::start(&opts.render(&pki), &pki);
        World {
            edge,
            fe_uas,
            partner,
            pki,
        }
    }

    fn partner(&self) -> &TlsUas {
        self.partner.as_ref().unwrap()
    }

    fn ext_port(&self) -> u16 {
        self.edge.external_addr.port()
    }

    fn int_port(&self) -> u16 {
        self.edge.internal_addr.port()
    }

    /// The front end on the internal listener (certificate fe1.corp.test).
    fn fe(&self) -> TlsPeer {
        TlsPeer::connect(
            self.edge.internal_addr,
            &self.pki.fe,
            &self.pki.internal_ca.cert,
            "edge-int.corp.test",
        )
        .unwrap_or_else(|e| {
            panic!(
                "FE cannot connect to the internal listener: {e}\n{}",
                self.edge.log_dump()
            )
        })
    }

    /// The partner on the external listener (certificate edge.partner.test).
    fn partner_client(&self, addr: SocketAddr) -> TlsPeer {
        TlsPeer::connect(
            addr,
            &self.pki.partner,
            &self.pki.internal_ca.cert,
            "edge.corp.test",
        )
        .unwrap_or_else(|e| {
            panic!(
                "partner cannot connect to the external listener: {e}\n{}",
                self.edge.log_dump()
            )
        })
    }

    /// Asserts what every request forwarded to the partner carries: our Via on top, its own below,
    /// Max-Forwards decremented.
    fn assert_forwarded_out(&self, fwd: &str, fe_branch: &str) {
        let m = p(fwd);
        let top = m.top_via().unwrap();
        let sent_by = format!(
            "{}:{}",
            top.host,
            top.port.map_or(String::new(), |p| p.to_string())
        );
        assert_eq!(
            sent_by,
            format!("edge.corp.test:{}", self.ext_port()),
            "top Via sent-by:\n{fwd}"
        );
        assert!(
            top.branch().unwrap().starts_with("z9hG4bKse"),
            "our branch:\n{fwd}"
        );
        let vias: Vec<String> = m
            .vias()
            .map(|v| v.unwrap().branch().unwrap_or("").to_owned())
            .collect();
        // Topology hiding (docs/topology.md): the FE's Via stays inside; its response gets it back.
        assert_eq!(vias.len(), 1, "the edge's Via alone:\n{fwd}");
        assert!(!vias.iter().any(|b| b == fe_branch), "{fwd}");
        assert_eq!(m.max_forwards(), Some(69), "{fwd}");
    }

    /// Asserts the Record-Route of a dialog-creating request as the partner gets it: the edge's
    /// external face alone, its internal face sealed in it (topology hiding, docs/topology.md).
    fn assert_sealed_record_route(&self, fwd: &str) -> Vec<String> {
        let rr = sip::record_route_uris(fwd);
        assert_eq!(rr.len(), 1, "{fwd}");
        assert!(
            rr[0].starts_with(&format!(
                "sip:edge.corp.test:{};transport=tls;lr;sh=",
                self.ext_port()
            )),
            "{fwd}"
        );
        assert!(
            !fwd.contains("edge-int"),
            "the internal face stays inside:\n{fwd}"
        );
        rr
    }

    /// The Record-Route the front end gets back on the answer: the sealed face, then the
    /// edge's internal face it sealed (the double Record-Route of RFC 5658, inside).
    fn record_route_inside(&self, sealed: &[String]) -> Vec<String> {
        vec![
            sealed[0].clone(),
            format!("sip:edge-int.corp.test:{};transport=tls;lr", self.int_port()),
        ]
    }
}

/// The response to the FE carries only the FE's Via.
fn assert_back_to_fe(resp: &str, fe_branch: &str) {
    assert_eq!(sip::via_count(resp), 1, "the edge's Via removed:\n{resp}");
    assert_eq!(sip::top_branch(resp), fe_branch, "{resp}");
}

fn fe_uas_ok(pki: &TestPki) -> TlsUas {
    TlsUas::start(&pki.fe, &pki.internal_ca.cert, |m: &Message<'_>| {
        match m.method() {
            Some("ACK") => vec![],
            _ => vec![reply(m, 200, "OK", Some("fe-tag"))],
        }
    })
}

/// A partner UAS answering like a callee: 200 to MESSAGE/OPTIONS/BYE/NOTIFY, 200 with Contact to
/// SUBSCRIBE, 180 then 200 with Contact to INVITE. `port` is set once the UAS is listening.
fn partner_callee(pki: &TestPki, port: Arc<AtomicU16>) -> TlsUas {
    TlsUas::start(&pki.partner, &pki.internal_ca.cert, move |m: &Message<'_>| {
        let contact = format!(
            "Contact: <sip:bob@edge.partner.test:{};transport=tls>\n",
            port.load(Ordering::SeqCst)
        );
        match m.method() {
            Some("ACK") => vec![],
            Some("SUBSCRIBE") => vec![reply_with(
                m,
                200,
                "OK",
                Some("b1"),
                &format!("{contact}Expires: 3600\n"),
            )],
            Some("INVITE") => vec![
                reply_with(m, 180, "Ringing", Some("b1"), &contact),
                reply_with(m, 200, "OK", Some("b1"), &contact),
            ],
            _ => vec![reply(m, 200, "OK", Some("b1"))],
        }
    })
}

fn fe_contact(w: &World) -> String {
    format!(
        "Contact: <sip:alice@fe1.corp.test:{};transport=tls>\n",
        w.fe_uas.port()
    )
}

fn fe_request(method: &str, uri: &str, branch: &str, extra: &str) -> String {
    sip::request(
        method,
        uri,
        "fe1.corp.test:5061",
        branch,
        "sip:alice@corp.test",
        extra,
    )
}

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A world with a callee partner and an answering FE UAS.
fn callee_world(tweak: impl FnOnce(&mut EdgeOpts)) -> World {
    let pki = Arc::new(TestPki::new());
    let port = Arc::new(AtomicU16::new(0));
    let partner = partner_callee(&pki, Arc::clone(&port));
    port.store(partner.port(), Ordering::SeqCst);
    let pport = partner.port();
    World::start(Arc::clone(&pki), fe_uas_ok(&pki), Some(partner), pport, tweak)
}

// ---- internal → partner ------------------------------------------------------------------------

#[test]
fn message_to_partner_and_200_back() {
    let w = callee_world(|_| {});
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-m1";
    fe.send(&sip::message(
        "sip:bob@partner.test",
        "fe1.corp.test:5061",
        branch,
        "sip:alice@corp.test",
    ));
    let fwd = w
        .partner()
        .wait_request(WAIT, |r| sip::method(r) == "MESSAGE")
        .unwrap_or_else(|| {
            panic!(
                "the partner got no MESSAGE; FE got {:?}",
                sip::summary(&fe.drain(Duration::ZERO))
            )
        });
    w.assert_forwarded_out(&fwd, branch);
    assert!(
        sip::record_route_uris(&fwd).is_empty(),
        "MESSAGE creates no dialog:\n{fwd}"
    );
    assert_eq!(p(&fwd).body(), b"hello from the test");
    let ok = fe
        .recv_final(WAIT, "MESSAGE")
        .expect("a final response to the MESSAGE");
    assert_eq!(sip::status(&ok), 200, "{ok}");
    assert_back_to_fe(&ok, branch);
}

#[test]
fn options_to_partner_and_200_back() {
    let w = callee_world(|_| {});
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-o1";
    fe.send(&fe_request("OPTIONS", "sip:bob@partner.test", branch, ""));
    let fwd = w
        .partner()
        .wait_request(WAIT, |r| sip::method(r) == "OPTIONS")
        .expect("the partner got the OPTIONS");
    w.assert_forwarded_out(&fwd, branch);
    let ok = fe
        .recv_final(WAIT, "OPTIONS")
        .expect("a final response to OPTIONS");
    assert_eq!(sip::status(&ok), 200, "{ok}");
    assert_back_to_fe(&ok, branch);
}

#[test]
fn subscribe_to_partner_and_notify_back_through_the_record_route() {
    let w = callee_world(|_| {});
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-s1";
    let extra = format!("{}Event: presence\nExpires: 3600\n", fe_contact(&w));
    fe.send(&fe_request("SUBSCRIBE", "sip:bob@partner.test", branch, &extra));
    let fwd = w
        .partner()
        .wait_request(WAIT, |r| sip::method(r) == "SUBSCRIBE")
        .expect("the partner got the SUBSCRIBE");
    w.assert_forwarded_out(&fwd, branch);
    let rr = w.assert_sealed_record_route(&fwd);
    let ok = fe
        .recv_final(WAIT, "SUBSCRIBE")
        .expect("a final response to SUBSCRIBE");
    assert_eq!(sip::status(&ok), 200, "{ok}");
    assert_back_to_fe(&ok, branch);
    assert_eq!(
        sip::record_route_uris(&ok),
        w.record_route_inside(&rr),
        "Record-Route echoed to the FE, the sealed entry opened:\n{ok}"
    );

    // The partner (notifier) sends NOTIFY in the dialog: Route = the Record-Route set as received
    // (our sealed external face), over a connection to it.
    let mut partner_out = w.partner_client(w.edge.external_addr);
    let call_id = sip::call_id(&fwd);
    let notify = format!(
        "NOTIFY sip:alice@fe1.corp.test:{fe_port};transport=tls SIP/2.0\n\
Via: SIP/2.0/TLS edge.partner.test:{pport};branch=z9hG4bKpn1\n\
Route: <{rr0}>\n\
Max-Forwards: 70\n\
From: <sip:bob@partner.test>;tag=b1\n\
To: <sip:alice@corp.test>;tag=a1\n\
Call-ID: {call_id}\n\
CSeq: 1 NOTIFY\n\
Event: presence\n\
Subscription-State: active;expires=3600\n\
Contact: <sip:bob@edge.partner.test:{pport};transport=tls>\n\
Content-Length: 0\n\n",
        fe_port = w.fe_uas.port(),
        pport = w.partner().port(),
        rr0 = rr[0],
    );
    partner_out.send(&notify);
    let at_fe = w
        .fe_uas
        .wait_request(WAIT, |r| sip::method(r) == "NOTIFY")
        .unwrap_or_else(|| {
            panic!(
                "the FE got no NOTIFY; partner got {:?}",
                sip::summary(&partner_out.drain(Duration::ZERO))
            )
        });
    let m = p(&at_fe);
    assert_eq!(
        m.request_uri(),
        Some(format!("sip:alice@fe1.corp.test:{};transport=tls", w.fe_uas.port()).as_str())
    );
    assert!(sip::top_branch(&at_fe).starts_with("z9hG4bKse"), "{at_fe}");
    assert_eq!(
        sip::top_sent_by(&at_fe),
        format!("edge-int.corp.test:{}", w.int_port()),
        "{at_fe}"
    );
    assert_eq!(sip::via_count(&at_fe), 2, "{at_fe}");
    assert!(
        sip::route_uris(&at_fe).is_empty(),
        "our Route entries removed:\n{at_fe}"
    );
    assert_eq!(m.max_forwards(), Some(69));
    let ok = partner_out
        .recv_final(WAIT, "NOTIFY")
        .expect("a final response to the NOTIFY");
    assert_eq!(sip::status(&ok), 200, "{ok}");
    assert_back_to_fe(&ok, "z9hG4bKpn1");
}

#[test]
fn invite_ack_bye_with_the_route_set() {
    let w = callee_world(|_| {});
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-i1";
    fe.send(&fe_request(
        "INVITE",
        "sip:bob@partner.test",
        branch,
        &fe_contact(&w),
    ));
    let fwd = w
        .partner()
        .wait_request(WAIT, |r| sip::method(r) == "INVITE")
        .expect("the partner got the INVITE");
    w.assert_forwarded_out(&fwd, branch);
    let rr = w.assert_sealed_record_route(&fwd);
    let trying = fe.recv_response(WAIT, 100, "INVITE").expect("100 Trying");
    assert_back_to_fe(&trying, branch);
    let ringing = fe.recv_response(WAIT, 180, "INVITE").expect("180 forwarded");
    assert_back_to_fe(&ringing, branch);
    let ok = fe.recv_final(WAIT, "INVITE").expect("final response to INVITE");
    assert_eq!(sip::status(&ok), 200, "{ok}");
    assert_back_to_fe(&ok, branch);
    let rr_back = sip::record_route_uris(&ok);
    assert_eq!(rr_back, w.record_route_inside(&rr));
    let remote_target = match p(&ok).contacts().next() {
        Some(Ok(ContactValue::Addr(c))) => c.addr.uri.to_owned(),
        other => panic!("no Contact in the 200 ({other:?}):\n{ok}"),
    };
    let tag = sip::to_tag(&ok).unwrap();
    let call_id = sip::call_id(&ok);
    // The UAC's route set: the Record-Route reversed.
    let route = format!("Route: <{}>, <{}>\n", rr_back[1], rr_back[0]);
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        format!(
            "{method} {remote_target} SIP/2.0\nVia: SIP/2.0/TLS fe1.corp.test:5061;branch={branch}\n{route}Max-Forwards: 70\nFrom: <sip:alice@corp.test>;tag=a1\nTo: <sip:bob@partner.test>;tag={tag}\nCall-ID: {call_id}\nCSeq: {cseq} {method}\nContent-Length: 0\n\n"
        )
    };
    fe.send(&in_dialog("ACK", 1, "z9hG4bKfe-a1"));
    let ack = w
        .partner()
        .wait_request(WAIT, |r| sip::method(r) == "ACK")
        .expect("the partner got the ACK");
    w.assert_forwarded_out(&ack, "z9hG4bKfe-a1");
    assert_eq!(p(&ack).request_uri(), Some(remote_target.as_str()));
    assert!(
        sip::route_uris(&ack).is_empty(),
        "our Route entries removed:\n{ack}"
    );
    fe.send(&in_dialog("BYE", 2, "z9hG4bKfe-b1"));
    let bye = w
        .partner()
        .wait_request(WAIT, |r| sip::method(r) == "BYE")
        .expect("the partner got the BYE");
    w.assert_forwarded_out(&bye, "z9hG4bKfe-b1");
    assert!(sip::route_uris(&bye).is_empty(), "{bye}");
    let bye_ok = fe.recv_final(WAIT, "BYE").expect("final response to BYE");
    assert_eq!(sip::status(&bye_ok), 200, "{bye_ok}");
    assert_back_to_fe(&bye_ok, "z9hG4bKfe-b1");
}

/// A partner that rings and never answers; CANCEL → 200 to the CANCEL, then 487 to the INVITE,
/// built from the INVITE itself (its Via set), as RFC 3261 §9.2 has a UAS do.
fn partner_ringing(pki: &TestPki) -> TlsUas {
    let invite: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    TlsUas::start(
        &pki.partner,
        &pki.internal_ca.cert,
        move |m: &Message<'_>| match m.method() {
            Some("INVITE") => {
                *invite.lock().unwrap() = Some(String::from_utf8_lossy(m.as_bytes()).into_owned());
                vec![reply(m, 180, "Ringing", Some("b1"))]
            }
            Some("CANCEL") => {
                let mut out = vec![reply(m, 200, "OK", Some("b1"))];
                if let Some(inv) = invite.lock().unwrap().as_deref() {
                    out.push(reply(&p(inv), 487, "Request Terminated", Some("b1")));
                }
                out
            }
            Some("ACK") => vec![],
            _ => vec![reply(m, 200, "OK", Some("b1"))],
        },
    )
}

#[test]
fn cancel_after_ringing_reaches_the_partner_and_487_comes_back() {
    let pki = Arc::new(TestPki::new());
    let partner = partner_ringing(&pki);
    let pport = partner.port();
    let w = World::start(Arc::clone(&pki), fe_uas_ok(&pki), Some(partner), pport, |_| {});
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-c1";
    let invite = fe_request("INVITE", "sip:bob@partner.test", branch, &fe_contact(&w));
    fe.send(&invite);
    fe.recv_response(WAIT, 180, "INVITE").expect("180 forwarded");
    let fwd = w
        .partner()
        .wait_request(WAIT, |r| sip::method(r) == "INVITE")
        .unwrap();
    let cancel = invite
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("1 INVITE", "1 CANCEL");
    fe.send(&cancel);
    let c_ok = fe.recv_final(WAIT, "CANCEL").expect("the CANCEL answered");
    assert_eq!(sip::status(&c_ok), 200, "{c_ok}");
    assert_eq!(sip::via_count(&c_ok), 1, "{c_ok}");
    let down = w
        .partner()
        .wait_request(WAIT, |r| sip::method(r) == "CANCEL")
        .expect("the partner got the CANCEL");
    assert_eq!(
        sip::top_branch(&down),
        sip::top_branch(&fwd),
        "CANCEL on the INVITE's branch"
    );
    let fin = fe.recv_final(WAIT, "INVITE").unwrap_or_else(|| {
        panic!(
            "no final response to the INVITE; the FE received {:?}; the partner sent responses to {:?}",
            sip::summary(&fe.received),
            sip::summary(&w.partner().requests())
        )
    });
    assert_eq!(sip::status(&fin), 487, "{fin}");
    assert_back_to_fe(&fin, branch);
    let ack = w
        .partner()
        .wait_request(WAIT, |r| sip::method(r) == "ACK")
        .expect("the edge ACKs the 487");
    assert_eq!(sip::top_branch(&ack), sip::top_branch(&fwd));
    // The FE's ACK for the 487 is hop by hop: absorbed by the edge.
    let ack_up = format!(
        "ACK sip:bob@partner.test SIP/2.0\nVia: SIP/2.0/TLS fe1.corp.test:5061;branch={branch}\nMax-Forwards: 70\nFrom: <sip:alice@corp.test>;tag=a1\nTo: <sip:bob@partner.test>;tag={}\nCall-ID: call-{branch}\nCSeq: 1 ACK\nContent-Length: 0\n\n",
        sip::to_tag(&fin).unwrap()
    );
    fe.send(&ack_up);
    // Positive signal instead of a pause: a later request on the same link, handled after the ACK
    // by the same worker and sent on the same partner link, must arrive; by then a forwarded ACK
    // would have too.
    fe.send(&fe_request(
        "OPTIONS",
        "sip:bob@partner.test",
        "z9hG4bKfe-c1-after",
        "",
    ));
    w.partner()
        .wait_request(WAIT, |r| sip::method(r) == "OPTIONS")
        .expect("the later OPTIONS reached the partner");
    let acks = w
        .partner()
        .requests()
        .iter()
        .filter(|r| sip::method(r) == "ACK")
        .count();
    assert_eq!(acks, 1, "{:?}", sip::summary(&w.partner().requests()));
}

/// A partner that forks the INVITE to two endpoints of bob (MPOP): both ring, both answer, each
/// 200 with its own tag and Contact; ACKs and anything else get 200 / nothing.
fn partner_forking(pki: &TestPki, port: Arc<AtomicU16>) -> TlsUas {
    TlsUas::start(&pki.partner, &pki.internal_ca.cert, move |m: &Message<'_>| {
        let contact = |ep: &str| {
            format!(
                "Contact: <sip:bob@edge.partner.test:{};transport=tls;ep={ep}>\n",
                port.load(Ordering::SeqCst)
            )
        };
        match m.method() {
            Some("INVITE") => vec![
                reply_with(m, 180, "Ringing", Some("mobile"), &contact("mobile")),
                reply_with(m, 180, "Ringing", Some("desk"), &contact("desk")),
                reply_with(m, 200, "OK", Some("mobile"), &contact("mobile")),
                reply_with(m, 200, "OK", Some("desk"), &contact("desk")),
            ],
            Some("ACK") => vec![],
            _ => vec![reply(m, 200, "OK", None)],
        }
    })
}

#[test]
fn a_forked_invite_delivers_every_2xx_and_each_ack_passes() {
    let pki = Arc::new(TestPki::new());
    let port = Arc::new(AtomicU16::new(0));
    let partner = partner_forking(&pki, Arc::clone(&port));
    port.store(partner.port(), Ordering::SeqCst);
    let pport = partner.port();
    let w = World::start(Arc::clone(&pki), fe_uas_ok(&pki), Some(partner), pport, |_| {});
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-fork";
    fe.send(&fe_request(
        "INVITE",
        "sip:bob@partner.test",
        branch,
        &fe_contact(&w),
    ));
    // RFC 3261 §16.7: every provisional and every 2xx goes upstream, in the order they came (the
    // first two 200s as they arrive: the tags then say the order).
    let finals: Vec<String> = (0..2)
        .map(|i| {
            fe.recv_matching(WAIT, |m| {
                sip::status(m) == 200 && sip::cseq_method(m) == "INVITE" && sip::top_branch(m) == branch
            })
            .unwrap_or_else(|| {
                panic!(
                    "2xx #{i} not forwarded; FE got {:?}\n{}",
                    sip::summary(&fe.received),
                    w.edge.log_dump()
                )
            })
        })
        .collect();
    let tags: Vec<String> = finals.iter().map(|f| sip::to_tag(f).unwrap()).collect();
    assert_eq!(tags, ["mobile", "desk"], "both endpoints' 2xx, in order");
    let ringing = fe.received.iter().filter(|m| sip::status(m) == 180).count();
    assert_eq!(
        ringing,
        2,
        "both 180s forwarded: {:?}",
        sip::summary(&fe.received)
    );
    // The caller ACKs each 2xx in its own dialog (route set from the Record-Route, remote target
    // from the Contact): both ACKs cross the edge end to end.
    for (i, ok) in finals.iter().enumerate() {
        let rr = sip::record_route_uris(ok);
        let target = match p(ok).contacts().next() {
            Some(Ok(ContactValue::Addr(c))) => c.addr.uri.to_owned(),
            other => panic!("no Contact ({other:?}):\n{ok}"),
        };
        let ack = format!(
            "ACK {target} SIP/2.0\nVia: SIP/2.0/TLS fe1.corp.test:5061;branch=z9hG4bKfe-fork-ack{i}\nRoute: <{}>, <{}>\nMax-Forwards: 70\nFrom: <sip:alice@corp.test>;tag=a1\nTo: <sip:bob@partner.test>;tag={}\nCall-ID: {}\nCSeq: 1 ACK\nContent-Length: 0\n\n",
            rr[1], rr[0], tags[i], sip::call_id(ok)
        );
        fe.send(&ack);
    }
    for tag in ["mobile", "desk"] {
        let ack = w
            .partner()
            .wait_request(WAIT, |r| {
                sip::method(r) == "ACK" && sip::to_tag(r).as_deref() == Some(tag)
            })
            .unwrap_or_else(|| {
                panic!(
                    "the ACK for {tag} did not reach the partner; it got {:?}",
                    sip::summary(&w.partner().requests())
                )
            });
        assert!(
            p(&ack).request_uri().unwrap().contains(&format!("ep={tag}")),
            "{ack}"
        );
    }
}

/// A partner whose callee answers at the instant the caller gives up: the 200 to the INVITE goes
/// out as the CANCEL arrives, then the CANCEL's own 200 (RFC 3261 §9.2: CANCEL has no effect on a
/// transaction with a final response).
fn partner_answering_the_cancel_race(pki: &TestPki, port: Arc<AtomicU16>) -> TlsUas {
    let invite: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    TlsUas::start(&pki.partner, &pki.internal_ca.cert, move |m: &Message<'_>| {
        let contact = format!(
            "Contact: <sip:bob@edge.partner.test:{};transport=tls>\n",
            port.load(Ordering::SeqCst)
        );
        match m.method() {
            Some("INVITE") => {
                *invite.lock().unwrap() = Some(String::from_utf8_lossy(m.as_bytes()).into_owned());
                vec![reply_with(m, 180, "Ringing", Some("b1"), &contact)]
            }
            Some("CANCEL") => {
                let mut out = Vec::new();
                if let Some(inv) = invite.lock().unwrap().as_deref() {
                    out.push(reply_with(&p(inv), 200, "OK", Some("b1"), &contact));
                }
                out.push(reply(m, 200, "OK", Some("b1")));
                out
            }
            Some("ACK") => vec![],
            _ => vec![reply(m, 200, "OK", Some("b1"))],
        }
    })
}

#[test]
fn a_200_racing_the_cancel_reaches_the_caller_and_nothing_is_invented() {
    let pki = Arc::new(TestPki::new());
    let port = Arc::new(AtomicU16::new(0));
    let partner = partner_answering_the_cancel_race(&pki, Arc::clone(&port));
    port.store(partner.port(), Ordering::SeqCst);
    let pport = partner.port();
    let w = World::start(Arc::clone(&pki), fe_uas_ok(&pki), Some(partner), pport, |_| {});
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-race";
    let invite = fe_request("INVITE", "sip:bob@partner.test", branch, &fe_contact(&w));
    fe.send(&invite);
    fe.recv_response(WAIT, 180, "INVITE").expect("180 forwarded");
    let cancel = invite
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("1 INVITE", "1 CANCEL");
    fe.send(&cancel);
    let fin = fe
        .recv_final(WAIT, "INVITE")
        .expect("a final response to the INVITE");
    assert_eq!(
        sip::status(&fin),
        200,
        "the callee's answer, not an invented 487:\n{fin}"
    );
    assert_back_to_fe(&fin, branch);
    let c_ok = fe.recv_final(WAIT, "CANCEL").expect("the CANCEL answered");
    assert_eq!(sip::status(&c_ok), 200, "{c_ok}");
    // Nothing else comes for the INVITE: no 487, no 408 (the edge waits one transaction timeout).
    let late = fe.drain(Duration::from_millis(2000));
    let more: Vec<&String> = late
        .iter()
        .filter(|m| sip::cseq_method(m) == "INVITE" && sip::status(m) >= 300)
        .collect();
    assert!(more.is_empty(), "{:?}", sip::summary(&late));
    // The caller's ACK for the 200 reaches the callee: the call is up.
    let rr = sip::record_route_uris(&fin);
    let ack = format!(
        "ACK sip:bob@edge.partner.test:{pport};transport=tls SIP/2.0\nVia: SIP/2.0/TLS fe1.corp.test:5061;branch=z9hG4bKfe-race-ack\nRoute: <{}>, <{}>\nMax-Forwards: 70\nFrom: <sip:alice@corp.test>;tag=a1\nTo: <sip:bob@partner.test>;tag=b1\nCall-ID: {}\nCSeq: 1 ACK\nContent-Length: 0\n\n",
        rr[1], rr[0], sip::call_id(&fin)
    );
    fe.send(&ack);
    w.partner()
        .wait_request(WAIT, |r| sip::method(r) == "ACK")
        .expect("the ACK for the 200 reached the partner");
}

// ---- partner → internal ------------------------------------------------------------------------

#[test]
fn message_from_partner_reaches_the_front_end() {
    let w = callee_world(|_| {});
    let mut partner = w.partner_client(w.edge.external_addr);
    let branch = "z9hG4bKpa-m1";
    let via = format!("edge.partner.test:{}", w.partner().port());
    partner.send(&sip::message(
        "sip:alice@corp.test",
        &via,
        branch,
        "sip:bob@partner.test",
    ));
    let at_fe = w
        .fe_uas
        .wait_request(WAIT, |r| sip::method(r) == "MESSAGE")
        .unwrap_or_else(|| {
            panic!(
                "the FE got no MESSAGE; partner got {:?}",
                sip::summary(&partner.drain(Duration::ZERO))
            )
        });
    assert_eq!(
        sip::top_sent_by(&at_fe),
        format!("edge-int.corp.test:{}", w.int_port()),
        "{at_fe}"
    );
    assert!(sip::top_branch(&at_fe).starts_with("z9hG4bKse"), "{at_fe}");
    assert_eq!(sip::via_count(&at_fe), 2);
    assert_eq!(p(&at_fe).max_forwards(), Some(69));
    assert_eq!(p(&at_fe).request_uri(), Some("sip:alice@corp.test"));
    let ok = partner
        .recv_final(WAIT, "MESSAGE")
        .expect("a final response to the partner");
    assert_eq!(sip::status(&ok), 200, "{ok}");
    assert_back_to_fe(&ok, branch);
}

/// An MPOP MESSAGE as Lync writes it: endpoint ids (`epid`) on From and To, Lync's own headers, a
/// body with non-ASCII text and CRLFs.
fn mpop_message(uri: &str, via: &str, branch: &str, from: &str) -> String {
    let body = "Grüße — seen on two endpoints\r\nline two";
    sip::crlf(&format!(
        "MESSAGE {uri} SIP/2.0\nVia: SIP/2.0/TLS {via};branch={branch}\nMax-Forwards: 70\n\
         From: <{from}>;tag=a1;epid=1f2e3d4c5b\nTo: <{uri}>;epid=9a8b7c6d5e\nCall-ID: call-{branch}\n\
         CSeq: 1 MESSAGE\nContact: <sip:endpoint.example;transport=tls>;+sip.instance=\"<urn:uuid:0f1e2d3c>\"\n\
         Ms-Im-Format: text/plain; charset=UTF-8; ms-body=R3LDvMOfZQ==\nSupported: ms-dialog-route-set-update\n\
         Ms-Endpoint-Location-Data: NetworkScope;ms-media-location-type=Intranet\nUser-Agent: UCCAPI/16.0\n\
         Content-Type: text/plain; charset=UTF-8\nContent-Length: {}\n\n{body}",
        body.len()
    ))
}

/// The headers of `msg` the edge never touches (all but Via, Max-Forwards, Route, Record-Route, and
/// going out Contact — a host contact is sealed, docs/topology.md), as written, in order; and the
/// body.
fn untouched(msg: &str, outbound: bool) -> (Vec<String>, Vec<u8>) {
    let m = p(msg);
    let headers = m
        .headers()
        .iter()
        .filter(|h| {
            let edited = matches!(
                h.name,
                HeaderName::Via | HeaderName::MaxForwards | HeaderName::Route | HeaderName::RecordRoute
            ) || (outbound && h.name == HeaderName::Contact);
            !edited
        })
        .map(|h| format!("{}: {}", h.name_str(), String::from_utf8_lossy(h.raw_value)))
        .collect();
    (headers, m.body().to_vec())
}

#[test]
fn an_mpop_message_crosses_unchanged_in_both_directions() {
    let w = callee_world(|_| {});
    // Out: the front end to a partner user signed in on several endpoints.
    let mut fe = w.fe();
    let out = mpop_message(
        "sip:bob@partner.test",
        "fe1.corp.test:5061",
        "z9hG4bKfe-mpop",
        "sip:alice@corp.test",
    );
    fe.send(&out);
    let fwd = w
        .partner()
        .wait_request(WAIT, |r| sip::method(r) == "MESSAGE")
        .expect("the partner got the MESSAGE");
    assert_eq!(untouched(&fwd, true), untouched(&out, true), "outbound:\n{fwd}");
    // The endpoint's contact names a host: it leaves as the edge's face with the original sealed,
    // its header parameters (the endpoint's instance id) as written.
    let contact = sip::header(&fwd, "Contact").unwrap();
    assert!(
        contact.starts_with(&format!("<sip:edge.corp.test:{};transport=tls;sc=", w.ext_port()))
            && contact.ends_with(">;+sip.instance=\"<urn:uuid:0f1e2d3c>\""),
        "{contact}"
    );
    assert_eq!(
        sip::status(&fe.recv_final(WAIT, "MESSAGE").expect("answered")),
        200
    );
    // In: a partner user to alice, whose front end forks it to her endpoints.
    let mut partner = w.partner_client(w.edge.external_addr);
    let via = format!("edge.partner.test:{}", w.partner().port());
    let inbound = mpop_message(
        "sip:alice@corp.test",
        &via,
        "z9hG4bKpa-mpop",
        "sip:bob@partner.test",
    );
    partner.send(&inbound);
    let at_fe = w
        .fe_uas
        .wait_request(WAIT, |r| sip::method(r) == "MESSAGE")
        .expect("the FE got the MESSAGE");
    assert_eq!(
        untouched(&at_fe, false),
        untouched(&inbound, false),
        "inbound:\n{at_fe}"
    );
    assert_eq!(
        sip::status(&partner.recv_final(WAIT, "MESSAGE").expect("answered")),
        200
    );
}

/// Issue 8.1, response injection: a second, legitimate partner (`other.test`, its own allowed
/// domain and certificate) connected on the external listener sends a 200 with the real branch of
/// a transaction it is not part of. The edge drops it (logged, counted); the transaction completes
/// with the real partner's answer. One worker, so the forged answer reaches the worker that owns the
/// transaction (on another worker the branch is simply unknown and dropped too).
#[test]
fn a_response_injected_on_another_partners_connection_is_dropped() {
    let pki = Arc::new(TestPki::new());
    let partner = TlsUas::start_with(&pki.partner, &pki.internal_ca.cert, |m: &Message<'_>| {
        match m.method() {
            Some("MESSAGE") => vec![Reply::After(
                Duration::from_millis(900),
                reply(m, 200, "OK", Some("real")),
            )],
            _ => vec![],
        }
    });
    let pport = partner.port();
    let w = World::start(Arc::clone(&pki), fe_uas_ok(&pki), Some(partner), pport, |o| {
        o.workers = 1;
        o.transaction_timeout_ms = 5000;
        o.extra_allowed
            .push(("other.test".into(), "edge.other.test:5061".into()));
        o.extra_hosts.push("edge.other.test".into());
    });
    let other_id = pki.partner_leaf("edge.other.test");
    let mut other = TlsPeer::connect(
        w.edge.external_addr,
        &other_id,
        &pki.internal_ca.cert,
        "edge.corp.test",
    )
    .unwrap_or_else(|e| panic!("the second partner cannot connect: {e}\n{}", w.edge.log_dump()));
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-inj1";
    fe.send(&fe_request("MESSAGE", "sip:bob@partner.test", branch, ""));
    let fwd = w
        .partner()
        .wait_request(WAIT, |r| sip::method(r) == "MESSAGE")
        .expect("the MESSAGE reached the partner");
    // The attacker knows the branch (here: the test hands it over) and answers first.
    other.send(&reply(&p(&fwd), 200, "OK", Some("forged")));
    w.edge
        .wait_log("response_wrong_connection", WAIT)
        .unwrap_or_else(|| panic!("the forged answer was not refused\n{}", w.edge.log_dump()));
    let fin = fe.recv_final(WAIT, "MESSAGE").expect("the real answer");
    assert_eq!(sip::to_tag(&fin).as_deref(), Some("real"), "{fin}");
    assert_back_to_fe(&fin, branch);
    let more = fe.drain(Duration::from_millis(300));
    assert!(
        more.is_empty(),
        "one final response only: {:?}",
        sip::summary(&more)
    );
}

/// Issue 8.2 and 8.3 through the real edge: a front end spoofing another organisation's From gets
/// 403 / 1907; a partner asking the edge to relay to a domain that is not ours gets 403 / 1908 (in
/// `ms-diagnostics-public`); neither reaches the other side.
#[test]
fn spoofed_from_and_open_relay_are_refused() {
    let w = callee_world(|_| {});
    let mut fe = w.fe();
    let spoof = sip::request(
        "MESSAGE",
        "sip:bob@partner.test",
        "fe1.corp.test:5061",
        "z9hG4bKfe-spoof",
        "sip:ceo@bank.test",
        "",
    );
    fe.send(&spoof);
    let r = fe
        .recv_final(WAIT, "MESSAGE")
        .expect("an answer to the spoofed From");
    assert_eq!(sip::status(&r), 403, "{r}");
    let diag = sip::header(&r, "ms-diagnostics").unwrap_or_else(|| panic!("no ms-diagnostics:\n{r}"));
    assert!(
        diag.starts_with("1907;") && diag.contains("domain=\"bank.test\""),
        "{diag}"
    );

    let mut partner = w.partner_client(w.edge.external_addr);
    let via = format!("edge.partner.test:{}", w.partner().port());
    partner.send(&sip::message(
        "sip:victim@bank.test",
        &via,
        "z9hG4bKpa-relay",
        "sip:bob@partner.test",
    ));
    let r = partner
        .recv_final(WAIT, "MESSAGE")
        .expect("an answer to the relay attempt");
    assert_eq!(sip::status(&r), 403, "{r}");
    let diag = sip::header(&r, "ms-diagnostics-public").unwrap_or_else(|| panic!("no diagnostic:\n{r}"));
    assert!(
        diag.starts_with("1908;") && diag.contains("domain=\"bank.test\""),
        "{diag}"
    );
    // Positive signal that both were handled before checking nothing crossed: a good request each way.
    fe.send(&fe_request(
        "OPTIONS",
        "sip:bob@partner.test",
        "z9hG4bKfe-good",
        "",
    ));
    assert_eq!(sip::status(&fe.recv_final(WAIT, "OPTIONS").unwrap()), 200);
    partner.send(&sip::message(
        "sip:alice@corp.test",
        &via,
        "z9hG4bKpa-good",
        "sip:bob@partner.test",
    ));
    assert_eq!(sip::status(&partner.recv_final(WAIT, "MESSAGE").unwrap()), 200);
    assert!(
        w.partner().requests().iter().all(|r| sip::method(r) == "OPTIONS"),
        "{:?}",
        sip::summary(&w.partner().requests())
    );
    assert!(w.fe_uas.requests().iter().all(|r| !r.contains("bank.test")));
}

// ---- refusals ----------------------------------------------------------------------------------

#[test]
fn unknown_internal_client_is_disconnected_without_an_answer() {
    let w = callee_world(|_| {});
    let connected = TlsPeer::connect(
        w.edge.internal_addr,
        &w.pki.laptop,
        &w.pki.internal_ca.cert,
        "edge-int.corp.test",
    );
    // Refused during the handshake, or right after it: either way, closed with no SIP answer.
    if let Ok(mut laptop) = connected {
        let _ = laptop.try_send(&fe_request("OPTIONS", "sip:bob@partner.test", "z9hG4bKlap1", ""));
        assert!(
            laptop.wait_closed(WAIT),
            "the edge kept the laptop's connection open"
        );
        assert!(laptop.received.is_empty(), "no SIP answer: {:?}", laptop.received);
    }
    assert!(w.partner().requests().is_empty());
    assert!(
        w.edge.wait_log("internal_peer_not_known_server", WAIT).is_some(),
        "the refusal is logged"
    );
}

#[test]
fn partner_presenting_the_wrong_certificate_gets_504_1010() {
    let pki = Arc::new(TestPki::new());
    let rogue = TlsUas::start(&pki.rogue, &pki.internal_ca.cert, |m: &Message<'_>| {
        vec![reply(m, 200, "OK", Some("r1"))]
    });
    let pport = rogue.port();
    let w = World::start(Arc::clone(&pki), fe_uas_ok(&pki), Some(rogue), pport, |_| {});
    let mut fe = w.fe();
    fe.send(&sip::message(
        "sip:bob@partner.test",
        "fe1.corp.test:5061",
        "z9hG4bKfe-r1",
        "sip:alice@corp.test",
    ));
    let r = fe.recv_final(WAIT, "MESSAGE").expect("a final response");
    assert_eq!(sip::status(&r), 504, "{r}");
    let header = sip::header(&r, "ms-diagnostics").unwrap_or_else(|| panic!("no ms-diagnostics:\n{r}"));
    assert!(header.starts_with("1010;"), "{header}");
    let m = p(&r);
    let diag = m.ms_diagnostics().unwrap();
    assert_eq!(diag.id, 1010);
    assert_eq!(
        diag.param("ErrorType"),
        Some("The peer certificate does not contain a matching FQDN"),
        "{header}"
    );
    assert_eq!(diag.source(), Some("edge.corp.test"));
    assert!(
        w.partner().requests().is_empty(),
        "nothing delivered to the rogue"
    );
}

#[test]
fn blocked_domain_gets_403_1005() {
    let w = callee_world(|o| o.blocked.push("blocked.test".into()));
    let mut fe = w.fe();
    fe.send(&sip::message(
        "sip:x@blocked.test",
        "fe1.corp.test:5061",
        "z9hG4bKfe-b1",
        "sip:alice@corp.test",
    ));
    let r = fe.recv_final(WAIT, "MESSAGE").expect("a final response");
    assert_eq!(sip::status(&r), 403, "{r}");
    let diag_text = sip::header(&r, "ms-diagnostics").unwrap_or_else(|| panic!("no ms-diagnostics:\n{r}"));
    assert_eq!(p(&r).ms_diagnostics().unwrap().id, 1005, "{diag_text}");
    assert_back_to_fe(&r, "z9hG4bKfe-b1");
}

#[test]
fn unreachable_partner_gets_504_within_the_connect_timeout() {
    let pki = Arc::new(TestPki::new());
    let port = closed_port();
    let w = World::start(Arc::clone(&pki), fe_uas_ok(&pki), None, port, |_| {});
    let mut fe = w.fe();
    let t0 = Instant::now();
    fe.send(&sip::message(
        "sip:bob@partner.test",
        "fe1.corp.test:5061",
        "z9hG4bKfe-u1",
        "sip:alice@corp.test",
    ));
    let r = fe.recv_final(WAIT, "MESSAGE").expect("a final response");
    let took = t0.elapsed();
    assert_eq!(sip::status(&r), 504, "{r}");
    assert!(took <= Duration::from_millis(1000 + 1000), "504 after {took:?}");
    assert!(sip::header(&r, "ms-diagnostics").is_some(), "a diagnostic:\n{r}");
    assert_back_to_fe(&r, "z9hG4bKfe-u1");
}

/// Issue 16, item 1, through the real binary: a partner's request that cannot be delivered inward
/// (the front-end pool down) gets 504 with `ms-diagnostics-public: 1904` and nothing else — not
/// the pool's name, its address, its port or the OS error, which the edge's own log keeps.
#[test]
fn a_partner_never_learns_the_inside_when_the_pool_is_down() {
    let pki = Arc::new(TestPki::new());
    let partner = TlsUas::start(&pki.partner, &pki.internal_ca.cert, |m: &Message<'_>| {
        vec![reply(m, 200, "OK", Some("b1"))]
    });
    let pport = partner.port();
    let pool_port = closed_port();
    let w = World::start(Arc::clone(&pki), fe_uas_ok(&pki), Some(partner), pport, |o| {
        o.fe_port = pool_port;
    });
    let mut client = w.partner_client(w.edge.external_addr);
    let via = format!("edge.partner.test:{pport}");
    client.send(&sip::message(
        "sip:alice@corp.test",
        &via,
        "z9hG4bKpa-down",
        "sip:bob@partner.test",
    ));
    let r = client.recv_final(WAIT, "MESSAGE").expect("an answer");
    assert_eq!(sip::status(&r), 504, "{r}");
    assert_eq!(
        sip::header(&r, "ms-diagnostics-public").as_deref(),
        Some("1904;reason=\"Cannot connect to the next hop\""),
        "{r}"
    );
    assert!(sip::header(&r, "ms-diagnostics").is_none(), "{r}");
    for inside in [
        "127.0.0.1",
        &pool_port.to_string(),
        "os error",
        "refused",
        "fe1.corp.test",
    ] {
        assert!(!r.contains(inside), "{inside:?} reached the partner:\n{r}");
    }
    let logged = w
        .edge
        .wait_log("\"connect_failed\"", WAIT)
        .unwrap_or_else(|| panic!("no connect_failed log\n{}", w.edge.log_dump()));
    assert!(
        logged.contains(&pool_port.to_string()),
        "the log keeps the facts: {logged}"
    );
}

#[test]
fn silent_partner_gets_408_after_the_transaction_timeout() {
    let pki = Arc::new(TestPki::new());
    let silent = TlsUas::silent(&pki.partner, &pki.internal_ca.cert);
    let pport = silent.port();
    let w = World::start(Arc::clone(&pki), fe_uas_ok(&pki), Some(silent), pport, |_| {});
    let mut fe = w.fe();
    let t0 = Instant::now();
    fe.send(&sip::message(
        "sip:bob@partner.test",
        "fe1.corp.test:5061",
        "z9hG4bKfe-t1",
        "sip:alice@corp.test",
    ));
    let r = fe.recv_final(WAIT, "MESSAGE").expect("a final response");
    let took = t0.elapsed();
    assert_eq!(sip::status(&r), 408, "{r}");
    assert!(
        took >= Duration::from_millis(1400) && took <= Duration::from_millis(3000),
        "408 after {took:?} (transaction_timeout_ms = 1500)"
    );
    assert_eq!(w.partner().requests().len(), 1, "the partner did get it");
    assert!(
        fe.drain(Duration::from_millis(500)).is_empty(),
        "exactly one final response"
    );
}

#[test]
fn killing_the_partner_answers_every_open_transaction_with_503() {
    let pki = Arc::new(TestPki::new());
    let silent = TlsUas::silent(&pki.partner, &pki.internal_ca.cert);
    let pport = silent.port();
    // A long Timer F, so 503 (link lost) cannot be mistaken for 408 (timeout).
    let mut w = World::start(Arc::clone(&pki), fe_uas_ok(&pki), Some(silent), pport, |o| {
        o.transaction_timeout_ms = 10_000;
    });
    let mut fe = w.fe();
    let branches: Vec<String> = (0..5).map(|i| format!("z9hG4bKfe-k{i}")).collect();
    for b in &branches {
        fe.send(&sip::message(
            "sip:bob@partner.test",
            "fe1.corp.test:5061",
            b,
            "sip:alice@corp.test",
        ));
    }
    let n = w.partner().wait_count(WAIT, 5, |r| sip::method(r) == "MESSAGE");
    assert_eq!(n, 5, "the partner got {n} of 5 MESSAGEs");
    let t0 = Instant::now();
    w.partner.as_mut().unwrap().stop();
    let mut finals = Vec::new();
    for _ in 0..5 {
        match fe.recv_final(WAIT, "MESSAGE") {
            Some(r) => finals.push(r),
            None => break,
        }
    }
    let took = t0.elapsed();
    finals.extend(
        fe.drain(Duration::from_millis(1000))
            .into_iter()
            .filter(|m| sip::status(m) >= 200),
    );
    assert_eq!(finals.len(), 5, "final responses: {:?}", sip::summary(&finals));
    assert!(
        finals.iter().all(|r| sip::status(r) == 503),
        "{:?}",
        sip::summary(&finals)
    );
    let mut got: Vec<String> = finals.iter().map(|r| sip::top_branch(r)).collect();
    got.sort();
    assert_eq!(got, branches, "one per transaction");
    assert!(took < Duration::from_secs(5), "503s after {took:?}");
}

/// SIGTERM while a transaction is open: the edge stops taking new work — new connections refused
/// (a request on an open one gets 503 with Retry-After: tests/metrics.rs) — but the open MESSAGE
/// still gets its (slow) 200 back, and then the process exits 0 by itself.
#[test]
fn sigterm_lets_an_open_transaction_finish_then_exits_0() {
    let pki = Arc::new(TestPki::new());
    let partner = TlsUas::start_with(&pki.partner, &pki.internal_ca.cert, |m: &Message<'_>| {
        vec![Reply::After(
            Duration::from_millis(700),
            reply(m, 200, "OK", Some("b1")),
        )]
    });
    let pport = partner.port();
    let mut w = World::start(Arc::clone(&pki), fe_uas_ok(&pki), Some(partner), pport, |_| {});
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-drain1";
    fe.send(&fe_request("MESSAGE", "sip:bob@partner.test", branch, ""));
    w.partner()
        .wait_request(WAIT, |r| sip::method(r) == "MESSAGE")
        .expect("forwarded before the SIGTERM");
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &w.edge.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // Draining: the listeners are closed at once, so a new connection is refused (a partner or
    // front end fails over to the next SRV target at once, RFC 3263 §4.3), while the open
    // transaction goes on (its 200 is 0.7 s away).
    let deadline = Instant::now() + WAIT;
    while w.edge.logs_with("\"shutdown_started\"").len() < 2 {
        assert!(Instant::now() < deadline, "no drain\n{}", w.edge.log_dump());
        std::thread::sleep(Duration::from_millis(10));
    }
    for addr in [w.edge.internal_addr, w.edge.external_addr] {
        let e = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .expect_err("a new connection while draining");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{addr}: {e}");
    }
    let fin = fe
        .recv_final(WAIT, "MESSAGE")
        .expect("the open transaction still gets its final response");
    assert_eq!(sip::status(&fin), 200, "{fin}");
    assert_back_to_fe(&fin, branch);
    let exit = w
        .edge
        .stop(Duration::from_secs(10))
        .expect("exited by itself after draining");
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn invite_answered_after_3s_completes_under_timer_c() {
    let pki = Arc::new(TestPki::new());
    let port = Arc::new(AtomicU16::new(0));
    let p2 = Arc::clone(&port);
    let partner = TlsUas::start_with(&pki.partner, &pki.internal_ca.cert, move |m: &Message<'_>| {
        let contact = format!(
            "Contact: <sip:bob@edge.partner.test:{};transport=tls>\n",
            p2.load(Ordering::SeqCst)
        );
        match m.method() {
            Some("INVITE") => vec![
                Reply::Now(reply_with(m, 180, "Ringing", Some("b1"), &contact)),
                Reply::After(
                    Duration::from_secs(3),
                    reply_with(m, 200, "OK", Some("b1"), &contact),
                ),
            ],
            Some("ACK") => vec![],
            _ => vec![Reply::Now(reply(m, 200, "OK", Some("b1")))],
        }
    });
    port.store(partner.port(), Ordering::SeqCst);
    let pport = partner.port();
    let w = World::start(Arc::clone(&pki), fe_uas_ok(&pki), Some(partner), pport, |_| {});
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-slow1";
    let t0 = Instant::now();
    fe.send(&fe_request(
        "INVITE",
        "sip:bob@partner.test",
        branch,
        &fe_contact(&w),
    ));
    fe.recv_response(WAIT, 180, "INVITE").expect("180 forwarded");
    let fin = fe
        .recv_final(Duration::from_secs(8), "INVITE")
        .expect("a final response");
    let took = t0.elapsed();
    assert_eq!(sip::status(&fin), 200, "{fin}");
    assert!(took >= Duration::from_millis(2900), "200 after {took:?}");
    assert_back_to_fe(&fin, branch);
    assert!(
        w.partner().requests().iter().all(|r| sip::method(r) != "CANCEL"),
        "{:?}",
        sip::summary(&w.partner().requests())
    );
}

#[test]
fn ringing_invite_past_invite_timeout_is_cancelled_and_answered_408() {
    let pki = Arc::new(TestPki::new());
    let partner = partner_ringing(&pki);
    let pport = partner.port();
    let w = World::start(Arc::clone(&pki), fe_uas_ok(&pki), Some(partner), pport, |o| {
        o.invite_timeout_ms = Some(1000);
    });
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-tc1";
    fe.send(&fe_request(
        "INVITE",
        "sip:bob@partner.test",
        branch,
        &fe_contact(&w),
    ));
    fe.recv_response(WAIT, 180, "INVITE").expect("180 forwarded");
    let t180 = Instant::now();
    let fin = fe.recv_final(WAIT, "INVITE").expect("a final response");
    let took = t180.elapsed();
    assert_eq!(sip::status(&fin), 408, "{fin}");
    assert!(
        took >= Duration::from_millis(700) && took <= Duration::from_millis(3000),
        "408 {took:?} after the 180 (invite_timeout_ms = 1000)"
    );
    assert_back_to_fe(&fin, branch);
    let fwd = w
        .partner()
        .wait_request(WAIT, |r| sip::method(r) == "INVITE")
        .unwrap();
    let cancel = w
        .partner()
        .wait_request(WAIT, |r| sip::method(r) == "CANCEL")
        .expect("CANCEL downstream");
    assert_eq!(sip::top_branch(&cancel), sip::top_branch(&fwd));
    let more: Vec<String> = fe
        .drain(Duration::from_millis(700))
        .into_iter()
        .filter(|m| sip::status(m) >= 200 && sip::cseq_method(m) == "INVITE")
        .collect();
    assert!(
        more.is_empty(),
        "one final response only: {:?}",
        sip::summary(&more)
    );
}

// ---- malformed ---------------------------------------------------------------------------------

#[test]
fn request_without_call_id_gets_400_naming_it() {
    let w = callee_world(|_| {});
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-bad1";
    let bad = fe_request("MESSAGE", "sip:bob@partner.test", branch, "")
        .replace(&format!("Call-ID: call-{branch}\n"), "");
    assert!(!bad.contains("Call-ID"));
    fe.send(&bad);
    let r = fe.recv(WAIT).expect("an answer to the malformed request");
    assert_eq!(sip::status(&r), 400, "{r}");
    let warning = sip::header(&r, "Warning").unwrap_or_else(|| panic!("no Warning:\n{r}"));
    assert!(warning.contains("Call-ID"), "{warning}");
    assert!(w.partner().requests().is_empty());
}

#[test]
fn an_oversized_message_gets_513_then_the_connection_closes() {
    let w = callee_world(|_| {});
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-big1";
    // Declares 10 MB (the default limit is 128 KiB): the head is answerable, the stream is not.
    let big = fe_request("MESSAGE", "sip:bob@partner.test", branch, "")
        .replace("Content-Length: 0", "Content-Length: 10000000");
    fe.send(&big);
    let r = fe.recv(WAIT).expect("an answer to the oversized request");
    assert_eq!(sip::status(&r), 513, "{r}");
    assert_eq!(sip::top_branch(&r), branch, "{r}");
    let warning = sip::header(&r, "Warning").unwrap_or_else(|| panic!("no Warning:\n{r}"));
    assert!(warning.contains("10000000 octets"), "{warning}");
    assert!(
        fe.wait_closed(WAIT),
        "the stream's boundaries are lost: the edge closes it"
    );
    assert!(w.partner().requests().is_empty());
}

/// Bytes that can never begin a SIP message close the connection at their first read, long before
/// the message bound (here 60 s) or the idle timeout: a TLS ClientHello inside the TLS stream, NULs,
/// a start line longer than any method + URI + version. Each close is logged with its reason.
#[test]
fn bytes_that_cannot_begin_a_message_close_the_connection_at_once() {
    let w = callee_world(|o| o.message_timeout_ms = Some(60_000));
    let mut long = b"MESSAGE sip:".to_vec();
    long.resize(5000, b'a');
    let probes: [&[u8]; 3] = [
        &[0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00],
        b"\0\0\0\0\0\0",
        &long,
    ];
    for (i, probe) in probes.iter().enumerate() {
        let mut fe = w.fe();
        let started = Instant::now();
        fe.send_raw(probe);
        assert!(
            fe.wait_closed(WAIT),
            "probe {i} left the connection open\n{}",
            w.edge.log_dump()
        );
        assert!(started.elapsed() < WAIT, "probe {i}");
    }
    let closes = (0..50)
        .find_map(|_| {
            let n = w.edge.logs_with("\"reason\":\"not_sip\"").len();
            (n >= 3).then_some(n).or_else(|| {
                std::thread::sleep(Duration::from_millis(50));
                None
            })
        })
        .unwrap_or_else(|| panic!("three not_sip closes logged\n{}", w.edge.log_dump()));
    assert_eq!(closes, 3);
    // The link still serves a well-formed request afterwards (a new connection).
    let mut fe = w.fe();
    fe.send(&fe_request(
        "OPTIONS",
        "sip:bob@partner.test",
        "z9hG4bKfe-after",
        "",
    ));
    assert_eq!(sip::status(&fe.recv_final(WAIT, "OPTIONS").unwrap()), 200);
}

/// A message that starts and stalls is bounded by `limits.message_timeout_ms`: with its header
/// section there it is answered 408 and the connection closed; with half a head the connection is
/// closed (nothing to answer). Keepalive pings meanwhile do not extend the bound.
#[test]
fn a_message_that_stalls_is_answered_408_and_closed() {
    let w = callee_world(|o| o.message_timeout_ms = Some(800));
    let mut fe = w.fe();
    let branch = "z9hG4bKfe-stall1";
    let req = fe_request("MESSAGE", "sip:bob@partner.test", branch, "")
        .replace("Content-Length: 0", "Content-Length: 100");
    fe.send(&req);
    fe.send_raw(b"only part of the body");
    let started = Instant::now();
    let r = fe.recv(WAIT).expect("an answer to the stalled request");
    assert_eq!(sip::status(&r), 408, "{r}");
    assert_eq!(sip::top_branch(&r), branch, "{r}");
    let warning = sip::header(&r, "Warning").unwrap_or_else(|| panic!("no Warning:\n{r}"));
    assert!(warning.contains("incomplete after 800 ms"), "{warning}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "answered before the bound"
    );
    assert!(fe.wait_closed(WAIT));
    assert!(w.partner().requests().is_empty());

    // Half a head, kept "alive" with traffic: closed at the bound, not at the idle timeout.
    let mut fe = w.fe();
    fe.send_raw(b"MESSAGE sip:bob@partner.test SIP/2.0\r\nVia: SIP/2.0/TLS fe1");
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(300));
        if fe.closed().is_some() {
            break;
        }
        let _ = fe.try_send(".");
    }
    assert!(
        fe.wait_closed(WAIT),
        "a stalled head must close\n{}",
        w.edge.log_dump()
    );
    assert!(
        w.edge.wait_log("\"reason\":\"message_timeout\"", WAIT).is_some(),
        "{}",
        w.edge.log_dump()
    );
}

/// Issue 8.4: a second `sipedge run` on the addresses a running edge holds refuses to start (exit
/// 1), naming the listener and the address, instead of silently sharing the traffic through
/// SO_REUSEPORT; the first edge keeps serving.
#[test]
fn a_second_edge_on_the_same_port_refuses_to_start() {
    let w = callee_world(|_| {});
    let config = std::fs::read_to_string(&w.edge.config_path).unwrap().replacen(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{}\"", w.edge.internal_addr),
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("second.toml");
    std::fs::write(&path, &config).unwrap();
    let out = std::process::Command::new(sipedge_tests::sipedge_bin())
        .args(["run", "--config"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "internal listener {}: address already in use",
            w.edge.internal_addr
        )),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "it must not listen"
    );
    let mut fe = w.fe();
    fe.send(&fe_request(
        "OPTIONS",
        "sip:bob@partner.test",
        "z9hG4bKfe-two",
        "",
    ));
    assert_eq!(sip::status(&fe.recv_final(WAIT, "OPTIONS").unwrap()), 200);
}

// ---- the harness itself ------------------------------------------------------------------------

#[test]
fn the_scenario_config_passes_check_config() {
    let pki = TestPki::new();
    let mut opts = EdgeOpts::new(closed_port(), closed_port());
    opts.blocked.push("blocked.test".into());
    opts.invite_timeout_ms = Some(1000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sipedge.toml");
    std::fs::write(&path, opts.render(&pki)).unwrap();
    let out = std::process::Command::new(sipedge_tests::sipedge_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", opts.render(&pki));
    assert!(
        stdout.lines().last().is_some_and(|l| l.starts_with("ok: ")),
        "{stdout}"
    );
}

/// The peers against each other, no edge: framing, the reply helper, delayed replies, stop, and
/// that the rogue certificate really does not name edge.partner.test.
#[test]
fn harness_peers_talk_to_each_other() {
    let pki = TestPki::new();
    let mut uas = TlsUas::start_with(&pki.partner, &pki.internal_ca.cert, |m: &Message<'_>| {
        match m.method() {
            Some("INVITE") => vec![
                Reply::Now(reply(m, 180, "Ringing", Some("t1"))),
                Reply::After(Duration::from_millis(300), reply(m, 200, "OK", Some("t1"))),
            ],
            _ => vec![Reply::Now(reply(m, 200, "OK", Some("t1")))],
        }
    });
    let mut c = TlsPeer::connect(uas.addr, &pki.fe, &pki.partner_ca.cert, "edge.partner.test").unwrap();
    c.send(&sip::message(
        "sip:bob@partner.test",
        "fe1.corp.test:5061",
        "z9hG4bKh1",
        "sip:alice@corp.test",
    ));
    let ok = c.recv(WAIT).unwrap();
    assert_eq!(sip::status(&ok), 200);
    assert_eq!(sip::top_branch(&ok), "z9hG4bKh1");
    assert_eq!(sip::to_tag(&ok).as_deref(), Some("t1"));
    assert_eq!(sip::cseq_method(&ok), "MESSAGE");
    let t0 = Instant::now();
    c.send(&fe_request("INVITE", "sip:bob@partner.test", "z9hG4bKh2", ""));
    assert_eq!(sip::status(&c.recv(WAIT).unwrap()), 180);
    c.send(&fe_request("OPTIONS", "sip:bob@partner.test", "z9hG4bKh3", ""));
    assert_eq!(
        sip::status(&c.recv_final(WAIT, "OPTIONS").unwrap()),
        200,
        "not blocked by the pending 200"
    );
    assert!(t0.elapsed() < Duration::from_millis(300));
    assert_eq!(sip::status(&c.recv_final(WAIT, "INVITE").unwrap()), 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(uas.requests().len(), 3);
    uas.stop();
    assert!(c.wait_closed(WAIT), "stop closes the connections");
    assert!(TlsPeer::connect(uas.addr, &pki.fe, &pki.partner_ca.cert, "edge.partner.test").is_err());

    let rogue = TlsUas::silent(&pki.rogue, &pki.internal_ca.cert);
    let r = TlsPeer::connect(rogue.addr, &pki.fe, &pki.partner_ca.cert, "edge.partner.test");
    assert!(
        r.is_err(),
        "the rogue certificate must not pass for edge.partner.test"
    );
}
