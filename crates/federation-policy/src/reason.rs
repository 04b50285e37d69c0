//! Why the edge answered a request itself: one closed list, shared by the decisions here, the proxy
//! core's own refusals (edge-core), the refusal log records and the metric labels (the binary's
//! exporter writes [`RefusalReason::as_str`]; its vocabulary test holds the list equal to the
//! metric crate's `REFUSAL_REASONS`).

/// The reason of a [`crate::Refusal`]: a bounded label, one per distinct cause an operator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefusalReason {
    /// No refusal: a generated answer that is not one (408 after Timer F, 483, 487 after CANCEL),
    /// and the diagnostic the edge adds to a response it relays or to a NOTIFY it writes.
    NoRefusal,
    /// Draining: the edge takes no new transaction (503, Retry-After).
    ShuttingDown,
    /// The request already passed through this edge (482).
    Loop,
    /// A method the edge does not relay (REGISTER, PUBLISH).
    Method,
    /// The IM URL filter blocked a message.
    ImFilter,
    /// From a front end, a From domain that is not one of ours.
    FromNotOurs,
    /// A From URI that does not parse.
    FromUri,
    /// A partner asked the edge to relay to a domain that is not ours.
    Relay,
    /// No domain to route on.
    NoDomain,
    /// No route for an in-dialog request.
    NoRoute,
    /// A request to one of our own domains from the inside.
    OwnDomain,
    /// The target domain is blocked.
    Blocked,
    /// A partner claims one of our domains.
    FromOwnDomain,
    /// The sender's domain is blocked.
    FromBlocked,
    /// Neither configured nor discoverable.
    UnknownDomain,
    /// The peer's certificate does not match the domain or its pinned proxy.
    PeerMismatch,
    /// A hosted provider that is not allowed for the domain.
    ProviderNotAllowed,
    /// No SRV record for the domain.
    NoSrv,
    /// The SRV records do not name the peer.
    SrvNoMatch,
    /// The DNS lookup failed.
    DnsError,
    /// The next hop's name does not resolve.
    NoARecord,
    /// The next hop did not accept the connection.
    ConnectFailed,
    /// The TLS handshake with the next hop failed.
    TlsFailed,
    /// The next hop's certificate does not name it.
    CertMismatch,
    /// The edge has no room (connections, queue).
    Overloaded,
    /// A discovered partner over its limits.
    DiscoveryLimit,
    /// The link the request went out on closed before its final response.
    LinkLost,
    /// No final response in time (Timer B/F/C).
    Timeout,
    /// `limits.max_subscriptions` reached.
    SubscriptionsFull,
    /// The IM filter stopped a push.
    PushFiltered,
    /// A push without the device's push subscription.
    NoPushSubscription,
    /// The provider's breaker is open.
    PushBreakerOpen,
    /// A push's last attempt timed out.
    PushTimeout,
}

impl RefusalReason {
    /// Every reason, in the order of the metric catalogue.
    pub const ALL: [RefusalReason; 33] = [
        RefusalReason::NoRefusal,
        RefusalReason::ShuttingDown,
        RefusalReason::Loop,
        RefusalReason::Method,
        RefusalReason::ImFilter,
        RefusalReason::FromNotOurs,
        RefusalReason::FromUri,
        RefusalReason::Relay,
        RefusalReason::NoDomain,
        RefusalReason::NoRoute,
        RefusalReason::OwnDomain,
        RefusalReason::Blocked,
        RefusalReason::FromOwnDomain,
        RefusalReason::FromBlocked,
        RefusalReason::UnknownDomain,
        RefusalReason::PeerMismatch,
        RefusalReason::ProviderNotAllowed,
        RefusalReason::NoSrv,
        RefusalReason::SrvNoMatch,
        RefusalReason::DnsError,
        RefusalReason::NoARecord,
        RefusalReason::ConnectFailed,
        RefusalReason::TlsFailed,
        RefusalReason::CertMismatch,
        RefusalReason::Overloaded,
        RefusalReason::DiscoveryLimit,
        RefusalReason::LinkLost,
        RefusalReason::Timeout,
        RefusalReason::SubscriptionsFull,
        RefusalReason::PushFiltered,
        RefusalReason::NoPushSubscription,
        RefusalReason::PushBreakerOpen,
        RefusalReason::PushTimeout,
    ];

    /// The label: in metrics, log records (`reason`, and the event name of a simple refusal) and
    /// the status page.
    pub const fn as_str(self) -> &'static str {
        match self {
            RefusalReason::NoRefusal => "none",
            RefusalReason::ShuttingDown => "shutting_down",
            RefusalReason::Loop => "loop",
            RefusalReason::Method => "method",
            RefusalReason::ImFilter => "im_filter",
            RefusalReason::FromNotOurs => "from_not_ours",
            RefusalReason::FromUri => "from_uri",
            RefusalReason::Relay => "relay",
            RefusalReason::NoDomain => "no_domain",
            RefusalReason::NoRoute => "no_route",
            RefusalReason::OwnDomain => "own_domain",
            RefusalReason::Blocked => "blocked",
            RefusalReason::FromOwnDomain => "from_own_domain",
            RefusalReason::FromBlocked => "from_blocked",
            RefusalReason::UnknownDomain => "unknown_domain",
            RefusalReason::PeerMismatch => "peer_mismatch",
            RefusalReason::ProviderNotAllowed => "provider_not_allowed",
            RefusalReason::NoSrv => "no_srv",
            RefusalReason::SrvNoMatch => "srv_no_match",
            RefusalReason::DnsError => "dns_error",
            RefusalReason::NoARecord => "no_a_record",
            RefusalReason::ConnectFailed => "connect_failed",
            RefusalReason::TlsFailed => "tls_failed",
            RefusalReason::CertMismatch => "cert_mismatch",
            RefusalReason::Overloaded => "overloaded",
            RefusalReason::DiscoveryLimit => "discovery_limit",
            RefusalReason::LinkLost => "link_lost",
            RefusalReason::Timeout => "timeout",
            RefusalReason::SubscriptionsFull => "subscriptions_full",
            RefusalReason::PushFiltered => "push_filtered",
            RefusalReason::NoPushSubscription => "no_push_subscription",
            RefusalReason::PushBreakerOpen => "push_breaker_open",
            RefusalReason::PushTimeout => "push_timeout",
        }
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::RefusalReason;

    /// A variant added to the enum does not compile here until it is placed, and then must be in
    /// `ALL` (which the metric labels follow).
    #[test]
    fn all_lists_every_variant() {
        use RefusalReason as R;
        let listed = |r: RefusalReason| match r {
            R::NoRefusal
            | R::ShuttingDown
            | R::Loop
            | R::Method
            | R::ImFilter
            | R::FromNotOurs
            | R::FromUri
            | R::Relay
            | R::NoDomain
            | R::NoRoute
            | R::OwnDomain
            | R::Blocked
            | R::FromOwnDomain
            | R::FromBlocked
            | R::UnknownDomain
            | R::PeerMismatch
            | R::ProviderNotAllowed
            | R::NoSrv
            | R::SrvNoMatch
            | R::DnsError
            | R::NoARecord
            | R::ConnectFailed
            | R::TlsFailed
            | R::CertMismatch
            | R::Overloaded
            | R::DiscoveryLimit
            | R::LinkLost
            | R::Timeout
            | R::SubscriptionsFull
            | R::PushFiltered
            | R::NoPushSubscription
            | R::PushBreakerOpen
            | R::PushTimeout => RefusalReason::ALL.contains(&r),
        };
        for r in RefusalReason::ALL {
            assert!(listed(r), "{r}");
        }
    }

    #[test]
    fn every_reason_is_listed_once_with_a_distinct_label() {
        let labels: std::collections::BTreeSet<&str> =
            RefusalReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), RefusalReason::ALL.len());
        let ordered: std::collections::BTreeSet<RefusalReason> = RefusalReason::ALL.into_iter().collect();
        assert_eq!(ordered.len(), RefusalReason::ALL.len());
        for r in RefusalReason::ALL {
            assert!(
                r.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{r}"
            );
        }
    }
}
