//! The core's and the DNS client's counters as metric families: requests, responses, refusals,
//! decisions, transactions, push, subscriptions, DNS — every label value present from the first
//! scrape (names.rs in the metrics crate lists them).

use federation_policy::RefusalReason;

use super::*;

impl EdgeMetrics {
    pub(super) fn core_families(&self, core: &CoreStats, facts: &ConfigFacts, out: &mut Vec<Family>) {
        let sides = [Side::Internal, Side::External];
        let mut requests = names::REQUESTS.family();
        let mut responses = names::RESPONSES.family();
        for side in sides {
            for m in MethodLabel::ALL {
                let n = core.requests_received(side, m);
                requests = requests.value([direction(side), m.as_str()], n as f64);
                for class in STATUS_CLASSES {
                    let n = core.responses_received(side, m, class);
                    // A response from a hop on the external side answers an outbound request.
                    let dir = match side {
                        Side::External => "outbound",
                        Side::Internal => "inbound",
                    };
                    responses = responses.value([dir, m.as_str(), class], n as f64);
                }
            }
        }
        out.push(requests);
        out.push(responses);

        // Present from start: the pairs the edge writes, every refusal reason (names.rs module doc).
        let mut generated: std::collections::BTreeMap<(&str, &str), u64> =
            names::REASON_STATUSES.iter().map(|&pair| (pair, 0)).collect();
        let mut refusals: std::collections::BTreeMap<&str, u64> = RefusalReason::ALL
            .iter()
            .filter(|r| **r != RefusalReason::NoRefusal)
            .map(|r| (r.as_str(), 0))
            .collect();
        for ((status, reason), n) in &core.generated {
            if *status < 200 {
                continue; // 100 Trying is hop by hop, not an answer
            }
            let status = bounded(names::GENERATED_STATUSES, &status.to_string());
            *generated.entry((status, reason.as_str())).or_default() += n;
            if *reason != RefusalReason::NoRefusal {
                *refusals.entry(reason.as_str()).or_default() += n;
            }
        }
        let mut family = names::GENERATED_RESPONSES.family();
        for ((status, reason), n) in generated {
            family = family.value([status, reason], n as f64);
        }
        out.push(family);
        let mut family = names::REFUSALS.family();
        for (reason, n) in refusals {
            family = family.value([reason], n as f64);
        }
        out.push(family);

        out.push(
            names::RESPONSES_DROPPED
                .family()
                .value(["wrong_connection"], core.responses_wrong_connection as f64)
                .value(["unknown_branch"], core.responses_unknown_branch as f64),
        );

        let mut decisions = std::collections::BTreeMap::<(&str, &str, &str), u64>::new();
        for dir in names::DIRECTIONS {
            for reason in names::DECISION_REASONS {
                let verdict = if names::ACCEPT_REASONS.contains(reason) {
                    "accept"
                } else {
                    "refuse"
                };
                decisions.insert((dir, verdict, reason), 0);
            }
        }
        for ((side, verdict, reason), n) in &core.decisions {
            let key = (
                direction(*side),
                *verdict,
                bounded(names::DECISION_REASONS, reason),
            );
            *decisions.entry(key).or_default() += n;
        }
        let mut family = names::FEDERATION_DECISIONS.family();
        for ((dir, verdict, reason), n) in decisions {
            family = family.value([dir, verdict, reason], n as f64);
        }
        out.push(family);
        let mut by_partner: std::collections::BTreeMap<&str, [u64; 2]> = facts
            .partners
            .iter()
            .map(String::as_str)
            .chain([names::OTHER])
            .map(|p| (p, [0, 0]))
            .collect();
        for (domain, row) in &core.partner_decisions {
            let partner = facts
                .partners
                .iter()
                .find(|p| p.as_str() == domain)
                .map_or(names::OTHER, String::as_str);
            let e = by_partner.entry(partner).or_default();
            e[0] += row[0];
            e[1] += row[1];
        }
        let mut family = names::PARTNER_DECISIONS.family();
        for (partner, row) in by_partner {
            family = family
                .value([partner, "accept"], row[0] as f64)
                .value([partner, "refuse"], row[1] as f64);
        }
        out.push(family);

        let mut family = names::TRANSACTION_DURATION.family();
        for m in MethodLabel::ALL {
            let empty = Histogram::default();
            let h = core.latency_of(m).unwrap_or(&empty);
            family = family.sample(histogram_sample(h, vec![m.as_str().to_owned()]));
        }
        out.push(family);
        let mut outcomes = names::TRANSACTION_OUTCOMES_TOTAL.family();
        for m in MethodLabel::ALL {
            for o in OutcomeLabel::ALL {
                let n = core.outcome_count(m, o);
                outcomes = outcomes.value(
                    [m.as_str(), bounded(names::TRANSACTION_OUTCOMES, o.as_str())],
                    n as f64,
                );
            }
        }
        out.push(outcomes);
        push_families(&core.push, out);

        // A gauge: every side × configured partner (and other) is there, 0 when nothing is
        // tracked — a dashboard sees 0, not a series that vanished (bounded by the configuration).
        let mut active = std::collections::BTreeMap::<(&str, &str), u64>::new();
        for side in names::SIDES {
            for partner in facts.partners.iter().map(String::as_str).chain([names::OTHER]) {
                active.insert((side, partner), 0);
            }
        }
        for ((side, partner), n) in &core.subscriptions_active {
            let partner = facts
                .partners
                .iter()
                .find(|p| *p == partner)
                .map_or(names::OTHER, String::as_str);
            *active.entry((side.as_str(), partner)).or_default() += n;
        }
        let mut family = names::SUBSCRIPTIONS_ACTIVE.family();
        for ((side, partner), n) in active {
            family = family.value([side, partner], n as f64);
        }
        out.push(family);
        let mut ended = names::SUBSCRIPTIONS_ENDED.family();
        for end in edge_core::proxy::SubscriptionEnd::ALL {
            let n = core.subscriptions_ended_by(end);
            ended = ended.value([bounded(names::SUBSCRIPTION_ENDS, end.as_str())], n as f64);
        }
        out.push(ended);
    }
}

pub(super) fn side_label(side: Side) -> &'static str {
    side.as_str()
}

/// `inbound`: traffic that arrived on the external (federation) side.
pub(super) fn direction(from: Side) -> &'static str {
    match from {
        Side::External => "inbound",
        Side::Internal => "outbound",
    }
}

pub(super) fn histogram_sample(h: &Histogram, labels: Vec<String>) -> Sample {
    Sample::Histogram {
        labels,
        cumulative: h.cumulative(),
        sum: sipedge_metrics::histogram::micros_to_seconds(h.sum_micros),
        count: h.count(),
    }
}

/// Push attempts, outcomes by the class answered, and latency.
pub(super) fn push_families(p: &edge_core::proxy::stats::PushStats, out: &mut Vec<Family>) {
    use edge_core::proxy::push::PushOutcome;
    out.push(
        names::PUSH_ATTEMPTS
            .family()
            .value(["first"], p.sent as f64)
            .value(["retry"], p.retries as f64),
    );
    let mut outcomes = names::PUSH_OUTCOMES_TOTAL.family();
    for (oi, outcome) in PushOutcome::ALL.iter().enumerate() {
        for (ci, class) in STATUS_CLASSES.iter().enumerate() {
            let n = p.outcomes.get(oi).and_then(|r| r.get(ci)).copied().unwrap_or(0);
            outcomes = outcomes.value([bounded(names::PUSH_OUTCOMES, outcome.as_str()), class], n as f64);
        }
    }
    out.push(outcomes);
    out.push(
        names::PUSH_DURATION
            .family()
            .sample(histogram_sample(&p.latency, Vec::new())),
    );
}

/// DNS queries, cache hits, failures and latency, by record type.
pub(super) fn dns_families(dns: &edge_core::dns::DnsStats, out: &mut Vec<Family>) {
    use edge_core::dns::DnsStats;
    let (mut queries, mut hits) = (names::DNS_QUERIES.family(), names::DNS_CACHE_HITS.family());
    let (mut failures, mut latency) = (names::DNS_FAILURES_TOTAL.family(), names::DNS_DURATION.family());
    for (i, rtype) in DnsStats::TYPES.iter().enumerate() {
        queries = queries.value([*rtype], dns.queries.get(i).copied().unwrap_or(0) as f64);
        hits = hits.value([*rtype], dns.cache_hits.get(i).copied().unwrap_or(0) as f64);
        for (k, kind) in DnsStats::FAILURE_KINDS.iter().enumerate() {
            let n = dns.failures.get(i).and_then(|r| r.get(k)).copied().unwrap_or(0);
            failures = failures.value([*rtype, bounded(names::DNS_FAILURES, kind)], n as f64);
        }
        let empty = Histogram::default();
        let h = dns.latency.get(i).unwrap_or(&empty);
        latency = latency.sample(histogram_sample(h, vec![(*rtype).to_owned()]));
    }
    out.extend([queries, hits, failures, latency]);
}
