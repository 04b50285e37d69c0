//! Typed values of the other headers a proxy reads: comma-list splitting, CSeq, Contact (with `*`,
//! `expires`, RFC 8599 push parameters), Subscription-State (RFC 6665) and `ms-diagnostics` (MS-OCER).

use crate::error::ValueError;
use crate::header::{Header, HeaderName};
use crate::name_addr::NameAddr;
use crate::params::Params;
use crate::scan;

/// Splits one header value at top-level commas (not inside quotes or `<>`), trimming each piece.
/// Empty pieces are kept (`a,,b` yields an empty value) so validation can refuse them.
pub fn split_values(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let r = rest?;
        match scan::find_unquoted(r.as_bytes(), b',') {
            Some(i) => {
                rest = r.get(i + 1..);
                Some(scan::trim(r.get(..i).unwrap_or("")))
            }
            None => {
                rest = None;
                Some(scan::trim(r))
            }
        }
    })
}

/// Every value of every line of one header name, in order: list headers split at commas.
#[derive(Debug, Clone)]
pub struct Values<'m, 'a> {
    headers: std::slice::Iter<'m, Header<'a>>,
    name: HeaderName,
    /// The unread remainder of the current line's comma list.
    rest: Option<&'a str>,
}

impl<'m, 'a> Values<'m, 'a> {
    pub(crate) fn new(headers: &'m [Header<'a>], name: HeaderName) -> Self {
        Values {
            headers: headers.iter(),
            name,
            rest: None,
        }
    }
}

impl<'a> Iterator for Values<'_, 'a> {
    type Item = Result<&'a str, ValueError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(r) = self.rest.take() {
            return Some(Ok(match scan::find_unquoted(r.as_bytes(), b',') {
                Some(i) => {
                    self.rest = r.get(i + 1..);
                    scan::trim(r.get(..i).unwrap_or(""))
                }
                None => scan::trim(r),
            }));
        }
        let h = self.headers.by_ref().find(|h| h.name == self.name)?;
        let Some(text) = h.value_str() else {
            return Some(Err(ValueError::NotUtf8));
        };
        if !self.name.is_list() {
            return Some(Ok(text));
        }
        self.rest = Some(text);
        self.next()
    }
}

/// `CSeq: <number> <method>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub number: u32,
    pub method: &'a str,
}

/// One Contact value: `*` (REGISTER removal) or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactValue<'a> {
    Star,
    Addr(Contact<'a>),
}

/// A Contact address with its header parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact<'a> {
    pub addr: NameAddr<'a>,
}

/// RFC 8599 push parameters carried in a Contact URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushParams<'a> {
    pub provider: &'a str,
    pub prid: Option<&'a str>,
    pub param: Option<&'a str>,
}

impl<'a> ContactValue<'a> {
    pub fn parse(value: &'a str) -> Result<ContactValue<'a>, ValueError> {
        if scan::trim(value) == "*" {
            return Ok(ContactValue::Star);
        }
        NameAddr::parse(value).map(|addr| ContactValue::Addr(Contact { addr }))
    }
}

impl<'a> Contact<'a> {
    /// The `expires` header parameter in seconds (values beyond u32 saturate, as RFC 3261 §10.2.1 asks).
    pub fn expires(&self) -> Option<u32> {
        let v = self.addr.params.value("expires")?;
        let n = scan::parse_decimal(v.as_bytes(), 19)
            .or_else(|| v.bytes().all(|b| b.is_ascii_digit()).then_some(u64::MAX))?;
        Some(u32::try_from(n).unwrap_or(u32::MAX))
    }

    pub fn q(&self) -> Option<&'a str> {
        self.addr.params.value("q")
    }

    /// `pn-provider` / `pn-prid` / `pn-param` from the Contact URI (RFC 8599 §4.1).
    pub fn push_params(&self) -> Option<PushParams<'a>> {
        let uri = self.addr.parsed_uri().ok()?;
        let p = uri.as_sip()?.params;
        Some(PushParams {
            provider: p.get("pn-provider").flatten()?,
            prid: p.get("pn-prid").flatten(),
            param: p.get("pn-param").flatten(),
        })
    }
}

/// `Subscription-State: active|pending|terminated;expires=..;reason=..;retry-after=..` (RFC 6665).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionState<'a> {
    pub state: &'a str,
    pub params: Params<'a>,
}

impl<'a> SubscriptionState<'a> {
    pub fn parse(value: &'a str) -> Result<SubscriptionState<'a>, ValueError> {
        let (state, params) = scan::split_at_byte(value, b';');
        let state = scan::trim(state);
        if !scan::is_token_str(state) {
            return Err(ValueError::Malformed("Subscription-State"));
        }
        Ok(SubscriptionState {
            state,
            params: Params::from_tail(params),
        })
    }

    pub fn is_terminated(&self) -> bool {
        self.state.eq_ignore_ascii_case("terminated")
    }

    pub fn reason(&self) -> Option<&'a str> {
        self.params.value("reason")
    }

    pub fn expires(&self) -> Option<u32> {
        self.params.value("expires").and_then(|v| v.parse().ok())
    }

    pub fn retry_after(&self) -> Option<u32> {
        self.params.value("retry-after").and_then(|v| v.parse().ok())
    }
}

/// `ms-diagnostics[-public]: <id>;reason="<text>";source="<fqdn>";name="value"...` (MS-OCER).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diagnostic<'a> {
    pub id: u32,
    pub params: Params<'a>,
}

impl<'a> Diagnostic<'a> {
    pub fn parse(value: &'a str) -> Result<Diagnostic<'a>, ValueError> {
        let (id, params) = scan::split_at_byte(value, b';');
        let id = scan::parse_decimal(scan::trim(id).as_bytes(), 9)
            .ok_or(ValueError::Malformed("ms-diagnostics id"))?;
        Ok(Diagnostic {
            id: id as u32,
            params: Params::from_tail(params),
        })
    }

    pub fn reason(&self) -> Option<&'a str> {
        self.params.value("reason")
    }

    pub fn source(&self) -> Option<&'a str> {
        self.params.value("source")
    }

    /// Any extra parameter (`domain`, `fqdn1`, `PeerServer`, ...), case-insensitive, unquoted.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.value(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_respects_quotes_and_angles() {
        let v: Vec<_> = split_values(r#""a, b" <sip:x@y;p=1,2>;q=1 , <sip:z@w>"#).collect();
        assert_eq!(v, [r#""a, b" <sip:x@y;p=1,2>;q=1"#, "<sip:z@w>"]);
        let v: Vec<_> = split_values(";;,;,,").collect();
        assert_eq!(v, [";;", ";", "", ""]);
    }

    #[test]
    fn contact_forms() {
        assert_eq!(ContactValue::parse(" * ").unwrap(), ContactValue::Star);
        let ContactValue::Addr(c) = ContactValue::parse(
            "<sip:alice@192.0.2.4;pn-provider=apns;pn-prid=00fc13adff78512;pn-param=ABCD.com.example.voip>;expires=3600;q=0.7",
        )
        .unwrap() else {
            panic!("not an address")
        };
        assert_eq!(c.expires(), Some(3600));
        assert_eq!(c.q(), Some("0.7"));
        let p = c.push_params().unwrap();
        assert_eq!(
            (p.provider, p.prid, p.param),
            ("apns", Some("00fc13adff78512"), Some("ABCD.com.example.voip"))
        );
        let ContactValue::Addr(c) = ContactValue::parse("<sip:a@b>;expires=280297596632815").unwrap() else {
            panic!()
        };
        assert_eq!(c.expires(), Some(u32::MAX));
        assert_eq!(c.push_params(), None);
    }

    #[test]
    fn subscription_state_and_diagnostics() {
        let s = SubscriptionState::parse("terminated;reason=deactivated;retry-after=0").unwrap();
        assert!(s.is_terminated());
        assert_eq!(s.reason(), Some("deactivated"));
        assert_eq!(s.retry_after(), Some(0));
        assert!(SubscriptionState::parse("").is_err());

        let d = Diagnostic::parse(
            r#"1008;reason="Unable to resolve DNS SRV record";source="edge.example.com";domain="push.lync.com""#,
        )
        .unwrap();
        assert_eq!(d.id, 1008);
        assert_eq!(d.reason(), Some("Unable to resolve DNS SRV record"));
        assert_eq!(d.source(), Some("edge.example.com"));
        assert_eq!(d.param("DOMAIN"), Some("push.lync.com"));
        assert!(Diagnostic::parse("x;reason=1").is_err());
    }
}
