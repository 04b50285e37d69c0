//! [`Message`]: a parsed SIP message borrowing its buffer — start line, indexed header lines, body —
//! and the typed accessors a proxy reads (each parses its header lazily, on first call; From, To and
//! the Request-URI, which validation and routing both read, are parsed once and remembered).
//! Two checks sit on top of parsing: [`Message::validate`] (strict syntax of every typed header) and
//! [`Message::check_mandatory`] (RFC 3261 §8.1.1 presence and uniqueness), both naming the header.

use crate::error::ValueError;
use crate::header::{Header, HeaderName};
use crate::name_addr::NameAddr;
use crate::scan;
use crate::typed::{CSeq, ContactValue, Diagnostic, SubscriptionState, Values};
use crate::uri::Uri;
use crate::via::Via;

/// `SIP/<major>.<minor>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl Version {
    pub const SIP_2_0: Version = Version { major: 2, minor: 0 };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request {
        method: &'a str,
        uri: &'a str,
        version: Version,
    },
    Response {
        version: Version,
        status: u16,
        reason: &'a [u8],
    },
}

/// A header that failed [`Message::validate`] or [`Message::check_mandatory`], and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{header}: {problem}")]
pub struct Defect {
    pub header: &'static str,
    pub problem: DefectKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DefectKind {
    #[error("{0}")]
    Value(ValueError),
    #[error("missing")]
    Missing,
    #[error("appears more than once")]
    Duplicate,
    #[error("method does not match the request line")]
    MethodMismatch,
    #[error("control character in value")]
    ControlCharacter,
}

/// Typed values parsed once per message: validation and the proxy's routing read the same From
/// (and its URI), To, Request-URI and top Via (`Cell`: the message is read through `&self`; the values are `Copy`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Memo<'a> {
    from: std::cell::Cell<Option<Result<NameAddr<'a>, ValueError>>>,
    to: std::cell::Cell<Option<Result<NameAddr<'a>, ValueError>>>,
    request_uri: std::cell::Cell<Option<Result<Uri<'a>, ValueError>>>,
    from_uri: std::cell::Cell<Option<Result<Uri<'a>, ValueError>>>,
    top_via: std::cell::Cell<Option<Result<Via<'a>, ValueError>>>,
}

/// `cell`'s value, computed by `f` the first time.
fn memo<T: Copy>(cell: &std::cell::Cell<Option<T>>, f: impl FnOnce() -> T) -> T {
    match cell.get() {
        Some(v) => v,
        None => {
            let v = f();
            cell.set(Some(v));
            v
        }
    }
}

/// A parsed message. Cheap to keep: one `Vec` of header spans, everything else borrowed.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) start_offset: usize,
    pub(crate) start: StartLine<'a>,
    pub(crate) headers: Vec<Header<'a>>,
    /// Offset of the blank line that ends the headers (where new headers are appended).
    pub(crate) headers_end: usize,
    /// Offset of the body (after the blank line).
    pub(crate) head_end: usize,
    /// End of the message (body included); bytes after it in the input are not part of it.
    pub(crate) end: usize,
    pub(crate) content_length: Option<usize>,
    pub(crate) max_forwards: Option<u8>,
    pub(crate) cseq: Option<(u32, &'a str)>,
    pub(crate) memo: Memo<'a>,
}

impl<'a> Message<'a> {
    /// The header table's storage back, for the next [`crate::parse_reusing`].
    pub fn into_header_buf(self) -> crate::parse::HeaderBuf {
        crate::parse::HeaderBuf::recycle(self.headers)
    }

    pub fn start_line(&self) -> &StartLine<'a> {
        &self.start
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    pub fn reason(&self) -> Option<&'a [u8]> {
        match self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    pub fn version(&self) -> Version {
        match self.start {
            StartLine::Request { version, .. } | StartLine::Response { version, .. } => version,
        }
    }

    /// The header lines in wire order.
    pub fn headers(&self) -> &[Header<'a>] {
        &self.headers
    }

    /// The first line of `name`.
    pub fn header(&self, name: HeaderName) -> Option<&Header<'a>> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// Lines whose name is `name` as written, case-insensitively (for unregistered headers).
    pub fn headers_named<'m>(&'m self, name: &'m str) -> impl Iterator<Item = &'m Header<'a>> + 'm {
        self.headers
            .iter()
            .filter(move |h| h.raw_name.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// Every value of a header across lines, list headers split at commas.
    pub fn values(&self, name: HeaderName) -> Values<'_, 'a> {
        Values::new(&self.headers, name)
    }

    pub fn body(&self) -> &'a [u8] {
        self.buf.get(self.head_end..self.end).unwrap_or(&[])
    }

    /// The declared Content-Length, if any (already checked against the body).
    pub fn content_length(&self) -> Option<usize> {
        self.content_length
    }

    /// The message's own bytes (leading CRLFs and trailing datagram bytes excluded).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf.get(self.start_offset..self.end).unwrap_or(&[])
    }

    pub(crate) fn span(&self, r: std::ops::Range<usize>) -> &'a [u8] {
        self.buf.get(r).unwrap_or(&[])
    }

    // ---- typed accessors -------------------------------------------------------------------------

    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, ValueError>> + '_ {
        self.values(HeaderName::Via).map(|v| v.and_then(Via::parse))
    }

    pub fn top_via(&self) -> Result<Via<'a>, ValueError> {
        memo(&self.memo.top_via, || {
            self.vias().next().unwrap_or(Err(ValueError::Missing))
        })
    }

    pub fn from(&self) -> Result<NameAddr<'a>, ValueError> {
        memo(&self.memo.from, || {
            self.single(HeaderName::From).and_then(NameAddr::parse)
        })
    }

    /// The From URI, parsed.
    pub fn from_uri(&self) -> Result<Uri<'a>, ValueError> {
        memo(&self.memo.from_uri, || self.from().and_then(|n| n.parsed_uri()))
    }

    pub fn to(&self) -> Result<NameAddr<'a>, ValueError> {
        memo(&self.memo.to, || {
            self.single(HeaderName::To).and_then(NameAddr::parse)
        })
    }

    /// A request's Request-URI, parsed (`None` for a response).
    pub fn parsed_request_uri(&self) -> Option<Result<Uri<'a>, ValueError>> {
        let uri = self.request_uri()?;
        Some(memo(&self.memo.request_uri, || Uri::parse(uri)))
    }

    pub fn call_id(&self) -> Result<&'a str, ValueError> {
        let v = self.single(HeaderName::CallId)?;
        if v.is_empty() || v.bytes().any(scan::is_lws) {
            return Err(ValueError::Malformed("Call-ID"));
        }
        Ok(v)
    }

    /// Checked at parse time: number below 2^31 and a method token.
    pub fn cseq(&self) -> Option<CSeq<'a>> {
        self.cseq.map(|(number, method)| CSeq { number, method })
    }

    /// Checked at parse time: 0..=255.
    pub fn max_forwards(&self) -> Option<u8> {
        self.max_forwards
    }

    pub fn contacts(&self) -> impl Iterator<Item = Result<ContactValue<'a>, ValueError>> + '_ {
        self.values(HeaderName::Contact)
            .map(|v| v.and_then(ContactValue::parse))
    }

    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ValueError>> + '_ {
        self.values(HeaderName::Route)
            .map(|v| v.and_then(NameAddr::parse))
    }

    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ValueError>> + '_ {
        self.values(HeaderName::RecordRoute)
            .map(|v| v.and_then(NameAddr::parse))
    }

    /// The media type without parameters, e.g. `application/sdp`.
    pub fn content_type(&self) -> Option<&'a str> {
        let v = self.single(HeaderName::ContentType).ok()?;
        Some(scan::trim(scan::split_at_byte(v, b';').0))
    }

    pub fn expires(&self) -> Result<Option<u32>, ValueError> {
        match self.single(HeaderName::Expires) {
            Err(ValueError::Missing) => Ok(None),
            Err(e) => Err(e),
            Ok(v) => scan::parse_decimal(v.as_bytes(), 10)
                .map(|n| Some(u32::try_from(n).unwrap_or(u32::MAX)))
                .ok_or(ValueError::Malformed("Expires")),
        }
    }

    /// The event package (`presence` in `Event: presence;id=1`).
    pub fn event(&self) -> Option<&'a str> {
        let v = self.single(HeaderName::Event).ok()?;
        Some(scan::trim(scan::split_at_byte(v, b';').0))
    }

    pub fn subscription_state(&self) -> Result<SubscriptionState<'a>, ValueError> {
        self.single(HeaderName::SubscriptionState)
            .and_then(SubscriptionState::parse)
    }

    /// Option tags across all lines of `Supported` (or `Require`, `Proxy-Require`, `Unsupported`).
    pub fn option_tags(&self, name: HeaderName) -> impl Iterator<Item = &'a str> + '_ {
        self.values(name).filter_map(Result::ok).filter(|t| !t.is_empty())
    }

    pub fn ms_diagnostics(&self) -> Result<Diagnostic<'a>, ValueError> {
        self.single(HeaderName::MsDiagnostics).and_then(Diagnostic::parse)
    }

    pub fn ms_diagnostics_public(&self) -> Result<Diagnostic<'a>, ValueError> {
        self.single(HeaderName::MsDiagnosticsPublic)
            .and_then(Diagnostic::parse)
    }

    fn single(&self, name: HeaderName) -> Result<&'a str, ValueError> {
        let h = self.header(name).ok_or(ValueError::Missing)?;
        h.value_str().ok_or(ValueError::NotUtf8)
    }

    // ---- checks ----------------------------------------------------------------------------------

    /// Strict syntax of the start line's URI and of every header with a typed grammar; no control
    /// characters in any value. A proxy answers 400 with the returned defect in a `Warning`.
    pub fn validate(&self) -> Result<(), Defect> {
        let defect = |header, e| Defect {
            header,
            problem: DefectKind::Value(e),
        };
        if let Some(parsed) = self.parsed_request_uri() {
            match parsed.map_err(|e| defect("Request-URI", e))? {
                Uri::Sip(u) if u.headers.is_some() => {
                    return Err(defect(
                        "Request-URI",
                        ValueError::Malformed("headers in Request-URI"),
                    ))
                }
                _ => {}
            }
        }
        for h in &self.headers {
            let label = h.name.as_str().unwrap_or("header");
            // Controls are allowed only as a quoted-pair (`\` + octet, RFC 3261 §25.1; RFC 4475 intmeth).
            let control = |(i, &b): (usize, &u8)| {
                ((b < 0x20 && !scan::is_lws(b)) || b == 0x7f)
                    && i.checked_sub(1).and_then(|p| h.raw_value.get(p)) != Some(&b'\\')
            };
            if h.raw_value.iter().enumerate().any(control) {
                return Err(Defect {
                    header: label,
                    problem: DefectKind::ControlCharacter,
                });
            }
            let text = h.value_str().ok_or(defect(label, ValueError::NotUtf8))?;
            let each = |f: &dyn Fn(&str) -> Result<(), ValueError>| -> Result<(), Defect> {
                if h.name.is_list() {
                    crate::typed::split_values(text)
                        .try_for_each(f)
                        .map_err(|e| defect(label, e))
                } else {
                    f(text).map_err(|e| defect(label, e))
                }
            };
            // The first From and To are the ones `from()` and `to()` read: parsed once for both.
            let first = |name| self.header(name).is_some_and(|f| std::ptr::eq(f, h));
            match h.name {
                // The top Via (the first value of the first Via) is the one `top_via()` reads.
                HeaderName::Via if first(HeaderName::Via) => {
                    let mut values = crate::typed::split_values(text);
                    values.next();
                    self.top_via()
                        .and_then(|v| v.validate())
                        .and_then(|()| values.try_for_each(|v| Via::parse(v)?.validate()))
                        .map_err(|e| defect(label, e))?
                }
                HeaderName::Via => each(&|v| Via::parse(v)?.validate())?,
                HeaderName::From if first(HeaderName::From) => self
                    .from()
                    .and_then(|n| n.validate_with(self.from_uri()))
                    .map_err(|e| defect(label, e))?,
                HeaderName::To if first(HeaderName::To) => self
                    .to()
                    .and_then(|n| n.validate())
                    .map_err(|e| defect(label, e))?,
                HeaderName::From | HeaderName::To | HeaderName::Route | HeaderName::RecordRoute => {
                    each(&|v| NameAddr::parse(v)?.validate())?
                }
                HeaderName::Contact => each(&|v| match ContactValue::parse(v)? {
                    ContactValue::Star => Ok(()),
                    ContactValue::Addr(c) => c.addr.validate(),
                })?,
                HeaderName::CallId => each(&|v| match v.is_empty() || v.bytes().any(scan::is_lws) {
                    true => Err(ValueError::Malformed("Call-ID")),
                    false => Ok(()),
                })?,
                HeaderName::Expires | HeaderName::RetryAfter => each(&|v| {
                    let n = scan::split_at_byte(v, b'(').0;
                    let n = scan::trim(scan::split_at_byte(n, b';').0);
                    scan::parse_decimal(n.as_bytes(), 10)
                        .filter(|&n| n <= u64::from(u32::MAX))
                        .map(|_| ())
                        .ok_or(ValueError::Malformed("delta-seconds"))
                })?,
                HeaderName::Warning => each(&|v| {
                    let mut parts = v.splitn(3, ' ');
                    let code = parts.next().unwrap_or("");
                    let agent = parts.next().unwrap_or("");
                    let text = scan::trim(parts.next().unwrap_or(""));
                    let ok = code.len() == 3
                        && code.bytes().all(|b| b.is_ascii_digit())
                        && !agent.is_empty()
                        && text.starts_with('"')
                        && text.ends_with('"')
                        && text.len() >= 2;
                    ok.then_some(()).ok_or(ValueError::Malformed("Warning"))
                })?,
                HeaderName::SubscriptionState => each(&|v| SubscriptionState::parse(v)?.params.validate())?,
                HeaderName::MsDiagnostics | HeaderName::MsDiagnosticsPublic => {
                    each(&|v| Diagnostic::parse(v)?.params.validate())?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Everything a receiver checks before acting on the message: the mandatory headers
    /// ([`Message::check_mandatory`]), then the syntax of every typed header ([`Message::validate`]).
    /// The proxy answers a request that fails it with 400 naming the header; `sipedge decode`
    /// refuses the same input with the same words.
    pub fn check(&self) -> Result<(), Defect> {
        self.check_mandatory().and_then(|()| self.validate())
    }

    /// RFC 3261 §8.1.1: a message carries To, From, CSeq, Call-ID and Via, each single-valued one
    /// once, and a request's CSeq method equals its method. Max-Forwards, mandatory for a UAC, is
    /// not required: a proxy adds `Max-Forwards: 70` to a request without one (§16.6 step 3), and
    /// real equipment sends such requests (the shared corpus: "handle normally"); present, it must
    /// be single. Presence and uniqueness only — syntax is [`Message::validate`]'s job.
    pub fn check_mandatory(&self) -> Result<(), Defect> {
        const REQUIRED: [HeaderName; 5] = [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ];
        for name in REQUIRED.into_iter().chain([HeaderName::MaxForwards]) {
            let count = self.headers.iter().filter(|h| h.name == name).count();
            let header = name.as_str().unwrap_or("header");
            if count == 0 && name != HeaderName::MaxForwards {
                return Err(Defect {
                    header,
                    problem: DefectKind::Missing,
                });
            }
            if count > 1 && !name.is_list() {
                return Err(Defect {
                    header,
                    problem: DefectKind::Duplicate,
                });
            }
        }
        if let (Some(method), Some(cseq)) = (self.method(), self.cseq()) {
            if method != cseq.method {
                return Err(Defect {
                    header: "CSeq",
                    problem: DefectKind::MethodMismatch,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod memo_tests {
    use crate::{parse, DefectKind, HeaderName, NameAddr, Uri, Via};

    const REQ: &[u8] = b"MESSAGE sip:bob@partner.example SIP/2.0\r\n\
        Via: SIP/2.0/TLS fe1.corp.example;branch=z9hG4bK-m1\r\n\
        From: <sip:alice@corp.example>;tag=a1\r\n\
        To: Bob <sip:bob@partner.example>\r\n\
        Call-ID: m1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";

    /// What validation parsed is what the accessors hand out: the same as the parsers give.
    #[test]
    fn from_to_and_the_request_uri_are_parsed_once_and_read_alike() {
        let m = parse(REQ).unwrap();
        m.validate().unwrap();
        assert_eq!(m.from().unwrap().tag(), Some("a1"));
        assert_eq!(m.to().unwrap().display, Some("Bob"));
        let Some(Ok(Uri::Sip(u))) = m.parsed_request_uri() else {
            panic!("Request-URI")
        };
        assert_eq!(u.host_str(), "partner.example");
        // Against the parsers themselves, on the header text: what is remembered is what they give.
        let text = |name| m.header(name).and_then(|h| h.value_str()).unwrap();
        assert_eq!(m.from(), NameAddr::parse(text(HeaderName::From)));
        assert_eq!(m.to(), NameAddr::parse(text(HeaderName::To)));
        assert_eq!(m.parsed_request_uri(), m.request_uri().map(Uri::parse));
        assert_eq!(m.from_uri(), Uri::parse("sip:alice@corp.example"));
        assert_eq!(
            m.top_via(),
            Via::parse("SIP/2.0/TLS fe1.corp.example;branch=z9hG4bK-m1")
        );
    }

    /// Only the first From is the remembered one: a second, malformed, is still checked.
    #[test]
    fn a_second_from_is_still_validated() {
        let text = String::from_utf8(REQ.to_vec())
            .unwrap()
            .replace("Call-ID", "From: <sip:bad host>\r\nCall-ID");
        let m = parse(text.as_bytes()).unwrap();
        let d = m.validate().unwrap_err();
        assert_eq!(d.header, "From");
        assert!(matches!(d.problem, DefectKind::Value(_)), "{d:?}");
        // A response has no Request-URI to parse.
        let r = parse(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(r.parsed_request_uri().is_none());
    }
}

#[cfg(test)]
mod top_via_memo_tests {
    use crate::parse;

    const TOP: &str = "Via: SIP/2.0/TLS fe1.corp.example;branch=z9hG4bK-m1\r\n";

    fn request(vias: &str) -> String {
        format!(
            "MESSAGE sip:bob@partner.example SIP/2.0\r\n{vias}\
             From: <sip:alice@corp.example>;tag=a1\r\nTo: <sip:bob@partner.example>\r\n\
             Call-ID: m1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn the_top_via_and_the_from_uri_read_as_their_parsers_give_them() {
        let text = request(TOP);
        let m = parse(text.as_bytes()).unwrap();
        m.validate().unwrap();
        assert_eq!(
            m.top_via(),
            crate::Via::parse("SIP/2.0/TLS fe1.corp.example;branch=z9hG4bK-m1")
        );
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK-m1"));
        assert_eq!(m.from_uri(), crate::Uri::parse("sip:alice@corp.example"));
        assert_eq!(m.from_uri().unwrap().as_sip().unwrap().host_str(), "corp.example");
    }

    /// Only the top Via is the remembered one: a malformed value after it, on the same line or on
    /// the next, is still checked.
    #[test]
    fn the_vias_after_the_top_one_are_still_validated() {
        let same_line = "Via: SIP/2.0/TLS fe1.corp.example;branch=z9hG4bK-m1, SIP/2.0/TLS bad host\r\n";
        let next_line = format!("{TOP}Via: SIP/2.0/TLS bad host\r\n");
        for vias in [same_line.to_owned(), next_line] {
            let text = request(&vias);
            let m = parse(text.as_bytes()).unwrap();
            assert_eq!(m.validate().unwrap_err().header, "Via", "{text}");
            assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK-m1"));
        }
    }
}
