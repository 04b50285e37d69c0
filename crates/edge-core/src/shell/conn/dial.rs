//! Dialling: the TCP connect of an outbound connection, each resolved address in turn.

use std::collections::VecDeque;
use std::net::SocketAddr;

use mio::net::TcpStream;

use super::*;

impl Conn {
    /// A connect in progress: `Ok(true)` once connected, `Ok(false)` while still waiting.
    pub(super) fn connect_finished(
        &mut self,
        now: Instant,
        registry: &Registry,
        token: mio::Token,
    ) -> Result<bool, CloseReason> {
        let failed = match self.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match self.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failed {
            self.deregister(registry);
            let reason = CloseReason::Connect(ConnectFailure::Failed {
                addr: Some(self.remote),
                cause: IoCause::of(&e),
            });
            self.connect_next(now, registry, token, reason)?;
            return Ok(false);
        }
        // Best effort: a socket without these options still works.
        let _ = listener::tune(&self.stream);
        self.state = State::Handshaking {
            deadline: now + self.limits.handshake_timeout,
        };
        Ok(true)
    }

    /// Tries the next resolved address after `failure`, or fails with it.
    pub(super) fn connect_next(
        &mut self,
        now: Instant,
        registry: &Registry,
        token: mio::Token,
        failure: CloseReason,
    ) -> Result<(), CloseReason> {
        let Some(dial) = self.dial.as_mut() else {
            return Err(failure);
        };
        if dial.untried.is_empty() {
            return Err(failure);
        }
        let (stream, remote) = connect_next(&mut dial.untried)?;
        self.stream = stream;
        self.remote = remote;
        self.state = State::Connecting {
            deadline: now + self.limits.connect_timeout,
        };
        self.register(registry, token).map_err(|e| {
            CloseReason::Connect(ConnectFailure::Failed {
                addr: None,
                cause: IoCause::of(&e),
            })
        })
    }
}

/// Starts a TCP connect to the first address that accepts one.
pub(super) fn connect_next(
    untried: &mut VecDeque<SocketAddr>,
) -> Result<(TcpStream, SocketAddr), CloseReason> {
    let mut last = CloseReason::Connect(ConnectFailure::NoAddress);
    while let Some(addr) = untried.pop_front() {
        match TcpStream::connect(addr) {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => {
                last = CloseReason::Connect(ConnectFailure::Failed {
                    addr: Some(addr),
                    cause: IoCause::of(&e),
                })
            }
        }
    }
    Err(last)
}
