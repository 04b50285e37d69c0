//! The edge's metrics [`Source`]: at each scrape (on the metrics thread, never a SIP worker) it sums
//! the workers' published counters (`edge_core::shell::StatsHandle`) and turns them into the families
//! of `sipedge_metrics::names`, with every label value from a bounded set; `/healthz` and `/readyz`
//! read the workers' heartbeats and [`EdgeState`]; `/probe/push` is `push_probe.rs`. The `metrics` crate renders and serves; this file
//! only maps the edge's vocabulary onto its names.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use edge_core::proxy::io::Side;
use edge_core::proxy::stats::{CoreStats, Histogram, MethodLabel, OutcomeLabel, STATUS_CLASSES};
use edge_core::shell::StatsHandle;
use parking_lot::Mutex;
use sipedge_metrics::names::{self, bounded};
use sipedge_metrics::{Family, Health, Readiness, Sample, Source};

use crate::config::{Config, TlsIdentity};
use crate::reload::{ReloadResult, SharedReloadStatus};

mod families;
use families::{dns_families, histogram_sample, side_label};

/// A worker whose loop has not turned for this long fails `/healthz` (it turns twice a second even
/// when idle).
const STALE_AFTER_MS: u64 = 5_000;

/// What the binary knows about itself that the workers do not: readiness, and the facts of the
/// running configuration the metrics label (configured partners, certificates).
#[derive(Debug, Default)]
pub struct EdgeState {
    /// Both SIP listeners are bound and the workers run.
    pub listening: AtomicBool,
    /// SIGTERM arrived: `/readyz` fails from now on, `/healthz` stays 200 until exit.
    pub draining: AtomicBool,
    facts: Mutex<ConfigFacts>,
    /// `GET /probe/push` (its setup follows the running configuration).
    pub probe: crate::push_probe::PushProbe,
    /// The embedded default's certificate (the local PKI's `edge.pem`), set before [`Self::observe`].
    local_certificate: Mutex<Option<crate::config::CertSummary>>,
    /// The bound listener addresses (internal, external, metrics), for the status page.
    listeners: Mutex<Vec<(&'static str, std::net::SocketAddr)>>,
    started: Mutex<Option<std::time::Instant>>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct ConfigFacts {
    pub(crate) edge_fqdn: String,
    /// Configured partners with their pinned proxy FQDN, if any (the status page).
    pub(crate) partner_details: Vec<(String, Option<String>)>,
    /// Hosted providers: (name, proxy host, enabled).
    pub(crate) provider_details: Vec<(String, String, bool)>,
    /// Configured partners (allowed domains), the only `partner` label values besides `other`.
    pub(crate) partners: Vec<String>,
    /// (role, subject, notAfter as Unix seconds) of each certificate the edge presents.
    pub(crate) certificates: Vec<(&'static str, String, i64)>,
    /// Configured hosted providers (the breakers' `partner` label values).
    pub(crate) providers: Vec<String>,
    /// `limits.max_connections` and `limits.max_subscriptions`, so "near the limit" is a ratio.
    pub(crate) max_connections: usize,
    pub(crate) max_subscriptions: usize,
    /// Partner discovery is on (its limits are then exported).
    pub(crate) discovery: bool,
}

impl EdgeState {
    /// The listeners are up at these addresses (`role`: internal, external, metrics).
    pub fn set_listeners(&self, listeners: Vec<(&'static str, std::net::SocketAddr)>) {
        *self.listeners.lock() = listeners;
        self.started.lock().get_or_insert_with(std::time::Instant::now);
    }

    pub(crate) fn listeners(&self) -> Vec<(&'static str, std::net::SocketAddr)> {
        self.listeners.lock().clone()
    }

    /// Since the listeners came up.
    pub(crate) fn uptime(&self) -> std::time::Duration {
        self.started
            .lock()
            .map_or(std::time::Duration::ZERO, |t| t.elapsed())
    }

    pub(crate) fn facts(&self) -> ConfigFacts {
        self.facts.lock().clone()
    }

    /// The certificate the embedded default presents (its expiry is exported like a configured one).
    pub fn observe_local_pki(&self, pki: &crate::config::local_pki::LocalPki) {
        *self.local_certificate.lock() = crate::config::tls::pem_summary(&pki.edge_cert_pem);
    }

    /// Records the facts of `config` (at start and after each applied reload).
    pub fn observe(&self, config: &Config) {
        let partners = config
            .policy()
            .allowed_domains()
            .map(|a| a.domain.to_string())
            .collect();
        let mut certificates = Vec::new();
        for (role, tls) in [
            ("internal", &config.internal().tls),
            ("external", &config.external().tls),
        ] {
            match tls {
                TlsIdentity::Files(f) => certificates.push((role, f.leaf.subject.clone(), f.leaf.not_after)),
                // The embedded default presents the local PKI's edge certificate on both sides.
                TlsIdentity::SelfSigned => {
                    if let Some(c) = self.local_certificate.lock().as_ref() {
                        certificates.push((role, c.subject.clone(), c.not_after));
                    }
                }
            }
        }
        let providers = config
            .policy()
            .providers()
            .iter()
            .map(|p| p.name.clone())
            .collect();
        let policy = config.policy();
        let mut facts = self.facts.lock();
        // `edge.fqdn` needs a restart (a reload refuses to change it): the name the edge runs
        // with is the one it started with.
        let edge_fqdn = if facts.edge_fqdn.is_empty() {
            config.edge().fqdn.to_string()
        } else {
            facts.edge_fqdn.clone()
        };
        *facts = ConfigFacts {
            edge_fqdn,
            partner_details: policy
                .allowed_domains()
                .map(|a| {
                    (
                        a.domain.to_string(),
                        a.proxy_fqdn.as_ref().map(ToString::to_string),
                    )
                })
                .collect(),
            provider_details: policy
                .providers()
                .iter()
                .map(|p| (p.name.clone(), p.proxy_fqdn.host().to_string(), p.enabled))
                .collect(),
            partners,
            certificates,
            providers,
            discovery: config.policy().discovery().is_some(),
            max_connections: config.limits().max_connections,
            max_subscriptions: config.limits().max_subscriptions,
        };
        self.probe.configure(config);
    }
}

/// The scrape's view of the edge.
#[derive(Debug)]
pub struct EdgeMetrics {
    pub stats: StatsHandle,
    pub state: Arc<EdgeState>,
    pub reload: SharedReloadStatus,
    /// The push relay, for its breakers' state.
    pub relay: edge_core::proxy::push::SharedRelay,
    /// The discovered-partner limiter (the status page lists the partners it tracks).
    pub limiter: Arc<edge_core::proxy::SharedDiscoveryLimiter>,
    /// The pool's sync status (`[pool]`; `None` on a standalone edge).
    pub pool: Option<Arc<crate::pool::PoolStatus>>,
}

impl EdgeMetrics {
    /// The `sipedge_pool_*` families: zeros on a standalone edge (present from start).
    fn pool_families(&self, out: &mut Vec<Family>) {
        use std::sync::atomic::Ordering::Relaxed;
        let get = |f: fn(&crate::pool::PoolStatus) -> u64| self.pool.as_deref().map_or(0.0, |p| f(p) as f64);
        let none = Vec::<String>::new;
        out.push(
            names::POOL_REDIS_UP
                .family()
                .value(none(), get(|p| u64::from(p.up.load(Relaxed)))),
        );
        out.push(
            names::POOL_REPLICAS
                .family()
                .value(none(), get(|p| p.replicas.load(Relaxed))),
        );
        out.push(
            names::POOL_SYNCS
                .family()
                .value(["ok"], get(|p| p.syncs_ok.load(Relaxed)))
                .value(["failed"], get(|p| p.syncs_failed.load(Relaxed))),
        );
        out.push(
            names::POOL_TRANSITIONS_TOTAL
                .family()
                .value(["up"], get(|p| p.went_up.load(Relaxed)))
                .value(["down"], get(|p| p.went_down.load(Relaxed))),
        );
        out.push(
            names::POOL_REDIS_COMMANDS
                .family()
                .value(none(), get(|p| p.commands.load(Relaxed))),
        );
    }
}

/// The edge's core counters: every worker's published snapshot summed (a scrape's and the status
/// page's one view).
pub(crate) fn merged_core(workers: &[edge_core::shell::WorkerSnapshot]) -> CoreStats {
    let mut core = CoreStats::default();
    for c in workers.iter().filter_map(|w| w.core.as_ref()) {
        core.merge(c);
    }
    core
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl EdgeMetrics {
    /// Each provider's breaker by its key: 0 closed, 1 half-open, 2 open.
    pub(crate) fn breaker_states(&self) -> std::collections::BTreeMap<String, u8> {
        let now = std::time::Instant::now();
        self.relay
            .lock()
            .breakers()
            .into_iter()
            .map(|(provider, state)| {
                let v = match state {
                    push_relay::BreakerState::Closed { .. } => 0,
                    push_relay::BreakerState::HalfOpen { .. } => 1,
                    push_relay::BreakerState::Open { until } if until > now => 2,
                    push_relay::BreakerState::Open { .. } => 1,
                };
                (provider, v)
            })
            .collect()
    }

    /// Each push provider's breaker: 0 closed, 1 half-open, 2 open.
    fn breaker_family(&self, facts: &ConfigFacts) -> Family {
        let mut family = names::PUSH_BREAKER_STATE.family();
        // Every configured provider's breaker, closed (0) until it has seen traffic.
        let mut states: std::collections::BTreeMap<String, f64> =
            facts.providers.iter().map(|p| (p.clone(), 0.0)).collect();
        for (provider, state) in self.breaker_states() {
            let v = f64::from(state);
            let label = if facts.providers.contains(&provider) {
                provider
            } else {
                names::OTHER.to_owned()
            };
            // Several unconfigured keys fold into `other`: the worst state shows.
            let e = states.entry(label).or_insert(0.0_f64);
            *e = e.max(v);
        }
        for (label, v) in states {
            family = family.value([label], v);
        }
        family
    }
}

impl Source for EdgeMetrics {
    fn families(&self) -> Vec<Family> {
        let workers = self.stats.worker_snapshots();
        let facts = self.state.facts.lock().clone();
        let mut out = Vec::new();
        let core = merged_core(&workers);
        self.core_families(&core, &facts, &mut out);
        out.push(self.breaker_family(&facts));
        let (ok, failed) = self.state.probe.results();
        out.push(
            names::PUSH_PROBES
                .family()
                .value(["success"], ok as f64)
                .value(["failure"], failed as f64),
        );

        let mut handshakes = names::TLS_HANDSHAKES.family();
        let mut active = names::CONNECTIONS_ACTIVE.family();
        // Every side × value at 0 from start (names.rs module doc).
        let zeros =
            |set: &'static [&'static str]| -> std::collections::BTreeMap<(&'static str, &'static str), u64> {
                names::SIDES
                    .iter()
                    .flat_map(|side| set.iter().map(move |v| ((*side, *v), 0)))
                    .collect()
            };
        let mut closed = zeros(names::CLOSE_REASONS);
        let tls_failures: Vec<&'static str> = names::TLS_RESULTS
            .iter()
            .copied()
            .filter(|r| *r != "ok")
            .collect();
        let mut failures: std::collections::BTreeMap<(&str, &str), u64> = names::SIDES
            .iter()
            .flat_map(|side| tls_failures.iter().map(move |v| ((*side, *v), 0)))
            .collect();
        let mut refused = zeros(names::CONNECTION_LIMITS);
        let mut framing = zeros(names::FRAMING_KINDS);
        let mut hostile = zeros(names::HOSTILE_KINDS);
        let mut turns = names::LOOP_TURN_DURATION.family();
        for (i, side) in [Side::Internal, Side::External].iter().enumerate() {
            let ok: u64 = workers.iter().filter_map(|w| w.handshakes_ok.get(i)).sum();
            handshakes = handshakes.value([side_label(*side), "ok"], ok as f64);
            let open: u64 = workers.iter().filter_map(|w| w.open_connections.get(i)).sum();
            active = active.value([side_label(*side)], open as f64);
        }
        for (wi, w) in workers.iter().enumerate() {
            for ((side, reason), n) in &w.closes {
                *closed
                    .entry((side, bounded(names::CLOSE_REASONS, reason)))
                    .or_default() += n;
                if let Some(kind) = names::HOSTILE_KINDS.iter().find(|k| *k == reason) {
                    *hostile.entry((side, kind)).or_default() += n;
                }
            }
            for ((side, bucket), n) in &w.handshake_failures {
                *failures
                    .entry((side, bounded(names::TLS_RESULTS, bucket)))
                    .or_default() += n;
            }
            for ((side, limit), n) in &w.refused {
                *refused
                    .entry((side, bounded(names::CONNECTION_LIMITS, limit)))
                    .or_default() += n;
            }
            for ((side, kind), n) in &w.framing {
                *framing
                    .entry((side, bounded(names::FRAMING_KINDS, kind)))
                    .or_default() += n;
            }
            turns = turns.sample(histogram_sample(&w.loop_turns, vec![wi.to_string()]));
        }
        for ((side, result), n) in failures {
            handshakes = handshakes.value([side, result], n as f64);
        }
        out.push(handshakes);
        out.push(active);
        for (desc, map) in [
            (names::CONNECTIONS_CLOSED, closed),
            (names::CONNECTIONS_REFUSED, refused),
            (names::FRAMING_ERRORS, framing),
            (names::HOSTILE_CLOSES, hostile),
        ] {
            let mut family = desc.family();
            for ((a, b), n) in map {
                family = family.value([a, b], n as f64);
            }
            out.push(family);
        }
        out.push(turns);
        let mut dns = edge_core::dns::DnsStats::default();
        for w in &workers {
            dns.merge(&w.dns);
        }
        dns_families(&dns, &mut out);

        let reload = self.reload.lock().clone();
        out.push(
            names::CONFIG_GENERATION
                .family()
                .value(Vec::<String>::new(), reload.generation as f64),
        );
        out.push(names::CONFIG_LAST_RELOAD.family().value(
            Vec::<String>::new(),
            reload.last_reload_unix_secs.unwrap_or(0) as f64,
        ));
        let success = f64::from(u8::from(reload.last_result == ReloadResult::Ok));
        out.push(
            names::CONFIG_LAST_RELOAD_SUCCESS
                .family()
                .value(Vec::<String>::new(), success),
        );
        out.push(
            names::CONFIG_RELOADS
                .family()
                .value(["success"], reload.applied as f64)
                .value(["failure"], reload.failed as f64),
        );
        out.push(
            names::LOG_LINES_DROPPED
                .family()
                .value(Vec::<String>::new(), edge_core::shell::log::dropped() as f64),
        );
        out.push(
            names::CONFIG_WATCHED_FILES
                .family()
                .value(Vec::<String>::new(), reload.watched_files as f64),
        );
        self.pool_families(&mut out);
        let mut certs = names::CERTIFICATE_EXPIRY.family();
        for (role, subject, not_after) in &facts.certificates {
            certs = certs.value([*role, subject.as_str()], *not_after as f64);
        }
        out.push(certs);
        let on = |v: f64| if facts.discovery { v } else { 0.0 };
        out.push(
            names::DISCOVERED_PARTNERS
                .family()
                .value(Vec::<String>::new(), self.limiter.tracked() as f64),
        );
        let limits = self.limiter.limits();
        out.push(
            names::CONFIG_DISCOVERY_LIMIT
                .family()
                .value(["messages_per_second"], on(f64::from(limits.messages_per_second)))
                .value(["contacts_per_window"], on(f64::from(limits.distinct_contacts)))
                .value(["window_seconds"], on(limits.contact_window_secs as f64)),
        );
        let ready = sipedge_metrics::Source::readiness(self).ready;
        out.push(
            names::READY
                .family()
                .value(Vec::<String>::new(), f64::from(u8::from(ready))),
        );
        out.push(
            names::CONFIG_MAX_CONNECTIONS
                .family()
                .value(Vec::<String>::new(), facts.max_connections as f64),
        );
        out.push(
            names::CONFIG_MAX_SUBSCRIPTIONS
                .family()
                .value(Vec::<String>::new(), facts.max_subscriptions as f64),
        );
        out.push(names::BUILD_INFO.family().value(
            [
                env!("CARGO_PKG_VERSION"),
                option_env!("SIPEDGE_COMMIT").unwrap_or("unknown"),
            ],
            1.0,
        ));
        out
    }

    fn after_response(&self) {
        // The scrape's families and encoder buffers are freed by now: give their pages back, as
        // the idle workers do (measured in the 10,000-subscription run: without it the edge kept
        // ~6 MB more after its first scrape).
        crate::return_free_memory();
    }

    fn probe(&self, path: &str) -> Option<sipedge_metrics::Probe> {
        let page = |content_type: &str, body: String| {
            Some(sipedge_metrics::Probe::Ready(sipedge_metrics::Reply {
                status: 200,
                content_type: content_type.to_owned(),
                body,
            }))
        };
        match path {
            "/status" => page("text/html; charset=utf-8", crate::status::html(&self.status())),
            "/status.json" => page("application/json", crate::status::json(&self.status())),
            _ => self.state.probe.answer(path),
        }
    }

    fn health(&self) -> Health {
        let now = unix_now_ms();
        let stale: Vec<String> = self
            .stats
            .heartbeats()
            .iter()
            .enumerate()
            .filter(|(_, &h)| now.saturating_sub(h) > STALE_AFTER_MS)
            .map(|(i, &h)| format!("worker {i} has not turned for {} ms", now.saturating_sub(h)))
            .collect();
        Health {
            ok: stale.is_empty(),
            detail: stale.join("; "),
        }
    }

    fn readiness(&self) -> Readiness {
        let reload = self.reload.lock().clone();
        let last = match reload.last_result {
            ReloadResult::Ok => format!("configuration generation {}", reload.generation),
            ReloadResult::Failed => format!(
                "configuration generation {} (last reload {}: {}, the running configuration stays)",
                reload.generation,
                reload.last_result.as_str(),
                crate::log::count(reload.last_error_count, "error")
            ),
        };
        if self.state.draining.load(Ordering::Relaxed) {
            return Readiness {
                ready: false,
                detail: format!("draining: SIGTERM received; {last}"),
            };
        }
        if !self.state.listening.load(Ordering::Relaxed) {
            return Readiness {
                ready: false,
                detail: "listeners not up yet".to_owned(),
            };
        }
        Readiness {
            ready: true,
            detail: last,
        }
    }
}

#[cfg(test)]
mod vocabulary_tests {
    use edge_core::proxy::push::PushOutcome;
    use edge_core::proxy::stats::{self, MethodLabel, OutcomeLabel};
    use edge_core::proxy::SubscriptionEnd;
    use sipedge_metrics::{histogram, names};

    /// The core counts in its own types; the metrics crate names the label values. Neither knows
    /// the other (the core knows no Prometheus), so the binary, which joins them, checks they are one
    /// vocabulary: the same methods, classes, outcomes, causes and refusal reasons in the same order, and the same
    /// histogram bounds.
    #[test]
    fn the_cores_labels_and_the_metric_names_are_one_vocabulary() {
        let methods: Vec<&str> = MethodLabel::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(methods, names::METHODS);
        assert_eq!(stats::STATUS_CLASSES.as_slice(), names::STATUS_CLASSES);
        let outcomes: Vec<&str> = OutcomeLabel::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(outcomes, names::TRANSACTION_OUTCOMES);
        let push: Vec<&str> = PushOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(push, names::PUSH_OUTCOMES);
        let ends: Vec<&str> = SubscriptionEnd::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(ends, names::SUBSCRIPTION_ENDS);
        // Every refusal reason, `none` first, and the bound's own `other` last.
        let mut reasons: Vec<&str> = federation_policy::RefusalReason::ALL
            .iter()
            .map(|r| r.as_str())
            .collect();
        reasons.push(names::OTHER);
        assert_eq!(reasons, names::REFUSAL_REASONS);
        assert_eq!(stats::LATENCY_BOUNDS_MICROS, histogram::LATENCY_BOUNDS_MICROS);
        assert_eq!(stats::TURN_BOUNDS_MICROS, histogram::TURN_BOUNDS_MICROS);
    }
}
