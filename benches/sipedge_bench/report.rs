//! The run's report: what the generator measured in the window (counts, the latency histogram, the
//! CPU ticks of the process under test and of itself) turned into figures — transactions/s,
//! failures by kind, latency percentiles, CPU seconds and CPU µs per transaction — printed as one
//! text block or one JSON object (`--json`), and [`table`], the side-by-side table `compare.sh`
//! prints from several JSON reports (ratios against the row named `kamailio`).
//! Measured in `gen.rs`; CPU ticks from `procstat.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::procstat::CpuTicks;

/// Failures by kind. Responses that match no outstanding request (e.g. after its timeout) are
/// counted apart: they are not failures of their own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Failures {
    /// Final responses other than 2xx, by status code.
    pub non_2xx: BTreeMap<u16, u64>,
    /// Requests without a final response within `--timeout-ms`.
    pub timeouts: u64,
    /// Requests lost with their connection (refused, reset, closed, TLS error), plus connections
    /// that failed before carrying any.
    pub connection: u64,
    /// Final responses whose branch matched no outstanding request.
    pub unmatched: u64,
}

impl Failures {
    pub fn total(&self) -> u64 {
        self.non_2xx.values().sum::<u64>() + self.timeouts + self.connection
    }
}

/// Latency from the request's write to its final response, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// What the generator hands over at the end of the window.
#[derive(Debug, Clone)]
pub struct Measured {
    pub label: String,
    pub transport: &'static str,
    pub connections: u32,
    pub inflight: u32,
    pub rate: u64,
    pub window_s: f64,
    pub completed: u64,
    pub failures: Failures,
    /// Ticks the process(es) under test used in the window (`None`: no `--pid`, or unreadable).
    pub proxy_ticks: Option<u64>,
    pub own_ticks: u64,
    pub ticks_per_second: u64,
}

/// The figures of one run, as printed and as `--json` writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub label: String,
    /// The scenario the run belongs to (`max`, `fixed`, `half`, ...): the table compares rows of
    /// one scenario. Empty in reports written before it existed.
    #[serde(default)]
    pub scenario: String,
    pub transport: String,
    pub connections: u32,
    pub inflight: u32,
    /// The target rate (0: as fast as the window allows).
    pub rate: u64,
    pub window_s: f64,
    pub completed: u64,
    pub tps: f64,
    pub failures: Failures,
    pub failed: u64,
    pub latency_us: Latency,
    pub proxy_cpu_s: Option<f64>,
    pub proxy_cpu_us_per_tx: Option<f64>,
    pub generator_cpu_s: f64,
    pub generator_cpu_us_per_tx: Option<f64>,
    /// The generator's CPU over the window's wall time (1.0: one core busy all the time).
    pub generator_cores: f64,
}

fn per_tx_us(cpu_s: f64, completed: u64) -> Option<f64> {
    (completed > 0).then(|| cpu_s * 1e6 / completed as f64)
}

impl Report {
    pub fn new(m: &Measured, latency: &Histogram<u64>) -> Report {
        let hz = m.ticks_per_second.max(1) as f64;
        let proxy_cpu_s = m.proxy_ticks.map(|t| t as f64 / hz);
        let generator_cpu_s = m.own_ticks as f64 / hz;
        let failures = m.failures.clone();
        Report {
            label: m.label.clone(),
            scenario: String::new(),
            transport: m.transport.to_owned(),
            connections: m.connections,
            inflight: m.inflight,
            rate: m.rate,
            window_s: m.window_s,
            completed: m.completed,
            tps: if m.window_s > 0.0 {
                m.completed as f64 / m.window_s
            } else {
                0.0
            },
            failed: failures.total(),
            failures,
            latency_us: Latency::of(latency),
            proxy_cpu_s,
            proxy_cpu_us_per_tx: proxy_cpu_s.and_then(|s| per_tx_us(s, m.completed)),
            generator_cpu_s,
            generator_cpu_us_per_tx: per_tx_us(generator_cpu_s, m.completed),
            generator_cores: if m.window_s > 0.0 {
                generator_cpu_s / m.window_s
            } else {
                0.0
            },
        }
    }

    /// The human-readable block.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let opt = |v: Option<f64>, unit: &str| match v {
            Some(v) => format!("{v:.2}{unit}"),
            None => "n/a".to_owned(),
        };
        let rate = if self.rate == 0 {
            "max".to_owned()
        } else {
            format!("{}/s", self.rate)
        };
        let _ = writeln!(
            s,
            "sipedge-bench {}: {} x{} conns, {} in flight each, rate {rate}, window {:.2} s",
            self.label, self.transport, self.connections, self.inflight, self.window_s
        );
        let _ = writeln!(
            s,
            "  transactions  {} completed, {:.0}/s",
            self.completed, self.tps
        );
        let non2xx: Vec<String> = self
            .failures
            .non_2xx
            .iter()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect();
        let _ = writeln!(
            s,
            "  failures      {} (non-2xx [{}], timeouts {}, connection {}); unmatched responses {}",
            self.failed,
            non2xx.join(" "),
            self.failures.timeouts,
            self.failures.connection,
            self.failures.unmatched
        );
        let l = &self.latency_us;
        let _ = writeln!(
            s,
            "  latency µs    p50 {} p90 {} p99 {} p99.9 {} max {}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        let _ = writeln!(
            s,
            "  proxy CPU     {} = {} per transaction",
            opt(self.proxy_cpu_s, " s"),
            opt(self.proxy_cpu_us_per_tx, " µs")
        );
        let _ = writeln!(
            s,
            "  generator CPU {:.2} s = {} per transaction, {:.2} cores",
            self.generator_cpu_s,
            opt(self.generator_cpu_us_per_tx, " µs"),
            self.generator_cores
        );
        s
    }
}

/// The ticks used between two samples (0 if the counter went backwards: another process).
pub fn ticks_between(start: Option<CpuTicks>, end: Option<CpuTicks>) -> Option<u64> {
    Some(end?.total().saturating_sub(start?.total()))
}

/// The comparison table: one row per report, ratios against the row labelled `kamailio` of the same
/// scenario and transport (transactions/s: ours over Kamailio's; CPU per transaction: Kamailio's
/// over ours, so above 1 is better in both), and the p99 latency a proxy adds over the `direct` row
/// of the same scenario, transport and offered rate.
pub fn table(rows: &[Report]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:<8} {:<4} {:>7} {:>10} {:>7} {:>11} {:>8} {:>8} {:>9} {:>7} {:>11} {:>10}",
        "target",
        "scenario",
        "tr",
        "rate",
        "tx/s",
        "failed",
        "proxy µs/tx",
        "p50 µs",
        "p99 µs",
        "+p99 µs",
        "gen µs",
        "tx/s ×kam",
        "CPU ×kam"
    );
    let dash = || "-".to_owned();
    for r in rows {
        let same = |k: &&Report| k.transport == r.transport && k.scenario == r.scenario;
        let kam = rows.iter().filter(same).find(|k| k.label == "kamailio");
        let tps_ratio = kam
            .filter(|k| k.tps > 0.0)
            .map(|k| format!("{:.2}", r.tps / k.tps));
        let cpu_ratio = kam
            .and_then(|k| k.proxy_cpu_us_per_tx)
            .zip(r.proxy_cpu_us_per_tx)
            .filter(|(_, ours)| *ours > 0.0)
            .map(|(k, ours)| format!("{:.2}", k / ours));
        let added = rows
            .iter()
            .filter(same)
            .find(|d| d.label == "direct" && d.rate == r.rate)
            .filter(|_| r.label != "direct" && r.rate > 0)
            .map(|d| format!("{}", i128::from(r.latency_us.p99) - i128::from(d.latency_us.p99)));
        let cpu = r.proxy_cpu_us_per_tx.map_or_else(dash, |v| format!("{v:.1}"));
        let gen = r.generator_cpu_us_per_tx.map_or_else(dash, |v| format!("{v:.1}"));
        let rate = if r.rate == 0 {
            "max".to_owned()
        } else {
            r.rate.to_string()
        };
        let scenario = if r.scenario.is_empty() {
            "-"
        } else {
            r.scenario.as_str()
        };
        let _ = writeln!(
            s,
            "{:<10} {:<8} {:<4} {:>7} {:>10.0} {:>7} {:>11} {:>8} {:>8} {:>9} {:>7} {:>11} {:>10}",
            r.label,
            scenario,
            r.transport,
            rate,
            r.tps,
            r.failed,
            cpu,
            r.latency_us.p50,
            r.latency_us.p99,
            added.unwrap_or_else(dash),
            gen,
            tps_ratio.unwrap_or_else(dash),
            cpu_ratio.unwrap_or_else(dash)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured() -> Measured {
        Measured {
            label: "sipedge".into(),
            transport: "tls",
            connections: 2,
            inflight: 32,
            rate: 0,
            window_s: 4.0,
            completed: 20_000,
            failures: Failures {
                non_2xx: BTreeMap::from([(503, 3), (408, 1)]),
                timeouts: 2,
                connection: 1,
                unmatched: 5,
            },
            proxy_ticks: Some(70),
            own_ticks: 150,
            ticks_per_second: 100,
        }
    }

    fn histogram(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn rates_and_cpu_per_transaction() {
        let r = Report::new(&measured(), &histogram([100]));
        assert_eq!(r.tps, 5000.0);
        assert_eq!(r.proxy_cpu_s, Some(0.7));
        // 0.7 s / 20,000 = 35 µs.
        assert!((r.proxy_cpu_us_per_tx.unwrap() - 35.0).abs() < 1e-9);
        assert!((r.generator_cpu_us_per_tx.unwrap() - 75.0).abs() < 1e-9);
        assert!((r.generator_cores - 0.375).abs() < 1e-9);
    }

    #[test]
    fn failures_add_up_without_the_unmatched() {
        let r = Report::new(&measured(), &histogram([100]));
        assert_eq!(r.failed, 3 + 1 + 2 + 1);
    }

    #[test]
    fn nothing_completed_gives_no_per_transaction_figure() {
        let mut m = measured();
        m.completed = 0;
        m.proxy_ticks = None;
        let r = Report::new(&m, &histogram([]));
        assert_eq!(r.tps, 0.0);
        assert_eq!(r.proxy_cpu_s, None);
        assert_eq!(r.proxy_cpu_us_per_tx, None);
        assert_eq!(r.generator_cpu_us_per_tx, None);
        assert_eq!(r.latency_us, Latency::default());
        assert!(r.text().contains("proxy CPU     n/a"), "{}", r.text());
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        // 1..=1000 µs: p50 ≈ 500, p99 ≈ 990, max 1000 (3 significant digits).
        let l = Latency::of(&histogram(1..=1000));
        assert_eq!(l.p50, 500);
        assert_eq!(l.p90, 900);
        assert_eq!(l.p99, 990);
        assert_eq!(l.p999, 999);
        assert_eq!(l.max, 1000);
    }

    #[test]
    fn json_round_trips() {
        let r = Report::new(&measured(), &histogram([10, 20, 30]));
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn ticks_between_samples() {
        let a = CpuTicks { user: 10, system: 5 };
        let b = CpuTicks { user: 30, system: 9 };
        assert_eq!(ticks_between(Some(a), Some(b)), Some(24));
        assert_eq!(ticks_between(Some(b), Some(a)), Some(0));
        assert_eq!(ticks_between(None, Some(b)), None);
    }

    /// The whitespace-separated cells of a table line.
    fn cells(line: &str) -> Vec<&str> {
        line.split_whitespace().collect()
    }

    #[test]
    fn table_ratios_are_against_kamailio_of_the_same_scenario_and_transport() {
        let mut ours = Report::new(&measured(), &histogram([100]));
        ours.scenario = "max".into();
        let mut kam = ours.clone();
        kam.label = "kamailio".into();
        kam.tps = 1000.0;
        kam.proxy_cpu_us_per_tx = Some(70.0);
        ours.tps = 4000.0;
        let mut other = ours.clone();
        other.transport = "tcp".into();
        let mut fixed = ours.clone();
        fixed.scenario = "fixed".into();
        let t = table(&[ours, kam, other, fixed]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert_eq!(cells(lines[1])[11..], ["4.00", "2.00"], "{t}");
        assert_eq!(cells(lines[2])[11..], ["1.00", "1.00"], "{t}");
        assert_eq!(cells(lines[3])[11..], ["-", "-"], "no tcp kamailio row: {t}");
        assert_eq!(cells(lines[4])[11..], ["-", "-"], "no fixed kamailio row: {t}");
    }

    #[test]
    fn added_latency_is_over_direct_at_the_same_rate() {
        let mut direct = Report::new(&measured(), &histogram([100]));
        direct.label = "direct".into();
        direct.scenario = "half".into();
        direct.rate = 5000;
        let mut ours = Report::new(&measured(), &histogram([100, 400]));
        ours.scenario = "half".into();
        ours.rate = 5000;
        let mut other_rate = ours.clone();
        other_rate.rate = 7000;
        let t = table(&[direct.clone(), ours.clone(), other_rate]);
        let lines: Vec<&str> = t.lines().collect();
        let added = |l: &str| cells(l)[9].to_owned();
        assert_eq!(added(lines[1]), "-", "direct adds nothing to itself: {t}");
        assert_eq!(
            added(lines[2]),
            (i128::from(ours.latency_us.p99) - i128::from(direct.latency_us.p99)).to_string(),
            "{t}"
        );
        assert_eq!(added(lines[3]), "-", "another rate is not comparable: {t}");
    }
}
