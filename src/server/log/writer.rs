//! The writer thread and its bounded queue: a server's threads hand it
//! their lines and never wait for the output; when the queue is full, lines
//! are dropped and counted, and the thread says how many once the output
//! moves again. [`LogOutput`] is where it writes.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::repeat::{Repeats, WINDOW};
use super::{format_line, lock, Level};

/// Lines a writer thread may have queued before new ones are dropped.
pub(super) const QUEUE: usize = 1024;
/// How long stopping waits for queued lines to be written.
const DRAIN: Duration = Duration::from_secs(1);

/// Where a server's log lines go instead of stderr: any writer, shared
/// (set with [`ServerConfig::log_to`](crate::server::ServerConfig::log_to)).
#[derive(Clone)]
pub(crate) struct LogOutput(Arc<Mutex<dyn Write + Send>>);

impl LogOutput {
    /// Log lines go to `writer`, one `write_all` per line.
    pub(crate) fn new(writer: impl Write + Send + 'static) -> Self {
        LogOutput(Arc::new(Mutex::new(writer)))
    }

    pub(super) fn write_line(&self, line: &[u8]) {
        let _ = lock(&self.0).write_all(line);
    }
}

impl fmt::Debug for LogOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogOutput").finish_non_exhaustive()
    }
}

enum Msg {
    Line(String),
    /// Everything before it is written: say so.
    Flush(SyncSender<()>),
}

/// The callers' side of a writer thread: its queue. The thread ends when
/// the queue closes.
pub(super) struct Queue {
    lines: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl Queue {
    /// Starts a thread that writes queued lines to `output` (stderr when
    /// `None`), with the summaries `repeats` holds.
    pub(super) fn start(
        output: Option<LogOutput>,
        repeats: Arc<Mutex<Repeats>>,
    ) -> io::Result<Queue> {
        let dropped = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let writer = Writer {
            output,
            dropped: Arc::clone(&dropped),
            repeats,
        };
        std::thread::Builder::new()
            .name("portserver-log".to_string())
            .spawn(move || writer.run(&rx))?;
        Ok(Queue { lines: tx, dropped })
    }

    /// Queues `line`, or counts it as dropped when the queue is full.
    pub(super) fn send(&self, line: String) {
        if let Err(TrySendError::Full(_)) = self.lines.try_send(Msg::Line(line)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits (at most a second) until the lines queued so far are written,
    /// with the counts of lines dropped or suppressed.
    pub(super) fn flush(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.lines.try_send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(DRAIN);
        }
    }
}

/// The writer thread's side.
struct Writer {
    output: Option<LogOutput>,
    dropped: Arc<AtomicU64>,
    repeats: Arc<Mutex<Repeats>>,
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
        let due = lock(&self.repeats).due(all, Instant::now());
        for (level, text) in due {
            self.put(format_line(level, text).as_bytes());
        }
    }
}
