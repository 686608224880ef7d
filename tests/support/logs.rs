#![allow(dead_code)]

//! A server's log, read back by the test.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// A writer for a server's log (`ServerConfig::log_to`) that a test reads
/// back: a server whose errors are the point of the test logs here, not on
/// the console where they would read as failures.
#[derive(Clone, Default)]
pub struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuf {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits until a line contains `needle`.
    pub fn wait_for(&self, needle: &str) -> bool {
        super::eventually(|| self.text().contains(needle))
    }
}
