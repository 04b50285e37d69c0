//! URIs (RFC 3261 §19.1, §25.1): SIP/SIPS parsed into borrowed parts; any other scheme kept opaque
//! (`tel:`, `urn:`, `http:` appear in real headers and must pass through a proxy untouched). Also the
//! host grammar Via shares: names, IPv4, `[IPv6]` references with RFC 5118's leniencies and limits.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::ValueError;
use crate::params::Params;
use crate::scan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
}

/// A URI: SIP/SIPS in parts, anything else as `scheme:rest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uri<'a> {
    Sip(SipUri<'a>),
    Other { scheme: &'a str, rest: &'a str },
}

/// The host part of a SIP URI or Via sent-by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    Domain(&'a str),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

/// `sip:user:password@host:port;params?headers`, every part borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    pub scheme: Scheme,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    /// The host as read: RFC 5118 §4.10's `[2001:db8:::192.0.2.1]` is the address `2001:db8::192.0.2.1`.
    pub host: Host<'a>,
    /// The host exactly as written (IPv6 with its brackets, and any extra colon).
    pub host_raw: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
    pub headers: Option<&'a str>,
}

impl<'a> Uri<'a> {
    pub fn parse(s: &'a str) -> Result<Uri<'a>, ValueError> {
        let colon = s.find(':').ok_or(ValueError::Malformed("URI scheme"))?;
        let scheme = s.get(..colon).unwrap_or("");
        let rest = s.get(colon + 1..).unwrap_or("");
        let mut chars = scheme.bytes();
        let valid_scheme = chars.next().is_some_and(|b| b.is_ascii_alphabetic())
            && chars.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !valid_scheme {
            return Err(ValueError::Malformed("URI scheme"));
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_rest(Scheme::Sip, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_rest(Scheme::Sips, rest).map(Uri::Sip)
        } else if rest.is_empty() || rest.bytes().any(|b| b <= b' ' || b == 0x7f) {
            Err(ValueError::Malformed("URI"))
        } else {
            Ok(Uri::Other { scheme, rest })
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }
}

impl<'a> SipUri<'a> {
    pub fn parse(s: &'a str) -> Result<SipUri<'a>, ValueError> {
        match Uri::parse(s)? {
            Uri::Sip(u) => Ok(u),
            Uri::Other { .. } => Err(ValueError::Malformed("not a sip: or sips: URI")),
        }
    }

    fn parse_rest(scheme: Scheme, rest: &'a str) -> Result<SipUri<'a>, ValueError> {
        // The user part may hold `?` and `;` (RFC 4475 intmeth, semiuri) but never an unescaped `@`,
        // which no later part may hold either: the first `@` ends the userinfo.
        let (userinfo, after_user) = match rest.find('@') {
            Some(i) => (rest.get(..i), rest.get(i + 1..).unwrap_or("")),
            None => (None, rest),
        };
        let (hostpart, headers) = scan::split_at_byte(after_user, b'?');
        let (user, password) = match userinfo {
            Some(ui) => {
                let (u, p) = scan::split_at_byte(ui, b':');
                if u.is_empty() || !valid_escaped(u, USER) {
                    return Err(ValueError::Malformed("URI user"));
                }
                if let Some(p) = p {
                    if !valid_escaped(p, PASSWORD) {
                        return Err(ValueError::Malformed("URI password"));
                    }
                }
                (Some(u), p)
            }
            None => (None, None),
        };
        let (hostport, params) = scan::split_at_byte(hostpart, b';');
        let (host_raw, port) = split_host_port(hostport)?;
        let host = parse_host(host_raw)?;
        let params = Params::from_tail(params);
        if let Some(h) = headers {
            if h.is_empty() || !valid_escaped(h, HEADER) {
                return Err(ValueError::Malformed("URI headers"));
            }
        }
        for p in params.iter() {
            let ok = !p.name.is_empty()
                && valid_escaped(p.name, PARAM)
                && p.value.is_none_or(|v| !v.is_empty() && valid_escaped(v, PARAM));
            if !ok {
                return Err(ValueError::Malformed("URI parameter"));
            }
        }
        Ok(SipUri {
            scheme,
            user,
            password,
            host,
            host_raw,
            port,
            params,
            headers,
        })
    }

    /// The user part with `%HH` escapes decoded (RFC 4475 `escnull`: `%00` decodes to a NUL octet).
    pub fn user_unescaped(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(unescape)
    }

    pub fn transport(&self) -> Option<&'a str> {
        self.params.get("transport").flatten()
    }

    pub fn maddr(&self) -> Option<&'a str> {
        self.params.get("maddr").flatten()
    }

    /// Loose routing flag (RFC 3261 §16.12).
    pub fn lr(&self) -> bool {
        self.params.contains("lr")
    }

    /// The host as text for DNS or comparison (IPv6 without brackets).
    pub fn host_str(&self) -> &'a str {
        self.host_raw.trim_start_matches('[').trim_end_matches(']')
    }
}

impl Host<'_> {
    /// Whether this host is the domain `name` (case-insensitive; no subdomain matching here).
    pub fn is_domain(&self, name: &str) -> bool {
        matches!(self, Host::Domain(d) if d.trim_end_matches('.').eq_ignore_ascii_case(name.trim_end_matches('.')))
    }
}

/// `host[:port]` with `[v6]` references; a port must be 1–5 digits within u16.
pub(crate) fn split_host_port(s: &str) -> Result<(&str, Option<u16>), ValueError> {
    let (host, port) = if s.starts_with('[') {
        let close = s.find(']').ok_or(ValueError::Malformed("IPv6 reference"))?;
        let host = s.get(..=close).unwrap_or("");
        match s.get(close + 1..).unwrap_or("") {
            "" => (host, None),
            tail => (
                host,
                Some(tail.strip_prefix(':').ok_or(ValueError::Malformed("host:port"))?),
            ),
        }
    } else {
        // RFC 5118 §4.2: an IPv6 address without its brackets. Its colons would otherwise be read
        // as a host and a bad port; name the real defect.
        if s.bytes().filter(|&b| b == b':').nth(1).is_some() && parse_ipv6(s).is_some() {
            return Err(ValueError::Malformed("IPv6 address without [ ]"));
        }
        scan::split_at_byte(s, b':')
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            scan::parse_decimal(p.as_bytes(), 5)
                .and_then(|n| u16::try_from(n).ok())
                .ok_or(ValueError::Malformed("port"))?,
        ),
    };
    Ok((host, port))
}

pub(crate) fn parse_host(h: &str) -> Result<Host<'_>, ValueError> {
    if let Some(inner) = h.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or(ValueError::Malformed("IPv6 reference"))?;
        return parse_ipv6(inner)
            .map(Host::Ipv6)
            .ok_or(ValueError::Malformed("IPv6 address"));
    }
    if h.is_empty() {
        return Err(ValueError::Malformed("host"));
    }
    if h.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return h
            .parse()
            .map(Host::Ipv4)
            .map_err(|_| ValueError::Malformed("IPv4 address"));
    }
    // Dot-separated labels of alphanumerics, `-` and `_`, none empty; trailing dots ignored.
    let name = h.trim_end_matches('.').as_bytes();
    let mut after_dot = true;
    let mut labels_ok = !name.is_empty();
    for &b in name {
        if b == b'.' {
            labels_ok &= !after_dot;
            after_dot = true;
        } else {
            labels_ok &= char_class(b) & HOST_NAME != 0;
            after_dot = false;
        }
    }
    if labels_ok {
        Ok(Host::Domain(h))
    } else {
        Err(ValueError::Malformed("host name"))
    }
}

/// An IPv6 address as written inside `[ ]`. RFC 3261 §25.1 took its `IPv6address` from RFC 2373,
/// whose `hexpart` may end in `::` before the `":" IPv4address` tail, so `2001:db8:::192.0.2.1`
/// (three colons) is RFC 3261 syntax; RFC 4291 (and RFC 5954, correcting RFC 3261) writes that
/// address `2001:db8::192.0.2.1`. RFC 5118 §4.10: an implementation must tolerate both. So a `:::`
/// directly followed by an IPv4 tail is read as `::`, and the address is whatever the two-colon text
/// names (or nothing, when that is not an address either). That is the only place RFC 3261's
/// grammar puts a third colon: before hex groups, or as `::::`, it is refused as before.
pub(crate) fn parse_ipv6(s: &str) -> Option<Ipv6Addr> {
    if let Ok(addr) = s.parse() {
        return Some(addr);
    }
    let (head, ipv4) = s.split_once(":::")?;
    ipv4.parse::<Ipv4Addr>().ok()?;
    [head, "::", ipv4].concat().parse().ok()
}

// The octet classes of RFC 3261 §25.1 a URI part may hold unescaped, as bits of one table lookup.
/// `unreserved`: alphanumerics and `-_.!~*'()`.
const UNRESERVED: u8 = 1;
/// `user`: unreserved and `&=+$,;?/`.
const USER: u8 = 2;
/// `password`: unreserved and `&=+$,`.
const PASSWORD: u8 = 4;
/// `paramchar`: unreserved and `[]/:&+$`.
const PARAM: u8 = 8;
/// `hnv-unreserved` and friends: unreserved and `[]/?:+$=&`.
const HEADER: u8 = 16;
/// A host name label: alphanumerics, `-` and `_`.
const HOST_NAME: u8 = 32;

// Indexing in a const initialiser runs at compile time: an index out of range is a build error,
// never a panic on wire input.
#[allow(clippy::indexing_slicing)]
const CHAR_CLASS: [u8; 256] = {
    const fn mark(mut t: [u8; 256], set: &[u8], bits: u8) -> [u8; 256] {
        let mut k = 0;
        while k < set.len() {
            t[set[k] as usize] |= bits;
            k += 1;
        }
        t
    }
    let every = UNRESERVED | USER | PASSWORD | PARAM | HEADER;
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        if (b as u8).is_ascii_alphanumeric() {
            t[b] = every | HOST_NAME;
        }
        b += 1;
    }
    t = mark(t, b"-_.!~*'()", every);
    t = mark(t, b"-_", HOST_NAME);
    t = mark(t, b"&=+$,;?/", USER);
    t = mark(t, b"&=+$,", PASSWORD);
    t = mark(t, b"[]/:&+$", PARAM);
    mark(t, b"[]/?:+$=&", HEADER)
};

#[inline]
fn char_class(b: u8) -> u8 {
    CHAR_CLASS.get(usize::from(b)).copied().unwrap_or(0)
}

/// Every octet in class `class` (a [`CHAR_CLASS`] bit), or a `%HH` escape.
fn valid_escaped(s: &str, class: u8) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if char_class(c) & class != 0 {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn unescape(s: &str) -> Cow<'_, [u8]> {
    if !s.contains('%') {
        return Cow::Borrowed(s.as_bytes());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let decoded = (c == b'%')
            .then(|| b.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match decoded {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The class table against RFC 3261 §25.1's sets written out, for every octet.
    #[test]
    fn char_classes_are_the_rfc_sets() {
        let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b);
        for b in 0..=255u8 {
            let has = |bit| char_class(b) & bit != 0;
            assert_eq!(has(UNRESERVED), unreserved(b), "{b}");
            assert_eq!(has(USER), unreserved(b) || b"&=+$,;?/".contains(&b), "{b}");
            assert_eq!(has(PASSWORD), unreserved(b) || b"&=+$,".contains(&b), "{b}");
            assert_eq!(has(PARAM), unreserved(b) || b"[]/:&+$".contains(&b), "{b}");
            assert_eq!(has(HEADER), unreserved(b) || b"[]/?:+$=&".contains(&b), "{b}");
            assert_eq!(
                has(HOST_NAME),
                b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
                "{b}"
            );
        }
    }

    #[test]
    fn host_names_label_by_label() {
        for ok in ["a", "a.b", "a.b.", "a.b..", "x-1_y.example.com", "1a.example"] {
            assert!(matches!(parse_host(ok), Ok(Host::Domain(_))), "{ok}");
        }
        for bad in ["", ".", "..", ".a", "a..b", "a b", "a.b!", "a/.b", "é.example"] {
            assert!(parse_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn full_sip_uri() {
        let u = SipUri::parse("sips:alice:secret@[2001:db8::1]:5061;transport=tls;lr?subject=hi").unwrap();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, Host::Ipv6("2001:db8::1".parse().unwrap()));
        assert_eq!(u.host_str(), "2001:db8::1");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some("tls"));
        assert!(u.lr());
        assert_eq!(u.headers, Some("subject=hi"));
    }

    #[test]
    fn user_with_semicolons_and_escapes() {
        // RFC 4475 semiuri / escnull shapes.
        let u = SipUri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert!(u.params.is_empty());
        let u = SipUri::parse("sip:null-%00-null@example.com").unwrap();
        assert_eq!(u.user_unescaped().unwrap().as_ref(), b"null-\0-null");
        assert!(SipUri::parse("sip:bad%zz@example.com").is_err());
    }

    #[test]
    fn hosts_and_ports() {
        assert_eq!(
            SipUri::parse("sip:192.0.2.1").unwrap().host,
            Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1))
        );
        assert!(SipUri::parse("sip:example.com:70000").is_err());
        assert!(SipUri::parse("sip:example.com:").is_err());
        assert!(SipUri::parse("sip:").is_err());
        assert!(SipUri::parse("sip:exa mple.com").is_err());
        assert!(SipUri::parse("sip:[::1").is_err());
        assert!(SipUri::parse("sip:999.1.1.1").is_err());
        assert!(SipUri::parse("sip:host;=x").is_err());
        assert!(SipUri::parse("sip:host;lr;").is_err());
        let u = SipUri::parse("SIP:Example.COM.").unwrap();
        assert!(u.host.is_domain("example.com"));
    }

    /// RFC 5118 §4.10: RFC 3261's ABNF (`hexpart = hexseq "::"`, then `":" IPv4address`) allows a
    /// third colon before an IPv4 tail; it names the address the RFC 4291 form names.
    #[test]
    fn rfc_3261s_extra_colon_before_an_ipv4_tail_is_tolerated() {
        for (written, means) in [
            ("[2001:db8:::192.0.2.1]", "2001:db8::192.0.2.1"),
            ("[2001:db8::192.0.2.1]", "2001:db8::192.0.2.1"),
            ("[:::192.0.2.1]", "::192.0.2.1"),
            ("[1:2:3:4:5:::192.0.2.1]", "1:2:3:4:5::192.0.2.1"),
            ("[::ffff:192.0.2.2]", "::ffff:192.0.2.2"),
        ] {
            let addr: Ipv6Addr = means.parse().unwrap();
            assert_eq!(parse_host(written), Ok(Host::Ipv6(addr)), "{written}");
        }
        let u = SipUri::parse("sip:user@[2001:db8:::192.0.2.1]:5070").unwrap();
        assert_eq!(u.host, Host::Ipv6("2001:db8::192.0.2.1".parse().unwrap()));
        assert_eq!(u.host_raw, "[2001:db8:::192.0.2.1]");
        assert_eq!(u.port, Some(5070));
    }

    /// Everything else with a run of colons stays refused: the extra colon is only ever the one
    /// between a `::` that ends the hex part and an IPv4 tail, which neither RFC 3261 nor RFC 4291
    /// lets stand before hex groups.
    #[test]
    fn other_colon_runs_are_still_refused() {
        for bad in [
            "[2001:db8::::1]",
            "[:::1]",
            "[2001:db8:::1]",
            "[2001:db8::::192.0.2.1]",
            "[2001:db8:::192.0.2]",
            "[2001:db8:::192.0.2.1:1]",
            "[1:2:3:4:5:6:::192.0.2.1]",
            "[1::2:::192.0.2.1]",
            "[:::]",
        ] {
            assert_eq!(
                parse_host(bad),
                Err(ValueError::Malformed("IPv6 address")),
                "{bad}"
            );
        }
        assert_eq!(
            parse_host("[2001:db8:::192.0.2.1"),
            Err(ValueError::Malformed("IPv6 reference"))
        );
    }

    /// RFC 5118 §4.2: an IPv6 address needs its brackets in a URI; say so rather than "bad port".
    #[test]
    fn an_unbracketed_ipv6_host_is_named_as_such() {
        for bad in [
            "sip:2001:db8::10",
            "sip:user@2001:db8::10",
            "sip:2001:db8::10:5060;lr",
        ] {
            assert_eq!(
                SipUri::parse(bad),
                Err(ValueError::Malformed("IPv6 address without [ ]")),
                "{bad}"
            );
        }
        assert_eq!(
            SipUri::parse("sip:host:50:60"),
            Err(ValueError::Malformed("port"))
        );
    }

    #[test]
    fn other_schemes_are_opaque() {
        assert_eq!(
            Uri::parse("tel:+1-201-555-0123").unwrap(),
            Uri::Other {
                scheme: "tel",
                rest: "+1-201-555-0123"
            }
        );
        assert!(Uri::parse("soap.beep://192.0.2.103:3002").is_ok());
        assert!(Uri::parse("<sip:user@example.com>").is_err());
        assert!(Uri::parse("1abc:x").is_err());
        assert!(Uri::parse("noscheme").is_err());
    }
}
