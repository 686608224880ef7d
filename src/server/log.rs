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

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// Where a server's log lines go instead of stderr: any writer, shared
/// (set with [`ServerConfig::log_to`](crate::server::ServerConfig::log_to)).
#[derive(Clone)]
pub(crate) struct LogOutput(Arc<Mutex<dyn Write + Send>>);

impl LogOutput {
    /// Log lines go to `writer`, one `write_all` per line.
    pub(crate) fn new(writer: impl Write + Send + 'static) -> Self {
        LogOutput(Arc::new(Mutex::new(writer)))
    }

    fn write_line(&self, line: &[u8]) {
        let _ = lock(&self.0).write_all(line);
    }
}

impl fmt::Debug for LogOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogOutput").finish_non_exhaustive()
    }
}

/// Lines a writer thread may have queued before new ones are dropped.
const QUEUE: usize = 1024;
/// Warnings and errors from one call site: at most `BURST` a `WINDOW`.
const WINDOW: Duration = Duration::from_secs(1);
const BURST: u64 = 5;
/// How long stopping waits for queued lines to be written.
const DRAIN: Duration = Duration::from_secs(1);

/// Writes log lines at or above a level, to stderr or a [`LogOutput`].
/// Clones share one output, queue and rate limit.
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
    repeats: Arc<Mutex<Vec<Repeat>>>,
}

enum Sink {
    /// Written by the calling thread (a tool's few lines before it exits).
    Direct(Option<LogOutput>),
    /// Written by a writer thread.
    Queue {
        lines: SyncSender<Msg>,
        dropped: Arc<AtomicU64>,
    },
}

enum Msg {
    Line(String),
    /// Everything before it is written: say so.
    Flush(SyncSender<()>),
}

/// Recent warnings or errors from one call site.
struct Repeat {
    key: &'static str,
    level: Level,
    since: Instant,
    /// Lines in this window, written or not.
    seen: u64,
    /// The last line not written, to show what was suppressed.
    last: String,
}

impl Repeat {
    /// The line that sums up what this window suppressed, if anything.
    fn summary(&self) -> Option<(Level, String)> {
        let n = self.seen.saturating_sub(BURST);
        (n > 0).then(|| {
            (
                self.level,
                format!("{n} more like this in {WINDOW:?}; the last: {}", self.last),
            )
        })
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        Logger::with_sink(level, Sink::Direct(None))
    }

    /// A logger whose lines a thread of its own writes to `output` (stderr
    /// when `None`), so that a blocked output never blocks the caller.
    /// Falls back to writing from the caller if no thread can be started.
    pub(crate) fn spawn(level: Level, output: Option<LogOutput>) -> Self {
        if level == Level::Off {
            return Logger::with_sink(level, Sink::Direct(output));
        }
        let repeats = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let writer = Writer {
            output: output.clone(),
            dropped: Arc::clone(&dropped),
            repeats: Arc::clone(&repeats),
        };
        let spawned = std::thread::Builder::new()
            .name("portserver-log".to_string())
            .spawn(move || writer.run(&rx));
        let sink = match spawned {
            Ok(_) => Sink::Queue { lines: tx, dropped },
            Err(_) => Sink::Direct(output),
        };
        Logger {
            inner: Arc::new(Inner {
                level,
                sink,
                repeats,
            }),
        }
    }

    fn with_sink(level: Level, sink: Sink) -> Self {
        Logger {
            inner: Arc::new(Inner {
                level,
                sink,
                repeats: Arc::new(Mutex::new(Vec::new())),
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
        let now = Instant::now();
        let mut repeats = lock(&self.inner.repeats);
        let summary = match repeats.iter_mut().find(|r| r.key == key) {
            Some(r) if now.duration_since(r.since) < WINDOW => {
                r.seen += 1;
                if r.seen > BURST {
                    r.last = args.to_string();
                    return;
                }
                None
            }
            Some(r) => {
                let summary = r.summary();
                r.since = now;
                r.seen = 1;
                summary
            }
            None => {
                repeats.push(Repeat {
                    key,
                    level,
                    since: now,
                    seen: 1,
                    last: String::new(),
                });
                None
            }
        };
        drop(repeats);
        if let Some((level, text)) = summary {
            self.emit(format_line(level, text));
        }
        self.write(level, args);
    }

    fn emit(&self, line: String) {
        match &self.inner.sink {
            Sink::Direct(None) => {
                // One write per line keeps lines whole between threads.
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::Direct(Some(out)) => out.write_line(line.as_bytes()),
            Sink::Queue { lines, dropped } => {
                if let Err(TrySendError::Full(_)) = lines.try_send(Msg::Line(line)) {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Waits (at most a second) until the lines logged so far are written,
    /// with the counts of lines dropped or suppressed.
    pub fn flush(&self) {
        if let Sink::Queue { lines, .. } = &self.inner.sink {
            let (tx, rx) = mpsc::sync_channel(1);
            if lines.try_send(Msg::Flush(tx)).is_ok() {
                let _ = rx.recv_timeout(DRAIN);
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer thread ends when the queue closes; let it write what
        // is queued first, so a server's last lines are out when it stops.
        if let Sink::Queue { lines, .. } = &self.sink {
            let (tx, rx) = mpsc::sync_channel(1);
            if lines.try_send(Msg::Flush(tx)).is_ok() {
                let _ = rx.recv_timeout(DRAIN);
            }
        }
    }
}

/// The writer thread's side.
struct Writer {
    output: Option<LogOutput>,
    dropped: Arc<AtomicU64>,
    repeats: Arc<Mutex<Vec<Repeat>>>,
}

impl Writer {
    fn run(&self, lines: &Receiver<Msg>) {
        loop {
            match lines.recv_timeout(WINDOW) {
                Ok(Msg::Line(line)) => self.put(line.as_bytes()),
                Ok(Msg::Flush(done)) => {
                    self.report(true);
                    let _ = done.send(());
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.report(true);
                    return;
                }
            }
            self.report(false);
        }
    }

    fn put(&self, line: &[u8]) {
        match &self.output {
            Some(out) => out.write_line(line),
            None => {
                let _ = std::io::stderr().lock().write_all(line);
            }
        }
    }

    /// Writes the count of dropped lines, and the summaries of suppressed
    /// ones whose window is over (all of them with `all`).
    fn report(&self, all: bool) {
        let n = self.dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            self.put(
                format_line(
                    Level::Warning,
                    format_args!("{n} log lines dropped: the log output did not keep up"),
                )
                .as_bytes(),
            );
        }
        let now = Instant::now();
        let mut due = Vec::new();
        for r in lock(&self.repeats).iter_mut() {
            if all || now.duration_since(r.since) >= WINDOW {
                if let Some(s) = r.summary() {
                    due.push(s);
                }
                // A new window: the next line of this kind is written.
                r.since = now;
                r.seen = 0;
            }
        }
        for (level, text) in due {
            self.put(format_line(level, text).as_bytes());
        }
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

/// `MMDD HH:MM:SS.mmm` in UTC, as Python's `%m%d %H:%M:%S` plus msecs.
fn timestamp() -> impl fmt::Display {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (_, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{month:02}{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(text.contains("45 more like this"), "{text}");
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
}
