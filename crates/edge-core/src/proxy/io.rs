//! The seam between the sans-IO proxy core (`proxy/`) and the I/O shell (`shell/`): what the shell
//! tells the core ([`Input`]) and what the core asks of the shell ([`Effect`]). Time is passed in with
//! every call (`now`), and the core exposes its next deadline, so the core never reads a clock and its
//! tests run on a virtual one.
//!
//! The shell owns sockets, TLS, name resolution and the outbound connection pool. The core owns SIP:
//! transactions, routing, the responses it generates.

use std::net::SocketAddr;

use federation_policy::{Fqdn, SrvRecord};

/// A connection, unique within one worker for the worker's lifetime (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Which listener (or, for outbound connections, which kind of peer) a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// Front-end servers: mutual TLS, known servers only.
    Internal,
    /// Partners and providers.
    External,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Internal => "internal",
            Side::External => "external",
        }
    }
}

/// What the shell knows about a connection once its TLS handshake completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub side: Side,
    pub remote: SocketAddr,
    /// DNS names of the peer's certificate (SAN dNSName entries; the CN when there are none), as
    /// presented. Verified against the trust roots by the shell; matched against policy by the core.
    pub identities: Vec<String>,
    /// For connections the edge opened: the server it dialled.
    pub dialled: Option<Fqdn>,
}

/// A server the core wants to reach. The shell resolves it (static hosts, then DNS), reuses a pooled
/// connection to it or opens one (TLS, SNI = host, certificate must name the host exactly).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NextHop {
    pub fqdn: Fqdn,
    pub side: Side,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An existing connection (responses go back where their request came from).
    Conn(ConnId),
    /// A server, through the pool.
    Hop(NextHop),
}

/// Correlates a `Send` to a hop, or a lookup, with what the shell later reports about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

/// Why bytes for a hop could not be delivered. Each maps to one generated response and diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryFailure {
    /// No address for the host (static hosts, then DNS A/AAAA): 504, id 1014.
    Resolve(String),
    /// TCP connect failed or timed out: 504 (unreachable), with the OS error.
    Connect(String),
    /// The TLS handshake failed: 504, id 1047.
    Tls(String),
    /// The peer's certificate does not name the host we dialled: 504, id 1010.
    CertificateMismatch { presented: Vec<String> },
    /// Too many connections to the hop, or the edge is shutting down: 503, id 1007.
    Overloaded(String),
}

/// Why a connection ended, as the core needs to know it (the shell's reasons are finer: its log and
/// counters keep them). [`LinkEnd::link_failed`] says whether the peer is to be taken as gone — what
/// ends the subscriptions that depend on the link (`dialogs.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkEnd {
    /// The peer closed it (TCP FIN, TLS close_notify): it went away or restarted.
    PeerClosed,
    /// Reset, or another socket error.
    Reset,
    /// TLS failed on an established link (a bad record, an alert).
    Tls,
    /// The RFC 5626 keepalive got no pong: the peer stopped answering.
    KeepaliveFailed,
    /// The peer stopped reading what the edge writes (the write bound).
    WriteOverflow,
    /// Quiet for the idle limit and closed by the edge: the peer is not known to be gone.
    Idle,
    /// Closed by the edge: the core asked, or the peer sent what cannot be SIP.
    Local,
    /// The edge is shutting down.
    Shutdown,
}

impl LinkEnd {
    /// Whether the peer is to be taken as gone (rather than the edge having closed a live link).
    pub fn link_failed(self) -> bool {
        matches!(
            self,
            LinkEnd::PeerClosed
                | LinkEnd::Reset
                | LinkEnd::Tls
                | LinkEnd::KeepaliveFailed
                | LinkEnd::WriteOverflow
        )
    }

    /// A bounded label (metrics, logs, the diagnostic of a terminated subscription).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkEnd::PeerClosed => "peer_closed",
            LinkEnd::Reset => "reset",
            LinkEnd::Tls => "tls_error",
            LinkEnd::KeepaliveFailed => "keepalive_failed",
            LinkEnd::WriteOverflow => "write_overflow",
            LinkEnd::Idle => "idle",
            LinkEnd::Local => "local",
            LinkEnd::Shutdown => "shutdown",
        }
    }
}

/// The answer to a [`Effect::LookupSrv`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrvResult {
    Records(Vec<SrvRecord>),
    NoRecord,
    Failed(String),
}

impl SrvResult {
    /// The answer as the federation policy reads it.
    pub fn as_answer(&self) -> federation_policy::SrvAnswer<'_> {
        match self {
            SrvResult::Records(r) => federation_policy::SrvAnswer::Records(r),
            SrvResult::NoRecord => federation_policy::SrvAnswer::NoRecord,
            SrvResult::Failed(e) => federation_policy::SrvAnswer::Failed(e),
        }
    }
}

/// A DNS answer to an SRV question as the core needs it (the shell's resolver and the binary's
/// blocking lookups both use this): no record for an empty set, an address answer a failure.
impl From<crate::dns::Answer> for SrvResult {
    fn from(a: crate::dns::Answer) -> SrvResult {
        use crate::dns::Answer;
        match a {
            Answer::Srv(r) if !r.is_empty() => SrvResult::Records(r),
            Answer::Srv(_) | Answer::NoRecord => SrvResult::NoRecord,
            Answer::Hosts(_) => SrvResult::Failed("unexpected address answer".to_owned()),
            Answer::Failed(e) => SrvResult::Failed(e),
        }
    }
}

/// Something that happened, for the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// A connection finished its TLS handshake — inbound, or one the edge dialled (reported before
    /// the `Delivered` of the first bytes sent on it). Nothing else is reported for a connection first.
    ConnUp { conn: ConnId, peer: PeerInfo },
    /// One whole SIP message framed on `conn`.
    Message { conn: ConnId, bytes: &'a [u8] },
    /// The stream cannot be framed past this whole header section (body over the size limit, bad
    /// or missing Content-Length). The shell reads nothing more from `conn`; the core answers if
    /// it can and closes it.
    Unframeable {
        conn: ConnId,
        head: &'a [u8],
        error: sip_codec::FrameError,
    },
    /// A connection is gone, and why.
    ConnClosed { conn: ConnId, reason: LinkEnd },
    /// Bytes sent with `Effect::Send { dest: Hop(..), token }` went out on `conn`.
    Delivered { token: Token, conn: ConnId },
    /// Bytes sent with `Effect::Send { dest: Hop(..), token }` could not be delivered.
    DeliveryFailed { token: Token, failure: DeliveryFailure },
    /// The answer to `Effect::LookupSrv { token, .. }`.
    Srv { token: Token, result: SrvResult },
}

/// Something the core asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write `bytes` (one whole message). For a hop, `token` is reported back as `Delivered` or
    /// `DeliveryFailed`; for a connection that is gone, the bytes are dropped (the core learns of the
    /// close through `ConnClosed`).
    Send {
        dest: Destination,
        bytes: Vec<u8>,
        token: Option<Token>,
    },
    /// Look up `_sipfederationtls._tcp.<domain>` (the full name is given); answer with `Input::Srv`.
    LookupSrv { name: String, token: Token },
    /// Close a connection (after flushing what was queued).
    Close { conn: ConnId },
    /// One structured log event.
    Log(LogRecord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// A structured log event: a stable name, the human text, and the facts as key/value pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub level: Level,
    pub event: &'static str,
    pub text: String,
    pub fields: Vec<(&'static str, String)>,
}
