//! A message kept past its parse: a proxy stores each request it answers later (a generated final
//! response, the route after a DNS answer, a retried push, a subscription's dialog) and reads it
//! again then. [`Kept`] holds the bytes and the parse's result as offsets, so [`Kept::message`]
//! gives the [`Message`] back without scanning the bytes a second time.

use std::ops::Range;

use crate::header::{Header, HeaderName};
use crate::message::{Message, StartLine, Version};
use crate::parse::HeaderBuf;

/// A parsed message and its bytes, owned. Empty ([`Kept::default`]) until [`Kept::refill`]; its header
/// index is kept across refills, so a pool of `Kept`s allocates nothing once warm.
#[derive(Debug, Default)]
pub struct Kept {
    bytes: Vec<u8>,
    headers: Vec<HeaderAt>,
    index: Option<Index>,
}

/// Where the parts of the message are in `Kept::bytes`.
#[derive(Debug, Clone)]
struct Index {
    start_offset: usize,
    start: StartAt,
    headers_end: usize,
    head_end: usize,
    content_length: Option<usize>,
    max_forwards: Option<u8>,
    cseq: Option<(u32, Range<usize>)>,
}

#[derive(Debug, Clone)]
enum StartAt {
    Request {
        method: Range<usize>,
        uri: Range<usize>,
        version: Version,
    },
    Response {
        version: Version,
        status: u16,
        reason: Range<usize>,
    },
}

#[derive(Debug, Clone)]
struct HeaderAt {
    name: HeaderName,
    raw_name: Range<usize>,
    raw_value: Range<usize>,
    line_start: u32,
    line_end: u32,
    value_start: u32,
    folded: bool,
}

/// Header index entries an emptied `Kept` keeps room for (a SIP request has 10–30 headers).
const KEPT_HEADERS: usize = 32;

/// Where `part` lies in `buf` (every slice of a `Message` is a slice of its buffer; anything else
/// maps to an empty range, which reads back as empty).
fn at(buf: &[u8], part: &[u8]) -> Range<usize> {
    let base = buf.as_ptr() as usize;
    let start = (part.as_ptr() as usize).wrapping_sub(base);
    match start.checked_add(part.len()) {
        Some(end) if end <= buf.len() => start..end,
        _ => 0..0,
    }
}

impl Kept {
    /// A `Kept` of `msg`, its bytes copied into `bytes` (whose contents are replaced).
    pub fn new(msg: &Message<'_>, bytes: Vec<u8>) -> Kept {
        let mut kept = Kept {
            bytes,
            headers: Vec::new(),
            index: None,
        };
        kept.fill(msg);
        kept
    }

    /// Keeps `msg` instead of what was kept, in `bytes` (a caller that pools byte buffers by size
    /// chooses the buffer; the one this `Kept` had is dropped: give it back first with
    /// [`Kept::take_bytes`]).
    pub fn refill(&mut self, msg: &Message<'_>, bytes: Vec<u8>) {
        self.bytes = bytes;
        self.fill(msg);
    }

    /// Empties it and hands out its byte buffer. The header index's storage stays for the next
    /// message, up to [`KEPT_HEADERS`] entries: one request with hundreds of headers does not
    /// leave a large index in a pool for good.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        self.headers.clear();
        self.headers.shrink_to(KEPT_HEADERS);
        self.index = None;
        std::mem::take(&mut self.bytes)
    }

    /// Keeps `msg`: its bytes are copied into this `Kept`'s buffer and its parse recorded.
    fn fill(&mut self, msg: &Message<'_>) {
        // What follows the message in its input (a datagram's trailing bytes) is not kept.
        let buf = msg.buf.get(..msg.end).unwrap_or(msg.buf);
        self.bytes.clear();
        self.bytes.extend_from_slice(buf);
        self.headers.clear();
        self.headers.extend(msg.headers.iter().map(|h| HeaderAt {
            name: h.name,
            raw_name: at(buf, h.raw_name),
            raw_value: at(buf, h.raw_value),
            line_start: h.line_start,
            line_end: h.line_end,
            value_start: h.value_start,
            folded: h.folded,
        }));
        let start = match msg.start {
            StartLine::Request { method, uri, version } => StartAt::Request {
                method: at(buf, method.as_bytes()),
                uri: at(buf, uri.as_bytes()),
                version,
            },
            StartLine::Response {
                version,
                status,
                reason,
            } => StartAt::Response {
                version,
                status,
                reason: at(buf, reason),
            },
        };
        self.index = Some(Index {
            start_offset: msg.start_offset,
            start,
            headers_end: msg.headers_end,
            head_end: msg.head_end,
            content_length: msg.content_length,
            max_forwards: msg.max_forwards,
            cseq: msg.cseq.map(|(n, m)| (n, at(buf, m.as_bytes()))),
        });
    }

    /// The raw values of every `name` header, in order, read off the index (no `Message` built:
    /// what a proxy needs of a stored request on a hot path, e.g. its Via headers).
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| self.bytes.get(h.raw_value.clone()).unwrap_or(&[]))
    }

    /// The message as it was parsed, its header table in a fresh vector; `None` when empty.
    pub fn message(&self) -> Option<Message<'_>> {
        self.message_reusing(&mut HeaderBuf::default())
    }

    /// As [`Kept::message`], the header table taken from `storage` (give it back with
    /// [`Message::into_header_buf`]).
    pub fn message_reusing(&self, storage: &mut HeaderBuf) -> Option<Message<'_>> {
        let index = self.index.as_ref()?;
        let buf = self.bytes.as_slice();
        let bytes = |r: &Range<usize>| buf.get(r.clone()).unwrap_or(&[]);
        // The ranges were cut at the boundaries of `&str`s of these same bytes.
        let text = |r: &Range<usize>| std::str::from_utf8(bytes(r)).unwrap_or("");
        let mut headers: Vec<Header<'_>> = storage.take();
        headers.extend(self.headers.iter().map(|h| Header {
            name: h.name,
            raw_name: bytes(&h.raw_name),
            raw_value: bytes(&h.raw_value),
            line_start: h.line_start,
            line_end: h.line_end,
            value_start: h.value_start,
            folded: h.folded,
        }));
        let start = match &index.start {
            StartAt::Request { method, uri, version } => StartLine::Request {
                method: text(method),
                uri: text(uri),
                version: *version,
            },
            StartAt::Response {
                version,
                status,
                reason,
            } => StartLine::Response {
                version: *version,
                status: *status,
                reason: bytes(reason),
            },
        };
        Some(Message {
            buf,
            start_offset: index.start_offset,
            start,
            headers,
            headers_end: index.headers_end,
            head_end: index.head_end,
            end: buf.len(),
            content_length: index.content_length,
            max_forwards: index.max_forwards,
            cseq: index.cseq.as_ref().map(|(n, m)| (*n, text(m))),
            memo: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, Editor};

    const INVITE: &[u8] = b"\r\nINVITE sip:bob@partner.example SIP/2.0\r\n\
        Via: SIP/2.0/TLS fe1.corp.example;branch=z9hG4bK-1\r\n\
        Max-Forwards: 69\r\n\
        From: <sip:alice@corp.example>;tag=a1\r\n\
        To: <sip:bob@partner.example>\r\n\
        Subject: folded\r\n  over two lines\r\n\
        Call-ID: c1@corp.example\r\n\
        CSeq: 7 INVITE\r\n\
        Content-Length: 4\r\n\r\nbody";

    /// Everything a later step reads of a message is the same from the keep as from a parse.
    fn same(a: &Message<'_>, b: &Message<'_>) {
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_eq!(a.start_line(), b.start_line());
        assert_eq!(a.headers(), b.headers());
        assert_eq!(a.body(), b.body());
        assert_eq!(a.content_length(), b.content_length());
        assert_eq!(a.max_forwards(), b.max_forwards());
        assert_eq!(a.cseq(), b.cseq());
        assert_eq!(a.call_id(), b.call_id());
        let branch = |m: &Message<'_>| m.top_via().ok().and_then(|v| v.branch().map(str::to_owned));
        assert_eq!(branch(a), branch(b));
    }

    /// A stored request's Via headers, read off the keep and put back into a response with
    /// `Editor::prepend_via_raw`, come out as they were sent, in order (folded or several to a line).
    #[test]
    fn stored_via_lines_go_back_into_a_response_unchanged() {
        let req = b"MESSAGE sip:b@p.example SIP/2.0\r\nVia: SIP/2.0/TLS a.example;branch=z9hG4bK1\r\n\
            Max-Forwards: 70\r\nVia: SIP/2.0/TLS b.example;branch=z9hG4bK2,\r\n SIP/2.0/TLS c.example;branch=z9hG4bK3\r\n\
            From: <sip:a@c.example>;tag=1\r\nTo: <sip:b@p.example>\r\nCall-ID: v1\r\nCSeq: 1 MESSAGE\r\n\
            Content-Length: 0\r\n\r\n";
        let parsed = parse(req).unwrap();
        let kept = Kept::new(&parsed, Vec::new());
        let vias: Vec<&[u8]> = kept.values(HeaderName::Via).collect();
        assert_eq!(
            vias,
            [
                b"SIP/2.0/TLS a.example;branch=z9hG4bK1".as_slice(),
                b"SIP/2.0/TLS b.example;branch=z9hG4bK2,\r\n SIP/2.0/TLS c.example;branch=z9hG4bK3"
                    .as_slice()
            ]
        );
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS edge.example;branch=z9hG4bKse1\r\n\
            From: <sip:a@c.example>;tag=1\r\nTo: <sip:b@p.example>;tag=2\r\nCall-ID: v1\r\nCSeq: 1 MESSAGE\r\n\
            Content-Length: 0\r\n\r\n";
        let r = parse(resp).unwrap();
        let mut ed = Editor::new(&r);
        ed.remove_header(HeaderName::Via);
        for v in kept.values(HeaderName::Via) {
            ed.prepend_via_raw(v);
        }
        let out = ed.to_vec();
        let back = parse(&out).unwrap();
        let branches: Vec<String> = back
            .vias()
            .map(|v| v.unwrap().branch().unwrap().to_owned())
            .collect();
        assert_eq!(
            branches,
            ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"],
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert!(back.check().is_ok());
    }

    #[test]
    fn a_kept_request_reads_back_as_parsed() {
        let parsed = parse(INVITE).unwrap();
        let kept = Kept::new(&parsed, Vec::new());
        let back = kept.message().unwrap();
        same(&parsed, &back);
        assert_eq!(
            back.header(HeaderName::Subject).unwrap().unfolded().as_ref(),
            b"folded over two lines"
        );
        back.check().unwrap();
    }

    #[test]
    fn a_kept_response_reads_back_as_parsed() {
        let raw = b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/TLS a.example;branch=z9hG4bK-2\r\n\
            From: <sip:a@a.example>;tag=1\r\nTo: <sip:b@b.example>;tag=2\r\nCall-ID: x\r\n\
            CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let parsed = parse(raw).unwrap();
        let kept = Kept::new(&parsed, Vec::new());
        same(&parsed, &kept.message().unwrap());
        assert_eq!(kept.message().unwrap().status(), Some(486));
    }

    #[test]
    fn the_editor_works_on_a_kept_message_as_on_a_parsed_one() {
        let parsed = parse(INVITE).unwrap();
        let kept = Kept::new(&parsed, Vec::new());
        let back = kept.message().unwrap();
        let edit = |m: &Message<'_>| {
            let mut e = Editor::new(m);
            e.remove_top_via().decrement_max_forwards();
            e.to_vec()
        };
        assert_eq!(edit(&parsed), edit(&back));
    }

    #[test]
    fn refilled_it_forgets_the_old_message_and_gives_its_bytes_back() {
        let mut kept = Kept::default();
        assert!(kept.message().is_none());
        kept.refill(&parse(INVITE).unwrap(), Vec::new());
        same(&parse(INVITE).unwrap(), &kept.message().unwrap());
        let short = b"OPTIONS sip:x.example SIP/2.0\r\nVia: SIP/2.0/TLS a;branch=z9hG4bK-3\r\n\
            From: <sip:a@a>;tag=1\r\nTo: <sip:x.example>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\n\
            Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        kept.refill(&parse(short).unwrap(), Vec::with_capacity(4096));
        same(&parse(short).unwrap(), &kept.message().unwrap());
        let bytes = kept.take_bytes();
        assert_eq!((bytes.as_slice(), bytes.capacity()), (&short[..], 4096));
        assert!(kept.message().is_none());
    }

    #[test]
    fn an_emptied_keep_holds_a_bounded_index() {
        let many: String = (0..90).map(|i| format!("X-H{i}: v\r\n")).collect();
        let text =
            String::from_utf8(INVITE.to_vec())
                .unwrap()
                .replacen("Call-ID", &format!("{many}Call-ID"), 1);
        let mut kept = Kept::new(&parse(text.as_bytes()).unwrap(), Vec::new());
        assert!(kept.headers.capacity() >= 90);
        let _ = kept.take_bytes();
        assert!(
            kept.headers.capacity() <= KEPT_HEADERS,
            "{}",
            kept.headers.capacity()
        );
        kept.refill(&parse(INVITE).unwrap(), Vec::new());
        same(&parse(INVITE).unwrap(), &kept.message().unwrap());
    }

    #[test]
    fn reusing_a_header_table_gives_the_same_message() {
        let parsed = parse(INVITE).unwrap();
        let kept = Kept::new(&parsed, Vec::new());
        let mut storage = HeaderBuf::default();
        for _ in 0..3 {
            let back = kept.message_reusing(&mut storage).unwrap();
            same(&parsed, &back);
            storage = back.into_header_buf();
        }
    }
}
