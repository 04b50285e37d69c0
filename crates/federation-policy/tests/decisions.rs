//! Every branch of the federation decision (docs/architecture.md, Federation decision),
//! table-driven, plus properties that must hold for any input: blocked always wins; an unlisted
//! domain with discovery off is never routed; every refusal carries a status, an id, a reason and
//! a log event; SRV ordering is a priority-respecting permutation.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use federation_policy::*;
use proptest::prelude::*;

fn d(s: &str) -> DomainName {
    DomainName::parse(s).unwrap()
}
fn f(s: &str) -> Fqdn {
    Fqdn::parse(s).unwrap()
}
fn rec(prio: u16, target: &str, port: u16) -> SrvRecord {
    SrvRecord {
        priority: prio,
        weight: 10,
        port,
        target: target.to_owned(),
    }
}

fn policy(discovery: bool, push_allowed: bool) -> Policy {
    let mut b = PolicyBuilder::new();
    b.edge_fqdn("edge.corp.example")
        .our_domain(d("corp.example"))
        .allow(
            d("pinned.example"),
            Some(f("edge.pinned.example:5062")),
            Some("pinned partner".into()),
        )
        .allow(d("srvpartner.example"), None, None)
        .allow(d("disabled-user.example"), None, None)
        .block(d("evil.example"))
        .hosted_provider(HostedProvider {
            name: "LyncOnline".into(),
            proxy_fqdn: f("sipfed.online.lync.com"),
            enabled: true,
            verification_level: VerificationLevel::AlwaysVerifiable,
        })
        .hosted_provider(HostedProvider {
            name: "Retired".into(),
            proxy_fqdn: f("sip.retired-provider.example"),
            enabled: false,
            verification_level: VerificationLevel::AlwaysUnverifiable,
        });
    if push_allowed {
        b.allow(d("push.lync.com"), None, Some("push notifications".into()));
    }
    if discovery {
        b.partner_discovery(DiscoveryLimits::default());
    }
    b.build().unwrap()
}

#[derive(Debug)]
enum Want {
    Pinned(&'static str),
    Lookup(&'static str),
    Route(Vec<(&'static str, Relationship)>),
    Refuse(u16, u32, &'static str),
}

fn check_outbound(p: &Policy, domain: &str, srv: SrvAnswer<'_>, want: Want) {
    let v = p.decide_outbound(&d(domain), srv);
    match (&want, &v) {
        (Want::Pinned(fqdn), OutboundVerdict::RoutePinned { fqdn: got }) => {
            assert_eq!(got.to_string(), *fqdn)
        }
        (Want::Lookup(name), OutboundVerdict::LookupSrv { name: got }) => assert_eq!(got, name),
        (Want::Route(targets), OutboundVerdict::RouteSrv { targets: got }) => {
            let got: Vec<(String, Relationship)> = got
                .iter()
                .map(|t| (t.fqdn.to_string(), t.relationship.clone()))
                .collect();
            let want: Vec<(String, Relationship)> =
                targets.iter().map(|(s, r)| (s.to_string(), r.clone())).collect();
            assert_eq!(got, want, "{domain}");
        }
        (Want::Refuse(status, id, metric), OutboundVerdict::Refuse(r)) => {
            assert_eq!(
                (r.status, r.id.0, r.metric_reason.as_str()),
                (*status, *id, *metric),
                "{domain}: {r:?}"
            );
            assert!(
                r.params.iter().any(|(k, v)| *k == "domain" && v == domain),
                "{domain}: {r:?}"
            );
        }
        _ => panic!("{domain}: wanted {want:?}, got {v:?}"),
    }
}

#[test]
fn outbound_table() {
    use Relationship::*;
    let off = policy(false, false);
    let on = policy(true, false);
    let push = policy(false, true);
    let sipfed = [rec(0, "sipfed.online.lync.com", 5061)];
    let partner = [rec(10, "sip.srvpartner.example", 5061)];
    let outside = [rec(10, "edge.elsewhere.example", 5061)];
    let two_prios = [
        rec(20, "backup.srvpartner.example", 5061),
        rec(10, "primary.srvpartner.example", 5061),
    ];
    let mixed = [
        rec(10, "edge.elsewhere.example", 5061),
        rec(20, "sip.srvpartner.example", 5070),
    ];
    let retired = [rec(10, "sip.retired-provider.example", 5061)];
    let unlisted = [rec(10, "sip.unlisted.example", 5061)];

    check_outbound(
        &off,
        "corp.example",
        SrvAnswer::NotLookedUp,
        Want::Refuse(403, 1017, "own_domain"),
    );
    check_outbound(
        &off,
        "evil.example",
        SrvAnswer::Records(&partner),
        Want::Refuse(403, 1005, "blocked"),
    );
    check_outbound(
        &on,
        "sub.evil.example",
        SrvAnswer::NotLookedUp,
        Want::Refuse(403, 1005, "blocked"),
    );
    check_outbound(
        &off,
        "pinned.example",
        SrvAnswer::Records(&outside),
        Want::Pinned("edge.pinned.example:5062"),
    );
    check_outbound(
        &off,
        "Pinned.Example",
        SrvAnswer::NotLookedUp,
        Want::Pinned("edge.pinned.example:5062"),
    );
    check_outbound(
        &off,
        "srvpartner.example",
        SrvAnswer::NotLookedUp,
        Want::Lookup("_sipfederationtls._tcp.srvpartner.example"),
    );
    check_outbound(
        &off,
        "srvpartner.example",
        SrvAnswer::Records(&partner),
        Want::Route(vec![("sip.srvpartner.example:5061", AllowedPartner)]),
    );
    check_outbound(
        &off,
        "srvpartner.example",
        SrvAnswer::Records(&two_prios),
        Want::Route(vec![
            ("primary.srvpartner.example:5061", AllowedPartner),
            ("backup.srvpartner.example:5061", AllowedPartner),
        ]),
    );
    check_outbound(
        &off,
        "srvpartner.example",
        SrvAnswer::Records(&mixed),
        Want::Route(vec![("sip.srvpartner.example:5070", AllowedPartner)]),
    );
    check_outbound(
        &off,
        "srvpartner.example",
        SrvAnswer::Records(&outside),
        Want::Refuse(504, 1009, "srv_no_match"),
    );
    check_outbound(
        &off,
        "srvpartner.example",
        SrvAnswer::NoRecord,
        Want::Refuse(504, 1008, "no_srv"),
    );
    check_outbound(
        &off,
        "srvpartner.example",
        SrvAnswer::Records(&[]),
        Want::Refuse(504, 1008, "no_srv"),
    );
    check_outbound(
        &off,
        "srvpartner.example",
        SrvAnswer::Failed("timeout"),
        Want::Refuse(504, 1008, "dns_error"),
    );
    check_outbound(
        &off,
        "disabled-user.example",
        SrvAnswer::Records(&retired),
        Want::Refuse(504, 1009, "srv_no_match"),
    );
    check_outbound(
        &off,
        "push.lync.com",
        SrvAnswer::Records(&sipfed),
        Want::Refuse(504, 1005, "provider_not_allowed"),
    );
    check_outbound(
        &push,
        "push.lync.com",
        SrvAnswer::Records(&sipfed),
        Want::Route(vec![(
            "sipfed.online.lync.com:5061",
            HostedProvider("LyncOnline".into()),
        )]),
    );
    check_outbound(
        &off,
        "unlisted.example",
        SrvAnswer::Records(&unlisted),
        Want::Refuse(504, 1005, "unknown_domain"),
    );
    check_outbound(
        &off,
        "unlisted.example",
        SrvAnswer::NoRecord,
        Want::Refuse(504, 1008, "no_srv"),
    );
    check_outbound(
        &on,
        "unlisted.example",
        SrvAnswer::Records(&unlisted),
        Want::Route(vec![("sip.unlisted.example:5061", DiscoveredPartner)]),
    );
    // Issue 8.11: a domain that is not allowed gets the field's answer (1005, "not configured")
    // whatever the discovery setting — never 1009, which is for allowed domains.
    check_outbound(
        &on,
        "unlisted.example",
        SrvAnswer::Records(&outside),
        Want::Refuse(504, 1005, "unknown_domain"),
    );
    // A provider is used only for allowed domains, even with discovery on.
    check_outbound(
        &on,
        "push.lync.com",
        SrvAnswer::Records(&sipfed),
        Want::Refuse(504, 1005, "provider_not_allowed"),
    );
}

#[test]
fn the_push_lync_com_field_case_says_what_operators_search_for() {
    // The same texts with discovery off and on (issue 8.11).
    for discovery in [false, true] {
        let p = policy(discovery, false);
        let sipfed = [rec(0, "sipfed.online.lync.com.", 5061)];
        let OutboundVerdict::Refuse(r) = p.decide_outbound(&d("push.lync.com"), SrvAnswer::Records(&sipfed))
        else {
            panic!("must refuse")
        };
        assert_eq!(r.event.name, "domain_not_allowed_srv_is_hosted_provider");
        assert_eq!(
            r.event.text,
            "domain [push.lync.com] is unknown and DNS SRV results did not match anything"
        );
        assert!(r.ms_diagnostics(p.edge_fqdn()).starts_with(
            "1005;reason=\"The domain of the message is not configured and does not appear to belong to a federated partner\""
        ));
    }
    let p = policy(false, false);
    let sipfed = [rec(0, "sipfed.online.lync.com.", 5061)];
    let OutboundVerdict::Refuse(r) = p.decide_outbound(&d("push.lync.com"), SrvAnswer::Records(&sipfed))
    else {
        panic!("must refuse")
    };
    assert_eq!(r.status, 504);
    assert_eq!(
        r.event.text,
        "domain [push.lync.com] is unknown and DNS SRV results did not match anything"
    );
    assert_eq!(
        r.ms_diagnostics(p.edge_fqdn()),
        "1005;reason=\"The domain of the message is not configured and does not appear to belong to a federated partner\";\
source=\"edge.corp.example\";domain=\"push.lync.com\";fqdn1=\"sipfed.online.lync.com:5061\""
    );
    assert!(!r.ms_diagnostics_public().contains("source="));
    let partner = [rec(0, "sip.elsewhere.example", 5061)];
    let OutboundVerdict::Refuse(r) =
        p.decide_outbound(&d("srvpartner.example"), SrvAnswer::Records(&partner))
    else {
        panic!()
    };
    assert_eq!(
        r.event.name,
        "SIPPROXY_E_EPROUTING_MSG_ALLOWED_DOMAIN_NO_SRV_MATCH"
    );
    assert!(r
        .ms_diagnostics("e")
        .contains("fqdn1=\"sip.elsewhere.example:5061\""));
}

fn check_inbound(
    p: &Policy,
    ids: &[&str],
    from: &str,
    srv: SrvAnswer<'_>,
    want: Result<Option<Relationship>, (u32, &str)>,
) {
    let v = p.decide_inbound(ids, &d(from), srv);
    match (&want, &v) {
        (Ok(Some(rel)), InboundVerdict::Accept { relationship }) => {
            assert_eq!(relationship, rel, "{from} {ids:?}")
        }
        (Ok(None), InboundVerdict::LookupSrv { name }) => {
            assert_eq!(name, &format!("_sipfederationtls._tcp.{from}"))
        }
        (Err((id, metric)), InboundVerdict::Refuse(r)) => {
            assert_eq!(
                (r.status, r.id.0, r.metric_reason.as_str()),
                (403, *id, *metric),
                "{from} {ids:?}: {r:?}"
            );
            assert!(r
                .params
                .iter()
                .any(|(k, v)| *k == "PeerServer" && v == ids.first().unwrap_or(&"")));
        }
        _ => panic!("{from} {ids:?}: wanted {want:?}, got {v:?}"),
    }
}

#[test]
fn inbound_table() {
    use Relationship::*;
    let off = policy(false, true);
    let on = policy(true, true);
    let partner = [rec(10, "sip.srvpartner.example", 5061)];
    let unlisted = [rec(10, "sip.unlisted.example", 5061)];
    let outside = [rec(10, "sip.elsewhere.example", 5061)];

    check_inbound(
        &off,
        &["edge.corp.example"],
        "corp.example",
        SrvAnswer::NotLookedUp,
        Err((1902, "from_own_domain")),
    );
    check_inbound(
        &off,
        &["sip.evil.example"],
        "evil.example",
        SrvAnswer::NotLookedUp,
        Err((1901, "from_blocked")),
    );
    check_inbound(
        &off,
        &["edge.pinned.example"],
        "pinned.example",
        SrvAnswer::NotLookedUp,
        Ok(Some(AllowedPartner)),
    );
    check_inbound(
        &off,
        &["other.example", "EDGE.pinned.example"],
        "pinned.example",
        SrvAnswer::NotLookedUp,
        Ok(Some(AllowedPartner)),
    );
    check_inbound(
        &off,
        &["rogue.example"],
        "pinned.example",
        SrvAnswer::NotLookedUp,
        Err((1903, "peer_mismatch")),
    );
    check_inbound(
        &off,
        &["sipfed.online.lync.com"],
        "push.lync.com",
        SrvAnswer::NotLookedUp,
        Ok(Some(HostedProvider("LyncOnline".into()))),
    );
    check_inbound(
        &off,
        &["sip.retired-provider.example"],
        "push.lync.com",
        SrvAnswer::Records(&outside),
        Err((1903, "peer_mismatch")),
    );
    check_inbound(
        &off,
        &["sipfed.online.lync.com"],
        "unlisted.example",
        SrvAnswer::NotLookedUp,
        Err((1005, "unknown_domain")),
    );
    check_inbound(
        &off,
        &["sip.srvpartner.example"],
        "srvpartner.example",
        SrvAnswer::NotLookedUp,
        Ok(None),
    );
    check_inbound(
        &off,
        &["sip.srvpartner.example"],
        "srvpartner.example",
        SrvAnswer::Records(&partner),
        Ok(Some(AllowedPartner)),
    );
    check_inbound(
        &off,
        &["*.srvpartner.example"],
        "srvpartner.example",
        SrvAnswer::Records(&partner),
        Err((1903, "peer_mismatch")),
    );
    check_inbound(
        &off,
        &["sip.srvpartner.example"],
        "srvpartner.example",
        SrvAnswer::NoRecord,
        Err((1903, "peer_mismatch")),
    );
    check_inbound(
        &off,
        &["sip.srvpartner.example"],
        "srvpartner.example",
        SrvAnswer::Failed("timeout"),
        Err((1903, "peer_mismatch")),
    );
    check_inbound(
        &off,
        &["sip.unlisted.example"],
        "unlisted.example",
        SrvAnswer::Records(&unlisted),
        Err((1005, "unknown_domain")),
    );
    check_inbound(
        &on,
        &["sip.unlisted.example"],
        "unlisted.example",
        SrvAnswer::NotLookedUp,
        Ok(None),
    );
    check_inbound(
        &on,
        &["sip.unlisted.example"],
        "unlisted.example",
        SrvAnswer::Records(&unlisted),
        Ok(Some(DiscoveredPartner)),
    );
    // The SRV record points outside the domain: even a matching certificate is not a server of it.
    check_inbound(
        &on,
        &["sip.elsewhere.example"],
        "unlisted.example",
        SrvAnswer::Records(&outside),
        Err((1903, "peer_mismatch")),
    );
    check_inbound(
        &on,
        &[],
        "unlisted.example",
        SrvAnswer::Records(&unlisted),
        Err((1903, "peer_mismatch")),
    );
}

#[test]
fn srv_order_follows_rfc_2782() {
    let recs = [
        rec(20, "c", 1),
        rec(10, "a", 1),
        rec(10, "b", 1),
        SrvRecord {
            priority: 10,
            weight: 0,
            port: 1,
            target: "z".into(),
        },
    ];
    let key = |r: &SrvRecord| (r.priority, r.weight);
    // random always 0 → the zero-weight record is picked first among priority 10.
    let names: Vec<_> = order_srv(&recs, key, |_| 0)
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(names, ["z", "a", "b", "c"]);
    let names: Vec<_> = order_srv(&recs, key, |n| n)
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(names, ["b", "a", "z", "c"]);
}

fn domain_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z][a-z0-9-]{0,8}", 1..4).prop_map(|labels| labels.join(".") + ".example")
}

fn srv_strategy() -> impl Strategy<Value = Vec<SrvRecord>> {
    prop::collection::vec(
        (
            0u16..3,
            0u16..5,
            prop_oneof![domain_strategy(), Just("sipfed.online.lync.com".to_owned())],
        ),
        0..4,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(p, w, t)| SrvRecord {
                priority: p,
                weight: w,
                port: 5061,
                target: t,
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn blocked_always_wins(domain in domain_strategy(), srv in srv_strategy(), discovery: bool, allow_sub: bool) {
        let dom = d(&domain);
        let mut b = PolicyBuilder::new();
        b.block(dom.clone());
        if allow_sub {
            b.allow(d(&format!("sub.{domain}")), None, None);
        }
        if discovery {
            b.partner_discovery(DiscoveryLimits::default());
        }
        let p = b.build().unwrap();
        for target in [dom.clone(), d(&format!("sub.{domain}"))] {
            match p.decide_outbound(&target, SrvAnswer::Records(&srv)) {
                OutboundVerdict::Refuse(r) => prop_assert_eq!(r.status, 403),
                v => prop_assert!(false, "{target} not refused: {v:?}"),
            }
            let inbound = p.decide_inbound(&["x.example"], &target, SrvAnswer::Records(&srv));
            prop_assert!(matches!(inbound, InboundVerdict::Refuse(ref r) if r.status == 403));
        }
    }

    #[test]
    fn unlisted_with_discovery_off_is_never_routed(domain in domain_strategy(), srv in srv_strategy(), ids in prop::collection::vec(domain_strategy(), 0..3)) {
        let p = policy(false, true);
        let dom = d(&domain);
        prop_assume!(p.allowed(&dom).is_none());
        let v = p.decide_outbound(&dom, SrvAnswer::Records(&srv));
        prop_assert!(matches!(v, OutboundVerdict::Refuse(_)), "{:?}", v);
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let v = p.decide_inbound(&ids, &dom, SrvAnswer::Records(&srv));
        prop_assert!(matches!(v, InboundVerdict::Refuse(_)), "{:?}", v);
    }

    #[test]
    fn every_refusal_explains_itself(domain in domain_strategy(), srv in srv_strategy(), discovery: bool, push: bool, no_record: bool) {
        let p = policy(discovery, push);
        let answer = if no_record { SrvAnswer::NoRecord } else { SrvAnswer::Records(&srv) };
        if let OutboundVerdict::Refuse(r) = p.decide_outbound(&d(&domain), answer) {
            prop_assert!(matches!(r.status, 403 | 503 | 504));
            prop_assert!(!r.reason.is_empty() && !r.event.text.is_empty() && !r.metric_reason.as_str().is_empty());
            prop_assert!(r.ms_diagnostics(p.edge_fqdn()).contains("source=\"edge.corp.example\""));
        }
        if let OutboundVerdict::RouteSrv { targets } = p.decide_outbound(&d(&domain), answer) {
            prop_assert!(!targets.is_empty());
            prop_assert!(targets.windows(2).all(|w| w[0].priority <= w[1].priority));
        }
    }

    #[test]
    fn srv_order_is_a_priority_respecting_permutation(srv in srv_strategy(), seed in any::<u64>()) {
        let mut state = seed;
        let ordered = order_srv(&srv, |r| (r.priority, r.weight), |n| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as u32) % (n + 1)
        });
        prop_assert_eq!(ordered.len(), srv.len());
        prop_assert!(ordered.windows(2).all(|w| w[0].priority <= w[1].priority));
        for r in &srv {
            prop_assert_eq!(srv.iter().filter(|x| *x == r).count(), ordered.iter().filter(|x| *x == r).count());
        }
    }
}
