//! What a journal read at start gives back: the reservations of owners
//! that still run go back into the pool; the rest is reported. No I/O but
//! the process table's answers; the caller logs the report.

use std::path::Path;

use crate::server::log::{count, Level};
use crate::server::pool::Pool;
use crate::server::process::{presence, Owner, Presence, ProcessTable};
use crate::server::state::{StateContents, StateLineError};

/// What restoring a journal did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Reservations put back in the pool.
    pub kept: usize,
    /// Dropped: their owner is gone (or the file is from an earlier boot).
    pub gone: usize,
    /// Kept outside the pool: reservations of owners that still run (or
    /// could not be checked) for ports the pool does not manage (a restart
    /// with another pool). They stay reserved and journaled until their
    /// owner is gone, and then are dropped, never handed out.
    pub outside: Vec<(u16, Owner)>,
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
        let unchecked = match presence(processes, owner) {
            Presence::Gone => {
                report.gone += 1;
                continue;
            }
            Presence::Alive => false,
            Presence::Unknown(_) => true,
        };
        if !pool.manages(port) {
            report.outside.push((port, owner));
            report.unchecked += usize::from(unchecked);
        } else if pool.restore(port, owner) {
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
        // The count, and where the lines are kept, is logged with the copy.
        for e in self.errors.iter().take(5) {
            lines.push((Level::Warning, format!("State file {path}: skipping {e}")));
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
        if !self.outside.is_empty() {
            lines.push((
                Level::Warning,
                format!(
                    "State file {path}: kept {} of live owners outside the pool (ports {}); they stay reserved until their owners exit",
                    count(self.outside.len() as u64, "reservation"),
                    port_list(&self.outside)
                ),
            ));
        }
        if self.entries > 0 || !self.errors.is_empty() {
            lines.push((Level::Info, format!("State file {path}: {}", self.counts())));
        }
        lines
    }

    /// "restored 1 reservation, dropped 2 (2 whose owner is gone), kept 1
    /// outside the pool"; what did not happen is not mentioned.
    pub fn counts(&self) -> String {
        let mut text = format!("restored {}", count(self.kept as u64, "reservation"));
        if self.gone > 0 {
            text.push_str(&format!(
                ", dropped {} ({} whose owner is gone)",
                self.gone, self.gone
            ));
        }
        if !self.outside.is_empty() {
            text.push_str(&format!(", kept {} outside the pool", self.outside.len()));
        }
        text
    }
}

/// The first few ports of `held`, for a log line.
fn port_list(held: &[(u16, Owner)]) -> String {
    let mut list: Vec<String> = held.iter().take(8).map(|(p, _)| p.to_string()).collect();
    if held.len() > 8 {
        list.push("...".to_string());
    }
    list.join(" ")
}

#[cfg(test)]
mod tests {
    use super::RestoreReport;

    #[test]
    fn counts_read_as_english() {
        use crate::server::process::Owner;
        let report = |kept, gone, outside: usize| RestoreReport {
            kept,
            gone,
            outside: (0..outside)
                .map(|i| {
                    (
                        i as u16,
                        Owner {
                            pid: 2,
                            start_time: 3,
                        },
                    )
                })
                .collect(),
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
            "restored 3 reservations, dropped 2 (2 whose owner is gone), kept 1 outside the pool"
        );
    }
}
