//! The log's behaviour seen from outside: what reaches the output, when a
//! flood is limited, and that a stuck output never stops the caller.

use std::io::Write;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::repeat::{BURST, WINDOW};
use super::timestamp::civil_from_days;
use super::writer::QUEUE;
use super::{lock, log, Level, LogOutput, Logger};

#[test]
fn civil_dates() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(20_781), (2026, 11, 24));
}

/// A writer whose bytes a test reads, and which blocks while `gate`
/// holds `true`.
#[derive(Clone, Default)]
struct Capture {
    bytes: Arc<Mutex<Vec<u8>>>,
    gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let (closed, cv) = &*self.gate;
        let mut closed = lock(closed);
        while *closed {
            closed = cv.wait(closed).unwrap_or_else(|e| e.into_inner());
        }
        lock(&self.bytes).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.bytes)).into_owned()
    }
    fn block(&self, yes: bool) {
        *lock(&self.gate.0) = yes;
        self.gate.1.notify_all();
    }
}

#[test]
fn repeated_warnings_are_limited_and_counted() {
    let out = Capture::default();
    let logger = Logger::spawn(Level::Warning, Some(LogOutput::new(out.clone())));
    for i in 0..1000 {
        log!(logger, Level::Warning, "bad request {i}");
    }
    log!(logger, Level::Error, "another place");
    logger.flush();
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    // The first few, the other call site, and one line for the rest.
    assert_eq!(lines.len(), BURST as usize + 2, "{text}");
    assert!(lines[0].ends_with("bad request 0"), "{text}");
    assert!(lines.iter().any(|l| l.ends_with("another place")), "{text}");
    let summary = lines.last().unwrap();
    assert!(
        summary.starts_with('W')
            && summary.contains(&format!("{} more like this", 1000 - BURST))
            && summary.ends_with("bad request 999"),
        "{text}"
    );
    // Info and below are not limited (`--verbose` shows every
    // allocation).
    let out = Capture::default();
    let logger = Logger::spawn(Level::Info, Some(LogOutput::new(out.clone())));
    for i in 0..100 {
        log!(logger, Level::Info, "allocated {i}");
    }
    logger.flush();
    assert_eq!(out.text().lines().count(), 100);
}

#[test]
fn a_new_window_writes_again() {
    let out = Capture::default();
    let logger = Logger::spawn(Level::Warning, Some(LogOutput::new(out.clone())));
    let warn = |i: u64| log!(logger, Level::Warning, "flood {i}");
    for i in 0..50 {
        warn(i);
    }
    std::thread::sleep(WINDOW + Duration::from_millis(100));
    warn(50);
    logger.flush();
    let text = out.text();
    let more = format!("{} more like this", 50 - BURST);
    assert!(text.contains(&more), "{text}");
    assert!(text.lines().last().unwrap().ends_with("flood 50"), "{text}");
}

#[test]
fn a_blocked_output_never_blocks_the_caller() {
    let out = Capture::default();
    out.block(true);
    let logger = Logger::spawn(Level::Info, Some(LogOutput::new(out.clone())));
    let (tx, rx) = mpsc::channel();
    let l = logger.clone();
    std::thread::spawn(move || {
        for i in 0..5 * QUEUE {
            log!(l, Level::Info, "line {i}");
        }
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "logging blocked on a blocked output"
    );
    out.block(false);
    // Lines then go out, with how many were dropped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !out.text().contains("log lines dropped") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = out.text();
    assert!(text.contains("log lines dropped"), "{}", text.len());
    assert!(text.contains("line 0\n"));
}

#[test]
fn off_writes_nothing() {
    let out = Capture::default();
    let logger = Logger::spawn(Level::Off, Some(LogOutput::new(out.clone())));
    assert!(!logger.enabled(Level::Off) && !logger.enabled(Level::Error));
    log!(logger, Level::Error, "never");
    logger.flush();
    drop(logger);
    assert_eq!(out.text(), "");
}
