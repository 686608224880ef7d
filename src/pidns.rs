//! Pid namespaces: which one this process is in, whether `/proc` shows it,
//! and which process of our `/proc` is pid N of namespace NS (a sandboxed
//! client's view), with the pure `NSpid` parser.
//!
//! A namespace is named by the inode of its `/proc/PID/ns/pid` link, the
//! same number inside and outside it. Reading another process's link needs
//! ptrace-read access (same user, root or `CAP_SYS_PTRACE`); `stat` and
//! `status` are world-readable.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, OnceLock};

use crate::server::process::{read_process, Process};
use crate::sync::lock;

/// The inode of the host's (initial) pid namespace: the kernel's
/// `PROC_PID_INIT_INO`, the same on every Linux.
pub const INIT_NAMESPACE: u64 = 0xEFFF_FFFC;

/// The inode of this process's pid namespace, read once (a process never
/// changes its own: `unshare` and `setns` move only its later children).
///
/// # Errors
///
/// `/proc` is not mounted or cannot be read.
pub fn own_namespace() -> io::Result<u64> {
    static OWN: OnceLock<Result<u64, io::ErrorKind>> = OnceLock::new();
    OWN.get_or_init(|| namespace_of("self").map_err(|e| e.kind()))
        .map_err(io::Error::from)
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

/// Whether `/proc/HOST` is the process that is `pid` in namespace `ns`:
/// its start time (and kernel-thread flag) is read first, then its
/// namespace and `NSpid` are checked, so a pid reused between the reads
/// would have to be reused by a process of the same namespace with the
/// same inner pid to fool it.
fn check(host: u32, ns: u64, pid: u32) -> io::Result<Option<Process>> {
    let Some(process) = read_process(host)? else {
        return Ok(None);
    };
    match namespace_of(&host.to_string()) {
        Ok(found) if found == ns => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let status = match fs::read(format!("/proc/{host}/status")) {
        Ok(status) => status,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(ESRCH) => return Ok(None),
        Err(e) => return Err(e),
    };
    let nspid = parse_nspid(&status).ok_or_else(no_nspid)?;
    Ok((nspid.inner == pid).then_some(process))
}

/// Linux's "no such process", which a read of a vanished `/proc` entry gives.
const ESRCH: i32 = 3;

/// Finds the process that is `pid` in the pid namespace `ns` among all of
/// `/proc`, newest first (a client asking for a port has usually just
/// started).
///
/// # Errors
///
/// [`io::ErrorKind::PermissionDenied`] when no process of `ns` can be seen
/// (their namespace cannot be read, or `hidepid` hides them): the asking
/// client is one of them, so they exist. Once one member is seen, a pid
/// not found is no such process (the ones we cannot read are, in practice,
/// outside: here, as root, `/proc/1` of a container can be unreadable).
/// Another error when `/proc` cannot be read now.
fn scan(ns: u64, pid: u32) -> io::Result<Option<Process>> {
    let mut hosts: Vec<u32> = fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    hosts.sort_unstable_by(|a, b| b.cmp(a));
    let mut members = false;
    for host in hosts {
        match namespace_of(&host.to_string()) {
            Ok(found) if found == ns => {
                members = true;
                if let Some(process) = check(host, ns, pid)? {
                    return Ok(Some(process));
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(e),
        }
    }
    if !members {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "no process of that pid namespace can be seen in /proc",
        ));
    }
    Ok(None)
}

/// The process of our `/proc` that is `pid` in the pid namespace whose
/// inode is `ns`, read without a cache: its pid here, its start time and
/// whether it is a kernel thread. `Ok(None)`: that namespace has no such
/// process.
///
/// # Errors
///
/// As `Resolver::resolve`.
pub fn resolve(ns: u64, pid: u32) -> io::Result<Option<Process>> {
    if Some(ns) == proc_namespace() {
        return read_process(pid);
    }
    scan(ns, pid)
}

/// The namespace our `/proc` shows, when we can tell (it is ours).
fn proc_namespace() -> Option<u64> {
    static PROC: OnceLock<Option<u64>> = OnceLock::new();
    *PROC.get_or_init(|| proc_shows_own_namespace().ok()?.then(own_namespace)?.ok())
}

/// More remembered pids than this and the cache starts over.
const CACHE_CAP: usize = 4096;

/// [`resolve`] with a cache of what it found, each hit checked again (a
/// process may have exited, and a dead namespace's inode may be reused).
#[derive(Debug, Default)]
pub struct Resolver {
    found: Mutex<HashMap<(u64, u32), u32>>,
    /// Held through a scan of `/proc`: one at a time, so that requests
    /// naming processes nobody can find (tens of milliseconds each with
    /// thousands of processes) keep at most one acceptor busy.
    scanning: Mutex<()>,
}

impl Resolver {
    /// The process of our `/proc` that is `pid` in the pid namespace `ns`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::PermissionDenied`] when this process cannot see
    /// that namespace's processes (another user's without privilege, or
    /// hidden by `hidepid`); any other error when `/proc` cannot be read
    /// now (out of file descriptors, say).
    pub fn resolve(&self, ns: u64, pid: u32) -> io::Result<Option<Process>> {
        if Some(ns) == proc_namespace() {
            return read_process(pid);
        }
        if let Some(process) = self.cached(ns, pid)? {
            return Ok(Some(process));
        }
        let _scanning = lock(&self.scanning);
        // The scan before ours may have found it.
        if let Some(process) = self.cached(ns, pid)? {
            return Ok(Some(process));
        }
        let found = scan(ns, pid)?;
        if let Some(process) = found {
            let mut cache = lock(&self.found);
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
            cache.insert((ns, pid), process.pid);
        }
        Ok(found)
    }

    /// The cached process for `pid` of `ns`, if it is still that process
    /// (an entry that is not is dropped).
    fn cached(&self, ns: u64, pid: u32) -> io::Result<Option<Process>> {
        let Some(host) = lock(&self.found).get(&(ns, pid)).copied() else {
            return Ok(None);
        };
        let process = check(host, ns, pid)?;
        if process.is_none() {
            lock(&self.found).remove(&(ns, pid));
        }
        Ok(process)
    }
}
