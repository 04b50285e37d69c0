//! RFC 4475 torture tests, from the RFC's own archive (`fixtures/rfc4475/`, see its README).
//! Every valid message must parse with the expected start line, header count, Via/Contact counts,
//! Content-Length and body; every message the RFC says to refuse is refused with a precise error;
//! each "either" message has the outcome this codec chose, pinned here so a change is deliberate.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod torture;

use sip_codec::{parse, DefectKind, ErrorKind, Version};
use torture::{check_accept, col, Row};

fn rows() -> Vec<Row> {
    torture::rows("rfc4475")
}

fn load(name: &str) -> Vec<u8> {
    torture::load("rfc4475", name)
}

#[test]
fn every_valid_torture_message_is_accepted_with_the_right_values() {
    let rows = rows();
    let accepted: Vec<_> = rows.iter().filter(|r| r.expect == "accept").collect();
    assert_eq!(accepted.len(), 29);
    for r in accepted {
        let bytes = load(&r.name);
        let m = parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        check_accept(r, &m);
    }
}

#[test]
fn the_messages_the_rfc_refuses_are_refused_precisely() {
    use ErrorKind::*;
    let parse_errors = [
        ("clerr", BodyTruncated),
        ("ncl", BadContentLength),
        ("scalar02", BadCSeq),
        ("scalarlg", BadCSeq),
        ("bigcode", BadStatusCode),
        ("mcl01", ConflictingContentLength),
        ("test", BadRequestLine),
    ];
    for (name, kind) in parse_errors {
        let bytes = load(name);
        let err = parse(&bytes).expect_err(name);
        assert_eq!(err.kind, kind, "{name}");
    }
    // badinv01's framing is intact; its Via (";;,;,,") and Contact (";;;;") are not.
    let bytes = load("badinv01");
    let m = parse(&bytes).unwrap();
    let d = m.validate().unwrap_err();
    assert_eq!(d.header, "Via", "{d}");
    let all_rejects: Vec<_> = rows()
        .into_iter()
        .filter(|r| r.expect == "reject")
        .map(|r| r.name)
        .collect();
    assert_eq!(all_rejects.len(), parse_errors.len() + 1);
}

#[test]
fn the_either_messages_get_the_outcome_we_chose() {
    enum Outcome {
        Parse(ErrorKind),
        Invalid(&'static str),
        Mandatory(DefectKind),
        Accept,
    }
    use Outcome::*;
    let chosen = [
        ("quotbal", Invalid("To")),
        ("ltgtruri", Invalid("Request-URI")),
        ("lwsruri", Parse(ErrorKind::BadRequestUri)),
        ("lwsstart", Parse(ErrorKind::BadRequestUri)),
        ("trws", Parse(ErrorKind::BadRequestUri)),
        ("escruri", Invalid("Request-URI")),
        ("baddate", Accept),
        ("regbadct", Invalid("Contact")),
        ("badaspec", Invalid("To")),
        ("baddn", Parse(ErrorKind::Incomplete)),
        ("badvers", Accept),
        ("mismatch01", Mandatory(DefectKind::MethodMismatch)),
        ("mismatch02", Mandatory(DefectKind::MethodMismatch)),
    ];
    let either: Vec<_> = rows().into_iter().filter(|r| r.expect == "either").collect();
    assert_eq!(either.len(), chosen.len());
    for r in &either {
        let (_, outcome) = chosen
            .iter()
            .find(|(n, _)| *n == r.name)
            .unwrap_or_else(|| panic!("{}", r.name));
        let bytes = load(&r.name);
        let parsed = parse(&bytes);
        match outcome {
            Parse(kind) => assert_eq!(parsed.unwrap_err().kind, *kind, "{}", r.name),
            Invalid(header) => assert_eq!(
                parsed.unwrap().validate().unwrap_err().header,
                *header,
                "{}",
                r.name
            ),
            Mandatory(kind) => {
                let m = parsed.unwrap();
                m.validate().unwrap();
                assert_eq!(m.check_mandatory().unwrap_err().problem, *kind, "{}", r.name)
            }
            Accept => {
                let m = parsed.unwrap();
                assert_eq!(m.method(), Some(col(r, 3)), "{}", r.name);
                m.validate().unwrap();
            }
        }
    }
    let badvers = load("badvers");
    assert_eq!(parse(&badvers).unwrap().version(), Version { major: 7, minor: 0 });
}

#[test]
fn semantic_checks_on_valid_syntax() {
    // multi01: duplicated singletons; insuf: missing Call-ID/From/To — both parse, both fail here.
    let multi = load("multi01");
    let d = parse(&multi).unwrap().check_mandatory().unwrap_err();
    assert_eq!(d.problem, DefectKind::Duplicate);
    let insuf = load("insuf");
    assert_eq!(
        parse(&insuf).unwrap().check_mandatory().unwrap_err().problem,
        DefectKind::Missing
    );
    let ok = load("wsinv");
    let m = parse(&ok).unwrap();
    m.check_mandatory().unwrap();
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.cseq().unwrap().number, 9);
    assert_eq!(m.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(m.from().unwrap().tag(), Some("98asjd8"));
    let vias: Vec<_> = m.vias().map(|v| v.unwrap().host).collect();
    assert_eq!(vias, ["192.0.2.2", "spindle.example.com", "192.168.255.111"]);
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
