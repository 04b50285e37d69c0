//! Reading a connection: TLS records in (at most `READ_BUDGET` per turn), the handshake's end
//! (`ConnEvent::Up`, the exact-name check of a dialled host), plaintext framed into messages, pings
//! answered, a message that stalls past its deadline reported.

use std::io::{self, BufRead};

use mio::net::TcpStream;
use sip_codec::Frame;

use super::*;

impl Conn {
    /// Reads until the socket would block, a read comes back short (the queue is empty), or
    /// `READ_BUDGET` octets came in (then `input_pending`):
    /// TLS records in, handshake progress, plaintext framed. The budget keeps one fast peer from
    /// holding the worker — its timers, its other connections, the effects of what was read.
    pub(super) fn read(
        &mut self,
        now: Instant,
        sink: &mut dyn FnMut(ConnEvent<'_>),
    ) -> Result<(), CloseReason> {
        let mut budget = READ_BUDGET;
        self.input_pending = false;
        loop {
            if budget == 0 {
                self.input_pending = true;
                return Ok(());
            }
            let mut probe = ShortRead {
                stream: &mut self.stream,
                short: false,
            };
            let read = self.tls.read_tls(&mut probe);
            let short = probe.short;
            let eof = match read {
                Ok(0) => true,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CloseReason::Io(IoCause::of(&e))),
            };
            if !eof {
                self.last_rx = now;
            }
            let state = match self.tls.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    // Send the alert rustls queued; the connection is over either way.
                    let _ = self.tls.write_tls(&mut self.stream);
                    return Err(match tls::mismatch_names(&e) {
                        Some(presented) if self.dial.is_some() => CloseReason::CertificateMismatch(presented),
                        _ => CloseReason::Tls(TlsCause::of(&e), e.to_string()),
                    });
                }
            };
            if self.phase() == Phase::Handshaking && !self.tls.is_handshaking() {
                self.handshake_done(now, sink)?;
            }
            if self.phase() == Phase::Up {
                self.read_plaintext(now, sink)?;
            }
            if eof || state.peer_has_closed() {
                return Err(if self.phase() == Phase::Handshaking {
                    CloseReason::Tls(
                        TlsCause::PeerClosed,
                        "peer closed during the TLS handshake".to_owned(),
                    )
                } else {
                    CloseReason::PeerClosed
                });
            }
            if short {
                // The socket gave less than asked: its receive queue was empty after this read, so
                // the next octet to arrive raises a new edge. Reading again would only fetch
                // EAGAIN — one syscall per wake-up (tokio clears readiness on a short read too).
                return Ok(());
            }
        }
    }

    /// The message in `rbuf` did not complete in time. With its header section there, the core
    /// answers it (408) and closes; without, there is nothing to answer.
    pub(super) fn message_stalled(&mut self, sink: &mut dyn FnMut(ConnEvent<'_>)) -> Result<(), CloseReason> {
        let ms = u64::try_from(self.limits.message_timeout.as_millis()).unwrap_or(u64::MAX);
        let error = sip_codec::FrameError::Stalled(ms);
        let head = memchr::memmem::find(&self.rbuf, b"\r\n\r\n").and_then(|i| self.rbuf.get(..i + 4));
        match head {
            Some(head) => {
                sink(ConnEvent::Unframeable { head, error });
                self.discarding = true;
                self.rbuf.clear();
                self.message_started = None;
                Ok(())
            }
            None => Err(CloseReason::Framing(error)),
        }
    }

    pub(super) fn handshake_done(
        &mut self,
        now: Instant,
        sink: &mut dyn FnMut(ConnEvent<'_>),
    ) -> Result<(), CloseReason> {
        // On links we dialled the exact-name check already ran inside the handshake (tls.rs,
        // ExactNameVerifier): a mismatch never gets here.
        let leaf = self.tls.peer_certificates().and_then(|c| c.first());
        let identities = leaf.map(tls::peer_identities).unwrap_or_default();
        self.last_rx = now;
        // On links we dial, we ping.
        let keepalive = match self.dial {
            Some(_) => Keepalive::new(now, self.limits.keepalive_interval),
            None => None,
        };
        self.state = State::Up { keepalive };
        sink(ConnEvent::Up(PeerInfo {
            side: self.side,
            remote: self.remote,
            identities,
            dialled: self.dial.as_ref().map(|d| d.hop.fqdn.clone()),
        }));
        let pending = self
            .dial
            .as_mut()
            .map(|d| std::mem::take(&mut d.pending))
            .unwrap_or_default();
        self.out.forget_reserved();
        for (token, bytes) in pending {
            self.enqueue(bytes)?;
            if let Some(token) = token {
                sink(ConnEvent::Delivered(token));
            }
        }
        Ok(())
    }

    pub(super) fn read_plaintext(
        &mut self,
        now: Instant,
        sink: &mut dyn FnMut(ConnEvent<'_>),
    ) -> Result<(), CloseReason> {
        // Plaintext is appended from rustls's own buffer (`BufRead`): no stack chunk to zero and
        // copy through on every readable event.
        loop {
            let mut reader = self.tls.reader();
            match reader.fill_buf() {
                Ok([]) => break,
                Ok(data) => {
                    let n = data.len();
                    if !self.discarding {
                        self.rbuf.extend_from_slice(data);
                    }
                    // Draining while discarding lets the connection still flush and close.
                    reader.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // Closed without close_notify: frame what arrived, the read loop sees the EOF.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(_) if self.discarding => break,
                Err(e) => return Err(CloseReason::Io(IoCause::of(&e))),
            }
        }
        if self.discarding {
            return Ok(());
        }
        let mut start = 0usize;
        loop {
            let rest = self.rbuf.get(start..).unwrap_or(&[]);
            let frame = match self.framer.poll(rest) {
                Ok(frame) => frame,
                Err(error) => {
                    // With a whole header section the core can still answer (513/400) before the
                    // close; without one there is nothing to answer.
                    let head = memchr::memmem::find(rest, b"\r\n\r\n").and_then(|i| rest.get(..i + 4));
                    let answerable = !matches!(
                        error,
                        sip_codec::FrameError::HeadTooLarge(_)
                            | sip_codec::FrameError::TooManyHeaders(_)
                            | sip_codec::FrameError::NotSip(_)
                    );
                    match head {
                        Some(head) if answerable => {
                            sink(ConnEvent::Unframeable { head, error });
                            self.discarding = true;
                            self.rbuf.clear();
                            return Ok(());
                        }
                        _ => return Err(CloseReason::Framing(error)),
                    }
                }
            };
            match frame {
                Frame::NeedMore => break,
                Frame::Ping => self.enqueue(PONG.to_vec())?,
                Frame::Pong => {
                    if let State::Up { keepalive: Some(k) } = &mut self.state {
                        k.on_pong();
                    }
                }
                Frame::Message { len, .. } => sink(ConnEvent::Message(rest.get(..len).unwrap_or(&[]))),
            }
            start += frame.consumed();
        }
        self.rbuf.drain(..start.min(self.rbuf.len()));
        // The bound runs from the first octet of a message; what completes a message resets it.
        if self.rbuf.is_empty() {
            self.message_started = None;
        } else if start > 0 || self.message_started.is_none() {
            self.message_started = Some(now);
        }
        // One large message must not pin its buffer for the rest of a long-lived link.
        if self.rbuf.capacity() > 4 * CHUNK && self.rbuf.len() < CHUNK {
            self.rbuf.shrink_to(CHUNK);
        }
        Ok(())
    }
}

/// TLS input read from one connection per turn of the worker loop.
const READ_BUDGET: usize = 64 * 1024;

/// The socket as rustls reads it, noting whether a read returned less than the buffer offered.
struct ShortRead<'a> {
    stream: &'a mut TcpStream,
    short: bool,
}

impl io::Read for ShortRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.short = n > 0 && n < buf.len();
        Ok(n)
    }
}
