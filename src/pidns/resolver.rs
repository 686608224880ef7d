//! The cached search of our `/proc` for pid N of pid namespace NS: the
//! `Resolver` (what it found, re-checked on each hit) and the `Index` it
//! keeps of one read through `/proc` (who was in which namespace).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{
    namespace_of, no_nspid, own_namespace, parse_nspid, parse_pid, proc_shows_own_namespace,
};
use crate::server::process::{read_process, Process};
use crate::sync::lock;

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

/// How long one read of all of `/proc` answers for what it did not find.
/// Requests naming a namespace nobody can see, or a pid its members do not
/// have, cost a read through thousands of processes each; anyone can send
/// them, so they are answered from the last read for this long.
const INDEX_FRESH: Duration = Duration::from_secs(1);

/// Which processes were in which pid namespace when `/proc` was last read
/// through. What it lacks is looked for among the processes `/proc` lists
/// now and did not list then (a sandbox made since, a process forked since),
/// so a client is found even when someone asked for its pid before it was
/// born. Its size follows the number of processes, not of requests.
#[derive(Debug)]
struct Index {
    taken: Instant,
    /// The last pid the kernel gave out before the listing: while it has
    /// not changed, no process was born since (a sandbox's are given pids
    /// of ours too), and the listing need not be read again.
    last_pid: Option<u32>,
    /// Every pid `/proc` listed, sorted.
    listed: Vec<u32>,
    /// The pids of each pid namespace whose link could be read, newest first.
    members: HashMap<u64, Vec<u32>>,
}

impl Index {
    /// Reads the namespace of every process in `/proc`.
    fn read() -> io::Result<Index> {
        let taken = Instant::now();
        let last_pid = last_pid();
        let listed = list_proc()?;
        let mut members: HashMap<u64, Vec<u32>> = HashMap::new();
        for &host in listed.iter().rev() {
            if let Some(ns) = member_of(host)? {
                members.entry(ns).or_default().push(host);
            }
        }
        Ok(Index {
            taken,
            last_pid,
            listed,
            members,
        })
    }

    /// The process that is `pid` in `ns`, among this index's members of
    /// `ns` and (unless the index was `just_read`) the processes of `ns`
    /// that `/proc` lists now and did not then, newest first (a client
    /// asking for a port has usually just started).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::PermissionDenied`] when no process of `ns` can be
    /// seen (their namespace cannot be read, or `hidepid` hides them): the
    /// asking client is one of them, so they exist. Once one member is
    /// seen, a pid not found is no such process (the ones we cannot read
    /// are, in practice, outside: here, as root, `/proc/1` of a container
    /// can be unreadable). Another error when `/proc` cannot be read now.
    fn find(&self, ns: u64, pid: u32, just_read: bool) -> io::Result<Option<Process>> {
        let mut candidates = Vec::new();
        if !just_read && (self.last_pid.is_none() || last_pid() != self.last_pid) {
            // A pid listed then and reused since by a process of `ns` is
            // missed until the next read: a wrap of the whole pid space
            // within `INDEX_FRESH`.
            for host in list_proc()?.into_iter().rev() {
                if self.listed.binary_search(&host).is_err() && member_of(host)? == Some(ns) {
                    candidates.push(host);
                }
            }
        }
        if let Some(members) = self.members.get(&ns) {
            candidates.extend_from_slice(members);
        }
        if candidates.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "no process of that pid namespace can be seen in /proc",
            ));
        }
        for host in candidates {
            if let Some(process) = check(host, ns, pid)? {
                return Ok(Some(process));
            }
        }
        Ok(None)
    }
}

/// The last pid given out in our pid namespace; `None` when it cannot be
/// read (then the listing is read every time).
fn last_pid() -> Option<u32> {
    let text = fs::read("/proc/sys/kernel/ns_last_pid").ok()?;
    parse_pid(text.strip_suffix(b"\n").unwrap_or(&text))
}

/// The pids `/proc` lists now, sorted.
fn list_proc() -> io::Result<Vec<u32>> {
    let mut hosts: Vec<u32> = fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    hosts.sort_unstable();
    Ok(hosts)
}

/// The pid namespace of `/proc/HOST`; `None` when it has gone or its link
/// cannot be read (another user's, without privilege).
fn member_of(host: u32) -> io::Result<Option<u64>> {
    match namespace_of(&host.to_string()) {
        Ok(ns) => Ok(Some(ns)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(None),
        Err(e) => Err(e),
    }
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
    Index::read()?.find(ns, pid, true)
}

/// The namespace our `/proc` shows, when we can tell (it is ours).
fn proc_namespace() -> Option<u64> {
    static PROC: OnceLock<Option<u64>> = OnceLock::new();
    *PROC.get_or_init(|| proc_shows_own_namespace().ok()?.then(own_namespace)?.ok())
}

/// More remembered pids than this and the cache starts over.
const CACHE_CAP: usize = 4096;

/// [`resolve`] with a cache of what it found, each hit checked again (a
/// process may have exited, and a dead namespace's inode may be reused),
/// and with `/proc` read through at most once a second (see `Index`).
#[derive(Debug)]
pub struct Resolver {
    found: Mutex<HashMap<(u64, u32), u32>>,
    /// The last read through `/proc`.
    index: Mutex<Option<Arc<Index>>>,
    /// Held through a read of all of `/proc`: one at a time, so that
    /// requests naming processes nobody can find keep at most one acceptor
    /// busy, and the ones waiting use its result.
    scanning: Mutex<()>,
    /// How long an index answers: [`INDEX_FRESH`]; tests make it longer.
    fresh_for: Duration,
    /// How many times `/proc` was read through, for tests.
    scans: AtomicUsize,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::fresh_for(INDEX_FRESH)
    }
}

impl Resolver {
    fn fresh_for(fresh_for: Duration) -> Self {
        Resolver {
            found: Mutex::default(),
            index: Mutex::default(),
            scanning: Mutex::default(),
            fresh_for,
            scans: AtomicUsize::new(0),
        }
    }

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
        self.find(ns, pid)
    }

    /// [`Resolver::resolve`] for a namespace `/proc` does not show (or so
    /// tests take it).
    fn find(&self, ns: u64, pid: u32) -> io::Result<Option<Process>> {
        if let Some(process) = self.cached(ns, pid)? {
            return Ok(Some(process));
        }
        let (index, just_read) = self.index()?;
        let found = index.find(ns, pid, just_read)?;
        if let Some(process) = found {
            let mut cache = lock(&self.found);
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
            cache.insert((ns, pid), process.pid);
        }
        Ok(found)
    }

    /// The index, read again when it is older than `fresh_for`; and
    /// whether it was read just now.
    fn index(&self) -> io::Result<(Arc<Index>, bool)> {
        if let Some(index) = self.fresh_index() {
            return Ok((index, false));
        }
        let _scanning = lock(&self.scanning);
        // The read before ours, which we waited for, will do.
        if let Some(index) = self.fresh_index() {
            return Ok((index, false));
        }
        self.scans.fetch_add(1, Ordering::Relaxed);
        let index = Arc::new(Index::read()?);
        *lock(&self.index) = Some(Arc::clone(&index));
        Ok((index, true))
    }

    fn fresh_index(&self) -> Option<Arc<Index>> {
        let index = lock(&self.index).clone()?;
        (index.taken.elapsed() < self.fresh_for).then_some(index)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver whose index stays fresh through the test, however slow
    /// the machine.
    fn patient() -> Resolver {
        Resolver::fresh_for(Duration::from_secs(3600))
    }

    #[test]
    fn repeated_requests_for_an_unknown_namespace_cost_one_scan() {
        let resolver = patient();
        // Inode 1 is no pid namespace: nobody is in it.
        for _ in 0..100 {
            let err = resolver.resolve(1, 7).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        }
        assert_eq!(resolver.scans.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_process_born_after_the_scan_is_found_without_another() {
        let resolver = patient();
        assert!(resolver.resolve(1, 7).is_err());
        // Our own namespace, named as a sandbox's client names it: found
        // among the processes listed since (a child) or known (us).
        let Ok(ours) = own_namespace() else {
            return;
        };
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap();
        let found = resolver.find(ours, child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.unwrap().map(|p| p.pid), Some(child.id()));
        assert_eq!(resolver.scans.load(Ordering::Relaxed), 1);
    }
}
