//! The sink: a UAS on one `mio` thread that answers every request with 200 OK (`sip::answer`),
//! pipelined — each connection's answers of one read leave in one write, except those whose request
//! asks to be answered alone (`sip::ANSWER_EACH_LINE`, `run --bursts`): each of those is a write. TLS (client certificates
//! required from `--ca`) or plain TCP. Prints `listening sip+tls ADDR` (or `sip+tcp`) on stdout
//! once bound, so callers can bind port 0; runs until killed.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use rustls::ServerConfig;

use crate::sip::answer;
use crate::stream::{scratch, Stream};

const LISTENER: Token = Token(usize::MAX);

/// Binds the listener and prints its `listening` line.
pub fn bind(listen: SocketAddr, tls: bool) -> Result<TcpListener> {
    let listener = TcpListener::bind(listen).with_context(|| format!("bind {listen}"))?;
    let kind = if tls { "sip+tls" } else { "sip+tcp" };
    let mut out = std::io::stdout();
    writeln!(out, "listening {kind} {}", listener.local_addr()?)?;
    out.flush()?;
    Ok(listener)
}

/// Serves on `listener` until the process is killed.
pub fn serve(mut listener: TcpListener, tls: Option<Arc<ServerConfig>>) -> Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Vec<Option<Stream>> = Vec::new();
    let mut events = Events::with_capacity(256);
    let mut rd = scratch();
    let mut answers = Vec::with_capacity(64 * 1024);
    // Where each answer that must leave alone ends in `answers`.
    let mut ends: Vec<usize> = Vec::with_capacity(64);
    loop {
        poll.poll(&mut events, None)?;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok((sock, _)) = listener.accept() {
                    let _ = sock.set_nodelay(true);
                    let session = match &tls {
                        Some(cfg) => Some(rustls::Connection::Server(rustls::ServerConnection::new(
                            Arc::clone(cfg),
                        )?)),
                        None => None,
                    };
                    let slot = conns.iter().position(Option::is_none).unwrap_or(conns.len());
                    let mut stream = Stream::new(sock, session);
                    stream.register(poll.registry(), Token(slot))?;
                    match conns.get_mut(slot) {
                        Some(s) => *s = Some(stream),
                        None => conns.push(Some(stream)),
                    }
                }
                continue;
            }
            let token = ev.token();
            let Some(entry) = conns.get_mut(token.0) else {
                continue;
            };
            let Some(c) = entry.as_mut() else { continue };
            let open = c.read(&mut rd).unwrap_or(false);
            answers.clear();
            ends.clear();
            let framed = c.frames(|msg| match answer(msg, &mut answers) {
                None => false,
                // Asked to answer alone: this answer ends a write of its own.
                Some(each) => {
                    if each {
                        ends.push(answers.len());
                    }
                    true
                }
            });
            let ok = framed && write_answers(c, &answers, &ends, poll.registry(), token).is_ok();
            if !open || !ok {
                let _ = poll.registry().deregister(&mut c.sock);
                *entry = None;
            }
        }
    }
}

/// Writes `answers`: a piece ending at each of `ends` in a write (a TLS record and a syscall) of its
/// own, as a far end that answers each request when it is handled; the rest, if any, in one.
fn write_answers(
    c: &mut Stream,
    answers: &[u8],
    ends: &[usize],
    reg: &mio::Registry,
    token: Token,
) -> std::io::Result<()> {
    let mut from = 0;
    for &end in ends {
        c.queue(answers.get(from..end).unwrap_or_default())?;
        c.flush(reg, token)?;
        from = end;
    }
    if from < answers.len() {
        c.queue(answers.get(from..).unwrap_or_default())?;
    }
    c.flush(reg, token)
}

/// For the generator's and the pool's tests: the test PKI written into `dir`, a TLS sink serving on
/// a thread (as the edge's partner `edge.partner.test`), and a client config for `fe1.corp.test`.
#[cfg(test)]
pub fn tls_sink_for_tests(dir: &std::path::Path) -> (SocketAddr, Arc<rustls::ClientConfig>) {
    use crate::tls::TlsFiles;
    let files = |name: &str, ca: &str| TlsFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        ca: dir.join(ca),
    };
    crate::pki::generate(dir).unwrap();
    let server = crate::tls::server(&files("edge.partner.test", "internal-ca.pem")).unwrap();
    let client = crate::tls::client(&files("fe1.corp.test", "partner-ca.pem")).unwrap();
    let listener = bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || serve(listener, Some(server)));
    (addr, client)
}
