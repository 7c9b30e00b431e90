//! Progress of long work (imports, exports) on one line of a terminal's stderr; nothing when
//! stderr is not a terminal, so scripts and pipes see only the result.

use std::io::{IsTerminal, Write};

/// A progress line, cleared when dropped.
pub struct Progress {
    label: &'static str,
    shown: bool,
    tty: bool,
}

impl Progress {
    /// A progress line for `label` ("Adding entries"), shown only on a terminal.
    pub fn new(label: &'static str) -> Progress {
        Progress { label, shown: false, tty: std::io::stderr().is_terminal() }
    }

    /// Shows `done` of `total`.
    pub fn update(&mut self, done: usize, total: usize) {
        if !self.tty || total == 0 {
            return;
        }
        let percent = done * 100 / total;
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K{} {done}/{total} ({percent}%)", self.label);
        let _ = stderr.flush();
        self.shown = true;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.shown {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}
