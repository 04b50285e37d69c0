//! What the RFC torture-corpus tests (`rfc4475.rs`, `rfc5118.rs`) share: each corpus is a directory
//! `fixtures/<corpus>/` of `<name>.dat` messages with an `expectations.tsv` (columns in the corpus
//! README), and an `accept` row is checked the same way in both.

use std::path::{Path, PathBuf};

use sip_codec::{HeaderName, Message, StartLine};

pub struct Row {
    pub name: String,
    pub expect: String,
    pub cols: Vec<String>,
}

fn dir(corpus: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(corpus)
}

/// The rows of `fixtures/<corpus>/expectations.tsv`.
pub fn rows(corpus: &str) -> Vec<Row> {
    let tsv = std::fs::read_to_string(dir(corpus).join("expectations.tsv")).unwrap();
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    assert_eq!(&header[..3], ["name", "expect", "kind"]);
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cols: Vec<String> = l.split('\t').map(str::to_owned).collect();
            Row {
                name: cols[0].clone(),
                expect: cols[1].clone(),
                cols,
            }
        })
        .collect()
}

/// The bytes of `fixtures/<corpus>/<name>.dat`.
pub fn load(corpus: &str, name: &str) -> Vec<u8> {
    std::fs::read(dir(corpus).join(format!("{name}.dat"))).unwrap()
}

pub fn col(r: &Row, i: usize) -> &str {
    r.cols.get(i).map_or("", String::as_str)
}

/// An `accept` row: start line, header/Via/Contact counts, Content-Length and body length as the
/// row says; every Via readable; `validate()` passes.
pub fn check_accept(r: &Row, m: &Message<'_>) {
    let n = &r.name;
    match *m.start_line() {
        StartLine::Request { method, uri, .. } => {
            assert_eq!(col(r, 2), "request", "{n}");
            assert_eq!(method, col(r, 3), "{n}");
            assert_eq!(uri, col(r, 4), "{n}");
        }
        StartLine::Response { status, .. } => {
            assert_eq!(col(r, 2), "response", "{n}");
            assert_eq!(status.to_string(), col(r, 5), "{n}");
        }
    }
    assert_eq!(m.headers().len().to_string(), col(r, 6), "{n}: header count");
    assert_eq!(
        m.values(HeaderName::Via).count().to_string(),
        col(r, 7),
        "{n}: Via values"
    );
    assert_eq!(
        m.values(HeaderName::Contact).count().to_string(),
        col(r, 8),
        "{n}: Contact values"
    );
    let cl = m.content_length().map(|c| c.to_string()).unwrap_or_default();
    assert_eq!(cl, col(r, 9), "{n}: Content-Length");
    assert_eq!(m.body().len().to_string(), col(r, 10), "{n}: body length");
    for v in m.vias() {
        v.unwrap_or_else(|e| panic!("{n}: Via {e}"));
    }
    m.validate().unwrap_or_else(|e| panic!("{n}: validate: {e}"));
}
