//! Standard output for the progress lines and the summary. `println!`
//! panics when the reader has gone (`lunet load ... | head`: EPIPE, since
//! Rust ignores SIGPIPE); here a failed write marks the console closed,
//! later output is dropped, and the reporter ends the run quietly.

use std::io::{self, IsTerminal, Write};

pub struct Console {
    terminal: bool,
    closed: bool,
}

impl Console {
    pub fn new() -> Console {
        Console {
            terminal: io::stdout().is_terminal(),
            closed: false,
        }
    }

    /// Stdout is a terminal: progress lines overwrite each other.
    pub fn terminal(&self) -> bool {
        self.terminal
    }

    /// A write failed: nobody reads stdout any more.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Writes `text` as it is and flushes it.
    pub fn write(&mut self, text: &str) {
        if self.closed {
            return;
        }
        let mut out = io::stdout().lock();
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            self.closed = true;
        }
    }

    /// Writes `text` and a newline.
    pub fn line(&mut self, text: &str) {
        self.write(&format!("{text}\n"));
    }
}
