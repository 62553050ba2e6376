//! Where log lines go: stderr, each line whole in one write, with a prefix
//! for a supervised process (`lunet serve --processes`).

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// stderr, with `prefix` before every line.
pub struct Stderr {
    prefix: Option<String>,
}

impl Stderr {
    pub fn new(prefix: Option<String>) -> Stderr {
        Stderr { prefix }
    }
}

/// The writer of one log event: the formatter writes the event's whole
/// line through it, so the prefix goes before the first byte.
pub struct Line<'a> {
    prefix: Option<&'a str>,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut stderr = io::stderr().lock();
        match self.prefix.take() {
            // One write of prefix and line: the lines of processes that
            // share the terminal do not mix.
            Some(prefix) => {
                let mut line = Vec::with_capacity(prefix.len() + bytes.len());
                line.extend_from_slice(prefix.as_bytes());
                line.extend_from_slice(bytes);
                stderr.write_all(&line)?;
                Ok(bytes.len())
            }
            None => stderr.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            prefix: self.prefix.as_deref(),
        }
    }
}
