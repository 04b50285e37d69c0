//! Error types of the codec: [`ParseError`] for whole messages (with the partial message when the
//! mandatory headers were already indexed, so a proxy can still answer 400), [`ValueError`] for one header
//! value that a typed accessor could not read. Framing errors live in `framer.rs`.

use crate::message::Message;

/// What is wrong with a message. Each variant is one action for a proxy: answer 400 (or 505/513) when
/// the framing is intact, otherwise close the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("empty message")]
    Empty,
    #[error("no empty line ends the header section")]
    Incomplete,
    #[error("malformed request line")]
    BadRequestLine,
    #[error("malformed status line")]
    BadStatusLine,
    #[error("method is not a token")]
    BadMethod,
    #[error("Request-URI is empty or contains whitespace")]
    BadRequestUri,
    #[error("SIP version is not SIP/<digits>.<digits>")]
    BadVersion,
    #[error("status code is not three digits in 100..=699")]
    BadStatusCode,
    #[error("header line has no colon")]
    MissingColon,
    #[error("header name is empty or not a token")]
    BadHeaderName,
    #[error("continuation line before the first header")]
    LeadingContinuation,
    #[error("control character in header section")]
    ControlCharacter,
    #[error("Content-Length is not a decimal number")]
    BadContentLength,
    #[error("several Content-Length headers disagree")]
    ConflictingContentLength,
    #[error("Content-Length is larger than the octets present")]
    BodyTruncated,
    #[error("CSeq is malformed (number 0..2^31-1, then a method token)")]
    BadCSeq,
    #[error("Max-Forwards is not a number in 0..=255")]
    BadMaxForwards,
    #[error("header section exceeds the size limit")]
    HeadTooLarge,
    #[error("too many header lines")]
    TooManyHeaders,
    #[error("body exceeds the size limit")]
    BodyTooLarge,
}

/// A message that could not be parsed: what is wrong, the byte offset where it was found, and — when
/// the start line and header section were indexed before the problem was found — the partial message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} (at byte {offset})")]
pub struct ParseError<'a> {
    pub kind: ErrorKind,
    pub offset: usize,
    /// Present when the header section was indexed (e.g. a bad Content-Length or CSeq): enough for
    /// [`crate::ResponseBuilder`] to answer 400 with the request's own Via/From/To/Call-ID/CSeq.
    pub partial: Option<Box<Message<'a>>>,
}

impl<'a> ParseError<'a> {
    pub(crate) fn at(kind: ErrorKind, offset: usize) -> Self {
        ParseError {
            kind,
            offset,
            partial: None,
        }
    }
}

/// A header value that a typed accessor could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("header is absent")]
    Missing,
    #[error("value is not valid UTF-8")]
    NotUtf8,
    #[error("value is empty")]
    Empty,
    #[error("malformed {0}")]
    Malformed(&'static str),
}
