//! `sipedge-bench tls-server`: the reference TLS server of the handshake targets (issue 11) — a
//! minimal equivalent of rustls's own example server `tlsserver-mio` (rustls repository,
//! `examples/src/bin/tlsserver-mio.rs`) in its `echo` mode, since that example is not a published
//! crate and cannot be built here. The same structure and calls as the example: one `mio` thread, a
//! `TcpListener` accepting until `WouldBlock`, one `ServerConnection` per socket, on readable
//! `read_tls` → `process_new_packets` → plaintext echoed into the connection's writer, on writable
//! `write_tls`, the interest set recomputed from `wants_read`/`wants_write` after each event, and a
//! connection closed (`shutdown(Both)`) on EOF, error, or the peer's close_notify. Its config is the
//! example's with `--auth CA --require-auth` (mutual TLS, as the edge's internal listener) and
//! without `--tickets` (the default stateful session cache, as the edge), on the provider asked
//! for (`ring` or `aws-lc-rs`; the example's default is aws-lc-rs).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use rustls::ServerConnection;

const LISTENER: Token = Token(0);

struct OpenConnection {
    socket: TcpStream,
    token: Token,
    closing: bool,
    closed: bool,
    tls_conn: ServerConnection,
}

impl OpenConnection {
    fn ready(&mut self, registry: &Registry, readable: bool, writable: bool) {
        if readable {
            self.do_tls_read();
            self.try_plain_read();
        }
        if writable {
            self.do_tls_write_and_handle_error();
        }
        if self.closing {
            let _ = self.socket.shutdown(Shutdown::Both);
            self.closed = true;
            let _ = registry.deregister(&mut self.socket);
        } else {
            let interest = self.event_set();
            if registry
                .reregister(&mut self.socket, self.token, interest)
                .is_err()
            {
                self.closed = true;
            }
        }
    }

    fn do_tls_read(&mut self) {
        match self.tls_conn.read_tls(&mut self.socket) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) | Ok(0) => {
                self.closing = true;
                return;
            }
            Ok(_) => {}
        }
        if self.tls_conn.process_new_packets().is_err() {
            // Last gasp write to send any alerts.
            self.do_tls_write_and_handle_error();
            self.closing = true;
        }
    }

    fn try_plain_read(&mut self) {
        let Ok(state) = self.tls_conn.process_new_packets() else {
            self.closing = true;
            return;
        };
        if state.plaintext_bytes_to_read() > 0 {
            let mut buf = vec![0; state.plaintext_bytes_to_read()];
            if self.tls_conn.reader().read_exact(&mut buf).is_err() {
                self.closing = true;
                return;
            }
            // Echo mode.
            if self.tls_conn.writer().write_all(&buf).is_err() {
                self.closing = true;
            }
        }
        if state.peer_has_closed() {
            self.closing = true;
        }
    }

    fn do_tls_write_and_handle_error(&mut self) {
        while self.tls_conn.wants_write() {
            match self.tls_conn.write_tls(&mut self.socket) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.closing = true;
                    return;
                }
            }
        }
    }

    fn event_set(&self) -> Interest {
        let rd = self.tls_conn.wants_read();
        let wr = self.tls_conn.wants_write();
        if rd && wr {
            Interest::READABLE | Interest::WRITABLE
        } else if wr {
            Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }
}

/// The server's configuration: `files` as the example's `--certs --key --auth`, client
/// certificates required, on `provider`.
pub fn config(
    files: &crate::tls::TlsFiles,
    provider: crate::tls::Provider,
) -> Result<Arc<rustls::ServerConfig>> {
    crate::tls::server_with(files, provider)
}

/// Binds and prints `listening tls ADDR`, then serves until killed.
pub fn serve(listen: SocketAddr, cfg: Arc<rustls::ServerConfig>) -> Result<()> {
    let mut server = TcpListener::bind(listen).with_context(|| format!("bind {listen}"))?;
    let mut out = io::stdout();
    writeln!(out, "listening tls {}", server.local_addr()?)?;
    out.flush()?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut server, LISTENER, Interest::READABLE)?;
    let mut connections: HashMap<Token, OpenConnection> = HashMap::new();
    let mut next_id = 2usize;
    let mut events = Events::with_capacity(256);
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match server.accept() {
                        Ok((socket, _addr)) => {
                            let tls_conn = ServerConnection::new(Arc::clone(&cfg))?;
                            let token = Token(next_id);
                            next_id += 1;
                            let mut c = OpenConnection {
                                token,
                                closing: false,
                                closed: false,
                                tls_conn,
                                socket: {
                                    let _ = socket.set_nodelay(true);
                                    socket
                                },
                            };
                            let interest = c.event_set();
                            if poll.registry().register(&mut c.socket, token, interest).is_ok() {
                                connections.insert(token, c);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // Out of descriptors and the like: the example gives up the accept loop.
                        Err(_) => break,
                    }
                }
                continue;
            }
            let token = event.token();
            if let Some(c) = connections.get_mut(&token) {
                c.ready(poll.registry(), event.is_readable(), event.is_writable());
                if c.closed {
                    connections.remove(&token);
                }
            }
        }
    }
}
