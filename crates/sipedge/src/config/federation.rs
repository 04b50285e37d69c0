//! The policy snapshot from the configuration: `[federation]`, `[im_filter]`, `edge.fqdn`,
//! `edge.sip_domains` and `internal.known_servers` fed to a `federation_policy::PolicyBuilder`, and
//! every `PolicyError` it returns turned back into an issue at the key path of the entry at fault,
//! naming the other entry involved (both known-server entries, both providers, both list entries).
//! The builder sees only entries that validated, so a bad name and a contradiction are both reported.

use std::collections::BTreeMap;

use federation_policy::{
    DiscoveryLimits, DomainName, FilterAction, Fqdn, HostedProvider, ImFilter, KnownServer, Policy,
    PolicyBuilder, PolicyError, VerificationLevel, LYNC_DEFAULT_PREFIXES,
};

use super::file::*;
use super::validate::{domain_value, fqdn_value, number, required};
use super::Issues;

/// Entries handed to the builder, with their index in the file's list.
type Indexed<T> = Vec<(usize, T)>;

pub(super) fn build(
    file: &FileConfig,
    edge_fqdn: Option<&DomainName>,
    our: &[DomainName],
    known: &[(usize, KnownServer)],
    i: &mut Issues,
) -> Option<Policy> {
    let fed = &file.federation;
    let mut b = PolicyBuilder::new();
    if let Some(f) = edge_fqdn {
        b.edge_fqdn(f.as_str());
    }
    for d in our {
        b.our_domain(d.clone());
    }
    let mut allowed: Indexed<DomainName> = Vec::new();
    for (n, a) in fed.allowed.iter().enumerate() {
        let key = format!("federation.allowed[{n}]");
        let domain = domain_at(&a.domain, &format!("{key}.domain"), "the partner's SIP domain", i);
        let proxy = match &a.proxy_fqdn {
            Some(s) => fqdn_value(s, &format!("{key}.proxy_fqdn"), i).map(Some),
            None => Some(None),
        };
        if let (Some(d), Some(p)) = (domain, proxy) {
            b.allow(d.clone(), p, a.comment.clone());
            allowed.push((n, d));
        }
    }
    let mut blocked: Indexed<DomainName> = Vec::new();
    for (n, x) in fed.blocked.iter().enumerate() {
        let key = format!("federation.blocked[{n}].domain");
        if let Some(d) = domain_at(&x.domain, &key, "the blocked SIP domain", i) {
            b.block(d.clone());
            blocked.push((n, d));
        }
    }
    let providers = providers(&fed.hosted_providers, i);
    for (_, p) in &providers {
        b.hosted_provider(p.clone());
    }
    let enabled = fed.enable_partner_discovery.unwrap_or(false);
    let rate = number(
        fed.discovery_messages_per_second,
        DEFAULT_DISCOVERY_MESSAGES_PER_SECOND,
        "federation.discovery_messages_per_second",
        1,
        100_000,
        i,
    );
    let contacts = number(
        fed.discovery_contacts_per_hour,
        DEFAULT_DISCOVERY_CONTACTS_PER_HOUR,
        "federation.discovery_contacts_per_hour",
        1,
        1_000_000,
        i,
    );
    if let (true, Some(rate), Some(contacts)) = (enabled, rate, contacts) {
        b.partner_discovery(DiscoveryLimits {
            messages_per_second: u32::try_from(rate).unwrap_or(u32::MAX),
            distinct_contacts: u32::try_from(contacts).unwrap_or(u32::MAX),
            contact_window_secs: 3600,
        });
    }
    for (_, k) in known {
        b.known_server(k.fqdn.clone(), &k.version);
    }
    if let Some(filter) = im_filter(&file.im_filter, i) {
        b.im_filter(filter);
    }
    match b.build() {
        Ok(p) => Some(p),
        Err(errors) => {
            let lists = Lists {
                our,
                allowed: &allowed,
                blocked: &blocked,
                providers: &providers,
                known,
                known_file: &file.internal.known_servers,
            };
            lists.report(errors, i);
            None
        }
    }
}

fn domain_at(v: &Option<String>, key: &str, what: &str, i: &mut Issues) -> Option<DomainName> {
    required(v, key, what, i).and_then(|s| domain_value(s, key, i))
}

fn providers(list: &[ProviderFile], i: &mut Issues) -> Indexed<HostedProvider> {
    let mut out = Vec::new();
    for (n, p) in list.iter().enumerate() {
        let key = format!("federation.hosted_providers[{n}]");
        let name = required(&p.name, &format!("{key}.name"), "the provider's name", i).and_then(|s| {
            let s = s.trim();
            if s.is_empty() {
                i.push(format!("{key}.name"), "is empty");
            }
            (!s.is_empty()).then(|| s.to_owned())
        });
        let fqdn: Option<Fqdn> = required(
            &p.proxy_fqdn,
            &format!("{key}.proxy_fqdn"),
            "the provider's edge FQDN",
            i,
        )
        .and_then(|s| fqdn_value(s, &format!("{key}.proxy_fqdn"), i));
        let level = match &p.verification_level {
            None => Some(VerificationLevel::default()),
            Some(s) => VerificationLevel::parse(s.trim()).or_else(|| {
                i.push(
                    format!("{key}.verification_level"),
                    format!("{s:?} is not a level: expected AlwaysVerifiable, UseSourceVerification or AlwaysUnverifiable"),
                );
                None
            }),
        };
        if let (Some(name), Some(proxy_fqdn), Some(verification_level)) = (name, fqdn, level) {
            let enabled = p.enabled.unwrap_or(true);
            out.push((
                n,
                HostedProvider {
                    name,
                    proxy_fqdn,
                    enabled,
                    verification_level,
                },
            ));
        }
    }
    out
}

fn im_filter(f: &ImFilterFile, i: &mut Issues) -> Option<ImFilter> {
    let prefixes: Vec<String> = match &f.blocked_prefixes {
        Some(list) => list.clone(),
        None => LYNC_DEFAULT_PREFIXES.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut ok = true;
    for (n, p) in prefixes.iter().enumerate() {
        let key = format!("im_filter.blocked_prefixes[{n}]");
        if p.trim().is_empty() {
            i.push(key, "is empty: an empty prefix would match every message");
            ok = false;
        } else if p.chars().any(char::is_whitespace) {
            i.push(
                key,
                format!("{p:?} contains whitespace: a prefix matches the start of one word"),
            );
            ok = false;
        }
    }
    let action_text = f.action.as_deref().unwrap_or(DEFAULT_IM_FILTER_ACTION);
    let action = FilterAction::parse(action_text.trim());
    if action.is_none() {
        i.push(
            "im_filter.action",
            format!("{action_text:?} is not an action: expected block, warn or allow"),
        );
    }
    Some(ImFilter::new(prefixes, action?)).filter(|_| ok)
}

/// The validated entries, to find which ones a `PolicyError` is about.
struct Lists<'a> {
    our: &'a [DomainName],
    allowed: &'a [(usize, DomainName)],
    blocked: &'a [(usize, DomainName)],
    providers: &'a [(usize, HostedProvider)],
    known: &'a [(usize, KnownServer)],
    /// The file's entries, for the versions as written (`known` holds them in their shortest form).
    known_file: &'a [KnownServerFile],
}

impl Lists<'_> {
    fn report(&self, errors: Vec<PolicyError>, i: &mut Issues) {
        // The n-th error about one name is about its (n+1)-th entry: the builder reports each repeat.
        let mut seen: BTreeMap<(u8, String), usize> = BTreeMap::new();
        let mut nth = |list: u8, name: &str| {
            let c = seen.entry((list, name.to_owned())).or_insert(0);
            *c += 1;
            *c
        };
        let provider_pairs = self.provider_pairs();
        let mut provider_errors = 0;
        for e in errors {
            match &e {
                PolicyError::DuplicateAllowed(d) => {
                    let at = positions(self.allowed, d);
                    let (first, repeat) = (at.first(), at.get(nth(0, d.as_str())));
                    report_repeat(i, "federation.allowed", first, repeat, &e, |f| {
                        format!("{d} is already listed at federation.allowed[{f}]: one entry per domain")
                    });
                }
                PolicyError::DuplicateBlocked(d) => {
                    let at = positions(self.blocked, d);
                    let (first, repeat) = (at.first(), at.get(nth(1, d.as_str())));
                    report_repeat(i, "federation.blocked", first, repeat, &e, |f| {
                        format!("{d} is already listed at federation.blocked[{f}]: one entry per domain")
                    });
                }
                PolicyError::AllowedAndBlocked(d) => {
                    match (positions(self.blocked, d).first(), positions(self.allowed, d).first()) {
                        (Some(b), Some(a)) => i.push(
                            format!("federation.blocked[{b}].domain"),
                            format!("{d} is also allowed at federation.allowed[{a}]: a domain is either allowed or blocked"),
                        ),
                        _ => i.push("federation.blocked", e.to_string()),
                    }
                }
                PolicyError::OwnDomainListed(d) => {
                    let mut wheres: Vec<String> = positions(self.allowed, d)
                        .iter()
                        .map(|n| format!("federation.allowed[{n}]"))
                        .collect();
                    wheres.extend(
                        positions(self.blocked, d)
                            .iter()
                            .map(|n| format!("federation.blocked[{n}]")),
                    );
                    let key = match self.our.iter().position(|o| o == d) {
                        Some(n) => format!("edge.sip_domains[{n}]"),
                        None => "edge.sip_domains".to_owned(),
                    };
                    i.push(
                        key,
                        format!(
                            "our own SIP domain {d} is also listed at {}",
                            wheres.join(" and ")
                        ),
                    );
                }
                PolicyError::DuplicateProvider { first, second, key } => {
                    match provider_pairs.get(provider_errors) {
                        Some((a, b)) => i.push(
                            format!("federation.hosted_providers[{b}]"),
                            format!(
                                "{second:?} shares the name or proxy FQDN {key} with \
                                 federation.hosted_providers[{a}] ({first:?}): one relationship per provider"
                            ),
                        ),
                        None => i.push("federation.hosted_providers", e.to_string()),
                    }
                    provider_errors += 1;
                }
                PolicyError::KnownServerConflict {
                    fqdn,
                    first_version,
                    second_version,
                } => {
                    let host = fqdn.host();
                    let at: Vec<&(usize, KnownServer)> =
                        self.known.iter().filter(|(_, k)| k.fqdn.host() == host).collect();
                    let first = at.first();
                    let conflicting: Vec<&&(usize, KnownServer)> = at
                        .iter()
                        .filter(|(_, k)| first.is_some_and(|(_, f)| f.version != k.version))
                        .collect();
                    match (first, conflicting.get(nth(2, host.as_str()) - 1)) {
                        (Some((a, ka)), Some((b, kb))) => i.push(
                            format!("internal.known_servers[{b}]"),
                            format!(
                                "{} (version {:?}) conflicts with internal.known_servers[{a}] ({}, version {:?}): \
                                 one FQDN with two versions — Lync silently dropped both entries; keep exactly one",
                                kb.fqdn,
                                self.written_version(*b, kb),
                                ka.fqdn,
                                self.written_version(*a, ka)
                            ),
                        ),
                        _ => i.push(
                            "internal.known_servers",
                            format!("{fqdn}: versions {first_version:?} and {second_version:?} conflict: {e}"),
                        ),
                    }
                }
            }
        }
    }

    /// The version of known server entry `n` as the file wrote it.
    fn written_version<'b>(&'b self, n: usize, k: &'b KnownServer) -> &'b str {
        self.known_file
            .get(n)
            .and_then(|f| f.version.as_deref())
            .map_or(k.version.as_str(), str::trim)
    }

    /// The (first, second) provider pairs the builder compares, in its order.
    fn provider_pairs(&self) -> Vec<(usize, usize)> {
        let mut pairs = Vec::new();
        for (x, (a, p)) in self.providers.iter().enumerate() {
            for (b, q) in self.providers.iter().skip(x + 1) {
                if p.name.eq_ignore_ascii_case(&q.name) || p.proxy_fqdn.host() == q.proxy_fqdn.host() {
                    pairs.push((*a, *b));
                }
            }
        }
        pairs
    }
}

fn positions(list: &[(usize, DomainName)], d: &DomainName) -> Vec<usize> {
    list.iter().filter(|(_, x)| x == d).map(|(n, _)| *n).collect()
}

fn report_repeat(
    i: &mut Issues,
    list: &str,
    first: Option<&usize>,
    repeat: Option<&usize>,
    e: &PolicyError,
    text: impl Fn(usize) -> String,
) {
    match (first, repeat) {
        (Some(f), Some(r)) => i.push(format!("{list}[{r}].domain"), text(*f)),
        _ => i.push(list, e.to_string()),
    }
}
