//! Every metric the edge exports, in one place (STYLE.md §11): name, HELP text, type and labels as
//! [`Desc`] constants, the bounded label value sets, and [`max_series`], the most series a given
//! configuration can produce. The binary builds its snapshot from these constants only; a label value
//! that comes from another crate's vocabulary (a refusal's `metric_reason`, a close reason) goes through
//! [`bounded`], so an unlisted value becomes [`OTHER`] instead of a new series.
//!
//! Directions: `inbound` is traffic that arrived on the external (federation) side, `outbound` traffic
//! that arrived on the internal side; a response carries the direction of the request it answers.
//!
//! **Present from start** (STYLE.md §16: a panel never says "No data" on a healthy edge). Every
//! family is exported from the first scrape, with these label values at 0 until they count:
//! - every combination of its fixed label sets for requests, responses, refusals (all reasons but
//!   `none`), dropped responses, TLS handshakes, connections refused / closed, framing errors,
//!   hostile closes, DNS queries / hits / failures / latency, transaction latency and outcomes,
//!   push attempts / outcomes / latency, probes, subscriptions ended, reloads;
//! - federation decisions: `accept` with each of [`ACCEPT_REASONS`], `refuse` with each other
//!   decision reason (not the impossible `accept`/`no_srv`);
//! - generated responses: each (status, reason) pair of [`REASON_STATUSES`], the pairs the edge
//!   writes, not the 714 of the product;
//! - per configured partner (and `other`): partner decisions × verdict, active subscriptions × side;
//!   the push breaker of each configured hosted provider;
//! - each worker's loop histogram; each certificate the edge presents (the embedded default's
//!   too); the configuration gauges.
//!
//! Pre-created series are a subset of what [`max_series`] counts, so the bound holds unchanged.

use crate::histogram::{LATENCY_BOUNDS_MICROS, TURN_BOUNDS_MICROS, TURN_BUCKETS};
use crate::{Desc, Family, Kind, Label, Sample, Values};

/// The catch-all value of the open-ended sets below.
pub const OTHER: &str = "other";

/// SIP methods counted by name (Lync's `BENOTIFY` and `SERVICE` included); any other is `other`.
pub const METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "MESSAGE",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "INFO",
    "UPDATE",
    "PRACK",
    "BENOTIFY",
    "SERVICE",
    OTHER,
];
pub const STATUS_CLASSES: &[&str] = &["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];
pub const DIRECTIONS: &[&str] = &["inbound", "outbound"];
pub const SIDES: &[&str] = &["internal", "external"];

/// The statuses the edge generates itself.
pub const GENERATED_STATUSES: &[&str] = &[
    "400", "403", "404", "408", "413", "416", "420", "480", "481", "482", "483", "488", "500", "501", "502",
    "503", "504", "505", "513", "487", OTHER,
];

/// Refusal reasons: why the edge answered a request itself; `none` for a generated answer that is
/// no refusal (408 after Timer F, 483, 487 after CANCEL). Shared by generated responses and
/// refusals. The labels of `federation_policy::RefusalReason`, in its order (the binary's
/// vocabulary test holds them equal).
pub const REFUSAL_REASONS: &[&str] = &[
    "none",
    "shutting_down",
    "loop",
    "method",
    "im_filter",
    "from_not_ours",
    "from_uri",
    "relay",
    "no_domain",
    "no_route",
    "own_domain",
    "blocked",
    "from_own_domain",
    "from_blocked",
    "unknown_domain",
    "peer_mismatch",
    "provider_not_allowed",
    "no_srv",
    "srv_no_match",
    "dns_error",
    "no_a_record",
    "connect_failed",
    "tls_failed",
    "cert_mismatch",
    "overloaded",
    "discovery_limit",
    "link_lost",
    "timeout",
    "subscriptions_full",
    "push_filtered",
    "no_push_subscription",
    "push_breaker_open",
    "push_timeout",
    OTHER,
];

/// The (status, reason) pairs of generated responses the edge writes: each refusal reason with the
/// status it is answered with (`proxy/request.rs`, `route.rs`, `push.rs`, federation-policy), and
/// the answers that are no refusal (`none`). Pre-created at 0 (see the module doc).
pub const REASON_STATUSES: &[(&str, &str)] = &[
    ("400", "none"),
    ("408", "none"),
    ("481", "none"),
    ("483", "none"),
    ("487", "none"),
    ("505", "none"),
    ("513", "none"),
    ("503", "shutting_down"),
    ("482", "loop"),
    ("403", "method"),
    ("403", "im_filter"),
    ("403", "from_not_ours"),
    ("403", "from_uri"),
    ("403", "relay"),
    ("404", "no_domain"),
    ("404", "no_route"),
    ("403", "own_domain"),
    ("403", "blocked"),
    ("403", "from_own_domain"),
    ("403", "from_blocked"),
    ("504", "unknown_domain"),
    ("403", "peer_mismatch"),
    ("504", "provider_not_allowed"),
    ("504", "no_srv"),
    ("504", "srv_no_match"),
    ("504", "dns_error"),
    ("504", "no_a_record"),
    ("504", "connect_failed"),
    ("504", "tls_failed"),
    ("504", "cert_mismatch"),
    ("503", "overloaded"),
    ("503", "discovery_limit"),
    ("503", "link_lost"),
    ("408", "timeout"),
    ("503", "subscriptions_full"),
    ("403", "push_filtered"),
    ("480", "no_push_subscription"),
    ("503", "push_breaker_open"),
    ("504", "push_timeout"),
];

pub const VERDICTS: &[&str] = &["accept", "refuse"];

/// Why a federation decision went the way it did: the relationship for an accept, the refusal reason
/// of federation-policy for a refusal.
pub const DECISION_REASONS: &[&str] = &[
    "allowed_partner",
    "hosted_provider",
    "discovered_partner",
    "own_domain",
    "blocked",
    "from_own_domain",
    "from_blocked",
    "unknown_domain",
    "peer_mismatch",
    "provider_not_allowed",
    "no_srv",
    "srv_no_match",
    "dns_error",
    "discovery_limit",
    OTHER,
];

/// The decision reasons of an `accept` (the relationship); every other reason is a refusal's.
pub const ACCEPT_REASONS: &[&str] = &["allowed_partner", "hosted_provider", "discovered_partner"];

/// TLS handshake outcomes, failures bucketed.
pub const TLS_RESULTS: &[&str] = &[
    "ok",
    "timeout",
    "peer_closed",
    "certificate_untrusted",
    "certificate_expired",
    "certificate_mismatch",
    "protocol_error",
    "io_error",
    OTHER,
];

/// The limit that refused a connection.
pub const CONNECTION_LIMITS: &[&str] = &["max_connections", "per_ip", "draining", OTHER];

pub const FRAMING_KINDS: &[&str] = &[
    "message_too_large",
    "header_too_large",
    "bad_content_length",
    "bad_start_line",
    "message_timeout",
    OTHER,
];

/// Connections closed as hostile: at their first bytes (not SIP), held open without completing a
/// message or handshake, or not reading what they were sent.
pub const HOSTILE_KINDS: &[&str] = &[
    "not_sip",
    "message_timeout",
    "handshake_timeout",
    "write_overflow",
    "certificate_mismatch",
    OTHER,
];

/// edge-core's close reasons (`CloseReason::as_str`).
pub const CLOSE_REASONS: &[&str] = &[
    "peer_closed",
    "requested",
    "shutdown",
    "io_error",
    "tls_error",
    "connect_failed",
    "connect_timeout",
    "handshake_timeout",
    "certificate_mismatch",
    "not_sip",
    "message_timeout",
    "framing_error",
    "idle_timeout",
    "keepalive_failed",
    "write_overflow",
    OTHER,
];

pub const DROP_REASONS: &[&str] = &["wrong_connection", "unknown_branch"];
pub const DNS_TYPES: &[&str] = &["SRV", "A", "AAAA"];
pub const DNS_FAILURES: &[&str] = &["timeout", "servfail", "refused", "malformed", "io_error", OTHER];
pub const RELOAD_RESULTS: &[&str] = &["success", "failure"];
/// Results of a pool replica's sync with Redis.
pub const POOL_SYNC_RESULTS: &[&str] = &["ok", "failed"];
/// Where Redis went, seen from a pool replica.
pub const POOL_TRANSITIONS: &[&str] = &["up", "down"];
/// How a client transaction ended (the proxy core's one outcome path).
pub const TRANSACTION_OUTCOMES: &[&str] = &["answered", "delivery_failed", "timed_out", "link_lost"];
/// A push request's first transmission to its provider, or a retry.
pub const PUSH_ATTEMPT_KINDS: &[&str] = &["first", "retry"];
/// How a push ended: the provider's answer (`accepted`: 2xx, `rejected`: any other final), the
/// relay's own (`timed_out`, `failed`: delivery, `short_circuited`: breaker open), or a refusal
/// before anything was sent (`filtered`: IM URL filter, `no_subscription`: RFC 8599, `refused`:
/// federation policy).
pub const PUSH_OUTCOMES: &[&str] = &[
    "accepted",
    "rejected",
    "timed_out",
    "failed",
    "short_circuited",
    "filtered",
    "no_subscription",
    "refused",
];
pub const PROBE_RESULTS: &[&str] = &["success", "failure"];
/// Requests the endpoint itself refused.
pub const HTTP_REFUSALS: &[&str] = &["connection_limit", "head_too_large", "timeout", "bad_request"];

/// `value` if it is a member of `set`, else [`OTHER`]: the one way an open vocabulary becomes a label.
pub fn bounded(set: &'static [&'static str], value: &str) -> &'static str {
    set.iter().copied().find(|v| *v == value).unwrap_or(OTHER)
}

const fn fixed(name: &'static str, set: &'static [&'static str]) -> Label {
    Label {
        name,
        values: Values::Fixed(set),
    }
}

pub const METHOD: Label = fixed("method", METHODS);
pub const CLASS: Label = fixed("class", STATUS_CLASSES);
pub const DIRECTION: Label = fixed("direction", DIRECTIONS);
pub const SIDE: Label = fixed("side", SIDES);
pub const WORKER: Label = Label {
    name: "worker",
    values: Values::Worker,
};
pub const PARTNER: Label = Label {
    name: "partner",
    values: Values::Partner,
};
pub const CERTIFICATE: Label = Label {
    name: "certificate",
    values: Values::Certificate,
};
pub const SUBJECT: Label = Label {
    name: "subject",
    values: Values::Determined,
};

pub const REQUESTS: Desc = Desc::counter(
    "sipedge_requests_total",
    "SIP requests received, by direction (inbound: from the external side) and method.",
    &[DIRECTION, METHOD],
);
pub const RESPONSES: Desc = Desc::counter(
    "sipedge_responses_total",
    "SIP responses relayed, by the direction of their request, its method and the status class.",
    &[DIRECTION, METHOD, CLASS],
);
pub const GENERATED_RESPONSES: Desc = Desc::counter(
    "sipedge_generated_responses_total",
    "SIP responses the edge generated itself, by status code and diagnostic reason.",
    &[
        fixed("status", GENERATED_STATUSES),
        fixed("reason", REFUSAL_REASONS),
    ],
);
pub const REFUSALS: Desc = Desc::counter(
    "sipedge_refusals_total",
    "Requests the edge refused, by refusal reason.",
    &[fixed("reason", REFUSAL_REASONS)],
);
pub const RESPONSES_DROPPED: Desc = Desc::counter(
    "sipedge_responses_dropped_total",
    "Responses dropped unforwarded: on a connection their request did not leave on (wrong_connection) or \
     for a branch this edge never sent or has forgotten (unknown_branch).",
    &[fixed("reason", DROP_REASONS)],
);
pub const FEDERATION_DECISIONS: Desc = Desc::counter(
    "sipedge_federation_decisions_total",
    "Federation policy decisions, by direction, verdict and reason.",
    &[
        DIRECTION,
        fixed("verdict", VERDICTS),
        fixed("reason", DECISION_REASONS),
    ],
);
pub const PARTNER_DECISIONS: Desc = Desc::counter(
    "sipedge_federation_partner_decisions_total",
    "Federation policy decisions by configured partner (any other domain is \"other\") and verdict.",
    &[PARTNER, fixed("verdict", VERDICTS)],
);
pub const TLS_HANDSHAKES: Desc = Desc::counter(
    "sipedge_tls_handshakes_total",
    "TLS handshakes finished, by side and result (failures bucketed by cause).",
    &[SIDE, fixed("result", TLS_RESULTS)],
);
pub const CONNECTIONS_ACTIVE: Desc = Desc::gauge(
    "sipedge_connections_active",
    "Open SIP connections (accepted or dialled, handshaking included), by side.",
    &[SIDE],
);
pub const CONNECTIONS_REFUSED: Desc = Desc::counter(
    "sipedge_connections_refused_total",
    "Incoming connections refused, by side and the limit that refused them.",
    &[SIDE, fixed("limit", CONNECTION_LIMITS)],
);
pub const CONNECTIONS_CLOSED: Desc = Desc::counter(
    "sipedge_connections_closed_total",
    "SIP connections closed, by side and reason.",
    &[SIDE, fixed("reason", CLOSE_REASONS)],
);
pub const FRAMING_ERRORS: Desc = Desc::counter(
    "sipedge_framing_errors_total",
    "Stream framing errors (the connection is closed), by side and kind.",
    &[SIDE, fixed("kind", FRAMING_KINDS)],
);
pub const HOSTILE_CLOSES: Desc = Desc::counter(
    "sipedge_hostile_closes_total",
    "Connections closed as hostile, by side and kind.",
    &[SIDE, fixed("kind", HOSTILE_KINDS)],
);
pub const DNS_QUERIES: Desc = Desc::counter(
    "sipedge_dns_queries_total",
    "DNS queries sent, by record type.",
    &[fixed("type", DNS_TYPES)],
);
pub const DNS_CACHE_HITS: Desc = Desc::counter(
    "sipedge_dns_cache_hits_total",
    "DNS lookups answered from the cache, by record type.",
    &[fixed("type", DNS_TYPES)],
);
pub const DNS_FAILURES_TOTAL: Desc = Desc::counter(
    "sipedge_dns_failures_total",
    "DNS queries that got no usable answer, by record type and kind of failure.",
    &[fixed("type", DNS_TYPES), fixed("kind", DNS_FAILURES)],
);
pub const DNS_DURATION: Desc = Desc::histogram(
    "sipedge_dns_query_duration_seconds",
    "Time from sending a DNS query to its answer or failure, by record type.",
    &LATENCY_BOUNDS_MICROS,
    &[fixed("type", DNS_TYPES)],
);
pub const TRANSACTION_DURATION: Desc = Desc::histogram(
    "sipedge_transaction_duration_seconds",
    "Time from forwarding a request to its final outcome (response, timeout or failure), by method.",
    &LATENCY_BOUNDS_MICROS,
    &[METHOD],
);
pub const TRANSACTION_OUTCOMES_TOTAL: Desc = Desc::counter(
    "sipedge_transaction_outcomes_total",
    "Forwarded requests by how their client transaction ended (a final response, a failed delivery, \
     a timer, a lost link), by method.",
    &[METHOD, fixed("outcome", TRANSACTION_OUTCOMES)],
);
pub const LOOP_TURN_DURATION: Desc = Desc::histogram(
    "sipedge_event_loop_turn_duration_seconds",
    "Time one event-loop turn of a worker took (handling its ready events and timers), by worker.",
    &TURN_BOUNDS_MICROS,
    &[WORKER],
);
pub const CONFIG_GENERATION: Desc = Desc::gauge(
    "sipedge_config_generation",
    "Generation of the running configuration: 1 at start, one more for each reload applied.",
    &[],
);
pub const CONFIG_LAST_RELOAD: Desc = Desc::gauge(
    "sipedge_config_last_reload_timestamp_seconds",
    "Unix time of the last reload attempt (0: none since start).",
    &[],
);
pub const CONFIG_LAST_RELOAD_SUCCESS: Desc = Desc::gauge(
    "sipedge_config_last_reload_success",
    "Whether the last reload attempt was applied (1) or refused (0); 1 when none was made.",
    &[],
);
pub const CONFIG_RELOADS: Desc = Desc::counter(
    "sipedge_config_reloads_total",
    "Reload attempts, by result.",
    &[fixed("result", RELOAD_RESULTS)],
);
pub const POOL_REDIS_UP: Desc = Desc::gauge(
    "sipedge_pool_redis_up",
    "Whether the last sync of this pool replica reached Redis (1) or not (0); 0 on a standalone edge.",
    &[],
);
pub const POOL_REPLICAS: Desc = Desc::gauge(
    "sipedge_pool_replicas",
    "Live replicas of the pool at the last successful sync, this one included; 0 on a standalone edge.",
    &[],
);
pub const POOL_SYNCS: Desc = Desc::counter(
    "sipedge_pool_syncs_total",
    "Syncs of this pool replica with Redis, by result.",
    &[fixed("result", POOL_SYNC_RESULTS)],
);
pub const POOL_TRANSITIONS_TOTAL: Desc = Desc::counter(
    "sipedge_pool_redis_transitions_total",
    "Times Redis became reachable again (up) or unreachable (down) for this pool replica.",
    &[fixed("to", POOL_TRANSITIONS)],
);
pub const POOL_REDIS_COMMANDS: Desc = Desc::counter(
    "sipedge_pool_redis_commands_total",
    "Redis commands this pool replica sent (each command of a pipeline counts).",
    &[],
);
pub const LOG_LINES_DROPPED: Desc = Desc::counter(
    "sipedge_log_lines_dropped_total",
    "Log lines dropped because the log queue was full (the writer could not keep up); each drop is \
     also reported in a log_lines_dropped line once there is room.",
    &[],
);
pub const CONFIG_WATCHED_FILES: Desc = Desc::gauge(
    "sipedge_config_watched_files",
    "Files `run --watch` follows for changes (the configuration and every certificate, key and CA file \
     it loaded); 0 without --watch.",
    &[],
);
pub const CERTIFICATE_EXPIRY: Desc = Desc::gauge(
    "sipedge_certificate_expiry_timestamp_seconds",
    "Unix time at which a configured certificate expires (its notAfter), by role and subject.",
    &[CERTIFICATE, SUBJECT],
);
/// The limits each discovered partner is held to (Lync's: 20 messages/s, 1,000 distinct internal
/// contacts per 60 minutes).
pub const DISCOVERY_LIMITS: &[&str] = &["messages_per_second", "contacts_per_window", "window_seconds"];
pub const DISCOVERED_PARTNERS: Desc = Desc::gauge(
    "sipedge_discovered_partners",
    "Discovered partners (federated through their DNS SRV record, not configured) the edge-wide limiter \
     tracks now; 0 with partner discovery off.",
    &[],
);
pub const CONFIG_DISCOVERY_LIMIT: Desc = Desc::gauge(
    "sipedge_config_discovery_limit",
    "The limits each discovered partner is held to, by limit (messages_per_second, contacts_per_window: \
     distinct internal contacts, window_seconds); 0 with partner discovery off.",
    &[fixed("limit", DISCOVERY_LIMITS)],
);
pub const READY: Desc = Desc::gauge(
    "sipedge_ready",
    "1 while the edge takes new work (both listeners up, not draining) — what /readyz answers 200 for; \
     0 from the moment SIGTERM arrives.",
    &[],
);
pub const CONFIG_MAX_CONNECTIONS: Desc = Desc::gauge(
    "sipedge_config_max_connections",
    "limits.max_connections of the running configuration: open connections (both sides) past it are refused.",
    &[],
);
pub const CONFIG_MAX_SUBSCRIPTIONS: Desc = Desc::gauge(
    "sipedge_config_max_subscriptions",
    "limits.max_subscriptions of the running configuration: a new SUBSCRIBE past it gets 503 (id 1913).",
    &[],
);
pub const BUILD_INFO: Desc = Desc::gauge(
    "sipedge_build_info",
    "Always 1; the labels name the running build.",
    &[
        Label {
            name: "version",
            values: Values::Determined,
        },
        Label {
            name: "commit",
            values: Values::Determined,
        },
    ],
);
/// Rendered by this crate, not the binary.
pub const SAMPLES_REJECTED: Desc = Desc::counter(
    "sipedge_metrics_samples_rejected_total",
    "Samples left out of the exposition because they broke their family's contract (label count, \
     kind, value, buckets, duplicate series); a bug in the edge, never expected.",
    &[],
);
/// Rendered by this crate, not the binary.
pub const HTTP_REFUSED: Desc = Desc::counter(
    "sipedge_metrics_http_refusals_total",
    "Requests to the metrics endpoint refused or cut off, by reason.",
    &[fixed("reason", HTTP_REFUSALS)],
);

/// The families the endpoint renders itself ([`crate::http`]); a Source's family of one of these names
/// is left out and counted as rejected.
pub const EXPORTER: &[Desc] = &[SAMPLES_REJECTED, HTTP_REFUSED];

/// Every family, in exposition order (the binary's, then [`EXPORTER`]).
pub const PUSH_ATTEMPTS: Desc = Desc::counter(
    "sipedge_push_attempts_total",
    "Push requests sent to their provider, first transmissions and retries.",
    &[fixed("kind", PUSH_ATTEMPT_KINDS)],
);
pub const PUSH_OUTCOMES_TOTAL: Desc = Desc::counter(
    "sipedge_push_outcomes_total",
    "Push requests by how they ended and the status class answered to the sender.",
    &[fixed("outcome", PUSH_OUTCOMES), CLASS],
);
pub const PUSH_DURATION: Desc = Desc::histogram(
    "sipedge_push_duration_seconds",
    "Time from a push request's arrival to its final answer, retries included.",
    &LATENCY_BOUNDS_MICROS,
    &[],
);
pub const PUSH_BREAKER_STATE: Desc = Desc::gauge(
    "sipedge_push_breaker_state",
    "Circuit breaker of each push provider: 0 closed, 1 half-open (a probe in flight), 2 open.",
    &[PARTNER],
);
pub const PUSH_PROBES: Desc = Desc::counter(
    "sipedge_push_probes_total",
    "Synthetic push transactions run by GET /probe/push (cached answers not counted), by result.",
    &[fixed("result", PROBE_RESULTS)],
);

/// Why a tracked subscription ended (`edge_core::proxy::SubscriptionEnd`).
pub const SUBSCRIPTION_ENDS: &[&str] = &[
    "notifier_link_failed",
    "subscriber_link_failed",
    "terminated",
    "gone",
    "expired",
];
pub const SUBSCRIPTIONS_ACTIVE: Desc = Desc::gauge(
    "sipedge_subscriptions_active",
    "SUBSCRIBE dialogs the edge tracks for liveness, by the subscriber's side and the partner of the dialog.",
    &[SIDE, PARTNER],
);
pub const SUBSCRIPTIONS_ENDED: Desc = Desc::counter(
    "sipedge_subscriptions_ended_total",
    "Tracked subscriptions that ended, by cause: notifier_link_failed (the edge sent the subscriber \
     NOTIFY terminated;reason=deactivated, id 1912), subscriber_link_failed, terminated (by the \
     notifier), gone (481), expired.",
    &[fixed("cause", SUBSCRIPTION_ENDS)],
);

pub const ALL: &[Desc] = &[
    REQUESTS,
    RESPONSES,
    GENERATED_RESPONSES,
    REFUSALS,
    RESPONSES_DROPPED,
    FEDERATION_DECISIONS,
    PARTNER_DECISIONS,
    TLS_HANDSHAKES,
    CONNECTIONS_ACTIVE,
    CONNECTIONS_REFUSED,
    CONNECTIONS_CLOSED,
    FRAMING_ERRORS,
    HOSTILE_CLOSES,
    DNS_QUERIES,
    DNS_CACHE_HITS,
    DNS_FAILURES_TOTAL,
    DNS_DURATION,
    TRANSACTION_DURATION,
    TRANSACTION_OUTCOMES_TOTAL,
    LOOP_TURN_DURATION,
    CONFIG_GENERATION,
    CONFIG_LAST_RELOAD,
    CONFIG_LAST_RELOAD_SUCCESS,
    CONFIG_RELOADS,
    CONFIG_WATCHED_FILES,
    POOL_REDIS_UP,
    POOL_REPLICAS,
    POOL_SYNCS,
    POOL_TRANSITIONS_TOTAL,
    POOL_REDIS_COMMANDS,
    LOG_LINES_DROPPED,
    CERTIFICATE_EXPIRY,
    READY,
    DISCOVERED_PARTNERS,
    CONFIG_DISCOVERY_LIMIT,
    CONFIG_MAX_CONNECTIONS,
    CONFIG_MAX_SUBSCRIPTIONS,
    BUILD_INFO,
    SAMPLES_REJECTED,
    HTTP_REFUSED,
    PUSH_ATTEMPTS,
    PUSH_OUTCOMES_TOTAL,
    PUSH_DURATION,
    PUSH_BREAKER_STATE,
    PUSH_PROBES,
    SUBSCRIPTIONS_ACTIVE,
    SUBSCRIPTIONS_ENDED,
];

/// How many values `label` can take for this configuration.
pub fn cardinality(label: &Label, workers: usize, configured_partners: usize, certificates: usize) -> usize {
    match label.values {
        Values::Fixed(set) => set.len(),
        Values::Worker => workers,
        Values::Partner => configured_partners.saturating_add(1),
        Values::Certificate => certificates,
        Values::Determined => 1,
    }
}

/// Exposition lines (series) of one label set of `desc`: one for a counter or gauge; one per bucket,
/// `+Inf`, `_sum` and `_count` for a histogram.
pub fn lines_per_series(desc: &Desc) -> usize {
    match desc.kind {
        Kind::Counter | Kind::Gauge => 1,
        Kind::Histogram(bounds) => bounds.len() + 3,
    }
}

/// The most series `/metrics` can ever carry for a configuration: the product of every family's label
/// cardinalities ([`cardinality`]), times [`lines_per_series`], summed over [`ALL`]. `workers` is the
/// worker thread count (after `workers = 0` is resolved to the core count), `configured_partners` the
/// allowed domains plus hosted providers (`other` is added here), `certificates` the configured
/// certificates (internal and external: 2).
///
/// It is an upper bound: `status × reason` of generated responses and `verdict × reason` of decisions
/// count pairs that never occur together. Today it comes to
/// `BASE + workers · PER_WORKER + configured_partners · PER_PARTNER + certificates` with
/// `BASE = 1 638`, `PER_WORKER = 15` (one turn histogram), `PER_PARTNER = 5` (accept and refuse; a provider's
/// breaker state; active subscriptions on either side) —
/// e.g. 4 workers, 20 partners and 2 certificates: 1 800 series (714 of the base are the `status × reason` pairs of generated responses, 39 of which the edge writes). The unit tests keep these numbers and
/// check the function against a rendered exposition of every possible series.
pub fn max_series(workers: usize, configured_partners: usize, certificates: usize) -> usize {
    ALL.iter()
        .map(|desc| {
            desc.labels
                .iter()
                .map(|l| cardinality(l, workers, configured_partners, certificates))
                .fold(lines_per_series(desc), usize::saturating_mul)
        })
        .fold(0, usize::saturating_add)
}

/// Lines per worker and per partner, and the base, of [`max_series`] (quoted in its doc).
pub const PER_WORKER_SERIES: usize = TURN_BUCKETS + 3;
pub const PER_PARTNER_SERIES: usize = 5;

/// Every series [`max_series`] counts, with made-up values (partners `partner0`…, certificates
/// `certificate0`…, histograms one observation per bucket and one above): a complete example exposition
/// for dashboards, docs and the `promtool` test.
pub fn every_series(workers: usize, configured_partners: usize, certificates: usize) -> Vec<Family> {
    ALL.iter()
        .map(|desc| {
            let mut combos: Vec<Vec<String>> = vec![Vec::new()];
            for label in desc.labels {
                let values = example_values(label, workers, configured_partners, certificates);
                combos = combos
                    .iter()
                    .flat_map(|c| {
                        values.iter().map(move |v| {
                            let mut c = c.clone();
                            c.push(v.clone());
                            c
                        })
                    })
                    .collect();
            }
            let samples = combos
                .into_iter()
                .enumerate()
                .map(|(i, labels)| match desc.kind {
                    Kind::Counter | Kind::Gauge => Sample::Value {
                        labels,
                        value: i as f64,
                    },
                    Kind::Histogram(bounds) => {
                        let n = u64::try_from(bounds.len()).unwrap_or(u64::MAX);
                        Sample::Histogram {
                            labels,
                            cumulative: (1..=n).collect(),
                            sum: 0.25,
                            count: n.saturating_add(1),
                        }
                    }
                })
                .collect();
            Family { desc: *desc, samples }
        })
        .collect()
}

fn example_values(label: &Label, workers: usize, partners: usize, certificates: usize) -> Vec<String> {
    let numbered = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    match label.values {
        Values::Fixed(set) => set.iter().map(|v| (*v).to_owned()).collect(),
        Values::Worker => numbered("", workers),
        Values::Partner => {
            let mut v = numbered("partner", partners);
            v.push(OTHER.to_owned());
            v
        }
        Values::Certificate => numbered("certificate", certificates),
        Values::Determined => vec![format!("{} value", label.name)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_prefixed_and_typed_by_suffix() {
        let mut seen = HashSet::new();
        for d in ALL {
            assert!(seen.insert(d.name), "duplicate {}", d.name);
            assert!(d.name.starts_with("sipedge_"), "{}", d.name);
            assert!(!d.help.is_empty(), "{} has no HELP", d.name);
            match d.kind {
                Kind::Counter => assert!(d.name.ends_with("_total"), "{}", d.name),
                Kind::Gauge => assert!(!d.name.ends_with("_total"), "{}", d.name),
                Kind::Histogram(_) => assert!(d.name.ends_with("_seconds"), "{}", d.name),
            }
            let labels: HashSet<_> = d.labels.iter().map(|l| l.name).collect();
            assert_eq!(labels.len(), d.labels.len(), "{} repeats a label", d.name);
            assert!(!labels.contains("le"), "{}", d.name);
        }
    }

    #[test]
    fn value_sets_have_no_duplicates_and_open_ones_end_in_other() {
        let open = [
            METHODS,
            GENERATED_STATUSES,
            REFUSAL_REASONS,
            DECISION_REASONS,
            TLS_RESULTS,
            CONNECTION_LIMITS,
            FRAMING_KINDS,
            HOSTILE_KINDS,
            CLOSE_REASONS,
            DNS_FAILURES,
        ];
        for set in open {
            assert_eq!(set.last(), Some(&OTHER), "{set:?}");
        }
        for d in ALL {
            for l in d.labels {
                if let Values::Fixed(set) = l.values {
                    let unique: HashSet<_> = set.iter().collect();
                    assert_eq!(unique.len(), set.len(), "{}:{} {set:?}", d.name, l.name);
                }
            }
        }
    }

    #[test]
    fn bounded_keeps_members_and_folds_the_rest_into_other() {
        assert_eq!(bounded(METHODS, "INVITE"), "INVITE");
        assert_eq!(bounded(METHODS, "invite"), OTHER);
        assert_eq!(bounded(METHODS, "XYZZY"), OTHER);
        assert_eq!(bounded(CLOSE_REASONS, "write_overflow"), "write_overflow");
    }

    /// The pre-created pairs are pairs of the family's sets, and every refusal reason has its status.
    #[test]
    fn reason_statuses_cover_every_reason_within_the_sets() {
        for (status, reason) in REASON_STATUSES {
            assert!(GENERATED_STATUSES.contains(status), "{status}");
            assert!(REFUSAL_REASONS.contains(reason), "{reason}");
        }
        for reason in REFUSAL_REASONS.iter().filter(|r| **r != OTHER) {
            assert!(
                REASON_STATUSES.iter().any(|(_, r)| r == reason),
                "{reason} has no status"
            );
        }
        for reason in ACCEPT_REASONS {
            assert!(DECISION_REASONS.contains(reason), "{reason}");
        }
    }

    #[test]
    fn max_series_is_base_plus_workers_partners_and_certificates() {
        let base = max_series(0, 0, 0);
        assert_eq!(base, 1_638, "update the figures in max_series' doc");
        assert_eq!(max_series(1, 0, 0) - base, PER_WORKER_SERIES);
        assert_eq!(PER_WORKER_SERIES, 15);
        assert_eq!(max_series(0, 1, 0) - base, PER_PARTNER_SERIES);
        assert_eq!(max_series(0, 0, 1) - base, 1);
        assert_eq!(max_series(4, 20, 2), 1_800);
        assert_eq!(
            max_series(7, 13, 2),
            base + 7 * PER_WORKER_SERIES + 13 * PER_PARTNER_SERIES + 2,
            "linear in each argument"
        );
    }
}
