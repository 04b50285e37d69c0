//! [`PolicyBuilder`] → [`Policy`]: the immutable snapshot every decision reads. `build()` checks the
//! rules from the field and reports every violation at once: a domain both allowed and blocked; an
//! allowed or blocked domain listed twice; two hosted providers with one name or one proxy FQDN (one
//! relationship per provider); a known server listed twice with different versions (the field bug:
//! both entries were silently dropped and routing to that server broke).

use std::collections::BTreeMap;

use crate::im_filter::ImFilter;
use crate::limits::DiscoveryLimits;
use crate::names::{DomainName, Fqdn};

/// How a hosted provider's traffic is trusted (Lync's `VerificationLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerificationLevel {
    /// Messages from the provider are taken as verified.
    #[default]
    AlwaysVerifiable,
    /// Verified only when the provider says so.
    UseSourceVerification,
    /// Never treated as verified.
    AlwaysUnverifiable,
}

impl VerificationLevel {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "alwaysverifiable" | "always_verifiable" => Some(Self::AlwaysVerifiable),
            "usesourceverification" | "use_source_verification" => Some(Self::UseSourceVerification),
            "alwaysunverifiable" | "always_unverifiable" => Some(Self::AlwaysUnverifiable),
            _ => None,
        }
    }

    /// As the configuration (and Lync) writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlwaysVerifiable => "AlwaysVerifiable",
            Self::UseSourceVerification => "UseSourceVerification",
            Self::AlwaysUnverifiable => "AlwaysUnverifiable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedDomain {
    pub domain: DomainName,
    /// When set, traffic for the domain goes to this server, without SRV.
    pub proxy_fqdn: Option<Fqdn>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedProvider {
    pub name: String,
    pub proxy_fqdn: Fqdn,
    pub enabled: bool,
    pub verification_level: VerificationLevel,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownServer {
    pub fqdn: Fqdn,
    pub version: String,
}

/// How the edge relates to the peer a request goes to or comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relationship {
    /// On the allowed list (pinned or by SRV).
    AllowedPartner,
    /// Through an enabled hosted provider (name kept for logs and metric labels).
    HostedProvider(String),
    /// Unlisted, found through SRV with partner discovery on; subject to the discovery limits.
    DiscoveredPartner,
}

impl std::fmt::Display for Relationship {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Relationship::AllowedPartner => f.write_str("allowed partner"),
            Relationship::HostedProvider(name) => write!(f, "hosted provider {name}"),
            Relationship::DiscoveredPartner => f.write_str("discovered partner"),
        }
    }
}

/// A contradiction in the configuration, naming the entries involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("domain {0} is both allowed and blocked")]
    AllowedAndBlocked(DomainName),
    #[error("domain {0} is listed twice in the allowed list")]
    DuplicateAllowed(DomainName),
    #[error("domain {0} is listed twice in the blocked list")]
    DuplicateBlocked(DomainName),
    #[error("our own SIP domain {0} is also on the federation allowed or blocked list")]
    OwnDomainListed(DomainName),
    #[error("hosted providers {first:?} and {second:?} share the name or proxy FQDN {key}: one relationship per provider")]
    DuplicateProvider {
        first: String,
        second: String,
        key: String,
    },
    #[error(
        "known server {fqdn} is listed twice with different versions ({first_version:?} and {second_version:?}): \
         keep exactly one entry per FQDN"
    )]
    KnownServerConflict {
        fqdn: Fqdn,
        first_version: String,
        second_version: String,
    },
}

/// Collects configuration, then [`PolicyBuilder::build`] checks it whole.
#[derive(Debug, Clone, Default)]
pub struct PolicyBuilder {
    edge_fqdn: Option<String>,
    our_domains: Vec<DomainName>,
    allowed: Vec<AllowedDomain>,
    blocked: Vec<DomainName>,
    providers: Vec<HostedProvider>,
    discovery: Option<DiscoveryLimits>,
    known_servers: Vec<KnownServer>,
    im_filter: ImFilter,
}

impl PolicyBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// This edge's FQDN, written as `source` in every `ms-diagnostics` header.
    pub fn edge_fqdn(&mut self, fqdn: &str) -> &mut Self {
        self.edge_fqdn = Some(fqdn.to_owned());
        self
    }

    pub fn our_domain(&mut self, d: DomainName) -> &mut Self {
        self.our_domains.push(d);
        self
    }

    pub fn allow(
        &mut self,
        domain: DomainName,
        proxy_fqdn: Option<Fqdn>,
        comment: Option<String>,
    ) -> &mut Self {
        self.allowed.push(AllowedDomain {
            domain,
            proxy_fqdn,
            comment,
        });
        self
    }

    pub fn block(&mut self, d: DomainName) -> &mut Self {
        self.blocked.push(d);
        self
    }

    pub fn hosted_provider(&mut self, p: HostedProvider) -> &mut Self {
        self.providers.push(p);
        self
    }

    /// Turns partner discovery on with these limits (off unless called).
    pub fn partner_discovery(&mut self, limits: DiscoveryLimits) -> &mut Self {
        self.discovery = Some(limits);
        self
    }

    pub fn known_server(&mut self, fqdn: Fqdn, version: &str) -> &mut Self {
        self.known_servers.push(KnownServer {
            fqdn,
            version: version.to_owned(),
        });
        self
    }

    pub fn im_filter(&mut self, f: ImFilter) -> &mut Self {
        self.im_filter = f;
        self
    }

    /// The snapshot, or every contradiction found.
    pub fn build(&self) -> Result<Policy, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let mut allowed: BTreeMap<DomainName, AllowedDomain> = BTreeMap::new();
        for a in &self.allowed {
            if allowed.insert(a.domain.clone(), a.clone()).is_some() {
                errors.push(PolicyError::DuplicateAllowed(a.domain.clone()));
            }
        }
        let mut blocked = Vec::new();
        for b in &self.blocked {
            if blocked.contains(b) {
                errors.push(PolicyError::DuplicateBlocked(b.clone()));
                continue;
            }
            if allowed.contains_key(b) {
                errors.push(PolicyError::AllowedAndBlocked(b.clone()));
            }
            blocked.push(b.clone());
        }
        for d in &self.our_domains {
            if allowed.contains_key(d) || blocked.contains(d) {
                errors.push(PolicyError::OwnDomainListed(d.clone()));
            }
        }
        for (i, p) in self.providers.iter().enumerate() {
            for q in self.providers.iter().skip(i + 1) {
                let key = if p.name.eq_ignore_ascii_case(&q.name) {
                    Some(p.name.clone())
                } else if p.proxy_fqdn.host() == q.proxy_fqdn.host() {
                    Some(p.proxy_fqdn.host().to_string())
                } else {
                    None
                };
                if let Some(key) = key {
                    errors.push(PolicyError::DuplicateProvider {
                        first: p.name.clone(),
                        second: q.name.clone(),
                        key,
                    });
                }
            }
        }
        let mut known: BTreeMap<DomainName, KnownServer> = BTreeMap::new();
        for k in &self.known_servers {
            match known.get(k.fqdn.host()) {
                Some(prev) if prev.version != k.version => errors.push(PolicyError::KnownServerConflict {
                    fqdn: k.fqdn.clone(),
                    first_version: prev.version.clone(),
                    second_version: k.version.clone(),
                }),
                Some(_) => {}
                None => {
                    known.insert(k.fqdn.host().clone(), k.clone());
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Policy {
            edge_fqdn: self.edge_fqdn.clone().unwrap_or_else(|| "sipedge".to_owned()),
            our_domains: self.our_domains.clone(),
            allowed,
            blocked,
            providers: self.providers.clone(),
            discovery: self.discovery,
            known_servers: known,
            im_filter: self.im_filter.clone(),
        })
    }
}

/// The immutable policy snapshot. Cheap to share (`Arc<Policy>`); a reload builds a new one.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) edge_fqdn: String,
    pub(crate) our_domains: Vec<DomainName>,
    pub(crate) allowed: BTreeMap<DomainName, AllowedDomain>,
    pub(crate) blocked: Vec<DomainName>,
    pub(crate) providers: Vec<HostedProvider>,
    pub(crate) discovery: Option<DiscoveryLimits>,
    pub(crate) known_servers: BTreeMap<DomainName, KnownServer>,
    pub(crate) im_filter: ImFilter,
}

impl Policy {
    pub fn edge_fqdn(&self) -> &str {
        &self.edge_fqdn
    }

    pub fn is_our_domain(&self, d: &DomainName) -> bool {
        self.our_domains.contains(d)
    }

    /// [`Policy::is_our_domain`] of a host as written, without making a [`DomainName`] of it: the
    /// same answer (our domains are valid names, so a host equal to one of them, ignoring case and
    /// a trailing dot, is one), with no allocation.
    pub fn is_our_host(&self, host: &str) -> bool {
        self.our_domains.iter().any(|d| d.is_host(host))
    }

    /// Blocked: the domain itself or a parent domain is on the blocked list.
    pub fn is_blocked(&self, d: &DomainName) -> bool {
        self.blocked.iter().any(|b| d.is_within(b))
    }

    /// Our own SIP domains (`edge.sip_domains`).
    pub fn our_domains(&self) -> &[DomainName] {
        &self.our_domains
    }

    /// The blocked list, as configured.
    pub fn blocked_domains(&self) -> &[DomainName] {
        &self.blocked
    }

    pub fn allowed(&self, d: &DomainName) -> Option<&AllowedDomain> {
        self.allowed.get(d)
    }

    pub fn allowed_domains(&self) -> impl Iterator<Item = &AllowedDomain> {
        self.allowed.values()
    }

    /// The enabled hosted provider whose proxy FQDN is `host`.
    pub fn enabled_provider_for_host(&self, host: &str) -> Option<&HostedProvider> {
        self.providers
            .iter()
            .find(|p| p.enabled && p.proxy_fqdn.is_host(host))
    }

    pub fn providers(&self) -> &[HostedProvider] {
        &self.providers
    }

    pub fn discovery(&self) -> Option<&DiscoveryLimits> {
        self.discovery.as_ref()
    }

    /// The known server entry for a client certificate identity (internal side).
    pub fn known_server(&self, host: &str) -> Option<&KnownServer> {
        DomainName::parse(host)
            .ok()
            .and_then(|h| self.known_servers.get(&h))
    }

    pub fn known_servers(&self) -> impl Iterator<Item = &KnownServer> {
        self.known_servers.values()
    }

    pub fn im_filter(&self) -> &ImFilter {
        &self.im_filter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> DomainName {
        DomainName::parse(s).unwrap()
    }
    fn f(s: &str) -> Fqdn {
        Fqdn::parse(s).unwrap()
    }

    #[test]
    fn a_host_is_ours_exactly_when_its_domain_name_is() {
        let mut b = PolicyBuilder::new();
        b.edge_fqdn("edge.corp.example")
            .our_domain(d("corp.example"))
            .our_domain(d("Sub.Corp.Example"));
        let p = b.build().unwrap();
        for host in [
            "corp.example",
            "CORP.example",
            "corp.example.",
            " corp.example ",
            "sub.corp.example",
            "x.corp.example",
            "example",
            "corp.example.org",
            "corp..example",
            "192.0.2.1",
            "",
            "*.corp.example",
            "c\u{f6}rp.example",
        ] {
            let by_name = DomainName::parse(host).is_ok_and(|n| p.is_our_domain(&n));
            assert_eq!(p.is_our_host(host), by_name, "{host:?}");
        }
    }

    #[test]
    fn every_contradiction_is_reported_at_once() {
        let mut b = PolicyBuilder::new();
        b.our_domain(d("corp.example"))
            .allow(d("partner.example"), None, None)
            .allow(d("Partner.Example"), Some(f("edge.partner.example")), None)
            .block(d("partner.example"))
            .block(d("corp.example"))
            .block(d("evil.example"))
            .block(d("evil.example"))
            .hosted_provider(HostedProvider {
                name: "LyncOnline".into(),
                proxy_fqdn: f("sipfed.online.lync.com"),
                enabled: true,
                verification_level: VerificationLevel::AlwaysVerifiable,
            })
            .hosted_provider(HostedProvider {
                name: "Other".into(),
                proxy_fqdn: f("SIPFED.online.lync.com:5061"),
                enabled: false,
                verification_level: VerificationLevel::AlwaysUnverifiable,
            })
            .known_server(f("fe1.corp.example"), "7.0")
            .known_server(f("fe1.corp.example"), "8.0")
            .known_server(f("fe2.corp.example"), "8.0")
            .known_server(f("fe2.corp.example"), "8.0");
        let errors = b.build().unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 6, "{text:#?}");
        assert!(errors.contains(&PolicyError::DuplicateAllowed(d("partner.example"))));
        assert!(errors.contains(&PolicyError::AllowedAndBlocked(d("partner.example"))));
        assert!(errors.contains(&PolicyError::DuplicateBlocked(d("evil.example"))));
        assert!(errors.contains(&PolicyError::OwnDomainListed(d("corp.example"))));
        assert!(text.iter().any(|t| t.contains("\"LyncOnline\" and \"Other\"")));
        let ks = text.iter().find(|t| t.starts_with("known server")).unwrap();
        assert!(
            ks.contains("fe1.corp.example") && ks.contains("\"7.0\"") && ks.contains("\"8.0\""),
            "{ks}"
        );
    }

    #[test]
    fn lookups_on_a_valid_snapshot() {
        let mut b = PolicyBuilder::new();
        b.edge_fqdn("edge.corp.example")
            .our_domain(d("corp.example"))
            .block(d("evil.example"))
            .known_server(f("fe1.corp.example"), "8.0");
        let p = b.build().unwrap();
        assert_eq!(p.edge_fqdn(), "edge.corp.example");
        assert!(p.is_blocked(&d("evil.example")));
        assert!(p.is_blocked(&d("sip.evil.example")));
        assert!(!p.is_blocked(&d("notevil.example")));
        assert!(p.is_our_domain(&d("corp.example")));
        assert_eq!(p.known_server("FE1.corp.example").unwrap().version, "8.0");
        assert!(p.known_server("fe9.corp.example").is_none());
        assert_eq!(
            VerificationLevel::parse("AlwaysVerifiable"),
            Some(VerificationLevel::AlwaysVerifiable)
        );
        assert_eq!(VerificationLevel::parse("sometimes"), None);
    }
}
