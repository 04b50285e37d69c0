//! Header names and the indexed header line. [`HeaderName`] folds case and compact forms (RFC 3261
//! §7.3.3 and the registry's single-letter forms) into one enum so lookups never compare strings twice.
//! [`Header`] is one header *line* as it stands in the buffer: name and value spans plus the line's
//! byte range, which is what the editor (`edit.rs`) replaces.

use std::borrow::Cow;
use std::ops::Range;

use crate::scan;

/// The header names the edge reads or writes, and `Other` for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Contact,
    Route,
    RecordRoute,
    ContentLength,
    ContentType,
    ContentEncoding,
    Expires,
    Event,
    AllowEvents,
    SubscriptionState,
    Supported,
    Require,
    ProxyRequire,
    Unsupported,
    Subject,
    ReferTo,
    ReferredBy,
    SessionExpires,
    Identity,
    Warning,
    RetryAfter,
    Allow,
    UserAgent,
    Server,
    MsDiagnostics,
    MsDiagnosticsPublic,
    Other,
}

impl HeaderName {
    /// Classifies a header name as written on the wire (any case, long or compact form).
    pub fn classify(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        let eq = |s: &str| scan::eq_lower(name, s.as_bytes());
        // (length, first letter) narrows every name to one or two candidates before comparing.
        let Some(first) = name.first().map(u8::to_ascii_lowercase) else {
            return Other;
        };
        match (name.len(), first) {
            (1, c) => Self::compact(c),
            (2, b't') if eq("to") => To,
            (3, b'v') if eq("via") => Via,
            (4, b'f') if eq("from") => From,
            (4, b'c') if eq("cseq") => CSeq,
            (5, b'r') if eq("route") => Route,
            (5, b'e') if eq("event") => Event,
            (5, b'a') if eq("allow") => Allow,
            (6, b's') if eq("server") => Server,
            (7, b'c') if eq("call-id") => CallId,
            (7, b'c') if eq("contact") => Contact,
            (7, b'e') if eq("expires") => Expires,
            (7, b'r') if eq("require") => Require,
            (7, b's') if eq("subject") => Subject,
            (7, b'w') if eq("warning") => Warning,
            (8, b'r') if eq("refer-to") => ReferTo,
            (8, b'i') if eq("identity") => Identity,
            (9, b's') if eq("supported") => Supported,
            (10, b'u') if eq("user-agent") => UserAgent,
            (11, b'r') if eq("retry-after") => RetryAfter,
            (11, b'r') if eq("referred-by") => ReferredBy,
            (11, b'u') if eq("unsupported") => Unsupported,
            (12, b'm') if eq("max-forwards") => MaxForwards,
            (12, b'r') if eq("record-route") => RecordRoute,
            (12, b'c') if eq("content-type") => ContentType,
            (12, b'a') if eq("allow-events") => AllowEvents,
            (13, b'p') if eq("proxy-require") => ProxyRequire,
            (14, b'c') if eq("content-length") => ContentLength,
            (14, b'm') if eq("ms-diagnostics") => MsDiagnostics,
            (15, b's') if eq("session-expires") => SessionExpires,
            (16, b'c') if eq("content-encoding") => ContentEncoding,
            (18, b's') if eq("subscription-state") => SubscriptionState,
            (21, b'm') if eq("ms-diagnostics-public") => MsDiagnosticsPublic,
            _ => Other,
        }
    }

    /// RFC 3261 §7.3.3 and registry compact forms.
    fn compact(c: u8) -> HeaderName {
        use HeaderName::*;
        match c {
            b'v' => Via,
            b'f' => From,
            b't' => To,
            b'i' => CallId,
            b'm' => Contact,
            b'l' => ContentLength,
            b'c' => ContentType,
            b'e' => ContentEncoding,
            b'o' => Event,
            b'u' => AllowEvents,
            b'k' => Supported,
            b's' => Subject,
            b'r' => ReferTo,
            b'b' => ReferredBy,
            b'x' => SessionExpires,
            b'y' => Identity,
            _ => Other,
        }
    }

    /// The canonical long form, as the edge writes it. `None` for [`HeaderName::Other`].
    pub fn as_str(self) -> Option<&'static str> {
        use HeaderName::*;
        Some(match self {
            Via => "Via",
            From => "From",
            To => "To",
            CallId => "Call-ID",
            CSeq => "CSeq",
            MaxForwards => "Max-Forwards",
            Contact => "Contact",
            Route => "Route",
            RecordRoute => "Record-Route",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            ContentEncoding => "Content-Encoding",
            Expires => "Expires",
            Event => "Event",
            AllowEvents => "Allow-Events",
            SubscriptionState => "Subscription-State",
            Supported => "Supported",
            Require => "Require",
            ProxyRequire => "Proxy-Require",
            Unsupported => "Unsupported",
            Subject => "Subject",
            ReferTo => "Refer-To",
            ReferredBy => "Referred-By",
            SessionExpires => "Session-Expires",
            Identity => "Identity",
            Warning => "Warning",
            RetryAfter => "Retry-After",
            Allow => "Allow",
            UserAgent => "User-Agent",
            Server => "Server",
            MsDiagnostics => "ms-diagnostics",
            MsDiagnosticsPublic => "ms-diagnostics-public",
            Other => return None,
        })
    }

    /// Headers whose value is a comma-separated list that may be split into several values
    /// (RFC 3261 §7.3.1). Others (e.g. dates, `WWW-Authenticate`) may contain commas of their own.
    pub fn is_list(self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Via | Contact
                | Route
                | RecordRoute
                | Supported
                | Require
                | ProxyRequire
                | Unsupported
                | Allow
                | AllowEvents
                | Warning
        )
    }
}

/// One header line of a parsed message: name and value as they stand in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: HeaderName,
    /// The name exactly as written (compact forms kept).
    pub raw_name: &'a [u8],
    /// The value with surrounding whitespace trimmed; folds (CRLF + whitespace) are still inside.
    pub raw_value: &'a [u8],
    pub(crate) line_start: u32,
    pub(crate) line_end: u32,
    pub(crate) value_start: u32,
    pub(crate) folded: bool,
}

impl<'a> Header<'a> {
    /// The name as text (header names are tokens, hence ASCII).
    pub fn name_str(&self) -> &'a str {
        std::str::from_utf8(self.raw_name).unwrap_or("")
    }

    /// The value as UTF-8 text, folds still inside (typed parsers treat them as whitespace).
    pub fn value_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.raw_value).ok()
    }

    /// The value with folds replaced by one space each (RFC 3261 §7.3.1); borrowed when unfolded.
    pub fn unfolded(&self) -> Cow<'a, [u8]> {
        if !self.folded {
            return Cow::Borrowed(self.raw_value);
        }
        let mut out = Vec::with_capacity(self.raw_value.len());
        let mut i = 0;
        let v = self.raw_value;
        while let Some(&b) = v.get(i) {
            if b == b'\r' || b == b'\n' {
                // Swallow the line break and the whitespace around it, emit a single SP.
                while out.last().is_some_and(|&c| c == b' ' || c == b'\t') {
                    out.pop();
                }
                while v.get(i).is_some_and(|&c| scan::is_lws(c)) {
                    i += 1;
                }
                out.push(b' ');
                continue;
            }
            out.push(b);
            i += 1;
        }
        Cow::Owned(out)
    }

    /// Whether the value spans several physical lines.
    pub fn is_folded(&self) -> bool {
        self.folded
    }

    /// Byte range of the whole line in the message, line break included.
    pub fn line_range(&self) -> Range<usize> {
        self.line_start as usize..self.line_end as usize
    }

    /// Byte offset of the value's first octet in the message.
    pub fn value_offset(&self) -> usize {
        self.value_start as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_long_forms_agree() {
        for (short, long) in [
            ("v", "Via"),
            ("f", "From"),
            ("t", "To"),
            ("i", "Call-ID"),
            ("m", "Contact"),
            ("l", "Content-Length"),
            ("c", "Content-Type"),
            ("e", "Content-Encoding"),
            ("o", "Event"),
            ("u", "Allow-Events"),
            ("k", "Supported"),
            ("s", "Subject"),
            ("r", "Refer-To"),
            ("b", "Referred-By"),
            ("x", "Session-Expires"),
            ("y", "Identity"),
        ] {
            let a = HeaderName::classify(short.as_bytes());
            let b = HeaderName::classify(long.to_ascii_uppercase().as_bytes());
            assert_eq!(a, b, "{short} vs {long}");
            assert_ne!(a, HeaderName::Other);
            assert_eq!(a.as_str(), Some(long));
        }
        assert_eq!(HeaderName::classify(b"q"), HeaderName::Other);
        assert_eq!(HeaderName::classify(b"X-Custom"), HeaderName::Other);
        assert_eq!(
            HeaderName::classify(b"MS-DIAGNOSTICS-public"),
            HeaderName::MsDiagnosticsPublic
        );
    }

    #[test]
    fn every_named_header_round_trips_through_classify() {
        use HeaderName::*;
        for n in [
            Via,
            From,
            To,
            CallId,
            CSeq,
            MaxForwards,
            Contact,
            Route,
            RecordRoute,
            ContentLength,
            ContentType,
            ContentEncoding,
            Expires,
            Event,
            AllowEvents,
            SubscriptionState,
            Supported,
            Require,
            ProxyRequire,
            Unsupported,
            Subject,
            ReferTo,
            ReferredBy,
            SessionExpires,
            Identity,
            Warning,
            RetryAfter,
            Allow,
            UserAgent,
            Server,
            MsDiagnostics,
            MsDiagnosticsPublic,
        ] {
            let s = n.as_str().unwrap();
            assert_eq!(HeaderName::classify(s.as_bytes()), n, "{s}");
            assert_eq!(HeaderName::classify(s.to_ascii_lowercase().as_bytes()), n, "{s}");
        }
    }
}
