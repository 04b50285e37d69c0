//! `edge-core`: the edge's data plane.
//!
//! - `proxy/`: the sans-IO SIP proxy core — transactions, routing, generated responses. Time in,
//!   effects out; the seam with the shell is `proxy/io.rs`.
//! - `shell/`: the I/O half — TLS listeners on the internal and external sides, one `mio::Poll` per
//!   worker thread, connections, the outbound pool. Every byte is written in `shell/conn/write.rs`.
//!
//! - `runtime.rs`: [`Runtime`], the snapshot a reload hands every worker (policy, timers, limits,
//!   TLS configs).
//!
//! The message grammar lives in `sip-codec`, routing decisions in `federation-policy`.

pub mod dns;
pub mod proxy;
pub mod runtime;
pub mod shell;

pub use runtime::{ProxyRuntime, Runtime};
