//! raw-echo-server: the practical limit for line echo on this machine.
//!
//! One thread, one `mio::Poll`, no framework: what lunet is compared against.
//! The contract it keeps is the same as `server-scripts/echo.lua`: every
//! complete line (ending in `\n`) that arrives is written back unchanged;
//! a partial line waits for the rest.
//!
//! mio is edge-triggered, so each readiness event is drained:
//! 1. flush pending output until it is empty or the socket says WouldBlock;
//! 2. read one chunk, move the complete lines in it to the output, and go to 1;
//! 3. stop when a read says WouldBlock or returns less than asked for (for a
//!    stream socket that also means the queue is empty, epoll(7); it saves
//!    one syscall per request), or when
//!    the output is over `OUTPUT_LIMIT` (a peer that does not read): reading
//!    stops until the writable edge, and since every event starts at step 1
//!    and then reads again, no readable edge is lost.
//!
//! A peer that closes gets its complete lines flushed, then the connection is
//! closed. A line longer than `LINE_LIMIT` closes the connection.

use lunet_bench::cli::Args;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;

const USAGE: &str = "\
usage: raw-echo-server --listen 127.0.0.1:PORT

A single-threaded mio line-echo server (the practical limit lunet is compared
against). Port 0 picks a free port; the bound address is printed to stderr as
`listening on ADDR`.";

/// Connection `i` uses `Token(i + 1)`.
const LISTENER: Token = Token(0);
/// A line may not grow past this without a newline; the connection is closed.
const LINE_LIMIT: usize = 1 << 20;
/// Above this much unsent output we stop reading until the peer catches up.
const OUTPUT_LIMIT: usize = 1 << 20;
/// One read's worth; large enough that a pipelined burst is one syscall.
const READ_CHUNK: usize = 64 * 1024;
/// Events handled per poll; more ready sockets simply wait for the next poll.
const EVENT_CAPACITY: usize = 1024;

struct Connection {
    stream: TcpStream,
    /// The start of a line whose newline has not arrived yet.
    partial: Vec<u8>,
    /// Complete lines not yet written, from `written` on.
    output: Vec<u8>,
    written: usize,
    peer_closed: bool,
}

enum Next {
    Keep,
    Close,
}

impl Connection {
    fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            partial: Vec::new(),
            output: Vec::new(),
            written: 0,
            peer_closed: false,
        }
    }

    /// Drains this connection's readiness; see the module header.
    fn on_ready(&mut self, chunk: &mut [u8]) -> io::Result<Next> {
        let mut drained = false;
        loop {
            let flushed = self.flush()?;
            if self.peer_closed {
                return Ok(if flushed { Next::Close } else { Next::Keep });
            }
            if drained || (!flushed && self.output.len() - self.written >= OUTPUT_LIMIT) {
                return Ok(Next::Keep);
            }
            match self.stream.read(chunk) {
                Ok(0) => self.peer_closed = true,
                Ok(length) => {
                    drained = length < chunk.len();
                    self.take_input(&chunk[..length])?;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(Next::Keep),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Moves the complete lines of `data` (with any partial line before them)
    /// to the output and keeps the rest as the new partial line.
    fn take_input(&mut self, data: &[u8]) -> io::Result<()> {
        match data.iter().rposition(|&byte| byte == b'\n') {
            Some(last_newline) => {
                self.output.append(&mut self.partial);
                self.output.extend_from_slice(&data[..=last_newline]);
                self.partial.extend_from_slice(&data[last_newline + 1..]);
            }
            None => self.partial.extend_from_slice(data),
        }
        if self.partial.len() > LINE_LIMIT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "line longer than the limit",
            ));
        }
        Ok(())
    }

    /// Writes pending output; true when nothing is left.
    fn flush(&mut self) -> io::Result<bool> {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(length) => self.written += length,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        self.output.clear();
        self.written = 0;
        Ok(true)
    }
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    /// Indexed by token; `free` holds the indices of empty slots.
    connections: Vec<Option<Connection>>,
    free: Vec<usize>,
    chunk: Vec<u8>,
}

impl Server {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENT_CAPACITY);
        loop {
            if let Err(error) = self.poll.poll(&mut events, None) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    Token(token) => self.serve(token - 1),
                }
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(error) = self.add(stream) {
                        eprintln!("raw-echo-server: cannot register a connection: {error}");
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // EMFILE and friends: the pending connection stays queued;
                    // the next accept edge comes when another one arrives.
                    eprintln!("raw-echo-server: accept: {error}");
                    return;
                }
            }
        }
    }

    fn add(&mut self, mut stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let index = self.free.pop().unwrap_or_else(|| {
            self.connections.push(None);
            self.connections.len() - 1
        });
        if let Err(error) = self.poll.registry().register(
            &mut stream,
            Token(index + 1),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.free.push(index);
            return Err(error);
        }
        self.connections[index] = Some(Connection::new(stream));
        Ok(())
    }

    fn serve(&mut self, index: usize) {
        let Some(connection) = self.connections.get_mut(index).and_then(Option::as_mut) else {
            return; // closed earlier in this batch of events
        };
        let close = match connection.on_ready(&mut self.chunk) {
            Ok(Next::Keep) => false,
            Ok(Next::Close) => true,
            Err(error) => {
                if error.kind() != io::ErrorKind::ConnectionReset {
                    eprintln!("raw-echo-server: connection {index}: {error}");
                }
                true
            }
        };
        if close {
            if let Some(mut connection) = self.connections[index].take() {
                // Deregistering cannot usefully fail here: the socket closes next.
                let _ = self.poll.registry().deregister(&mut connection.stream);
            }
            self.free.push(index);
        }
    }
}

fn main() {
    let args = Args::from_env(USAGE, &[&["--listen", "-l"]]);
    let listen = args.required("--listen");
    let address: SocketAddr = listen.parse().unwrap_or_else(|error| {
        lunet_bench::cli::fail(USAGE, &format!("bad --listen `{listen}`: {error}"))
    });
    if let Err(error) = serve(address) {
        eprintln!("raw-echo-server: {error}");
        std::process::exit(1);
    }
}

fn serve(address: SocketAddr) -> io::Result<()> {
    let poll = Poll::new()?;
    let mut listener = TcpListener::bind(address)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!("listening on {}", listener.local_addr()?);
    let mut server = Server {
        poll,
        listener,
        connections: Vec::new(),
        free: Vec::new(),
        chunk: vec![0; READ_CHUNK],
    };
    server.run()
}
