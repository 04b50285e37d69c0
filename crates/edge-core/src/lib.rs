//! `edge-core`: the I/O half of sipedge — TLS listeners on the internal and external sides, one
//! `mio::Poll` per core, connection pools, the transaction and dialog state machines' shell.
//! The message grammar lives in `sip-codec`, routing decisions in `federation-policy`.
//!
//! Empty until issue 4 lands the proxy; the crate exists now so the workspace has its final shape.
