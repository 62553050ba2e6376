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
    if addr.rsplit_once(':').is_some_and(|(host, _)| host.parse::<std::net::IpAddr>().is_err()) {
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

/// A non-blocking listener with SO_REUSEADDR and the given backlog.
pub fn bind_listener(addr: SocketAddr, backlog: i32) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// Starts a non-blocking connect; completion is signalled by writability.
pub fn connect(addr: SocketAddr) -> io::Result<mio::net::TcpStream> {
    let stream = mio::net::TcpStream::connect(addr)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
