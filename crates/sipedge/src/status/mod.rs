//! `GET /status` and `GET /status.json` on the metrics listener: the edge's state at a glance for a
//! DMZ without Grafana — listeners and readiness, the configuration generation and the last reload
//! (its errors when it was refused), configured partners with their link state, decisions and
//! subscriptions, discovered partners, hosted providers with their push breaker, the federation
//! links up, the last push probe, certificates with the days left, and the last refusals with their
//! full diagnostics (what an operator would otherwise grep the log for).
//!
//! Built on the metrics thread from what the workers already publish (their stats slots, the same
//! snapshot a scrape reads) and the binary's own state: no worker is asked or blocked. Bounded
//! whatever the configuration: at most [`MAX_ROWS`] rows per table (the rest counted, never
//! listed), the last 50 refusals, the first 20 reload errors — so the page stays under ~250 KiB
//! (measured in `tests/status_page.rs` with 1,000 configured partners). The HTML is one
//! self-contained page (no script, no external asset — the DMZ has no internet) that refreshes
//! itself every [`REFRESH_SECS`] s; everything in it is escaped, since domains, reason phrases and
//! diagnostics come from the network.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use edge_core::proxy::io::Side;
use serde::Serialize;

mod html;
pub use html::html;

use crate::exporter::EdgeMetrics;
use crate::reload::ReloadResult;

/// Rows shown per table at most; the JSON carries the same rows and each table's total.
pub const MAX_ROWS: usize = 200;
/// The page's own refresh interval.
pub const REFRESH_SECS: u32 = 5;

#[derive(Debug, Serialize)]
pub struct Status {
    pub edge: EdgeView,
    pub config: ConfigView,
    pub partners: Table<PartnerView>,
    pub discovered: Table<DiscoveredView>,
    /// `[pool]`: this replica and its sync with Redis (`None`: standalone).
    pub pool: Option<PoolView>,
    pub providers: Table<ProviderView>,
    pub links: Table<LinkView>,
    pub push_probe: ProbeView,
    pub subscriptions: SubscriptionsView,
    pub certificates: Vec<CertificateView>,
    pub recent_refusals: Vec<RefusalView>,
}

/// At most [`MAX_ROWS`] rows and how many there are in all.
#[derive(Debug, Serialize)]
pub struct Table<T> {
    pub total: usize,
    pub rows: Vec<T>,
}

impl<T> Table<T> {
    fn of(all: Vec<T>) -> Table<T> {
        let total = all.len();
        let mut rows = all;
        rows.truncate(MAX_ROWS);
        Table { total, rows }
    }
}

#[derive(Debug, Serialize)]
pub struct EdgeView {
    pub fqdn: String,
    pub version: &'static str,
    pub uptime_secs: u64,
    pub ready: bool,
    pub ready_detail: String,
    pub healthy: bool,
    pub health_detail: String,
    pub listeners: Vec<ListenerView>,
    pub connections_internal: u64,
    pub connections_external: u64,
    pub max_connections: usize,
}

#[derive(Debug, Serialize)]
pub struct ListenerView {
    pub role: &'static str,
    pub addr: String,
}

#[derive(Debug, Serialize)]
pub struct ConfigView {
    pub generation: u64,
    /// `none` (no reload since start), `applied`, `refused`.
    pub last_reload: &'static str,
    pub last_reload_unix_secs: Option<u64>,
    pub last_errors: Vec<String>,
    pub last_error_count: usize,
    pub reloads_applied: u64,
    pub reloads_refused: u64,
    /// Files `run --watch` follows; 0: reload by signal only.
    pub watched_files: usize,
}

#[derive(Debug, Serialize)]
pub struct PoolView {
    pub replica: String,
    /// The Redis URL without its credentials.
    pub redis: String,
    pub redis_up: bool,
    /// Live replicas at the last successful sync (this one included).
    pub replicas: u64,
    /// `divide` or `refuse`: what applies to discovered partners while Redis is away.
    pub redis_down_mode: &'static str,
    /// Why Redis is away and for how long (absent while up).
    pub redis_error: Option<String>,
    pub down_for_secs: Option<u64>,
    pub syncs_ok: u64,
    pub syncs_failed: u64,
    /// Partners whose limit is divided by measured demand now.
    pub partners_shared: u64,
}

impl PoolView {
    fn of(p: &crate::pool::PoolStatus) -> PoolView {
        use std::sync::atomic::Ordering::Relaxed;
        let down = p.down.lock().clone();
        PoolView {
            replica: p.replica.clone(),
            redis: p.redis.clone(),
            redis_up: p.up.load(Relaxed),
            replicas: p.replicas.load(Relaxed),
            redis_down_mode: p.redis_down.as_str(),
            down_for_secs: down
                .as_ref()
                .and_then(|(_, since)| since.elapsed().ok())
                .map(|d| d.as_secs()),
            redis_error: down.map(|(why, _)| why),
            syncs_ok: p.syncs_ok.load(Relaxed),
            syncs_failed: p.syncs_failed.load(Relaxed),
            partners_shared: p.partners.load(Relaxed),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PartnerView {
    pub domain: String,
    pub proxy_fqdn: Option<String>,
    /// `up` when a connection to the pinned proxy or a host within the domain is open.
    pub link: &'static str,
    pub connections: u32,
    pub accepted: u64,
    pub refused: u64,
    pub subscriptions: u64,
}

#[derive(Debug, Serialize)]
pub struct DiscoveredView {
    pub domain: String,
    pub contacts: usize,
    pub last_seen_secs: u64,
}

#[derive(Debug, Serialize)]
pub struct ProviderView {
    pub name: String,
    pub proxy_fqdn: String,
    pub enabled: bool,
    /// `closed`, `half-open` or `open`.
    pub breaker: &'static str,
    pub link: &'static str,
}

#[derive(Debug, Serialize)]
pub struct LinkView {
    pub side: &'static str,
    pub name: String,
    pub connections: u32,
}

#[derive(Debug, Serialize)]
pub struct ProbeView {
    /// `never`, `success` or `failure`.
    pub result: &'static str,
    pub age_secs: Option<u64>,
    pub error: String,
    pub diagnosis: String,
    pub successes: u64,
    pub failures: u64,
}

#[derive(Debug, Serialize)]
pub struct SubscriptionsView {
    pub internal: u64,
    pub external: u64,
    pub max: usize,
    pub ended_by_link_failure: u64,
}

#[derive(Debug, Serialize)]
pub struct CertificateView {
    pub role: &'static str,
    pub subject: String,
    pub not_after_unix: i64,
    pub days_left: i64,
}

#[derive(Debug, Serialize)]
pub struct RefusalView {
    pub age_secs: u64,
    /// The side the refusal went to.
    pub side: &'static str,
    pub method: String,
    pub status: u16,
    pub reason: &'static str,
    pub diagnostic: String,
}

fn unix_now() -> i64 {
    i64::try_from(crate::reload::unix_now()).unwrap_or(i64::MAX)
}

/// Open external connections by peer host, and by configured partner domain: a link counts for a
/// partner when its host is the partner's domain or within it, or is the partner's pinned proxy.
/// One pass over the links (each host's suffixes looked up), not partners × links.
fn link_counts(
    links: &std::collections::BTreeMap<(Side, String), u32>,
    partners: &[(String, Option<String>)],
) -> (HashMap<String, u32>, HashMap<String, u32>) {
    let mut by_host: HashMap<String, u32> = HashMap::new();
    for ((side, name), n) in links {
        if *side == Side::External {
            *by_host.entry(name.to_ascii_lowercase()).or_default() += n;
        }
    }
    let domains: HashMap<String, &str> = partners
        .iter()
        .map(|(d, _)| (d.to_ascii_lowercase(), d.as_str()))
        .collect();
    let mut by_partner: HashMap<String, u32> = HashMap::new();
    for (host, n) in &by_host {
        let mut suffix = host.as_str();
        loop {
            if let Some(d) = domains.get(suffix) {
                *by_partner.entry((*d).to_owned()).or_default() += n;
            }
            match suffix.split_once('.') {
                Some((_, rest)) => suffix = rest,
                None => break,
            }
        }
    }
    // A pinned proxy outside the partner's domain (inside it, it was counted above).
    for (domain, pinned) in partners {
        let d = domain.to_ascii_lowercase();
        let outside = pinned
            .as_deref()
            .map(str::to_ascii_lowercase)
            .filter(|p| *p != d && !p.ends_with(&format!(".{d}")));
        if let Some(n) = outside.and_then(|p| by_host.get(&p).copied()) {
            *by_partner.entry(domain.clone()).or_default() += n;
        }
    }
    (by_host, by_partner)
}

impl EdgeMetrics {
    /// The status now, from the workers' published snapshots and the binary's state.
    pub fn status(&self) -> Status {
        let now = Instant::now();
        let workers = self.stats.worker_snapshots();
        let core = crate::exporter::merged_core(&workers);
        let facts = self.state.facts();
        let health = sipedge_metrics::Source::health(self);
        let ready = sipedge_metrics::Source::readiness(self);
        let open = |i: usize| {
            workers
                .iter()
                .filter_map(|w| w.open_connections.get(i))
                .sum::<u64>()
        };
        let edge = EdgeView {
            fqdn: facts.edge_fqdn.clone(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: self.state.uptime().as_secs(),
            ready: ready.ready,
            ready_detail: ready.detail,
            healthy: health.ok,
            health_detail: health.detail,
            listeners: self
                .state
                .listeners()
                .into_iter()
                .map(|(role, addr): (&'static str, SocketAddr)| ListenerView {
                    role,
                    addr: addr.to_string(),
                })
                .collect(),
            connections_internal: open(0),
            connections_external: open(1),
            max_connections: facts.max_connections,
        };
        let reload = self.reload.lock().clone();
        let config = ConfigView {
            generation: reload.generation,
            last_reload: match (reload.last_reload_unix_secs, reload.last_result) {
                (None, _) => "none",
                (Some(_), ReloadResult::Ok) => "applied",
                (Some(_), ReloadResult::Failed) => "refused",
            },
            last_reload_unix_secs: reload.last_reload_unix_secs,
            last_errors: reload.last_errors.clone(),
            last_error_count: reload.last_error_count,
            reloads_applied: reload.applied,
            reloads_refused: reload.failed,
            watched_files: reload.watched_files,
        };
        let (by_host, by_partner) = link_counts(&core.links, &facts.partner_details);
        let mut subscriptions_of: HashMap<&str, u64> = HashMap::new();
        for ((_, partner), n) in &core.subscriptions_active {
            *subscriptions_of.entry(partner.as_str()).or_default() += n;
        }
        let mut partners: Vec<PartnerView> = facts
            .partner_details
            .iter()
            .map(|(domain, pinned)| {
                let connections = by_partner.get(domain).copied().unwrap_or(0);
                let [accepted, refused] = core.partner_decisions.get(domain).copied().unwrap_or_default();
                let subscriptions = subscriptions_of.get(domain.as_str()).copied().unwrap_or(0);
                PartnerView {
                    domain: domain.clone(),
                    proxy_fqdn: pinned.clone(),
                    link: if connections > 0 { "up" } else { "down" },
                    connections,
                    accepted,
                    refused,
                    subscriptions,
                }
            })
            .collect();
        // What an operator looks for first comes first, so the row bound cuts the quiet ones: links up,
        // then the most refused, then by name.
        partners.sort_by(|a, b| {
            (b.link == "up")
                .cmp(&(a.link == "up"))
                .then(b.refused.cmp(&a.refused))
                .then_with(|| a.domain.cmp(&b.domain))
        });
        let discovered = self
            .limiter
            .recent(MAX_ROWS, now)
            .into_iter()
            .map(|(domain, contacts, ago)| DiscoveredView {
                domain: domain.to_string(),
                contacts,
                last_seen_secs: ago.as_secs(),
            })
            .collect();
        let breakers = self.breaker_states();
        let providers = facts
            .provider_details
            .iter()
            .map(|(name, host, enabled)| ProviderView {
                name: name.clone(),
                proxy_fqdn: host.clone(),
                enabled: *enabled,
                breaker: match breakers.get(name).copied().unwrap_or(0) {
                    0 => "closed",
                    1 => "half-open",
                    _ => "open",
                },
                link: if by_host.get(&host.to_ascii_lowercase()).is_some_and(|n| *n > 0) {
                    "up"
                } else {
                    "down"
                },
            })
            .collect();
        let links = core
            .links
            .iter()
            .map(|((side, name), n)| LinkView {
                side: side.as_str(),
                name: name.clone(),
                connections: *n,
            })
            .collect();
        let (successes, failures) = self.state.probe.results();
        let push_probe = match self.state.probe.last() {
            None => ProbeView {
                result: "never",
                age_secs: None,
                error: String::new(),
                diagnosis: String::new(),
                successes,
                failures,
            },
            Some((ago, o)) => ProbeView {
                result: if o.success { "success" } else { "failure" },
                age_secs: Some(ago.as_secs()),
                error: o.error,
                diagnosis: o.diagnosis,
                successes,
                failures,
            },
        };
        let active = |side: Side| -> u64 {
            core.subscriptions_active
                .iter()
                .filter(|((s, _), _)| *s == side)
                .map(|(_, n)| *n)
                .sum()
        };
        let ended_by_link_failure = [
            edge_core::proxy::SubscriptionEnd::NotifierLinkFailed,
            edge_core::proxy::SubscriptionEnd::SubscriberLinkFailed,
        ]
        .iter()
        .map(|e| core.subscriptions_ended_by(*e))
        .sum();
        let subscriptions = SubscriptionsView {
            internal: active(Side::Internal),
            external: active(Side::External),
            max: facts.max_subscriptions,
            ended_by_link_failure,
        };
        let today = unix_now();
        let certificates = facts
            .certificates
            .iter()
            .map(|(role, subject, not_after)| CertificateView {
                role,
                subject: subject.clone(),
                not_after_unix: *not_after,
                days_left: (not_after - today).div_euclid(86_400),
            })
            .collect();
        let recent_refusals = core
            .recent_refusals
            .iter()
            .rev()
            .map(|r| RefusalView {
                age_secs: now.saturating_duration_since(r.at).as_secs(),
                side: r.side.as_str(),
                method: r.method.clone(),
                status: r.status,
                reason: r.reason.as_str(),
                diagnostic: r.diagnostic.clone(),
            })
            .collect();
        Status {
            edge,
            config,
            partners: Table::of(partners),
            discovered: Table {
                total: self.limiter.tracked(),
                rows: discovered,
            },
            pool: self.pool.as_deref().map(PoolView::of),
            providers: Table::of(providers),
            links: Table::of(links),
            push_probe,
            subscriptions,
            certificates,
            recent_refusals,
        }
    }
}

/// The JSON twin of the page.
pub fn json(s: &Status) -> String {
    serde_json::to_string(s).unwrap_or_else(|e| format!("{{\"error\":\"cannot serialise the status: {e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::html::*;
    use super::*;

    #[test]
    fn escaping_turns_markup_into_text() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(badge("bad", "<b>"), "<span class=\"bad\">&lt;b&gt;</span>");
    }

    #[test]
    fn a_link_serves_its_partner_by_pin_or_within_the_domain() {
        let links: std::collections::BTreeMap<(Side, String), u32> = [
            ((Side::External, "sip.partner.example".to_owned()), 2),
            ((Side::External, "partner.example".to_owned()), 1),
            ((Side::External, "edge.elsewhere.net".to_owned()), 4),
            ((Side::External, "notpartner.example".to_owned()), 8),
            ((Side::External, "example".to_owned()), 16),
            ((Side::Internal, "fe.partner.example".to_owned()), 32),
        ]
        .into_iter()
        .collect();
        let partners = vec![
            (
                "partner.example".to_owned(),
                Some("edge.elsewhere.net".to_owned()),
            ),
            ("pinned.example".to_owned(), Some("sip.pinned.example".to_owned())),
        ];
        let (by_host, by_partner) = link_counts(&links, &partners);
        assert_eq!(by_partner.get("partner.example"), Some(&(2 + 1 + 4)));
        assert_eq!(by_partner.get("pinned.example"), None);
        assert_eq!(
            by_host.get("fe.partner.example"),
            None,
            "internal links are not partners'"
        );
    }

    #[test]
    fn tables_are_bounded_and_say_so() {
        let t = Table::of((0..1_000).collect::<Vec<u32>>());
        assert_eq!((t.total, t.rows.len()), (1_000, MAX_ROWS));
        let mut out = String::new();
        let rows: Vec<Vec<String>> = (0..3).map(|i| vec![i.to_string()]).collect();
        table(&mut out, "x", "X", 10, &["n"], &rows);
        assert!(out.contains("(3 of 10 shown)"), "{out}");
    }
}
