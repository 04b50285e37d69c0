//! The codec benchmark: sip-codec side by side with rsip and ezk-sip-types on parse + index of three
//! messages (group `parse_index`, messages/s), and sip-codec's stream `Framer` over 1 MiB (group
//! `framing`, bytes/s). Run: `cargo bench -p sipedge-benches --bench codec`.
//!
//! Equal work for every parser: parse the whole message from `&[u8]`, then reach, through the
//! parser's own typed API, the top Via's branch, the Call-ID, the CSeq number and method, the From
//! and To tags, and count the header lines. The fields are handed to a closure as one [`Fields`]
//! (borrowed from the parser's own types, so nothing is copied for the benchmark's sake): the
//! benchmark `black_box`es it, the start-up check compares the three parsers' fields as text.

use std::fmt::Display;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use sip_codec::{Frame, Framer};
use sipedge_benches::{stream, INVITE, NOTIFY, OK_200};

const MESSAGES: [(&str, &[u8]); 3] = [("invite", INVITE), ("ok_200", OK_200), ("notify", NOTIFY)];

/// The index of one message, as each parser exposes it. `M` is the parser's CSeq method type.
#[derive(Debug)]
struct Fields<'a, M> {
    headers: usize,
    branch: Option<&'a str>,
    call_id: &'a str,
    cseq: u32,
    method: M,
    from_tag: Option<&'a str>,
    to_tag: Option<&'a str>,
}

impl<M: Display> Fields<'_, M> {
    /// Parser-independent text, for the start-up comparison only.
    fn describe(&self) -> String {
        format!(
            "{} headers, branch {:?}, Call-ID {}, CSeq {} {}, From tag {:?}, To tag {:?}",
            self.headers, self.branch, self.call_id, self.cseq, self.method, self.from_tag, self.to_tag
        )
    }
}

/// Error path only (the closure runs when something failed).
fn err<E: Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

/// sip-codec: `parse` indexes the header spans; the typed accessors parse their header on demand.
fn index_sip_codec<R>(buf: &[u8], f: impl FnOnce(Fields<'_, &str>) -> R) -> Result<R, String> {
    let msg = sip_codec::parse(buf).map_err(err("parse"))?;
    let via = msg.top_via().map_err(err("Via"))?;
    let call_id = msg.call_id().map_err(err("Call-ID"))?;
    let cseq = msg.cseq().ok_or("CSeq missing")?;
    let from = msg.from().map_err(err("From"))?;
    let to = msg.to().map_err(err("To"))?;
    Ok(f(Fields {
        headers: msg.headers().len(),
        branch: via.branch(),
        call_id,
        cseq: cseq.number,
        method: cseq.method,
        from_tag: from.tag(),
        to_tag: to.tag(),
    }))
}

/// rsip: `SipMessage::try_from(&[u8])` tokenizes the message into owned untyped headers (one
/// `String` each); `.typed()` clones the header's string and parses it into the typed header.
fn index_rsip<R>(buf: &[u8], f: impl FnOnce(Fields<'_, rsip::Method>) -> R) -> Result<R, String> {
    use rsip::prelude::{HasHeaders, HeadersExt, ToTypedHeader, UntypedHeader};

    let msg = rsip::SipMessage::try_from(buf).map_err(err("parse"))?;
    let via = msg.via_header().and_then(|h| h.typed()).map_err(err("Via"))?;
    let call_id = msg.call_id_header().map_err(err("Call-ID"))?;
    let cseq = msg.cseq_header().and_then(|h| h.typed()).map_err(err("CSeq"))?;
    let from = msg.from_header().and_then(|h| h.typed()).map_err(err("From"))?;
    let to = msg.to_header().and_then(|h| h.typed()).map_err(err("To"))?;
    Ok(f(Fields {
        headers: msg.headers().iter().count(),
        branch: via.branch().map(|b| b.value()),
        call_id: call_id.value(),
        cseq: cseq.seq,
        method: cseq.method,
        from_tag: from.tag().map(|t| t.value()),
        to_tag: to.tag().map(|t| t.value()),
    }))
}

/// ezk-sip-types has no whole-message entry point: ezk-sip-core's transport assembles a message
/// from the crate's public pieces (`parse_complete_sip` in `transport/parse.rs`), and this is that
/// code: copy the datagram into `Bytes`, split lines with `PullParser`, parse the start line with
/// `MessageLine` and each header with `Line` into `Headers`, slice the body by `ContentLength`.
/// Typed headers are then decoded with `Headers::get_named` / `Headers::get`.
fn index_ezk<R>(buf: &[u8], f: impl FnOnce(Fields<'_, ezk_sip_types::Method>) -> R) -> Result<R, String> {
    use ezk_sip_types::header::typed::{CSeq, CallID, ContentLength, FromTo, Via};
    use ezk_sip_types::msg::{Line, MessageLine, PullParser};
    use ezk_sip_types::parse::Parse;
    use ezk_sip_types::{Headers, Name};

    let buffer = bytes::Bytes::copy_from_slice(buf);
    let mut lines = PullParser::new(&buffer, 0);
    let mut start = None;
    let mut headers = Headers::new();
    for line in &mut lines {
        let line = line.map_err(|_| "header section incomplete")?;
        let line = std::str::from_utf8(line).map_err(err("UTF-8"))?;
        if start.is_none() {
            let (_, parsed) = MessageLine::parse(&buffer)(line).map_err(err("start line"))?;
            start = Some(parsed);
        } else {
            let (_, parsed) = Line::parse(&buffer, line).map_err(err("header line"))?;
            headers.insert(parsed.name, parsed.value);
        }
    }
    let start = start.ok_or("no start line")?;
    let head_end = lines.head_end();
    let body_len = headers
        .get_named::<ContentLength>()
        .map_err(err("Content-Length"))?
        .0;
    let body_end = head_end + body_len;
    if buffer.len() < body_end {
        return Err("body truncated".into());
    }
    let body = buffer.slice(head_end..body_end);
    black_box((&start, &body));

    let via = headers.get_named::<Via>().map_err(err("Via"))?;
    let call_id = headers.get_named::<CallID>().map_err(err("Call-ID"))?;
    let cseq = headers.get_named::<CSeq>().map_err(err("CSeq"))?;
    let from = headers.get::<FromTo>(Name::FROM).map_err(err("From"))?;
    let to = headers.get::<FromTo>(Name::TO).map_err(err("To"))?;
    Ok(f(Fields {
        headers: headers.iter().count(),
        branch: via.params.get_val("branch").map(|b| b.as_str()),
        call_id: call_id.0.as_str(),
        cseq: cseq.cseq,
        method: cseq.method,
        from_tag: from.tag.as_deref(),
        to_tag: to.tag.as_deref(),
    }))
}

/// Frames `buf` with sip-codec's `Framer` the way a connection drains its buffer, without copying:
/// an offset advances by `consumed()`. Returns (messages, octets consumed).
fn frame_all(buf: &[u8]) -> (usize, usize) {
    let mut framer = Framer::default();
    let (mut frames, mut offset) = (0, 0);
    while let Some(rest) = buf.get(offset..).filter(|r| !r.is_empty()) {
        match framer.poll(rest) {
            Ok(Frame::NeedMore) | Err(_) => break,
            Ok(frame) => {
                frames += 1;
                offset += frame.consumed();
            }
        }
    }
    (frames, offset)
}

/// Prints the fixture sizes and refuses to run unless every parser indexes every message to the
/// same fields, so no benchmark can silently measure an error path.
fn check_fixtures(stream: &[u8]) {
    for (name, msg) in MESSAGES {
        let ours = index_sip_codec(msg, |f| f.describe()).unwrap_or_else(|e| panic!("sip-codec {name}: {e}"));
        let rsip = index_rsip(msg, |f| f.describe()).unwrap_or_else(|e| panic!("rsip {name}: {e}"));
        let ezk = index_ezk(msg, |f| f.describe()).unwrap_or_else(|e| panic!("ezk-sip-types {name}: {e}"));
        assert_eq!(ours, rsip, "{name}: sip-codec vs rsip");
        assert_eq!(ours, ezk, "{name}: sip-codec vs ezk-sip-types");
        eprintln!("{name:>7}: {:>5} bytes; {ours}", msg.len());
    }
    let rounds = stream.len() / (INVITE.len() + OK_200.len() + NOTIFY.len());
    assert_eq!(
        frame_all(stream),
        (3 * rounds, stream.len()),
        "framing the stream"
    );
    eprintln!(" stream: {:>5} bytes, {} messages", stream.len(), 3 * rounds);
}

fn parse_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_index");
    group.throughput(Throughput::Elements(1));
    for (name, msg) in MESSAGES {
        group.bench_with_input(BenchmarkId::new("sip-codec", name), msg, |b, msg| {
            b.iter(|| index_sip_codec(black_box(msg), |f| black_box(&f).cseq))
        });
        group.bench_with_input(BenchmarkId::new("rsip", name), msg, |b, msg| {
            b.iter(|| index_rsip(black_box(msg), |f| black_box(&f).cseq))
        });
        group.bench_with_input(BenchmarkId::new("ezk-sip-types", name), msg, |b, msg| {
            b.iter(|| index_ezk(black_box(msg), |f| black_box(&f).cseq))
        });
    }
    group.finish();
}

/// Parse alone, no typed access: sip-codec indexes every header line; the peers do what their parse
/// entry point does (rsip: untyped owned headers; ezk: the same assembly as `index_ezk` before any
/// typed lookup is not separable, so it is left out here).
fn parse_only(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_only");
    group.throughput(Throughput::Elements(1));
    for (name, msg) in MESSAGES {
        group.bench_with_input(BenchmarkId::new("sip-codec", name), msg, |b, msg| {
            b.iter(|| {
                sip_codec::parse(black_box(msg))
                    .map(|m| m.headers().len())
                    .unwrap_or(0)
            })
        });
        group.bench_with_input(BenchmarkId::new("rsip", name), msg, |b, msg| {
            b.iter(|| rsip::SipMessage::try_from(black_box(msg)).is_ok())
        });
    }
    group.finish();
}

/// Only sip-codec: rsip has no stream framer, and ezk's (`StreamingDecoder` in ezk-sip-core) is a
/// tokio-util `Decoder` that copies and fully parses each message, so it is not a framer to compare.
fn framing(c: &mut Criterion, stream: &[u8]) {
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_with_input(BenchmarkId::new("sip-codec", "1MiB"), stream, |b, s| {
        b.iter(|| frame_all(black_box(s)))
    });
    group.finish();
}

fn main() {
    let stream = stream(1 << 20);
    check_fixtures(&stream);
    let mut c = Criterion::default().configure_from_args();
    parse_index(&mut c);
    parse_only(&mut c);
    framing(&mut c, &stream);
    c.final_summary();
}
