//! The retry and circuit-breaker policy of the push relay: [`Relay`] holds one breaker per provider
//! and answers the two questions the proxy core asks — may this push go out ([`Relay::admit`]), and
//! what now that an attempt ended ([`Relay::decide`]). Sans-IO: every `Instant` is passed in, nothing
//! here reads a clock, sleeps or touches a socket. The rules and their reasons are in the crate doc
//! (`lib.rs`); the table tests are in `relay_tests.rs`; URI and RFC 8599 checks are in `target.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The relay's settings (the `[push]` keys of the configuration). Plain values: the configuration
/// validates their ranges, and every function here stays total (saturating) whatever they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySettings {
    /// One attempt's timeout (`push.timeout_ms`): no response at all by then is [`Outcome::NoResponse`].
    pub timeout: Duration,
    /// Retries after the first attempt (`push.max_retries`); 0 = never retry.
    pub max_retries: u32,
    /// The wait before the first retry (`push.backoff_ms`); doubled for each later retry.
    pub backoff_initial: Duration,
    /// The longest backoff (`push.backoff_max_ms`).
    pub backoff_max: Duration,
    /// Consecutive failed attempts that open a provider's breaker (`push.breaker_failures`).
    pub breaker_failures: u32,
    /// How long an open breaker answers at once before it lets a probe through
    /// (`push.breaker_cooldown_ms`).
    pub breaker_cooldown: Duration,
}

/// The configuration's defaults (`deploy/sipedge.toml`): 10 s per attempt, one retry, 200 ms backoff
/// doubling to 2 s, the breaker opening after 5 failures for 30 s.
impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            timeout: Duration::from_secs(10),
            max_retries: 1,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

impl RelaySettings {
    /// The wait before retry number `retry` (1 = the first retry): `backoff_initial × 2^(retry-1)`,
    /// at most `backoff_max`. No jitter: pushes are few and each goes to one provider.
    pub fn backoff(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.backoff_initial
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max)
    }

    /// The most one push may take, from its first attempt to its answer: every attempt's whole
    /// timeout plus every configured backoff, `timeout × (1 + max_retries) + Σ backoff(1..=max_retries)`.
    /// A silent provider therefore always gets all its retries; a Retry-After longer than the backoff
    /// spends the slack, and one that would leave the retry less than a whole `timeout` is not
    /// waited for (see [`Relay::decide`]).
    pub fn budget(&self) -> Duration {
        let attempts = self.max_retries.saturating_add(1);
        let backoffs =
            (1..=self.max_retries).fold(Duration::ZERO, |sum, r| sum.saturating_add(self.backoff(r)));
        self.timeout.saturating_mul(attempts).saturating_add(backoffs)
    }
}

/// How one attempt of a push ended, as the proxy core saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A final response from the provider (200–699), with its Retry-After if it carried one.
    Response {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The attempt's timeout passed before any response, provisional or final.
    NoResponse,
    /// Connect, DNS, TLS or the link failed before any response arrived.
    DeliveryFailed,
    /// The attempt's timeout passed (or the link failed) after a provisional response but before a
    /// final one: the provider has the push, so it is never retried; a failure for the breaker.
    NoFinalResponse,
}

impl Outcome {
    /// Whether the provider may not have acted on the push, so sending it again cannot deliver it
    /// twice: a 503 (RFC 3261 §21.5.4: the server did not process the request) or no response at all.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Outcome::Response { status: 503, .. } | Outcome::NoResponse | Outcome::DeliveryFailed
        )
    }

    /// Whether this attempt counts against the provider's breaker: any 5xx, no response, or no
    /// delivery. 2xx, 3xx, 4xx and 6xx are the provider working (it answered on purpose).
    pub fn is_failure(&self) -> bool {
        match self {
            Outcome::Response { status, .. } => (500..600).contains(status),
            Outcome::NoResponse | Outcome::DeliveryFailed | Outcome::NoFinalResponse => true,
        }
    }
}

/// Which attempt of which push ended: its number and when the push's first attempt began (the
/// budget of [`RelaySettings::budget`] runs from there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 = the first attempt, 2 = the first retry, ...
    pub number: u32,
    /// When the first attempt of this push was sent.
    pub push_started: Instant,
}

/// What the proxy core does after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Pass the provider's final response on, as received (a 503 that is not retried included: its
    /// Retry-After and ms-diagnostics are the provider's own words). Only ever for
    /// [`Outcome::Response`].
    Forward,
    /// Send the push again (to the same provider) after this wait; the retry is not admitted again.
    Retry { after: Duration },
    /// For the outcomes without a final response that are not retried: the caller answers itself,
    /// 504 Server time-out for [`Outcome::NoResponse`] and [`Outcome::NoFinalResponse`], its
    /// delivery-failure answer (503/504 with the diagnostic) for [`Outcome::DeliveryFailed`].
    GiveUp,
}

/// Whether a new push may go to a provider now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The breaker is closed.
    Allow,
    /// The breaker's cool-down is over: this push goes out as the one probe (the breaker is now
    /// half-open); its outcome closes or re-opens the breaker.
    Probe,
    /// Answer at once with 503 and `Retry-After: retry_after` (whole seconds, at least 1); the
    /// breaker stays open (or the probe in flight) until `until`.
    ShortCircuit { retry_after: Duration, until: Instant },
}

/// One provider's breaker, as reported (metrics, `test-push`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed {
        consecutive_failures: u32,
    },
    /// Answering at once until `until` (opened + the current `breaker_cooldown`).
    Open {
        until: Instant,
    },
    /// A probe is in flight; if it reports nothing by `probe_until` (one push budget after it was
    /// admitted), the next admit sends another probe rather than short-circuit forever.
    HalfOpen {
        probe_until: Instant,
    },
}

/// What a breaker stores: `Open` keeps when it opened so a reload's new cool-down applies at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed {
        failures: u32,
    },
    Open {
        since: Instant,
    },
    HalfOpen {
        probe_until: Instant,
    },
    /// Open because another replica of the pool opened it ([`Relay::hold`]): that replica sends
    /// the probe; this one answers at once until `until`, then probes itself (the other is gone).
    Held {
        until: Instant,
    },
}

/// A change of a breaker of this replica's own making, for the pool ([`Relay::take_news`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerNews {
    /// Opened here (failures, or a failed probe) until `until`: this replica will probe.
    Opened { provider: String, until: Instant },
    /// This replica's probe succeeded: the provider is back.
    Closed { provider: String },
}

/// News kept at most between two pool syncs (one per provider transition; bounded all the same).
const MAX_NEWS: usize = 256;

/// The push relay's policy state: the settings and one breaker per provider name. Only configured
/// hosted-provider names are ever passed in, so the map is bounded by the configuration; a reload
/// that removes a provider calls [`Relay::retain_providers`].
#[derive(Debug, Clone)]
pub struct Relay {
    settings: RelaySettings,
    breakers: BTreeMap<String, Breaker>,
    /// In a pool ([`Relay::set_pooled`]): the breaker changes the pool has not heard of yet.
    news: Option<Vec<BreakerNews>>,
}

impl Relay {
    pub fn new(settings: RelaySettings) -> Relay {
        Relay {
            settings,
            breakers: BTreeMap::new(),
            news: None,
        }
    }

    /// Keeps the breaker changes of this replica for the pool (`[pool]`); off, nothing is kept.
    pub fn set_pooled(&mut self, pooled: bool) {
        self.news = pooled.then(Vec::new);
    }

    /// The breaker changes of this replica's own making since the last call.
    pub fn take_news(&mut self) -> Vec<BreakerNews> {
        self.news.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The pool: another replica opened `provider`'s breaker and will probe it; this replica answers
    /// at once until `until` (a breaker open here already keeps the later of the two ends, and
    /// stays this replica's own if it ends later: then this replica probes).
    pub fn hold(&mut self, provider: &str, until: Instant) {
        let cooldown = self.settings.breaker_cooldown;
        match self.breakers.get_mut(provider) {
            Some(b @ Breaker::Closed { .. }) => *b = Breaker::Held { until },
            Some(b @ Breaker::Open { .. }) => {
                if let Breaker::Open { since } = *b {
                    if since.checked_add(cooldown).is_none_or(|own| own <= until) {
                        *b = Breaker::Held { until };
                    }
                }
            }
            Some(Breaker::Held { until: held }) => *held = (*held).max(until),
            // A probe of ours is in flight: its outcome decides.
            Some(Breaker::HalfOpen { .. }) => {}
            None => {
                self.breakers.insert(provider.to_owned(), Breaker::Held { until });
            }
        }
    }

    /// The pool: the breaker another replica opened is closed again (its probe succeeded), or no
    /// replica holds it open any more: a breaker held here for the pool closes. `open` names the
    /// providers still open in the pool.
    pub fn release_except(&mut self, open: &[&str]) {
        for (name, b) in &mut self.breakers {
            if matches!(b, Breaker::Held { .. }) && !open.contains(&name.as_str()) {
                *b = Breaker::Closed { failures: 0 };
            }
        }
    }

    pub fn settings(&self) -> &RelaySettings {
        &self.settings
    }

    /// A reload: every breaker keeps its state. An open breaker's end is recomputed from when it
    /// opened with the *new* cool-down (shortened: it may be over at once; lengthened: it lasts
    /// longer). A closed breaker keeps its count, compared with the new `breaker_failures` at its
    /// next failure (a count already past a lowered threshold opens at that failure). A probe in
    /// flight keeps its deadline.
    pub fn set_settings(&mut self, settings: RelaySettings) {
        self.settings = settings;
    }

    /// Forgets the breakers of providers no longer configured (`keep` returns false for them).
    pub fn retain_providers(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.breakers.retain(|name, _| keep(name));
    }

    /// Whether a new push to `provider` may go out at `now`. Call once per push, not per retry.
    pub fn admit(&mut self, provider: &str, now: Instant) -> Admission {
        let cooldown = self.settings.breaker_cooldown;
        let probe_for = self.settings.budget();
        let Some(b) = self.breakers.get_mut(provider) else {
            return Admission::Allow;
        };
        match *b {
            Breaker::Closed { .. } => Admission::Allow,
            Breaker::Open { since } => {
                let until = since.checked_add(cooldown).unwrap_or(now);
                if now < until {
                    short_circuit(until, now)
                } else {
                    *b = Breaker::HalfOpen {
                        probe_until: now.checked_add(probe_for).unwrap_or(now),
                    };
                    Admission::Probe
                }
            }
            Breaker::Held { until } if now < until => short_circuit(until, now),
            Breaker::HalfOpen { probe_until } if now < probe_until => short_circuit(probe_until, now),
            Breaker::HalfOpen { .. } | Breaker::Held { .. } => {
                *b = Breaker::HalfOpen {
                    probe_until: now.checked_add(probe_for).unwrap_or(now),
                };
                Admission::Probe
            }
        }
    }

    /// Records the attempt's outcome in the provider's breaker, then decides: retry only a
    /// retryable outcome ([`Outcome::is_retryable`]), only while retries are left
    /// (`attempt.number <= max_retries`), only while the breaker is still closed after this
    /// outcome, and only if `now + max(backoff, Retry-After) + timeout` is within the push's budget
    /// (`attempt.push_started + budget()`), so the retry has its whole timeout.
    pub fn decide(&mut self, provider: &str, attempt: Attempt, outcome: &Outcome, now: Instant) -> Decision {
        debug_assert!(attempt.number >= 1, "attempts are numbered from 1");
        let closed = self.record(provider, outcome, now);
        let no_retry = match outcome {
            Outcome::Response { .. } => Decision::Forward,
            Outcome::NoResponse | Outcome::DeliveryFailed | Outcome::NoFinalResponse => Decision::GiveUp,
        };
        if !outcome.is_retryable() || !closed || attempt.number > self.settings.max_retries {
            return no_retry;
        }
        let backoff = self.settings.backoff(attempt.number);
        let after = match outcome {
            Outcome::Response {
                retry_after: Some(ra),
                ..
            } => backoff.max(*ra),
            _ => backoff,
        };
        let deadline = attempt.push_started.checked_add(self.settings.budget());
        let retry_ends = now
            .checked_add(after)
            .and_then(|t| t.checked_add(self.settings.timeout));
        match (retry_ends, deadline) {
            (Some(end), Some(deadline)) if end <= deadline => Decision::Retry { after },
            _ => no_retry,
        }
    }

    /// One provider's breaker (`Closed { 0 }` for a provider never seen). An `Open` whose `until`
    /// has passed stays `Open` until the next [`Relay::admit`] turns it into a probe.
    pub fn breaker(&self, provider: &str) -> BreakerState {
        self.breakers.get(provider).map_or(
            BreakerState::Closed {
                consecutive_failures: 0,
            },
            |b| self.report(b),
        )
    }

    /// The breaker of every provider an outcome was recorded for, by name.
    pub fn breakers(&self) -> Vec<(String, BreakerState)> {
        self.breakers
            .iter()
            .map(|(name, b)| (name.clone(), self.report(b)))
            .collect()
    }

    fn report(&self, b: &Breaker) -> BreakerState {
        match *b {
            Breaker::Closed { failures } => BreakerState::Closed {
                consecutive_failures: failures,
            },
            Breaker::Open { since } => BreakerState::Open {
                until: since.checked_add(self.settings.breaker_cooldown).unwrap_or(since),
            },
            Breaker::HalfOpen { probe_until } => BreakerState::HalfOpen { probe_until },
            Breaker::Held { until } => BreakerState::Open { until },
        }
    }

    /// Feeds the breaker; returns whether it is closed afterwards. Closed counts consecutive
    /// failures and opens at `breaker_failures`; any success closes it (from half-open too); a
    /// failure while half-open re-opens it; while open, outcomes of pushes admitted before it opened
    /// change nothing (the cool-down runs its course).
    fn record(&mut self, provider: &str, outcome: &Outcome, now: Instant) -> bool {
        let threshold = self.settings.breaker_failures.max(1);
        let failed = outcome.is_failure();
        if !self.breakers.contains_key(provider) {
            // Allocates the name once per provider, never per push.
            self.breakers
                .insert(provider.to_owned(), Breaker::Closed { failures: 0 });
        }
        let Some(b) = self.breakers.get_mut(provider) else {
            return true;
        };
        let next = match (*b, failed) {
            (Breaker::Closed { .. } | Breaker::HalfOpen { .. }, false) => Breaker::Closed { failures: 0 },
            (Breaker::Closed { failures }, true) => {
                let failures = failures.saturating_add(1);
                if failures >= threshold {
                    Breaker::Open { since: now }
                } else {
                    Breaker::Closed { failures }
                }
            }
            (Breaker::HalfOpen { .. }, true) => Breaker::Open { since: now },
            (open @ (Breaker::Open { .. } | Breaker::Held { .. }), _) => open,
        };
        let news = match (*b, next) {
            (Breaker::Closed { .. } | Breaker::HalfOpen { .. }, Breaker::Open { since }) => {
                Some(BreakerNews::Opened {
                    provider: provider.to_owned(),
                    until: since.checked_add(self.settings.breaker_cooldown).unwrap_or(since),
                })
            }
            (Breaker::HalfOpen { .. }, Breaker::Closed { .. }) => Some(BreakerNews::Closed {
                provider: provider.to_owned(),
            }),
            _ => None,
        };
        *b = next;
        if let (Some(n), Some(list)) = (news, self.news.as_mut()) {
            if list.len() < MAX_NEWS {
                list.push(n);
            }
        }
        matches!(next, Breaker::Closed { .. })
    }
}

/// 503 at once: Retry-After is the time left until `until`, rounded up to whole seconds, at least 1.
fn short_circuit(until: Instant, now: Instant) -> Admission {
    let left = until.saturating_duration_since(now);
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    Admission::ShortCircuit {
        retry_after: Duration::from_secs(secs.max(1)),
        until,
    }
}
