//! `sipedge decode`: one SIP message on stdin → one JSON object on stdout (a contract other tools
//! rely on). `{"kind":"request","method":..,"uri":..,"headers":[[name,value],..],"body_len":N}` or
//! `{"kind":"response","status":..,"reason":..,"headers":..,"body_len":N}`; invalid input prints
//! `{"error":".."}` and exits 1. Header names as written (compact forms kept), values unfolded.

use std::io::{Read, Write};
use std::process::ExitCode;

use serde::Serialize;
use sip_codec::{Message, StartLine};

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Decoded {
    Request {
        method: String,
        uri: String,
        headers: Vec<(String, String)>,
        body_len: usize,
    },
    Response {
        status: u16,
        reason: String,
        headers: Vec<(String, String)>,
        body_len: usize,
    },
}

#[derive(Debug, Serialize)]
struct DecodeError {
    error: String,
}

/// The JSON document for `input`, and whether it decoded.
pub fn decode(input: &[u8]) -> (String, bool) {
    let result = match sip_codec::parse(input) {
        // A message the proxy would answer 400 is not decoded either: the mandatory headers and the
        // header values are checked (`check`, the proxy's own test), so `decode` and the edge refuse
        // the same input (a request without Call-ID, RFC 4475 §3.1.2.1 and kin).
        Ok(msg) => match msg.check() {
            Ok(()) => serde_json::to_string(&describe(&msg)).map(|s| (s, true)),
            Err(d) => serde_json::to_string(&DecodeError { error: d.to_string() }).map(|s| (s, false)),
        },
        Err(e) => serde_json::to_string(&DecodeError { error: e.to_string() }).map(|s| (s, false)),
    };
    result.unwrap_or_else(|e| (format!("{{\"error\":\"cannot serialise: {e}\"}}"), false))
}

fn describe(msg: &Message<'_>) -> Decoded {
    let headers = msg
        .headers()
        .iter()
        .map(|h| {
            (
                h.name_str().to_owned(),
                String::from_utf8_lossy(&h.unfolded()).into_owned(),
            )
        })
        .collect();
    let body_len = msg.body().len();
    match *msg.start_line() {
        StartLine::Request { method, uri, .. } => Decoded::Request {
            method: method.to_owned(),
            uri: uri.to_owned(),
            headers,
            body_len,
        },
        StartLine::Response { status, reason, .. } => Decoded::Response {
            status,
            reason: String::from_utf8_lossy(reason).into_owned(),
            headers,
            body_len,
        },
    }
}

pub fn run() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut input) {
        let doc = serde_json::json!({ "error": format!("cannot read stdin: {e}") });
        println!("{doc}");
        return ExitCode::FAILURE;
    }
    let (doc, ok) = decode(&input);
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{doc}").is_err() {
        return ExitCode::FAILURE;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shape_and_order() {
        let (doc, ok) = decode(b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/UDP g\r\nf: <sip:c@d>;tag=1\r\nt: <sip:a@b>\r\ni: c1\r\nCSeq: 1 OPTIONS\r\nSubject: x\r\n  y\r\nl: 2\r\n\r\nhiTRAILING");
        assert!(ok, "{doc}");
        assert_eq!(
            doc,
            r#"{"kind":"request","method":"OPTIONS","uri":"sip:a@b","headers":[["v","SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/UDP g"],["f","<sip:c@d>;tag=1"],["t","<sip:a@b>"],["i","c1"],["CSeq","1 OPTIONS"],["Subject","x y"],["l","2"]],"body_len":2}"#
        );
    }

    #[test]
    fn response_and_error() {
        let (doc, ok) = decode(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\nbody-without-length");
        assert!(ok, "{doc}");
        assert!(
            doc.starts_with(r#"{"kind":"response","status":200,"reason":"OK","headers":[["Via","#)
                && doc.ends_with(r#"["Call-ID","x"],["CSeq","1 OPTIONS"]],"body_len":19}"#),
            "{doc}"
        );
        let (doc, ok) = decode(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n");
        assert!(!ok && doc.contains("Via: missing"), "{doc}");
        let (doc, ok) = decode(b"\0\0\0\0");
        assert!(!ok);
        assert!(doc.starts_with(r#"{"error":""#), "{doc}");
    }
}
