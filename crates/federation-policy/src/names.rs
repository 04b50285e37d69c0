//! Validated names: [`DomainName`] (a SIP domain, lower-cased, no port) and [`Fqdn`] (a host with an
//! optional `:port`, default 5061). Everything in the policy compares these, never raw strings, so case
//! and trailing dots are settled once, at the edge of the crate.

use std::fmt;
use std::sync::Arc;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("{0:?} is longer than 253 octets")]
    TooLong(String),
    #[error("{0:?} has an empty label or a label longer than 63 octets")]
    BadLabel(String),
    #[error("{0:?} contains a character that is not a letter, digit, '-', '_' or '.'")]
    BadCharacter(String),
    #[error("{0:?} has a port that is not a number in 1..=65535")]
    BadPort(String),
    #[error("{0:?} is a wildcard; federation names must be exact")]
    Wildcard(String),
}

/// A DNS domain name used as a SIP domain: lower-case ASCII, no trailing dot, no port. Shared text:
/// a clone (a route decision's proxy FQDN, a next hop kept by a transaction) copies a pointer, not
/// the name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(Arc<str>);

impl DomainName {
    pub fn parse(s: &str) -> Result<DomainName, NameError> {
        let t = s.trim().trim_end_matches('.');
        if t.is_empty() {
            return Err(NameError::Empty);
        }
        if t.starts_with("*.") || t.contains('*') {
            return Err(NameError::Wildcard(s.to_owned()));
        }
        if t.len() > 253 {
            return Err(NameError::TooLong(s.to_owned()));
        }
        for label in t.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(NameError::BadLabel(s.to_owned()));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(NameError::BadCharacter(s.to_owned()));
            }
        }
        if t.bytes().any(|b| b.is_ascii_uppercase()) {
            Ok(DomainName(Arc::from(t.to_ascii_lowercase())))
        } else {
            Ok(DomainName(Arc::from(t)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `host` as written (surrounding spaces, a trailing dot and case ignored, as `parse`
    /// ignores them) is this name. No `DomainName` is made of it: the edge asks on every request.
    pub fn is_host(&self, host: &str) -> bool {
        self.0.eq_ignore_ascii_case(host.trim().trim_end_matches('.'))
    }

    /// `self` equals `parent` or is a subdomain of it (`a.b.example.com` is within `example.com`).
    pub fn is_within(&self, parent: &DomainName) -> bool {
        self.0 == parent.0
            || (self.0.len() > parent.0.len()
                && self.0.ends_with(&*parent.0)
                && self.0.as_bytes().get(self.0.len() - parent.0.len() - 1) == Some(&b'.'))
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The default port of SIP over TLS.
pub const SIP_TLS_PORT: u16 = 5061;

/// A server name with an optional port: `sipfed.online.lync.com`, `edge.partner.example:5062`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fqdn {
    host: DomainName,
    port: Option<u16>,
}

impl Fqdn {
    pub fn parse(s: &str) -> Result<Fqdn, NameError> {
        let t = s.trim();
        let (host, port) = match t.rsplit_once(':') {
            Some((h, p)) => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| NameError::BadPort(s.to_owned()))?;
                (h, Some(port))
            }
            None => (t, None),
        };
        Ok(Fqdn {
            host: DomainName::parse(host)?,
            port,
        })
    }

    pub fn new(host: DomainName, port: Option<u16>) -> Fqdn {
        Fqdn { host, port }
    }

    pub fn host(&self) -> &DomainName {
        &self.host
    }

    /// The port written, or 5061.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(SIP_TLS_PORT)
    }

    pub fn explicit_port(&self) -> Option<u16> {
        self.port
    }

    /// Whether a host name (an SRV target, a certificate SAN) names this server; ports are not compared.
    pub fn is_host(&self, name: &str) -> bool {
        self.host.is_host(name)
    }
}

impl fmt::Display for Fqdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_fold_case_and_trailing_dot() {
        let d = DomainName::parse(" Push.Lync.COM. ").unwrap();
        assert_eq!(d.as_str(), "push.lync.com");
        assert_eq!(d.to_string(), "push.lync.com");
        for bad in [
            "",
            ".",
            "a..b",
            "exa mple.com",
            "*.example.com",
            "ex*ample.com",
            "a:5061",
        ] {
            assert!(DomainName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(DomainName::parse(&"a".repeat(64)).is_err());
        assert!(DomainName::parse(&format!("{}.com", "a.".repeat(130))).is_err());
    }

    #[test]
    fn subdomain_rule() {
        let d = |s| DomainName::parse(s).unwrap();
        assert!(d("example.com").is_within(&d("example.com")));
        assert!(d("sip.example.com").is_within(&d("example.com")));
        assert!(d("a.b.example.com").is_within(&d("example.com")));
        assert!(!d("badexample.com").is_within(&d("example.com")));
        assert!(!d("example.com").is_within(&d("sip.example.com")));
        assert!(!d("example.com.evil").is_within(&d("example.com")));
    }

    #[test]
    fn fqdn_ports() {
        let f = Fqdn::parse("sipfed.online.lync.com").unwrap();
        assert_eq!(f.port(), 5061);
        assert_eq!(f.explicit_port(), None);
        let f = Fqdn::parse("Edge.Partner.example:5062").unwrap();
        assert_eq!((f.host().as_str(), f.port()), ("edge.partner.example", 5062));
        assert_eq!(f.to_string(), "edge.partner.example:5062");
        assert!(f.is_host("EDGE.partner.example."));
        assert!(!f.is_host("partner.example"));
        for bad in ["x:0", "x:70000", "x:", "x:y", ":5061"] {
            assert!(Fqdn::parse(bad).is_err(), "{bad:?}");
        }
    }
}
