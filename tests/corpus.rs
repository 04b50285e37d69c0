//! The shared real-world corpus (`../shared/corpus/manifest.tsv`, 755 messages from public captures):
//! every `accept` row parses with the manifest's kind, start line, header count, Via/Contact counts,
//! Content-Length, body length, Call-ID and CSeq; every `reject` row is refused; every `either` row
//! is handled without a panic and, if accepted, with the right kind and method/status. Stream-carried
//! messages must also come out of the framer as exactly one message. Fails, saying where it looked,
//! when `../shared` is absent.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashMap;

use sip_codec::{parse, Frame, Framer, HeaderName, Message, StartLine};

struct Manifest {
    dir: std::path::PathBuf,
    columns: HashMap<String, usize>,
    rows: Vec<Vec<String>>,
}

impl Manifest {
    fn load() -> Manifest {
        let shared = sipedge_tests::shared_dir();
        let dir = shared.join("corpus");
        let text = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
        let mut lines = text.lines();
        let columns = lines
            .next()
            .unwrap()
            .split('\t')
            .enumerate()
            .map(|(i, c)| (c.to_owned(), i))
            .collect();
        let rows = lines
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect();
        Manifest { dir, columns, rows }
    }

    fn get<'r>(&self, row: &'r [String], col: &str) -> &'r str {
        row.get(self.columns[col]).map_or("", String::as_str)
    }

    fn bytes(&self, row: &[String]) -> Vec<u8> {
        std::fs::read(self.dir.join(self.get(row, "file"))).unwrap()
    }
}

fn check_start_line(m: &Manifest, row: &[String], msg: &Message<'_>, strict_uri: bool) -> Result<(), String> {
    let file = m.get(row, "file");
    match *msg.start_line() {
        StartLine::Request { method, uri, .. } => {
            if m.get(row, "kind") != "request" || method != m.get(row, "method") {
                return Err(format!("{file}: request {method} does not match the manifest"));
            }
            if strict_uri && uri != m.get(row, "request_uri") {
                return Err(format!("{file}: Request-URI {uri}"));
            }
        }
        StartLine::Response { status, .. } => {
            if m.get(row, "kind") != "response" || status.to_string() != m.get(row, "status") {
                return Err(format!("{file}: response {status} does not match the manifest"));
            }
        }
    }
    Ok(())
}

fn check_accept(m: &Manifest, row: &[String], msg: &Message<'_>) -> Result<(), String> {
    let file = m.get(row, "file");
    check_start_line(m, row, msg, true)?;
    let expect = |col: &str, got: String| {
        let want = m.get(row, col);
        if !want.is_empty() && want != got {
            return Err(format!("{file}: {col} is {got:?}, manifest says {want:?}"));
        }
        Ok(())
    };
    expect("header_count", msg.headers().len().to_string())?;
    expect("via_fields", msg.values(HeaderName::Via).count().to_string())?;
    expect(
        "contact_fields",
        msg.values(HeaderName::Contact).count().to_string(),
    )?;
    expect(
        "content_length",
        msg.content_length().map(|c| c.to_string()).unwrap_or_default(),
    )?;
    expect("body_len", msg.body().len().to_string())?;
    expect("call_id", msg.call_id().map(str::to_owned).unwrap_or_default())?;
    let cseq = msg
        .cseq()
        .map(|c| format!("{} {}", c.number, c.method))
        .unwrap_or_default();
    let want: Vec<&str> = m.get(row, "cseq").split_whitespace().collect();
    if let [n, method] = want[..] {
        let normal = format!("{} {method}", n.parse::<u32>().unwrap_or(u32::MAX));
        if normal != cseq {
            return Err(format!(
                "{file}: CSeq {cseq:?}, manifest {:?}",
                m.get(row, "cseq")
            ));
        }
    }
    Ok(())
}

#[test]
fn every_manifest_row_gets_its_expected_outcome() {
    let m = Manifest::load();
    let mut failures = Vec::new();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for row in &m.rows {
        let expect = m.get(row, "parser_expect");
        *counts.entry(expect).or_default() += 1;
        let bytes = m.bytes(row);
        let file = m.get(row, "file");
        let result = match (expect, parse(&bytes)) {
            ("accept", Ok(msg)) => check_accept(&m, row, &msg),
            ("accept", Err(e)) => Err(format!("{file}: refused: {e}")),
            ("reject", Ok(_)) => Err(format!("{file}: accepted but must be refused")),
            ("reject", Err(_)) => Ok(()),
            ("either", Ok(msg)) => check_start_line(&m, row, &msg, false),
            ("either", Err(_)) => Ok(()),
            (other, _) => Err(format!("{file}: unknown expectation {other}")),
        };
        if let Err(e) = result {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        m.rows.len(),
        failures.join("\n")
    );
    assert_eq!(m.rows.len(), 755, "the manifest changed size");
    assert_eq!(counts.get("accept"), Some(&722));
    eprintln!("corpus: {} rows checked ({counts:?})", m.rows.len());
}

#[test]
fn stream_carried_messages_frame_as_exactly_one_message() {
    let m = Manifest::load();
    let mut framed = 0;
    for row in &m.rows {
        let stream = matches!(m.get(row, "transport"), "tcp" | "websocket" | "sctp");
        if m.get(row, "parser_expect") != "accept" || !stream || m.get(row, "content_length").is_empty() {
            continue;
        }
        let bytes = m.bytes(row);
        let frame = Framer::default().poll(&bytes);
        let file = m.get(row, "file");
        let head = bytes.len() - m.get(row, "body_len").parse::<usize>().unwrap();
        assert_eq!(
            frame,
            Ok(Frame::Message {
                len: bytes.len(),
                head_len: head
            }),
            "{file}"
        );
        framed += 1;
    }
    assert!(framed > 300, "only {framed} stream messages framed");
}

#[test]
fn the_whole_corpus_survives_the_fuzz_checks() {
    let m = Manifest::load();
    for row in &m.rows {
        let bytes = m.bytes(row);
        sip_codec::fuzzing::parse_target(&bytes);
        sip_codec::fuzzing::framer_target(&bytes);
        sip_codec::fuzzing::roundtrip_target(&bytes);
    }
}
