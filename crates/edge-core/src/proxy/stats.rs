//! [`CoreStats`]: what one worker's proxy core counts — plain integers in arrays indexed by bounded
//! enums ([`MethodLabel`], [`Side`], status class, [`OutcomeLabel`]) plus two small maps keyed by
//! static strings (generated responses by status and reason, federation decisions by verdict and
//! reason), and a fixed-bucket latency [`Histogram`] per method. Written by the owning worker only,
//! with no atomics or locks; the shell copies it into a slot the metrics scrape reads
//! (`shell/shared.rs`), and the `metrics` crate is the only one that knows Prometheus.
//!
//! Every label value is bounded by construction: methods outside the table count as `other`,
//! statuses and reasons are the core's own constants.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use federation_policy::RefusalReason;

use super::io::Side;

/// The methods counted by name; everything else is `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MethodLabel {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Message,
    Subscribe,
    Notify,
    Refer,
    Info,
    Update,
    Prack,
    Benotify,
    Service,
    Other,
}

impl MethodLabel {
    pub const ALL: [MethodLabel; 15] = [
        MethodLabel::Invite,
        MethodLabel::Ack,
        MethodLabel::Bye,
        MethodLabel::Cancel,
        MethodLabel::Options,
        MethodLabel::Message,
        MethodLabel::Subscribe,
        MethodLabel::Notify,
        MethodLabel::Refer,
        MethodLabel::Info,
        MethodLabel::Update,
        MethodLabel::Prack,
        MethodLabel::Benotify,
        MethodLabel::Service,
        MethodLabel::Other,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// Method names are case-sensitive (RFC 3261 §7.1).
    pub fn of(method: &str) -> MethodLabel {
        match method {
            "INVITE" => MethodLabel::Invite,
            "ACK" => MethodLabel::Ack,
            "BYE" => MethodLabel::Bye,
            "CANCEL" => MethodLabel::Cancel,
            "OPTIONS" => MethodLabel::Options,
            "MESSAGE" => MethodLabel::Message,
            "SUBSCRIBE" => MethodLabel::Subscribe,
            "NOTIFY" => MethodLabel::Notify,
            "REFER" => MethodLabel::Refer,
            "INFO" => MethodLabel::Info,
            "UPDATE" => MethodLabel::Update,
            "PRACK" => MethodLabel::Prack,
            "BENOTIFY" => MethodLabel::Benotify,
            "SERVICE" => MethodLabel::Service,
            _ => MethodLabel::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MethodLabel::Invite => "INVITE",
            MethodLabel::Ack => "ACK",
            MethodLabel::Bye => "BYE",
            MethodLabel::Cancel => "CANCEL",
            MethodLabel::Options => "OPTIONS",
            MethodLabel::Message => "MESSAGE",
            MethodLabel::Subscribe => "SUBSCRIBE",
            MethodLabel::Notify => "NOTIFY",
            MethodLabel::Refer => "REFER",
            MethodLabel::Info => "INFO",
            MethodLabel::Update => "UPDATE",
            MethodLabel::Prack => "PRACK",
            MethodLabel::Benotify => "BENOTIFY",
            MethodLabel::Service => "SERVICE",
            MethodLabel::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a client transaction ended (the one outcome path, `txn.rs::conclude`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeLabel {
    /// A final response came back from the next hop.
    Answered,
    /// The request could not be delivered (resolve, connect, TLS, certificate, overload).
    DeliveryFailed,
    /// Timer F / B / C expired.
    TimedOut,
    /// The connection it went out on closed before a final response.
    LinkLost,
}

impl OutcomeLabel {
    pub const ALL: [OutcomeLabel; 4] = [
        OutcomeLabel::Answered,
        OutcomeLabel::DeliveryFailed,
        OutcomeLabel::TimedOut,
        OutcomeLabel::LinkLost,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeLabel::Answered => "answered",
            OutcomeLabel::DeliveryFailed => "delivery_failed",
            OutcomeLabel::TimedOut => "timed_out",
            OutcomeLabel::LinkLost => "link_lost",
        }
    }
}

/// Upper bounds of the latency buckets, in microseconds: 0.5 ms … 60 s (a loopback hop to a mobile
/// endpoint's 60 s answer), the same as the `metrics` crate's (the binary's tests check they agree).
pub const LATENCY_BOUNDS_MICROS: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Upper bounds of the event-loop turn buckets, in microseconds: 10 µs … 1 s.
pub const TURN_BOUNDS_MICROS: [u64; 12] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 100_000, 1_000_000,
];

/// A fixed-bucket histogram of durations, owned by one thread: per-bucket (not cumulative) counts
/// over `bounds` (µs), the last one for values above every bound, and the sum in microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub bounds: &'static [u64],
    pub counts: Vec<u64>,
    pub sum_micros: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(&LATENCY_BOUNDS_MICROS)
    }
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum_micros: 0,
        }
    }

    pub fn observe(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = self
            .bounds
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another histogram over the same bounds (one over other bounds is ignored).
    pub fn merge(&mut self, other: &Histogram) {
        if self.bounds != other.bounds {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }

    /// Cumulative counts per finite bound (Prometheus `le` buckets), without the +Inf bucket.
    pub fn cumulative(&self) -> Vec<u64> {
        let mut acc = 0;
        self.counts
            .iter()
            .take(self.bounds.len())
            .map(|c| {
                acc += c;
                acc
            })
            .collect()
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Internal => 0,
        Side::External => 1,
    }
}

/// Status class index 0..6 for 1xx..6xx (anything else counts as 5xx: it is a broken peer).
fn class_index(status: u16) -> usize {
    match status / 100 {
        1 => 0,
        2 => 1,
        3 => 2,
        4 => 3,
        6 => 5,
        _ => 4,
    }
}

pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

/// What the push relay counted (`push.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Pushes sent to their provider (first attempts).
    pub sent: u64,
    /// Further attempts after a 503 or no answer.
    pub retries: u64,
    /// Pushes by how they ended (`PushOutcome::ALL` order) and the class of the final answer.
    pub outcomes: [[u64; 6]; 8],
    /// Arrival → final answer, retries included.
    pub latency: Histogram,
}

impl PushStats {
    pub fn finished(&mut self, outcome: super::push::PushOutcome, status: u16, took: Duration) {
        if let Some(row) = self.outcomes.get_mut(outcome as usize) {
            bump(row, class_index(status));
        }
        self.latency.observe(took);
    }

    pub fn merge(&mut self, o: &PushStats) {
        self.sent += o.sent;
        self.retries += o.retries;
        for (a, b) in self.outcomes.iter_mut().zip(o.outcomes.iter()) {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                *x += y;
            }
        }
        self.latency.merge(&o.latency);
    }
}

/// The last refusals one worker keeps for the status page (the edge-wide view keeps
/// [`RECENT_REFUSALS_MERGED`] of all workers'): what an operator would otherwise grep the log for.
pub const RECENT_REFUSALS: usize = 32;
/// The refusals the merged (edge-wide) view keeps, newest last.
pub const RECENT_REFUSALS_MERGED: usize = 50;

/// One refusal the edge answered: when, to which side, what it said (the internal form of the
/// diagnostic: the status page is on the inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentRefusal {
    pub at: Instant,
    /// The side the refusal was sent to (where the request came from).
    pub side: Side,
    pub method: String,
    pub status: u16,
    /// Why (`no_srv`, `relay`, ...).
    pub reason: RefusalReason,
    /// The `ms-diagnostics` value with every fact, e.g. `1008;reason="...";source="...";domain="..."`.
    pub diagnostic: String,
}

/// One worker's core counters. Plain integers: copied, not shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreStats {
    /// Requests received, by the side they came from and method.
    pub requests_in: [[u64; MethodLabel::COUNT]; 2],
    /// Requests forwarded, by the side they went to and method.
    pub requests_out: [[u64; MethodLabel::COUNT]; 2],
    /// Responses received from a next hop, by its side, CSeq method and status class.
    pub responses_in: [[[u64; 6]; MethodLabel::COUNT]; 2],
    /// Responses the edge generated, by status and reason (`NoRefusal` for 100, 483 ...).
    pub generated: BTreeMap<(u16, RefusalReason), u64>,
    /// Federation decisions: (side the request came from, `accept` | `refuse`, relationship or
    /// reason).
    pub decisions: BTreeMap<(Side, &'static str, &'static str), u64>,
    /// Federation decisions about configured (allowed) partners only: `[accepted, refused]` by
    /// domain. Bounded by the configuration's allowed list.
    pub partner_decisions: BTreeMap<String, [u64; 2]>,
    /// Client transaction outcomes by method.
    pub outcomes: [[u64; OutcomeLabel::COUNT]; MethodLabel::COUNT],
    /// Client transaction latency (sent → outcome) by method.
    pub latency: [Histogram; MethodLabel::COUNT],
    /// Responses dropped: our branch on a connection the request did not go out on.
    pub responses_wrong_connection: u64,
    /// Responses dropped: a branch this worker does not know.
    pub responses_unknown_branch: u64,
    /// The push relay's counters.
    pub push: PushStats,
    /// Subscriptions tracked now, by the subscriber's side and the partner of the dialog (a
    /// configured partner's domain, else `other`): bounded by the configuration.
    pub subscriptions_active: BTreeMap<(Side, String), u64>,
    /// Subscriptions ended, by [`crate::proxy::SubscriptionEnd`] (its `index`).
    pub subscriptions_ended: [u64; 5],
    /// Open connections by the side and name of their peer (the host dialled, or an accepted peer's
    /// certificate names): the federation links up now. Bounded by the connections.
    pub links: BTreeMap<(Side, String), u32>,
    /// The last refusals, oldest first ([`RECENT_REFUSALS`] per worker).
    pub recent_refusals: VecDeque<RecentRefusal>,
}

impl Default for CoreStats {
    fn default() -> Self {
        CoreStats {
            requests_in: [[0; MethodLabel::COUNT]; 2],
            requests_out: [[0; MethodLabel::COUNT]; 2],
            responses_in: [[[0; 6]; MethodLabel::COUNT]; 2],
            generated: BTreeMap::new(),
            decisions: BTreeMap::new(),
            partner_decisions: BTreeMap::new(),
            outcomes: [[0; OutcomeLabel::COUNT]; MethodLabel::COUNT],
            latency: std::array::from_fn(|_| Histogram::default()),
            responses_wrong_connection: 0,
            responses_unknown_branch: 0,
            push: PushStats::default(),
            subscriptions_active: BTreeMap::new(),
            subscriptions_ended: [0; 5],
            links: BTreeMap::new(),
            recent_refusals: VecDeque::new(),
        }
    }
}

/// Bumps one cell of a counter array; out-of-range indexes cannot happen (enums) and are ignored.
fn bump<const N: usize>(row: &mut [u64; N], i: usize) {
    if let Some(c) = row.get_mut(i) {
        *c += 1;
    }
}

impl CoreStats {
    /// A refusal answered: kept among the worker's last [`RECENT_REFUSALS`].
    pub fn refused(&mut self, r: RecentRefusal) {
        if self.recent_refusals.len() >= RECENT_REFUSALS {
            self.recent_refusals.pop_front();
        }
        self.recent_refusals.push_back(r);
    }

    /// A connection to the peer named `names` on `side` is up (`+1`) or ended (`-1`).
    pub fn link(&mut self, side: Side, names: &[String], up: bool) {
        for name in names {
            let key = (side, name.clone());
            if up {
                *self.links.entry(key).or_default() += 1;
            } else if let Some(n) = self.links.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.links.remove(&key);
                }
            }
        }
    }

    /// Requests received from `side` with method `m` (what the binary reads; the arrays' layout
    /// stays the core's).
    pub fn requests_received(&self, side: Side, m: MethodLabel) -> u64 {
        self.requests_in
            .get(side_index(side))
            .and_then(|row| row.get(m.index()))
            .copied()
            .unwrap_or(0)
    }

    /// Responses received from a hop on `side` to method `m`, of status class `class` (an entry
    /// of [`STATUS_CLASSES`]: `1xx` … `6xx`).
    pub fn responses_received(&self, side: Side, m: MethodLabel, class: &str) -> u64 {
        let Some(ci) = STATUS_CLASSES.iter().position(|c| *c == class) else {
            return 0;
        };
        self.responses_in
            .get(side_index(side))
            .and_then(|s| s.get(m.index()))
            .and_then(|row| row.get(ci))
            .copied()
            .unwrap_or(0)
    }

    /// Client transactions of method `m` that ended with outcome `o`.
    pub fn outcome_count(&self, m: MethodLabel, o: OutcomeLabel) -> u64 {
        self.outcomes
            .get(m.index())
            .and_then(|row| row.get(o as usize))
            .copied()
            .unwrap_or(0)
    }

    /// The latency histogram of method `m`'s client transactions.
    pub fn latency_of(&self, m: MethodLabel) -> Option<&Histogram> {
        self.latency.get(m.index())
    }

    /// Subscriptions ended by `end`.
    pub fn subscriptions_ended_by(&self, end: crate::proxy::SubscriptionEnd) -> u64 {
        self.subscriptions_ended.get(end.index()).copied().unwrap_or(0)
    }

    pub fn request_in(&mut self, side: Side, m: MethodLabel) {
        if let Some(row) = self.requests_in.get_mut(side_index(side)) {
            bump(row, m.index());
        }
    }

    pub fn request_out(&mut self, side: Side, m: MethodLabel) {
        if let Some(row) = self.requests_out.get_mut(side_index(side)) {
            bump(row, m.index());
        }
    }

    pub fn response_in(&mut self, side: Side, m: MethodLabel, status: u16) {
        if let Some(row) = self
            .responses_in
            .get_mut(side_index(side))
            .and_then(|s| s.get_mut(m.index()))
        {
            bump(row, class_index(status));
        }
    }

    pub fn generated(&mut self, status: u16, reason: RefusalReason) {
        *self.generated.entry((status, reason)).or_default() += 1;
    }

    pub fn decision(&mut self, side: Side, verdict: &'static str, reason: &'static str) {
        *self.decisions.entry((side, verdict, reason)).or_default() += 1;
    }

    /// A decision about a configured partner (allocates only the first time a partner is seen).
    pub fn partner_decision(&mut self, domain: &str, accepted: bool) {
        let i = usize::from(!accepted);
        match self.partner_decisions.get_mut(domain) {
            Some(row) => bump(row, i),
            None => {
                let mut row = [0; 2];
                bump(&mut row, i);
                self.partner_decisions.insert(domain.to_owned(), row);
            }
        }
    }

    pub fn outcome(&mut self, m: MethodLabel, o: OutcomeLabel, took: Duration) {
        if let Some(row) = self.outcomes.get_mut(m.index()) {
            bump(row, o as usize);
        }
        if let Some(h) = self.latency.get_mut(m.index()) {
            h.observe(took);
        }
    }

    /// Generated responses with `reason` (any status): for tests and logs.
    pub fn generated_for(&self, reason: RefusalReason) -> u64 {
        self.generated
            .iter()
            .filter(|((_, r), _)| *r == reason)
            .map(|(_, n)| n)
            .sum()
    }

    /// Adds another worker's counters.
    pub fn merge(&mut self, o: &CoreStats) {
        fn add<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                *x += y;
            }
        }
        for (a, b) in self.requests_in.iter_mut().zip(o.requests_in.iter()) {
            add(a, b);
        }
        for (a, b) in self.requests_out.iter_mut().zip(o.requests_out.iter()) {
            add(a, b);
        }
        for (a, b) in self.responses_in.iter_mut().zip(o.responses_in.iter()) {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                add(x, y);
            }
        }
        for (k, v) in &o.generated {
            *self.generated.entry(*k).or_default() += v;
        }
        for (k, v) in &o.decisions {
            *self.decisions.entry(*k).or_default() += v;
        }
        for (k, v) in &o.partner_decisions {
            let row = self.partner_decisions.entry(k.clone()).or_default();
            row[0] += v[0];
            row[1] += v[1];
        }
        for (a, b) in self.outcomes.iter_mut().zip(o.outcomes.iter()) {
            add(a, b);
        }
        for (a, b) in self.latency.iter_mut().zip(o.latency.iter()) {
            a.merge(b);
        }
        self.responses_wrong_connection += o.responses_wrong_connection;
        self.responses_unknown_branch += o.responses_unknown_branch;
        self.push.merge(&o.push);
        for (k, v) in &o.subscriptions_active {
            *self.subscriptions_active.entry(k.clone()).or_default() += v;
        }
        add(&mut self.subscriptions_ended, &o.subscriptions_ended);
        for (k, v) in &o.links {
            *self.links.entry(k.clone()).or_default() += v;
        }
        // The edge-wide last refusals: every worker's, in time order, the newest kept.
        self.recent_refusals.extend(o.recent_refusals.iter().cloned());
        self.recent_refusals.make_contiguous().sort_by_key(|r| r.at);
        while self.recent_refusals.len() > RECENT_REFUSALS_MERGED {
            self.recent_refusals.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_merge_adds() {
        assert_eq!(MethodLabel::of("INVITE"), MethodLabel::Invite);
        assert_eq!(MethodLabel::of("invite"), MethodLabel::Other);
        assert_eq!(MethodLabel::of("X-ANYTHING").as_str(), "other");
        for (i, m) in MethodLabel::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
        }
        let mut a = CoreStats::default();
        a.request_in(Side::External, MethodLabel::Message);
        a.response_in(Side::External, MethodLabel::Message, 202);
        a.response_in(Side::External, MethodLabel::Message, 999);
        a.generated(403, RefusalReason::Relay);
        a.outcome(
            MethodLabel::Message,
            OutcomeLabel::Answered,
            Duration::from_millis(3),
        );
        let mut sum = CoreStats::default();
        sum.merge(&a);
        sum.merge(&a);
        assert_eq!(sum.requests_in[1][MethodLabel::Message.index()], 2);
        assert_eq!(
            sum.responses_in[1][MethodLabel::Message.index()],
            [0, 2, 0, 0, 2, 0]
        );
        assert_eq!(sum.generated_for(RefusalReason::Relay), 2);
        assert_eq!(sum.outcomes[MethodLabel::Message.index()][0], 2);
        let h = &sum.latency[MethodLabel::Message.index()];
        assert_eq!(h.count(), 2);
        assert_eq!(h.counts[3], 2, "3 ms is in the 5 ms bucket");
        assert_eq!(h.sum_micros, 6000);
    }

    #[test]
    fn histogram_edges() {
        let mut h = Histogram::default();
        h.observe(Duration::ZERO);
        h.observe(Duration::from_secs(3600));
        assert_eq!(h.counts[0], 1);
        assert_eq!(
            h.counts[LATENCY_BOUNDS_MICROS.len()],
            1,
            "above every bound: +Inf"
        );
        assert_eq!(h.cumulative().len(), LATENCY_BOUNDS_MICROS.len());
        assert_eq!(h.cumulative().last(), Some(&1));
        let mut other = Histogram::new(&TURN_BOUNDS_MICROS);
        other.observe(Duration::ZERO);
        h.merge(&other);
        assert_eq!(h.count(), 2, "other bounds are not merged");
    }
}
