//! The server's policy on who gets a port: the pid check made before any
//! system call, and [`Denial`], every reason a request gets none. The wire
//! format (`0 REASON` for a namespaced request) is `crate::protocol`'s.

use std::fmt;

/// Why a request got no port. The server answers a version-1 request's
/// denial with a silent close, a namespaced one's with `0 REASON`
/// ([`format_denial`](crate::protocol::format_denial)); the reason also
/// goes to its log and its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// Pid 0 or negative.
    InvalidPid,
    /// Pid 1: the client was reparented to init and meant its parent.
    Init,
    /// Not below [`PID_MAX_LIMIT`].
    PidOutOfRange,
    /// No process with that pid runs.
    NotRunning,
    /// The owner already holds its quota.
    Quota {
        /// How many ports it holds.
        held: usize,
    },
    /// Every port is held or in use outside the server.
    Exhausted,
    /// The allocation could not be recorded in the state file.
    NotPersisted,
    /// The process table could not tell whether the pid runs (the server
    /// is out of file descriptors, say).
    CannotCheck,
    /// The pid names a kernel thread (a sandbox's low pids do on the host:
    /// pid 2 is `kthreadd`), which never exits: like pid 1.
    KernelThread,
    /// The server cannot tell which process a namespaced request names: it
    /// may not read the processes of that pid namespace (another user's,
    /// without privilege, or hidden by `/proc`'s `hidepid`).
    NamespaceUnknown,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::InvalidPid => f.write_str("invalid pid"),
            Denial::Init => f.write_str("pid 1 (init)"),
            Denial::PidOutOfRange => f.write_str("pid out of range"),
            Denial::NotRunning => f.write_str("no such process"),
            Denial::Quota { held } => write!(f, "quota reached ({held} ports held)"),
            Denial::Exhausted => f.write_str("all ports in use"),
            Denial::NotPersisted => f.write_str("state file write failed"),
            Denial::CannotCheck => f.write_str("cannot tell whether the pid runs"),
            Denial::KernelThread => f.write_str("pid is a kernel thread"),
            Denial::NamespaceUnknown => f.write_str(
                "the server cannot see the processes of the client's pid namespace \
                 (another user's without privilege, or /proc hides them)",
            ),
        }
    }
}

/// Linux's `PID_MAX_LIMIT` (2^22): `kernel.pid_max` cannot be set above
/// it, so every pid is below it.
pub const PID_MAX_LIMIT: i64 = 1 << 22;

/// Checks a requested pid before any system call: 0 and negative are
/// invalid, 1 is init (the client was reparented and meant its parent), and
/// no pid reaches [`PID_MAX_LIMIT`].
///
/// # Errors
///
/// [`Denial::InvalidPid`], [`Denial::Init`] or [`Denial::PidOutOfRange`].
pub fn check_pid(pid: i64) -> Result<u32, Denial> {
    match pid {
        i64::MIN..=0 => Err(Denial::InvalidPid),
        1 => Err(Denial::Init),
        p if p >= PID_MAX_LIMIT => Err(Denial::PidOutOfRange),
        // Below 2^22, so it fits.
        p => Ok(p as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_check_rules() {
        assert_eq!(check_pid(1234), Ok(1234));
        assert_eq!(check_pid(2), Ok(2));
        assert_eq!(check_pid(0), Err(Denial::InvalidPid));
        assert_eq!(check_pid(-7), Err(Denial::InvalidPid));
        assert_eq!(check_pid(1), Err(Denial::Init));
        assert_eq!(check_pid(PID_MAX_LIMIT - 1), Ok((PID_MAX_LIMIT - 1) as u32));
        assert_eq!(check_pid(PID_MAX_LIMIT), Err(Denial::PidOutOfRange));
    }
}
