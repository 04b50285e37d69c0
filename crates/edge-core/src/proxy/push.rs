//! Push requests in the proxy core (docs/architecture.md, Push): a request from the internal side
//! whose Request-URI is `push.proxy_uri` (`push_relay::is_push_uri`). Before it is routed, its
//! body goes through the IM URL filter ("Push Notification request was rejected", 403, id 1909)
//! and its RFC 8599 target identity is checked (`push_relay::check_target`; 480 "No push
//! subscription for target device", id 1910). It is routed by the federation decision like any
//! request; before each attempt the provider's circuit breaker admits it (open: 503 + Retry-After
//! at once, id 1007 with the provider and the time it closes); each attempt gets the relay's own
//! timeout (`push.timeout_ms`, shorter than Timer F); and the one outcome path
//! (`txn.rs::conclude`) asks the relay policy whether to retry. The policy itself — classify,
//! retry, backoff, breaker — is the sans-IO `push-relay` crate, shared by all workers behind one
//! lock taken only on push traffic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use federation_policy::{DiagnosticId, FilterVerdict, Refusal, RefusalReason};
use parking_lot::Mutex;
use push_relay::{Admission, Attempt, Decision, Outcome as RelayOutcome, PushTarget, Relay};
use sip_codec::{HeaderName, Message};

use super::ids::ServerId;
use super::io::{Effect, Level, NextHop, Side};
use super::respond::Extra;
use super::route;
use super::txn::{Outcome, TimerKind};
use super::Proxy;

/// The relay policy shared by every worker's core (one breaker per provider for the edge).
pub type SharedRelay = Arc<Mutex<Relay>>;

/// What a push server transaction carries besides the request.
#[derive(Debug, Clone)]
pub(crate) struct PushTxn {
    /// The breaker's key: the hosted provider's name, else the first hop's FQDN. Empty until routed.
    pub provider: String,
    /// 1 for the first transmission.
    pub attempt: u32,
    /// Where the attempts go (the routing decision is not taken again for a retry).
    pub hops: Vec<NextHop>,
    /// When the push arrived (its latency runs from here to its final answer).
    pub started: Instant,
    /// When its first attempt went out: the relay's budget runs from here (routing, e.g. the SRV
    /// lookup, is not the provider's time).
    pub first_sent: Option<Instant>,
}

/// How a push ended, for its counters (`stats.rs`, `PushStats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Accepted,
    Rejected,
    TimedOut,
    Failed,
    ShortCircuited,
    Filtered,
    NoSubscription,
    Refused,
}

impl PushOutcome {
    pub const ALL: [PushOutcome; 8] = [
        PushOutcome::Accepted,
        PushOutcome::Rejected,
        PushOutcome::TimedOut,
        PushOutcome::Failed,
        PushOutcome::ShortCircuited,
        PushOutcome::Filtered,
        PushOutcome::NoSubscription,
        PushOutcome::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PushOutcome::Accepted => "accepted",
            PushOutcome::Rejected => "rejected",
            PushOutcome::TimedOut => "timed_out",
            PushOutcome::Failed => "failed",
            PushOutcome::ShortCircuited => "short_circuited",
            PushOutcome::Filtered => "filtered",
            PushOutcome::NoSubscription => "no_subscription",
            PushOutcome::Refused => "refused",
        }
    }

    /// The outcome of a push answered by the edge itself, from its refusal's reason.
    pub(crate) fn of_refusal(reason: RefusalReason) -> PushOutcome {
        use RefusalReason as R;
        match reason {
            R::PushFiltered => PushOutcome::Filtered,
            R::NoPushSubscription => PushOutcome::NoSubscription,
            R::PushBreakerOpen => PushOutcome::ShortCircuited,
            R::PushTimeout => PushOutcome::TimedOut,
            R::NoARecord
            | R::ConnectFailed
            | R::TlsFailed
            | R::CertMismatch
            | R::Overloaded
            | R::LinkLost => PushOutcome::Failed,
            _ => PushOutcome::Refused,
        }
    }
}

/// The RFC 8599 parameters of the push request: the Request-URI's (a retargeted request carries
/// them there, RFC 8599 §4.1), else the first Contact's.
fn target<'m>(msg: &'m Message<'_>) -> PushTarget<'m> {
    let uri = msg.parsed_request_uri().and_then(Result::ok);
    if let Some(t) = uri
        .as_ref()
        .and_then(|u| u.as_sip().map(PushTarget::from_uri))
        .filter(|t| !t.is_empty())
    {
        return t;
    }
    msg.contacts()
        .flatten()
        .find_map(|c| match c {
            sip_codec::ContactValue::Addr(a) => a.push_params().map(PushTarget::from),
            sip_codec::ContactValue::Star => None,
        })
        .unwrap_or_default()
}

impl Proxy {
    /// Whether `msg`, arriving from `side`, is a push request.
    pub(crate) fn is_push(&self, side: Side, msg: &Message<'_>) -> bool {
        side == Side::Internal
            && self.settings.push_uri.as_deref().is_some_and(|configured| {
                msg.request_uri()
                    .is_some_and(|uri| push_relay::is_push_uri(uri, configured))
            })
    }

    /// The checks of a push before it is routed: the IM URL filter on its body (any content type:
    /// the push wire format is not public) and its RFC 8599 target identity.
    pub(crate) fn push_refusal(&self, msg: &Message<'_>, out: &mut Vec<Effect>) -> Option<Refusal> {
        match self.policy.im_filter().check_bytes(msg.body()) {
            FilterVerdict::Block { prefix } => {
                return Some(route::simple_refusal(
                    403,
                    DiagnosticId::PUSH_REJECTED,
                    "Push Notification request was rejected",
                    RefusalReason::PushFiltered,
                    vec![("prefix", prefix)],
                ))
            }
            FilterVerdict::Warn { prefix } => self.log(
                out,
                Level::Info,
                "im_filter_warn",
                format!("push request with URL prefix {prefix} relayed (filter action warn)"),
                vec![("prefix", prefix)],
            ),
            FilterVerdict::Pass => {}
        }
        let t = target(msg);
        if let Err(problem) = push_relay::check_target(&t) {
            return Some(route::simple_refusal(
                480,
                DiagnosticId::NO_PUSH_SUBSCRIPTION,
                "No push subscription for target device",
                RefusalReason::NoPushSubscription,
                vec![
                    ("pn-provider", t.provider.unwrap_or("").to_owned()),
                    ("problem", problem.to_string()),
                ],
            ));
        }
        None
    }

    /// Before the first attempt of push `sid` to `hops` (through `provider`): the breaker admits
    /// it, or it is answered 503 at once. Records the route for the retries.
    pub(crate) fn push_admit(
        &mut self,
        sid: ServerId,
        provider: String,
        hops: &[NextHop],
        now: Instant,
        out: &mut Vec<Effect>,
    ) -> bool {
        let admission = self.shared.relay.lock().admit(&provider, now);
        if let Admission::ShortCircuit { retry_after, until } = admission {
            let left = until.saturating_duration_since(now);
            let r = route::simple_refusal(
                503,
                DiagnosticId::TEMPORARILY_CANNOT_ROUTE,
                "Temporarily cannot route",
                RefusalReason::PushBreakerOpen,
                vec![
                    ("provider", provider.clone()),
                    ("until", format!("{} s from now", left.as_millis().div_ceil(1000))),
                ],
            );
            let extra = Extra {
                refusal: Some(r),
                retry_after: Some(u32::try_from(retry_after.as_secs().max(1)).unwrap_or(u32::MAX)),
                ..Extra::default()
            };
            self.respond(sid, 503, extra, now, out);
            return false;
        }
        if let Some(p) = self.txns.servers.get_mut(&sid).and_then(|s| s.push.as_mut()) {
            p.provider = provider;
            p.attempt = 1;
            p.hops = hops.to_vec();
            p.first_sent = Some(now);
        }
        true
    }

    /// From the one outcome path: the relay's decision on an attempt of a push. `Some(after)`: retry
    /// after that long (the caller marks the attempt done and nothing is answered yet).
    pub(crate) fn push_decide(
        &mut self,
        sid: ServerId,
        outcome: &Outcome,
        provisional: bool,
        now: Instant,
    ) -> Option<Duration> {
        let (provider, attempt) = {
            let p = self.txns.servers.get(&sid)?.push.as_ref()?;
            let attempt = Attempt {
                number: p.attempt,
                push_started: p.first_sent.unwrap_or(p.started),
            };
            (p.provider.clone(), attempt)
        };
        if provider.is_empty() {
            return None;
        }
        let relay_outcome = match outcome {
            Outcome::Response(status, retry_after) => RelayOutcome::Response {
                status: *status,
                retry_after: *retry_after,
            },
            // The provider said something (a provisional): not "no response", never retried.
            Outcome::TimedOut | Outcome::LinkLost | Outcome::DeliveryFailed(_) if provisional => {
                RelayOutcome::NoFinalResponse
            }
            Outcome::TimedOut => RelayOutcome::NoResponse,
            Outcome::LinkLost | Outcome::DeliveryFailed(_) => RelayOutcome::DeliveryFailed,
        };
        match self
            .shared
            .relay
            .lock()
            .decide(&provider, attempt, &relay_outcome, now)
        {
            Decision::Retry { after } => Some(after),
            Decision::Forward | Decision::GiveUp => None,
        }
    }

    /// Arms the retry of push `sid` after `after`.
    pub(crate) fn push_schedule_retry(
        &mut self,
        sid: ServerId,
        after: Duration,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let attempt = self
            .txns
            .servers
            .get(&sid)
            .and_then(|s| s.push.as_ref())
            .map_or(0, |p| p.attempt);
        self.log(
            out,
            Level::Info,
            "push_retry",
            format!(
                "push attempt {attempt} failed; retrying in {} ms",
                after.as_millis()
            ),
            vec![("attempt", attempt.to_string())],
        );
        self.arm(now + after, TimerKind::PushRetry(sid));
    }

    /// `TimerKind::PushRetry`: the next attempt of push `sid`, with a new client transaction (new
    /// branch) to the same hops.
    pub(crate) fn push_retry(&mut self, sid: ServerId, now: Instant, out: &mut Vec<Effect>) {
        let Some(s) = self.txns.servers.get(&sid) else {
            return;
        };
        if s.final_status.is_some() || s.orphaned {
            return;
        }
        let Some(push) = s.push.clone() else { return };
        let (kept, old) = (Arc::clone(&s.request), s.client);
        // The attempt that failed is over: forget it (a late answer to its branch is dropped).
        if let Some(c) = old.and_then(|cid| self.txns.remove_client(cid)) {
            self.disarm(c.timer);
            self.recycle(c.bytes);
        }
        let Some(msg) = kept.message_reusing(&mut self.scratch.header_buf) else {
            return;
        };
        // The breaker admitted this push once; the policy never retries into a breaker that is not
        // closed, so a retry is not admitted again.
        if let Some(p) = self.txns.servers.get_mut(&sid).and_then(|s| s.push.as_mut()) {
            p.attempt = push.attempt + 1;
        }
        self.count(|st| st.push.retries += 1);
        self.forward_all(sid, &msg, push.hops.clone(), now, out);
        self.scratch.header_buf = msg.into_header_buf();
    }

    /// A push whose last attempt timed out with no retry left: 504 saying so.
    pub(crate) fn push_timeout_refusal(&self, sid: ServerId) -> Option<Refusal> {
        let p = self.txns.servers.get(&sid)?.push.as_ref()?;
        if p.provider.is_empty() {
            return None;
        }
        Some(route::simple_refusal(
            504,
            DiagnosticId::PUSH_PROVIDER_TIMEOUT,
            "The push notification provider did not answer",
            RefusalReason::PushTimeout,
            vec![
                ("provider", p.provider.clone()),
                ("attempts", p.attempt.to_string()),
                ("timeout-ms", self.settings.push_timeout.as_millis().to_string()),
            ],
        ))
    }

    /// The final answer of a push server transaction went out: counted once, with its latency.
    pub(crate) fn push_finished(&mut self, sid: ServerId, status: u16, outcome: PushOutcome, now: Instant) {
        let Some(started) = self
            .txns
            .servers
            .get(&sid)
            .and_then(|s| s.push.as_ref())
            .map(|p| p.started)
        else {
            return;
        };
        self.count(|st| {
            st.push
                .finished(outcome, status, now.saturating_duration_since(started))
        });
    }

    /// The Retry-After of a response, in seconds (RFC 3261 §20.33; comments and parameters ignored).
    pub(crate) fn retry_after(msg: &Message<'_>) -> Option<Duration> {
        let h = msg.header(HeaderName::RetryAfter)?;
        let text = std::str::from_utf8(h.raw_value).ok()?;
        let digits: String = text.trim().chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u64>().ok().map(Duration::from_secs)
    }
}
