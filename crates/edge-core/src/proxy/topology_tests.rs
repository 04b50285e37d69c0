//! The trust boundary of generated answers: nothing about the inside — internal host names,
//! addresses, ports, OS error texts — reaches a partner in anything the edge itself writes
//! towards the external side. The test walks every diagnostic id the edge can send to a partner
//! (the refusals of an inbound request, every delivery failure towards the front-end pool, the
//! timeouts, the liveness NOTIFY) and checks the whole message, not only `ms-diagnostics-public`;
//! the same failures towards the front ends keep their facts in `ms-diagnostics`. (What the edge
//! relays — a front end's Via, Record-Route and Contact — is topology hiding, issue 21.)

use std::collections::BTreeSet;
use std::time::Duration;

use sip_codec::{parse, HeaderName};

use super::io::*;
use super::tests::{answer, f, peer, sends, FE, H};

const PARTNER_IN: ConnId = ConnId(2);
const POOL: ConnId = ConnId(101);

/// What the inside looks like in these tests: the pool and front-end names, the internal
/// listener's name, an internal address and port, OS error texts.
const INSIDE: [&str; 8] = [
    "pool.corp.example",
    "fe1.corp.example",
    "fe9.corp.example",
    "edge-int.corp.example",
    "10.1.2.3",
    "5062",
    "os error",
    "Connection refused",
];

/// The ids the edge can send to a partner; the walk must see each one.
const PUBLIC_IDS: [u32; 16] = [
    1002, 1005, 1007, 1010, 1014, 1027, 1047, 1901, 1902, 1903, 1904, 1905, 1906, 1908, 1912, 1913,
];

fn inbound(method: &str, from: &str, ruri: &str, branch: &str, extra: &str, body: &str) -> String {
    format!(
        "{method} {ruri} SIP/2.0\nVia: SIP/2.0/TLS edge.partner.example:5061;branch={branch}\nMax-Forwards: 70\nFrom: <{from}>;tag=p1\nTo: <{ruri}>\nCall-ID: in-{branch}\nCSeq: 1 {method}\nContact: <sip:bob@edge.partner.example:5061;transport=tls>\n{extra}Content-Length: {}\n\n{body}",
        body.len()
    )
}

fn partner_message(branch: &str) -> String {
    inbound(
        "MESSAGE",
        "sip:bob@partner.example",
        "sip:alice@corp.example",
        branch,
        "",
        "",
    )
}

/// Everything sent to the partner's connection in `effects`, checked for the inside; the ids of
/// their public diagnostics are added to `seen`.
fn check_outward(effects: &[Effect], seen: &mut BTreeSet<u32>, case: &str) -> usize {
    let mut n = 0;
    for (dest, text, _) in sends(effects) {
        if !outward(&dest) {
            continue;
        }
        n += 1;
        for word in INSIDE {
            assert!(
                !text.contains(word),
                "{case}: {word:?} reached the partner:\n{text}"
            );
        }
        let m = parse(text.as_bytes()).unwrap();
        assert!(
            m.header(HeaderName::MsDiagnostics).is_none(),
            "{case}: the internal form went out:\n{text}"
        );
        if let Ok(d) = m.ms_diagnostics_public() {
            assert_eq!(d.source(), None, "{case}");
            seen.insert(d.id);
        }
    }
    n
}

/// The partner's connection to us, or a hop on the external side.
fn outward(dest: &Destination) -> bool {
    match dest {
        Destination::Conn(c) => *c == PARTNER_IN,
        Destination::Hop(hop) => hop.side == Side::External,
    }
}

/// What the front end's `text` sends towards the partner, checked for the inside: the forwarded
/// text and its delivery token.
fn forwarded_out(h: &mut H, text: &str, case: &str) -> (String, Option<Token>) {
    let out = sends(&h.msg(FE, text));
    let (dest, fwd, token) = out
        .iter()
        .find(|(d, _, _)| outward(d))
        .cloned()
        .expect("forwarded");
    let eff = vec![Effect::Send {
        dest,
        bytes: fwd.clone().into_bytes(),
        token,
    }];
    assert_eq!(check_outward(&eff, &mut BTreeSet::new(), case), 1);
    (fwd, token)
}

/// An inbound MESSAGE forwarded towards the pool: the token of its delivery.
fn forwarded(h: &mut H, branch: &str) -> Token {
    let out = sends(&h.msg(PARTNER_IN, &partner_message(branch)));
    let (dest, _, token) = out.first().cloned().expect("forwarded");
    assert!(
        matches!(
            dest,
            Destination::Hop(NextHop {
                side: Side::Internal,
                ..
            })
        ),
        "{dest:?}"
    );
    token.expect("a token")
}

fn pool_up(h: &mut H) {
    if !h.proxy.peers.contains_key(&POOL) {
        let mut p = peer(Side::Internal, "pool.corp.example");
        p.dialled = Some(f("pool.corp.example"));
        h.input(Input::ConnUp { conn: POOL, peer: p });
    }
}

#[test]
fn nothing_about_the_inside_reaches_a_partner() {
    let mut h = H::new();
    let mut seen = BTreeSet::new();
    // Every way a delivery to the front-end pool can fail, as the shell reports it (with the
    // internal address and the OS error, which the internal side's log and header keep).
    let failures = [
        DeliveryFailure::Resolve("pool.corp.example: no address (10.1.2.3 not answering)".into()),
        DeliveryFailure::Connect("10.1.2.3:5062: Connection refused (os error 111)".into()),
        DeliveryFailure::Tls("10.1.2.3:5062: Connection reset by peer (os error 104)".into()),
        DeliveryFailure::CertificateMismatch {
            presented: vec!["fe9.corp.example".into()],
        },
        DeliveryFailure::Overloaded("10.1.2.3:5062: write queue full".into()),
    ];
    for (i, failure) in failures.into_iter().enumerate() {
        let token = forwarded(&mut h, &format!("z9hG4bKdf{i}"));
        let eff = h.input(Input::DeliveryFailed { token, failure });
        assert_eq!(
            check_outward(&eff, &mut seen, &format!("delivery failure {i}")),
            1
        );
    }
    // The pool link dies with the transaction open (503 1007).
    let token = forwarded(&mut h, "z9hG4bKll");
    pool_up(&mut h);
    h.input(Input::Delivered { token, conn: POOL });
    let eff = h.input(Input::ConnClosed {
        conn: POOL,
        reason: LinkEnd::PeerClosed,
    });
    assert_eq!(check_outward(&eff, &mut seen, "link lost"), 1);
    // The pool never answers (408 at Timer F).
    let token = forwarded(&mut h, "z9hG4bKtf");
    pool_up(&mut h);
    h.input(Input::Delivered { token, conn: POOL });
    let eff = h.advance(Duration::from_secs(33));
    assert_eq!(check_outward(&eff, &mut seen, "timer F"), 1);

    // The refusals of an inbound request.
    let refusals = [
        (
            "no From domain",
            inbound(
                "MESSAGE",
                "sip:bob@[2001:db8::9]",
                "sip:alice@corp.example",
                "z9hG4bKr1",
                "",
                "",
            ),
        ),
        (
            "blocked",
            inbound(
                "MESSAGE",
                "sip:bad@evil.example",
                "sip:alice@corp.example",
                "z9hG4bKr2",
                "",
                "",
            ),
        ),
        (
            "our own domain",
            inbound(
                "MESSAGE",
                "sip:ceo@corp.example",
                "sip:alice@corp.example",
                "z9hG4bKr3",
                "",
                "",
            ),
        ),
        (
            "not the partner's server",
            inbound(
                "MESSAGE",
                "sip:x@other.example",
                "sip:alice@corp.example",
                "z9hG4bKr4",
                "",
                "",
            ),
        ),
        (
            "relay",
            inbound(
                "MESSAGE",
                "sip:bob@partner.example",
                "sip:someone@elsewhere.example",
                "z9hG4bKr5",
                "",
                "",
            ),
        ),
        (
            "loop",
            inbound(
                "MESSAGE",
                "sip:bob@partner.example",
                "sip:alice@corp.example",
                "z9hG4bKr6",
                "Via: SIP/2.0/TLS edge.corp.example:5061;branch=z9hG4bKse0x77\n",
                "",
            ),
        ),
        (
            "method",
            inbound(
                "REGISTER",
                "sip:bob@partner.example",
                "sip:alice@corp.example",
                "z9hG4bKr7",
                "",
                "",
            ),
        ),
        (
            "IM filter",
            inbound(
                "MESSAGE",
                "sip:bob@partner.example",
                "sip:alice@corp.example",
                "z9hG4bKr8",
                "Content-Type: text/plain\n",
                "see http://example.com/x",
            ),
        ),
        (
            "bad header",
            inbound(
                "MESSAGE",
                "sip:bob@partner.example",
                "sip:alice@corp.example",
                "z9hG4bKr9",
                "Contact: <sip:x@edge.partner.example>;;\n",
                "",
            ),
        ),
    ];
    for (case, text) in &refusals {
        let eff = h.msg(PARTNER_IN, text);
        assert_eq!(check_outward(&eff, &mut seen, case), 1, "{case}: {eff:?}");
    }
    // A server that is not the From domain's SRV target (1903), after the lookup.
    let text = inbound(
        "MESSAGE",
        "sip:x@srvpartner.example",
        "sip:alice@corp.example",
        "z9hG4bKr10",
        "",
        "",
    );
    let eff = h.msg(PARTNER_IN, &text);
    let Some(Effect::LookupSrv { token, .. }) = eff
        .iter()
        .find(|e| matches!(e, Effect::LookupSrv { .. }))
        .cloned()
    else {
        panic!("{eff:?}")
    };
    let records = vec![federation_policy::SrvRecord {
        priority: 10,
        weight: 1,
        port: 5061,
        target: "sip.srvpartner.example".into(),
    }];
    let eff = h.input(Input::Srv {
        token,
        result: SrvResult::Records(records),
    });
    assert_eq!(check_outward(&eff, &mut seen, "not the SRV target"), 1);
    // A partner's watcher of an inside presentity: the subscription bound (503 1913) ...
    h.proxy.settings.max_subscriptions = 0;
    let sub = |branch: &str| {
        inbound(
            "SUBSCRIBE",
            "sip:bob@partner.example",
            "sip:alice@corp.example",
            branch,
            "Event: presence\nExpires: 3600\n",
            "",
        )
    };
    let eff = h.msg(PARTNER_IN, &sub("z9hG4bKs0"));
    assert_eq!(check_outward(&eff, &mut seen, "subscriptions full"), 1);
    // ... and, tracked, the NOTIFY that ends it when the pool link dies (1912 without the link's
    // internal name; the front end's own NOTIFY keeps it, see dialog_tests.rs).
    h.proxy.settings.max_subscriptions = 10;
    let out = sends(&h.msg(PARTNER_IN, &sub("z9hG4bKs1")));
    let (_, fwd, token) = out.first().cloned().expect("forwarded");
    pool_up(&mut h);
    h.input(Input::Delivered {
        token: token.expect("a token"),
        conn: POOL,
    });
    let ok = answer(&fwd, 200, "OK", Some("w9")).replace("Content-Length", "Expires: 3600\nContent-Length");
    // Relayed, not generated: its Record-Route leaves sealed (topology hiding, see below).
    let back = sends(&h.msg(POOL, &ok));
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, Destination::Conn(PARTNER_IN));
    assert_eq!(h.proxy.subscriptions(), 1);
    let eff = h.input(Input::ConnClosed {
        conn: POOL,
        reason: LinkEnd::KeepaliveFailed,
    });
    let notify: Vec<_> = sends(&eff).into_iter().filter(|(d, _, _)| outward(d)).collect();
    assert_eq!(notify.len(), 1, "{eff:?}");
    assert!(notify[0].1.starts_with("NOTIFY "), "{}", notify[0].1);
    check_outward(&eff, &mut seen, "liveness NOTIFY");
    assert!(
        notify[0].1.contains("cause=\"keepalive_failed\""),
        "{}",
        notify[0].1
    );
    // Draining (503, no id).
    h.proxy.begin_shutdown();
    let eff = h.msg(PARTNER_IN, &partner_message("z9hG4bKdr"));
    assert_eq!(check_outward(&eff, &mut seen, "draining"), 1);

    let missing: Vec<u32> = PUBLIC_IDS
        .iter()
        .copied()
        .filter(|id| !seen.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "ids never walked: {missing:?} (seen {seen:?})"
    );
}

/// The same delivery failure towards the front ends keeps every fact: the operator needs them.
#[test]
fn the_internal_side_keeps_the_facts() {
    let mut h = H::new();
    let token = forwarded(&mut h, "z9hG4bKk1");
    let failure = DeliveryFailure::Connect("10.1.2.3:5062: Connection refused (os error 111)".into());
    let eff = h.input(Input::DeliveryFailed { token, failure });
    // Towards the partner: id and reason only.
    let to_partner = sends(&eff)
        .into_iter()
        .find(|(d, _, _)| *d == Destination::Conn(PARTNER_IN))
        .unwrap();
    let m = parse(to_partner.1.as_bytes()).unwrap();
    let public =
        String::from_utf8_lossy(m.header(HeaderName::MsDiagnosticsPublic).unwrap().raw_value).into_owned();
    assert_eq!(public, "1904;reason=\"Cannot connect to the next hop\"");
    // Outbound, the partner is the next hop and the front end hears all of it.
    let out = sends(&h.msg(
        FE,
        "MESSAGE sip:bob@partner.example SIP/2.0\nVia: SIP/2.0/TLS fe1.corp.example:5061;branch=z9hG4bKk2\nMax-Forwards: 70\nFrom: <sip:alice@corp.example>;tag=a1\nTo: <sip:bob@partner.example>\nCall-ID: k2\nCSeq: 1 MESSAGE\nContent-Length: 0\n\n",
    ));
    let token = out[0].2.unwrap();
    let eff = h.input(Input::DeliveryFailed {
        token,
        failure: DeliveryFailure::Connect("192.0.2.7:5061: Connection refused (os error 111)".into()),
    });
    let r = sends(&eff);
    let m = parse(r[0].1.as_bytes()).unwrap();
    let d = m.ms_diagnostics().unwrap();
    assert_eq!(d.id, 1904);
    assert_eq!(d.param("fqdn"), Some("edge.partner.example"));
    assert_eq!(
        d.param("error"),
        Some("192.0.2.7:5061: Connection refused (os error 111)")
    );
    assert_eq!(d.source(), Some("edge.corp.example"));
}

/// Relayed messages (issue 21, topology hiding): a front end's request leaves with the edge's Via
/// alone — the Via headers of the inside (a front end and the proxy before it) never reach the
/// partner — and its response comes back with exactly those Via headers, in order, whatever the
/// partner put below the edge's own.
#[test]
fn the_insides_via_headers_stay_inside() {
    let mut h = H::new();
    let req = "MESSAGE sip:bob@partner.example SIP/2.0\nVia: SIP/2.0/TLS fe1.corp.example:5061;branch=z9hG4bKth1\nVia: SIP/2.0/TLS 10.1.2.3:5062;branch=z9hG4bKclient;received=10.1.2.3, SIP/2.0/TLS fe9.corp.example;branch=z9hG4bKc2\nMax-Forwards: 70\nFrom: <sip:alice@corp.example>;tag=a1\nTo: <sip:bob@partner.example>\nCall-ID: th-1\nCSeq: 1 MESSAGE\nContent-Length: 0\n\n";
    let out = sends(&h.msg(FE, req));
    let (dest, fwd, token) = out.first().cloned().expect("forwarded");
    assert!(outward(&dest), "{dest:?}");
    let mut seen = BTreeSet::new();
    let eff = vec![Effect::Send {
        dest: dest.clone(),
        bytes: fwd.clone().into_bytes(),
        token,
    }];
    assert_eq!(check_outward(&eff, &mut seen, "forwarded MESSAGE"), 1);
    let m = parse(fwd.as_bytes()).unwrap();
    assert_eq!(m.vias().count(), 1, "{fwd}");
    h.delivered(token.unwrap());
    // A partner that adds a Via of its own below ours cannot make it reach the front end.
    let answer = answer(&fwd, 200, "OK", Some("b1")).replacen(
        "\nFrom:",
        "\nVia: SIP/2.0/TLS evil.partner.example;branch=z9hG4bKinject\nFrom:",
        1,
    );
    let back = sends(&h.msg(ConnId(100), &answer));
    let (dest, text, _) = back.first().cloned().expect("relayed");
    assert_eq!(dest, Destination::Conn(FE));
    let r = parse(text.as_bytes()).unwrap();
    let vias: Vec<String> = r
        .headers()
        .iter()
        .filter(|h| h.name == HeaderName::Via)
        .map(|h| h.value_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        vias,
        [
            "SIP/2.0/TLS fe1.corp.example:5061;branch=z9hG4bKth1",
            "SIP/2.0/TLS 10.1.2.3:5062;branch=z9hG4bKclient;received=10.1.2.3, SIP/2.0/TLS fe9.corp.example;branch=z9hG4bKc2",
        ],
        "{text}"
    );
}

/// A partner's out-of-dialog request with a Route past the edge's own (a preloaded route naming a
/// host inside): the Route is stripped, the front-end pool routes the request by its Request-URI.
/// In a dialog, the route set is followed as before.
#[test]
fn a_partners_preloaded_route_is_not_followed_inside() {
    let mut h = H::new();
    let route = "Route: <sip:edge.corp.example:5061;transport=tls;lr>, <sip:fe9.corp.example:5062;lr>\n";
    let req = inbound(
        "MESSAGE",
        "sip:bob@partner.example",
        "sip:alice@corp.example",
        "z9hG4bKpr1",
        route,
        "",
    );
    let out = sends(&h.msg(PARTNER_IN, &req));
    let (dest, fwd, _) = out.first().cloned().expect("forwarded");
    assert!(
        matches!(&dest, Destination::Hop(NextHop { side: Side::Internal, fqdn }) if fqdn.host().as_str() == "pool.corp.example"),
        "{dest:?}"
    );
    let m = parse(fwd.as_bytes()).unwrap();
    assert_eq!(m.routes().count(), 0, "no Route reaches the inside:\n{fwd}");
    // In a dialog (To tag): the entries past ours are the dialog's route set and stay.
    let in_dialog = req
        .replace(
            "To: <sip:alice@corp.example>",
            "To: <sip:alice@corp.example>;tag=a9",
        )
        .replace("z9hG4bKpr1", "z9hG4bKpr2");
    let out = sends(&h.msg(PARTNER_IN, &in_dialog));
    let (_, fwd, _) = out.first().cloned().expect("forwarded");
    let routes: Vec<String> = parse(fwd.as_bytes())
        .unwrap()
        .routes()
        .map(|r| r.unwrap().uri.to_owned())
        .collect();
    assert_eq!(routes, ["sip:fe9.corp.example:5062;lr"], "{fwd}");
}

/// The dialog's route sets (issue 21, topology hiding): a front end's INVITE reaches the partner
/// with the edge's external face alone in Record-Route — the front end's entry and the edge's
/// internal face sealed in it, unreadable — the 2xx goes back inside with them opened in place,
/// and the partner's in-dialog request comes in with the front end's entry back in its Route.
/// A token the edge did not seal opens nothing.
#[test]
fn the_insides_record_route_reaches_a_partner_only_sealed() {
    let mut h = H::new();
    let invite = "INVITE sip:bob@partner.example SIP/2.0\nVia: SIP/2.0/TLS fe1.corp.example:5061;branch=z9hG4bKrr1\nRecord-Route: <sip:fe1.corp.example:5061;transport=tls;lr>\nMax-Forwards: 70\nFrom: <sip:alice@corp.example>;tag=a1\nTo: <sip:bob@partner.example>\nCall-ID: rr-1\nCSeq: 1 INVITE\nContact: <sip:alice@corp.example;gr=urn:uuid:1>\nContent-Length: 0\n\n";
    let (fwd, token) = forwarded_out(&mut h, invite, "forwarded INVITE");
    let rr: Vec<String> = parse(fwd.as_bytes())
        .unwrap()
        .headers()
        .iter()
        .filter(|h| h.name == HeaderName::RecordRoute)
        .map(|h| h.value_str().unwrap().to_owned())
        .collect();
    assert_eq!(rr.len(), 1, "{fwd}");
    h.delivered(token.unwrap());
    // The partner's 200, with a proxy of its own on top.
    let ok = answer(&fwd, 200, "OK", Some("b1")).replacen(
        "Record-Route: ",
        "Record-Route: <sip:proxy.partner.example;lr>, ",
        1,
    );
    let back = sends(&h.msg(ConnId(100), &ok));
    let (_, text, _) = back.first().cloned().expect("relayed");
    let rr_in: Vec<String> = parse(text.as_bytes())
        .unwrap()
        .record_routes()
        .map(|r| r.unwrap().uri.to_owned())
        .collect();
    assert_eq!(rr_in.len(), 4, "{text}");
    assert_eq!(rr_in[0], "sip:proxy.partner.example;lr");
    assert!(rr_in[1].contains(";sh="));
    assert_eq!(
        rr_in[2..],
        [
            "sip:edge-int.corp.example:5061;transport=tls;lr",
            "sip:fe1.corp.example:5061;transport=tls;lr"
        ]
    );
    // The partner's BYE follows its route set (the Record-Route as it saw it).
    let sealed = rr[0].clone();
    let bye = format!(
        "BYE sip:alice@corp.example;gr=urn:uuid:1 SIP/2.0\nVia: SIP/2.0/TLS edge.partner.example:5061;branch=z9hG4bKbye1\nRoute: {sealed}\nMax-Forwards: 70\nFrom: <sip:bob@partner.example>;tag=b1\nTo: <sip:alice@corp.example>;tag=a1\nCall-ID: rr-1\nCSeq: 1 BYE\nContent-Length: 0\n\n"
    );
    let inside = sends(&h.msg(PARTNER_IN, &bye));
    let (_, fwd_bye, _) = inside.first().cloned().expect("forwarded inside");
    let routes: Vec<String> = parse(fwd_bye.as_bytes())
        .unwrap()
        .routes()
        .map(|r| r.unwrap().uri.to_owned())
        .collect();
    assert_eq!(
        routes,
        ["sip:fe1.corp.example:5061;transport=tls;lr"],
        "{fwd_bye}"
    );
    // A token the edge did not seal (altered) opens nothing: only the edge's own entry goes.
    let forged = sealed.replacen(";sh=", ";sh=AAAA", 1);
    let inside = sends(&h.msg(PARTNER_IN, &bye.replace(&sealed, &forged).replace("bye1", "bye2")));
    let (_, fwd_bye, _) = inside.first().cloned().expect("forwarded inside");
    assert_eq!(
        parse(fwd_bye.as_bytes()).unwrap().routes().count(),
        0,
        "{fwd_bye}"
    );
}

/// A partner's SUBSCRIBE: the front end's 2xx leaves with the front end's Record-Route entry and
/// the edge's internal face sealed into the edge's external face, the partner's own entry kept;
/// the partner's refresh brings the front end's entry back.
#[test]
fn a_front_ends_answer_leaves_with_its_record_route_sealed() {
    let mut h = H::new();
    pool_up(&mut h);
    let sub = inbound(
        "SUBSCRIBE",
        "sip:bob@partner.example",
        "sip:alice@corp.example",
        "z9hG4bKsub1",
        "Record-Route: <sip:proxy.partner.example;lr>\nEvent: presence\nExpires: 3600\n",
        "",
    );
    let out = sends(&h.msg(PARTNER_IN, &sub));
    let (_, fwd, token) = out.first().cloned().expect("forwarded inside");
    h.input(Input::Delivered {
        token: token.expect("a token"),
        conn: POOL,
    });
    // The front end answers, its own Record-Route on top of what it received.
    let ok = answer(&fwd, 200, "OK", Some("a9")).replacen(
        "Record-Route: ",
        "Record-Route: <sip:fe9.corp.example:5062;transport=tls;lr>, ",
        1,
    );
    let eff = h.msg(POOL, &ok);
    let mut seen = BTreeSet::new();
    assert_eq!(check_outward(&eff, &mut seen, "the front end's 200"), 1);
    let (_, text, _) = sends(&eff).first().cloned().expect("relayed");
    let rr: Vec<String> = parse(text.as_bytes())
        .unwrap()
        .record_routes()
        .map(|r| r.unwrap().uri.to_owned())
        .collect();
    assert_eq!(rr.len(), 2, "{text}");
    assert!(
        rr[0].starts_with("sip:edge.corp.example:5061;transport=tls;lr;sh="),
        "{text}"
    );
    assert_eq!(rr[1], "sip:proxy.partner.example;lr");
    // The partner (the subscriber) refreshes along its route set: the reverse of the 2xx's.
    let refresh = inbound(
        "SUBSCRIBE",
        "sip:bob@partner.example",
        "sip:alice@corp.example",
        "z9hG4bKsub2",
        &format!("Route: <{}>\nEvent: presence\nExpires: 3600\n", rr[0]),
        "",
    )
    .replace(
        "To: <sip:alice@corp.example>",
        "To: <sip:alice@corp.example>;tag=a9",
    );
    let out = sends(&h.msg(PARTNER_IN, &refresh));
    let (_, fwd2, _) = out.first().cloned().expect("forwarded inside");
    let routes: Vec<String> = parse(fwd2.as_bytes())
        .unwrap()
        .routes()
        .map(|r| r.unwrap().uri.to_owned())
        .collect();
    assert_eq!(routes, ["sip:fe9.corp.example:5062;transport=tls;lr"], "{fwd2}");
}

/// Contact (issue 21): a front end's contact naming its own host reaches the partner as the edge's
/// external face, the original sealed in `;sc=`, its header parameters kept; the partner's request
/// to that target goes inside with the original Request-URI back. A contact naming one of our
/// domains (a Lync GRUU) is left as it is; so is a front end's answer's contact, rewritten the same
/// way when it names a host.
#[test]
fn an_inside_contact_reaches_a_partner_only_sealed() {
    let mut h = H::new();
    let invite = "INVITE sip:bob@partner.example SIP/2.0\nVia: SIP/2.0/TLS fe1.corp.example:5061;branch=z9hG4bKct1\nMax-Forwards: 70\nFrom: <sip:alice@corp.example>;tag=a1\nTo: <sip:bob@partner.example>\nCall-ID: ct-1\nCSeq: 1 INVITE\nContact: \"Alice\" <sip:alice@fe1.corp.example:5061;transport=tls>;+sip.instance=\"<urn:uuid:1>\"\nContent-Length: 0\n\n";
    let (fwd, token) = forwarded_out(&mut h, invite, "INVITE with a host contact");
    let mut seen = BTreeSet::new();
    let m = parse(fwd.as_bytes()).unwrap();
    let contact = m
        .header(HeaderName::Contact)
        .unwrap()
        .value_str()
        .unwrap()
        .to_owned();
    assert!(
        contact.starts_with("\"Alice\" <sip:alice@edge.corp.example:5061;transport=tls;sc="),
        "{contact}"
    );
    assert!(contact.ends_with(">;+sip.instance=\"<urn:uuid:1>\""), "{contact}");
    let target = contact
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(u, _)| u.to_owned())
        .unwrap();
    let rr = parse(fwd.as_bytes())
        .unwrap()
        .record_routes()
        .next()
        .unwrap()
        .unwrap()
        .uri
        .to_owned();
    h.delivered(token.unwrap());
    h.msg(ConnId(100), &answer(&fwd, 200, "OK", Some("b1")));
    // The partner's BYE to the remote target it was given.
    let bye = format!(
        "BYE {target} SIP/2.0\nVia: SIP/2.0/TLS edge.partner.example:5061;branch=z9hG4bKctb\nRoute: <{rr}>\nMax-Forwards: 70\nFrom: <sip:bob@partner.example>;tag=b1\nTo: <sip:alice@corp.example>;tag=a1\nCall-ID: ct-1\nCSeq: 1 BYE\nContent-Length: 0\n\n"
    );
    let inside = sends(&h.msg(PARTNER_IN, &bye));
    let (_, fwd_bye, _) = inside.first().cloned().expect("forwarded inside");
    assert_eq!(
        parse(fwd_bye.as_bytes()).unwrap().request_uri(),
        Some("sip:alice@fe1.corp.example:5061;transport=tls"),
        "{fwd_bye}"
    );
    // A GRUU of our domain is no topology: kept.
    let gruu = invite
        .replace("z9hG4bKct1", "z9hG4bKct2")
        .replace("ct-1", "ct-2")
        .replace(
            "sip:alice@fe1.corp.example:5061;transport=tls",
            "sip:alice@corp.example;gr=urn:uuid:1",
        );
    let out = sends(&h.msg(FE, &gruu));
    let (_, fwd, _) = out
        .iter()
        .find(|(d, _, _)| outward(d))
        .cloned()
        .expect("forwarded");
    assert!(
        fwd.contains("Contact: \"Alice\" <sip:alice@corp.example;gr=urn:uuid:1>"),
        "{fwd}"
    );
    // The front end's answer to a partner's INVITE: its host contact leaves sealed too.
    pool_up(&mut h);
    let inv_in = inbound(
        "INVITE",
        "sip:bob@partner.example",
        "sip:alice@corp.example",
        "z9hG4bKctin",
        "",
        "",
    );
    let out = sends(&h.msg(PARTNER_IN, &inv_in));
    let (_, fwd_in, token) = out.iter().find(|(d, _, _)| !outward(d)).cloned().expect("inside");
    h.input(Input::Delivered {
        token: token.expect("a token"),
        conn: POOL,
    });
    let ok = answer(&fwd_in, 200, "OK", Some("a7")).replacen(
        "Content-Length",
        "Contact: <sip:alice@fe9.corp.example:5062;transport=tls>\nContent-Length",
        1,
    );
    let eff = h.msg(POOL, &ok);
    assert_eq!(
        check_outward(&eff, &mut seen, "the front end's 200 with a host contact"),
        1
    );
}
