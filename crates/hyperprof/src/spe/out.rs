//! Output that remembers its first write error, so producers can stop early
//! (for example when the reader of a pipe goes away) and report it once.

use std::io::Write;

/// A writer that latches its first error.
pub struct LatchedWriter<W: Write> {
    out: W,
    error: Option<std::io::Error>,
}

impl<W: Write> LatchedWriter<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        LatchedWriter { out, error: None }
    }

    /// Writes `bytes` unless an earlier write failed.
    pub fn write(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(bytes) {
                self.error = Some(e);
            }
        }
    }

    /// Whether a write has failed: stop producing.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// Flushes and reports the first error.
    pub fn finish(mut self) -> std::io::Result<()> {
        match self.error.take() {
            Some(e) => Err(e),
            None => self.out.flush(),
        }
    }
}
