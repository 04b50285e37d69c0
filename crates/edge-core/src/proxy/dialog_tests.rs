//! Subscription liveness in the proxy core (`dialogs.rs`), on the virtual clock of `tests.rs`: a
//! watcher behind the front end (conn 1) subscribes to a partner presentity through the partner
//! link (dialled, conn 100); the partner's NOTIFYs cross; the link dies and the watcher gets the
//! terminating NOTIFY — or does not, when the edge itself closed a live link.

use std::time::Duration;

use sip_codec::{parse, HeaderName};

use super::io::*;
use super::tests::{answer, f, peer, sends, FE, H};
use super::SubscriptionEnd;

const PARTNER_OUT: ConnId = ConnId(100);

fn subscribe(branch: &str, call_id: &str) -> String {
    format!(
        "SUBSCRIBE sip:bob@partner.example SIP/2.0\n\
         Via: SIP/2.0/TLS fe1.corp.example:5061;branch={branch}\n\
         Record-Route: <sip:fe1.corp.example:5061;transport=tls;lr>\n\
         Max-Forwards: 70\n\
         From: <sip:alice@corp.example>;tag=w1\n\
         To: <sip:bob@partner.example>\n\
         Call-ID: {call_id}\n\
         CSeq: 1 SUBSCRIBE\n\
         Contact: <sip:alice@10.1.1.1:5061;transport=tls>\n\
         Event: presence\n\
         Expires: 3600\n\
         Content-Length: 0\n\n"
    )
}

/// The partner's NOTIFY in the dialog of `subscribe(_, call_id)` whose 2xx carried tag `n1`.
fn notify(cseq: u32, call_id: &str, state: &str) -> String {
    format!(
        "NOTIFY sip:alice@10.1.1.1:5061;transport=tls SIP/2.0\n\
         Via: SIP/2.0/TLS edge.partner.example:5061;branch=z9hG4bKpn{cseq}\n\
         Route: <sip:edge.corp.example:5061;transport=tls;lr>\n\
         Route: <sip:edge-int.corp.example:5061;transport=tls;lr>\n\
         Route: <sip:fe1.corp.example:5061;transport=tls;lr>\n\
         Max-Forwards: 70\n\
         From: <sip:bob@partner.example>;tag=n1\n\
         To: <sip:alice@corp.example>;tag=w1\n\
         Call-ID: {call_id}\n\
         CSeq: {cseq} NOTIFY\n\
         Contact: <sip:bob@edge.partner.example:5061;transport=tls>\n\
         Event: presence\n\
         Subscription-State: {state}\n\
         Content-Length: 0\n\n"
    )
}

/// The shell dialled the front-end pool (conn 101) and delivered `token` on it.
fn to_the_pool(h: &mut H, token: Token) {
    let mut p = peer(Side::Internal, "pool.corp.example");
    p.dialled = Some(f("pool.corp.example"));
    h.input(Input::ConnUp {
        conn: ConnId(101),
        peer: p,
    });
    h.input(Input::Delivered {
        token,
        conn: ConnId(101),
    });
}

/// A watcher subscribed through the edge: the SUBSCRIBE forwarded on conn 100, its 200 back.
fn subscribed(h: &mut H, call_id: &str) {
    let out = sends(&h.msg(FE, &subscribe(&format!("z9hG4bKs{call_id}"), call_id)));
    let (_, fwd, token) = out.first().cloned().expect("forwarded");
    h.delivered(token.expect("a token"));
    let ok = answer(&fwd, 200, "OK", Some("n1")).replace("Content-Length", "Expires: 3600\nContent-Length");
    let back = sends(&h.msg(PARTNER_OUT, &ok));
    assert_eq!(back.len(), 1, "the 200 goes to the watcher");
}

#[test]
fn a_dead_partner_link_terminates_the_watchers_subscription() {
    let mut h = H::new();
    subscribed(&mut h, "sub-1");
    assert_eq!(h.proxy.subscriptions(), 1);
    // Presence flows; the edge notes the notifier's CSeq.
    let fwd = sends(&h.msg(PARTNER_OUT, &notify(5, "sub-1", "active;expires=3599")));
    assert_eq!(fwd.len(), 1, "the NOTIFY is forwarded");
    // The partner's own connection to us (conn 2) was closed by the edge as idle: that ends no
    // subscription, and leaves the dialled one as the link's only connection.
    let eff = h.input(Input::ConnClosed {
        conn: ConnId(2),
        reason: LinkEnd::Idle,
    });
    assert!(sends(&eff).is_empty(), "{eff:?}");
    // The partner's link dies: its last connection ends without a pong.
    let eff = h.input(Input::ConnClosed {
        conn: PARTNER_OUT,
        reason: LinkEnd::KeepaliveFailed,
    });
    let out = sends(&eff);
    assert_eq!(out.len(), 1, "{eff:?}");
    let (dest, text, token) = &out[0];
    assert_eq!(
        *dest,
        Destination::Hop(NextHop {
            fqdn: f("pool.corp.example"),
            side: Side::Internal
        })
    );
    let m = parse(text.as_bytes()).unwrap();
    m.check_mandatory().unwrap();
    m.validate().unwrap();
    assert_eq!(m.method(), Some("NOTIFY"));
    assert_eq!(m.request_uri(), Some("sip:alice@10.1.1.1:5061;transport=tls"));
    let route: Vec<&str> = m.routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(route, ["sip:fe1.corp.example:5061;transport=tls;lr"]);
    assert_eq!(m.from().unwrap().tag(), Some("n1"));
    assert_eq!(m.to().unwrap().tag(), Some("w1"));
    assert_eq!(m.call_id(), Ok("sub-1"));
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.number, cseq.method), (5 + super::CSEQ_MARGIN + 1, "NOTIFY"));
    let value = |name| String::from_utf8_lossy(m.header(name).unwrap().raw_value).into_owned();
    assert_eq!(
        value(HeaderName::SubscriptionState),
        "terminated;reason=deactivated"
    );
    assert_eq!(value(HeaderName::Event), "presence");
    let diag = value(HeaderName::MsDiagnostics);
    assert!(diag.starts_with("1912;reason=\""), "{diag}");
    for fact in [
        "link=\"edge.partner.example\"",
        "cause=\"keepalive_failed\"",
        "source=\"edge.corp.example\"",
    ] {
        assert!(diag.contains(fact), "{fact} in {diag}");
    }
    let top = m.top_via().unwrap();
    assert_eq!(top.host, "edge-int.corp.example");
    assert_eq!(h.proxy.subscriptions(), 0);
    let st = h.proxy.stats();
    assert_eq!(
        st.subscriptions_ended[SubscriptionEnd::NotifierLinkFailed.index()],
        1
    );
    assert!(
        st.subscriptions_active.is_empty(),
        "{:?}",
        st.subscriptions_active
    );
    // The front end answers the edge's NOTIFY on the connection it went out on: absorbed.
    let token = token.expect("a token");
    to_the_pool(&mut h, token);
    let mut ok = format!(
        "SIP/2.0 200 OK\nVia: {}\n",
        String::from_utf8_lossy(m.header(HeaderName::Via).unwrap().raw_value)
    );
    ok.push_str(
        "From: <sip:bob@partner.example>;tag=n1\nTo: <sip:alice@corp.example>;tag=w1\nCall-ID: sub-1\n",
    );
    ok.push_str(&format!("CSeq: {} NOTIFY\nContent-Length: 0\n\n", cseq.number));
    assert!(
        sends(&h.msg(ConnId(101), &ok)).is_empty(),
        "the answer to our NOTIFY goes nowhere"
    );
    assert_eq!(h.proxy.dialogs.local_pending(), 0);
}

#[test]
fn a_link_the_edge_closed_itself_ends_nothing() {
    let mut h = H::new();
    subscribed(&mut h, "sub-2");
    let eff = h.input(Input::ConnClosed {
        conn: PARTNER_OUT,
        reason: LinkEnd::Idle,
    });
    assert!(sends(&eff).is_empty(), "{eff:?}");
    assert_eq!(h.proxy.subscriptions(), 1, "an idle close is not a dead peer");
}

#[test]
fn another_connection_to_the_partner_keeps_the_link_alive() {
    let mut h = H::new();
    subscribed(&mut h, "sub-3");
    // The partner's own connection to us (conn 2, accepted, certificate edge.partner.example) is
    // up: losing the dialled one is not losing the partner.
    let eff = h.input(Input::ConnClosed {
        conn: PARTNER_OUT,
        reason: LinkEnd::PeerClosed,
    });
    assert!(sends(&eff).is_empty(), "{eff:?}");
    assert_eq!(h.proxy.subscriptions(), 1);
    let eff = h.input(Input::ConnClosed {
        conn: ConnId(2),
        reason: LinkEnd::Reset,
    });
    assert_eq!(sends(&eff).len(), 1, "the last connection is gone: {eff:?}");
    assert_eq!(h.proxy.subscriptions(), 0);
}

#[test]
fn a_terminated_notify_a_481_and_the_expiry_end_the_tracking() {
    let mut h = H::new();
    subscribed(&mut h, "sub-4");
    sends(&h.msg(PARTNER_OUT, &notify(2, "sub-4", "terminated;reason=timeout")));
    assert_eq!(h.proxy.subscriptions(), 0);
    assert_eq!(
        h.proxy.stats().subscriptions_ended[SubscriptionEnd::Terminated.index()],
        1
    );

    subscribed(&mut h, "sub-5");
    assert_eq!(h.proxy.subscriptions(), 1);
    let out = sends(&h.msg(PARTNER_OUT, &notify(3, "sub-5", "active")));
    let (_, fwd, token) = out[0].clone();
    to_the_pool(&mut h, token.unwrap());
    sends(&h.msg(
        ConnId(101),
        &answer(&fwd, 481, "Call/Transaction Does Not Exist", None),
    ));
    assert_eq!(h.proxy.subscriptions(), 0, "481: the watcher has no such dialog");

    subscribed(&mut h, "sub-6");
    // The expiry sends nothing (the 408s of the NOTIFYs the front end never answered aside).
    let late = sends(&h.advance(Duration::from_secs(3601)));
    assert!(
        late.iter().all(|(_, t, _)| t.starts_with("SIP/2.0 408")),
        "{late:?}"
    );
    assert_eq!(h.proxy.subscriptions(), 0);
    assert_eq!(
        h.proxy.stats().subscriptions_ended[SubscriptionEnd::Expired.index()],
        1
    );
    // Nothing is left behind: no subscription-related timers or entries.
    assert_eq!(h.proxy.dialogs.local_pending(), 0);
}

#[test]
fn past_the_bound_a_new_subscribe_gets_503_1913() {
    let mut h = H::new();
    h.proxy.settings.max_subscriptions = 1;
    subscribed(&mut h, "sub-7");
    let out = sends(&h.msg(FE, &subscribe("z9hG4bKs8", "sub-8")));
    assert_eq!(out.len(), 1);
    let r = parse(out[0].1.as_bytes()).unwrap();
    assert_eq!(r.status(), Some(503));
    let diag = String::from_utf8_lossy(r.header(HeaderName::MsDiagnostics).unwrap().raw_value).into_owned();
    assert!(diag.starts_with("1913;"), "{diag}");
    assert!(r.header(HeaderName::RetryAfter).is_some());
    // Counted: a generated 503 with its reason (sipedge_generated_responses_total, _refusals_total).
    assert_eq!(
        h.proxy
            .stats()
            .generated
            .get(&(503, federation_policy::RefusalReason::SubscriptionsFull)),
        Some(&1)
    );
    // A refresh in the dialog is not a new subscription: it passes.
    let refresh = subscribe("z9hG4bKs9", "sub-7").replace(
        "To: <sip:bob@partner.example>\n",
        "To: <sip:bob@partner.example>;tag=n1\nRoute: <sip:edge-int.corp.example:5061;transport=tls;lr>\nRoute: <sip:edge.corp.example:5061;transport=tls;lr>\n",
    );
    let out = sends(&h.msg(FE, &refresh));
    assert!(
        matches!(out.first(), Some((Destination::Hop(_), _, _))),
        "forwarded: {out:?}"
    );
}

#[test]
fn an_unanswered_notify_of_ours_is_forgotten_after_timer_f() {
    let mut h = H::new();
    subscribed(&mut h, "sub-9");
    for conn in [ConnId(2), PARTNER_OUT] {
        h.input(Input::ConnClosed {
            conn,
            reason: LinkEnd::PeerClosed,
        });
    }
    assert_eq!(h.proxy.dialogs.local_pending(), 1);
    let before = h.proxy.timers.len();
    h.advance(Duration::from_secs(33));
    assert_eq!(h.proxy.dialogs.local_pending(), 0);
    assert!(h.proxy.local_tokens.is_empty());
    assert!(h.proxy.timers.len() < before);
}

/// What a tracked subscription holds, counted by the table itself for 10,000 of them: its strings
/// (deterministic: no allocator in the figure) plus its slot. The real binary's figure, allocator
/// and tables included, is the 10,000-dialog soak in `tests/subscriptions.rs` (1,402 bytes per
/// subscription, PSS).
#[test]
fn ten_thousand_subscriptions_hold_their_strings_and_nothing_else() {
    let mut h = H::new();
    for i in 0..10_000 {
        subscribed(&mut h, &format!("soak-{i}"));
    }
    assert_eq!(h.proxy.subscriptions(), 10_000);
    let strings = h.proxy.subscription_bytes() / 10_000;
    let slot = std::mem::size_of::<super::dialogs::Subscription>();
    eprintln!("per subscription: {strings} bytes of strings + a {slot}-byte slot");
    // The strings are the dialog's own header values (Call-ID, tags, Event, Contact, route set,
    // link names): a few hundred octets for these messages; more would mean a copy too many.
    assert!(strings < 512, "{strings}");
    // Transactions are not what is left: the SUBSCRIBEs are done (removed at the end of the turn).
    h.advance(Duration::ZERO);
    assert!(h.proxy.txns.servers.is_empty() && h.proxy.txns.clients.is_empty());
}

/// A NOTIFY carrying the dialog's tags from the subscriber's side (a front end replaying what it
/// saw) ends nothing: only the notifier's side speaks for the notifier.
#[test]
fn a_terminated_notify_from_the_wrong_side_changes_nothing() {
    let mut h = H::new();
    subscribed(&mut h, "sub-10");
    // From our own domain (else 1907 refuses it first), with the notifier's tag.
    let spoof = notify(9, "sub-10", "terminated;reason=noresource")
        .replace(
            "Via: SIP/2.0/TLS edge.partner.example:5061",
            "Via: SIP/2.0/TLS fe1.corp.example:5061",
        )
        .replace(
            "From: <sip:bob@partner.example>;tag=n1",
            "From: <sip:bob@corp.example>;tag=n1",
        );
    let out = sends(&h.msg(FE, &spoof));
    assert!(
        out.iter().all(|(_, t, _)| !t.starts_with("SIP/2.0 403")),
        "not refused before the check: {out:?}"
    );
    assert_eq!(h.proxy.subscriptions(), 1, "still tracked");
}
