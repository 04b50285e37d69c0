//! The SIP text of the bench: the generator's MESSAGE (Lync-style headers, a ~300-byte `text/plain`
//! body, a Via branch that names its connection and sequence number), how a final response is
//! matched back to it ([`classify`]: the top Via after the proxy stripped its own), and the sink's
//! 200 OK ([`answer`]: Via, From, To with a tag, Call-ID and CSeq copied, no body). Parsing is
//! `sip_codec`'s; framing is done by the callers with `sip_codec::Framer`.

use std::fmt::Write as _;

use sip_codec::{parse, HeaderName};

/// Prefix of every branch the generator writes (RFC 3261 magic cookie first).
const BRANCH_PREFIX: &str = "z9hG4bKsb";

/// The body: about 300 octets of instant-message text, as a Lync IM would carry.
pub const BODY: &str = "Hi Bob, this is a load-test instant message from the sipedge bench. It \
carries about three hundred octets of plain text, the size of a typical sentence or two typed into \
a Lync or Skype for Business conversation window, so the proxy's body handling (the IM URL filter, \
Content-Length checks) costs what it costs in real traffic. Thanks!";

/// What the generator's requests carry apart from the per-request numbers.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    pub uri: String,
    pub from: String,
    /// `TLS` or `TCP` (the Via transport).
    pub transport: &'static str,
    /// Ask the sink to answer each request with its own write ([`ANSWER_EACH_LINE`]).
    pub answer_each: bool,
}

/// The header line by which a request asks the sink to answer it with a write of its own (a proxy
/// passes it through unchanged).
pub const ANSWER_EACH_LINE: &str = "X-Bench-Answer: each\r\n";

/// The branch of request `seq` on connection `conn`.
pub fn branch(conn: u32, seq: u64) -> String {
    format!("{BRANCH_PREFIX}{conn}.{seq}")
}

/// `(conn, seq)` from a branch the generator wrote, `None` for any other.
pub fn parse_branch(b: &str) -> Option<(u32, u64)> {
    let (conn, seq) = b.strip_prefix(BRANCH_PREFIX)?.split_once('.')?;
    Some((conn.parse().ok()?, seq.parse().ok()?))
}

impl RequestTemplate {
    /// Appends request `seq` of connection `conn` (local address `via_host`) to `out`.
    pub fn write(&self, out: &mut Vec<u8>, via_host: &str, conn: u32, seq: u64) {
        let mut s = String::with_capacity(900);
        let _ = write!(
            s,
            "MESSAGE {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{tr} {via_host};branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <{from}>;tag=sb{conn}x{seq}\r\n\
             To: <{uri}>\r\n\
             Call-ID: sb{conn}-{seq}@{via_host}\r\n\
             CSeq: {seq} MESSAGE\r\n\
             Content-Type: text/plain; charset=UTF-8\r\n\
             User-Agent: UCCAPI/16.0.4849.1000 OC/16.0.4849.1000 (Skype for Business) sipedge-bench\r\n\
             {each}Content-Length: {len}\r\n\r\n{BODY}",
            uri = self.uri,
            tr = self.transport,
            branch = branch(conn, seq),
            from = self.from,
            len = BODY.len(),
            each = if self.answer_each { ANSWER_EACH_LINE } else { "" },
        );
        out.extend_from_slice(s.as_bytes());
    }
}

/// The one OPTIONS of connection `conn` in the connection scenarios (`conns.rs`): the same
/// branch scheme as the MESSAGE load (sequence 0), no body.
pub fn options(out: &mut Vec<u8>, t: &RequestTemplate, via_host: &str, conn: u32) {
    let _ = write!(
        StringSink(out),
        "OPTIONS {uri} SIP/2.0\r\n\
         Via: SIP/2.0/{tr} {via_host};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <{from}>;tag=sbo{conn}\r\n\
         To: <{uri}>\r\n\
         Call-ID: sbo{conn}@{via_host}\r\n\
         CSeq: 1 OPTIONS\r\n\
         User-Agent: sipedge-bench\r\n\
         Content-Length: 0\r\n\r\n",
        uri = t.uri,
        tr = t.transport,
        branch = branch(conn, 0),
        from = t.from,
    );
}

/// `fmt::Write` onto a byte buffer.
struct StringSink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for StringSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// What one framed message from the proxy is, to the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// A final response (status ≥ 200) to request `(conn, seq)`.
    Final { status: u16, conn: u32, seq: u64 },
    /// A provisional response: ignored.
    Provisional,
    /// Anything else: a request, a response to a branch not ours, or an unparsable message.
    Foreign,
}

/// Classifies one framed message the generator received.
pub fn classify(msg: &[u8]) -> Inbound {
    let Ok(m) = parse(msg) else {
        return Inbound::Foreign;
    };
    let Some(status) = m.status() else {
        return Inbound::Foreign;
    };
    if status < 200 {
        return Inbound::Provisional;
    }
    match m.top_via().ok().and_then(|v| v.branch()).and_then(parse_branch) {
        Some((conn, seq)) => Inbound::Final { status, conn, seq },
        None => Inbound::Foreign,
    }
}

/// Appends the sink's answer to one framed request to `out`: 200 OK with Via (all, in order),
/// From, To (tag added if it has none), Call-ID and CSeq copied and no body. ACKs and responses get
/// nothing; an unparsable message gets nothing (`false`: the caller closes).
/// The 200 OK to request `msg`, appended to `out`: `None` when `msg` does not parse, else whether the
/// request asked to be answered with a write of its own ([`ANSWER_EACH_LINE`]).
pub fn answer(msg: &[u8], out: &mut Vec<u8>) -> Option<bool> {
    let Ok(m) = parse(msg) else {
        return None;
    };
    if m.method().is_none_or(|meth| meth == "ACK") {
        return Some(false);
    }
    let each = m
        .headers()
        .iter()
        .any(|h| h.raw_name.eq_ignore_ascii_case(b"X-Bench-Answer") && h.raw_value == b"each");
    out.extend_from_slice(b"SIP/2.0 200 OK\r\n");
    let has_tag = m.to().ok().and_then(|t| t.tag()).is_some();
    for h in m.headers() {
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq | HeaderName::To => {
                out.extend_from_slice(h.raw_name);
                out.extend_from_slice(b": ");
                out.extend_from_slice(h.raw_value);
                if h.name == HeaderName::To && !has_tag {
                    out.extend_from_slice(b";tag=sink");
                }
                out.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(each)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_codec::{Frame, Framer, Limits};

    fn template() -> RequestTemplate {
        RequestTemplate {
            uri: "sip:bob@partner.test".into(),
            from: "sip:alice@corp.test".into(),
            transport: "TLS",
            answer_each: false,
        }
    }

    /// Frames `buf` the way the event loops do: every whole message, in order.
    fn frames(buf: &[u8]) -> Vec<Vec<u8>> {
        let mut framer = Framer::new(Limits::default());
        let mut at = 0;
        let mut out = Vec::new();
        loop {
            match framer.poll(&buf[at..]).unwrap() {
                Frame::NeedMore => return out,
                f @ Frame::Message { len, .. } => {
                    out.push(buf[at..at + len].to_vec());
                    at += f.consumed();
                }
                f => at += f.consumed(),
            }
        }
    }

    #[test]
    fn the_request_is_well_formed_and_lync_sized() {
        let mut out = Vec::new();
        template().write(&mut out, "127.0.0.1:40000", 3, 17);
        let m = parse(&out).unwrap();
        m.validate().unwrap();
        assert_eq!(m.method(), Some("MESSAGE"));
        assert_eq!(m.request_uri(), Some("sip:bob@partner.test"));
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKsb3.17"));
        assert_eq!(m.from().unwrap().tag(), Some("sb3x17"));
        assert_eq!(m.cseq().unwrap().number, 17);
        assert_eq!(
            m.content_type(),
            Some("text/plain"),
            "the media type, parameters off"
        );
        assert_eq!(m.body().len(), BODY.len());
        assert!((280..=340).contains(&BODY.len()), "{}", BODY.len());
        for h in ["User-Agent", "Max-Forwards", "Call-ID", "To"] {
            assert!(m.headers_named(h).next().is_some(), "{h}");
        }
    }

    #[test]
    fn branches_round_trip_and_foreign_ones_do_not_match() {
        assert_eq!(parse_branch(&branch(0, 0)), Some((0, 0)));
        assert_eq!(parse_branch(&branch(7, u64::MAX)), Some((7, u64::MAX)));
        assert_eq!(parse_branch("z9hG4bK2d4790.1"), None);
        assert_eq!(parse_branch("z9hG4bKsb1"), None);
        assert_eq!(parse_branch("z9hG4bKsbx.1"), None);
    }

    #[test]
    fn pipelined_requests_answered_and_matched_in_order() {
        let mut wire = Vec::new();
        for seq in 0..5 {
            template().write(&mut wire, "127.0.0.1:40000", 1, seq);
        }
        // Split as TCP might: the sink frames, answers each; the generator frames and classifies.
        let reqs = frames(&wire);
        assert_eq!(reqs.len(), 5);
        let mut answers = Vec::new();
        for r in &reqs {
            assert_eq!(answer(r, &mut answers), Some(false));
        }
        let resps = frames(&answers);
        assert_eq!(resps.len(), 5);
        for (seq, r) in resps.iter().enumerate() {
            assert_eq!(
                classify(r),
                Inbound::Final {
                    status: 200,
                    conn: 1,
                    seq: seq as u64
                }
            );
            let m = parse(r).unwrap();
            assert_eq!(m.to().unwrap().tag(), Some("sink"));
            assert_eq!(m.call_id().unwrap(), format!("sb1-{seq}@127.0.0.1:40000"));
            assert_eq!(m.content_length(), Some(0));
        }
    }

    #[test]
    fn the_top_via_decides_after_a_proxy_stripped_its_own() {
        let resp = "SIP/2.0 503 Service Unavailable\r\nVia: SIP/2.0/TLS 127.0.0.1:4;branch=z9hG4bKsb2.9\r\n\
                    From: <sip:a@corp.test>;tag=x\r\nTo: <sip:b@partner.test>;tag=y\r\nCall-ID: c\r\n\
                    CSeq: 9 MESSAGE\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            classify(resp.as_bytes()),
            Inbound::Final {
                status: 503,
                conn: 2,
                seq: 9
            }
        );
        // With the proxy's Via still on top it is not ours.
        let proxied = resp.replacen("Via:", "Via: SIP/2.0/TLS edge;branch=z9hG4bKedge\r\nVia:", 1);
        assert_eq!(classify(proxied.as_bytes()), Inbound::Foreign);
        let trying = resp.replace("503 Service Unavailable", "100 Trying");
        assert_eq!(classify(trying.as_bytes()), Inbound::Provisional);
        assert_eq!(classify(b"garbage\r\n\r\n"), Inbound::Foreign);
    }

    #[test]
    fn a_request_of_a_burst_asks_to_be_answered_alone() {
        let mut t = template();
        let mut plain = Vec::new();
        t.write(&mut plain, "127.0.0.1:40000", 1, 7);
        t.answer_each = true;
        let mut each = Vec::new();
        t.write(&mut each, "127.0.0.1:40000", 1, 7);
        parse(&each).unwrap().validate().unwrap();
        let mut out = Vec::new();
        assert_eq!(answer(&plain, &mut out), Some(false));
        assert_eq!(answer(&each, &mut out), Some(true));
    }

    #[test]
    fn the_options_request_is_well_formed_and_its_answer_matches() {
        let mut out = Vec::new();
        options(&mut out, &template(), "127.0.0.3:40000", 42);
        let m = parse(&out).unwrap();
        m.validate().unwrap();
        assert_eq!(m.method(), Some("OPTIONS"));
        assert_eq!(m.cseq().unwrap().number, 1);
        assert_eq!(m.content_length(), Some(0));
        let mut ans = Vec::new();
        assert_eq!(answer(&out, &mut ans), Some(false));
        assert_eq!(
            classify(&ans),
            Inbound::Final {
                status: 200,
                conn: 42,
                seq: 0
            }
        );
        // An echo server sends the request itself back: not a response.
        assert_eq!(classify(&out), Inbound::Foreign);
    }

    #[test]
    fn the_sink_keeps_a_to_tag_and_ignores_ack() {
        let mut wire = Vec::new();
        template().write(&mut wire, "h", 0, 1);
        let tagged = String::from_utf8(wire)
            .unwrap()
            .replace("To: <sip:bob@partner.test>", "To: <sip:bob@partner.test>;tag=t1");
        let mut out = Vec::new();
        assert_eq!(answer(tagged.as_bytes(), &mut out), Some(false));
        assert_eq!(parse(&out).unwrap().to().unwrap().tag(), Some("t1"));
        let ack = tagged.replacen("MESSAGE sip", "ACK sip", 1);
        let mut out = Vec::new();
        assert_eq!(answer(ack.as_bytes(), &mut out), Some(false));
        assert!(out.is_empty());
        assert_eq!(answer(b"not sip", &mut out), None);
    }
}
