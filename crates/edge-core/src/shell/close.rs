//! [`CloseReason`]: why a connection ended, and what follows from it — the labels it is counted by
//! (`shared.rs`, `WorkerSnapshot::closed`), how loud
//! its log line is, and for messages still waiting on an outbound connection that never came up the
//! [`DeliveryFailure`] the core is told (each failure maps to one generated response, `proxy/io.rs`).
//! Connections end in `conn.rs`; the worker (`worker.rs`) acts on the reason.

use sip_codec::FrameError;

use crate::proxy::io::{DeliveryFailure, Level, LinkEnd};

/// What a TLS failure was, for the handshake-failure metric: read from rustls's typed error
/// ([`TlsCause::of`]), never from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsCause {
    /// The peer closed the connection before the handshake completed.
    PeerClosed,
    /// A certificate (or a revocation list) past its validity, ours as the peer saw it or theirs.
    CertificateExpired,
    /// A certificate from an issuer the other side does not trust.
    CertificateUntrusted,
    /// Anything else: a bad record, an unexpected message, a cipher mismatch.
    Protocol,
}

impl TlsCause {
    pub(crate) fn of(e: &rustls::Error) -> TlsCause {
        use rustls::{AlertDescription as Alert, CertificateError as Cert, Error};
        match e {
            Error::InvalidCertificate(
                Cert::Expired
                | Cert::ExpiredContext { .. }
                | Cert::ExpiredRevocationList
                | Cert::ExpiredRevocationListContext { .. },
            )
            | Error::AlertReceived(Alert::CertificateExpired) => TlsCause::CertificateExpired,
            Error::InvalidCertificate(Cert::UnknownIssuer)
            | Error::AlertReceived(Alert::BadCertificate | Alert::UnknownCA) => {
                TlsCause::CertificateUntrusted
            }
            _ => TlsCause::Protocol,
        }
    }

    /// The bucket label (`sipedge_tls_handshake_failures`' cause).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TlsCause::PeerClosed => "peer_closed",
            TlsCause::CertificateExpired => "certificate_expired",
            TlsCause::CertificateUntrusted => "certificate_untrusted",
            TlsCause::Protocol => "protocol_error",
        }
    }
}

/// An I/O failure, typed: its kind, and the OS's error number when the OS reported it. Shown (in
/// the log, and in the diagnostic the inside sees for a failed delivery) with the OS's own text, as
/// `io::Error` writes it: `Connection refused (os error 111)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IoCause {
    kind: std::io::ErrorKind,
    os: Option<i32>,
}

impl IoCause {
    pub(crate) fn of(e: &std::io::Error) -> IoCause {
        IoCause {
            kind: e.kind(),
            os: e.raw_os_error(),
        }
    }

    pub(crate) fn kind(kind: std::io::ErrorKind) -> IoCause {
        IoCause { kind, os: None }
    }
}

impl std::fmt::Display for IoCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.os {
            Some(code) => std::io::Error::from_raw_os_error(code).fmt(f),
            None => self.kind.fmt(f),
        }
    }
}

/// Why an outbound TCP connect failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnectFailure {
    /// Every resolved address was tried (or there was none).
    NoAddress,
    /// The connect to `addr` failed (`None`: registering the new socket failed).
    Failed {
        addr: Option<std::net::SocketAddr>,
        cause: IoCause,
    },
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectFailure::NoAddress => f.write_str("no address to connect to"),
            ConnectFailure::Failed { addr: Some(a), cause } => write!(f, "{a}: {cause}"),
            ConnectFailure::Failed { addr: None, cause } => cause.fmt(f),
        }
    }
}

/// Why a connection ended. Each maps to one counter and, for an outbound connection that never came
/// up, to the [`DeliveryFailure`] of what was queued on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseReason {
    PeerClosed,
    /// The core asked (`Effect::Close`).
    Requested,
    Shutdown,
    Io(IoCause),
    /// A TLS failure: its cause (typed) and rustls's description for the log and the core.
    Tls(TlsCause, String),
    Connect(ConnectFailure),
    ConnectTimeout,
    HandshakeTimeout,
    CertificateMismatch(Vec<String>),
    Framing(FrameError),
    IdleTimeout,
    KeepaliveDead,
    /// The peer does not read what we write.
    WriteOverflow,
}

impl CloseReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::Requested => "requested",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Io(_) => "io_error",
            CloseReason::Tls(..) => "tls_error",
            CloseReason::Connect(_) => "connect_failed",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::CertificateMismatch(_) => "certificate_mismatch",
            CloseReason::Framing(FrameError::NotSip(_)) => "not_sip",
            CloseReason::Framing(FrameError::Stalled(_)) => "message_timeout",
            CloseReason::Framing(_) => "framing_error",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::KeepaliveDead => "keepalive_failed",
            CloseReason::WriteOverflow => "write_overflow",
        }
    }

    /// For a close during the TLS handshake: the failure's bucket (a bounded metric label); `None`
    /// for closes that are not handshake failures.
    pub fn handshake_bucket(&self) -> Option<&'static str> {
        match self {
            CloseReason::HandshakeTimeout => Some("timeout"),
            CloseReason::CertificateMismatch(_) => Some("certificate_mismatch"),
            CloseReason::Tls(cause, _) => Some(cause.as_str()),
            _ => None,
        }
    }

    /// What bytes still queued on a connection that never came up are reported as.
    pub fn delivery_failure(&self) -> DeliveryFailure {
        match self {
            CloseReason::Connect(e) => DeliveryFailure::Connect(e.to_string()),
            CloseReason::ConnectTimeout => DeliveryFailure::Connect("connect timed out".to_owned()),
            CloseReason::Tls(_, e) => DeliveryFailure::Tls(e.clone()),
            CloseReason::HandshakeTimeout => DeliveryFailure::Tls("TLS handshake timed out".to_owned()),
            CloseReason::CertificateMismatch(p) => {
                DeliveryFailure::CertificateMismatch { presented: p.clone() }
            }
            CloseReason::Shutdown => DeliveryFailure::Overloaded("the edge is shutting down".to_owned()),
            CloseReason::WriteOverflow => {
                DeliveryFailure::Overloaded("too much queued for the hop".to_owned())
            }
            other => DeliveryFailure::Connect(format!("connection to the hop closed ({})", other.as_str())),
        }
    }

    /// What the core is told about a connection it saw up.
    pub fn link_end(&self) -> LinkEnd {
        match self {
            CloseReason::PeerClosed => LinkEnd::PeerClosed,
            CloseReason::Io(_) => LinkEnd::Reset,
            // Connect, handshake and certificate failures end a link the core never saw up; should
            // one reach it, the peer is as unreachable as after a TLS failure.
            CloseReason::Tls(..)
            | CloseReason::Connect(_)
            | CloseReason::ConnectTimeout
            | CloseReason::HandshakeTimeout
            | CloseReason::CertificateMismatch(_) => LinkEnd::Tls,
            CloseReason::KeepaliveDead => LinkEnd::KeepaliveFailed,
            CloseReason::WriteOverflow => LinkEnd::WriteOverflow,
            CloseReason::IdleTimeout => LinkEnd::Idle,
            CloseReason::Requested | CloseReason::Framing(_) => LinkEnd::Local,
            CloseReason::Shutdown => LinkEnd::Shutdown,
        }
    }

    /// How loud the close is in the log, and the detail written with it.
    pub fn log_level(&self) -> (Level, String) {
        match self {
            CloseReason::PeerClosed
            | CloseReason::Requested
            | CloseReason::Shutdown
            | CloseReason::IdleTimeout => (Level::Debug, String::new()),
            CloseReason::Io(e) => (Level::Info, e.to_string()),
            CloseReason::Connect(e) => (Level::Info, e.to_string()),
            CloseReason::Tls(_, e) => (Level::Info, e.clone()),
            CloseReason::CertificateMismatch(p) => (Level::Warn, format!("certificate names {p:?}")),
            CloseReason::Framing(e) => (Level::Info, e.to_string()),
            other => (Level::Info, other.as_str().replace('_', " ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_causes_read_as_the_os_wrote_them() {
        let refused = std::io::Error::from_raw_os_error(111);
        let cause = IoCause::of(&refused);
        assert_eq!(cause.to_string(), refused.to_string());
        let addr: std::net::SocketAddr = "192.0.2.7:5061".parse().unwrap();
        let failed = ConnectFailure::Failed {
            addr: Some(addr),
            cause,
        };
        assert_eq!(failed.to_string(), format!("192.0.2.7:5061: {refused}"));
        assert_eq!(ConnectFailure::NoAddress.to_string(), "no address to connect to");
        let reason = CloseReason::Connect(failed);
        assert!(
            matches!(reason.delivery_failure(), DeliveryFailure::Connect(t) if t == format!("192.0.2.7:5061: {refused}"))
        );
        assert_eq!(
            CloseReason::Io(IoCause::kind(std::io::ErrorKind::WriteZero)).log_level(),
            (Level::Info, "write zero".to_owned())
        );
    }

    #[test]
    fn the_core_hears_whether_the_link_failed() {
        let failed = [
            CloseReason::PeerClosed,
            CloseReason::Io(IoCause::kind(std::io::ErrorKind::ConnectionReset)),
            CloseReason::Tls(TlsCause::Protocol, "bad record".into()),
            CloseReason::KeepaliveDead,
            CloseReason::WriteOverflow,
        ];
        for r in failed {
            assert!(r.link_end().link_failed(), "{r:?}");
        }
        let closed_by_us = [
            (CloseReason::IdleTimeout, LinkEnd::Idle),
            (CloseReason::Requested, LinkEnd::Local),
            (CloseReason::Framing(FrameError::NotSip("x")), LinkEnd::Local),
            (CloseReason::Shutdown, LinkEnd::Shutdown),
        ];
        for (r, end) in closed_by_us {
            assert_eq!(r.link_end(), end, "{r:?}");
            assert!(!end.link_failed(), "{r:?}");
        }
    }

    #[test]
    fn tls_failures_are_bucketed_from_the_typed_error() {
        use rustls::{AlertDescription as Alert, CertificateError as Cert, Error};
        let cases = [
            (Error::InvalidCertificate(Cert::Expired), "certificate_expired"),
            (
                Error::AlertReceived(Alert::CertificateExpired),
                "certificate_expired",
            ),
            (
                Error::InvalidCertificate(Cert::UnknownIssuer),
                "certificate_untrusted",
            ),
            (
                Error::AlertReceived(Alert::BadCertificate),
                "certificate_untrusted",
            ),
            (Error::AlertReceived(Alert::UnknownCA), "certificate_untrusted"),
            (Error::DecryptError, "protocol_error"),
            (Error::AlertReceived(Alert::HandshakeFailure), "protocol_error"),
        ];
        for (e, bucket) in cases {
            let r = CloseReason::Tls(TlsCause::of(&e), e.to_string());
            assert_eq!(r.handshake_bucket(), Some(bucket), "{e}");
        }
        let closed = CloseReason::Tls(TlsCause::PeerClosed, "peer closed".into());
        assert_eq!(closed.handshake_bucket(), Some("peer_closed"));
        assert_eq!(CloseReason::HandshakeTimeout.handshake_bucket(), Some("timeout"));
        assert_eq!(CloseReason::PeerClosed.handshake_bucket(), None);
    }

    #[test]
    fn failures_the_core_is_told() {
        let mismatch = CloseReason::CertificateMismatch(vec!["a.example".to_owned()]);
        assert_eq!(
            mismatch.delivery_failure(),
            DeliveryFailure::CertificateMismatch {
                presented: vec!["a.example".to_owned()]
            }
        );
        assert!(matches!(
            CloseReason::HandshakeTimeout.delivery_failure(),
            DeliveryFailure::Tls(_)
        ));
        assert!(matches!(
            CloseReason::ConnectTimeout.delivery_failure(),
            DeliveryFailure::Connect(_)
        ));
        assert!(matches!(
            CloseReason::Shutdown.delivery_failure(),
            DeliveryFailure::Overloaded(_)
        ));
        assert!(matches!(
            CloseReason::PeerClosed.delivery_failure(),
            DeliveryFailure::Connect(_)
        ));
    }

    #[test]
    fn log_levels() {
        assert_eq!(CloseReason::Requested.log_level().0, Level::Debug);
        assert_eq!(
            CloseReason::CertificateMismatch(vec![]).log_level().0,
            Level::Warn
        );
    }
}
