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
    connect_from(addr, None)
}

/// Like [`connect`], from a chosen local address (port picked at connect
/// time, so many local addresses can each reach 64k connections to one
/// server).
pub fn connect_from(
    addr: SocketAddr,
    local: Option<std::net::IpAddr>,
) -> io::Result<mio::net::TcpStream> {
    let Some(local) = local else {
        let stream = mio::net::TcpStream::connect(addr)?;
        let _ = stream.set_nodelay(true);
        return Ok(stream);
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    // SAFETY: setsockopt on a socket we own, with a valid int option value.
    unsafe {
        let one: libc::c_int = 1;
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    socket.bind(&SocketAddr::new(local, 0).into())?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(socket.into()))
}
