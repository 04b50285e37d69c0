//! Which requests are pushes and whether their target device identity is one the relay can act on:
//! [`is_push_uri`] compares a Request-URI with `push.proxy_uri` (a stated subset of RFC 3261
//! §19.1.4), and [`check_target`] checks an RFC 8599 identity (`pn-provider`, `pn-prid`,
//! `pn-param`). Pure functions over `sip_codec`'s parsed URIs; the breaker and retry policy are in
//! `relay.rs`.

use sip_codec::{Host, PushParams, SipUri, Uri};
use thiserror::Error;

/// Whether `request_uri` addresses the configured push URI `configured`. Compared (RFC 3261
/// §19.1.4, the subset a push relay needs):
/// - the scheme: `sip` and `sips` never match each other;
/// - the user and password: case-sensitive, after decoding `%HH` escapes (`push` = `%70ush`);
///   present on one side only never matches;
/// - the host: domain names case-insensitively, a trailing dot ignored; IP addresses as addresses
///   (`[::1]` = `[0:0::1]`); a name never matches an address;
/// - the port: equal numbers, or absent on both sides (`:5061` does not match an absent port, as
///   §19.1.4 says, even though 5061 is the default for sips).
///
/// Not compared: every URI parameter (`transport`, `maddr`, `user`, RFC 8599 `pn-*`, ...) and the
/// `?headers`: mobility services add `transport=tls` and the device identity as parameters, and the
/// push is routed by its domain, not by them. Either side not a SIP/SIPS URI → `false`.
pub fn is_push_uri(request_uri: &str, configured: &str) -> bool {
    let (Ok(Uri::Sip(a)), Ok(Uri::Sip(b))) = (Uri::parse(request_uri.trim()), Uri::parse(configured.trim()))
    else {
        return false;
    };
    a.scheme == b.scheme
        && a.user_unescaped() == b.user_unescaped()
        && a.password.map(unescape) == b.password.map(unescape)
        && same_host(&a, &b)
        && a.port == b.port
}

fn same_host(a: &SipUri<'_>, b: &SipUri<'_>) -> bool {
    match (a.host, b.host) {
        (Host::Domain(x), Host::Domain(_)) => b.host.is_domain(x),
        (x, y) => x == y,
    }
}

/// `%HH`-decoded bytes of a password (the user has `SipUri::user_unescaped`).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// An RFC 8599 target device identity as a push request carries it, each part as written (absent
/// = `None`; a parameter written without a value is absent too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushTarget<'a> {
    /// `pn-provider`: which push notification service (`apns`, `fcm`, `webpush`).
    pub provider: Option<&'a str>,
    /// `pn-prid`: the device's token at that service.
    pub prid: Option<&'a str>,
    /// `pn-param`: service-specific (for APNs the app id and service); opaque to the relay.
    pub param: Option<&'a str>,
}

impl<'a> PushTarget<'a> {
    /// The `pn-*` parameters of a URI (RFC 8599 §4.1: a retargeted request carries them in its
    /// Request-URI).
    pub fn from_uri(uri: &SipUri<'a>) -> PushTarget<'a> {
        let get = |name: &str| uri.params.get(name).flatten();
        PushTarget {
            provider: get("pn-provider"),
            prid: get("pn-prid"),
            param: get("pn-param"),
        }
    }

    /// Whether no `pn-*` parameter is present: nothing for [`check_target`] to check.
    pub fn is_empty(&self) -> bool {
        self.provider.is_none() && self.prid.is_none() && self.param.is_none()
    }
}

/// The identity of a Contact, through `sip_codec`'s accessor (`Contact::push_params`, which finds
/// one only when `pn-provider` is present).
impl<'a> From<PushParams<'a>> for PushTarget<'a> {
    fn from(p: PushParams<'a>) -> PushTarget<'a> {
        PushTarget {
            provider: Some(p.provider),
            prid: p.prid,
            param: p.param,
        }
    }
}

/// The push notification services RFC 8599 §14.4 registered (IANA "PNS Sub-Namespace"). Lync's own
/// mobility push (through push.lync.com) documents no RFC 8599 value, so none is added for it.
pub const REGISTERED_PROVIDERS: [&str; 3] = ["apns", "fcm", "webpush"];

/// Why a target identity cannot be acted on. The caller answers 480 Temporarily Unavailable with
/// `No push subscription for target device`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TargetProblem {
    #[error("pn-provider={0:?} without pn-prid: no device to push to")]
    ProviderWithoutPrid(String),
    #[error("pn-prid is empty: no device to push to")]
    EmptyPrid,
    #[error("pn-prid without pn-provider: the device token names no push service")]
    PridWithoutProvider,
    #[error("pn-param without pn-provider and pn-prid: no device to push to")]
    ParamWithoutProvider,
    #[error("pn-provider={0:?} is not a registered push service (apns, fcm, webpush)")]
    UnknownProvider(String),
}

/// Checks what the relay can know about an RFC 8599 identity. No identity at all (every part
/// absent) is `Ok`: the push is for the provider to route. The order of the checks is the order of
/// the variants: an incomplete identity is reported before an unknown provider.
pub fn check_target(t: &PushTarget<'_>) -> Result<(), TargetProblem> {
    match (t.provider, t.prid) {
        (None, None) if t.param.is_some() => Err(TargetProblem::ParamWithoutProvider),
        (None, None) => Ok(()),
        (None, Some(_)) => Err(TargetProblem::PridWithoutProvider),
        (Some(p), None) => Err(TargetProblem::ProviderWithoutPrid(p.to_owned())),
        (Some(_), Some("")) => Err(TargetProblem::EmptyPrid),
        (Some(p), Some(_)) if !REGISTERED_PROVIDERS.iter().any(|r| r.eq_ignore_ascii_case(p)) => {
            Err(TargetProblem::UnknownProvider(p.to_owned()))
        }
        (Some(_), Some(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_uri_comparison_table() {
        let configured = "sip:push@push.lync.com";
        let cases: &[(&str, bool)] = &[
            ("sip:push@push.lync.com", true),
            ("sip:push@PUSH.Lync.COM", true),
            ("sip:push@push.lync.com.", true),
            ("sip:%70ush@push.lync.com", true),
            ("sip:push@push.lync.com;transport=tls", true),
            ("sip:push@push.lync.com;transport=tcp;maddr=192.0.2.1", true),
            ("sip:push@push.lync.com;pn-provider=apns;pn-prid=abc", true),
            ("sip:push@push.lync.com?subject=x", true),
            (" sip:push@push.lync.com ", true),
            ("SIP:push@push.lync.com", true),
            ("sip:Push@push.lync.com", false),
            ("sips:push@push.lync.com", false),
            ("sip:push@push.lync.com:5061", false),
            ("sip:push@push.lync.com:5060", false),
            ("sip:push.lync.com", false),
            ("sip:push:secret@push.lync.com", false),
            ("sip:other@push.lync.com", false),
            ("sip:push@lync.com", false),
            ("sip:push@sub.push.lync.com", false),
            ("sip:push@192.0.2.1", false),
            ("tel:+15551234", false),
            ("https://push.lync.com/", false),
            ("not a uri", false),
            ("", false),
        ];
        for &(uri, want) in cases {
            assert_eq!(is_push_uri(uri, configured), want, "{uri}");
        }
    }

    #[test]
    fn push_uri_ports_addresses_and_passwords() {
        let cases: &[(&str, &str, bool)] = &[
            ("sip:push@push.lync.com:5061", "sip:push@push.lync.com:5061", true),
            (
                "sip:push@push.lync.com:5061",
                "sip:push@push.lync.com:5062",
                false,
            ),
            ("sip:push@push.lync.com", "sip:push@push.lync.com:5061", false),
            ("sips:push@push.lync.com", "sips:push@push.lync.com", true),
            ("sip:push@[2001:db8::1]", "sip:push@[2001:db8:0::1]", true),
            ("sip:push@[2001:db8::1]", "sip:push@[2001:db8::2]", false),
            ("sip:push@192.0.2.1", "sip:push@192.0.2.1", true),
            ("sip:push:pw@push.example", "sip:push:%70w@push.example", true),
            ("sip:push:pw@push.example", "sip:push:PW@push.example", false),
            ("sip:push.example", "sip:push.example", true),
            ("sip:push@push.example", "tel:+1", false),
        ];
        for &(a, b, want) in cases {
            assert_eq!(is_push_uri(a, b), want, "{a} vs {b}");
            assert_eq!(is_push_uri(b, a), want, "{b} vs {a} (symmetric)");
        }
    }

    fn t<'a>(provider: Option<&'a str>, prid: Option<&'a str>, param: Option<&'a str>) -> PushTarget<'a> {
        PushTarget {
            provider,
            prid,
            param,
        }
    }

    #[test]
    fn target_check_table() {
        use TargetProblem::*;
        let cases: Vec<(PushTarget<'_>, Result<(), TargetProblem>)> = vec![
            (t(None, None, None), Ok(())),
            (
                t(
                    Some("apns"),
                    Some("00fc13adff78512"),
                    Some("ABCD.com.example.voip"),
                ),
                Ok(()),
            ),
            (t(Some("fcm"), Some("tok"), None), Ok(())),
            (t(Some("webpush"), Some("tok"), None), Ok(())),
            (t(Some("APNS"), Some("tok"), None), Ok(())),
            (
                t(None, None, Some("ABCD.com.example.voip")),
                Err(ParamWithoutProvider),
            ),
            (t(None, Some("tok"), None), Err(PridWithoutProvider)),
            (t(None, Some("tok"), Some("x")), Err(PridWithoutProvider)),
            (
                t(Some("apns"), None, None),
                Err(ProviderWithoutPrid("apns".into())),
            ),
            (
                t(Some("apns"), None, Some("x")),
                Err(ProviderWithoutPrid("apns".into())),
            ),
            (t(Some("apns"), Some(""), None), Err(EmptyPrid)),
            (
                t(Some("mpns"), Some("tok"), None),
                Err(UnknownProvider("mpns".into())),
            ),
            (
                t(Some(""), Some("tok"), None),
                Err(UnknownProvider(String::new())),
            ),
            (
                t(Some("mpns"), None, None),
                Err(ProviderWithoutPrid("mpns".into())),
            ),
        ];
        for (target, want) in cases {
            assert_eq!(check_target(&target), want, "{target:?}");
        }
    }

    #[test]
    fn target_from_request_uri_and_contact() {
        let uri = SipUri::parse("sip:push@push.lync.com;transport=tls;pn-provider=fcm;pn-prid=tok;pn-param")
            .unwrap();
        assert_eq!(PushTarget::from_uri(&uri), t(Some("fcm"), Some("tok"), None));
        let plain = SipUri::parse("sip:push@push.lync.com").unwrap();
        assert!(PushTarget::from_uri(&plain).is_empty());
        let only_prid = SipUri::parse("sip:push@push.lync.com;PN-PRID=tok").unwrap();
        assert_eq!(
            check_target(&PushTarget::from_uri(&only_prid)),
            Err(TargetProblem::PridWithoutProvider)
        );

        let sip_codec::ContactValue::Addr(c) = sip_codec::ContactValue::parse(
            "<sip:alice@192.0.2.4;pn-provider=apns;pn-prid=00fc;pn-param=A.b.voip>",
        )
        .unwrap() else {
            panic!("not an address")
        };
        let target = PushTarget::from(c.push_params().unwrap());
        assert_eq!(target, t(Some("apns"), Some("00fc"), Some("A.b.voip")));
        assert_eq!(check_target(&target), Ok(()));
    }

    #[test]
    fn problems_name_the_parameter() {
        assert!(TargetProblem::UnknownProvider("mpns".into())
            .to_string()
            .contains("pn-provider=\"mpns\""));
        assert!(TargetProblem::PridWithoutProvider
            .to_string()
            .contains("pn-provider"));
    }
}
