//! Sockets, set up with socket2: one listener per worker per side on the same address (SO_REUSEADDR +
//! SO_REUSEPORT, so the kernel spreads accepted connections across workers; nonblocking; backlog
//! 1024), binding port 0 by letting the first listener pick the port and binding the others to it; and
//! the options every accepted or connected stream gets (TCP_NODELAY, TCP keepalive). The event loop
//! that owns these sockets is `worker.rs`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

/// Pending connections the kernel queues per listener.
pub const BACKLOG: i32 = 1024;

/// TCP keepalive: first probe after this much silence, then every `TCP_KEEPALIVE_INTERVAL`. Catches
/// dead peers under the SIP layer's own keepalive, and on links nobody pings (inbound ones).
const TCP_KEEPALIVE_TIME: Duration = Duration::from_secs(60);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const TCP_KEEPALIVE_RETRIES: u32 = 5;

/// One nonblocking listener on `addr` that shares the address with the others of its group.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// `count` listeners on one address. With port 0 the first one picks the port and the others join
/// it. Returns the listeners and the address actually bound.
pub fn bind_group(addr: SocketAddr, count: usize) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let first = bind(addr)?;
    let bound = first.local_addr()?;
    let mut listeners = Vec::with_capacity(count.max(1));
    listeners.push(first);
    for _ in 1..count {
        listeners.push(bind(bound)?);
    }
    Ok((listeners, bound))
}

/// Options for every accepted or connected stream: no Nagle (SIP messages are small and latency
/// matters), TCP keepalive.
pub fn tune(stream: &TcpStream) -> io::Result<()> {
    let sock = SockRef::from(stream);
    sock.set_tcp_nodelay(true)?;
    let keepalive = TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE_TIME)
        .with_interval(TCP_KEEPALIVE_INTERVAL)
        .with_retries(TCP_KEEPALIVE_RETRIES);
    sock.set_tcp_keepalive(&keepalive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn port_zero_is_shared_by_the_group() {
        let (listeners, bound) = bind_group(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), 2).unwrap();
        assert_eq!(listeners.len(), 2);
        assert_ne!(bound.port(), 0);
        for l in &listeners {
            assert_eq!(l.local_addr().unwrap(), bound);
        }
        // Both accept work: connect a few times; every connection lands on one of the two.
        let mut streams = Vec::new();
        for _ in 0..4 {
            streams.push(std::net::TcpStream::connect(bound).unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut accepted = 0;
        for l in &listeners {
            while let Ok((s, _)) = l.accept() {
                tune(&s).unwrap();
                assert!(SockRef::from(&s).tcp_nodelay().unwrap());
                assert!(SockRef::from(&s).keepalive().unwrap());
                accepted += 1;
            }
        }
        assert_eq!(accepted, 4);
    }

    #[test]
    fn ipv6_loopback_when_available() {
        let Ok((listeners, bound)) = bind_group(SocketAddr::from((Ipv6Addr::LOCALHOST, 0)), 2) else {
            return; // no IPv6 on this host
        };
        assert_eq!(listeners.len(), 2);
        assert!(bound.is_ipv6());
    }

    #[test]
    fn a_taken_port_without_reuse_is_an_error() {
        let plain = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = plain.local_addr().unwrap();
        assert!(bind(addr).is_err());
    }
}
