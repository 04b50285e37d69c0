//! [`Refusal`]: everything an operator sees when the edge refuses — SIP status, an MS-OCER-style
//! diagnostic (`ms-diagnostics` towards internal with `source`, `ms-diagnostics-public` towards
//! partners without it), one structured log event, and a bounded metric reason label.
//!
//! Ids: the public MS-OCER ids where the condition is the same (../shared/diagnostics.md), and our own
//! in 1900–1999 where none fits:
//!
//! | id | reason | status |
//! |---|---|---|
//! | 1901 | From domain is blocked | 403 |
//! | 1902 | From domain is one of this edge's own domains | 403 |
//! | 1903 | Peer certificate does not identify a server of the From domain | 403 |
//! | 1904 | Cannot connect to the next hop | 504 |
//! | 1905 | Instant message contains a URL prefix blocked by the IM filter | 403 |
//! | 1906 | Request already passed through this edge | 482 |
//! | 1907 | From domain is not one of this edge's domains | 403 |
//! | 1908 | Request-URI domain is not one of this edge's domains | 403 |
//! | 1909 | Push Notification request was rejected (IM URL filter) | 403 |
//! | 1910 | No push subscription for target device (RFC 8599 identity) | 480 |
//! | 1911 | The push notification provider did not answer | 504 |

use crate::RefusalReason;
use std::fmt::Write;

/// An MS-OCER diagnostic id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DiagnosticId(pub u32);

impl DiagnosticId {
    pub const NOT_AUTHORIZED: Self = Self(1002);
    pub const CANNOT_ROUTE: Self = Self(1005);
    pub const TEMPORARILY_CANNOT_ROUTE: Self = Self(1007);
    pub const NO_SRV: Self = Self(1008);
    pub const NO_SRV_MATCH: Self = Self(1009);
    pub const CERT_TRUST: Self = Self(1010);
    pub const NO_A_RECORD: Self = Self(1014);
    pub const FROM_TO_COMBINATION: Self = Self(1017);
    pub const METHOD_NOT_FEDERATED: Self = Self(1027);
    pub const PEER_NO_DIAGNOSTIC: Self = Self(1034);
    pub const TLS_NEGOTIATION: Self = Self(1047);
    pub const FROM_DOMAIN_BLOCKED: Self = Self(1901);
    pub const FROM_DOMAIN_OURS: Self = Self(1902);
    pub const PEER_NOT_OF_DOMAIN: Self = Self(1903);
    pub const CONNECT_FAILED: Self = Self(1904);
    pub const IM_FILTER_BLOCKED: Self = Self(1905);
    pub const LOOP_DETECTED: Self = Self(1906);
    /// A front end sent a request From a domain this edge does not serve: the edge vouches for its
    /// own domains only.
    pub const FROM_DOMAIN_NOT_OURS: Self = Self(1907);
    /// A partner sent an out-of-dialog request for a domain this edge does not serve (relay).
    pub const RELAY_REFUSED: Self = Self(1908);
    /// The IM URL filter blocked a push request's body (the field text, with the prefix).
    pub const PUSH_REJECTED: Self = Self(1909);
    /// A push request's RFC 8599 target identity is incomplete or names no provider (480).
    pub const NO_PUSH_SUBSCRIPTION: Self = Self(1910);
    /// Every attempt of a push timed out before the provider answered anything (504).
    pub const PUSH_PROVIDER_TIMEOUT: Self = Self(1911);
    /// The edge ended a subscription because the link to its notifier failed (in the terminating
    /// NOTIFY it sends the subscriber: `link`, `side`, `cause`).
    pub const SUBSCRIPTION_LINK_FAILED: Self = Self(1912);
    /// The edge tracks `limits.max_subscriptions` subscriptions already: a new SUBSCRIBE is refused
    /// (503, Retry-After).
    pub const SUBSCRIPTIONS_FULL: Self = Self(1913);
}

/// One structured log event: a stable name to filter on and the text operators search for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    pub name: &'static str,
    pub text: String,
}

/// A refusal with its reason, ready to be written as a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The SIP status; its reason phrase is `sip_codec::reason_phrase`'s (one table for the edge).
    pub status: u16,
    pub id: DiagnosticId,
    /// The diagnostic's `reason="..."` text.
    pub reason: String,
    /// Extra `name="value"` facts (`domain`, `fqdn1`, `PeerServer`, ...), in order. All of them go
    /// towards the internal side; towards a partner only those named in `public`.
    pub params: Vec<(&'static str, String)>,
    /// The names of the `params` a partner may see in `ms-diagnostics-public`: the facts of the
    /// partner's own request (its domain, its certificate's name, the method or prefix it sent).
    /// Anything else — internal host names, addresses, ports, OS error texts, limits — stays
    /// inside: a param is private unless named here.
    pub public: Vec<&'static str>,
    pub event: LogEvent,
    /// Why, as a bounded label (metrics, log records, the status page).
    pub metric_reason: RefusalReason,
}

impl Refusal {
    pub(crate) fn new(status: u16, id: DiagnosticId, reason: &str, metric_reason: RefusalReason) -> Self {
        Refusal {
            status,
            id,
            reason: reason.to_owned(),
            params: Vec::new(),
            public: Vec::new(),
            event: LogEvent {
                name: metric_reason.as_str(),
                text: reason.to_owned(),
            },
            metric_reason,
        }
    }

    /// A fact for the internal side only (`ms-diagnostics`).
    pub(crate) fn param(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.params.push((name, value.into()));
        self
    }

    /// A fact a partner may see too (`ms-diagnostics-public`): only what the partner sent or is.
    pub(crate) fn public_param(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.public.push(name);
        self.param(name, value)
    }

    /// Names params (already added or added later) that a partner may see.
    #[must_use]
    pub fn with_public(mut self, names: &[&'static str]) -> Self {
        self.public.extend_from_slice(names);
        self
    }

    pub(crate) fn event(mut self, name: &'static str, text: impl Into<String>) -> Self {
        self.event = LogEvent {
            name,
            text: text.into(),
        };
        self
    }

    /// `ms-diagnostics` value towards the internal side: `<id>;reason="..";source="<edge>"[;k="v"]*`.
    pub fn ms_diagnostics(&self, edge_fqdn: &str) -> String {
        self.render(Some(edge_fqdn))
    }

    /// `ms-diagnostics-public` value towards partners: no `source`, and only the params named
    /// in `public` — nothing about the inside crosses (docs/architecture.md, Invariants).
    pub fn ms_diagnostics_public(&self) -> String {
        self.render(None)
    }

    fn render(&self, source: Option<&str>) -> String {
        let mut s = format!("{};reason=\"{}\"", self.id.0, quote(&self.reason));
        let inside = source.is_some();
        if let Some(src) = source {
            let _ = write!(s, ";source=\"{}\"", quote(src));
        }
        for (k, v) in &self.params {
            if inside || self.public.contains(k) {
                let _ = write!(s, ";{k}=\"{}\"", quote(v));
            }
        }
        s
    }
}

/// Escapes `"` and `\` for a quoted-string.
fn quote(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_form() {
        let r = Refusal::new(
            504,
            DiagnosticId::NO_SRV,
            "Unable to resolve DNS SRV record",
            RefusalReason::NoSrv,
        )
        .public_param("domain", "partner.example")
        .param("note", "a \"quoted\" word");
        assert_eq!(
            r.ms_diagnostics("edge.corp.example"),
            r#"1008;reason="Unable to resolve DNS SRV record";source="edge.corp.example";domain="partner.example";note="a \"quoted\" word""#
        );
        assert_eq!(
            r.ms_diagnostics_public(),
            r#"1008;reason="Unable to resolve DNS SRV record";domain="partner.example""#,
            "towards a partner only the public params"
        );
    }
}
