//! `federation-policy`: the edge's routing and admission decisions, as a pure crate
//! (docs/architecture.md, Federation decision). No sockets, no clock, no threads, no logging: a
//! [`PolicyBuilder`] turns configuration into an immutable [`Policy`] snapshot (rejecting
//! contradictions, every one listed), and the decision functions return verdicts that carry their
//! reason — status, MS-OCER-style diagnostic, log event.
//!
//! - `names.rs`: [`DomainName`], [`Fqdn`].
//! - `policy.rs`: builder, snapshot, configuration errors.
//! - `outbound.rs`: [`Policy::decide_outbound`] (internal → partner), SRV target acceptance and order.
//! - `inbound.rs`: [`Policy::decide_inbound`] (partner → internal), certificate identity.
//! - `verdict.rs`: [`Refusal`] and the diagnostic ids.
//! - `limits.rs`: discovered-partner rate and distinct-contact limits, time passed in.
//! - `pool.rs`: how the replicas of an edge pool divide those limits (demand measured, shares).
//! - `im_filter.rs`: the IM URL filter.
#![forbid(unsafe_code)]

pub mod im_filter;
mod inbound;
mod limits;
mod names;
mod outbound;
mod policy;
pub mod pool;
mod reason;
mod verdict;

pub use im_filter::{FilterAction, FilterVerdict, ImFilter, LYNC_DEFAULT_PREFIXES};
pub use inbound::InboundVerdict;
pub use limits::{contact_hash, DiscoveryLimiter, DiscoveryLimits, LimitVerdict, PoolMode, WHOLE_SHARE};
pub use names::{DomainName, Fqdn, NameError, SIP_TLS_PORT};
pub use outbound::{order_srv, OutboundVerdict, SrvAnswer, SrvRecord, SrvTarget};
pub use policy::{
    AllowedDomain, HostedProvider, KnownServer, Policy, PolicyBuilder, PolicyError, Relationship,
    VerificationLevel,
};
pub use reason::RefusalReason;
pub use verdict::{DiagnosticId, LogEvent, Refusal};
