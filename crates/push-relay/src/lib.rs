//! `push-relay`: the policy of relaying push requests (requests addressed to `push.proxy_uri`,
//! default `sip:push@push.lync.com`) to the hosted provider — which requests are pushes, whether
//! their RFC 8599 target identity can be acted on, when an attempt is retried, and one circuit
//! breaker per provider. A sans-IO core in the manner of quinn-proto: no sockets, clocks or threads;
//! every `Instant` is passed in, so the tests run on a virtual clock. `edge-core` applies it at the
//! one place a client transaction ends (`Proxy::conclude`). `relay.rs` holds [`Relay`],
//! `target.rs` the URI and identity checks.
//!
//! # How the proxy core uses it
//! 1. A request from the internal side whose Request-URI [`is_push_uri`] is a push. If its target
//!    identity fails [`check_target`], answer 480 with `No push subscription for target device`.
//! 2. Once per push, [`Relay::admit`] for the provider the federation decision chose:
//!    [`Admission::ShortCircuit`] → answer 503 with its `Retry-After` and a diagnostic at once;
//!    `Allow` or `Probe` → send it, with a timer of [`RelaySettings::timeout`].
//! 3. When the attempt ends, [`Relay::decide`] with the [`Outcome`] (it also feeds the breaker):
//!    `Forward` the provider's response, `Retry { after }` (send again after the wait, to the same
//!    provider, without admitting again), or `GiveUp` (answer 504 for no response, the usual
//!    delivery-failure answer otherwise).
//!
//! # Retry: only when the push cannot have been delivered
//! A push is retried after a **503** (RFC 3261 §21.5.4: the server is unable to process the request
//! — the provider did not act on it) and when the attempt ended **before any response**: the timeout
//! passed with nothing received ([`Outcome::NoResponse`]), or connect/TLS/the link failed
//! ([`Outcome::DeliveryFailed`]). After any other answer — 2xx, 3xx, 4xx, 6xx, and the other 5xx
//! (500, 502, 504, ...), whose request may have been acted on — the response is forwarded and never
//! retried: a push the provider accepted must not ring the phone twice, and a provider that answered
//! 200 slowly is never retried. A timeout after a provisional response is
//! [`Outcome::NoFinalResponse`]: the provider has the push, so it is not retried either.
//!
//! **Wait.** Retry `n` (1 = the first) waits `max(backoff(n), Retry-After)`, where
//! `backoff(n) = backoff_initial × 2^(n-1)`, capped at `backoff_max`. No jitter: the relay sends few
//! pushes, each to one provider, so synchronised retries are not a herd.
//!
//! **Budget.** One push takes at most `budget = timeout × (1 + max_retries) + Σ backoff(1..=max_retries)`
//! from its first attempt, and every attempt gets its whole `timeout`. A retry is made only if
//! `now + wait + timeout ≤ push_started + budget`. So a silent provider gets every retry and the
//! sender hears 504 after `timeout × (1 + max_retries)` plus the backoffs (defaults: 10 s + 0.2 s +
//! 10 s); a 503 with a Retry-After is retried after that time while it fits, and a Retry-After that
//! would not leave the retry its whole timeout is not waited for — the provider's 503 (with its
//! Retry-After) is forwarded instead. The configuration keeps `timeout` below Timer F; the budget
//! can exceed Timer F when retries are configured, which is why the proxy core answers the push
//! itself (504) rather than letting the sender's Timer F fire.
//!
//! # The breaker, per provider
//! Failures are attempts that ended with **no response, no delivery, no final response, or any
//! 5xx** (the provider is
//! not working, whether or not we may retry); 2xx–4xx and 6xx are the provider working and reset the
//! count. Each attempt counts once: a push retried twice against a dead provider counts three.
//! - **Closed** → `breaker_failures` consecutive failures → **Open** for `breaker_cooldown`: every
//!   admit is `ShortCircuit { retry_after, until }`, `retry_after` being the cool-down left rounded
//!   up to whole seconds (at least 1).
//! - **Open** → the first admit after the cool-down is `Probe` and the breaker is **HalfOpen**; other
//!   admits while the probe is in flight are `ShortCircuit`. The probe's success closes the breaker
//!   (count 0); its failure re-opens it for another cool-down. A probe that reports nothing within one
//!   push budget is taken as lost and the next admit sends a new probe.
//! - Decisions never retry into a breaker that is not closed after the outcome was recorded.
//! - Outcomes reported while Open (pushes admitted before it opened) change nothing. In HalfOpen the
//!   first outcome reported decides, as the relay cannot tell the probe from such a straggler.
//!
//! **Reload** ([`Relay::set_settings`]): breaker state carries over. An open breaker ends at the time
//! it opened plus the *new* cool-down (a shortened cool-down can end it at once); a closed breaker's
//! count is compared with the new threshold at its next failure; a probe in flight keeps its deadline.
//!
//! # RFC 8599 target identity: what the relay can and cannot know
//! The edge has no registrar (REGISTER stays inside the organisation) and keeps no bindings, so it
//! cannot know whether a device token is still valid, whether the user registered it, or whether the
//! app is installed: only the provider and the push service know, and their 4xx is forwarded as it
//! is. What the relay can know from the request alone is whether the identity is **complete** — a
//! `pn-prid` with a `pn-provider`, neither empty — and whether `pn-provider` names a push service
//! RFC 8599 registered (`apns`, `fcm`, `webpush`; Lync documents no value of its own). `pn-param` is
//! service-specific and opaque. A push without any `pn-*` parameter carries no identity to check
//! and is relayed. So "no push subscription for target device" (480) means: the request names a
//! device, but not one any push service could be asked to reach.

mod relay;
#[cfg(test)]
mod relay_tests;
mod target;

pub use relay::{Admission, Attempt, BreakerNews, BreakerState, Decision, Outcome, Relay, RelaySettings};
pub use target::{check_target, is_push_uri, PushTarget, TargetProblem, REGISTERED_PROVIDERS};
