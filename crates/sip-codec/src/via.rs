//! One `Via` value (RFC 3261 §20.42, §18.2.2, RFC 3581 rport): sent-protocol, sent-by and parameters.
//! `SLASH` may carry whitespace and folds (`SIP  /   2.0 / UDP`), so the protocol is cut on `/`.

use crate::error::ValueError;
use crate::params::Params;
use crate::scan;
use crate::uri::{parse_host, split_host_port, Host};

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

    /// RFC 3581: `None` absent, `Some(None)` requested (flag), `Some(Some(port))` filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params.get("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    pub fn maddr(&self) -> Option<&'a str> {
        self.params.get("maddr").flatten()
    }

    /// Strict check: sent-by host syntax and parameter syntax.
    pub fn validate(&self) -> Result<(), ValueError> {
        parse_host(self.host).map(|_: Host<'_>| ())?;
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
