//! Socket set-up: address parsing, listeners, outbound connects.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

/// Parses "ip:port", "[v6]:port" or "localhost:port". Other host names need
/// DNS, which may block: resolve them on the lane first.
pub fn parse_addr(addr: &str) -> io::Result<SocketAddr> {
    if let Ok(parsed) = addr.parse::<SocketAddr>() {
        return Ok(parsed);
    }
    if let Some(port) = addr.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    if addr
        .rsplit_once(':')
        .is_some_and(|(host, _)| host.parse::<std::net::IpAddr>().is_err())
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{addr}' is not an IP address and port (names need DNS: resolve them first)"),
        ));
    }
    // Let the standard library produce its own message for the rest.
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("bad address '{addr}'")))
}

/// A non-blocking listener with SO_REUSEADDR and the given backlog; with
/// `reuse_port`, SO_REUSEPORT too: several processes (`lunet serve
/// --processes`) each bind a socket of their own to one address, and the
/// kernel spreads new connections over them.
pub fn bind_listener(
    addr: SocketAddr,
    backlog: i32,
    reuse_port: bool,
) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// Starts a non-blocking connect; completion is signalled by writability.
pub fn connect(addr: SocketAddr) -> io::Result<mio::net::TcpStream> {
    connect_from(addr, None)
}

/// Like [`connect`], from a chosen local address: the one connect-with-bind
/// of lunet (the connector uses it too). The port is picked at connect
/// time (`IP_BIND_ADDRESS_NO_PORT`), so many local addresses can each reach
/// 64k connections to one server. Errors say which step failed.
pub fn connect_from(
    addr: SocketAddr,
    local: Option<std::net::IpAddr>,
) -> io::Result<mio::net::TcpStream> {
    let Some(local) = local else {
        let stream = mio::net::TcpStream::connect(addr)?;
        // Latency only: a socket that refuses TCP_NODELAY still works.
        let _ = stream.set_nodelay(true);
        return Ok(stream);
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    bind_address_no_port(&socket).map_err(|e| context(e, "IP_BIND_ADDRESS_NO_PORT"))?;
    socket
        .bind(&SocketAddr::new(local, 0).into())
        .map_err(|e| context(e, &format!("bind {local}")))?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(socket.into()))
}

/// Defers the choice of the local port from `bind` to `connect`, where the
/// kernel can pick one by the whole 4-tuple.
fn bind_address_no_port(socket: &Socket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a valid int option value
    // and its size.
    let result = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The same error, its message prefixed with the step that failed.
fn context(error: io::Error, step: &str) -> io::Error {
    io::Error::new(error.kind(), format!("{step}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_from_binds_the_local_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let local: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        let _stream = connect_from(target, Some(local)).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), local);
    }

    #[test]
    fn connect_from_an_address_not_on_this_machine_says_bind_failed() {
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // TEST-NET-1 (RFC 5737): never a local address.
        let local: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let error = connect_from(target, Some(local)).unwrap_err();
        assert!(error.to_string().starts_with("bind 192.0.2.1: "), "{error}");
    }

    #[test]
    fn names_are_refused_with_a_hint_and_ips_parse() {
        let error = parse_addr("example.com:80").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("DNS"), "{error}");
        assert_eq!(
            parse_addr("localhost:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
    }
}
