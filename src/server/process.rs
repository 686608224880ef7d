//! Who is alive: the process table seam (pid -> start time), its Linux
//! `/proc` implementation with the pure `/proc/PID/stat` parser, and what a
//! table's answer means for an owner of ports.

use std::fmt;
use std::io;

/// A process as the pool knows it: its pid and its start time, so a reused
/// pid is a different owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// The process id.
    pub pid: u32,
    /// Its start time, as the process table reports it.
    pub start_time: u64,
}

/// What the process table says of an owner.
#[derive(Debug)]
pub enum Presence {
    /// It runs.
    Alive,
    /// No process has its pid and start time: its ports are free to take.
    Gone,
    /// The table could not tell (out of file descriptors, say): the owner
    /// keeps its ports.
    Unknown(io::Error),
}

/// Asks `table` about `owner`. Only "no such process" or another start
/// time mean gone; any failure to read keeps the owner.
pub fn presence(table: &dyn ProcessTable, owner: Owner) -> Presence {
    match table.start_time(owner.pid) {
        Ok(Some(t)) if t == owner.start_time => Presence::Alive,
        Ok(_) => Presence::Gone,
        Err(e) => Presence::Unknown(e),
    }
}

/// A running process as a [`ProcessTable`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    /// Its pid in the table.
    pub pid: u32,
    /// Its start time, as [`ProcessTable::start_time`] reports it.
    pub start_time: u64,
    /// Whether it is a kernel thread, which never exits.
    pub kernel_thread: bool,
}

/// Tells whether a process runs and when it started, so that a port held by
/// pid P is reclaimed when that process is gone, even if P is reused.
///
/// ```
/// use std::io;
/// use portpick::server::ProcessTable;
///
/// /// Every pid runs and started at tick 7.
/// struct Forever;
/// impl ProcessTable for Forever {
///     fn start_time(&self, _pid: u32) -> io::Result<Option<u64>> {
///         Ok(Some(7))
///     }
/// }
/// assert_eq!(Forever.start_time(42).unwrap(), Some(7));
/// ```
pub trait ProcessTable: Send + Sync {
    /// The start time (any unit, monotonic per boot) of the running process
    /// `pid`; `Ok(None)` when no such process runs (a zombie whose threads
    /// have all exited counts as gone: its sockets are closed; one whose
    /// main thread alone exited still runs).
    ///
    /// # Errors
    ///
    /// The table cannot tell now (out of file descriptors, say). The server
    /// then keeps the owner's ports and denies a new request: only a sure
    /// "gone" frees ports.
    fn start_time(&self, pid: u32) -> io::Result<Option<u64>>;

    /// The running process `pid`, with its start time and whether it is a
    /// kernel thread. Default: [`ProcessTable::start_time`], and no kernel
    /// threads.
    ///
    /// # Errors
    ///
    /// As [`ProcessTable::start_time`].
    fn process(&self, pid: u32) -> io::Result<Option<Process>> {
        Ok(self.start_time(pid)?.map(|start_time| Process {
            pid,
            start_time,
            kernel_thread: false,
        }))
    }

    /// The process of this table that is `pid` in the pid namespace whose
    /// inode is `namespace` (a sandboxed client's view); `Ok(None)` when
    /// that namespace has no such process. Default: cannot tell.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::PermissionDenied`] or [`io::ErrorKind::Unsupported`]
    /// when the table cannot see that namespace's processes; any other
    /// error when it cannot tell now (out of file descriptors, say).
    fn find_in_namespace(&self, namespace: u64, pid: u32) -> io::Result<Option<Process>> {
        let _ = (namespace, pid);
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl<T: ProcessTable + ?Sized> ProcessTable for &T {
    fn start_time(&self, pid: u32) -> io::Result<Option<u64>> {
        (**self).start_time(pid)
    }
    fn process(&self, pid: u32) -> io::Result<Option<Process>> {
        (**self).process(pid)
    }
    fn find_in_namespace(&self, namespace: u64, pid: u32) -> io::Result<Option<Process>> {
        (**self).find_in_namespace(namespace, pid)
    }
}

impl<T: ProcessTable + ?Sized> ProcessTable for std::sync::Arc<T> {
    fn start_time(&self, pid: u32) -> io::Result<Option<u64>> {
        (**self).start_time(pid)
    }
    fn process(&self, pid: u32) -> io::Result<Option<Process>> {
        (**self).process(pid)
    }
    fn find_in_namespace(&self, namespace: u64, pid: u32) -> io::Result<Option<Process>> {
        (**self).find_in_namespace(namespace, pid)
    }
}

impl<T: ProcessTable + ?Sized> ProcessTable for Box<T> {
    fn start_time(&self, pid: u32) -> io::Result<Option<u64>> {
        (**self).start_time(pid)
    }
    fn process(&self, pid: u32) -> io::Result<Option<Process>> {
        (**self).process(pid)
    }
    fn find_in_namespace(&self, namespace: u64, pid: u32) -> io::Result<Option<Process>> {
        (**self).find_in_namespace(namespace, pid)
    }
}

/// The Linux process table: field 22 (`starttime`, clock ticks since boot)
/// of `/proc/PID/stat`; namespaced pids are found through `/proc/PID/ns/pid`
/// and `NSpid` (see `crate::pidns`).
#[derive(Debug, Clone, Default)]
pub struct ProcFs {
    namespaces: std::sync::Arc<crate::pidns::Resolver>,
}

impl ProcFs {
    /// The table of the `/proc` this process sees.
    pub fn new() -> Self {
        ProcFs::default()
    }
}

impl ProcessTable for ProcFs {
    fn start_time(&self, pid: u32) -> io::Result<Option<u64>> {
        Ok(read_process(pid)?.map(|p| p.start_time))
    }

    fn process(&self, pid: u32) -> io::Result<Option<Process>> {
        read_process(pid)
    }

    fn find_in_namespace(&self, namespace: u64, pid: u32) -> io::Result<Option<Process>> {
        self.namespaces.resolve(namespace, pid)
    }
}

/// `/proc/PID/stat`, read as [`ProcessTable::process`] says.
pub(crate) fn read_process(pid: u32) -> io::Result<Option<Process>> {
    use std::io::Read;
    let mut path = [0u8; 32];
    let path = proc_stat_path(pid, &mut path);
    // open + read + close into a stack buffer: `fs::read` would add a
    // `statx` and a heap allocation, on the path of every request. The
    // line is short (the command name is at most 15 bytes, 52 numeric
    // fields), so 1 KiB holds field 22 with room to spare.
    // Only "no such file" means no such process: EMFILE or ENFILE here
    // must not read as death, or a live owner's ports go to another.
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The process exited between the open and the read.
            Err(e) if e.raw_os_error() == Some(ESRCH) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    let stat =
        parse_stat(&buf[..len]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(stat.is_running().then_some(Process {
        pid,
        start_time: stat.start_time,
        kernel_thread: stat.is_kernel_thread(),
    }))
}

/// Linux's "no such process", which a read of a vanished `/proc` entry gives.
const ESRCH: i32 = 3;

/// `/proc/<pid>/stat` without a heap allocation for the path.
fn proc_stat_path(pid: u32, buf: &mut [u8; 32]) -> &str {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // 6 + 10 + 5 bytes always fit in 32.
    let _ = write!(cursor, "/proc/{pid}/stat");
    let len = cursor.position() as usize;
    std::str::from_utf8(&buf[..len]).unwrap_or("/proc/0/stat")
}

/// What we need from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z`, `T`, `X`, ...
    pub state: u8,
    /// Field 9: the kernel's `PF_*` flags.
    pub flags: u64,
    /// Field 20: threads in the process, the exited leader included until
    /// the process is reaped.
    pub threads: u64,
    /// Field 22: start time in clock ticks since boot.
    pub start_time: u64,
}

/// `PF_KTHREAD`: the flag (field 9 of `stat`) of a kernel thread.
pub const PF_KTHREAD: u64 = 0x0020_0000;

impl ProcStat {
    /// Whether the process is a kernel thread (`PF_KTHREAD`).
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }

    /// Whether the process still runs. State `Z` is the *leader's* state:
    /// a main thread that called `pthread_exit` shows `Z` while the other
    /// threads run and hold the sockets. An unreaped process whose threads
    /// have all exited counts one thread (the zombie leader), so `Z` with
    /// more than one is alive (checked on Linux 4.x to 6.x: field 20 is 2
    /// for a zombie leader with one live thread, 1 for a plain zombie).
    pub fn is_running(&self) -> bool {
        match self.state {
            b'X' | b'x' => false,
            b'Z' => self.threads > 1,
            _ => true,
        }
    }
}

/// Why a `/proc/PID/stat` line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatError {
    /// No `)` closing the command name.
    NoCommand,
    /// Fewer fields than 22.
    MissingField {
        /// The 1-based field number that is missing.
        field: usize,
    },
    /// The flags are not a number.
    BadFlags,
    /// The thread count is not a number.
    BadThreads,
    /// The start time is not a number.
    BadStartTime,
}

impl fmt::Display for StatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatError::NoCommand => f.write_str("no closing parenthesis after the command name"),
            StatError::MissingField { field } => write!(f, "field {field} is missing"),
            StatError::BadFlags => f.write_str("flags (field 9) are not a number"),
            StatError::BadThreads => f.write_str("thread count (field 20) is not a number"),
            StatError::BadStartTime => f.write_str("start time (field 22) is not a number"),
        }
    }
}

impl std::error::Error for StatError {}

/// Parses the contents of `/proc/PID/stat`. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted from its *last* `)`.
///
/// ```
/// use portpick::__private::server::parse_stat;
/// let line = b"42 (a) b) c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 3 0 98765 0 0";
/// let stat = parse_stat(line).unwrap();
/// assert_eq!(stat.state, b'S');
/// assert!(!stat.is_kernel_thread());
/// assert_eq!(stat.threads, 3);
/// assert_eq!(stat.start_time, 98765);
/// ```
///
/// # Errors
///
/// A [`StatError`] when the line is cut short or malformed; never panics.
pub fn parse_stat(buf: &[u8]) -> Result<ProcStat, StatError> {
    let close = buf
        .iter()
        .rposition(|&b| b == b')')
        .ok_or(StatError::NoCommand)?;
    let rest = &buf[close + 1..];
    // Field 3 is the first after the command name.
    let mut fields = rest.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let state = fields.next().ok_or(StatError::MissingField { field: 3 })?;
    let state = *state.first().ok_or(StatError::MissingField { field: 3 })?;
    let flags = fields
        .nth(9 - 4)
        .ok_or(StatError::MissingField { field: 9 })?;
    let threads = fields
        .nth(20 - 10)
        .ok_or(StatError::MissingField { field: 20 })?;
    let start = fields
        .nth(22 - 21)
        .ok_or(StatError::MissingField { field: 22 })?;
    let start = start.strip_suffix(b"\n").unwrap_or(start);
    let flags = parse_decimal(flags).ok_or(StatError::BadFlags)?;
    let threads = parse_decimal(threads).ok_or(StatError::BadThreads)?;
    let start_time = parse_decimal(start).ok_or(StatError::BadStartTime)?;
    Ok(ProcStat {
        state,
        flags,
        threads,
        start_time,
    })
}

/// A field of ASCII digits that fits a `u64`; the kernel writes no sign
/// and no leading zeros, so more than 20 digits is no `u64`.
fn parse_decimal(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 20 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    field.iter().try_fold(0u64, |v, &b| {
        v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// This boot's identity (`/proc/sys/kernel/random/boot_id`), so a state file
/// from an earlier boot is not mistaken for live owners.
pub(crate) fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty() && !id.contains(char::is_whitespace)).then(|| id.to_string())
}
