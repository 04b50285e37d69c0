//! Where a request goes, and the refusals when it cannot: the federation decisions of
//! `federation-policy` applied to SIP messages (which domain, which identities), and the mapping of
//! delivery failures to statuses and MS-OCER diagnostics (1014, 1047, 1010, 1007, 1904).

use federation_policy::{DiagnosticId, DomainName, Fqdn, LogEvent, Refusal, RefusalReason};
use sip_codec::{HeaderName, Message, Uri};

use super::io::DeliveryFailure;
use super::ProxySettings;

/// Methods that do not cross a federation boundary (Lync: registration and presence publication
/// stay inside the organisation).
pub(crate) fn method_is_federated(method: &str) -> bool {
    !matches!(method, "REGISTER" | "PUBLISH")
}

/// The SIP domain a request is for: the Request-URI host (a domain, not an IP literal).
pub(crate) fn target_domain(msg: &Message<'_>) -> Option<DomainName> {
    let Some(Ok(Uri::Sip(u))) = msg.parsed_request_uri() else {
        return None;
    };
    match u.host {
        sip_codec::Host::Domain(d) => DomainName::parse(d).ok(),
        _ => None,
    }
}

/// The domain of the From URI.
pub(crate) fn from_domain(msg: &Message<'_>) -> Option<DomainName> {
    let Ok(Uri::Sip(u)) = msg.from_uri() else {
        return None;
    };
    DomainName::parse(u.host_str()).ok()
}

/// Whether the From URI's host is one of our domains (no `DomainName` is made: the
/// from-the-inside check runs on every request).
pub(crate) fn from_is_ours(policy: &federation_policy::Policy, msg: &Message<'_>) -> bool {
    let Ok(Uri::Sip(u)) = msg.from_uri() else {
        return false;
    };
    policy.is_our_host(u.host_str())
}

/// The host of the From URI as written (empty when there is none), for diagnostics.
pub(crate) fn from_host(msg: &Message<'_>) -> String {
    msg.from_uri()
        .ok()
        .and_then(|u| u.as_sip().map(|s| s.host_str().to_owned()))
        .unwrap_or_default()
}

/// `user@host` of the From (outbound) or To (inbound) URI: the internal contact a discovered
/// partner's limits count.
pub(crate) fn contact_key(msg: &Message<'_>, header: HeaderName) -> String {
    let uri = match header {
        HeaderName::To => msg.to().and_then(|n| n.parsed_uri()),
        _ => msg.from_uri(),
    };
    uri.ok()
        .and_then(|u| {
            u.as_sip()
                .map(|s| format!("{}@{}", s.user.unwrap_or(""), s.host_str()))
        })
        .unwrap_or_default()
}

/// Whether a Route/Record-Route URI points at this edge (either listener); in a pool, at any
/// replica of it (the same host names, any port: [`ProxySettings::pool_routes`]).
pub(crate) fn is_ours(settings: &ProxySettings, uri: &str) -> bool {
    let Ok(Uri::Sip(u)) = Uri::parse(uri) else {
        return false;
    };
    let port = u.port.unwrap_or(5061);
    [&settings.internal_host, &settings.external_host]
        .iter()
        .any(|h| {
            Fqdn::parse(h).is_ok_and(|f| {
                f.host().as_str().eq_ignore_ascii_case(u.host_str())
                    && (settings.pool_routes || f.port() == port)
            })
        })
}

/// How many leading Route values are ours (0, 1, or 2 with double record-routing).
pub(crate) fn our_leading_routes(settings: &ProxySettings, msg: &Message<'_>) -> usize {
    msg.routes()
        .take_while(|r| r.as_ref().is_ok_and(|na| is_ours(settings, na.uri)))
        .count()
}

/// Whether one Route or Record-Route value (a name-addr) points at this edge.
pub(crate) fn is_our_route(settings: &ProxySettings, value: &str) -> bool {
    sip_codec::NameAddr::parse(value).is_ok_and(|na| is_ours(settings, na.uri))
}

/// For an in-dialog request: the first Route that is not ours, else the Request-URI host.
pub(crate) fn in_dialog_hop(settings: &ProxySettings, msg: &Message<'_>) -> Option<Fqdn> {
    let skip = our_leading_routes(settings, msg);
    let uri = match msg.routes().nth(skip) {
        Some(Ok(na)) => na.uri,
        Some(Err(_)) => return None,
        None => msg.request_uri()?,
    };
    let Ok(Uri::Sip(u)) = Uri::parse(uri) else {
        return None;
    };
    let host = u.host_str();
    let fqdn = match u.port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    Fqdn::parse(&fqdn).ok()
}

/// Whether the request's Via list shows it passed through this edge already.
pub(crate) fn is_loop(settings: &ProxySettings, msg: &Message<'_>) -> bool {
    // Only a Via carrying a branch of ours can be ours: most requests have none, and are not parsed.
    let prefix = super::forward::BRANCH_PREFIX.as_bytes();
    let candidate = msg
        .headers()
        .iter()
        .any(|h| h.name == HeaderName::Via && memchr::memmem::find(h.raw_value, prefix).is_some());
    if !candidate {
        return false;
    }
    msg.vias().flatten().any(|v| {
        v.branch()
            .is_some_and(|b| b.starts_with(super::forward::BRANCH_PREFIX))
            && {
                let sent_by = match v.port {
                    Some(p) => format!("{}:{p}", v.host),
                    None => v.host.to_owned(),
                };
                sent_by.eq_ignore_ascii_case(&settings.internal_host)
                    || sent_by.eq_ignore_ascii_case(&settings.external_host)
            }
    })
}

fn refusal(
    status: u16,
    id: DiagnosticId,
    reason: &str,
    metric: RefusalReason,
    params: Vec<(&'static str, String)>,
    event: (&'static str, String),
) -> Refusal {
    Refusal {
        status,
        id,
        reason: reason.to_owned(),
        params,
        public: Vec::new(),
        event: LogEvent {
            name: event.0,
            text: event.1,
        },
        metric_reason: metric,
    }
}

/// A failed delivery to `hop` → (status, refusal).
pub(crate) fn refusal_for_delivery(hop: &str, failure: &DeliveryFailure) -> (u16, Refusal) {
    match failure {
        DeliveryFailure::Resolve(e) => (
            504,
            refusal(504, DiagnosticId::NO_A_RECORD, "Unable to resolve DNS A record", RefusalReason::NoARecord,
                vec![("fqdn", hop.to_owned()), ("error", e.clone())],
                ("resolve_failed", format!("cannot resolve next hop {hop}: {e}"))),
        ),
        DeliveryFailure::Connect(e) => (
            504,
            refusal(504, DiagnosticId::CONNECT_FAILED, "Cannot connect to the next hop", RefusalReason::ConnectFailed,
                vec![("fqdn", hop.to_owned()), ("error", e.clone())],
                ("connect_failed", format!("cannot connect to next hop {hop}: {e}"))),
        ),
        DeliveryFailure::Tls(e) => (
            504,
            refusal(504, DiagnosticId::TLS_NEGOTIATION, "Failed to complete TLS negotiation with a federated peer server", RefusalReason::TlsFailed,
                vec![("fqdn1", hop.to_owned()), ("WinsockFailureDescription", e.clone())],
                ("tls_failed", format!("TLS negotiation with {hop} failed: {e}"))),
        ),
        DeliveryFailure::CertificateMismatch { presented } => (
            504,
            refusal(504, DiagnosticId::CERT_TRUST, "Certificate trust with another server could not be established", RefusalReason::CertMismatch,
                vec![
                    ("ErrorType", "The peer certificate does not contain a matching FQDN".to_owned()),
                    ("tls-target", hop.to_owned()),
                    ("PeerServer", presented.first().cloned().unwrap_or_default()),
                ],
                ("SIPPROXY_E_ROUTING_MSG_CERT_MISMATCH",
                 format!("Message cannot be routed because the peer's certificate does not contain a matching FQDN (dialled {hop}, certificate names {presented:?})"))),
        ),
        DeliveryFailure::Overloaded(e) => (
            503,
            refusal(503, DiagnosticId::TEMPORARILY_CANNOT_ROUTE, "Temporarily cannot route", RefusalReason::Overloaded,
                vec![("fqdn", hop.to_owned()), ("error", e.clone())],
                ("hop_overloaded", format!("next hop {hop} not usable now: {e}"))),
        ),
    }
}

/// The link a transaction went out on died before its final response.
pub(crate) fn refusal_for_lost_link(hop: &str) -> Refusal {
    refusal(
        503,
        DiagnosticId::TEMPORARILY_CANNOT_ROUTE,
        "Temporarily cannot route",
        RefusalReason::LinkLost,
        vec![
            ("fqdn", hop.to_owned()),
            ("error", "connection closed before a final response".to_owned()),
        ],
        (
            "link_lost",
            format!("connection to {hop} closed with the transaction open"),
        ),
    )
}

/// Generated refusals that are not federation decisions.
pub(crate) fn simple_refusal(
    status: u16,
    id: DiagnosticId,
    reason: &str,
    metric: RefusalReason,
    params: Vec<(&'static str, String)>,
) -> Refusal {
    let text = reason.to_owned();
    refusal(status, id, reason, metric, params, (metric.as_str(), text))
}

/// The domain a response is about, for diagnostics: the To URI's host.
pub(crate) fn target_domain_of_response(msg: &Message<'_>) -> String {
    msg.to()
        .ok()
        .and_then(|t| t.parsed_uri().ok())
        .and_then(|u| u.as_sip().map(|s| s.host_str().to_owned()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pool: bool) -> ProxySettings {
        let mut s = ProxySettings::new(
            "edge.corp.test",
            "edge-int.corp.test:5061",
            "edge.corp.test:5062",
            Fqdn::parse("fe1.corp.test").unwrap(),
        );
        s.pool_routes = pool;
        s
    }

    /// Standalone, a Route is ours at our host *and* port; in a pool, at our host names on any port
    /// (another replica's listener), never at another host.
    #[test]
    fn a_route_is_ours_by_host_and_port_or_in_a_pool_by_host() {
        let cases = [
            ("sip:edge.corp.test:5062;lr", true, true),
            ("sip:EDGE.corp.test:5062;lr", true, true),
            ("sip:edge-int.corp.test;lr", true, true),
            ("sip:edge.corp.test:40001;lr", false, true),
            ("sip:edge-int.corp.test:40002;transport=tls;lr", false, true),
            ("sip:fe1.corp.test:5062;lr", false, false),
            ("sip:edge.corp.test.evil.example:5062;lr", false, false),
            ("tel:+15551234", false, false),
        ];
        for (uri, alone, pooled) in cases {
            assert_eq!(is_ours(&settings(false), uri), alone, "standalone {uri}");
            assert_eq!(is_ours(&settings(true), uri), pooled, "pool {uri}");
        }
    }
}
