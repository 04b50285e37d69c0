//! [`Editor`]: what a proxy changes in a message it forwards (RFC 3261 §16.6), expressed as span edits
//! over the original buffer — insert before, remove, replace — never a re-render. The output is a list
//! of segments (original slices and a small arena of new bytes), handed to vectored I/O as `IoSlice`s
//! or copied into one buffer. The body is never touched, so Content-Length stays right.
//!
//! Overlapping edits resolve in order of position: a later edit never re-emits bytes an earlier one
//! removed.
//!
//! A proxy edits every message it forwards: [`EditBuf`] keeps the edit list and the arena between
//! messages ([`Editor::with_buf`], [`Editor::into_buf`]), and the output is walked in place, so an
//! edit allocates nothing once the buffers have grown to the messages' size.

use std::io::IoSlice;
use std::ops::Range;

use crate::header::HeaderName;
use crate::message::Message;
use crate::scan;

#[derive(Debug, Clone)]
struct Edit {
    /// Original bytes `start..end` are replaced by `arena[data]`.
    start: usize,
    end: usize,
    data: Range<usize>,
}

/// A set of edits against one parsed message.
#[derive(Debug)]
pub struct Editor<'m, 'a> {
    msg: &'m Message<'a>,
    edits: Vec<Edit>,
    arena: Vec<u8>,
}

/// The storage of an [`Editor`], kept between messages so that editing allocates nothing once it
/// has grown (empty when handed back by [`Editor::into_buf`]).
#[derive(Debug, Default)]
pub struct EditBuf {
    edits: Vec<Edit>,
    arena: Vec<u8>,
}

/// What `decrement_max_forwards` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxForwards {
    /// The value now written.
    Forward(u8),
    /// It was already 0: the proxy must answer 483 (Too Many Hops) instead of forwarding.
    Exhausted,
}

impl<'m, 'a> Editor<'m, 'a> {
    pub fn new(msg: &'m Message<'a>) -> Self {
        Editor::with_buf(
            msg,
            EditBuf {
                edits: Vec::with_capacity(8),
                arena: Vec::with_capacity(256),
            },
        )
    }

    /// An editor over `msg` that uses `buf`'s storage (see [`Editor::into_buf`]).
    pub fn with_buf(msg: &'m Message<'a>, mut buf: EditBuf) -> Self {
        buf.edits.clear();
        buf.arena.clear();
        Editor {
            msg,
            edits: buf.edits,
            arena: buf.arena,
        }
    }

    /// The storage back, emptied, for the next message's editor.
    pub fn into_buf(mut self) -> EditBuf {
        self.edits.clear();
        self.arena.clear();
        EditBuf {
            edits: self.edits,
            arena: self.arena,
        }
    }

    /// Where new top-of-message headers go: the first header line (or the blank line if none).
    fn first_header_pos(&self) -> usize {
        self.msg
            .headers
            .first()
            .map_or(self.msg.headers_end, |h| h.line_start as usize)
    }

    fn push<'p>(&mut self, start: usize, end: usize, parts: impl IntoIterator<Item = &'p [u8]>) {
        let from = self.arena.len();
        for p in parts {
            self.arena.extend_from_slice(p);
        }
        self.edits.push(Edit {
            start,
            end,
            data: from..self.arena.len(),
        });
    }

    /// Original bytes `start..end` dropped from the output.
    fn remove_span(&mut self, start: usize, end: usize) {
        self.push(start, end, std::iter::empty());
    }

    /// `name: <value>` as a new line at `at`, the value given in parts (written one after the other:
    /// no string is built for it).
    fn insert_line(&mut self, at: usize, name: &str, value: &[&str]) {
        let head = [name.as_bytes(), b": "];
        let parts = head
            .into_iter()
            .chain(value.iter().map(|p| p.as_bytes()))
            .chain([b"\r\n".as_slice()]);
        self.push(at, at, parts);
    }

    /// Inserts `Via: <value>` above every other header (the proxy's own Via, RFC 3261 §16.6 step 8).
    pub fn prepend_via(&mut self, value: &str) -> &mut Self {
        self.prepend_via_parts(&[value])
    }

    /// [`Editor::prepend_via`] with the value given in parts (written one after the other, no
    /// string built for it).
    pub fn prepend_via_parts(&mut self, value: &[&str]) -> &mut Self {
        let at = self.first_header_pos();
        self.insert_line(at, "Via", value);
        self
    }

    /// Inserts `Via: <value>` above every other header, the value as raw bytes (a Via line of
    /// another message of the same transaction, put back as it was). Calls at the same place come
    /// out in the order made.
    pub fn prepend_via_raw(&mut self, value: &[u8]) -> &mut Self {
        let at = self.first_header_pos();
        self.push(at, at, [b"Via: ".as_slice(), value, b"\r\n".as_slice()]);
        self
    }

    /// Replaces the Request-URI of a request (a proxy restoring a target it rewrote); a response
    /// is left as it is.
    pub fn set_request_uri(&mut self, uri: &str) -> &mut Self {
        if let crate::message::StartLine::Request { uri: old, .. } = self.msg.start {
            let base = self.msg.buf.as_ptr() as usize;
            let start = (old.as_ptr() as usize).wrapping_sub(base);
            if start
                .checked_add(old.len())
                .is_some_and(|end| end <= self.msg.buf.len())
            {
                self.push(start, start + old.len(), [uri.as_bytes()]);
            }
        }
        self
    }

    /// Inserts `Record-Route: <value>` above the existing Record-Route values (§16.6 step 4).
    pub fn add_record_route(&mut self, value: &str) -> &mut Self {
        self.add_record_route_parts(&[value])
    }

    /// [`Editor::add_record_route`] with the value given in parts.
    pub fn add_record_route_parts(&mut self, value: &[&str]) -> &mut Self {
        let at = self
            .msg
            .header(HeaderName::RecordRoute)
            .map_or_else(|| self.first_header_pos(), |h| h.line_start as usize);
        self.insert_line(at, "Record-Route", value);
        self
    }

    /// Removes the first value of a list header (the top Via of a response, our own Route):
    /// the whole line when it holds one value, else just that value and its comma.
    pub fn remove_first_value(&mut self, name: HeaderName) -> &mut Self {
        let Some(h) = self.msg.header(name) else {
            return self;
        };
        let v = h.raw_value;
        match scan::find_unquoted(v, b',') {
            Some(comma) if name.is_list() => {
                let after = v.get(comma + 1..).unwrap_or(&[]);
                let skip = after.iter().take_while(|&&b| scan::is_lws(b)).count();
                let start = h.value_start as usize;
                self.remove_span(start, start + comma + 1 + skip);
            }
            _ => self.remove_span(h.line_start as usize, h.line_end as usize),
        }
        self
    }

    /// Removes the first `n` values of a list header across its lines (our own double Route entries,
    /// RFC 5658): whole lines when all their values go, else the leading values and their commas.
    pub fn remove_values(&mut self, name: HeaderName, n: usize) -> &mut Self {
        let mut left = n;
        // The message is borrowed apart from `self`: its header table is walked as edits are made.
        let msg = self.msg;
        for h in msg.headers.iter().filter(|h| h.name == name) {
            if left == 0 {
                break;
            }
            let (line_start, line_end) = (h.line_start as usize, h.line_end as usize);
            let (value_start, value) = (h.value_start as usize, h.raw_value);
            // Offsets (within the value) where each value after the first starts.
            let mut cut = 0;
            let mut removed = 0;
            while removed < left {
                let Some(comma) = value.get(cut..).and_then(|v| scan::find_unquoted(v, b',')) else {
                    break;
                };
                cut += comma + 1;
                cut += value
                    .get(cut..)
                    .map_or(0, |v| v.iter().take_while(|&&b| scan::is_lws(b)).count());
                removed += 1;
            }
            if removed < left {
                // Every value of this line goes.
                self.remove_span(line_start, line_end);
                left -= removed + 1;
            } else {
                self.remove_span(value_start, value_start + cut);
                left = 0;
            }
        }
        self
    }

    pub fn remove_top_via(&mut self) -> &mut Self {
        self.remove_first_value(HeaderName::Via)
    }

    /// §16.6 step 3: decrement, or add `Max-Forwards: 70` when absent; 0 means do not forward.
    pub fn decrement_max_forwards(&mut self) -> MaxForwards {
        match (self.msg.max_forwards(), self.msg.header(HeaderName::MaxForwards)) {
            (Some(0), _) => MaxForwards::Exhausted,
            (Some(n), Some(h)) => {
                let new = n - 1;
                let start = h.value_start as usize;
                let mut digits = [0u8; 3];
                let text = u8_decimal(new, &mut digits);
                self.push(start, start + h.raw_value.len(), [text]);
                MaxForwards::Forward(new)
            }
            _ => {
                let at = self.first_header_pos();
                self.insert_line(at, "Max-Forwards", &["70"]);
                MaxForwards::Forward(70)
            }
        }
    }

    /// Removes every line of `name`.
    pub fn remove_header(&mut self, name: HeaderName) -> &mut Self {
        let msg = self.msg;
        for r in msg
            .headers
            .iter()
            .filter(|h| h.name == name)
            .map(|h| h.line_range())
        {
            self.remove_span(r.start, r.end);
        }
        self
    }

    /// Appends `name: value` after the last header.
    pub fn append_header(&mut self, name: &str, value: &str) -> &mut Self {
        let at = self.msg.headers_end;
        self.insert_line(at, name, &[value]);
        self
    }

    /// Replaces every line of `name` with one `name: value` line (where the first one stood), or
    /// appends it when absent.
    pub fn set_header(&mut self, name: HeaderName, value: &str) -> &mut Self {
        let text = name.as_str().unwrap_or("X-Unknown");
        let lines: Vec<Range<usize>> = self
            .msg
            .headers
            .iter()
            .filter(|h| h.name == name)
            .map(|h| h.line_range())
            .collect();
        let Some((first, rest)) = lines.split_first() else {
            return self.append_header(text, value);
        };
        self.push(
            first.start,
            first.end,
            [text.as_bytes(), b": ", value.as_bytes(), b"\r\n"],
        );
        for r in rest {
            self.remove_span(r.start, r.end);
        }
        self
    }

    /// The edited message as ordered slices, ready for `write_vectored`.
    pub fn io_slices(&mut self) -> Vec<IoSlice<'_>> {
        self.order();
        let mut out = Vec::with_capacity(self.edits.len() * 2 + 1);
        self.each_segment(|s| out.push(IoSlice::new(s)));
        out
    }

    /// The edited message's length in octets.
    pub fn len(&mut self) -> usize {
        self.order();
        let mut n = 0;
        self.each_segment(|s| n += s.len());
        n
    }

    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Appends the edited message to `out`: sized in one walk over the segments, copied in a second,
    /// with no allocation beyond `out`'s own growth.
    pub fn write_to(&mut self, out: &mut Vec<u8>) {
        self.order();
        let mut n = 0;
        self.each_segment(|s| n += s.len());
        out.reserve(n);
        self.each_segment(|s| out.extend_from_slice(s));
    }

    pub fn to_vec(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }

    /// Puts the edits in output order. The sort is stable, so edits at one position come out in the
    /// order they were made (and a handful of edits sorts on the stack).
    fn order(&mut self) {
        self.edits.sort_by_key(|e| e.start);
    }

    /// Calls `f` with the original slices and new bytes in output order (after [`Editor::order`]),
    /// skipping empty ones.
    fn each_segment<'s>(&'s self, mut f: impl FnMut(&'s [u8])) {
        let mut emit = |s: &'s [u8]| {
            if !s.is_empty() {
                f(s);
            }
        };
        let mut cursor = self.msg.start_offset;
        for e in &self.edits {
            let start = e.start.max(cursor);
            if start > cursor {
                emit(self.msg.span(cursor..start));
            }
            emit(self.arena.get(e.data.clone()).unwrap_or(&[]));
            cursor = cursor.max(e.end);
        }
        emit(self.msg.span(cursor..self.msg.end));
    }
}

fn u8_decimal(n: u8, buf: &mut [u8; 3]) -> &[u8] {
    let digits = [n / 100, (n / 10) % 10, n % 10];
    let skip = if n >= 100 {
        0
    } else if n >= 10 {
        1
    } else {
        2
    };
    for (d, slot) in digits.iter().zip(buf.iter_mut()) {
        *slot = b'0' + d;
    }
    buf.get(skip..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_request_uri_is_replaced_in_place() {
        let req = b"BYE sip:alice@edge.example:5061;transport=tls;sc=xyz SIP/2.0\r\nVia: SIP/2.0/TLS p.example;branch=z9hG4bK1\r\n\
            From: <sip:b@p.example>;tag=1\r\nTo: <sip:a@c.example>;tag=2\r\nCall-ID: r1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
        let m = crate::parse(req).unwrap();
        let mut ed = Editor::new(&m);
        ed.set_request_uri("sip:alice@fe1.corp.example:5061;transport=tls");
        let out = ed.to_vec();
        let back = crate::parse(&out).unwrap();
        assert_eq!(
            back.request_uri(),
            Some("sip:alice@fe1.corp.example:5061;transport=tls")
        );
        assert_eq!(back.headers().len(), m.headers().len());
        let resp = crate::parse(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS p.example;branch=z9hG4bK1\r\nFrom: <sip:b@p.example>;tag=1\r\nTo: <sip:a@c.example>;tag=2\r\nCall-ID: r1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut ed = Editor::new(&resp);
        ed.set_request_uri("sip:x@y");
        assert_eq!(ed.to_vec(), resp.as_bytes(), "a response has no Request-URI");
    }

    use super::*;
    use crate::parse;

    const REQ: &[u8] = b"MESSAGE sip:bob@partner.example SIP/2.0\r\n\
Via: SIP/2.0/TLS fe1.corp.example:5061;branch=z9hG4bKfe1, SIP/2.0/TLS app.corp.example;branch=z9hG4bKapp\r\n\
Route: <sip:edge.corp.example;lr>\r\n\
Max-Forwards: 10\r\n\
From: <sip:alice@corp.example>;tag=a1\r\n\
To: <sip:bob@partner.example>\r\n\
Call-ID: c1\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Length: 2\r\n\
\r\n\
hi";

    #[test]
    fn proxy_edits_keep_everything_else_byte_identical() {
        let msg = parse(REQ).unwrap();
        let mut ed = Editor::new(&msg);
        ed.prepend_via("SIP/2.0/TLS edge.corp.example:5061;branch=z9hG4bKedge1");
        ed.add_record_route("<sip:edge.corp.example:5061;transport=tls;lr>");
        ed.remove_first_value(HeaderName::Route);
        assert_eq!(ed.decrement_max_forwards(), MaxForwards::Forward(9));
        let out = ed.to_vec();
        assert_eq!(out.len(), ed.len());
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with(
            "MESSAGE sip:bob@partner.example SIP/2.0\r\n\
Via: SIP/2.0/TLS edge.corp.example:5061;branch=z9hG4bKedge1\r\n\
Record-Route: <sip:edge.corp.example:5061;transport=tls;lr>\r\n\
Via: SIP/2.0/TLS fe1"
        ));
        assert!(!text.contains("Route: <sip:edge.corp.example;lr>"));
        assert!(text.contains("\r\nMax-Forwards: 9\r\n"));
        let again = parse(&out).unwrap();
        assert_eq!(again.vias().count(), 3);
        assert_eq!(again.max_forwards(), Some(9));
        assert_eq!(again.body(), b"hi");
        let slices = ed.io_slices();
        assert_eq!(slices.iter().map(|s| s.len()).sum::<usize>(), out.len());
    }

    #[test]
    fn remove_top_via_from_a_comma_list_and_a_single_line() {
        let msg = parse(REQ).unwrap();
        let out = Editor::new(&msg).remove_top_via().to_vec();
        let again = parse(&out).unwrap();
        let vias: Vec<_> = again.vias().map(|v| v.unwrap().host).collect();
        assert_eq!(vias, ["app.corp.example"]);
        let out2 = Editor::new(&again).remove_top_via().to_vec();
        let third = parse(&out2).unwrap();
        assert_eq!(third.vias().count(), 0);
        assert_eq!(third.headers().len(), again.headers().len() - 1);
    }

    #[test]
    fn max_forwards_zero_and_absent() {
        let zero = String::from_utf8(REQ.to_vec())
            .unwrap()
            .replace("Max-Forwards: 10", "Max-Forwards: 0");
        let msg = parse(zero.as_bytes()).unwrap();
        assert_eq!(Editor::new(&msg).decrement_max_forwards(), MaxForwards::Exhausted);
        let none = String::from_utf8(REQ.to_vec())
            .unwrap()
            .replace("Max-Forwards: 10\r\n", "");
        let msg = parse(none.as_bytes()).unwrap();
        let mut ed = Editor::new(&msg);
        assert_eq!(ed.decrement_max_forwards(), MaxForwards::Forward(70));
        assert_eq!(parse(&ed.to_vec()).unwrap().max_forwards(), Some(70));
        let mut buf = [0; 3];
        assert_eq!(u8_decimal(0, &mut buf), b"0");
        assert_eq!(u8_decimal(9, &mut buf), b"9");
        assert_eq!(u8_decimal(69, &mut buf), b"69");
        assert_eq!(u8_decimal(254, &mut buf), b"254");
    }

    #[test]
    fn set_append_and_remove_headers() {
        let msg = parse(REQ).unwrap();
        let out = Editor::new(&msg)
            .set_header(HeaderName::CallId, "replaced")
            .append_header("ms-diagnostics", "1008;reason=\"x\"")
            .remove_header(HeaderName::Route)
            .set_header(HeaderName::Subject, "new")
            .to_vec();
        let m = parse(&out).unwrap();
        assert_eq!(m.call_id().unwrap(), "replaced");
        assert_eq!(m.ms_diagnostics().unwrap().id, 1008);
        assert!(m.header(HeaderName::Route).is_none());
        assert_eq!(m.header(HeaderName::Subject).unwrap().raw_value, b"new");
        assert_eq!(m.body(), b"hi");
    }

    #[test]
    fn remove_several_values_across_lines() {
        let text = "OPTIONS sip:b@x SIP/2.0\r\nRoute: <sip:a;lr>, <sip:b;lr>\r\nRoute: <sip:c;lr>, <sip:d;lr>\r\nl: 0\r\n\r\n";
        let msg = parse(text.as_bytes()).unwrap();
        let routes = |n: usize| {
            let out = Editor::new(&msg).remove_values(HeaderName::Route, n).to_vec();
            let m = parse(&out).unwrap();
            m.routes().map(|r| r.unwrap().uri.to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(routes(0), ["sip:a;lr", "sip:b;lr", "sip:c;lr", "sip:d;lr"]);
        assert_eq!(routes(1), ["sip:b;lr", "sip:c;lr", "sip:d;lr"]);
        assert_eq!(routes(2), ["sip:c;lr", "sip:d;lr"]);
        assert_eq!(routes(3), ["sip:d;lr"]);
        assert_eq!(routes(4), Vec::<String>::new());
        assert_eq!(routes(9), Vec::<String>::new());
    }

    #[test]
    fn value_offsets_skip_a_stray_cr() {
        // Found by the roundtrip fuzzer: a bare CR before the value made the edit land one octet early.
        let msg = parse(b"OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards:\r3 \r\nl: 0\r\n\r\n").unwrap();
        let h = msg.header(HeaderName::MaxForwards).unwrap();
        assert_eq!(h.raw_value, b"3");
        assert_eq!(msg.as_bytes().get(h.value_offset()), Some(&b'3'));
        let mut ed = Editor::new(&msg);
        assert_eq!(ed.decrement_max_forwards(), MaxForwards::Forward(2));
        assert_eq!(parse(&ed.to_vec()).unwrap().max_forwards(), Some(2));
        // The same on a folded value with stray CRs at both ends of its continuation.
        let msg = parse(b"OPTIONS sip:a@b SIP/2.0\r\nSubject:\r\n \rnew \r\nl: 0\r\n\r\n").unwrap();
        let h = msg.header(HeaderName::Subject).unwrap();
        assert_eq!(h.raw_value, b"new");
        assert_eq!(
            msg.as_bytes().get(h.value_offset()..h.value_offset() + 3),
            Some(&b"new"[..])
        );
    }

    #[test]
    fn overlapping_edits_do_not_duplicate_bytes() {
        let msg = parse(REQ).unwrap();
        let out = Editor::new(&msg)
            .remove_top_via()
            .remove_header(HeaderName::Via)
            .to_vec();
        let m = parse(&out).unwrap();
        assert_eq!(m.vias().count(), 0);
        assert_eq!(m.headers().len(), msg.headers().len() - 1);
    }
}
