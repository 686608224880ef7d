//! Cross-process port claims without a daemon or files (Linux): a claim on
//! port P is a unix datagram socket bound to the abstract name
//! `portpick/claim/P`. Two binds of one name conflict (`AddrInUse`) across
//! processes and users, so at most one socket holds a claim; the kernel
//! drops it when the socket closes, however its process ends (`kill -9`
//! too), and nothing is ever written to a filesystem.
//!
//! The abstract namespace belongs to the network namespace, as ports do: a
//! container with its own network has its own ports and its own claims.
//! The kernel keys a name by socket type too (a stream socket may bind a
//! name a datagram socket holds), so every claim, and every check of one,
//! uses `UnixDatagram`.
//!
//! A claim costs a file descriptor for as long as it is held. A process
//! never spends more than half of its descriptor limit on claims: beyond
//! that, ports are picked unclaimed (with one warning), so that a test that
//! picks a thousand ports still has descriptors for its own work.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The environment variable that turns cross-process claims off: `off` (or
/// `0`). Unset, empty, `on` or `1`: claims on, the default on Linux.
pub const CLAIMS_ENV: &str = "PORTPICK_CLAIMS";

/// The abstract-namespace prefix of a claim: port P is claimed by binding
/// `portpick/claim/P` (`@portpick/claim/P` in `ss -x`).
pub(crate) const PREFIX: &str = "portpick/claim/";

/// Claims this process holds now, across all pickers.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// Below this many held claims the descriptor limit is not even read (most
/// processes never hold this many), so the budget is half the limit, but at
/// least this.
const BUDGET_CHECK_FROM: usize = 32;

/// Where claims are made: the documented names, or (for tests that must not
/// meet other processes' claims) a private prefix.
#[derive(Debug, Clone)]
pub(crate) struct ClaimPrefix {
    prefix: Box<[u8]>,
}

/// A held claim: dropping it releases the port to other pickers.
#[derive(Debug)]
pub(crate) struct PortClaim {
    // Held, never read: the bound name is the claim.
    _socket: UnixDatagram,
    _counted: Counted,
}

/// Counts a claim in [`HELD`] for as long as it lives in this process.
#[derive(Debug)]
struct Counted;

impl Drop for Counted {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What trying to claim a port gave.
#[derive(Debug)]
pub(crate) enum Claim {
    /// The port is ours until the claim is dropped.
    Held(PortClaim),
    /// Another socket (this process's or another's) holds it.
    Taken,
    /// No claim can be made now (descriptors used up, no abstract
    /// namespace, budget spent): the port may be used unclaimed.
    Unavailable(io::Error),
}

impl ClaimPrefix {
    /// The documented names, `portpick/claim/PORT`.
    pub(crate) fn standard() -> Self {
        ClaimPrefix::with_prefix(PREFIX)
    }

    /// Names `PREFIXPORT` instead of the documented ones.
    pub(crate) fn with_prefix(prefix: &str) -> Self {
        ClaimPrefix {
            prefix: prefix.as_bytes().into(),
        }
    }

    /// The documented names unless `PORTPICK_CLAIMS` turns claims off; none
    /// where there is no abstract namespace (not Linux).
    pub(crate) fn from_env() -> Option<Self> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        match std::env::var_os(CLAIMS_ENV) {
            None => Some(ClaimPrefix::standard()),
            Some(v) => match v.to_str() {
                Some("off" | "0") => None,
                Some("" | "on" | "1") => Some(ClaimPrefix::standard()),
                _ => {
                    static WARNED: AtomicBool = AtomicBool::new(false);
                    if !WARNED.swap(true, Ordering::Relaxed) {
                        crate::warn::warn(format_args!(
                            "portpick: warning: {CLAIMS_ENV}={v:?} is neither \"off\" nor \
                             \"on\"; cross-process claims stay on"
                        ));
                    }
                    Some(ClaimPrefix::standard())
                }
            },
        }
    }

    fn name(&self, port: u16) -> Vec<u8> {
        use std::io::Write;
        let mut name = Vec::with_capacity(self.prefix.len() + 5);
        name.extend_from_slice(&self.prefix);
        let _ = write!(name, "{port}");
        name
    }

    /// Tries to claim `port` for this process.
    pub(crate) fn claim(&self, port: u16) -> Claim {
        let held = HELD.fetch_add(1, Ordering::Relaxed);
        let counted = Counted;
        if held >= BUDGET_CHECK_FROM {
            let limit = open_files_limit();
            if held >= limit / 2 {
                // `io::Error::other` is Rust 1.74; we support 1.70.
                #[allow(clippy::io_other_error)]
                return Claim::Unavailable(io::Error::new(
                    io::ErrorKind::Other,
                    format!(
                        "{held} ports claimed already, half of this process's limit of \
                         {limit} open files"
                    ),
                ));
            }
        }
        match bind(&self.name(port)) {
            Ok(socket) => Claim::Held(PortClaim {
                _socket: socket,
                _counted: counted,
            }),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => Claim::Taken,
            Err(e) => Claim::Unavailable(e),
        }
    }

    /// Whether some socket holds the claim on `port` now. (Checked by
    /// claiming and releasing at once: a picker trying the port at that
    /// very moment skips it, which is harmless.)
    pub(crate) fn is_claimed(&self, port: u16) -> bool {
        matches!(bind(&self.name(port)), Err(e) if e.kind() == io::ErrorKind::AddrInUse)
    }
}

/// Whether a local picker holds a claim on `port` (in the documented
/// names): the portserver treats such a port as busy.
pub(crate) fn is_claimed(port: u16) -> bool {
    cfg!(target_os = "linux") && ClaimPrefix::standard().is_claimed(port)
}

/// The portserver's default prober: a port is free when the sockets say so
/// and no local picker has claimed it, so a host that mixes processes with
/// and without `PORTSERVER_ADDRESS` never hands one port to both. (A prober
/// given to the server replaces all of this: fakes stay deterministic.)
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SkipClaimed<P>(pub(crate) P);

impl<P: crate::Prober> crate::Prober for SkipClaimed<P> {
    fn is_free(&self, port: u16, protocol: crate::Protocol) -> bool {
        self.0.is_free(port, protocol)
    }

    fn kernel_port(&self, protocol: crate::Protocol) -> Option<u16> {
        self.0.kernel_port(protocol)
    }

    fn is_port_free(&self, port: u16) -> bool {
        self.0.is_port_free(port) && !is_claimed(port)
    }
}

/// Binds a datagram socket to the abstract `name`.
#[cfg(target_os = "linux")]
fn bind(name: &[u8]) -> io::Result<UnixDatagram> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    UnixDatagram::bind_addr(&addr)
}

#[cfg(not(target_os = "linux"))]
fn bind(_name: &[u8]) -> io::Result<UnixDatagram> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no abstract unix socket namespace on this system",
    ))
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Warns once per process that a port was picked without a claim.
pub(crate) fn warn_unavailable(port: u16, err: &io::Error) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        crate::warn::warn(format_args!(
            "portpick: warning: cannot claim port {port} across processes ({err}); \
             this and further ports that cannot be claimed are picked as Python's \
             portpicker does, and another process may pick them too (set \
             {CLAIMS_ENV}=off to silence this)"
        ));
    }
}

/// The soft limit on open files; 1024, the usual default, when it cannot
/// be read.
fn open_files_limit() -> usize {
    crate::limits::open_files_limit().map_or(1024, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Whether this process cannot open the sockets one probe needs at once
/// (a claim, and an IPv6 and an IPv4 socket) because descriptors ran out
/// (`EMFILE`: ours; `ENFILE`: the system's). With one descriptor left, the
/// claim takes it and every probe fails: that is running out too.
pub(crate) fn out_of_descriptors() -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    let mut open = Vec::with_capacity(3);
    for _ in 0..3 {
        match UnixDatagram::unbound() {
            Ok(s) => open.push(s),
            Err(e) => return matches!(e.raw_os_error(), Some(EMFILE | ENFILE)),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_are_the_documented_ones() {
        assert_eq!(ClaimPrefix::standard().name(8080), b"portpick/claim/8080");
        assert_eq!(ClaimPrefix::with_prefix("x/").name(1), b"x/1");
    }
}
