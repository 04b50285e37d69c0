//! `sipedge decode`, black-box: the real binary, stdin in, JSON out, exit codes — a contract other
//! tools rely on — on hand-made messages and on every message of the shared corpus.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn decode(input: &[u8]) -> (Value, i32) {
    let bin = sipedge_tests::sipedge_bin();
    let mut child = Command::new(&bin)
        .arg("decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); build it first: cargo build -p sipedge",
                bin.display()
            )
        });
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON line expected: {text:?}");
    (
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
        out.status.code().unwrap(),
    )
}

#[test]
fn request_contract() {
    let (v, code) = decode(
        b"INVITE sip:bob@partner.example SIP/2.0\r\n\
v: SIP/2.0/TLS a.example;branch=z9hG4bK1, SIP/2.0/TLS b.example;branch=z9hG4bK2\r\n\
Via: SIP/2.0/TLS c.example;branch=z9hG4bK3\r\n\
f: <sip:a@corp.example>;tag=1\r\n\
t: <sip:bob@partner.example>\r\n\
i: c1\r\n\
CSeq: 1 INVITE\r\n\
Subject: folded\r\n\tvalue\r\n\
l: 4\r\n\r\nbodyTRAILING-BYTES",
    );
    assert_eq!(code, 0);
    let expected = serde_json::json!({
        "kind": "request",
        "method": "INVITE",
        "uri": "sip:bob@partner.example",
        "headers": [
            ["v", "SIP/2.0/TLS a.example;branch=z9hG4bK1, SIP/2.0/TLS b.example;branch=z9hG4bK2"],
            ["Via", "SIP/2.0/TLS c.example;branch=z9hG4bK3"],
            ["f", "<sip:a@corp.example>;tag=1"],
            ["t", "<sip:bob@partner.example>"],
            ["i", "c1"],
            ["CSeq", "1 INVITE"],
            ["Subject", "folded value"],
            ["l", "4"]
        ],
        "body_len": 4
    });
    assert_eq!(v, expected);
}

#[test]
fn response_contract_and_body_without_length() {
    let (v, code) =
        decode("SIP/2.0 480 Temporärement indisponible\r\nVia: SIP/2.0/TLS a.example;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\n\r\nrest of the datagram".as_bytes());
    assert_eq!(code, 0);
    assert_eq!(v["kind"], "response");
    assert_eq!(v["status"], 480);
    assert_eq!(v["reason"], "Temporärement indisponible");
    assert_eq!(v["headers"][3], serde_json::json!(["Call-ID", "x"]));
    assert_eq!(v["body_len"], 20);
    assert!(v.get("method").is_none());
}

#[test]
fn invalid_input_is_an_error_object_and_exit_1() {
    for bad in [
        &b""[..],
        b"\0\0\0\0",
        b"INVITE sip:x SIP/2.0\r\nl: -1\r\n\r\n",
        b"SIP/2.0 2000 OK\r\n\r\n",
        b"garbage",
    ] {
        let (v, code) = decode(bad);
        assert_eq!(code, 1, "{bad:?}");
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 1, "{v}");
        assert!(!obj["error"].as_str().unwrap().is_empty());
    }
}

/// RFC 4475 §3.1.2.1 (`badinv01`: `Via: ...;;,;,,` and `Contact: ...;;;;`) is refused as the proxy
/// refuses it (400), naming the header at fault.
#[test]
fn extraneous_header_field_separators_are_an_error() {
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../crates/sip-codec/tests/fixtures/rfc4475/badinv01.dat"),
    )
    .unwrap();
    let (v, code) = decode(&bytes);
    assert_eq!(code, 1, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("Via:"), "{v}");
}

/// What the proxy answers 400 for a missing or repeated mandatory header, `decode` refuses with the
/// same words (exit 1).
#[test]
fn a_request_without_call_id_is_refused_as_the_proxy_refuses_it() {
    let ok = "MESSAGE sip:bob@partner.example SIP/2.0\r\nVia: SIP/2.0/TLS fe1.corp.example;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:a@corp.example>;tag=1\r\nTo: <sip:bob@partner.example>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(decode(ok.as_bytes()).1, 0);
    // Max-Forwards is the one a proxy supplies itself (RFC 3261 §16.6 step 3): not required.
    assert_eq!(decode(ok.replace("Max-Forwards: 70\r\n", "").as_bytes()).1, 0);
    for (bad, error) in [
        (ok.replace("Call-ID: c1\r\n", ""), "Call-ID: missing"),
        (
            ok.replace("From: <sip:a@corp.example>;tag=1\r\n", ""),
            "From: missing",
        ),
        (
            ok.replace("Call-ID: c1\r\n", "Call-ID: c1\r\ni: c2\r\n"),
            "Call-ID: ",
        ),
        (ok.replace("CSeq: 1 MESSAGE", "CSeq: 1 INVITE"), "CSeq: "),
    ] {
        let (v, code) = decode(bad.as_bytes());
        assert_eq!(code, 1, "{bad}: {v}");
        assert!(v["error"].as_str().unwrap().starts_with(error), "{error}: {v}");
    }
}

#[test]
fn every_corpus_message_decodes_as_the_manifest_says() {
    let shared = sipedge_tests::shared_dir();
    let dir = shared.join("corpus");
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    let mut lines = manifest.lines();
    let cols: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let idx = |name: &str| cols.iter().position(|c| *c == name).unwrap();
    let (file, expect, kind) = (idx("file"), idx("parser_expect"), idx("kind"));
    let (method, status, headers, body) =
        (idx("method"), idx("status"), idx("header_count"), idx("body_len"));
    let mut checked = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        let row: Vec<&str> = line.split('\t').collect();
        let (v, code) = decode(&std::fs::read(dir.join(row[file])).unwrap());
        match row[expect] {
            "accept" => {
                assert_eq!(code, 0, "{}: {v}", row[file]);
                assert_eq!(v["kind"], row[kind], "{}", row[file]);
                if row[kind] == "request" {
                    assert_eq!(v["method"], row[method], "{}", row[file]);
                } else {
                    assert_eq!(v["status"].to_string(), row[status], "{}", row[file]);
                }
                assert_eq!(
                    v["headers"].as_array().unwrap().len().to_string(),
                    row[headers],
                    "{}",
                    row[file]
                );
                assert_eq!(v["body_len"].to_string(), row[body], "{}", row[file]);
            }
            "reject" => assert_eq!((code, v.get("error").is_some()), (1, true), "{}", row[file]),
            _ => assert!(code == 0 || v.get("error").is_some(), "{}", row[file]),
        }
        checked += 1;
    }
    assert_eq!(checked, 755);
}
