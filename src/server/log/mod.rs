//! The portserver's log: one line per event, in the format of Python's
//! portserver (`I1124 19:37:07.123 PID portserver] message`). Lines below
//! the level are never formatted.
//!
//! A server's lines go through a bounded queue to a writer thread, so a log
//! that cannot be written (stderr a pipe nobody reads, a stuck terminal)
//! never holds up a thread that hands out ports: when the queue is full,
//! lines are dropped and counted, and a line says how many once the output
//! moves again. Warnings and errors from one place in the code are limited
//! to a few a second; the rest are counted and summed up in one line.

mod repeat;
mod summary;
#[cfg(test)]
mod tests;
mod timestamp;
mod writer;

use crate::sync::lock;
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use repeat::{Repeats, Verdict};
pub(crate) use summary::stats_summary;
use timestamp::timestamp;
pub(crate) use writer::LogOutput;
use writer::Queue;

/// How much the server logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Nothing at all.
    Off,
    /// Failures only.
    Error,
    /// And problems the server works around (the default of a server built
    /// in code: quiet unless something is wrong).
    Warning,
    /// And start, stop and `Serving on ADDR` (the daemon's default).
    Info,
    /// And every allocation and denial, with pid and reason (`--verbose`).
    Verbose,
    /// And every probe and reclaim (`--debug`).
    Debug,
}

impl Level {
    fn letter(self) -> char {
        match self {
            Level::Off | Level::Error => 'E',
            Level::Warning => 'W',
            Level::Info | Level::Verbose => 'I',
            Level::Debug => 'D',
        }
    }
}

/// Writes log lines at or above a level, to stderr or the writer given to
/// [`ServerConfig::log_to`](crate::server::ServerConfig::log_to). Clones
/// share one output, queue and rate limit.
#[derive(Clone)]
pub struct Logger {
    inner: Arc<Inner>,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger")
            .field("level", &self.inner.level)
            .finish_non_exhaustive()
    }
}

struct Inner {
    level: Level,
    sink: Sink,
    repeats: Arc<Mutex<Repeats>>,
}

enum Sink {
    /// Written by the calling thread (a tool's few lines before it exits).
    Direct(Option<LogOutput>),
    /// Written by a writer thread.
    Queue(Queue),
}

fn format_line(level: Level, args: impl fmt::Display) -> String {
    format!(
        "{}{} {} portserver] {}\n",
        level.letter(),
        timestamp(),
        std::process::id(),
        args
    )
}

impl Logger {
    /// A logger that writes lines of `level` and more important to stderr,
    /// from the calling thread.
    pub fn new(level: Level) -> Self {
        Logger::with_sink(level, Sink::Direct(None), Arc::default())
    }

    /// A logger whose lines a thread of its own writes to `output` (stderr
    /// when `None`), so that a blocked output never blocks the caller.
    /// Falls back to writing from the caller if no thread can be started.
    pub(crate) fn spawn(level: Level, output: Option<LogOutput>) -> Self {
        if level == Level::Off {
            return Logger::with_sink(level, Sink::Direct(output), Arc::default());
        }
        let repeats = Arc::default();
        let sink = match Queue::start(output.clone(), Arc::clone(&repeats)) {
            Ok(queue) => Sink::Queue(queue),
            Err(_) => Sink::Direct(output),
        };
        Logger::with_sink(level, sink, repeats)
    }

    fn with_sink(level: Level, sink: Sink, repeats: Arc<Mutex<Repeats>>) -> Self {
        Logger {
            inner: Arc::new(Inner {
                level,
                sink,
                repeats,
            }),
        }
    }

    /// Whether lines of `level` are written.
    #[inline]
    pub fn enabled(&self, level: Level) -> bool {
        level != Level::Off && level <= self.inner.level
    }

    /// Writes one line (callers check [`Logger::enabled`] first through the
    /// `log!` macro, so a disabled line costs a comparison).
    pub fn write(&self, level: Level, args: fmt::Arguments<'_>) {
        self.emit(format_line(level, args));
    }

    /// As [`Logger::write`], rate-limiting warnings and errors by `key`
    /// (the call site).
    pub(crate) fn write_at(&self, level: Level, key: &'static str, args: fmt::Arguments<'_>) {
        if level > Level::Warning {
            return self.write(level, args);
        }
        let verdict = lock(&self.inner.repeats).admit(key, level, args, Instant::now());
        match verdict {
            Verdict::Suppress => {}
            Verdict::Write(summary) => {
                if let Some((level, text)) = summary {
                    self.emit(format_line(level, text));
                }
                self.write(level, args);
            }
        }
    }

    fn emit(&self, line: String) {
        match &self.inner.sink {
            Sink::Direct(None) => {
                // One write per line keeps lines whole between threads.
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::Direct(Some(out)) => out.write_line(line.as_bytes()),
            Sink::Queue(queue) => queue.send(line),
        }
    }

    /// Waits (at most a second) until the lines logged so far are written,
    /// with the counts of lines dropped or suppressed.
    #[cfg(test)]
    pub fn flush(&self) {
        if let Sink::Queue(queue) = &self.inner.sink {
            queue.flush();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer thread ends when the queue closes; let it write what
        // is queued first, so a server's last lines are out when it stops.
        if let Sink::Queue(queue) = &self.sink {
            queue.flush();
        }
    }
}

/// `n` and `noun`, the noun plural unless `n` is 1: "1 reservation",
/// "2 reservations", "0 ports".
pub(crate) fn count(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// Logs a line if the logger's level allows it; formats nothing otherwise.
/// Warnings and errors are rate-limited per call site.
macro_rules! log {
    ($logger:expr, $level:expr, $($arg:tt)*) => {{
        let logger: &$crate::server::log::Logger = &$logger;
        let level = $level;
        if logger.enabled(level) {
            logger.write_at(level, concat!(file!(), ":", line!()), format_args!($($arg)*));
        }
    }};
}
pub(crate) use log;
