//! [`NoFreePortError`]: a local pick found no port, and why (every
//! candidate busy, claimed by other processes, no descriptor left to
//! probe with, or a request that cannot fit), naming the range it looked in.

use std::fmt;
use std::ops::RangeInclusive;

/// No free port was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFreePortError {
    pub(super) tries: usize,
    pub(super) reason: NoFreePortReason,
    /// Where the ports were looked for: a picker's range, or for a block
    /// the kernel's ephemeral range; `None`: the default sources.
    pub(super) range: Option<(u16, u16)>,
    pub(super) wanted: Wanted,
}

/// What the failed call asked for, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wanted {
    /// One port (also the pick of `pick_many` that failed).
    One,
    /// `pick_many(n)`, refused before any pick.
    Many(usize),
    /// `pick_consecutive(n)`.
    Block(usize),
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
    /// The request cannot be met whatever is free: more ports than the
    /// range holds outside the exclusions, or a block of 0 ports.
    TooMany,
}

impl NoFreePortError {
    pub(super) fn new(tries: usize, reason: NoFreePortReason) -> Self {
        NoFreePortError {
            tries,
            reason,
            range: None,
            wanted: Wanted::One,
        }
    }

    pub(super) fn within(mut self, range: Option<(u16, u16)>, wanted: Wanted) -> Self {
        self.range = range;
        self.wanted = wanted;
        self
    }

    /// How many candidate ports (or, for a block, candidate blocks) were
    /// tried.
    pub fn tries(&self) -> usize {
        self.tries
    }

    /// Why none was found.
    pub fn reason(&self) -> NoFreePortReason {
        self.reason
    }

    /// The range the ports were looked for in: the picker's
    /// [`range`](crate::Picker::range), or for a block without one the
    /// kernel's ephemeral range. `None`: the default sources.
    pub fn range(&self) -> Option<RangeInclusive<u16>> {
        self.range.map(|(lo, hi)| lo..=hi)
    }
}

impl fmt::Display for NoFreePortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.wanted {
            Wanted::One => "no free port".to_string(),
            Wanted::Many(n) => format!("no {n} free ports"),
            Wanted::Block(n) => format!("no block of {n} consecutive free ports"),
        };
        let place = match self.range {
            Some((lo, hi)) => format!(" in {lo}-{hi}"),
            None => String::new(),
        };
        let tries = self.tries;
        match self.reason {
            NoFreePortReason::Busy => write!(f, "{what} found{place} after {tries} candidates"),
            NoFreePortReason::Claimed { claimed } => write!(
                f,
                "{what} found{place} after {tries} candidates: {claimed} candidates \
                 claimed by other processes"
            ),
            NoFreePortReason::OutOfFileDescriptors => write!(
                f,
                "no port could be probed{place}: too many open files (tried {tries} candidates)"
            ),
            NoFreePortReason::TooMany if self.wanted == Wanted::Block(0) => {
                write!(f, "{what}: a block has at least 1 port")
            }
            NoFreePortReason::TooMany if self.range.is_none() => {
                write!(f, "{what}: there are 65535 ports")
            }
            NoFreePortReason::TooMany => {
                write!(f, "{what}{place}: it holds fewer outside the exclusions")
            }
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
            NoFreePortReason::TooMany => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, e)
    }
}
