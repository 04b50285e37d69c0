//! [`diagnose`] on the header values the edge really writes (federation-policy `outbound.rs`,
//! edge-core `proxy/route.rs`, `proxy/request.rs`, `proxy/forward.rs`), with and without the
//! configuration facts, and the exact output lines.

use super::*;

const NOT_CONFIGURED_1005: &str = r#"1005;reason="The domain of the message is not configured and does not appear to belong to a federated partner";source="edge.corp.test";domain="push.lync.com";fqdn1="sipfed.online.lync.com:5061""#;

fn facts(providers: &[(&str, &str, bool)]) -> PushFacts {
    PushFacts {
        edge_fqdn: "edge.corp.test".into(),
        push_domain: "push.lync.com".into(),
        allowed: vec!["partner.test".into()],
        providers: providers
            .iter()
            .map(|(n, h, e)| ProviderFact {
                name: (*n).into(),
                host: (*h).into(),
                enabled: *e,
            })
            .collect(),
        push_pinned: false,
        filter_rejects: None,
        dns_servers: vec!["127.0.0.1:5353".into()],
    }
}

/// (status, reason, header, facts, every fragment the diagnosis must contain).
type Case<'a> = (u16, &'a str, Option<&'a str>, Option<PushFacts>, &'a [&'a str]);

#[test]
fn every_failure_the_edge_writes_gets_its_fix() {
    let online = facts(&[("LyncOnline", "sipfed.online.lync.com", true)]);
    let disabled = facts(&[("LyncOnline", "sipfed.online.lync.com", false)]);
    let none = facts(&[]);
    let mut online_allowed = online.clone();
    online_allowed.allowed.push("push.lync.com".into());
    // The embedded default: nothing allowed, no provider, the filter blocking https:.
    let mut embedded = none.clone();
    embedded.filter_rejects = Some("https:".into());
    let no_srv_1008 =
        r#"1008;reason="Unable to resolve DNS SRV record";source="localhost";domain="push.lync.com""#;
    let allowed_line =
        "add [[federation.allowed]] domain = \"push.lync.com\" to the configuration and reload (kill -HUP)";
    let table: &[Case<'_>] = &[
        (200, "OK", None, None, &[]),
        // The field case: push.lync.com not allowed, its SRV target LyncOnline's.
        (504, "Server Time-out", Some(NOT_CONFIGURED_1005), None,
            &["the push domain push.lync.com is not allowed", allowed_line, "sipfed.online.lync.com:5061"]),
        (504, "Server Time-out", Some(NOT_CONFIGURED_1005), Some(online.clone()),
            &[allowed_line, "the hosted provider LyncOnline, which is enabled"]),
        (504, "Server Time-out", Some(NOT_CONFIGURED_1005), Some(disabled.clone()),
            &[allowed_line, "the hosted provider LyncOnline (sipfed.online.lync.com) is disabled", "enabled = true"]),
        (504, "Server Time-out", Some(NOT_CONFIGURED_1005), Some(none.clone()),
            &[allowed_line, "no enabled hosted provider is configured", "proxy_fqdn = \"sipfed.online.lync.com\""]),
        // Allowed, but the SRV target is no enabled provider (1009).
        (504, "Server Time-out",
            Some(r#"1009;reason="No match for domain in DNS SRV results";source="edge.corp.test";domain="push.lync.com";fqdn1="sipfed.online.lync.com:5061""#),
            Some(none.clone()),
            &["outside push.lync.com", "no enabled hosted provider is configured", "[[federation.hosted_providers]]"]),
        (504, "Server Time-out",
            Some(r#"1009;reason="No match for domain in DNS SRV results";source="edge.corp.test";domain="push.lync.com";fqdn1="sipfed.online.lync.com:5061""#),
            Some(disabled),
            &["the hosted provider LyncOnline (sipfed.online.lync.com) is disabled"]),
        // No SRV record.
        (504, "Server Time-out",
            Some(r#"1008;reason="Unable to resolve DNS SRV record";source="localhost";domain="push.lync.com""#),
            None,
            &["no DNS SRV record _sipfederationtls._tcp.push.lync.com", "[dns]"]),
        (504, "Server Time-out",
            Some(r#"1008;reason="Unable to resolve DNS SRV record";source="edge.corp.test";domain="push.lync.com";dns-error="timed out""#),
            Some(online_allowed.clone()),
            &["_sipfederationtls._tcp.push.lync.com (timed out)", "[dns] servers = [\"127.0.0.1:5353\"]"]),
        (403, "Forbidden",
            Some(r#"1005;reason="Cannot route to destination domain";source="edge.corp.test";domain="push.lync.com""#),
            None,
            &["[[federation.blocked]]"]),
        // What the configuration already says comes first, not DNS (issue 16, item 7): on the
        // embedded default the SRV lookup fails, but no push could pass the allowed list anyway.
        (504, "Server Time-out", Some(no_srv_1008), Some(none.clone()),
            &["the push domain push.lync.com is not allowed: add [[federation.allowed]] domain = \"push.lync.com\"",
              "; and no enabled hosted provider is configured", "then reload (kill -HUP)",
              "The edge also found no DNS SRV record _sipfederationtls._tcp.push.lync.com, which matters only after that"]),
        // Routed, so the filter let it through whatever the (guessed) facts say: not named.
        (504, "Server Time-out", Some(no_srv_1008), Some(embedded.clone()),
            &["the push domain push.lync.com is not allowed", "no enabled hosted provider"]),
        // The filter rejects first; the diagnosis names what fails after it too.
        (403, "Forbidden",
            Some(r#"1909;reason="Push Notification request was rejected";source="localhost";prefix="https:""#),
            Some(embedded),
            &["Push Notification request was rejected.", "blocked the prefix \"https:\"",
              "After that the push would still fail: the push domain push.lync.com is not allowed",
              "no enabled hosted provider is configured"]),
        // The provider refused.
        (404, "Not Found",
            Some(r#"1034;reason="Previous hop federated peer did not report diagnostic information";source="edge.corp.test";Domain="push.lync.com";PeerServer="sipfed.online.lync.com""#),
            None,
            &["the provider answered 404 Not Found without a diagnostic of its own", "PeerServer=\"sipfed.online.lync.com\""]),
        (404, "Not Found",
            Some(r#"10003;reason="Proxy returned a SIP failure code";component="PushNotification";SipResponseCode="404";SipResponseText="Not Found""#),
            None,
            &["the provider answered 404 Not Found: 10003;reason=\"Proxy returned a SIP failure code\"", "SipResponseText=\"Not Found\""]),
        (480, "Temporarily Unavailable",
            Some(r#"3004;reason="No push subscription for target device";source="sipfed.online.lync.com""#),
            None,
            &["the provider answered 480 Temporarily Unavailable: 3004;reason=\"No push subscription for target device\""]),
        // The URL filter: today's 1905 and the push relay's text, matched by text and prefix.
        (403, "Forbidden",
            Some(r#"1905;reason="Instant message contains a URL prefix blocked by the IM filter";source="edge.corp.test";prefix="https:""#),
            None,
            &["Push Notification request was rejected.", "prefix \"https:\"", "[im_filter] blocked_prefixes", "[im_filter] action"]),
        (403, "Forbidden",
            Some(r#"1909;reason="Push Notification request was rejected";source="edge.corp.test";prefix="http:""#),
            None,
            &["blocked the prefix \"http:\"", "remove \"http:\" from [im_filter] blocked_prefixes"]),
        // The provider timed out.
        (504, "Server Time-out", None, None,
            &["A 504 (Server time-out) response was received from the network and the operation failed.", "The provider timed out"]),
        (408, "Request Timeout", None, None, &["The provider timed out"]),
        // The breaker, matched by text and `until`.
        (503, "Service Unavailable",
            Some(r#"1007;reason="Temporarily cannot route";source="edge.corp.test";breaker="LyncOnline";until="2030-01-01T12:00:30Z""#),
            None,
            &["the circuit breaker for LyncOnline is open until 2030-01-01T12:00:30Z"]),
        (503, "Service Unavailable",
            Some(r#"1007;reason="Temporarily cannot route";source="edge.corp.test";fqdn="sipfed.online.lync.com:5061";error="too many connections""#),
            None,
            &["cannot route now (too many connections)", "sipfed.online.lync.com:5061"]),
        // Reaching the provider.
        (504, "Server Time-out",
            Some(r#"1904;reason="Cannot connect to the next hop";source="edge.corp.test";fqdn="sipfed.online.lync.com:5061";error="Connection refused (os error 111)""#),
            None,
            &["cannot connect to the provider sipfed.online.lync.com:5061 (Connection refused (os error 111))"]),
        (504, "Server Time-out",
            Some(r#"1010;reason="Certificate trust with another server could not be established";source="edge.corp.test";ErrorType="The peer certificate does not contain a matching FQDN";tls-target="sipfed.online.lync.com:5061";PeerServer="rogue.partner.test""#),
            None,
            &["does not name sipfed.online.lync.com:5061 (it names rogue.partner.test)"]),
        // The headers the push relay writes (crates/edge-core/src/proxy/push.rs), verbatim.
        (403, "Forbidden",
            Some(r#"1909;reason="Push Notification request was rejected";source="edge.corp.test";prefix="https:""#),
            None,
            &["Push Notification request was rejected.", "blocked the prefix \"https:\""]),
        (480, "Temporarily Unavailable",
            Some(r#"1910;reason="No push subscription for target device";source="edge.corp.test";pn-provider="apns";problem="pn-provider apns without pn-prid""#),
            None,
            &["No push subscription for target device", "pn-provider apns without pn-prid", "pn-prid"]),
        (504, "Server Time-out",
            Some(r#"1911;reason="The push notification provider did not answer";source="edge.corp.test";provider="LyncOnline";attempts="2";timeout-ms="2000""#),
            None,
            &["A 504 (Server time-out) response was received", "The provider LyncOnline did not answer within push.timeout_ms (2000 ms) in 2 attempts"]),
        (503, "Service Unavailable",
            Some(r#"1007;reason="Temporarily cannot route";source="edge.corp.test";provider="LyncOnline";until="29 s from now""#),
            None,
            &["the circuit breaker for LyncOnline is open until 29 s from now"]),
        // test-push's own From.
        (403, "Forbidden",
            Some(r#"1907;reason="From domain is not one of this edge's domains";source="edge.corp.test";domain="localhost""#),
            None,
            &["the From domain localhost", "edge.sip_domains", "--from"]),
    ];
    for (status, reason, header, facts, want) in table {
        let got = diagnose(*status, reason, *header, facts.as_ref());
        if *status == 504 {
            assert!(
                !got.contains("IM URL filter blocks"),
                "a routed push passed the filter: {got}"
            );
        }
        if want.is_empty() {
            assert_eq!(got, "", "{status}");
        } else {
            assert!(!got.is_empty(), "{status} {header:?}");
        }
        for w in *want {
            assert!(
                got.contains(w),
                "{status} {header:?}\n  diagnosis: {got}\n  missing:   {w}"
            );
        }
        assert!(!got.contains('\n'), "one line: {got}");
    }
}

#[test]
fn the_five_lines_are_exact() {
    let ok = Outcome {
        target_fqdn: "edge-int.corp.test".into(),
        success: true,
        latency: Duration::from_nanos(123_456_789),
        error: String::new(),
        diagnosis: String::new(),
    };
    assert_eq!(
        ok.lines(),
        "TargetFqdn : edge-int.corp.test\nResult     : Success\nLatency    : 00:00:00.1234567\nError      : \nDiagnosis  : \n"
    );
    let bad = Outcome {
        success: false,
        latency: Duration::from_secs(3723) + Duration::from_nanos(100),
        error: "504 Server Time-out".into(),
        diagnosis: "two\r\nlines".into(),
        ..ok
    };
    let text = bad.lines();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "TargetFqdn : edge-int.corp.test",
            "Result     : Failure",
            "Latency    : 01:02:03.0000001",
            "Error      : 504 Server Time-out",
            "Diagnosis  : two  lines",
        ]
    );
    let json: serde_json::Value = serde_json::from_str(&bad.json(true)).unwrap();
    assert_eq!(json["Result"], "Failure");
    assert_eq!(json["Latency"], "01:02:03.0000001");
    assert_eq!(json["Error"], "504 Server Time-out");
    assert_eq!(json["cached"], true);
    assert_eq!(json["TargetFqdn"], "edge-int.corp.test");
}

#[test]
fn listen_addresses_become_dialable() {
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(connectable(a("0.0.0.0:5061")), Some(a("127.0.0.1:5061")));
    assert_eq!(connectable(a("[::]:5061")), Some(a("[::1]:5061")));
    assert_eq!(connectable(a("10.0.0.5:5061")), Some(a("10.0.0.5:5061")));
    assert_eq!(connectable(a("127.0.0.1:0")), None);
}
