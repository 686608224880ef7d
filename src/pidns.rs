//! Pid namespaces: which one this process is in, whether `/proc` shows it,
//! and which process of our `/proc` is pid N of namespace NS (a sandboxed
//! client's view), with the pure `NSpid` parser.
//!
//! A namespace is named by the inode of its `/proc/PID/ns/pid` link, the
//! same number inside and outside it. Reading another process's link needs
//! ptrace-read access (same user, root or `CAP_SYS_PTRACE`); `stat` and
//! `status` are world-readable.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

mod resolver;

pub use resolver::{resolve, Resolver};

/// The inode of the host's (initial) pid namespace: the kernel's
/// `PROC_PID_INIT_INO`, the same on every Linux.
pub const INIT_NAMESPACE: u64 = 0xEFFF_FFFC;

/// The inode of this process's pid namespace, remembered once read (a
/// process never changes its own: `unshare` and `setns` move only its later
/// children). A failed read is not remembered: it may pass (out of file
/// descriptors, say).
///
/// # Errors
///
/// `/proc` is not mounted or cannot be read now.
pub fn own_namespace() -> io::Result<u64> {
    static OWN: OnceLock<u64> = OnceLock::new();
    if let Some(&ns) = OWN.get() {
        return Ok(ns);
    }
    let ns = namespace_of("self")?;
    Ok(*OWN.get_or_init(|| ns))
}

/// Whether `/proc` shows this process's own pid namespace (rather than an
/// ancestor's, as inside `unshare -pf` without `--mount-proc`): then its
/// pids are ours, and `/proc/self` is [`std::process::id`].
///
/// # Errors
///
/// `/proc/self/status` cannot be read or has no `NSpid` (Linux before 4.1).
pub fn proc_shows_own_namespace() -> io::Result<bool> {
    let status = fs::read("/proc/self/status")?;
    let nspid = parse_nspid(&status).ok_or_else(no_nspid)?;
    Ok(nspid.levels == 1)
}

fn no_nspid() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "no NSpid line in status")
}

/// The inode of the pid namespace of `/proc/WHO` (a pid or `self`).
fn namespace_of(who: &str) -> io::Result<u64> {
    fs::metadata(format!("/proc/{who}/ns/pid")).map(|m| m.ino())
}

/// The `NSpid` line of `/proc/PID/status`: the process's pid in the
/// namespace `/proc` shows (`outer`), and in its own (`inner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsPid {
    /// The first pid: the one `/proc` names it by.
    pub outer: u32,
    /// The last pid: the one its own namespace sees.
    pub inner: u32,
    /// How many pids the line lists (1: `/proc` shows its own namespace).
    pub levels: usize,
}

/// Reads the `NSpid:` line of a `status` file; `None` when there is none or
/// it is not a list of pids. Never panics.
///
/// ```
/// use portpick::__private::pidns::{parse_nspid, NsPid};
/// let status = b"Name:\tsleep\nNSpid:\t4242\t7\nNSpgid:\t1\n";
/// assert_eq!(parse_nspid(status), Some(NsPid { outer: 4242, inner: 7, levels: 2 }));
/// assert_eq!(parse_nspid(b"Name:\tx\n"), None);
/// ```
pub fn parse_nspid(status: &[u8]) -> Option<NsPid> {
    let line = status
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"NSpid:"))?;
    let mut pids = line
        .split(|&b| b == b'\t' || b == b' ')
        .filter(|f| !f.is_empty())
        .map(parse_pid);
    let outer = pids.next()??;
    let (mut inner, mut levels) = (outer, 1);
    for pid in pids {
        inner = pid?;
        levels += 1;
    }
    Some(NsPid {
        outer,
        inner,
        levels,
    })
}

/// A pid field: 1 to 10 digits that fit a `u32`.
fn parse_pid(field: &[u8]) -> Option<u32> {
    if field.is_empty() || field.len() > 10 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = field
        .iter()
        .fold(0u64, |v, &b| v * 10 + u64::from(b - b'0'));
    u32::try_from(value).ok()
}
