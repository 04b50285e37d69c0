//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs` call these), kept here so that the unit
//! tests run the committed seed corpus through exactly the same checks on stable Rust in CI.
//! Each function asserts the codec's invariants; a failed assertion is the bug a fuzzer reports.

use crate::edit::Editor;
use crate::framer::{Frame, Framer};
use crate::header::HeaderName;
use crate::parse::{parse, Limits};
use crate::response::ResponseBuilder;

/// Parse, then touch every accessor and both checks: none may panic, and spans stay in bounds.
pub fn parse_target(data: &[u8]) {
    let msg = match parse(data) {
        Ok(m) => m,
        Err(e) => match e.partial {
            Some(m) => *m,
            None => return,
        },
    };
    assert!(msg.as_bytes().len() <= data.len());
    for h in msg.headers() {
        assert!(h.line_range().end <= data.len());
        let _ = h.unfolded();
    }
    let _ = (msg.top_via(), msg.from(), msg.to(), msg.call_id(), msg.expires());
    let _ = (
        msg.subscription_state(),
        msg.ms_diagnostics(),
        msg.ms_diagnostics_public(),
    );
    let _ = (
        msg.event(),
        msg.content_type(),
        msg.validate(),
        msg.check_mandatory(),
    );
    for v in msg.vias().flatten() {
        let _ = (v.branch(), v.rport(), v.validate());
    }
    for c in msg.contacts().flatten() {
        if let crate::ContactValue::Addr(c) = c {
            let _ = (
                c.expires(),
                c.push_params(),
                c.addr.display_name(),
                c.addr.validate(),
            );
        }
    }
    for r in msg.routes().chain(msg.record_routes()).flatten() {
        let _ = r.parsed_uri();
    }
    let _ = msg.option_tags(HeaderName::Supported).count();
    // A kept message reads back exactly as parsed (a proxy answers stored requests from it).
    let kept = crate::Kept::new(&msg, Vec::new());
    let back = kept.message();
    assert!(back.is_some(), "a kept message must read back");
    if let Some(back) = back {
        assert_eq!(back.as_bytes(), msg.as_bytes());
        assert_eq!(back.start_line(), msg.start_line());
        assert_eq!(back.headers(), msg.headers());
        assert_eq!(
            (back.body(), back.content_length(), back.cseq()),
            (msg.body(), msg.content_length(), msg.cseq())
        );
        assert_eq!(back.check(), msg.check());
    }
    if msg.is_request() {
        let resp = ResponseBuilder::new(&msg, 400, "Bad Request")
            .to_tag("fz")
            .build();
        let reparsed = parse(&resp);
        assert!(
            reparsed.is_ok(),
            "a generated response must parse: {:?}\n{}",
            reparsed.err(),
            String::from_utf8_lossy(&resp)
        );
    }
}

/// Feed the stream in two differently sized chunkings; both must yield the same frames, every frame
/// must fit the buffer, and the framer must make progress or ask for more.
pub fn framer_target(data: &[u8]) {
    let split = data.first().map_or(1, |b| usize::from(*b % 13) + 1);
    let a = frame_all(data, split);
    let b = frame_all(data, data.len().max(1));
    // A keepalive split across reads may legitimately read as two pongs; compare messages only.
    let msgs = |v: &[Frame]| {
        v.iter()
            .filter(|f| matches!(f, Frame::Message { .. }))
            .copied()
            .collect::<Vec<_>>()
    };
    if a.1.is_ok() && b.1.is_ok() {
        assert_eq!(msgs(&a.0), msgs(&b.0), "chunking changed the messages");
    }
}

fn frame_all(data: &[u8], step: usize) -> (Vec<Frame>, Result<(), crate::FrameError>) {
    let limits = Limits {
        max_head_bytes: 4096,
        max_headers: 64,
        max_body_bytes: 8192,
    };
    let mut framer = Framer::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match framer.poll(&buf) {
                Ok(Frame::NeedMore) => break,
                Ok(f) => {
                    assert!(
                        f.consumed() > 0 && f.consumed() <= buf.len(),
                        "frame {f:?} beyond buffer"
                    );
                    if let Frame::Message { len, head_len } = f {
                        assert!(head_len <= len);
                        let _ = parse(buf.get(..len).unwrap_or(&[]));
                    }
                    buf.drain(..f.consumed());
                    frames.push(f);
                }
                Err(e) => return (frames, Err(e)),
            }
        }
    }
    (frames, Ok(()))
}

/// parse → proxy edits → serialize → parse: the result parses, carries exactly the edits, and every
/// other header line is byte-identical and in the same order.
pub fn roundtrip_target(data: &[u8]) {
    let Ok(msg) = parse(data) else { return };
    if !msg.is_request() || msg.check_mandatory().is_err() {
        return;
    }
    let mut ed = Editor::new(&msg);
    ed.prepend_via("SIP/2.0/TLS edge.example.com:5061;branch=z9hG4bKfuzz");
    ed.add_record_route("<sip:edge.example.com:5061;transport=tls;lr>");
    let mf = ed.decrement_max_forwards();
    let out = ed.to_vec();
    assert_eq!(out.len(), ed.len());
    // The edit adds up to three lines (Via, Record-Route, Max-Forwards): an input at the header
    // limits may exceed them by that much and is still a well-formed message.
    let d = Limits::default();
    let grown = Limits {
        max_head_bytes: d.max_head_bytes + out.len().saturating_sub(data.len()),
        max_headers: d.max_headers + 3,
        max_body_bytes: d.max_body_bytes,
    };
    let again = crate::parse::parse_with(&out, &grown);
    assert!(
        again.is_ok(),
        "edited message does not parse: {:?}",
        again.as_ref().err()
    );
    let Ok(again) = again else { return };
    assert_eq!(again.method(), msg.method());
    assert_eq!(again.request_uri(), msg.request_uri());
    assert_eq!(again.body(), msg.body());
    if let crate::MaxForwards::Forward(n) = mf {
        assert_eq!(again.max_forwards(), Some(n));
    }
    let top = again.headers().first().map(|h| (h.name, h.raw_value));
    assert_eq!(
        top,
        Some((
            HeaderName::Via,
            &b"SIP/2.0/TLS edge.example.com:5061;branch=z9hG4bKfuzz"[..]
        ))
    );
    // Exactly where the editor puts its lines: our Via first, then (when the message had no
    // Record-Route) our Record-Route right below it, else our Record-Route just above the first
    // existing one. Compare by position, not by value: an input may already carry a line equal to
    // ours, and that line is "untouched" like any other.
    const OUR_RR: &[u8] = b"<sip:edge.example.com:5061;transport=tls;lr>";
    let mut after: Vec<&crate::Header<'_>> = again.headers().iter().skip(1).collect();
    // Max-Forwards may be rewritten or added at the top: leave it out of both sides.
    let first_rr = msg
        .headers()
        .iter()
        .filter(|h| h.name != HeaderName::MaxForwards)
        .position(|h| h.name == HeaderName::RecordRoute)
        .unwrap_or(0);
    after.retain(|h| h.name != HeaderName::MaxForwards);
    let rr = after.get(first_rr).map(|h| (h.name, h.raw_value));
    assert_eq!(
        rr,
        Some((HeaderName::RecordRoute, OUR_RR)),
        "our Record-Route is not at position {first_rr}"
    );
    after.remove(first_rr);
    let after: Vec<_> = after.iter().map(|h| (h.raw_name, h.raw_value)).collect();
    let before: Vec<_> = msg
        .headers()
        .iter()
        .filter(|h| h.name != HeaderName::MaxForwards)
        .map(|h| (h.raw_name, h.raw_value))
        .collect();
    assert_eq!(before, after, "untouched headers changed");
}
