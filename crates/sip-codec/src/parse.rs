//! The message parser: bytes → [`Message`]. One pass over the header section, line by line (memchr for
//! line ends and colons), classifying each name once; scalars the framing depends on (Content-Length,
//! CSeq, Max-Forwards) are checked here, every other value is parsed lazily by its accessor.
//!
//! Input is one message as a datagram carries it: leading CRLFs are skipped (RFC 3261 §7.5); without
//! Content-Length the body is the rest of the input; bytes after a Content-Length body are not part of
//! the message. Bare LF line ends are tolerated. Stream framing is `framer.rs`'s job.

use crate::error::{ErrorKind, ParseError};
use crate::header::{Header, HeaderName};
use crate::message::{Message, StartLine, Version};
use crate::scan;

/// Caps that bound the work and memory spent on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Start line + headers + blank line, in octets.
    pub max_head_bytes: usize,
    /// Header lines (after unfolding).
    pub max_headers: usize,
    /// Declared body size.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 256,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Parses one message with the default [`Limits`].
pub fn parse(buf: &[u8]) -> Result<Message<'_>, ParseError<'_>> {
    parse_with(buf, &Limits::default())
}

/// Parses one message with explicit limits.
pub fn parse_with<'a>(buf: &'a [u8], limits: &Limits) -> Result<Message<'a>, ParseError<'a>> {
    parse_in(buf, limits, Vec::new())
}

/// Header storage kept between parses: a proxy parses every message it forwards, and
/// [`parse_reusing`] + [`Message::into_header_buf`] spare it the header table's allocation each time.
#[derive(Debug, Default)]
pub struct HeaderBuf(Vec<Header<'static>>);

impl HeaderBuf {
    /// The storage, emptied (the element type's lifetime shortens by covariance).
    pub(crate) fn take<'a>(&mut self) -> Vec<Header<'a>> {
        let mut headers = std::mem::take(&mut self.0);
        headers.clear();
        headers
    }

    /// The storage of `headers`, emptied. The vector is collected in place (same element layout:
    /// only the lifetime differs), so its allocation is kept; `benches/allocs.rs` counts it.
    pub(crate) fn recycle(mut headers: Vec<Header<'_>>) -> HeaderBuf {
        headers.clear();
        // `filter_map`, not `filter`: it is what changes the element type's lifetime.
        #[allow(clippy::unnecessary_filter_map)]
        let empty = headers.into_iter().filter_map(|_| None).collect();
        HeaderBuf(empty)
    }
}

/// [`parse`] with the header table taken from `storage` (left empty; give it back with
/// [`Message::into_header_buf`]).
pub fn parse_reusing<'a>(buf: &'a [u8], storage: &mut HeaderBuf) -> Result<Message<'a>, ParseError<'a>> {
    parse_in(buf, &Limits::default(), storage.take())
}

fn parse_in<'a>(
    buf: &'a [u8],
    limits: &Limits,
    mut headers: Vec<Header<'a>>,
) -> Result<Message<'a>, ParseError<'a>> {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    if start == buf.len() {
        return Err(ParseError::at(ErrorKind::Empty, 0));
    }
    // One iterator over the line ends of the whole input: cheaper than a fresh search per line.
    let mut line_ends = memchr::memchr_iter(b'\n', buf.get(start..).unwrap_or(&[])).map(|i| i + start);
    let mut next_line = |pos: usize| -> Option<(&'a [u8], usize)> {
        let nl = line_ends.next()?;
        let line = buf.get(pos..nl)?;
        Some((line.strip_suffix(b"\r").unwrap_or(line), nl + 1))
    };
    let (start_line, mut pos) = match next_line(start) {
        Some((content, next)) => (parse_start_line(content, start)?, next),
        None => return Err(ParseError::at(ErrorKind::Incomplete, start)),
    };

    headers.clear();
    headers.reserve(24);
    let head_end;
    let headers_end;
    loop {
        if pos - start > limits.max_head_bytes {
            return Err(ParseError::at(ErrorKind::HeadTooLarge, pos));
        }
        let Some((line, next)) = next_line(pos) else {
            let kind = if buf.len() - start > limits.max_head_bytes {
                ErrorKind::HeadTooLarge
            } else {
                ErrorKind::Incomplete
            };
            return Err(ParseError::at(kind, pos));
        };
        if line.is_empty() {
            headers_end = pos;
            head_end = next;
            break;
        }
        match line.first() {
            Some(b' ' | b'\t') => {
                let Some(prev) = headers.last_mut() else {
                    return Err(ParseError::at(ErrorKind::LeadingContinuation, pos));
                };
                // Extend the previous header over this continuation line.
                let trimmed = scan::trim_bytes(line);
                if !trimmed.is_empty() {
                    let end = pos + line.len() - trailing_lws(line);
                    let spanned = buf.get(prev.value_start as usize..end).unwrap_or(prev.raw_value);
                    let lead = spanned.iter().take_while(|&&b| scan::is_lws(b)).count();
                    let value = scan::trim_bytes(spanned);
                    prev.value_start += lead as u32;
                    prev.folded = prev.folded || !prev.raw_value.is_empty();
                    prev.raw_value = value;
                }
                prev.line_end = next as u32;
            }
            _ => {
                if headers.len() >= limits.max_headers {
                    return Err(ParseError::at(ErrorKind::TooManyHeaders, pos));
                }
                headers.push(parse_header_line(line, pos, next)?);
            }
        }
        pos = next;
    }
    if head_end - start > limits.max_head_bytes {
        return Err(ParseError::at(ErrorKind::HeadTooLarge, head_end));
    }

    let mut msg = Message {
        buf,
        start_offset: start,
        start: start_line,
        headers,
        headers_end,
        head_end,
        end: buf.len(),
        content_length: None,
        max_forwards: None,
        cseq: None,
        memo: Default::default(),
    };
    if let Err(kind) = check_scalars(&mut msg, limits) {
        let offset = msg.head_end;
        return Err(ParseError {
            kind,
            offset,
            partial: Some(Box::new(msg)),
        });
    }
    Ok(msg)
}

fn trailing_lws(line: &[u8]) -> usize {
    line.iter().rev().take_while(|&&b| scan::is_lws(b)).count()
}

/// `name *(SP/HT) ":" value`: the name is scanned and validated in one pass (names are short, so a
/// byte loop beats a vectorised search for the colon).
fn parse_header_line(line: &[u8], pos: usize, next: usize) -> Result<Header<'_>, ParseError<'_>> {
    let name_len = line.iter().take_while(|&&b| scan::is_token(b)).count();
    let after_name = line.get(name_len..).unwrap_or(&[]);
    let gap = after_name
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    if after_name.get(gap) != Some(&b':') {
        let kind = if memchr::memchr(b':', line).is_some() {
            ErrorKind::BadHeaderName
        } else {
            ErrorKind::MissingColon
        };
        return Err(ParseError::at(kind, pos));
    }
    if name_len == 0 {
        return Err(ParseError::at(ErrorKind::BadHeaderName, pos));
    }
    let raw_name = line.get(..name_len).unwrap_or(&[]);
    let colon = name_len + gap;
    let value_part = line.get(colon + 1..).unwrap_or(&[]);
    // The same whitespace class as `trim_bytes` (a stray CR included), so that `value_start` is
    // exactly where `raw_value` begins: the editor replaces values by these offsets.
    let lead = value_part.iter().take_while(|&&b| scan::is_lws(b)).count();
    let raw_value = scan::trim_bytes(value_part.get(lead..).unwrap_or(&[]));
    Ok(Header {
        name: HeaderName::classify(raw_name),
        raw_name,
        raw_value,
        line_start: pos as u32,
        line_end: next as u32,
        value_start: (pos + colon + 1 + lead) as u32,
        folded: false,
    })
}

fn parse_start_line(line: &[u8], offset: usize) -> Result<StartLine<'_>, ParseError<'_>> {
    let err = |kind| ParseError::at(kind, offset);
    if line.len() >= 4 && line.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/")) {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let mut parts = line.splitn(3, |&b| b == b' ');
        let version = parts
            .next()
            .and_then(parse_version)
            .ok_or(err(ErrorKind::BadVersion))?;
        let code = parts.next().ok_or(err(ErrorKind::BadStatusLine))?;
        if code.len() != 3 {
            return Err(err(ErrorKind::BadStatusCode));
        }
        let status = scan::parse_decimal(code, 3)
            .filter(|c| (100..=699).contains(c))
            .ok_or(err(ErrorKind::BadStatusCode))? as u16;
        let reason = parts.next().unwrap_or(&[]);
        return Ok(StartLine::Response {
            version,
            status,
            reason,
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let sp1 = memchr::memchr(b' ', line).ok_or(err(ErrorKind::BadRequestLine))?;
    let sp2 = memchr::memrchr(b' ', line).ok_or(err(ErrorKind::BadRequestLine))?;
    if sp2 <= sp1 {
        return Err(err(ErrorKind::BadRequestLine));
    }
    let method = line.get(..sp1).unwrap_or(&[]);
    let uri = line.get(sp1 + 1..sp2).unwrap_or(&[]);
    let version = line.get(sp2 + 1..).unwrap_or(&[]);
    if method.is_empty() || !method.iter().all(|&b| scan::is_token(b)) {
        return Err(err(ErrorKind::BadMethod));
    }
    if uri.is_empty() || uri.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(err(ErrorKind::BadRequestUri));
    }
    let version = parse_version(version).ok_or(err(ErrorKind::BadVersion))?;
    let method = std::str::from_utf8(method).map_err(|_| err(ErrorKind::BadMethod))?;
    let uri = std::str::from_utf8(uri).map_err(|_| err(ErrorKind::BadRequestUri))?;
    Ok(StartLine::Request { method, uri, version })
}

fn parse_version(v: &[u8]) -> Option<Version> {
    let rest = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case(b"SIP/"))
        .and(v.get(4..))?;
    let dot = memchr::memchr(b'.', rest)?;
    let major = scan::parse_decimal(rest.get(..dot)?, 4)? as u16;
    let minor = scan::parse_decimal(rest.get(dot + 1..)?, 4)? as u16;
    Some(Version { major, minor })
}

/// Content-Length (framing), CSeq and Max-Forwards: the scalars a proxy cannot work without.
fn check_scalars(msg: &mut Message<'_>, limits: &Limits) -> Result<(), ErrorKind> {
    let mut content_length: Option<u64> = None;
    for h in msg.headers.iter() {
        match h.name {
            HeaderName::ContentLength => {
                let v = scan::trim_bytes(h.raw_value);
                if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                    return Err(ErrorKind::BadContentLength);
                }
                let n = scan::parse_decimal(v, 19).ok_or(ErrorKind::BodyTooLarge)?;
                match content_length {
                    Some(prev) if prev != n => return Err(ErrorKind::ConflictingContentLength),
                    _ => content_length = Some(n),
                }
            }
            // Duplicates (RFC 4475 multi01) parse; `Message::check_mandatory` reports them.
            HeaderName::CSeq => {
                let v = parse_cseq(h.raw_value).ok_or(ErrorKind::BadCSeq)?;
                msg.cseq.get_or_insert(v);
            }
            HeaderName::MaxForwards => {
                let v = scan::trim_bytes(h.raw_value);
                let n = scan::parse_decimal(v, 3)
                    .filter(|&n| n <= 255)
                    .ok_or(ErrorKind::BadMaxForwards)?;
                msg.max_forwards.get_or_insert(n as u8);
            }
            _ => {}
        }
    }
    if let Some(n) = content_length {
        if n > limits.max_body_bytes as u64 {
            return Err(ErrorKind::BodyTooLarge);
        }
        let n = n as usize;
        let available = msg.buf.len() - msg.head_end;
        if n > available {
            return Err(ErrorKind::BodyTruncated);
        }
        msg.content_length = Some(n);
        msg.end = msg.head_end + n;
    } else if msg.buf.len() - msg.head_end > limits.max_body_bytes {
        return Err(ErrorKind::BodyTooLarge);
    }
    Ok(())
}

/// `CSeq: 1*DIGIT LWS Method`, the number below 2^31 (RFC 3261 §8.1.1.5).
pub(crate) fn parse_cseq(value: &[u8]) -> Option<(u32, &str)> {
    let v = scan::trim_bytes(value);
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    let (num, rest) = v.split_at(digits);
    let n = scan::parse_decimal(num, 10).filter(|&n| n < (1u64 << 31))?;
    let method = scan::trim_bytes(rest);
    if method.len() == rest.len() || method.is_empty() || !method.iter().all(|&b| scan::is_token(b)) {
        return None;
    }
    Some((n as u32, std::str::from_utf8(method).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_table_is_reused_between_parses_and_errors_leave_storage_usable() {
        let a = b"MESSAGE sip:b@x SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\r\nCSeq: 1 MESSAGE\r\n\
Content-Length: 0\r\n\r\n";
        let b = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\
Content-Length: 0\r\n\r\n";
        let mut storage = HeaderBuf::default();
        let first = parse_reusing(a, &mut storage).unwrap();
        assert_eq!(first.headers.len(), 3);
        let table = first.headers.as_ptr() as usize;
        storage = first.into_header_buf();
        assert!(storage.0.is_empty() && storage.0.capacity() >= 24);
        assert_eq!(storage.0.as_ptr() as usize, table, "the allocation is kept");
        let second = parse_reusing(b, &mut storage).unwrap();
        assert_eq!(second.headers.as_ptr() as usize, table);
        assert_eq!(second.status(), Some(200));
        assert_eq!(second.headers.len(), 4);
        storage = second.into_header_buf();
        assert!(parse_reusing(b"\r\n", &mut storage).is_err());
        assert_eq!(parse_reusing(a, &mut storage).unwrap().headers.len(), 3);
    }
}
