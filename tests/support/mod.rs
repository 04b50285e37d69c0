//! The black-box harness for the running edge (`sipedge run`): a test PKI (rcgen), the edge process
//! ([`Edge`], killed on drop), TLS peers on both sides ([`TlsPeer`] clients, [`TlsUas`] servers),
//! SIP text helpers ([`sip`]) and the configuration template ([`config`]).
//!
//! Included by the test targets with `mod support;` (its dependencies are dev-dependencies of the
//! `sipedge-tests` crate). Loopback only; every wait is bounded; every socket read has a timeout.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

pub mod config;
pub mod edge;
pub mod front_end;
pub mod http;
pub mod peer;
pub mod pki;
pub mod prometheus;
pub mod sip;
pub mod uas;

pub use config::EdgeOpts;
pub use edge::Edge;
pub use peer::TlsPeer;
pub use pki::TestPki;
#[allow(unused_imports)]
pub use prometheus::free_port;
// Not every test target uses every re-export.
#[allow(unused_imports)]
pub use uas::{Reply, TlsUas};

/// The crypto provider every harness TLS config uses (ring, as the edge).
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
