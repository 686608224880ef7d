//! [`NoFreePortError`]: a local pick found no port, and why (every
//! candidate busy, claimed by other processes, or no descriptor left to
//! probe with).

use std::fmt;

/// No free port was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFreePortError {
    pub(super) tries: usize,
    pub(super) reason: NoFreePortReason,
}

/// Why [`NoFreePortError`] found no port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoFreePortReason {
    /// Every candidate was in use or already picked here.
    Busy,
    /// No candidate was free, and `claimed` of them were claimed by other
    /// processes (or other pickers of this one): see the crate docs on
    /// cross-process claims.
    Claimed {
        /// How many candidates were claimed.
        claimed: usize,
    },
    /// No socket could be opened to probe with: this process has used up
    /// its open file limit (`EMFILE`), or the system its (`ENFILE`).
    OutOfFileDescriptors,
}

impl NoFreePortError {
    /// How many candidate ports were tried.
    pub fn tries(&self) -> usize {
        self.tries
    }

    /// Why none was found.
    pub fn reason(&self) -> NoFreePortReason {
        self.reason
    }
}

impl fmt::Display for NoFreePortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            NoFreePortReason::Busy => {
                write!(f, "no free port found after {} candidates", self.tries)
            }
            NoFreePortReason::Claimed { claimed } => write!(
                f,
                "no free port found after {} candidates: {claimed} candidates claimed by \
                 other processes",
                self.tries
            ),
            NoFreePortReason::OutOfFileDescriptors => write!(
                f,
                "no port could be probed: too many open files (tried {} candidates)",
                self.tries
            ),
        }
    }
}

impl std::error::Error for NoFreePortError {}

impl From<NoFreePortError> for std::io::Error {
    fn from(e: NoFreePortError) -> Self {
        let kind = match e.reason {
            NoFreePortReason::Busy | NoFreePortReason::Claimed { .. } => {
                std::io::ErrorKind::AddrNotAvailable
            }
            NoFreePortReason::OutOfFileDescriptors => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}
