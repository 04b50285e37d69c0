//! [`ShellSettings`]: the plain data the I/O shell runs on — listen addresses, our certificates and
//! the trust roots of each side, the static hosts table, the worker count and the connection limits.
//! The binary fills it from its validated config (`crates/sipedge`), with the certificates and keys
//! as the configuration already parsed them (DER: read once per load); `tls.rs` turns them into
//! rustls configs, `worker.rs` and `conn.rs` read the limits. Nothing here opens a file or a socket.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Our certificate chain and private key for one side, as the configuration parsed them from
/// `cert_file` and `key_file`. The chain starts with our end-entity certificate.
#[derive(PartialEq, Eq)]
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for TlsIdentity {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("chain", &format_args!("{} certificates", self.chain.len()))
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Connection limits and timers. `Default` gives production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellLimits {
    /// Largest SIP message (header section + body) a peer may send; bigger closes the connection.
    pub max_message_bytes: usize,
    /// Connections (inbound and outbound) across all workers; accepts over it are closed at once.
    pub max_connections: usize,
    /// Inbound connections from one IP address (see `worker.rs` for how it is split across workers).
    pub max_connections_per_ip: usize,
    /// Bytes queued for a peer that does not read before the connection is closed. Raised to at
    /// least twice `max_message_bytes`.
    pub max_write_queue_bytes: usize,
    /// From accept (or TCP connect) to the end of the TLS handshake.
    pub handshake_timeout: Duration,
    /// A connection that receives nothing (not even a keepalive) for this long is closed.
    pub idle_timeout: Duration,
    /// From the first octet of a message to its last: a peer that sends part of a head or body and
    /// goes silent is answered (408 when its header section arrived) and closed. Keepalives and
    /// other traffic do not extend it.
    pub message_timeout: Duration,
    /// TCP connect to a next hop, per address tried.
    pub connect_timeout: Duration,
    /// RFC 5626 CRLF keepalive period on links the edge opened; zero disables it. A link that does not
    /// answer a ping within `keepalive_interval / 2` (at least 2 s) is dead.
    pub keepalive_interval: Duration,
    /// Connections to one next hop from one worker.
    pub outgoing_tls_per_hop: usize,
    /// Write `Level::Debug` log records too (the others are always written). Not a limit, but the
    /// one logging knob the shell has; it lives here so callers keep `..ShellLimits::default()`.
    pub log_debug: bool,
}

impl Default for ShellLimits {
    fn default() -> Self {
        ShellLimits {
            max_message_bytes: 64 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_write_queue_bytes: 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            message_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(30),
            outgoing_tls_per_hop: 4,
            log_debug: false,
        }
    }
}

impl ShellLimits {
    /// The write-queue bound actually applied.
    pub fn write_queue_bound(&self) -> usize {
        self.max_write_queue_bytes
            .max(self.max_message_bytes.saturating_mul(2))
    }

    /// The framing limits for one connection: the header section is capped at 16 KiB (or the whole
    /// message cap if smaller), the body at the message cap.
    pub fn framing(&self) -> sip_codec::Limits {
        let base = sip_codec::Limits::default();
        sip_codec::Limits {
            max_head_bytes: base.max_head_bytes.min(self.max_message_bytes),
            max_headers: base.max_headers,
            max_body_bytes: self.max_message_bytes,
        }
    }
}

/// Everything the shell needs to start.
#[derive(Debug, Clone)]
pub struct ShellSettings {
    /// The internal listener (front ends). Port 0 picks a free port; `EdgeHandle` tells which.
    pub internal_listen: SocketAddr,
    /// The external listener (partners and providers).
    pub external_listen: SocketAddr,
    /// Served on the internal listener and presented as client certificate to the internal next hop.
    pub internal_identity: TlsIdentity,
    /// Served on the external listener and presented as client certificate to partners.
    pub external_identity: TlsIdentity,
    /// The roots the front ends' client certificates (and the internal next hop's server
    /// certificate) must chain to. Required: the internal side is mutual TLS.
    pub internal_client_ca: Vec<CertificateDer<'static>>,
    /// Every root partner certificates (server and client) are checked against: the operating
    /// system's trust store plus `external.ca_file`, read once by the configuration. Must not be empty.
    pub external_roots: Vec<CertificateDer<'static>>,
    /// Static host entries, checked before DNS: `(name, address)`.
    pub hosts: Vec<(String, IpAddr)>,
    /// DNS servers asked for SRV and A/AAAA (`[dns] servers`, else /etc/resolv.conf). Empty: only
    /// IP literals and the static hosts resolve.
    pub dns_servers: Vec<SocketAddr>,
    /// Entries of the DNS cache shared by all workers.
    pub dns_cache_entries: usize,
    /// Worker threads; 0 = one per available core.
    pub workers: usize,
    pub limits: ShellLimits,
    /// Called on a worker's own thread once it has had no I/O for [`IDLE_AFTER`] after a spell of
    /// work (at most once per spell): the binary gives its allocator's free pages back to the OS
    /// there (an idle thread never does by itself; issue 11's soak). `None`: nothing to do.
    pub idle_hook: Option<fn()>,
}

/// How long a worker must have been without I/O before its [`ShellSettings::idle_hook`] runs.
pub const IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl ShellSettings {
    /// The worker count actually used.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_debug_hides_the_key() {
        let id = TlsIdentity {
            chain: vec![CertificateDer::from(b"certificate".to_vec())],
            key: PrivateKeyDer::Pkcs8(b"secret".to_vec().into()),
        };
        let shown = format!("{id:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn derived_limits() {
        let limits = ShellLimits {
            max_message_bytes: 4096,
            max_write_queue_bytes: 100,
            ..ShellLimits::default()
        };
        assert_eq!(limits.write_queue_bound(), 8192);
        let f = limits.framing();
        assert_eq!((f.max_head_bytes, f.max_body_bytes), (4096, 4096));
    }
}
