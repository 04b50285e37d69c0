//! One `Via` value (RFC 3261 §20.42, §18.2.2, RFC 3581 rport): sent-protocol, sent-by and parameters.
//! `SLASH` may carry whitespace and folds (`SIP  /   2.0 / UDP`), so the protocol is cut on `/`.
//! The `received` address is read with or without `[ ]`, as RFC 5118 §4.5 asks.

use std::net::{IpAddr, Ipv4Addr};

use crate::error::ValueError;
use crate::params::Params;
use crate::scan;
use crate::uri::{parse_host, parse_ipv6, split_host_port, Host};

/// The RFC 3261 magic cookie every compliant branch starts with.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// `SIP` in `SIP/2.0/TLS`.
    pub protocol_name: &'a str,
    pub protocol_version: &'a str,
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`, ... as written.
    pub transport: &'a str,
    /// The sent-by host as written (IPv6 with brackets when the sender used them).
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    pub fn parse(value: &'a str) -> Result<Via<'a>, ValueError> {
        let v = scan::trim(value);
        if v.is_empty() {
            return Err(ValueError::Empty);
        }
        let (name, rest) = scan::split_at_byte(v, b'/');
        let (version, rest) = scan::split_at_byte(rest.ok_or(ValueError::Malformed("Via protocol"))?, b'/');
        let rest = scan::trim(rest.ok_or(ValueError::Malformed("Via protocol"))?);
        let (protocol_name, protocol_version) = (scan::trim(name), scan::trim(version));
        let t_end = rest
            .bytes()
            .position(|b| !scan::is_token(b))
            .unwrap_or(rest.len());
        let transport = rest.get(..t_end).unwrap_or("");
        let after = rest.get(t_end..).unwrap_or("");
        if !scan::is_token_str(protocol_name)
            || !scan::is_token_str(protocol_version)
            || !scan::is_token_str(transport)
            || !after.starts_with(|c: char| c.is_ascii() && scan::is_lws(c as u8))
        {
            return Err(ValueError::Malformed("Via sent-protocol"));
        }
        let (sent_by, params) = scan::split_at_byte(after, b';');
        let sent_by = scan::trim(sent_by);
        let (host, port) = split_sent_by(sent_by)?;
        Ok(Via {
            protocol_name,
            protocol_version,
            transport,
            host,
            port,
            params: Params::from_tail(params),
        })
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// Whether the branch carries the RFC 3261 magic cookie (else: an RFC 2543 peer).
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(BRANCH_COOKIE))
    }

    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// The `received` address. RFC 3261 writes it bare (`IPv4address / IPv6address`), but senders
    /// also bracket an IPv6 one, and RFC 5118 §4.5 says to accept both; RFC 5118 §4.10's extra colon
    /// is tolerated as in a host. `None` when there is no `received` value.
    pub fn received_addr(&self) -> Option<Result<IpAddr, ValueError>> {
        let v = self.received()?;
        let bad = ValueError::Malformed("received address");
        Some(match v.strip_prefix('[') {
            Some(inner) => inner
                .strip_suffix(']')
                .and_then(parse_ipv6)
                .map(IpAddr::V6)
                .ok_or(bad),
            None if v.contains(':') => parse_ipv6(v).map(IpAddr::V6).ok_or(bad),
            None => v.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| bad),
        })
    }

    /// RFC 3581: `None` absent, `Some(None)` requested (flag), `Some(Some(port))` filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params.get("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    pub fn maddr(&self) -> Option<&'a str> {
        self.params.get("maddr").flatten()
    }

    /// The sent-by host read as a domain, an IPv4 address or a bracketed IPv6 reference.
    pub fn sent_by_host(&self) -> Result<Host<'a>, ValueError> {
        parse_host(self.host)
    }

    /// Strict check: sent-by host syntax and parameter syntax.
    pub fn validate(&self) -> Result<(), ValueError> {
        self.sent_by_host()?;
        self.params.validate()
    }
}

/// `host[:port]`. Liberal on one real-world deviation: an unbracketed IPv6 address, with or without a
/// trailing `:port` (seen from Thomson phones in the corpus).
fn split_sent_by(s: &str) -> Result<(&str, Option<u16>), ValueError> {
    if s.bytes().filter(|&b| b == b':').count() > 1 && !s.starts_with('[') {
        if s.parse::<std::net::Ipv6Addr>().is_ok() {
            return Ok((s, None));
        }
        let (h, p) = s.rsplit_once(':').ok_or(ValueError::Malformed("Via sent-by"))?;
        if h.parse::<std::net::Ipv6Addr>().is_ok() {
            let port = p.parse().map_err(|_| ValueError::Malformed("Via port"))?;
            return Ok((h, Some(port)));
        }
        return Err(ValueError::Malformed("Via sent-by"));
    }
    let (host, port) = split_host_port(s)?;
    if host.is_empty() {
        return Err(ValueError::Malformed("Via sent-by"));
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_protocol_and_params() {
        let v = Via::parse("SIP  /   2.0\r\n  /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(
            (v.protocol_name, v.protocol_version, v.transport),
            ("SIP", "2.0", "UDP")
        );
        assert_eq!(v.host, "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.is_rfc3261_branch());
        v.validate().unwrap();

        let v =
            Via::parse("SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bK1;rport;received=2001:db8::1").unwrap();
        assert_eq!(v.host, "[2001:db8::9]");
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.rport(), Some(None));
        assert!(v.is_rfc3261_branch());
        assert_eq!(v.received(), Some("2001:db8::1"));

        let v = Via::parse("SIP/2.0/UDP 10.0.0.1:5060;rport=1234;maddr=224.2.0.1").unwrap();
        assert_eq!(v.rport(), Some(Some(1234)));
        assert_eq!(v.maddr(), Some("224.2.0.1"));
    }

    #[test]
    fn received_with_or_without_brackets() {
        let addr = |via: &str| Via::parse(via).unwrap().received_addr();
        let v6: IpAddr = "2001:db8::9:255".parse().unwrap();
        assert_eq!(addr("SIP/2.0/UDP h;received=[2001:db8::9:255]"), Some(Ok(v6)));
        assert_eq!(addr("SIP/2.0/UDP h;received=2001:db8::9:255"), Some(Ok(v6)));
        let v4_tail: IpAddr = "2001:db8::192.0.2.1".parse().unwrap();
        assert_eq!(
            addr("SIP/2.0/UDP h;received=[2001:db8:::192.0.2.1]"),
            Some(Ok(v4_tail))
        );
        assert_eq!(
            addr("SIP/2.0/UDP h;received=192.0.2.200"),
            Some(Ok(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200))))
        );
        assert_eq!(addr("SIP/2.0/UDP h;branch=z9hG4bK1"), None);
        for bad in [
            "[2001:db8::9:255",
            "[192.0.2.1]",
            "host.example.com",
            "2001:db8::::1",
            "1.2.3",
        ] {
            assert_eq!(
                addr(&format!("SIP/2.0/UDP h;received={bad}")),
                Some(Err(ValueError::Malformed("received address"))),
                "{bad}"
            );
        }
    }

    #[test]
    fn sent_by_host_is_typed() {
        fn host(via: &str) -> Result<Host<'_>, ValueError> {
            Via::parse(via).unwrap().sent_by_host()
        }
        assert_eq!(
            host("SIP/2.0/UDP [2001:db8::9:1]:6050"),
            Ok(Host::Ipv6("2001:db8::9:1".parse().unwrap()))
        );
        assert_eq!(
            host("SIP/2.0/UDP 192.0.2.1"),
            Ok(Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_eq!(
            host("SIP/2.0/UDP lab1.east.example.com"),
            Ok(Host::Domain("lab1.east.example.com"))
        );
    }

    #[test]
    fn unbracketed_ipv6_is_tolerated() {
        let v = Via::parse("SIP/2.0/UDP fe80:0:0:0:21a:a0ff:fe07:32e0:5060;branch=z9hG4bK1").unwrap();
        assert_eq!(v.host, "fe80:0:0:0:21a:a0ff:fe07:32e0");
        assert_eq!(v.port, Some(5060));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "SIP/2.0",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "SIP/2.0/UDP h:99999",
            "SIP/2.0 UDP h",
            "SIP/2.0/UDPh",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;")
            .unwrap()
            .validate()
            .is_err());
        assert!(Via::parse("SIP/2.0/UDP bad_host!;branch=1")
            .unwrap()
            .validate()
            .is_err());
    }
}
