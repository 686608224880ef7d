//! What a journal read at start gives back: the reservations of owners
//! that still run go back into the pool; the rest is reported. No I/O but
//! the process table's answers; the caller logs the report.

use std::path::Path;

use crate::server::log::{count, Level};
use crate::server::pool::Pool;
use crate::server::process::{presence, Presence, ProcessTable};
use crate::server::state::{StateContents, StateLineError};

/// What restoring a journal did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Reservations put back in the pool.
    pub kept: usize,
    /// Dropped: their owner is gone (or the file is from an earlier boot).
    pub gone: usize,
    /// Dropped: the port is not in the pool.
    pub outside: usize,
    /// Of `kept`, owners the process table could not check (kept, since
    /// only a sure "gone" frees a port).
    pub unchecked: usize,
    /// The file was written in an earlier boot: every owner is gone.
    pub earlier_boot: bool,
    /// The header was missing or wrong.
    pub bad_header: bool,
    /// Lines skipped.
    pub errors: Vec<StateLineError>,
    /// Entries read.
    pub entries: usize,
}

/// Puts the reservations of `contents` whose owners still run back into
/// `pool`. Later lines win; a file from another boot than `this_boot`
/// restores nothing (its owners are gone).
pub fn restore(
    contents: &StateContents,
    this_boot: Option<&str>,
    pool: &mut Pool,
    processes: &dyn ProcessTable,
) -> RestoreReport {
    let mut report = RestoreReport {
        bad_header: contents.bad_header,
        errors: contents.errors.clone(),
        entries: contents.entries.len(),
        ..RestoreReport::default()
    };
    let same_boot = match (contents.boot_id.as_deref(), this_boot) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    if !same_boot {
        report.earlier_boot = !contents.entries.is_empty();
        report.gone = contents.entries.len();
        return report;
    }
    let mut seen = vec![false; 65536];
    for &(port, owner) in contents.entries.iter().rev() {
        if std::mem::replace(&mut seen[port as usize], true) {
            continue;
        }
        if !pool.manages(port) {
            report.outside += 1;
            continue;
        }
        let unchecked = match presence(processes, owner) {
            Presence::Gone => {
                report.gone += 1;
                continue;
            }
            Presence::Alive => false,
            Presence::Unknown(_) => true,
        };
        if pool.restore(port, owner) {
            report.kept += 1;
            report.unchecked += usize::from(unchecked);
        }
    }
    report
}

impl RestoreReport {
    /// The log lines that tell an operator what happened, with their level.
    pub fn log_lines(&self, path: &Path) -> Vec<(Level, String)> {
        let path = path.display();
        let mut lines = Vec::new();
        if self.bad_header {
            lines.push((
                Level::Warning,
                format!("State file {path} has no valid header; reading what it can"),
            ));
        }
        for e in self.errors.iter().take(5) {
            lines.push((Level::Warning, format!("State file {path}: skipping {e}")));
        }
        if self.errors.len() > 5 {
            let bad = count(self.errors.len() as u64, "bad line");
            lines.push((Level::Warning, format!("State file {path}: {bad} in all")));
        }
        if self.earlier_boot {
            lines.push((
                Level::Info,
                format!("State file {path} is from an earlier boot; its owners are gone"),
            ));
        }
        if self.unchecked > 0 {
            lines.push((
                Level::Warning,
                format!(
                    "State file {path}: could not check the owners of {}; kept them",
                    count(self.unchecked as u64, "reservation")
                ),
            ));
        }
        if self.entries > 0 || !self.errors.is_empty() {
            lines.push((Level::Info, format!("State file {path}: {}", self.counts())));
        }
        lines
    }

    /// "restored 1 reservation, dropped 3 (2 whose owner is gone, 1 outside
    /// the pool)"; what was not dropped is not mentioned.
    pub fn counts(&self) -> String {
        let mut text = format!("restored {}", count(self.kept as u64, "reservation"));
        let mut why = Vec::new();
        if self.gone > 0 {
            why.push(format!("{} whose owner is gone", self.gone));
        }
        if self.outside > 0 {
            why.push(format!("{} outside the pool", self.outside));
        }
        if !why.is_empty() {
            let dropped = self.gone + self.outside;
            text.push_str(&format!(", dropped {dropped} ({})", why.join(", ")));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::RestoreReport;

    #[test]
    fn counts_read_as_english() {
        let report = |kept, gone, outside| RestoreReport {
            kept,
            gone,
            outside,
            ..RestoreReport::default()
        };
        assert_eq!(report(1, 0, 0).counts(), "restored 1 reservation");
        assert_eq!(report(0, 0, 0).counts(), "restored 0 reservations");
        assert_eq!(
            report(2, 1, 0).counts(),
            "restored 2 reservations, dropped 1 (1 whose owner is gone)"
        );
        assert_eq!(
            report(3, 2, 1).counts(),
            "restored 3 reservations, dropped 3 (2 whose owner is gone, 1 outside the pool)"
        );
    }
}
