//! `name-addr` / `addr-spec` with header parameters (RFC 3261 §20.10, §25.1): the shape of From, To,
//! Contact, Route, Record-Route, Refer-To. Zero-copy: display name, URI and parameters borrow the value.

use std::borrow::Cow;

use crate::error::ValueError;
use crate::params::Params;
use crate::scan;
use crate::uri::Uri;

/// `["display name"] <uri>;params` or `uri;params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// As written: quoted (quotes included) or a run of tokens; `None` when absent.
    pub display: Option<&'a str>,
    /// The URI text between `<` and `>` (or the bare addr-spec).
    pub uri: &'a str,
    /// Whether the URI was enclosed in angle brackets.
    pub bracketed: bool,
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (already split from a comma list where the header is a list).
    pub fn parse(value: &'a str) -> Result<NameAddr<'a>, ValueError> {
        let v = scan::trim(value);
        if v.is_empty() {
            return Err(ValueError::Empty);
        }
        let (display, after_display) = if let Some(rest) = v.strip_prefix('"') {
            let close =
                closing_quote(rest).ok_or(ValueError::Malformed("unterminated quoted display name"))?;
            let display = v.get(..close + 2).unwrap_or(v);
            let after = scan::trim(rest.get(close + 1..).unwrap_or(""));
            if !after.starts_with('<') {
                return Err(ValueError::Malformed("quoted display name without <uri>"));
            }
            (Some(display), after)
        } else if let Some(lt) = v.find('<') {
            // Token syntax of an unquoted display name is checked by `validate`, not on every read.
            let display = scan::trim(v.get(..lt).unwrap_or(""));
            (
                (!display.is_empty()).then_some(display),
                v.get(lt..).unwrap_or(""),
            )
        } else {
            // addr-spec: the URI runs to the first ';', and may not contain ',' '?' or ';' itself.
            let (uri, params) = scan::split_at_byte(v, b';');
            let uri = scan::trim(uri);
            if uri.is_empty() || uri.bytes().any(|b| b == b',' || b == b'?' || scan::is_lws(b)) {
                return Err(ValueError::Malformed(
                    "addr-spec must be in <> when it contains , ? ; or spaces",
                ));
            }
            return Ok(NameAddr {
                display: None,
                uri,
                bracketed: false,
                params: Params::from_tail(params),
            });
        };
        let inner = after_display.strip_prefix('<').unwrap_or(after_display);
        let gt = inner
            .find('>')
            .ok_or(ValueError::Malformed("missing > after URI"))?;
        let uri = inner.get(..gt).unwrap_or("");
        if uri.is_empty() || uri.bytes().any(scan::is_lws) {
            return Err(ValueError::Malformed("whitespace or nothing inside <>"));
        }
        let tail = scan::trim(inner.get(gt + 1..).unwrap_or(""));
        let params = match tail.strip_prefix(';') {
            Some(p) => Params::new(p),
            None if tail.is_empty() => Params::none(),
            None => return Err(ValueError::Malformed("text after <uri> that is not a parameter")),
        };
        Ok(NameAddr {
            display,
            uri,
            bracketed: true,
            params,
        })
    }

    pub fn parsed_uri(&self) -> Result<Uri<'a>, ValueError> {
        Uri::parse(self.uri)
    }

    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }

    /// The display name without quotes and with `\x` escapes resolved.
    pub fn display_name(&self) -> Option<Cow<'a, str>> {
        let d = self.display?;
        let Some(inner) = d.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
            return Some(Cow::Borrowed(d));
        };
        if !inner.contains('\\') {
            return Some(Cow::Borrowed(inner));
        }
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        Some(Cow::Owned(out))
    }

    /// Strict syntax check of the whole value, URI included.
    pub fn validate(&self) -> Result<(), ValueError> {
        self.validate_with(self.parsed_uri())
    }

    /// [`NameAddr::validate`] with its URI already parsed (a message remembers its From's).
    pub(crate) fn validate_with(&self, uri: Result<Uri<'a>, ValueError>) -> Result<(), ValueError> {
        if let Some(d) = self.display.filter(|d| !d.starts_with('"')) {
            let words_are_tokens = d
                .split(|c: char| c.is_ascii() && scan::is_lws(c as u8))
                .all(|w| w.is_empty() || scan::is_token_str(w));
            if !words_are_tokens {
                return Err(ValueError::Malformed("display name has non-token characters"));
            }
        }
        uri?;
        self.params.validate()
    }
}

/// Index (within `rest`, the text after the opening quote) of the closing quote.
fn closing_quote(rest: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in rest.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let n = NameAddr::parse(r#""J Rosenberg \\\"" <sip:jdrosen@example.com>;tag=98asjd8"#).unwrap();
        assert_eq!(n.display, Some(r#""J Rosenberg \\\"""#));
        assert_eq!(n.display_name().unwrap(), r#"J Rosenberg \""#);
        assert_eq!(n.uri, "sip:jdrosen@example.com");
        assert_eq!(n.tag(), Some("98asjd8"));
        n.validate().unwrap();

        let n = NameAddr::parse("sip:caller@example.net;tag=134161461246").unwrap();
        assert!(!n.bracketed);
        assert_eq!(n.uri, "sip:caller@example.net");
        assert_eq!(n.tag(), Some("134161461246"));

        let n = NameAddr::parse("Bob Smith<sip:bob@example.com>").unwrap();
        assert_eq!(n.display, Some("Bob Smith"));
        assert!(n.params.is_empty());

        let n = NameAddr::parse("<sip:x@y>\r\n ;\r\n tag = 1").unwrap();
        assert_eq!(n.tag(), Some("1"));
    }

    #[test]
    fn rejects() {
        assert!(NameAddr::parse("").is_err());
        assert!(NameAddr::parse(r#""unterminated <sip:a@b>"#).is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a@b>")
            .unwrap()
            .validate()
            .is_err());
        assert!(NameAddr::parse("< sip:a@b >").is_err());
        assert!(NameAddr::parse("<sip:a@b").is_err());
        assert!(NameAddr::parse("<sip:a@b> junk").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(NameAddr::parse(r#""Joe" <sip:joe@example.org>;;;;"#)
            .unwrap()
            .validate()
            .is_err());
        assert!(NameAddr::parse("<sip:joe@exa mple.org>").is_err());
    }
}
