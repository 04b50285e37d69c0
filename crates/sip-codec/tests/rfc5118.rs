//! RFC 5118 IPv6 torture tests (`fixtures/rfc5118/`, see its README), checked as RFC 4475's are:
//! every `accept` row parses with the expected start line, counts, Content-Length and body; each
//! section then pins the addresses and ports the codec reads out of its IPv6 references (Request-URI,
//! To, Contact, Via sent-by, Via `received`); the refused messages are refused with a precise error.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod torture;

use std::net::{IpAddr, Ipv4Addr};

use sip_codec::{parse, ContactValue, Defect, DefectKind, ErrorKind, Host, Message, SipUri, Uri, ValueError};
use torture::{check_accept, Row};

fn rows() -> Vec<Row> {
    torture::rows("rfc5118")
}

fn load(name: &str) -> Vec<u8> {
    torture::load("rfc5118", name)
}

fn v6(addr: &str) -> Host<'static> {
    Host::Ipv6(addr.parse().unwrap())
}

fn sip(uri: &str) -> SipUri<'_> {
    SipUri::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
}

fn request_uri<'a>(m: &Message<'a>) -> SipUri<'a> {
    sip(m.request_uri().unwrap())
}

fn to_uri<'a>(m: &Message<'a>) -> SipUri<'a> {
    sip(m.to().unwrap().uri)
}

/// The URIs of every Contact value, in order.
fn contact_uris<'a>(m: &Message<'a>) -> Vec<SipUri<'a>> {
    m.contacts()
        .map(|c| match c.unwrap() {
            ContactValue::Addr(c) => match c.addr.parsed_uri().unwrap() {
                Uri::Sip(u) => u,
                other => panic!("not a SIP URI: {other:?}"),
            },
            ContactValue::Star => panic!("Contact: *"),
        })
        .collect()
}

/// `(transport, sent-by host, port, received address)` of every Via value, in order.
type ViaView<'a> = (&'a str, Host<'a>, Option<u16>, Option<IpAddr>);

fn vias<'a>(m: &Message<'a>) -> Vec<ViaView<'a>> {
    m.vias()
        .map(|v| {
            let v = v.unwrap();
            let received = v.received_addr().map(Result::unwrap);
            (v.transport, v.sent_by_host().unwrap(), v.port, received)
        })
        .collect()
}

fn parsed<'a>(name: &str, bytes: &'a [u8]) -> Message<'a> {
    let m = parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    m.validate().unwrap_or_else(|e| panic!("{name}: validate: {e}"));
    m.check_mandatory()
        .unwrap_or_else(|e| panic!("{name}: mandatory: {e}"));
    m
}

#[test]
fn the_fixtures_are_the_twelve_messages_of_section_4() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc5118");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|f| f.strip_suffix(".dat").map(str::to_owned))
        .collect();
    files.sort();
    let mut named: Vec<String> = rows().into_iter().map(|r| r.name).collect();
    named.sort();
    assert_eq!(files, named);
    assert_eq!(files.len(), 12);
    for name in &files {
        let bytes = load(name);
        // Wire bytes: every line ends in CRLF and the header section is closed.
        assert!(
            !bytes.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
            "{name}"
        );
        assert!(bytes.windows(4).any(|w| w == b"\r\n\r\n"), "{name}");
    }
}

#[test]
fn every_valid_ipv6_torture_message_is_accepted_with_the_right_values() {
    let rows = rows();
    let accepted: Vec<_> = rows.iter().filter(|r| r.expect == "accept").collect();
    assert_eq!(accepted.len(), 10);
    for r in accepted {
        let bytes = load(&r.name);
        let m = parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        check_accept(r, &m);
        m.check_mandatory()
            .unwrap_or_else(|e| panic!("{}: mandatory: {e}", r.name));
    }
}

#[test]
fn the_refused_messages_are_refused_precisely() {
    // §4.2: framing intact, the Request-URI is an IPv6 address without its brackets.
    let bytes = load("ipv6-bad");
    let m = parse(&bytes).unwrap();
    assert_eq!(m.request_uri(), Some("sip:2001:db8::10"));
    assert_eq!(
        m.validate(),
        Err(Defect {
            header: "Request-URI",
            problem: DefectKind::Value(ValueError::Malformed("IPv6 address without [ ]")),
        })
    );
    // Everything but the Request-URI is the valid §4.1 message.
    assert_eq!(vias(&m), [("UDP", v6("2001:db8::9:1"), None, None)]);
    assert_eq!(contact_uris(&m)[0].host, v6("2001:db8::1"));

    // §4.6: see `ipv6_in_sdp`; refused for its Content-Length alone.
    let bytes = load("ipv6-in-sdp");
    assert_eq!(parse(&bytes).unwrap_err().kind, ErrorKind::BodyTruncated);

    let rejects: Vec<_> = rows()
        .into_iter()
        .filter(|r| r.expect == "reject")
        .map(|r| r.name)
        .collect();
    assert_eq!(rejects, ["ipv6-bad", "ipv6-in-sdp"]);
}

/// §4.1: an IPv6 reference in the Request-URI, the Via sent-by and the Contact.
#[test]
fn ipv6_good() {
    let bytes = load("ipv6-good");
    let m = parsed("ipv6-good", &bytes);
    let ruri = request_uri(&m);
    assert_eq!(
        (ruri.user, ruri.host, ruri.port),
        (None, v6("2001:db8::10"), None)
    );
    assert_eq!(ruri.host_raw, "[2001:db8::10]");
    assert_eq!(vias(&m), [("UDP", v6("2001:db8::9:1"), None, None)]);
    let contact = &contact_uris(&m)[0];
    assert_eq!((contact.user, contact.host), (Some("caller"), v6("2001:db8::1")));
}

/// §4.3 and §4.4: a port inside the `]` is part of the address (the RFC: well-formed, but not what
/// the sender meant); outside it, it is the port.
#[test]
fn port_ambiguous_and_unambiguous() {
    let bytes = load("port-ambiguous");
    let m = parsed("port-ambiguous", &bytes);
    let ruri = request_uri(&m);
    assert_eq!((ruri.host, ruri.port), (v6("2001:db8::10:5070"), None));

    let bytes = load("port-unambiguous");
    let m = parsed("port-unambiguous", &bytes);
    let ruri = request_uri(&m);
    assert_eq!((ruri.host, ruri.port), (v6("2001:db8::10"), Some(5070)));
    assert_eq!(ruri.host_raw, "[2001:db8::10]");
}

/// §4.5: `received` with and without `[ ]` is read as the same address.
#[test]
fn via_received_with_and_without_delimiters() {
    let received: IpAddr = "2001:db8::9:255".parse().unwrap();
    for (name, written) in [
        ("via-received-param-with-delim", "[2001:db8::9:255]"),
        ("via-received-param-no-delim", "2001:db8::9:255"),
    ] {
        let bytes = load(name);
        let m = parsed(name, &bytes);
        let top = m.top_via().unwrap();
        assert_eq!(top.received(), Some(written), "{name}");
        assert_eq!(
            vias(&m),
            [("UDP", v6("2001:db8::9:1"), None, Some(received))],
            "{name}"
        );
        assert_eq!(request_uri(&m).host, v6("2001:db8::10"), "{name}");
    }
}

/// §4.6: valid, but its declared Content-Length (268) is more than the 251 octets of body the
/// message carries, so the codec refuses it as it refuses RFC 4475's `clerr`. The header section
/// was indexed and is all there, IPv6 references included; with the length alone corrected the
/// message parses, body and all.
#[test]
fn ipv6_in_sdp() {
    let bytes = load("ipv6-in-sdp");
    let err = parse(&bytes).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BodyTruncated);
    let partial = err.partial.unwrap();
    let head_and_body = |m: &Message<'_>| {
        assert_eq!(request_uri(m).host, v6("2001:db8::10"));
        assert_eq!(to_uri(m).host, v6("2001:db8::10"));
        assert_eq!(vias(m), [("UDP", v6("2001:db8::20"), None, None)]);
        assert_eq!(contact_uris(m)[0].host, v6("2001:db8::20"));
        m.validate().unwrap();
    };
    head_and_body(&partial);

    let body_start = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(bytes.len() - body_start, 251);
    let text = String::from_utf8(bytes.clone()).unwrap();
    let corrected = text.replacen("Content-Length: 268\r\n", "Content-Length: 251\r\n", 1);
    assert_ne!(corrected, text);
    let m = parsed("ipv6-in-sdp, length corrected", corrected.as_bytes());
    head_and_body(&m);
    assert_eq!(m.body(), &bytes[body_start..]);
    let body = std::str::from_utf8(m.body()).unwrap();
    assert!(body.contains("\r\nc=IN IP6 2001:db8::20\r\n"), "{body}");
}

/// §4.7: a Via list mixing IPv6 references (one with a port) and IPv4, with an IPv4 `received`.
#[test]
fn mult_ip_in_header() {
    let bytes = load("mult-ip-in-header");
    let m = parsed("mult-ip-in-header", &bytes);
    assert_eq!(
        vias(&m),
        [
            ("UDP", v6("2001:db8::9:1"), Some(6050), None),
            ("UDP", Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1)), None, None),
            (
                "TCP",
                v6("2001:db8::9:255"),
                None,
                Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200)))
            ),
        ]
    );
    assert_eq!(request_uri(&m).host, Host::Domain("host.example.net"));
}

/// §4.8: IPv4 and IPv6 `c=` lines in one SDP. The declared Content-Length (181) is 8 octets short
/// of the body sent (189), so the body is the first 181 octets, both `c=` lines within them.
#[test]
fn mult_ip_in_sdp() {
    let bytes = load("mult-ip-in-sdp");
    let m = parsed("mult-ip-in-sdp", &bytes);
    assert_eq!(request_uri(&m).host, v6("2001:db8::10"));
    assert_eq!(to_uri(&m).host, v6("2001:db8::10"));
    assert_eq!(vias(&m), [("UDP", v6("2001:db8::9:1"), None, None)]);
    assert_eq!(contact_uris(&m)[0].host, v6("2001:db8::9:1"));
    let body_start = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(bytes.len() - body_start, 189);
    assert_eq!(m.body(), &bytes[body_start..body_start + 181]);
    let body = std::str::from_utf8(m.body()).unwrap();
    assert!(body.contains("\r\nc=IN IP4 192.0.2.1\r\n"), "{body}");
    assert!(body.contains("\r\nc=IN IP6 2001:db8::1\r\n"), "{body}");
}

/// §4.9: IPv4-mapped IPv6 addresses stay IPv6 addresses (`::ffff:a.b.c.d`), in the Vias (one with a
/// port outside the `]`) and the Contact. The declared Content-Length (236) is 9 octets short of
/// the body sent (245): the body is the first 236 octets, the `c=` line within them.
#[test]
fn ipv4_mapped_ipv6() {
    let bytes = load("ipv4-mapped-ipv6");
    let m = parsed("ipv4-mapped-ipv6", &bytes);
    assert_eq!(
        vias(&m),
        [
            ("UDP", v6("::ffff:192.0.2.10"), Some(19823), None),
            ("UDP", v6("::ffff:192.0.2.2"), None, None),
        ]
    );
    let Host::Ipv6(top) = vias(&m)[0].1 else {
        unreachable!()
    };
    assert_eq!(top.to_ipv4_mapped(), Some(Ipv4Addr::new(192, 0, 2, 10)));
    let contact = &contact_uris(&m)[0];
    assert_eq!(
        (contact.user, contact.host),
        (Some("ted"), v6("::ffff:192.0.2.2"))
    );
    assert_eq!(request_uri(&m).host, Host::Domain("example.com"));
    let body_start = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(bytes.len() - body_start, 245);
    assert_eq!(m.body(), &bytes[body_start..body_start + 236]);
    let body = std::str::from_utf8(m.body()).unwrap();
    assert!(body.contains("\r\nc=IN IP6 ::ffff:192.0.2.2\r\n"), "{body}");
}

/// §4.10: RFC 3261's ABNF lets a third colon stand between `::` and an IPv4 tail; RFC 5118 says an
/// implementation must tolerate it. It names the address the correct (RFC 4291) form names; the
/// text as written is kept (`host_raw`) and a proxy forwards the Request-URI unchanged.
#[test]
fn ipv6_reference_bug_in_rfc_3261_abnf() {
    let address = v6("2001:db8::192.0.2.1");
    let correct = load("ipv6-correct-abnf-2-colons");
    let buggy = load("ipv6-bug-abnf-3-colons");
    for (name, bytes, written) in [
        ("ipv6-correct-abnf-2-colons", &correct, "[2001:db8::192.0.2.1]"),
        ("ipv6-bug-abnf-3-colons", &buggy, "[2001:db8:::192.0.2.1]"),
    ] {
        let m = parsed(name, bytes);
        let ruri = request_uri(&m);
        assert_eq!(
            (ruri.user, ruri.host, ruri.port),
            (Some("user"), address, None),
            "{name}"
        );
        assert_eq!(ruri.host_raw, written, "{name}");
        assert_eq!(to_uri(&m).host, address, "{name}");
        assert_eq!(
            vias(&m),
            [("UDP", Host::Domain("lab1.east.example.com"), None, None)],
            "{name}"
        );
    }
    // The pair differs by exactly the two extra colons (Request-URI and To).
    let without_extra = String::from_utf8(buggy.clone()).unwrap().replace(":::", "::");
    assert_eq!(without_extra.as_bytes(), &correct[..]);
}

#[test]
fn every_fixture_survives_the_fuzz_checks() {
    for r in rows() {
        let bytes = load(&r.name);
        sip_codec::fuzzing::parse_target(&bytes);
        sip_codec::fuzzing::framer_target(&bytes);
        sip_codec::fuzzing::roundtrip_target(&bytes);
    }
}
