//! A TCP connection as a worker sees it: the socket, its input and output
//! buffers, and what we believe about its readiness.
//!
//! mio is edge-triggered: a readiness event arrives once per transition. So
//! the rule here is the one mio documents: a socket is believed readable
//! (writable) until a read (write) returns `WouldBlock`; only then does the
//! owner wait for the next event.
//!
//! One refinement saves a syscall per request: a *short* read (fewer bytes
//! than asked for) also ends readability. It took everything queued at that
//! instant, and on Linux every later arrival of data queues a new edge
//! (epoll re-arms an edge-triggered item on each wakeup of the socket), so
//! no data can be stranded. The exception is a pending end of stream: a FIN
//! that came with the data raised its edge before the read, so after an
//! event that reported a hang-up the socket is read until `WouldBlock` or
//! EOF as usual.
//!
//! A connection may speak TLS (`tls.rs`): then `fill` decrypts into the
//! same input buffer and `flush` encrypts the same output buffer, so the
//! layers above read and write as they do on a plain connection.

use std::cell::RefCell;
use std::io::{self, Read, Write};

use crate::buffer::Buffer;
use crate::tls::Tls;

/// Size of the per-thread read scratch: one read syscall takes at most this.
const SCRATCH: usize = 64 * 1024;

thread_local! {
    static SCRATCH_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

/// How a read attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// `n` bytes were appended to the input buffer.
    Data(usize),
    /// Nothing to read now; wait for readiness.
    WouldBlock,
    /// The peer closed its side (EOF).
    Closed,
    /// The connection was reset or failed.
    Reset,
}

pub struct Connection {
    pub stream: mio::net::TcpStream,
    pub input: Buffer,
    pub output: Buffer,
    /// Believed readable: try a read before waiting.
    pub readable: bool,
    /// Believed writable: try a write before waiting.
    pub writable: bool,
    /// The peer sent EOF (reads return what is buffered, then "closed").
    pub eof: bool,
    /// A hard error (reset); nothing more can be read or written.
    pub failed: bool,
    /// The last readiness reported a hang-up: read until EOF, not just a
    /// short read.
    pub hangup: bool,
    /// The TLS layer, when the connection speaks TLS.
    pub tls: Option<Box<Tls>>,
}

impl Connection {
    pub fn new(stream: mio::net::TcpStream) -> Connection {
        Connection {
            stream,
            input: Buffer::new(),
            output: Buffer::new(),
            readable: true,
            writable: true,
            eof: false,
            failed: false,
            hangup: false,
            tls: None,
        }
    }

    /// One read syscall into the input buffer, capped at `limit` bytes (so
    /// a reader that wants a bounded line never buffers unbounded input).
    pub fn fill(&mut self, limit: usize) -> Fill {
        if self.failed {
            return Fill::Reset;
        }
        if self.eof {
            return Fill::Closed;
        }
        SCRATCH_BUFFER.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if self.tls.is_some() {
                // Ciphertext comes in records of up to 16 KiB: read what is
                // there, the plaintext stays bounded by what was read.
                return self.fill_tls(&mut scratch[..]);
            }
            let want = limit.clamp(1, SCRATCH);
            match self.read_socket(&mut scratch[..want]) {
                Ok(0) => {
                    self.eof = true;
                    self.readable = false;
                    Fill::Closed
                }
                Ok(n) => {
                    self.input.extend(&scratch[..n]);
                    if n < want && !self.hangup {
                        self.readable = false;
                    }
                    Fill::Data(n)
                }
                Err(fill) => fill,
            }
        })
    }

    /// One read syscall (again if interrupted): the bytes read (0 at end
    /// of file), or how it ended otherwise, with the flags set.
    pub(crate) fn read_socket(&mut self, into: &mut [u8]) -> Result<usize, Fill> {
        loop {
            match self.stream.read(into) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Err(Fill::WouldBlock);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.failed = true;
                    self.readable = false;
                    return Err(Fill::Reset);
                }
            }
        }
    }

    /// Writes as much of the output buffer as the socket takes. Returns the
    /// bytes still unsent, or an error if the connection failed.
    pub fn flush(&mut self) -> io::Result<usize> {
        if self.failed {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if self.tls.is_some() {
            return self.flush_tls();
        }
        while !self.output.is_empty() {
            match self.stream.write(self.output.as_slice()) {
                Ok(0) => {
                    self.failed = true;
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => self.output.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        Ok(self.output.len())
    }
}
