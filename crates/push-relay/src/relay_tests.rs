//! Table tests of `relay.rs` on a virtual clock: `Instant::now()` once as `t0`, every other time
//! `t0 + offset`. Every outcome × attempt number, the budget's edges, backoff, and each breaker
//! transition, reload included.

use std::time::{Duration, Instant};

use crate::{Admission, Attempt, BreakerState, Decision, Outcome, Relay, RelaySettings};

const P: &str = "LyncOnline";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn settings() -> RelaySettings {
    RelaySettings {
        timeout: ms(10_000),
        max_retries: 1,
        backoff_initial: ms(200),
        backoff_max: ms(2_000),
        breaker_failures: 3,
        breaker_cooldown: ms(30_000),
    }
}

fn resp(status: u16) -> Outcome {
    Outcome::Response {
        status,
        retry_after: None,
    }
}

fn resp_ra(status: u16, retry_after_ms: u64) -> Outcome {
    Outcome::Response {
        status,
        retry_after: Some(ms(retry_after_ms)),
    }
}

fn attempt(number: u32, push_started: Instant) -> Attempt {
    Attempt { number, push_started }
}

#[test]
fn every_outcome_by_attempt_number() {
    use Decision::*;
    let retry = |n: u64| Retry { after: ms(n) };
    // max_retries = 2: attempts 1 and 2 may be retried, 3 may not. Each case on a fresh relay with
    // a breaker that does not open, the attempt ending 50 ms after the push started.
    let outcomes: &[(Outcome, [Decision; 3])] = &[
        (resp(200), [Forward, Forward, Forward]),
        (resp(202), [Forward, Forward, Forward]),
        (resp(302), [Forward, Forward, Forward]),
        (resp(404), [Forward, Forward, Forward]),
        (resp(408), [Forward, Forward, Forward]),
        (resp(480), [Forward, Forward, Forward]),
        (resp_ra(486, 5_000), [Forward, Forward, Forward]),
        (resp(500), [Forward, Forward, Forward]),
        (resp(502), [Forward, Forward, Forward]),
        (resp(504), [Forward, Forward, Forward]),
        (resp_ra(500, 1_000), [Forward, Forward, Forward]),
        (resp(600), [Forward, Forward, Forward]),
        (resp(603), [Forward, Forward, Forward]),
        (resp(503), [retry(200), retry(400), Forward]),
        (resp_ra(503, 100), [retry(200), retry(400), Forward]),
        (resp_ra(503, 1_000), [retry(1_000), retry(1_000), Forward]),
        (Outcome::NoResponse, [retry(200), retry(400), GiveUp]),
        (Outcome::DeliveryFailed, [retry(200), retry(400), GiveUp]),
        (Outcome::NoFinalResponse, [GiveUp, GiveUp, GiveUp]),
    ];
    let t0 = Instant::now();
    for (outcome, wants) in outcomes {
        for (n, want) in (1u32..).zip(wants) {
            let mut relay = Relay::new(RelaySettings {
                max_retries: 2,
                breaker_failures: 1_000,
                ..settings()
            });
            let got = relay.decide(P, attempt(n, t0), outcome, t0 + ms(50));
            assert_eq!(got, *want, "{outcome:?} on attempt {n}");
        }
    }
}

#[test]
fn no_retries_configured_means_none() {
    let t0 = Instant::now();
    let mut relay = Relay::new(RelaySettings {
        max_retries: 0,
        ..settings()
    });
    for (outcome, want) in [
        (resp(503), Decision::Forward),
        (Outcome::NoResponse, Decision::GiveUp),
        (Outcome::DeliveryFailed, Decision::GiveUp),
    ] {
        assert_eq!(
            relay.decide(P, attempt(1, t0), &outcome, t0 + ms(1)),
            want,
            "{outcome:?}"
        );
    }
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let s = settings();
    let got: Vec<u64> = (0..=7).map(|r| s.backoff(r).as_millis() as u64).collect();
    assert_eq!(got, [200, 200, 400, 800, 1_600, 2_000, 2_000, 2_000]);
    assert_eq!(s.backoff(u32::MAX), ms(2_000), "no overflow");
    let zero = RelaySettings {
        backoff_initial: Duration::ZERO,
        ..settings()
    };
    assert_eq!(zero.backoff(3), Duration::ZERO);
}

#[test]
fn budget_is_every_timeout_plus_every_backoff() {
    let cases: &[(u32, u64)] = &[(0, 10_000), (1, 20_200), (2, 30_600), (3, 41_400), (5, 65_000)];
    for &(max_retries, want) in cases {
        let s = RelaySettings {
            max_retries,
            ..settings()
        };
        assert_eq!(s.budget(), ms(want), "max_retries {max_retries}");
    }
}

#[test]
fn budget_edges_and_retry_after() {
    // Defaults: budget 20.2 s from t0. A retry needs now + wait + 10 s <= t0 + 20.2 s.
    let t0 = Instant::now();
    let cases: &[(u64, Outcome, Decision)] = &[
        // (attempt 1 ends at t0 + .., outcome, decision)
        (50, resp_ra(503, 2_000), Decision::Retry { after: ms(2_000) }),
        (50, resp_ra(503, 10_150), Decision::Retry { after: ms(10_150) }),
        (50, resp_ra(503, 10_151), Decision::Forward),
        (0, resp_ra(503, 10_200), Decision::Retry { after: ms(10_200) }),
        (0, resp_ra(503, 10_201), Decision::Forward),
        (50, resp_ra(503, 3_600_000), Decision::Forward),
        (10_000, Outcome::NoResponse, Decision::Retry { after: ms(200) }),
        (10_001, Outcome::NoResponse, Decision::GiveUp),
        (
            10_000,
            Outcome::DeliveryFailed,
            Decision::Retry { after: ms(200) },
        ),
        (10_001, Outcome::DeliveryFailed, Decision::GiveUp),
        (9_999, resp(503), Decision::Retry { after: ms(200) }),
        (10_001, resp(503), Decision::Forward),
        (25_000, resp(503), Decision::Forward),
    ];
    for (at, outcome, want) in cases {
        let mut relay = Relay::new(settings());
        let got = relay.decide(P, attempt(1, t0), outcome, t0 + ms(*at));
        assert_eq!(got, *want, "{outcome:?} at t0+{at}ms");
    }
}

#[test]
fn a_silent_provider_gets_every_retry_then_504_at_the_budget() {
    for max_retries in 0..=5 {
        let mut relay = Relay::new(RelaySettings {
            max_retries,
            breaker_failures: 1_000,
            ..settings()
        });
        let t0 = Instant::now();
        let mut now = t0;
        let mut n = 1;
        loop {
            now += relay.settings().timeout;
            match relay.decide(P, attempt(n, t0), &Outcome::NoResponse, now) {
                Decision::Retry { after } => {
                    now += after;
                    n += 1;
                }
                Decision::GiveUp => break,
                Decision::Forward => panic!("forwarded a response that never came"),
            }
        }
        assert_eq!(n, max_retries + 1, "attempts with max_retries {max_retries}");
        assert_eq!(now - t0, relay.settings().budget(), "504 exactly at the budget");
    }
}

#[test]
fn a_503_with_retry_after_is_retried_once_after_that_time() {
    let mut relay = Relay::new(settings());
    let t0 = Instant::now();
    let first = relay.decide(P, attempt(1, t0), &resp_ra(503, 3_000), t0 + ms(40));
    assert_eq!(first, Decision::Retry { after: ms(3_000) });
    let second = relay.decide(P, attempt(2, t0), &resp_ra(503, 3_000), t0 + ms(3_080));
    assert_eq!(
        second,
        Decision::Forward,
        "one retry only, then the provider's 503 goes back"
    );
}

#[test]
fn breaker_opens_after_n_consecutive_failed_attempts() {
    let t0 = Instant::now();
    for failure in [
        resp(503),
        resp(500),
        resp(504),
        Outcome::NoResponse,
        Outcome::DeliveryFailed,
        Outcome::NoFinalResponse,
    ] {
        let mut relay = Relay::new(RelaySettings {
            max_retries: 0,
            ..settings()
        });
        for k in 1..=2 {
            relay.decide(P, attempt(1, t0), &failure, t0 + ms(k));
            assert_eq!(
                relay.breaker(P),
                BreakerState::Closed {
                    consecutive_failures: k as u32
                },
                "{failure:?}"
            );
            assert_eq!(relay.admit(P, t0 + ms(k)), Admission::Allow);
        }
        relay.decide(P, attempt(1, t0), &failure, t0 + ms(3));
        let until = t0 + ms(30_003);
        assert_eq!(relay.breaker(P), BreakerState::Open { until }, "{failure:?}");
        assert_eq!(
            relay.admit(P, t0 + ms(3)),
            Admission::ShortCircuit {
                retry_after: Duration::from_secs(30),
                until
            }
        );
    }
}

#[test]
fn answers_of_a_working_provider_reset_the_count() {
    let t0 = Instant::now();
    for ok in [200, 202, 302, 404, 480, 603] {
        let mut relay = Relay::new(settings());
        relay.decide(P, attempt(1, t0), &Outcome::DeliveryFailed, t0);
        relay.decide(P, attempt(1, t0), &resp(503), t0);
        relay.decide(P, attempt(1, t0), &resp(ok), t0);
        assert_eq!(
            relay.breaker(P),
            BreakerState::Closed {
                consecutive_failures: 0
            },
            "{ok}"
        );
        relay.decide(P, attempt(1, t0), &Outcome::NoResponse, t0);
        relay.decide(P, attempt(1, t0), &Outcome::NoResponse, t0);
        assert_eq!(
            relay.breaker(P),
            BreakerState::Closed {
                consecutive_failures: 2
            },
            "{ok}"
        );
    }
}

#[test]
fn each_attempt_of_a_retried_push_counts_once_and_no_retry_into_an_open_breaker() {
    let t0 = Instant::now();
    let mut relay = Relay::new(RelaySettings {
        max_retries: 5,
        ..settings()
    });
    let d1 = relay.decide(P, attempt(1, t0), &Outcome::DeliveryFailed, t0 + ms(1));
    assert_eq!(d1, Decision::Retry { after: ms(200) });
    let d2 = relay.decide(P, attempt(2, t0), &Outcome::DeliveryFailed, t0 + ms(202));
    assert_eq!(d2, Decision::Retry { after: ms(400) });
    assert_eq!(
        relay.breaker(P),
        BreakerState::Closed {
            consecutive_failures: 2
        }
    );
    // The third failure opens the breaker: retries are left, but none goes into an open breaker.
    let d3 = relay.decide(P, attempt(3, t0), &resp(503), t0 + ms(603));
    assert_eq!(d3, Decision::Forward);
    assert!(matches!(relay.breaker(P), BreakerState::Open { .. }));
}

#[test]
fn short_circuit_retry_after_rounds_up_to_whole_seconds() {
    let t0 = Instant::now();
    let mut relay = Relay::new(settings());
    for k in 0..3 {
        relay.decide(P, attempt(1, t0), &Outcome::NoResponse, t0 + ms(k));
    }
    let opened = t0 + ms(2);
    let until = opened + ms(30_000);
    let cases: &[(u64, u64)] = &[
        (0, 30),
        (1, 30),
        (999, 30),
        (1_000, 29),
        (1_001, 29),
        (29_000, 1),
        (29_999, 1),
    ];
    for &(after_open, secs) in cases {
        assert_eq!(
            relay.admit(P, opened + ms(after_open)),
            Admission::ShortCircuit {
                retry_after: Duration::from_secs(secs),
                until
            },
            "{after_open} ms after opening"
        );
    }
    assert_eq!(
        relay.admit(P, until),
        Admission::Probe,
        "the cool-down is over at `until`"
    );
}

/// Opens the breaker at `t0` (3 failures); the cool-down ends at `t0 + 30 s`.
fn opened(t0: Instant) -> Relay {
    let mut relay = Relay::new(settings());
    for _ in 0..3 {
        relay.decide(P, attempt(1, t0), &Outcome::NoResponse, t0);
    }
    relay
}

#[test]
fn half_open_lets_one_probe_through_and_its_success_closes() {
    let t0 = Instant::now();
    let mut relay = opened(t0);
    let probe_at = t0 + ms(31_000);
    assert_eq!(relay.admit(P, probe_at), Admission::Probe);
    let probe_until = probe_at + relay.settings().budget();
    assert_eq!(relay.breaker(P), BreakerState::HalfOpen { probe_until });
    assert_eq!(
        relay.admit(P, probe_at + ms(10)),
        Admission::ShortCircuit {
            retry_after: Duration::from_secs(21),
            until: probe_until
        },
        "other pushes wait while the probe is in flight"
    );
    let d = relay.decide(P, attempt(1, probe_at), &resp(200), probe_at + ms(300));
    assert_eq!(d, Decision::Forward);
    assert_eq!(
        relay.breaker(P),
        BreakerState::Closed {
            consecutive_failures: 0
        }
    );
    assert_eq!(relay.admit(P, probe_at + ms(301)), Admission::Allow);
}

#[test]
fn a_failed_probe_reopens_for_another_cool_down_without_retrying() {
    let t0 = Instant::now();
    for failure in [
        resp_ra(503, 1_000),
        Outcome::NoResponse,
        Outcome::DeliveryFailed,
        resp(500),
    ] {
        let mut relay = opened(t0);
        let probe_at = t0 + ms(30_000);
        assert_eq!(relay.admit(P, probe_at), Admission::Probe);
        let failed_at = probe_at + ms(500);
        let d = relay.decide(P, attempt(1, probe_at), &failure, failed_at);
        assert!(!matches!(d, Decision::Retry { .. }), "{failure:?}: {d:?}");
        let until = failed_at + ms(30_000);
        assert_eq!(relay.breaker(P), BreakerState::Open { until }, "{failure:?}");
        assert!(matches!(
            relay.admit(P, failed_at + ms(29_999)),
            Admission::ShortCircuit { .. }
        ));
        assert_eq!(relay.admit(P, until), Admission::Probe);
    }
}

#[test]
fn a_lost_probe_is_replaced_after_one_budget() {
    let t0 = Instant::now();
    let mut relay = opened(t0);
    let probe_at = t0 + ms(30_000);
    assert_eq!(relay.admit(P, probe_at), Admission::Probe);
    let budget = relay.settings().budget();
    assert!(matches!(
        relay.admit(P, probe_at + budget - ms(1)),
        Admission::ShortCircuit { .. }
    ));
    assert_eq!(relay.admit(P, probe_at + budget), Admission::Probe);
    assert_eq!(
        relay.breaker(P),
        BreakerState::HalfOpen {
            probe_until: probe_at + budget + budget
        }
    );
}

#[test]
fn outcomes_while_open_change_nothing() {
    let t0 = Instant::now();
    let mut relay = opened(t0);
    let before = relay.breaker(P);
    for straggler in [resp(200), resp(503), Outcome::NoResponse] {
        let d = relay.decide(P, attempt(1, t0), &straggler, t0 + ms(5_000));
        assert!(!matches!(d, Decision::Retry { .. }), "{straggler:?}");
        assert_eq!(relay.breaker(P), before, "{straggler:?}");
    }
}

#[test]
fn providers_have_their_own_breakers() {
    let t0 = Instant::now();
    let mut relay = opened(t0);
    assert!(matches!(relay.admit(P, t0), Admission::ShortCircuit { .. }));
    assert_eq!(relay.admit("Other", t0), Admission::Allow);
    relay.decide("Other", attempt(1, t0), &resp(200), t0);
    assert_eq!(
        relay.breaker("Never"),
        BreakerState::Closed {
            consecutive_failures: 0
        }
    );
    let names: Vec<String> = relay.breakers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["LyncOnline", "Other"]);
    relay.retain_providers(|n| n == "Other");
    assert_eq!(
        relay.breaker(P),
        BreakerState::Closed {
            consecutive_failures: 0
        },
        "forgotten"
    );
    assert_eq!(relay.admit(P, t0), Admission::Allow);
}

#[test]
fn set_settings_keeps_breaker_state() {
    let t0 = Instant::now();
    // Shortened cool-down: the open breaker ends at opened + the new cool-down, here at once.
    let mut relay = opened(t0);
    relay.set_settings(RelaySettings {
        breaker_cooldown: ms(5_000),
        ..settings()
    });
    assert_eq!(
        relay.breaker(P),
        BreakerState::Open {
            until: t0 + ms(5_000)
        }
    );
    assert_eq!(relay.admit(P, t0 + ms(6_000)), Admission::Probe);

    // Lengthened: it lasts longer.
    let mut relay = opened(t0);
    relay.set_settings(RelaySettings {
        breaker_cooldown: ms(60_000),
        ..settings()
    });
    assert!(matches!(
        relay.admit(P, t0 + ms(45_000)),
        Admission::ShortCircuit { .. }
    ));
    assert_eq!(relay.admit(P, t0 + ms(60_000)), Admission::Probe);

    // A closed breaker keeps its count; a lowered threshold applies at the next failure.
    let mut relay = Relay::new(settings());
    relay.decide(P, attempt(1, t0), &Outcome::NoResponse, t0);
    relay.decide(P, attempt(1, t0), &Outcome::NoResponse, t0);
    relay.set_settings(RelaySettings {
        breaker_failures: 1,
        ..settings()
    });
    assert_eq!(
        relay.breaker(P),
        BreakerState::Closed {
            consecutive_failures: 2
        }
    );
    relay.decide(P, attempt(1, t0), &Outcome::NoResponse, t0 + ms(1));
    assert_eq!(
        relay.breaker(P),
        BreakerState::Open {
            until: t0 + ms(30_001)
        }
    );

    // A raised threshold: the same count stays closed.
    let mut relay = Relay::new(settings());
    relay.decide(P, attempt(1, t0), &Outcome::NoResponse, t0);
    relay.decide(P, attempt(1, t0), &Outcome::NoResponse, t0);
    relay.set_settings(RelaySettings {
        breaker_failures: 10,
        ..settings()
    });
    relay.decide(P, attempt(1, t0), &Outcome::NoResponse, t0);
    assert_eq!(
        relay.breaker(P),
        BreakerState::Closed {
            consecutive_failures: 3
        }
    );
    assert_eq!(relay.settings().breaker_failures, 10);
}

/// A pool of two replicas, `a` and `b`, as the pool's sync drives them: `a` opens its breaker and
/// tells (news), `b` holds its own open until `a`'s probe is due; after the cool-down only `a`
/// probes; `a`'s probe succeeds (news), `b` is released. A standalone relay keeps no news.
#[test]
fn a_pool_opens_together_and_probes_once() {
    let t0 = Instant::now();
    let (mut a, mut b) = (Relay::new(settings()), Relay::new(settings()));
    a.set_pooled(true);
    b.set_pooled(true);
    let push = attempt(1, t0);
    for _ in 0..3 {
        assert_eq!(a.admit(P, t0), Admission::Allow);
        a.decide(P, push, &resp(503), t0);
    }
    let until = t0 + ms(30_000);
    assert_eq!(
        a.take_news(),
        [crate::BreakerNews::Opened {
            provider: P.to_owned(),
            until
        }]
    );
    assert_eq!(a.take_news(), [], "said once");
    // The pool tells b, with a grace for a's probe to be heard of.
    let held = until + ms(12_000);
    b.hold(P, held);
    assert!(matches!(b.admit(P, t0 + ms(1)), Admission::ShortCircuit { until, .. } if until == held));
    assert_eq!(b.breaker(P), BreakerState::Open { until: held });
    assert_eq!(b.take_news(), [], "held for the pool: not b's news");
    // After the cool-down: a probes, b still answers at once.
    let after = until + ms(1);
    assert_eq!(a.admit(P, after), Admission::Probe);
    assert!(matches!(b.admit(P, after), Admission::ShortCircuit { .. }));
    // a's probe succeeds: closed, and news of it; the pool releases b.
    a.decide(P, attempt(1, after), &resp(200), after + ms(5));
    assert_eq!(
        a.take_news(),
        [crate::BreakerNews::Closed {
            provider: P.to_owned()
        }]
    );
    b.release_except(&[]);
    assert_eq!(b.admit(P, after + ms(10)), Admission::Allow);
    // Held past its end without news (the other replica is gone): b probes itself.
    let mut c = Relay::new(settings());
    c.hold(P, t0 + ms(100));
    assert_eq!(c.admit(P, t0 + ms(100)), Admission::Probe);
    // release_except keeps what is still open in the pool, and never touches a breaker of c's own.
    let mut d = Relay::new(settings());
    d.hold(P, t0 + ms(100));
    d.hold("Other", t0 + ms(100));
    d.release_except(&[P]);
    assert!(matches!(d.admit(P, t0), Admission::ShortCircuit { .. }));
    assert_eq!(d.admit("Other", t0), Admission::Allow);
    for _ in 0..3 {
        d.decide("Own", push, &resp(503), t0);
    }
    d.release_except(&[]);
    assert!(
        matches!(d.admit("Own", t0), Admission::ShortCircuit { .. }),
        "its own stays open"
    );
    assert_eq!(d.take_news(), [], "not pooled: no news kept");
}

/// Both replicas opened: the one whose breaker ends later keeps its own (it probes); the other
/// holds for it.
#[test]
fn of_two_open_breakers_the_later_one_probes() {
    let t0 = Instant::now();
    let mut a = Relay::new(settings());
    for _ in 0..3 {
        a.decide(P, attempt(1, t0), &resp(503), t0);
    }
    // b opened 2 s later: its end is later than a's, a holds for b.
    a.hold(P, t0 + ms(32_000));
    assert_eq!(
        a.breaker(P),
        BreakerState::Open {
            until: t0 + ms(32_000)
        }
    );
    assert!(matches!(
        a.admit(P, t0 + ms(30_500)),
        Admission::ShortCircuit { .. }
    ));
    // An earlier end from the pool leaves a's own breaker as it is.
    let mut c = Relay::new(settings());
    for _ in 0..3 {
        c.decide(P, attempt(1, t0), &resp(503), t0);
    }
    c.hold(P, t0 + ms(1_000));
    assert_eq!(
        c.admit(P, t0 + ms(30_000)),
        Admission::Probe,
        "c's own breaker: c probes"
    );
}
