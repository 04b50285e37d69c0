//! The push relay in the proxy core, on a virtual clock: a front end (conn 1) pushes to
//! `sip:push@push.lync.com`, allowed and routed by SRV to the hosted provider LyncOnline
//! (`sipfed.online.lync.com`, dialled as conn 100). Retries after a 503 and after silence, no retry
//! after anything else, the breaker, the IM URL filter and the RFC 8599 check, each counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use federation_policy::{
    DomainName, FilterAction, Fqdn, HostedProvider, ImFilter, PolicyBuilder, SrvRecord, VerificationLevel,
};
use push_relay::RelaySettings;
use sip_codec::{parse, HeaderName};

use super::io::*;
use super::push::PushOutcome;
use super::{EdgeShared, Proxy, ProxySettings};

const FE: ConnId = ConnId(1);
const PROVIDER: ConnId = ConnId(100);
const PUSH_URI: &str = "sip:push@push.lync.com";

struct H {
    proxy: Proxy,
    now: Instant,
}

fn settings() -> RelaySettings {
    RelaySettings {
        timeout: Duration::from_secs(2),
        max_retries: 1,
        backoff_initial: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        breaker_failures: 3,
        breaker_cooldown: Duration::from_secs(30),
    }
}

impl H {
    fn new(filter: Option<ImFilter>) -> H {
        let d = |s: &str| DomainName::parse(s).unwrap();
        let f = |s: &str| Fqdn::parse(s).unwrap();
        let mut b = PolicyBuilder::new();
        b.edge_fqdn("edge.corp.example")
            .our_domain(d("corp.example"))
            .allow(d("push.lync.com"), None, None)
            .hosted_provider(HostedProvider {
                name: "LyncOnline".into(),
                proxy_fqdn: f("sipfed.online.lync.com"),
                enabled: true,
                verification_level: VerificationLevel::AlwaysVerifiable,
            })
            .known_server(f("fe1.corp.example"), "6");
        if let Some(filter) = filter {
            b.im_filter(filter);
        }
        let mut s = ProxySettings::new(
            "edge.corp.example",
            "edge-int.corp.example:5061",
            "edge.corp.example:5061",
            f("pool.corp.example"),
        );
        s.push_uri = Some(PUSH_URI.into());
        s.push_timeout = Duration::from_secs(2);
        let policy = Arc::new(b.build().unwrap());
        let shared = EdgeShared::new(&policy, settings());
        let proxy = Proxy::new(s, policy, 0, &shared);
        let mut h = H {
            proxy,
            now: Instant::now(),
        };
        let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        h.input(Input::ConnUp {
            conn: FE,
            peer: PeerInfo {
                side: Side::Internal,
                remote: addr,
                identities: vec!["fe1.corp.example".into()],
                dialled: None,
            },
        });
        h.input(Input::ConnUp {
            conn: PROVIDER,
            peer: PeerInfo {
                side: Side::External,
                remote: addr,
                identities: vec!["sipfed.online.lync.com".into()],
                dialled: Some(f("sipfed.online.lync.com:5061")),
            },
        });
        h
    }

    fn input(&mut self, i: Input<'_>) -> Vec<Effect> {
        let mut out = Vec::new();
        self.proxy.handle(i, self.now, &mut out);
        out
    }

    fn advance(&mut self, by: Duration) -> Vec<Effect> {
        self.now += by;
        let mut out = Vec::new();
        self.proxy.handle_timeout(self.now, &mut out);
        out
    }

    /// The push with `branch` (and `body`) from the FE, through the SRV answer: the bytes sent to
    /// the provider, or the edge's own answer.
    fn push(&mut self, branch: &str, body: &str, extra: &str) -> Sent {
        self.push_typed(branch, "application/json", body, extra)
    }

    /// [`H::push`] with a body of `content_type`.
    fn push_typed(&mut self, branch: &str, content_type: &str, body: &str, extra: &str) -> Sent {
        let text = format!(
            "MESSAGE {PUSH_URI}{extra} SIP/2.0\r\nVia: SIP/2.0/TLS fe1.corp.example:5061;branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:mobility@corp.example>;tag=m1\r\nTo: <{PUSH_URI}>\r\nCall-ID: {branch}\r\nCSeq: 1 MESSAGE\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let eff = self.input(Input::Message {
            conn: FE,
            bytes: text.as_bytes(),
        });
        let lookup = eff.iter().find_map(|e| match e {
            Effect::LookupSrv { token, .. } => Some(*token),
            _ => None,
        });
        let eff = match lookup {
            Some(token) => self.input(Input::Srv {
                token,
                result: SrvResult::Records(vec![SrvRecord {
                    priority: 0,
                    weight: 0,
                    port: 5061,
                    target: "sipfed.online.lync.com".into(),
                }]),
            }),
            None => eff,
        };
        self.sent(&eff)
    }

    fn sent(&mut self, eff: &[Effect]) -> Sent {
        for e in eff {
            if let Effect::Send { dest, bytes, token } = e {
                let text = String::from_utf8_lossy(bytes).into_owned();
                match dest {
                    Destination::Hop(_) => {
                        if let Some(t) = token {
                            self.input(Input::Delivered {
                                token: *t,
                                conn: PROVIDER,
                            });
                        }
                        return Sent::Provider(text);
                    }
                    Destination::Conn(FE) if status(&text) >= 200 => return Sent::Fe(text),
                    _ => {}
                }
            }
        }
        Sent::Nothing
    }

    /// The provider answers `fwd` with `status` (and extra header lines).
    fn answer(&mut self, fwd: &str, status: u16, extra: &str) -> Sent {
        let m = parse(fwd.as_bytes()).unwrap();
        let mut s = format!("SIP/2.0 {status} Whatever\r\n");
        for h in m.headers() {
            let v = String::from_utf8_lossy(h.raw_value);
            match h.name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    s.push_str(&format!("{}: {v}\r\n", h.name_str()))
                }
                HeaderName::To => s.push_str(&format!("To: {v};tag=p\r\n")),
                _ => {}
            }
        }
        s.push_str(extra);
        s.push_str("Content-Length: 0\r\n\r\n");
        let eff = self.input(Input::Message {
            conn: PROVIDER,
            bytes: s.as_bytes(),
        });
        self.sent(&eff)
    }

    fn outcome(&self, o: PushOutcome) -> u64 {
        self.proxy.stats().push.outcomes[o as usize].iter().sum()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Provider(String),
    Fe(String),
    Nothing,
}

impl Sent {
    fn provider(self) -> String {
        match self {
            Sent::Provider(t) => t,
            other => panic!("expected a send to the provider, got {other:?}"),
        }
    }
    fn fe(self) -> String {
        match self {
            Sent::Fe(t) => t,
            other => panic!("expected a final answer to the FE, got {other:?}"),
        }
    }
}

fn status(text: &str) -> u16 {
    parse(text.as_bytes()).ok().and_then(|m| m.status()).unwrap_or(0)
}

fn diag(text: &str) -> (u32, String) {
    let m = parse(text.as_bytes()).unwrap();
    let d = m.ms_diagnostics().unwrap();
    (d.id, text.to_owned())
}

fn branch(text: &str) -> String {
    parse(text.as_bytes())
        .unwrap()
        .top_via()
        .unwrap()
        .branch()
        .unwrap()
        .to_owned()
}

#[test]
fn a_503_with_retry_after_is_retried_once_after_that_time_then_forwarded() {
    let mut h = H::new(None);
    let first = h.push("z9hG4bKp1", "{}", "").provider();
    assert_eq!(
        h.answer(&first, 503, "Retry-After: 1\r\n"),
        Sent::Nothing,
        "not forwarded: retried"
    );
    assert_eq!(h.proxy.stats().push.sent, 1);
    assert_eq!(
        h.advance(Duration::from_millis(999)),
        vec![],
        "not before Retry-After"
    );
    let eff = h.advance(Duration::from_millis(1));
    let second = h.sent(&eff).provider();
    assert_ne!(branch(&second), branch(&first), "a new client transaction");
    // A late answer on the first attempt's branch is dropped.
    assert_eq!(h.answer(&first, 200, ""), Sent::Nothing);
    let ok = h.answer(&second, 200, "").fe();
    assert_eq!(status(&ok), 200);
    assert_eq!(h.proxy.stats().push.retries, 1);
    assert_eq!(h.outcome(PushOutcome::Accepted), 1);
    assert_eq!(h.proxy.stats().push.latency.count(), 1);
}

#[test]
fn a_silent_provider_is_retried_then_answered_504_1911() {
    let mut h = H::new(None);
    let first = h.push("z9hG4bKp2", "{}", "").provider();
    let eff = h.advance(Duration::from_secs(2));
    assert_eq!(h.sent(&eff), Sent::Nothing, "the retry waits for its backoff");
    let eff = h.advance(Duration::from_millis(200));
    let second = h.sent(&eff).provider();
    assert_ne!(branch(&second), branch(&first));
    let eff = h.advance(Duration::from_secs(2));
    let r = h.sent(&eff).fe();
    assert_eq!(status(&r), 504);
    let (id, text) = diag(&r);
    assert_eq!(id, 1911, "{text}");
    assert!(text.contains("provider=\"LyncOnline\""), "{text}");
    assert_eq!(h.outcome(PushOutcome::TimedOut), 1);
    assert_eq!(h.proxy.stats().push.retries, 1);
}

#[test]
fn an_answer_other_than_503_is_never_retried_however_slow() {
    for (status_code, outcome) in [
        (200, PushOutcome::Accepted),
        (404, PushOutcome::Rejected),
        (500, PushOutcome::Rejected),
    ] {
        let mut h = H::new(None);
        let fwd = h.push("z9hG4bKp3", "{}", "").provider();
        h.advance(Duration::from_millis(1900));
        let r = h.answer(&fwd, status_code, "").fe();
        assert_eq!(status(&r), status_code);
        assert_eq!(h.proxy.stats().push.retries, 0, "{status_code}");
        assert_eq!(h.outcome(outcome), 1, "{status_code}");
        assert_eq!(
            h.advance(Duration::from_secs(60)),
            vec![],
            "nothing more for {status_code}"
        );
    }
}

#[test]
fn the_breaker_opens_answers_at_once_then_probes_and_closes() {
    let mut h = H::new(None);
    // Three failed attempts (two pushes: 503 no Retry-After retried once, then 503 forwarded).
    let a = h.push("z9hG4bKb1", "{}", "").provider();
    assert_eq!(h.answer(&a, 503, ""), Sent::Nothing);
    let eff = h.advance(Duration::from_millis(200));
    let a2 = h.sent(&eff).provider();
    assert_eq!(status(&h.answer(&a2, 503, "").fe()), 503);
    let b = h.push("z9hG4bKb2", "{}", "").provider();
    let r = h.answer(&b, 503, "");
    // The third failure opens the breaker: no retry into it; the 503 goes back.
    assert_eq!(status(&r.fe()), 503);
    // Open: answered at once, no send, with Retry-After and the provider named.
    let fast = h.push("z9hG4bKb3", "{}", "").fe();
    assert_eq!(status(&fast), 503);
    let m = parse(fast.as_bytes()).unwrap();
    assert!(m.header(HeaderName::RetryAfter).is_some(), "{fast}");
    let (id, text) = diag(&fast);
    assert_eq!(id, 1007);
    assert!(
        text.contains("provider=\"LyncOnline\"") && text.contains("until="),
        "{text}"
    );
    assert_eq!(h.outcome(PushOutcome::ShortCircuited), 1);
    // After the cool-down one probe goes through; its success closes the breaker.
    h.advance(Duration::from_secs(30));
    let probe = h.push("z9hG4bKb4", "{}", "").provider();
    assert_eq!(status(&h.answer(&probe, 200, "").fe()), 200);
    let next = h.push("z9hG4bKb5", "{}", "");
    assert!(matches!(next, Sent::Provider(_)), "closed again: {next:?}");
}

#[test]
fn the_im_url_filter_rejects_a_push_naming_the_prefix_1909() {
    let filter = ImFilter::new(vec!["https:".into()], FilterAction::Block);
    let mut h = H::new(Some(filter));
    let r = h.push("z9hG4bKf1", r#"{"url":"https://example.com/x"}"#, "").fe();
    assert_eq!(status(&r), 403);
    let (id, text) = diag(&r);
    assert_eq!(id, 1909);
    assert!(text.contains("Push Notification request was rejected"), "{text}");
    assert!(text.contains("prefix=\"https:\""), "{text}");
    assert_eq!(h.outcome(PushOutcome::Filtered), 1);
    assert_eq!(h.proxy.stats().push.sent, 0);
}

/// A push is answered as a push whatever its body's type: a `text/plain` one meets the push's
/// 1909 ("Push Notification request was rejected", the text operators search for), not the
/// general IM filter's 1905.
#[test]
fn a_text_push_is_rejected_as_a_push_1909_not_as_an_im_1905() {
    let filter = ImFilter::new(vec!["https:".into()], FilterAction::Block);
    let mut h = H::new(Some(filter));
    for ct in ["text/plain", "text/plain; charset=utf-8", "TEXT/html"] {
        let r = h
            .push_typed(
                &format!("z9hG4bKt{}", ct.len()),
                ct,
                "open https://example.com/x",
                "",
            )
            .fe();
        assert_eq!(status(&r), 403, "{ct}");
        let (id, text) = diag(&r);
        assert_eq!(id, 1909, "{ct}: {text}");
        assert!(text.contains("Push Notification request was rejected"), "{text}");
    }
    assert_eq!(h.outcome(PushOutcome::Filtered), 3);
}

#[test]
fn an_incomplete_push_identity_gets_480_no_push_subscription_1910() {
    let mut h = H::new(None);
    let r = h.push("z9hG4bKn1", "{}", ";pn-provider=apns").fe();
    assert_eq!(status(&r), 480);
    assert!(r.starts_with("SIP/2.0 480 Temporarily Unavailable\r\n"), "{r}");
    let (id, text) = diag(&r);
    assert_eq!(id, 1910);
    assert!(text.contains("No push subscription for target device"), "{text}");
    assert_eq!(h.outcome(PushOutcome::NoSubscription), 1);
    // A complete identity goes through.
    let ok = h.push(
        "z9hG4bKn2",
        "{}",
        ";pn-provider=apns;pn-prid=00ff;pn-param=ABCD.com.example",
    );
    assert!(matches!(ok, Sent::Provider(_)), "{ok:?}");
}

#[test]
fn other_requests_are_not_pushes() {
    let mut h = H::new(None);
    let text = "MESSAGE sip:bob@push.lync.com SIP/2.0\r\nVia: SIP/2.0/TLS fe1.corp.example:5061;branch=z9hG4bKo1\r\nMax-Forwards: 70\r\nFrom: <sip:a@corp.example>;tag=1\r\nTo: <sip:bob@push.lync.com>\r\nCall-ID: o1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
    h.input(Input::Message {
        conn: FE,
        bytes: text.as_bytes(),
    });
    assert_eq!(h.proxy.stats().push, super::stats::PushStats::default());
}

/// Real clocks: the SRV answer takes a while and the attempt's timer fires a little late. The retry
/// the budget has room for still happens (the budget runs from the first transmission, and a
/// timeout is judged at its nominal instant).
#[test]
fn a_late_timer_and_a_slow_srv_answer_do_not_cost_the_retry() {
    let mut h = H::new(None);
    let text = format!(
        "MESSAGE {PUSH_URI} SIP/2.0\r\nVia: SIP/2.0/TLS fe1.corp.example:5061;branch=z9hG4bKlate\r\nMax-Forwards: 70\r\nFrom: <sip:mobility@corp.example>;tag=m1\r\nTo: <{PUSH_URI}>\r\nCall-ID: late\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
    );
    let eff = h.input(Input::Message {
        conn: FE,
        bytes: text.as_bytes(),
    });
    let token = eff
        .iter()
        .find_map(|e| match e {
            Effect::LookupSrv { token, .. } => Some(*token),
            _ => None,
        })
        .unwrap();
    h.now += Duration::from_millis(80);
    let eff = h.input(Input::Srv {
        token,
        result: SrvResult::Records(vec![SrvRecord {
            priority: 0,
            weight: 0,
            port: 5061,
            target: "sipfed.online.lync.com".into(),
        }]),
    });
    h.sent(&eff).provider();
    // The attempt's timer, 7 ms late; the retry after its backoff, 5 ms late.
    let eff = h.advance(Duration::from_millis(2007));
    assert_eq!(h.sent(&eff), Sent::Nothing);
    let second = h.advance(Duration::from_millis(198));
    assert!(
        matches!(h.sent(&second), Sent::Provider(_)),
        "retried: {second:?}"
    );
    assert_eq!(h.proxy.stats().push.retries, 1);
}
