//! The connection scenarios of issue 11, each over a [`Pool`] (`pool.rs`) against one target (a
//! proxy's TLS listener or the reference `tls-server`), each ending in a JSON-able report:
//!
//! - [`idle`]: connections opened in steps (1, 10, 100, … up to what both ends' open-file limits
//!   allow), each handshaken, one OPTIONS answered, then held idle; the target's RSS and PSS
//!   (`smaps_rollup`, summed over its processes) before the first and after each step, so
//!   KiB per connection = (after − before) / connections held;
//! - [`handshakes`]: `concurrency` connections at a time, each a new TCP connection, a handshake
//!   (full: the client keeps no sessions; resume: rustls's in-memory session cache, TLS 1.3
//!   tickets) and a close; handshakes/s in the window and the target's CPU per handshake, hence
//!   handshakes per target CPU-second ("per core");
//! - [`burst`]: `count` connections opened as fast as `concurrency` in flight allows, each
//!   handshaken and answered and then kept; time until all are established, failures by kind,
//!   connect-to-handshake latency, the target's CPU and peak RSS.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::pool::{After, Pool, Target};
use crate::procstat::{self, Mem};
use crate::report::ticks_between;

/// Loop wait while opening or waiting.
const TURN: Duration = Duration::from_millis(5);

/// Connect-to-established latency percentiles, µs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnLatency {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl ConnLatency {
    fn of(pool: &Pool) -> ConnLatency {
        let h = &pool.tally.latency;
        if h.is_empty() {
            return ConnLatency::default();
        }
        ConnLatency {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

/// Who is measured and how the report is labelled.
#[derive(Debug, Clone)]
pub struct Subject {
    pub label: String,
    /// The server key type (`ecdsa`, `rsa`), as the caller set the target up.
    pub key: String,
    pub pids: Vec<u32>,
}

// ---- idle ----------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleStep {
    /// Connections asked for (cumulative).
    pub n: u64,
    /// Connections answered and open when the memory was read.
    pub held: u64,
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub rss_per_conn_kib: Option<f64>,
    pub pss_per_conn_kib: Option<f64>,
    /// Seconds the step took to open and answer its connections.
    pub open_s: f64,
    /// 0 for a step; for the last row, the seconds the connections were then left idle (`--linger`)
    /// before the memory was read again: transaction state kept after the answers is gone by then.
    #[serde(default)]
    pub idle_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleReport {
    pub scenario: String,
    pub label: String,
    pub key: String,
    /// The most connections this run tried (from both open-file limits, or `--max`).
    pub max: u64,
    pub base: MemKib,
    pub steps: Vec<IdleStep>,
    pub answers: BTreeMap<String, u64>,
    pub failures: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MemKib {
    pub rss_kib: u64,
    pub pss_kib: u64,
}

impl From<Mem> for MemKib {
    fn from(m: Mem) -> MemKib {
        MemKib {
            rss_kib: m.rss_kib,
            pss_kib: m.pss_kib,
        }
    }
}

/// (after − before) / held, in KiB per connection.
pub fn per_conn(before: u64, after: u64, held: u64) -> Option<f64> {
    (held > 0).then(|| (after as f64 - before as f64) / held as f64)
}

/// The steps of an idle run: 1, 10, 100, 1000, then every `thousands` up to `max`, and `max`
/// itself; strictly increasing, none above `max`.
pub fn idle_steps(max: u64) -> Vec<u64> {
    let mut v: Vec<u64> = [1, 10, 100, 1000, 2000, 5000]
        .into_iter()
        .filter(|&n| n < max)
        .collect();
    let mut n = 10_000;
    while n < max {
        v.push(n);
        n += 5_000;
    }
    if max > 0 {
        v.push(max);
    }
    v
}

/// The most connections the pair allows: each end's soft open-file limit less `reserve`
/// descriptors for everything else it has open (none known: the other's).
pub fn max_connections(own_soft: Option<u64>, target_soft: Option<u64>, reserve: u64) -> u64 {
    let usable = |s: u64| s.saturating_sub(reserve);
    match (own_soft, target_soft) {
        (Some(a), Some(b)) => usable(a).min(usable(b)),
        (Some(a), None) | (None, Some(a)) => usable(a),
        (None, None) => 100_000,
    }
}

pub struct IdleOpts {
    pub steps: Vec<u64>,
    pub max: u64,
    /// Connections handshaking at once while a step opens.
    pub concurrency: usize,
    /// After a step's last answer, before its memory is read.
    pub settle: Duration,
    /// After the last step, idle this long and read the memory once more (zero: not).
    pub linger: Duration,
}

pub fn idle(target: Target, who: &Subject, o: &IdleOpts) -> Result<IdleReport> {
    let mut pool = Pool::new(target, After::Request)?;
    std::thread::sleep(Duration::from_millis(200));
    let base = procstat::mem_all(&who.pids).unwrap_or_default();
    let mut steps = Vec::new();
    for &n in &o.steps {
        let t0 = Instant::now();
        // A step may take long at the top (handshakes at a few thousand per second).
        let deadline = t0 + Duration::from_secs(30 + n / 200);
        loop {
            let now = Instant::now();
            while pool.tally.opened < n && pool.in_flight() < o.concurrency {
                pool.open(now);
            }
            if (pool.tally.opened >= n && pool.in_flight() == 0) || now >= deadline {
                break;
            }
            pool.turn(TURN)?;
        }
        let open_s = t0.elapsed().as_secs_f64();
        pool.settle(o.settle)?;
        let m = procstat::mem_all(&who.pids).unwrap_or_default();
        let held = pool.held() as u64;
        eprintln!(
            "idle {}: {n} asked, {held} held, RSS {} KiB, PSS {} KiB ({:.1} s)",
            who.label, m.rss_kib, m.pss_kib, open_s
        );
        steps.push(IdleStep {
            n,
            held,
            rss_kib: m.rss_kib,
            pss_kib: m.pss_kib,
            rss_per_conn_kib: per_conn(base.rss_kib, m.rss_kib, held),
            pss_per_conn_kib: per_conn(base.pss_kib, m.pss_kib, held),
            open_s,
            idle_s: 0.0,
        });
        if held < n / 2 {
            eprintln!("idle {}: fewer than half held; stopping the steps", who.label);
            break;
        }
    }
    if !o.linger.is_zero() {
        if let Some(last) = steps.last().cloned() {
            pool.settle(o.linger)?;
            let m = procstat::mem_all(&who.pids).unwrap_or_default();
            let held = pool.held() as u64;
            steps.push(IdleStep {
                held,
                rss_kib: m.rss_kib,
                pss_kib: m.pss_kib,
                rss_per_conn_kib: per_conn(base.rss_kib, m.rss_kib, held),
                pss_per_conn_kib: per_conn(base.pss_kib, m.pss_kib, held),
                open_s: 0.0,
                idle_s: o.linger.as_secs_f64(),
                ..last
            });
        }
    }
    let report = IdleReport {
        scenario: "idle".into(),
        label: who.label.clone(),
        key: who.key.clone(),
        max: o.max,
        base: base.into(),
        steps,
        answers: pool.tally.answers.clone(),
        failures: pool.tally.failures.clone(),
    };
    pool.close_all();
    Ok(report)
}

// ---- handshakes ----------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeReport {
    pub scenario: String,
    pub label: String,
    pub key: String,
    /// `full` or `resume`.
    pub mode: String,
    pub concurrency: usize,
    pub window_s: f64,
    pub handshakes: u64,
    pub resumed: u64,
    pub per_s: f64,
    pub target_cpu_s: Option<f64>,
    pub target_cpu_us_per_hs: Option<f64>,
    /// Handshakes per CPU-second of the target: what one core of it does.
    pub per_core: Option<f64>,
    pub generator_cpu_s: f64,
    pub latency_us: ConnLatency,
    pub failures: BTreeMap<String, u64>,
}

pub struct HandshakeOpts {
    pub resume: bool,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Handshakes per second and per target CPU-second from counts and ticks.
pub fn rates(handshakes: u64, window_s: f64, cpu_s: Option<f64>) -> (f64, Option<f64>, Option<f64>) {
    let per_s = if window_s > 0.0 {
        handshakes as f64 / window_s
    } else {
        0.0
    };
    let us = cpu_s
        .filter(|_| handshakes > 0)
        .map(|s| s * 1e6 / handshakes as f64);
    let per_core = cpu_s.filter(|&s| s > 0.0).map(|s| handshakes as f64 / s);
    (per_s, us, per_core)
}

pub fn handshakes(target: Target, who: &Subject, o: &HandshakeOpts) -> Result<HandshakeReport> {
    let hz = procstat::ticks_per_second().max(1) as f64;
    let mut pool = Pool::new(target, After::Close)?;
    let start = Instant::now();
    let window_start = start + o.warmup;
    let end = window_start + o.duration;
    let mut measuring = false;
    let (mut cpu0, mut own0) = (None, None);
    let mut t0 = start;
    loop {
        let now = Instant::now();
        if !measuring && now >= window_start {
            measuring = true;
            pool.tally.reset();
            cpu0 = procstat::read_all(&who.pids);
            own0 = procstat::read(None);
            t0 = now;
        }
        if now >= end {
            break;
        }
        while pool.in_flight() < o.concurrency {
            pool.open(now);
        }
        pool.turn(TURN)?;
    }
    let window_s = t0.elapsed().as_secs_f64();
    let cpu_s = procstat::cpu_s_since(cpu0, &who.pids, hz);
    let own_s = ticks_between(own0, procstat::read(None)).unwrap_or(0) as f64 / hz;
    let t = &pool.tally;
    let (per_s, us, per_core) = rates(t.established, window_s, cpu_s);
    let report = HandshakeReport {
        scenario: "handshakes".into(),
        label: who.label.clone(),
        key: who.key.clone(),
        mode: if o.resume { "resume" } else { "full" }.into(),
        concurrency: o.concurrency,
        window_s,
        handshakes: t.established,
        resumed: t.resumed,
        per_s,
        target_cpu_s: cpu_s,
        target_cpu_us_per_hs: us,
        per_core,
        generator_cpu_s: own_s,
        latency_us: ConnLatency::of(&pool),
        failures: t.failures.clone(),
    };
    pool.close_all();
    // Let the target finish closing before the next run measures it.
    std::thread::sleep(Duration::from_millis(300));
    Ok(report)
}

// ---- burst ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstReport {
    pub scenario: String,
    pub label: String,
    pub key: String,
    pub count: u64,
    pub concurrency: usize,
    /// Connections answered (and so established).
    pub established: u64,
    /// From the first connect to the last answer or failure.
    pub all_established_s: f64,
    pub failures: BTreeMap<String, u64>,
    pub answers: BTreeMap<String, u64>,
    pub latency_us: ConnLatency,
    pub target_cpu_s: Option<f64>,
    /// The highest RSS sampled (every 100 ms) during the burst, summed over the target's processes
    /// (a page shared by several of them counted in each).
    pub peak_rss_kib: Option<u64>,
    /// The highest PSS sampled with it (shared pages divided among the processes).
    #[serde(default)]
    pub peak_pss_kib: Option<u64>,
    /// The kernel's own peak (VmHWM) at the end, summed (a fresh target: the burst's peak).
    pub hwm_kib: Option<u64>,
    pub rss_before_kib: Option<u64>,
}

pub struct BurstOpts {
    pub count: u64,
    pub concurrency: usize,
}

/// How often the burst samples the target's RSS.
const MEM_SAMPLE: Duration = Duration::from_millis(100);

pub fn burst(target: Target, who: &Subject, o: &BurstOpts) -> Result<BurstReport> {
    let hz = procstat::ticks_per_second().max(1) as f64;
    let mut pool = Pool::new(target, After::Request)?;
    let before = procstat::mem_all(&who.pids);
    let mut peak = before.map(|m| m.rss_kib);
    let mut peak_pss = before.map(|m| m.pss_kib);
    let cpu0 = procstat::read_all(&who.pids);
    let start = Instant::now();
    let mut next_sample = start;
    loop {
        let now = Instant::now();
        while pool.tally.opened < o.count && pool.in_flight() < o.concurrency {
            pool.open(now);
        }
        if now >= next_sample {
            next_sample = now + MEM_SAMPLE;
            if let Some(m) = procstat::mem_all(&who.pids) {
                peak = Some(peak.map_or(m.rss_kib, |p| p.max(m.rss_kib)));
                peak_pss = Some(peak_pss.map_or(m.pss_kib, |p| p.max(m.pss_kib)));
            }
        }
        if pool.tally.opened >= o.count && pool.in_flight() == 0 {
            break;
        }
        pool.turn(TURN)?;
    }
    let all_s = start.elapsed().as_secs_f64();
    let cpu_s = procstat::cpu_s_since(cpu0, &who.pids, hz);
    if let Some(m) = procstat::mem_all(&who.pids) {
        peak = Some(peak.map_or(m.rss_kib, |p| p.max(m.rss_kib)));
        peak_pss = Some(peak_pss.map_or(m.pss_kib, |p| p.max(m.pss_kib)));
    }
    let report = BurstReport {
        scenario: "burst".into(),
        label: who.label.clone(),
        key: who.key.clone(),
        count: o.count,
        concurrency: o.concurrency,
        established: pool.tally.answered(),
        all_established_s: all_s,
        failures: pool.tally.failures.clone(),
        answers: pool.tally.answers.clone(),
        latency_us: ConnLatency::of(&pool),
        target_cpu_s: cpu_s,
        peak_rss_kib: peak,
        peak_pss_kib: peak_pss,
        hwm_kib: procstat::hwm_all(&who.pids),
        rss_before_kib: before.map(|m| m.rss_kib),
    };
    pool.close_all();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_rise_to_the_maximum_and_stop_there() {
        assert_eq!(idle_steps(1), vec![1]);
        assert_eq!(idle_steps(50), vec![1, 10, 50]);
        assert_eq!(idle_steps(1000), vec![1, 10, 100, 1000]);
        assert_eq!(
            idle_steps(19_500),
            vec![1, 10, 100, 1000, 2000, 5000, 10_000, 15_000, 19_500]
        );
        assert_eq!(
            idle_steps(15_000),
            vec![1, 10, 100, 1000, 2000, 5000, 10_000, 15_000]
        );
        assert!(idle_steps(0).is_empty());
    }

    #[test]
    fn the_smaller_limit_less_its_reserve_bounds_the_run() {
        assert_eq!(max_connections(Some(20_000), Some(20_000), 300), 19_700);
        assert_eq!(max_connections(Some(20_000), Some(4096), 300), 3796);
        assert_eq!(max_connections(None, Some(1024), 300), 724);
        assert_eq!(max_connections(Some(100), Some(100), 300), 0);
    }

    #[test]
    fn per_connection_memory_is_the_growth_over_the_held() {
        assert_eq!(per_conn(1000, 20_400, 2000), Some(9.7));
        assert_eq!(
            per_conn(1000, 900, 100),
            Some(-1.0),
            "a shrink is reported, not hidden"
        );
        assert_eq!(per_conn(1000, 2000, 0), None);
    }

    #[test]
    fn handshake_rates_per_second_and_per_cpu_second() {
        let (per_s, us, per_core) = rates(6000, 2.0, Some(1.5));
        assert_eq!(per_s, 3000.0);
        assert_eq!(us, Some(250.0));
        assert_eq!(per_core, Some(4000.0));
        let (per_s, us, per_core) = rates(0, 0.0, Some(0.0));
        assert_eq!((per_s, us, per_core), (0.0, None, None));
        assert_eq!(rates(10, 1.0, None).1, None);
    }
}
