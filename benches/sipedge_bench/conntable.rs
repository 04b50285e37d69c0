//! `sipedge-bench conn-table FILES…`: the one table of `benches/connections.sh` from the JSON
//! reports of `idle`, `handshakes`, `burst` and `run` (the bulk-record rows of the provider
//! comparison), in the order given. Handshake rows carry two ratios of handshakes per target
//! CPU-second (per core): `×ref` for a `sipedge-<provider>` row against `rustls-ref-<provider>` (the
//! reference server on the same provider), `×kam` against `kamailio` — same key type and mode.

use std::fmt::Write as _;

use serde::Deserialize;

use crate::conns::{BurstReport, HandshakeReport, IdleReport};
use crate::report::Report;

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AnyReport {
    Handshakes(HandshakeReport),
    Idle(IdleReport),
    Burst(BurstReport),
    Run(Report),
}

/// The provider part of a label `<who>-<provider>` (`sipedge-ring` → `ring`).
fn provider_of(label: &str) -> Option<&str> {
    label
        .strip_prefix("sipedge-")
        .or_else(|| label.strip_prefix("rustls-ref-"))
}

fn ratio(ours: Option<f64>, theirs: Option<f64>) -> String {
    match (ours, theirs) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".to_owned(),
    }
}

fn failures(f: &std::collections::BTreeMap<String, u64>) -> String {
    let n: u64 = f.values().sum();
    if n == 0 {
        return "0 failed".to_owned();
    }
    let kinds: Vec<String> = f.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{n} failed [{}]", kinds.join("; "))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn table(rows: &[AnyReport]) -> String {
    let hs: Vec<&HandshakeReport> = rows
        .iter()
        .filter_map(|r| match r {
            AnyReport::Handshakes(h) => Some(h),
            _ => None,
        })
        .collect();
    let find = |label: &str, h: &HandshakeReport| {
        hs.iter()
            .find(|o| o.label == label && o.key == h.key && o.mode == h.mode)
            .and_then(|o| o.per_core)
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<18} {:<20} {:<5} {:<58} {:<34} {:>5} {:>5}",
        "scenario", "target", "key", "result", "target CPU / memory", "×ref", "×kam"
    );
    for r in rows {
        match r {
            AnyReport::Handshakes(h) => {
                let vs_ref = match provider_of(&h.label) {
                    Some(p) if h.label.starts_with("sipedge-") => {
                        ratio(h.per_core, find(&format!("rustls-ref-{p}"), h))
                    }
                    _ => "-".to_owned(),
                };
                let vs_kam = if h.label == "kamailio" {
                    "-".to_owned()
                } else {
                    ratio(h.per_core, find("kamailio", h))
                };
                let cpu = match (h.target_cpu_us_per_hs, h.per_core) {
                    (Some(us), Some(pc)) => format!("{us:.0} µs/hs = {pc:.0}/core-s"),
                    _ => "-".to_owned(),
                };
                let _ = writeln!(
                    s,
                    "{:<18} {:<20} {:<5} {:<58} {:<34} {:>5} {:>5}",
                    format!("handshakes {}", h.mode),
                    h.label,
                    h.key,
                    format!(
                        "{:.0}/s, {}/{} resumed, p50 {} µs, {}",
                        h.per_s,
                        h.resumed,
                        h.handshakes,
                        h.latency_us.p50,
                        failures(&h.failures)
                    ),
                    cpu,
                    vs_ref,
                    vs_kam
                );
            }
            AnyReport::Idle(i) => {
                let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
                // The top step, then the reading after the linger when there is one.
                let top = i.steps.iter().rposition(|st| st.idle_s == 0.0);
                let Some(k) = top else {
                    let _ = writeln!(s, "{:<18} {:<20} {:<5} no step ran", "idle", i.label, i.key);
                    continue;
                };
                for st in i.steps.iter().skip(k) {
                    let when = if st.idle_s > 0.0 {
                        format!("idle {} +{:.0}s", st.n, st.idle_s)
                    } else {
                        format!("idle {}", st.n)
                    };
                    let _ = writeln!(
                        s,
                        "{:<18} {:<20} {:<5} {:<58} {:<34}",
                        when,
                        i.label,
                        i.key,
                        format!(
                            "{} held: PSS {} KiB/conn, RSS {} KiB/conn, {}",
                            st.held,
                            f(st.pss_per_conn_kib),
                            f(st.rss_per_conn_kib),
                            failures(&i.failures)
                        ),
                        format!("PSS {:.1} → {:.1} MiB", mib(i.base.pss_kib), mib(st.pss_kib))
                    );
                }
                let per_step: Vec<String> = i
                    .steps
                    .iter()
                    .filter(|st| st.idle_s == 0.0)
                    .map(|st| format!("{}:{}", st.held, f(st.pss_per_conn_kib)))
                    .collect();
                let _ = writeln!(s, "{:<18}   PSS KiB/conn by step: {}", "", per_step.join(" "));
            }
            AnyReport::Burst(b) => {
                let cpu = b
                    .target_cpu_s
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.2} s"));
                let peak = b
                    .peak_rss_kib
                    .map_or_else(|| "-".to_owned(), |p| format!("{:.1} MiB", mib(p)));
                let before = b
                    .rss_before_kib
                    .map_or_else(String::new, |p| format!(" (from {:.1})", mib(p)));
                let pss = b
                    .peak_pss_kib
                    .map_or_else(String::new, |p| format!(", PSS {:.1}", mib(p)));
                let _ = writeln!(
                    s,
                    "{:<18} {:<20} {:<5} {:<58} {:<34}",
                    format!("burst {}/{}", b.count, b.concurrency),
                    b.label,
                    b.key,
                    format!(
                        "{} in {:.2} s, p50 {:.1} ms p99 {:.1} ms, {}",
                        b.established,
                        b.all_established_s,
                        b.latency_us.p50 as f64 / 1000.0,
                        b.latency_us.p99 as f64 / 1000.0,
                        failures(&b.failures)
                    ),
                    format!("CPU {cpu}, peak RSS {peak}{before}{pss}")
                );
            }
            AnyReport::Run(r) => {
                let cpu = r
                    .proxy_cpu_us_per_tx
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.1} µs/tx"));
                let _ = writeln!(
                    s,
                    "{:<18} {:<20} {:<5} {:<58} {:<34}",
                    "bulk MESSAGE",
                    r.label,
                    "ecdsa",
                    format!(
                        "{:.0} tx/s, p50 {} µs, {} failed",
                        r.tps, r.latency_us.p50, r.failed
                    ),
                    cpu
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conns::ConnLatency;

    fn hs(label: &str, key: &str, mode: &str, per_core: f64) -> AnyReport {
        AnyReport::Handshakes(HandshakeReport {
            scenario: "handshakes".into(),
            label: label.into(),
            key: key.into(),
            mode: mode.into(),
            concurrency: 16,
            window_s: 5.0,
            handshakes: 1000,
            resumed: if mode == "resume" { 1000 } else { 0 },
            per_s: 200.0,
            target_cpu_s: Some(1000.0 / per_core),
            target_cpu_us_per_hs: Some(1e6 / per_core),
            per_core: Some(per_core),
            generator_cpu_s: 1.0,
            latency_us: ConnLatency::default(),
            failures: Default::default(),
        })
    }

    #[test]
    fn ratios_are_against_the_same_provider_key_and_mode() {
        let rows = vec![
            hs("sipedge-ring", "ecdsa", "full", 3000.0),
            hs("rustls-ref-ring", "ecdsa", "full", 4000.0),
            hs("rustls-ref-aws-lc-rs", "ecdsa", "full", 6000.0),
            hs("kamailio", "ecdsa", "full", 1000.0),
            hs("kamailio", "rsa", "full", 500.0),
            hs("sipedge-aws-lc-rs", "ecdsa", "full", 4800.0),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 7, "{t}");
        assert!(lines[1].trim_end().ends_with("0.75  3.00"), "{t}");
        assert!(
            lines[2].trim_end().ends_with("-  4.00"),
            "a reference row has no ×ref: {t}"
        );
        assert!(
            lines[4].trim_end().ends_with("-     -"),
            "kamailio rsa: nothing to compare: {t}"
        );
        assert!(
            lines[6].trim_end().ends_with("0.80  4.80"),
            "aws-lc-rs against its own reference: {t}"
        );
    }

    #[test]
    fn every_report_kind_parses_back_from_json() {
        let h = r#"{"scenario":"handshakes","label":"kamailio","key":"rsa","mode":"resume","concurrency":16,
            "window_s":5.0,"handshakes":10,"resumed":9,"per_s":2.0,"target_cpu_s":0.5,"target_cpu_us_per_hs":5e4,
            "per_core":20.0,"generator_cpu_s":0.1,"latency_us":{"p50":1,"p99":2,"max":3},"failures":{}}"#;
        assert!(matches!(
            serde_json::from_str::<AnyReport>(h).unwrap(),
            AnyReport::Handshakes(_)
        ));
        let i = r#"{"scenario":"idle","label":"sipedge-ring","key":"ecdsa","max":10,"base":{"rss_kib":1,"pss_kib":1},
            "steps":[{"n":10,"held":10,"rss_kib":101,"pss_kib":91,"rss_per_conn_kib":10.0,"pss_per_conn_kib":9.0,"open_s":0.1}],
            "answers":{"200":10},"failures":{}}"#;
        let idle = serde_json::from_str::<AnyReport>(i).unwrap();
        assert!(matches!(idle, AnyReport::Idle(_)));
        let t = table(&[idle]);
        assert!(
            t.contains("10 held: PSS 9.0 KiB/conn, RSS 10.0 KiB/conn, 0 failed"),
            "{t}"
        );
        let lingered = i.replace(
            r#""open_s":0.1}]"#,
            r#""open_s":0.1},{"n":10,"held":10,"rss_kib":91,"pss_kib":81,"rss_per_conn_kib":9.0,"pss_per_conn_kib":8.0,"open_s":0.0,"idle_s":35.0}]"#,
        );
        let t = table(&[serde_json::from_str::<AnyReport>(&lingered).unwrap()]);
        let rows: Vec<&str> = t.lines().collect();
        assert_eq!(rows.len(), 4, "header, top step, after the linger, steps: {t}");
        assert!(
            rows[2].starts_with("idle 10 +35s") && rows[2].contains("PSS 8.0 KiB/conn"),
            "{t}"
        );
        assert!(
            rows[3].trim_end().ends_with("by step: 10:9.0"),
            "the linger is no step: {t}"
        );
        let b = r#"{"scenario":"burst","label":"kamailio","key":"ecdsa","count":10,"concurrency":5,"established":9,
            "all_established_s":1.5,"failures":{"timeout: handshake":1},"answers":{"200":9},
            "latency_us":{"p50":1000,"p99":2000,"max":3000},"target_cpu_s":0.3,"peak_rss_kib":2048,
            "peak_pss_kib":1536,"hwm_kib":2048,"rss_before_kib":1024}"#;
        let burst = serde_json::from_str::<AnyReport>(b).unwrap();
        let t = table(&[burst]);
        assert!(
            t.contains("9 in 1.50 s, p50 1.0 ms p99 2.0 ms, 1 failed [timeout: handshake: 1]"),
            "{t}"
        );
        assert!(
            t.contains("CPU 0.30 s, peak RSS 2.0 MiB (from 1.0), PSS 1.5"),
            "{t}"
        );
    }
}
