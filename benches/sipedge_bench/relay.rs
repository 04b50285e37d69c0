//! The relay: the floor of a TLS-terminating proxy on this machine. One `mio` thread that, for each
//! accepted connection, dials `--to` and copies plaintext both ways — no framing, parsing, routing
//! or transaction state. What it costs per transaction is what any proxy of this shape cannot avoid:
//! two TLS legs, a read and a write on each side per transaction, and, on loopback, the receiver's
//! TCP delivery charged to the writer. `benches/compare.sh` runs it as the target `relay`, so the
//! edge's cost can be read against it in the same run.
//!
//! Like the sink, what one turn read leaves in one write per connection (`Stream::flush` once per
//! turn for each connection written to).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Poll, Token};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;

use crate::stream::{scratch, Stream};

const LISTENER: Token = Token(usize::MAX);

/// Where the relay forwards, and as whom.
pub struct Upstream {
    pub to: SocketAddr,
    pub tls: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

/// An accepted connection (even token) and the one dialled for it (odd token).
struct Pair {
    down: Stream,
    up: Stream,
}

impl Pair {
    fn side(&mut self, up: bool) -> (&mut Stream, &mut Stream) {
        if up {
            (&mut self.up, &mut self.down)
        } else {
            (&mut self.down, &mut self.up)
        }
    }
}

/// Serves on `listener` until the process is killed.
pub fn serve(mut listener: TcpListener, server: Arc<ServerConfig>, upstream: Upstream) -> Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, mio::Interest::READABLE)?;
    let mut pairs: Vec<Option<Pair>> = Vec::new();
    let mut events = Events::with_capacity(256);
    let mut rd = scratch();
    let mut dirty: Vec<usize> = Vec::with_capacity(64);
    loop {
        poll.poll(&mut events, None)?;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok((sock, _)) = listener.accept() {
                    let slot = pairs.iter().position(Option::is_none).unwrap_or(pairs.len());
                    // One connection that cannot be relayed (the upstream refuses, say) is dropped;
                    // the relay goes on serving the others.
                    let pair = match open(sock, &server, &upstream, &poll, slot) {
                        Ok(pair) => pair,
                        Err(e) => {
                            eprintln!("relay: connection {slot} dropped: {e:#}");
                            continue;
                        }
                    };
                    match pairs.get_mut(slot) {
                        Some(p) => *p = Some(pair),
                        None => pairs.push(Some(pair)),
                    }
                }
                continue;
            }
            let (slot, up) = (ev.token().0 / 2, ev.token().0 % 2 == 1);
            let Some(Some(pair)) = pairs.get_mut(slot) else {
                continue;
            };
            let (from, to) = pair.side(up);
            let open = from.read(&mut rd).unwrap_or(false);
            let moved = from.input.is_empty() || to.queue(&from.input).is_ok();
            from.input.clear();
            if !open || !moved {
                close(&mut pairs, slot, &poll);
                continue;
            }
            if !dirty.contains(&slot) {
                dirty.push(slot);
            }
        }
        for slot in dirty.drain(..) {
            let Some(Some(pair)) = pairs.get_mut(slot) else {
                continue;
            };
            let reg = poll.registry();
            let down = pair.down.flush(reg, Token(2 * slot));
            let up = pair.up.flush(reg, Token(2 * slot + 1));
            if down.is_err() || up.is_err() {
                close(&mut pairs, slot, &poll);
            }
        }
    }
}

fn open(
    sock: TcpStream,
    server: &Arc<ServerConfig>,
    upstream: &Upstream,
    poll: &Poll,
    slot: usize,
) -> Result<Pair> {
    let _ = sock.set_nodelay(true);
    let down_tls = rustls::ServerConnection::new(Arc::clone(server))?;
    let mut down = Stream::new(sock, Some(rustls::Connection::Server(down_tls)));
    let up_sock = TcpStream::connect(upstream.to)?;
    let _ = up_sock.set_nodelay(true);
    let up_tls = rustls::ClientConnection::new(Arc::clone(&upstream.tls), upstream.server_name.clone())?;
    let mut up = Stream::new(up_sock, Some(rustls::Connection::Client(up_tls)));
    down.register(poll.registry(), Token(2 * slot))?;
    up.register(poll.registry(), Token(2 * slot + 1))?;
    Ok(Pair { down, up })
}

fn close(pairs: &mut [Option<Pair>], slot: usize, poll: &Poll) {
    if let Some(entry) = pairs.get_mut(slot) {
        if let Some(mut pair) = entry.take() {
            let _ = poll.registry().deregister(&mut pair.down.sock);
            let _ = poll.registry().deregister(&mut pair.up.sock);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::tls::TlsFiles;

    /// A transaction through the relay: the generator's TLS client → relay → the TLS sink, and the
    /// 200 OK back, byte for byte what the sink wrote.
    #[test]
    fn a_request_and_its_answer_cross_the_relay() {
        let dir = std::env::temp_dir().join(format!("sipedge-bench-relay-{}", std::process::id()));
        let (sink, _) = crate::sink::tls_sink_for_tests(&dir);
        let files = |name: &str, ca: &str| TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            ca: dir.join(ca),
        };
        let server = crate::tls::server(&files("edge-int.corp.test", "internal-ca.pem")).unwrap();
        let upstream = Upstream {
            to: sink,
            tls: crate::tls::client(&files("edge.corp.test", "partner-ca.pem")).unwrap(),
            server_name: ServerName::try_from("edge.partner.test").unwrap(),
        };
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(listener, server, upstream));

        let client = crate::tls::client(&files("fe1.corp.test", "internal-ca.pem")).unwrap();
        let name = ServerName::try_from("edge-int.corp.test").unwrap();
        let mut conn = rustls::ClientConnection::new(client, name).unwrap();
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        let request = "MESSAGE sip:bob@partner.test SIP/2.0\r\n\
            Via: SIP/2.0/TLS fe1.corp.test;branch=z9hG4bK-relay-1\r\n\
            Max-Forwards: 70\r\nFrom: <sip:alice@corp.test>;tag=a\r\nTo: <sip:bob@partner.test>\r\n\
            Call-ID: relay-1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
        tls.write_all(request.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tls.read(&mut buf).unwrap();
            assert!(n > 0, "the relay closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
        assert!(text.contains("branch=z9hG4bK-relay-1"), "{text}");
        assert!(text.contains("Call-ID: relay-1"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
