//! [`Framer`]: cuts a TCP/TLS byte stream into SIP messages and RFC 5626 keepalives.
//!
//! Lifecycle: the caller keeps the unconsumed bytes of the stream in one buffer and calls
//! [`Framer::poll`] after every read. `NeedMore` keeps the framer's progress (the header section is
//! never rescanned from the start, so a slow sender costs O(n) in total); any other frame tells how many
//! octets to drain from the front of the buffer before the next call. On streams Content-Length is
//! mandatory (RFC 3261 §18.3) and a malformed one is an error, never a silent 0. Head size, header
//! count and body size are capped with distinct errors so the shell can count and answer each.
//!
//! Bytes that can never begin a SIP message are refused as soon as they arrive ([`FrameError::NotSip`]),
//! not after the head limit: a start line must open with a method or `SIP/` (token characters), holds
//! no control octet but HT, and ends within [`MAX_START_LINE`] octets. A TLS ClientHello sent to the
//! plaintext stream (`16 03 ..`), a NUL flood or a scanner's binary probe is therefore closed at its
//! first read.

use crate::parse::Limits;
use crate::scan;

/// What the front of the stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not a whole frame yet: read more and call again with the grown buffer.
    NeedMore,
    /// RFC 5626 keepalive ping (`CRLF CRLF`, 4 octets): answer with a pong.
    Ping,
    /// RFC 5626 keepalive pong (`CRLF`, 2 octets).
    Pong,
    /// A whole message of `len` octets (`head_len` of them header section) at the front.
    Message { len: usize, head_len: usize },
}

impl Frame {
    /// Octets to drain from the buffer for this frame.
    pub fn consumed(&self) -> usize {
        match self {
            Frame::NeedMore => 0,
            Frame::Ping => 4,
            Frame::Pong => 2,
            Frame::Message { len, .. } => *len,
        }
    }
}

/// Why a stream cannot be framed. After any of these the stream's boundaries are lost: answer if
/// possible, then close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("header section larger than {0} octets")]
    HeadTooLarge(usize),
    #[error("more than {0} header lines")]
    TooManyHeaders(usize),
    #[error("Content-Length is required on stream transports")]
    MissingContentLength,
    #[error("Content-Length is not a decimal number")]
    BadContentLength,
    #[error("several Content-Length headers disagree")]
    ConflictingContentLength,
    #[error("body of {0} octets exceeds the limit")]
    BodyTooLarge(u64),
    /// What would be the start line cannot be one (see the module doc); nothing to answer.
    #[error("bytes that cannot begin a SIP message: {0}")]
    NotSip(&'static str),
    /// A message started and did not complete within the shell's bound (`limits.message_timeout_ms`).
    /// The framer never reports it (it has no clock): the shell does, through the same path.
    #[error("message incomplete after {0} ms")]
    Stalled(u64),
}

/// The longest start line accepted: a method or version token, a Request-URI and a version. Lync's
/// longest Request-URIs (GRUUs with `opaque` and `epid` parameters) stay well under 1 KiB.
pub const MAX_START_LINE: usize = 4096;

/// The longest first word of a start line: a method (`SUBSCRIBE` and friends) or `SIP/2.0`.
const MAX_FIRST_WORD: usize = 32;

#[derive(Debug, Clone)]
pub struct Framer {
    limits: Limits,
    /// Whether this end sent pings (a link it dialled): only then is a lone `CRLF` a pong. On links
    /// it accepted the peer pings, so a lone `CRLF` is the first half of a split ping.
    expect_pongs: bool,
    /// Octets already searched for the end of the header section.
    scanned: usize,
    /// `(head_len, total_len)` once the header section is complete.
    found: Option<(usize, usize)>,
    /// Octets of the current start line already checked ([`Framer::check_start_line`]); `None`
    /// once its line feed was seen.
    line_checked: Option<usize>,
}

const HEAD_END: &[u8] = b"\r\n\r\n";

/// The searcher for [`HEAD_END`], built once: `memmem::find` builds one per call, which was ~1.6 %
/// of the edge's CPU under the MESSAGE load (perf: `FinderBuilder::build_forward_with_ranker`).
static HEAD_END_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(HEAD_END));

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Framer {
            limits,
            expect_pongs: false,
            scanned: 0,
            found: None,
            line_checked: Some(0),
        }
    }

    /// A framer for a link this end dialled and pings (RFC 5626 §4.4.1): a lone `CRLF` is a pong.
    pub fn pinging(limits: Limits) -> Self {
        Framer {
            expect_pongs: true,
            ..Framer::new(limits)
        }
    }

    /// Examines the front of `buf` (all unconsumed stream bytes, growing between calls).
    pub fn poll(&mut self, buf: &[u8]) -> Result<Frame, FrameError> {
        if let Some((head_len, len)) = self.found {
            return Ok(self.complete(buf, head_len, len));
        }
        if self.scanned == 0 {
            match buf {
                [b'\r', b'\n', b'\r', b'\n', ..] => return Ok(Frame::Ping),
                [b'\r'] | [b'\r', b'\n', b'\r'] => return Ok(Frame::NeedMore),
                // Alone: a pong where we ping, else the first half of the peer's ping.
                [b'\r', b'\n'] => {
                    return Ok(if self.expect_pongs {
                        Frame::Pong
                    } else {
                        Frame::NeedMore
                    })
                }
                // Followed by something else: a pong, or a stray CRLF before a message (RFC 3261
                // §7.5 says to ignore it); either way two octets to drop.
                [b'\r', b'\n', _, ..] => return Ok(Frame::Pong),
                _ => {}
            }
        }
        self.check_start_line(buf)?;
        let from = self.scanned.saturating_sub(HEAD_END.len() - 1);
        let window = buf.get(from..).unwrap_or(&[]);
        let Some(pos) = HEAD_END_FINDER.find(window) else {
            self.scanned = buf.len();
            if buf.len() > self.limits.max_head_bytes {
                return Err(FrameError::HeadTooLarge(self.limits.max_head_bytes));
            }
            return Ok(Frame::NeedMore);
        };
        let head_len = from + pos + HEAD_END.len();
        if head_len > self.limits.max_head_bytes {
            return Err(FrameError::HeadTooLarge(self.limits.max_head_bytes));
        }
        let body_len = self.content_length(buf.get(..head_len).unwrap_or(&[]))?;
        let len = head_len + body_len;
        self.found = Some((head_len, len));
        Ok(self.complete(buf, head_len, len))
    }

    fn complete(&mut self, buf: &[u8], head_len: usize, len: usize) -> Frame {
        if buf.len() < len {
            return Frame::NeedMore;
        }
        self.scanned = 0;
        self.found = None;
        self.line_checked = Some(0);
        Frame::Message { len, head_len }
    }

    /// Checks the octets of the start line that arrived since the last call (each octet once).
    fn check_start_line(&mut self, buf: &[u8]) -> Result<(), FrameError> {
        let Some(from) = self.line_checked else {
            return Ok(());
        };
        let line_end = memchr::memchr(b'\n', buf);
        let upto = line_end.unwrap_or(buf.len()).min(MAX_START_LINE + 1);
        let first_word = buf
            .iter()
            .take(MAX_FIRST_WORD + 1)
            .position(|&b| b == b' ')
            .unwrap_or(buf.len().min(MAX_FIRST_WORD + 1));
        for (i, &b) in buf.iter().enumerate().take(upto).skip(from) {
            if i == 0 && !scan::is_token(b) {
                return Err(FrameError::NotSip("does not start with a method or SIP version"));
            }
            if i < first_word && !(scan::is_token(b) || b == b'/') {
                return Err(FrameError::NotSip(
                    "the first word is not a method or SIP version",
                ));
            }
            // CR only as the line's end (what follows it is checked when it arrives).
            let cr_ok = b == b'\r' && buf.get(i + 1).is_none_or(|&n| n == b'\n');
            if ((b < 0x20 && b != b'\t') || b == 0x7f) && !cr_ok {
                return Err(FrameError::NotSip("control octet in the start line"));
            }
        }
        if first_word > MAX_FIRST_WORD {
            return Err(FrameError::NotSip("the first word is longer than any method"));
        }
        if line_end.is_none_or(|e| e > MAX_START_LINE) && upto > MAX_START_LINE {
            return Err(FrameError::NotSip(
                "start line longer than any request or status line",
            ));
        }
        // A CR at the very end is re-checked once its successor arrives.
        let checked = if buf.get(upto.wrapping_sub(1)) == Some(&b'\r') {
            upto.saturating_sub(1)
        } else {
            upto
        };
        self.line_checked = if line_end.is_some() { None } else { Some(checked) };
        Ok(())
    }

    /// Finds Content-Length (or `l`) among the header lines and checks the header-line cap.
    fn content_length(&self, head: &[u8]) -> Result<usize, FrameError> {
        let mut lines = 0usize;
        let mut found: Option<u64> = None;
        // Skip the start line; a header line starts after each LF that is not followed by SP/HT.
        let mut pos = memchr::memchr(b'\n', head).map_or(head.len(), |i| i + 1);
        while pos < head.len() {
            let rest = head.get(pos..).unwrap_or(&[]);
            let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
            let line = rest.get(..end).unwrap_or(&[]);
            pos += end;
            if matches!(line.first(), Some(b' ' | b'\t' | b'\r') | None) {
                continue;
            }
            lines += 1;
            if lines > self.limits.max_headers {
                return Err(FrameError::TooManyHeaders(self.limits.max_headers));
            }
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let name = scan::trim_bytes(line.get(..colon).unwrap_or(&[]));
            if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
                continue;
            }
            let value = scan::trim_bytes(line.get(colon + 1..).unwrap_or(&[]));
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(FrameError::BadContentLength);
            }
            let n = scan::parse_decimal(value, 19).unwrap_or(u64::MAX);
            if found.is_some_and(|prev| prev != n) {
                return Err(FrameError::ConflictingContentLength);
            }
            found = Some(n);
        }
        let n = found.ok_or(FrameError::MissingContentLength)?;
        if n > self.limits.max_body_bytes as u64 {
            return Err(FrameError::BodyTooLarge(n));
        }
        Ok(n as usize)
    }
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(Limits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"MESSAGE sip:b@x SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello";

    /// Feeds `stream` in chunks of `step` octets, draining frames as a connection would.
    fn frames(stream: &[u8], step: usize) -> Result<Vec<Frame>, FrameError> {
        let mut framer = Framer::default();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(step) {
            buf.extend_from_slice(chunk);
            loop {
                let f = framer.poll(&buf)?;
                if f == Frame::NeedMore {
                    break;
                }
                buf.drain(..f.consumed());
                out.push(f);
            }
        }
        Ok(out)
    }

    #[test]
    fn messages_and_keepalives_in_any_chunking() {
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(MSG);
        for step in [1, 2, 3, 7, 64, 1000] {
            let f = frames(&stream, step).unwrap();
            let msgs = f.iter().filter(|f| matches!(f, Frame::Message { .. })).count();
            assert_eq!(msgs, 3, "step {step}: {f:?}");
            assert!(f.contains(&Frame::Pong), "step {step}");
            if step >= 4 {
                assert_eq!(f.first(), Some(&Frame::Ping), "step {step}");
            }
        }
        assert_eq!(
            Framer::default().poll(MSG).unwrap(),
            Frame::Message {
                len: MSG.len(),
                head_len: MSG.len() - 5
            }
        );
    }

    #[test]
    fn distinct_errors() {
        let no_cl = b"OPTIONS sip:x SIP/2.0\r\nVia: a\r\n\r\n";
        assert_eq!(
            Framer::default().poll(no_cl),
            Err(FrameError::MissingContentLength)
        );
        let bad = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n";
        assert_eq!(Framer::default().poll(bad), Err(FrameError::BadContentLength));
        let two = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n";
        assert_eq!(
            Framer::default().poll(two),
            Err(FrameError::ConflictingContentLength)
        );
        let big = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert!(matches!(
            Framer::default().poll(big),
            Err(FrameError::BodyTooLarge(_))
        ));

        let limits = Limits {
            max_head_bytes: 64,
            max_headers: 2,
            max_body_bytes: 10,
        };
        let mut f = Framer::new(limits);
        let mut head = b"OPTIONS sip:".to_vec();
        head.resize(65, b'a');
        assert_eq!(f.poll(&head), Err(FrameError::HeadTooLarge(64)));
        let many = b"OPTIONS sip:x SIP/2.0\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert_eq!(Framer::new(limits).poll(many), Err(FrameError::TooManyHeaders(2)));
        let body = b"OPTIONS sip:x SIP/2.0\r\nl: 11\r\n\r\n";
        assert_eq!(Framer::new(limits).poll(body), Err(FrameError::BodyTooLarge(11)));
    }

    #[test]
    fn bytes_that_cannot_begin_a_message_are_refused_at_once() {
        let not_sip = |bytes: &[u8]| matches!(Framer::default().poll(bytes), Err(FrameError::NotSip(_)));
        // A TLS ClientHello record header to the plaintext stream.
        assert!(not_sip(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
        assert!(not_sip(b"\0\0\0\0"));
        assert!(not_sip(b"OPTIONS sip:x\0 SIP/2.0"));
        assert!(not_sip(b"OPTIONS\x01"));
        assert!(not_sip(b"GET / HTTP/1.1\r\x07"));
        assert!(not_sip(b"{\"json\": 1}"));
        assert!(not_sip(&[b'A'; 33]));
        let mut long = b"MESSAGE sip:".to_vec();
        long.resize(MAX_START_LINE + 1, b'a');
        assert!(not_sip(&long));
        // What may still become a message waits for more.
        assert_eq!(Framer::default().poll(b"SIP/2.0 200 O"), Ok(Frame::NeedMore));
        assert_eq!(Framer::default().poll(b"SIP/2.0 200 OK\r"), Ok(Frame::NeedMore));
        assert_eq!(Framer::default().poll(b"INVITE"), Ok(Frame::NeedMore));
        assert_eq!(
            Framer::default().poll(b"SIP/2.0 200 Tab\there"),
            Ok(Frame::NeedMore)
        );
        long.truncate(MAX_START_LINE - 20);
        assert_eq!(Framer::default().poll(&long), Ok(Frame::NeedMore));
        // Fed one octet at a time, a binary probe fails at its first octet, and one in the
        // middle of the line when it gets there; the second message after a good one too.
        let mut f = Framer::default();
        let mut buf = b"OPTIONS sip:x".to_vec();
        assert_eq!(f.poll(&buf), Ok(Frame::NeedMore));
        buf.push(b'\r');
        assert_eq!(f.poll(&buf), Ok(Frame::NeedMore));
        buf.push(0);
        assert!(matches!(f.poll(&buf), Err(FrameError::NotSip(_))));
        let mut f = Framer::default();
        let mut two = MSG.to_vec();
        two.extend_from_slice(&[0x16, 0x03]);
        assert!(matches!(f.poll(&two), Ok(Frame::Message { .. })));
        assert!(matches!(f.poll(&two[MSG.len()..]), Err(FrameError::NotSip(_))));
    }

    #[test]
    fn slow_sender_is_not_rescanned() {
        let mut f = Framer::default();
        let mut buf = Vec::new();
        for &b in MSG.iter().take(MSG.len() - 1) {
            buf.push(b);
            assert_eq!(f.poll(&buf).unwrap(), Frame::NeedMore);
        }
        buf.push(*MSG.last().unwrap());
        assert!(matches!(f.poll(&buf).unwrap(), Frame::Message { .. }));
        // A CRLF split across the end of one read and the start of the next is still found.
        assert!(f.scanned == 0 && f.found.is_none());
    }

    #[test]
    fn keepalive_edge_cases() {
        let mut f = Framer::pinging(Limits::default());
        assert_eq!(f.poll(b"\r"), Ok(Frame::NeedMore));
        assert_eq!(f.poll(b"\r\n"), Ok(Frame::Pong));
        // Where the peer pings, a ping split in two reads is still one ping.
        let mut accepted = Framer::default();
        assert_eq!(accepted.poll(b"\r\n"), Ok(Frame::NeedMore));
        assert_eq!(accepted.poll(b"\r\n\r\n"), Ok(Frame::Ping));
        assert_eq!(f.poll(b"\r\n\r"), Ok(Frame::NeedMore));
        assert_eq!(f.poll(b"\r\n\r\n"), Ok(Frame::Ping));
        assert_eq!(f.poll(b"\r\nINV"), Ok(Frame::Pong));
        assert_eq!(f.poll(b""), Ok(Frame::NeedMore));
    }
}
