//! `sipedge explain-route DOMAIN --config FILE`: performs the real lookups and prints every step
//! of the federation decision (docs/architecture.md, Federation decision) — which list matched,
//! the SRV answer, how each target was judged, the chosen targets with their addresses and the
//! certificate each must present — then the verdict with the diagnostic an operator would see.
//! Exit 0 when routable, 1 when not.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use edge_core::proxy::io::SrvResult;
use federation_policy::{DomainName, OutboundVerdict, Policy, SrvAnswer, SrvRecord};

use crate::config::Config;

/// The lookups explain-route needs (real DNS in the binary, fixed answers in tests).
pub trait Lookups {
    fn srv(&mut self, name: &str) -> SrvResult;
    fn hosts(&mut self, host: &str) -> Result<Vec<IpAddr>, HostsError>;
}

/// Why a target's addresses could not be looked up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostsError {
    /// The resolver answered an address question with SRV records.
    #[error("unexpected SRV answer")]
    UnexpectedSrv,
    /// The lookup failed: the resolver's own reason (no answer in time, refused, SERVFAIL).
    #[error("{0}")]
    Failed(String),
}

pub fn run(domain: &str, config_path: &Path) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(issues) => {
            for i in &issues {
                println!("error: {i}");
            }
            println!("invalid: {} ({} errors)", config_path.display(), issues.len());
            return ExitCode::FAILURE;
        }
    };
    let mut lookups = crate::dns_lookups::BlockingDns::from_config(&config);
    let (text, routable) = explain(domain, &config, config.policy(), &mut lookups);
    print!("{text}");
    if routable {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The whole explanation, and whether the domain is routable.
pub fn explain(domain: &str, config: &Config, policy: &Policy, dns: &mut dyn Lookups) -> (String, bool) {
    let mut out = String::new();
    let o = &mut out;
    let Ok(d) = DomainName::parse(domain) else {
        let _ = writeln!(o, "domain        : {domain:?} is not a valid domain name");
        return (out, false);
    };
    let _ = writeln!(o, "domain        : {d}");
    let _ = writeln!(o, "our domain    : {}", yes_no(policy.is_our_domain(&d)));
    let _ = writeln!(o, "blocked       : {}", yes_no(policy.is_blocked(&d)));
    match policy.allowed(&d) {
        Some(a) => {
            let pin = a
                .proxy_fqdn
                .as_ref()
                .map_or("not pinned: DNS SRV decides".to_owned(), |f| {
                    format!("pinned to {f}")
                });
            let _ = writeln!(o, "allowed       : yes ({pin})");
        }
        None => {
            let _ = writeln!(o, "allowed       : no (not on federation.allowed)");
        }
    }
    let _ = writeln!(
        o,
        "discovery     : {}",
        if policy.discovery().is_some() { "on" } else { "off" }
    );
    let mut verdict = policy.decide_outbound(&d, SrvAnswer::NotLookedUp);
    let srv_result;
    if let OutboundVerdict::LookupSrv { name } = &verdict {
        srv_result = dns.srv(name);
        match &srv_result {
            SrvResult::Records(records) => {
                let _ = writeln!(o, "DNS SRV       : {name}");
                for r in records {
                    let _ = writeln!(
                        o,
                        "  {}:{} priority {} weight {} → {}",
                        r.target.trim_end_matches('.'),
                        r.port,
                        r.priority,
                        r.weight,
                        judge(policy, &d, r)
                    );
                }
            }
            SrvResult::NoRecord => {
                let _ = writeln!(o, "DNS SRV       : {name}: no record (NXDOMAIN or no SRV data)");
            }
            SrvResult::Failed(e) => {
                let _ = writeln!(o, "DNS SRV       : {name}: lookup failed: {e}");
            }
        }
        verdict = policy.decide_outbound(&d, srv_result.as_answer());
    }
    let targets: Vec<(String, u16, String)> = match &verdict {
        OutboundVerdict::RoutePinned { fqdn } => vec![(
            fqdn.host().to_string(),
            fqdn.port(),
            "allowed partner (pinned)".into(),
        )],
        OutboundVerdict::RouteSrv { targets } => targets
            .iter()
            .map(|t| {
                (
                    t.fqdn.host().to_string(),
                    t.fqdn.port(),
                    t.relationship.to_string(),
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    for (host, port, relationship) in &targets {
        let addrs = static_or_dns(config, dns, host);
        let _ = writeln!(o, "target        : {host}:{port} as {relationship}");
        match addrs {
            Ok(a) if !a.is_empty() => {
                let list: Vec<String> = a.iter().map(ToString::to_string).collect();
                let _ = writeln!(o, "  addresses   : {}", list.join(", "));
            }
            Ok(_) => {
                let _ = writeln!(
                    o,
                    "  addresses   : none (A/AAAA empty): the request would get 504 (1014)"
                );
            }
            Err(e) => {
                let _ = writeln!(
                    o,
                    "  addresses   : lookup failed: {e}: the request would get 504 (1014)"
                );
            }
        }
        let _ = writeln!(
            o,
            "  certificate : must name {host} exactly (SAN dNSName; no wildcard) and chain to a trusted root"
        );
    }
    match verdict {
        OutboundVerdict::Refuse(r) => {
            let _ = writeln!(
                o,
                "verdict       : REFUSE {} {}",
                r.status,
                sip_codec::reason_phrase(r.status)
            );
            let _ = writeln!(o, "ms-diagnostics: {}", r.ms_diagnostics(policy.edge_fqdn()));
            let _ = writeln!(o, "log event     : {}: {}", r.event.name, r.event.text);
            (out, false)
        }
        OutboundVerdict::LookupSrv { .. } => {
            let _ = writeln!(o, "verdict       : REFUSE (no SRV answer)");
            (out, false)
        }
        _ => {
            let _ = writeln!(
                o,
                "verdict       : ROUTE to {}",
                targets
                    .iter()
                    .map(|(h, p, _)| format!("{h}:{p}"))
                    .collect::<Vec<_>>()
                    .join(", then ")
            );
            (out, true)
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// How §2 judges one SRV target for `domain`.
fn judge(policy: &Policy, domain: &DomainName, r: &SrvRecord) -> String {
    let Ok(host) = DomainName::parse(&r.target) else {
        return "not a valid host name: ignored".into();
    };
    let allowed = policy.allowed(domain).is_some();
    if let Some(p) = policy.enabled_provider_for_host(host.as_str()) {
        return if allowed {
            format!(
                "hosted provider {} (enabled): acceptable, the domain is allowed",
                p.name
            )
        } else {
            format!(
                "hosted provider {} (enabled): NOT acceptable, a provider is used only for allowed domains",
                p.name
            )
        };
    }
    if let Some(p) = policy
        .providers()
        .iter()
        .find(|p| p.proxy_fqdn.is_host(host.as_str()))
    {
        return format!("hosted provider {} is disabled: not acceptable", p.name);
    }
    match (host.is_within(domain), allowed, policy.discovery().is_some()) {
        (true, true, _) => "in the domain: acceptable as allowed partner".into(),
        (true, false, true) => {
            "in the domain: acceptable as discovered partner (discovery limits apply)".into()
        }
        (true, false, false) => "in the domain, but the domain is not allowed and discovery is off".into(),
        (false, _, _) => format!("outside {domain}: not acceptable (SRV targets must be in the domain)"),
    }
}

fn static_or_dns(config: &Config, dns: &mut dyn Lookups, host: &str) -> Result<Vec<IpAddr>, HostsError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let statics: Vec<IpAddr> = config
        .dns()
        .hosts
        .iter()
        .filter(|h| h.name.as_str() == host)
        .map(|h| h.ip)
        .collect();
    if !statics.is_empty() {
        return Ok(statics);
    }
    dns.hosts(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{Pki, VALID_TOML};

    /// Fixed answers: the unit test of the explanation itself (real DNS is in tests/federation_dns.rs).
    struct Fixed(SrvResult);

    impl Lookups for Fixed {
        fn srv(&mut self, _name: &str) -> SrvResult {
            self.0.clone()
        }
        fn hosts(&mut self, _host: &str) -> Result<Vec<IpAddr>, HostsError> {
            Ok(vec![IpAddr::from([127, 0, 0, 1])])
        }
    }

    #[test]
    fn host_lookup_errors_print_the_resolver_reason() {
        assert_eq!(HostsError::UnexpectedSrv.to_string(), "unexpected SRV answer");
        assert_eq!(
            HostsError::Failed("no answer within 5s".into()).to_string(),
            "no answer within 5s"
        );
    }

    fn sipfed() -> SrvResult {
        SrvResult::Records(vec![SrvRecord {
            priority: 0,
            weight: 0,
            port: 5061,
            target: "sipfed.online.lync.com".into(),
        }])
    }

    #[test]
    fn explains_each_branch() {
        let pki = Pki::with_edge_cert();
        let config = pki.load(VALID_TOML, &[]).unwrap();
        let (text, ok) = explain("push.lync.com", &config, config.policy(), &mut Fixed(sipfed()));
        assert!(ok, "{text}");
        assert!(
            text.contains("hosted provider LyncOnline (enabled): acceptable"),
            "{text}"
        );
        assert!(
            text.contains("certificate : must name sipfed.online.lync.com exactly"),
            "{text}"
        );
        assert!(
            text.contains("verdict       : ROUTE to sipfed.online.lync.com:5061"),
            "{text}"
        );

        let (text, ok) = explain(
            "partner.example",
            &config,
            config.policy(),
            &mut Fixed(SrvResult::NoRecord),
        );
        assert!(
            ok && text.contains("pinned to sip.partner.example:5062") && !text.contains("DNS SRV       :"),
            "{text}"
        );

        let (text, ok) = explain("evil.example", &config, config.policy(), &mut Fixed(sipfed()));
        assert!(
            !ok && text.contains("blocked       : yes") && text.contains("REFUSE 403"),
            "{text}"
        );

        let (text, ok) = explain(
            "unlisted.example",
            &config,
            config.policy(),
            &mut Fixed(SrvResult::NoRecord),
        );
        assert!(
            !ok && text.contains("1008;reason=\"Unable to resolve DNS SRV record\""),
            "{text}"
        );

        let (text, ok) = explain(
            "not a domain",
            &config,
            config.policy(),
            &mut Fixed(SrvResult::NoRecord),
        );
        assert!(!ok && text.contains("is not a valid domain name"), "{text}");
    }
}
