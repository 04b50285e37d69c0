//! The front end `fe1.corp.test` as the black-box tests drive it: a TLS client on the edge's
//! internal listener, a MESSAGE from `alice@corp.test`, and the final response to a branch. One
//! copy for every test target (`federation_dns`, `reload`, `metrics`, ...).

use std::time::Duration;

use super::sip;
use super::{Edge, TestPki, TlsPeer};

/// The front end on the internal listener (certificate fe1.corp.test).
pub fn fe_client(edge: &Edge, pki: &TestPki) -> TlsPeer {
    TlsPeer::connect(
        edge.internal_addr,
        &pki.fe,
        &pki.internal_ca.cert,
        "edge-int.corp.test",
    )
    .unwrap_or_else(|e| {
        panic!(
            "FE cannot connect to the internal listener: {e}\n{}",
            edge.log_dump()
        )
    })
}

/// MESSAGE from alice@corp.test (the FE) to `uri`; its final response (panics with context if none).
pub fn fe_message(fe: &mut TlsPeer, edge: &Edge, uri: &str, branch: &str, wait: Duration) -> String {
    fe.send(&sip::message(
        uri,
        "fe1.corp.test:5061",
        branch,
        "sip:alice@corp.test",
    ));
    final_for(fe, edge, branch, wait)
}

/// The final response whose top Via branch is `branch`.
pub fn final_for(peer: &mut TlsPeer, edge: &Edge, branch: &str, wait: Duration) -> String {
    peer.recv_matching(wait, |m| sip::status(m) >= 200 && sip::top_branch(m) == branch)
        .unwrap_or_else(|| {
            panic!(
                "no final response for {branch} within {wait:?}; received {:?}\nedge stderr:\n{}",
                sip::summary(&peer.received),
                edge.log_dump()
            )
        })
}

/// MESSAGE from bob@partner.test (a partner connected at the external listener) to alice@corp.test;
/// its final response (panics with context if none).
pub fn partner_message(partner: &mut TlsPeer, edge: &Edge, branch: &str, wait: Duration) -> String {
    partner.send(&sip::message(
        "sip:alice@corp.test",
        "edge.partner.test:5061",
        branch,
        "sip:bob@partner.test",
    ));
    final_for(partner, edge, branch, wait)
}
