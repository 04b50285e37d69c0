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
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use edge_core::proxy::io::Side;
use serde::Serialize;

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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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
        .map(|e| core.subscriptions_ended.get(e.index()).copied().unwrap_or(0))
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
                reason: r.reason,
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
            providers: Table::of(providers),
            links: Table::of(links),
            push_probe,
            subscriptions,
            certificates,
            recent_refusals,
        }
    }
}

/// `s` as HTML text: `&`, `<`, `>`, `"` and `'` escaped.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ago(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7_199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3_600),
    }
}

fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_else(|_| unix.to_string())
}

/// `<span class="KIND">TEXT</span>` with TEXT escaped.
fn badge(kind: &str, text: &str) -> String {
    format!("<span class=\"{kind}\">{}</span>", esc(text))
}

fn table(out: &mut String, id: &str, title: &str, total: usize, head: &[&str], rows: &[Vec<String>]) {
    let _ = write!(out, "<section id=\"{id}\"><h2>{}", esc(title));
    if total > rows.len() {
        let _ = write!(out, " <small>({} of {total} shown)</small>", rows.len());
    }
    out.push_str("</h2>");
    if rows.is_empty() {
        out.push_str("<p class=\"none\">none</p></section>");
        return;
    }
    out.push_str("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            // Cells are built escaped (text through `esc`, markup through `badge`).
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></section>");
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2430;background:#f7f8fa}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.2em 0 .4em}small{color:#667}\
table{border-collapse:collapse;background:#fff;min-width:40%}td,th{border:1px solid #d6dae0;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#eef1f5}td{font-family:ui-monospace,monospace;font-size:12.5px}.ok{color:#0a7a2f;font-weight:600}\
.bad{color:#b3261e;font-weight:600}.warn{color:#9a6700;font-weight:600}.none{color:#889}\
.grid{display:flex;flex-wrap:wrap;gap:.6em}.card{background:#fff;border:1px solid #d6dae0;border-radius:6px;padding:.5em .9em;min-width:10em}\
.card b{display:block;font-size:1.3em}";

/// The page: one self-contained HTML document.
pub fn html(s: &Status) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>sipedge {}</title><style>{STYLE}</style></head><body>",
        esc(&s.edge.fqdn)
    );
    let e = &s.edge;
    let _ = write!(
        out,
        "<h1>sipedge {} <small>{}</small></h1><p>up {} · refreshes every {REFRESH_SECS} s · <a href=\"/status.json\">status.json</a> · <a href=\"/metrics\">metrics</a></p>",
        esc(&e.fqdn),
        esc(e.version),
        esc(&ago(e.uptime_secs).replace(" ago", ""))
    );
    let ready = if e.ready {
        badge("ok", "ready")
    } else {
        badge("bad", "not ready")
    };
    let healthy = if e.healthy {
        badge("ok", "healthy")
    } else {
        badge("bad", "unhealthy")
    };
    let reload = match s.config.last_reload {
        "refused" => badge("bad", "last reload refused"),
        "applied" => badge("ok", "last reload applied"),
        _ => badge("none", "no reload since start"),
    };
    let probe = match s.push_probe.result {
        "success" => badge("ok", "success"),
        "failure" => badge("bad", "failure"),
        _ => badge("none", "never run"),
    };
    let first_expiry = s.certificates.iter().map(|c| c.days_left).min();
    let expiry = match first_expiry {
        Some(d) if d < 3 => badge("bad", &format!("{d} days")),
        Some(d) if d < 14 => badge("warn", &format!("{d} days")),
        Some(d) => badge("ok", &format!("{d} days")),
        None => badge("none", "none"),
    };
    let cards = [
        ("State", format!("{ready} {healthy}")),
        (
            "Configuration",
            format!(
                "generation {} · {reload} · {}",
                s.config.generation,
                match s.config.watched_files {
                    0 => "reload on SIGHUP".to_owned(),
                    n => format!("watching {}", crate::log::count(n, "file")),
                }
            ),
        ),
        (
            "Connections",
            esc(&format!(
                "{} internal · {} external / {}",
                e.connections_internal, e.connections_external, e.max_connections
            )),
        ),
        (
            "Subscriptions",
            esc(&format!(
                "{} internal · {} external / {}",
                s.subscriptions.internal, s.subscriptions.external, s.subscriptions.max
            )),
        ),
        ("Push probe", probe.clone()),
        ("First certificate expiry", expiry),
    ];
    out.push_str("<div class=\"grid\" id=\"summary\">");
    for (k, v) in cards {
        let _ = write!(out, "<div class=\"card\">{}<b>{v}</b></div>", esc(k));
    }
    out.push_str("</div>");
    let detail = |ok: bool, text: &str| if ok { esc(text) } else { badge("bad", text) };
    let _ = write!(
        out,
        "<p id=\"readiness\">{} · {}</p>",
        detail(e.ready, &e.ready_detail),
        if e.health_detail.is_empty() {
            esc("every worker turns")
        } else {
            badge("bad", &e.health_detail)
        }
    );
    let rows: Vec<Vec<String>> = e
        .listeners
        .iter()
        .map(|l| vec![esc(l.role), esc(&l.addr)])
        .collect();
    table(
        &mut out,
        "listeners",
        "Listeners",
        rows.len(),
        &["role", "address"],
        &rows,
    );

    if !s.config.last_errors.is_empty() {
        let rows: Vec<Vec<String>> = s
            .config
            .last_errors
            .iter()
            .map(|e| vec![badge("bad", e)])
            .collect();
        table(
            &mut out,
            "reload-errors",
            "The last reload was refused (the running configuration stays)",
            s.config.last_error_count,
            &["error"],
            &rows,
        );
    }
    let rows: Vec<Vec<String>> = s
        .recent_refusals
        .iter()
        .map(|r| {
            vec![
                esc(&ago(r.age_secs)),
                esc(&format!("to {}", r.side)),
                esc(&r.method),
                esc(&r.status.to_string()),
                esc(r.reason),
                esc(&r.diagnostic),
            ]
        })
        .collect();
    table(
        &mut out,
        "refusals",
        "Last refusals",
        rows.len(),
        &["when", "answered", "method", "status", "reason", "ms-diagnostics"],
        &rows,
    );
    let p = &s.push_probe;
    let _ = write!(
        out,
        "<section id=\"push-probe\"><h2>Last push probe</h2><p>{probe}{} · {}, {} since start</p>",
        p.age_secs
            .map(|a| format!(" · {}", esc(&ago(a))))
            .unwrap_or_default(),
        match p.successes {
            1 => "1 success".to_owned(),
            n => format!("{n} successes"),
        },
        crate::log::count(usize::try_from(p.failures).unwrap_or(usize::MAX), "failure")
    );
    if !p.error.is_empty() {
        let _ = write!(
            out,
            "<p>Error: {}</p><p>Diagnosis: {}</p>",
            esc(&p.error),
            esc(&p.diagnosis)
        );
    }
    out.push_str("</section>");
    let rows: Vec<Vec<String>> = s
        .providers
        .rows
        .iter()
        .map(|p| {
            vec![
                esc(&p.name),
                esc(&p.proxy_fqdn),
                if p.enabled {
                    badge("ok", "enabled")
                } else {
                    badge("none", "disabled")
                },
                match p.breaker {
                    "closed" => badge("ok", "closed"),
                    "half-open" => badge("warn", "half-open"),
                    other => badge("bad", other),
                },
                if p.link == "up" {
                    badge("ok", "up")
                } else {
                    badge("none", "down")
                },
            ]
        })
        .collect();
    table(
        &mut out,
        "providers",
        "Hosted providers",
        s.providers.total,
        &["name", "proxy", "state", "push breaker", "link"],
        &rows,
    );
    let rows: Vec<Vec<String>> = s
        .certificates
        .iter()
        .map(|c| {
            let left = format!("{} days", c.days_left);
            vec![
                esc(c.role),
                esc(&c.subject),
                esc(&date(c.not_after_unix)),
                match c.days_left {
                    d if d < 3 => badge("bad", &left),
                    d if d < 14 => badge("warn", &left),
                    _ => badge("ok", &left),
                },
            ]
        })
        .collect();
    table(
        &mut out,
        "certificates",
        "Certificates",
        rows.len(),
        &["role", "subject", "expires", "left"],
        &rows,
    );
    let rows: Vec<Vec<String>> = s
        .partners
        .rows
        .iter()
        .map(|p| {
            vec![
                esc(&p.domain),
                esc(p.proxy_fqdn.as_deref().unwrap_or("DNS SRV")),
                if p.link == "up" {
                    badge("ok", "up")
                } else {
                    badge("none", "down")
                },
                p.connections.to_string(),
                p.accepted.to_string(),
                if p.refused > 0 {
                    badge("warn", &p.refused.to_string())
                } else {
                    "0".to_owned()
                },
                p.subscriptions.to_string(),
            ]
        })
        .collect();
    table(
        &mut out,
        "partners",
        "Configured partners",
        s.partners.total,
        &[
            "domain",
            "proxy",
            "link",
            "connections",
            "accepted",
            "refused",
            "subscriptions",
        ],
        &rows,
    );
    let rows: Vec<Vec<String>> = s
        .discovered
        .rows
        .iter()
        .map(|d| {
            vec![
                esc(&d.domain),
                d.contacts.to_string(),
                esc(&ago(d.last_seen_secs)),
            ]
        })
        .collect();
    table(
        &mut out,
        "discovered",
        "Discovered partners",
        s.discovered.total,
        &["domain", "internal contacts (window)", "last seen"],
        &rows,
    );
    let rows: Vec<Vec<String>> = s
        .links
        .rows
        .iter()
        .map(|l| vec![esc(l.side), esc(&l.name), l.connections.to_string()])
        .collect();
    table(
        &mut out,
        "links",
        "Links up",
        s.links.total,
        &["side", "peer", "connections"],
        &rows,
    );

    out.push_str("</body></html>\n");
    out
}

/// The JSON twin of the page.
pub fn json(s: &Status) -> String {
    serde_json::to_string(s).unwrap_or_else(|e| format!("{{\"error\":\"cannot serialise the status: {e}\"}}"))
}

#[cfg(test)]
mod tests {
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
