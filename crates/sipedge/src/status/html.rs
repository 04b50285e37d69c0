//! The status page as HTML: one self-contained page (no script, no external asset) that refreshes
//! itself, every value escaped (domains, reason phrases and diagnostics come from the network).

use std::fmt::Write as _;

use super::*;

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

pub(super) fn ago(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7_199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3_600),
    }
}

pub(super) fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_else(|_| unix.to_string())
}

/// `<span class="KIND">TEXT</span>` with TEXT escaped.
pub(super) fn badge(kind: &str, text: &str) -> String {
    format!("<span class=\"{kind}\">{}</span>", esc(text))
}

pub(super) fn table(
    out: &mut String,
    id: &str,
    title: &str,
    total: usize,
    head: &[&str],
    rows: &[Vec<String>],
) {
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
/// The pool card: this replica, Redis and the replicas seen, or "standalone".
fn pool_card(p: Option<&super::PoolView>) -> String {
    let Some(p) = p else {
        return badge("none", "standalone");
    };
    let redis = if p.redis_up {
        badge("ok", "Redis up")
    } else {
        let away = p.down_for_secs.map_or(String::new(), |s| format!(" for {s} s"));
        badge(
            "bad",
            &format!(
                "Redis down{away}: {} (discovered partners: {})",
                p.redis_error.as_deref().unwrap_or("unknown"),
                p.redis_down_mode
            ),
        )
    };
    format!(
        "replica {} · {redis} · {} replicas · {}",
        esc(&p.replica),
        p.replicas,
        esc(&p.redis)
    )
}

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
        ("Pool", pool_card(s.pool.as_ref())),
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
