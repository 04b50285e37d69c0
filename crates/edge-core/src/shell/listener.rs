//! Sockets, set up with socket2: one listener per worker per side on the same address (SO_REUSEADDR +
//! SO_REUSEPORT, so the kernel spreads accepted connections across workers; nonblocking; backlog
//! 1024), binding port 0 by letting the first listener pick the port and binding the others to it; and
//! the options every accepted or connected stream gets (TCP_NODELAY, TCP keepalive). The event loop
//! that owns these sockets is `worker.rs`.
//!
//! SO_REUSEPORT would also let a *second* `sipedge run` join the group silently and take half the
//! traffic. Before a group binds, [`ensure_free`] binds the address once without SO_REUSEPORT: that
//! fails while any other socket listens there (whatever its options), so a second edge, or any other
//! program, is refused by name. The probe and the group's bind are two steps: two edges started in
//! the same millisecond could both pass; anything started later is caught.

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

/// Fails when another socket already listens on `addr` (port 0 is always free). The error names
/// the listener (`role`: internal, external, metrics) and the address.
pub fn ensure_free(role: &str, addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| named(role, addr, e))?;
    if addr.is_ipv6() {
        probe.set_only_v6(true).map_err(|e| named(role, addr, e))?;
    }
    // SO_REUSEADDR keeps a restart from tripping over its own TIME_WAIT connections; it does not let
    // two listening sockets share the address. No SO_REUSEPORT: that is exactly what would.
    probe.set_reuse_address(true).map_err(|e| named(role, addr, e))?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{role} listener {addr}: address already in use by another process (another sipedge? \
                 two edges on one port would silently share its traffic); stop it or change {role}.listen"
            ),
        )),
        Err(e) => Err(named(role, addr, e)),
    }
}

/// An I/O error on the `role` listener at `addr`, saying which.
fn named(role: &str, addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{role} listener {addr}: {e}"))
}

/// `count` listeners on one address for the `role` listener, after [`ensure_free`]. With port 0 the
/// first one picks the port and the others join it. Returns the listeners and the address actually
/// bound; every error names the listener and the address.
pub fn bind_group(role: &str, addr: SocketAddr, count: usize) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    ensure_free(role, addr)?;
    bind_group_unchecked(addr, count).map_err(|e| named(role, addr, e))
}

fn bind_group_unchecked(addr: SocketAddr, count: usize) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
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
        let (listeners, bound) =
            bind_group("internal", SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), 2).unwrap();
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
        let Ok((listeners, bound)) = bind_group("external", SocketAddr::from((Ipv6Addr::LOCALHOST, 0)), 2)
        else {
            return; // no IPv6 on this host
        };
        assert_eq!(listeners.len(), 2);
        assert!(bound.is_ipv6());
    }

    /// Issue 8.4: a group already listening with SO_REUSEPORT (another edge) is detected, by name.
    #[test]
    fn a_second_group_on_a_held_address_is_refused_by_name() {
        let (_first, bound) = bind_group("internal", SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), 2).unwrap();
        // Without the probe the kernel lets the second group in.
        assert!(bind_group_unchecked(bound, 1).is_ok());
        let e = bind_group("external", bound, 2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("external listener {bound}: address already in use")),
            "{text}"
        );
        // A plain listener of another program, the same.
        let plain = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = plain.local_addr().unwrap();
        assert!(ensure_free("metrics", addr)
            .unwrap_err()
            .to_string()
            .contains("metrics listener"));
        drop(plain);
        assert!(ensure_free("metrics", addr).is_ok(), "free again once closed");
    }

    #[test]
    fn a_taken_port_without_reuse_is_an_error() {
        let plain = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = plain.local_addr().unwrap();
        assert!(bind(addr).is_err());
    }
}
