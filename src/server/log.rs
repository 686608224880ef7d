//! The portserver's log: one line per event on stderr, in the format of
//! Python's portserver (`I1124 19:37:07.123 PID portserver] message`).
//! Lines below the level are never formatted.

use std::fmt;
use std::io::Write;

/// How much the server logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Failures only.
    Error,
    /// And problems the server works around.
    Warning,
    /// And start, stop and `Serving on ADDR` (the default).
    Info,
    /// And every allocation and denial, with pid and reason (`--verbose`).
    Verbose,
    /// And every probe and reclaim (`--debug`).
    Debug,
}

impl Level {
    fn letter(self) -> char {
        match self {
            Level::Error => 'E',
            Level::Warning => 'W',
            Level::Info | Level::Verbose => 'I',
            Level::Debug => 'D',
        }
    }
}

/// Writes log lines at or above a level to stderr.
#[derive(Debug, Clone, Copy)]
pub struct Logger {
    level: Level,
}

impl Logger {
    /// A logger that writes lines of `level` and more important.
    pub fn new(level: Level) -> Self {
        Logger { level }
    }

    /// Whether lines of `level` are written.
    #[inline]
    pub fn enabled(&self, level: Level) -> bool {
        level <= self.level
    }

    /// Writes one line (callers check [`Logger::enabled`] first through the
    /// `log!` macro, so a disabled line costs a comparison).
    pub fn write(&self, level: Level, args: fmt::Arguments<'_>) {
        let line = format!(
            "{}{} {} portserver] {}\n",
            level.letter(),
            timestamp(),
            std::process::id(),
            args
        );
        // One write per line keeps lines whole between threads.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// Logs a line if the logger's level allows it; formats nothing otherwise.
macro_rules! log {
    ($logger:expr, $level:expr, $($arg:tt)*) => {{
        let logger: &$crate::server::log::Logger = &$logger;
        if logger.enabled($level) {
            logger.write($level, format_args!($($arg)*));
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
    use super::civil_from_days;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
    }
}
