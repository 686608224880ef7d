//! Asking a portserver for a port (the client half of the wire protocol).

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::{SocketAddr, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::address::PortServerAddress;
use crate::protocol;

/// How long a whole exchange with a portserver may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a portserver gave no port.
#[derive(Debug)]
#[non_exhaustive]
pub enum PortServerError {
    /// The address string is empty.
    InvalidAddress {
        /// The address as given.
        address: String,
    },
    /// No connection could be made (no server, refused, unsupported name).
    Connect {
        /// The server's address.
        address: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The connection broke while talking.
    Io {
        /// The server's address.
        address: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The server did not answer in time.
    Timeout {
        /// The server's address.
        address: String,
        /// The limit that passed.
        after: Duration,
    },
    /// The server closed the connection without a port: it has none for
    /// this pid, or refused the request.
    NoPort {
        /// The server's address.
        address: String,
    },
    /// The server answered something that is not a port.
    BadReply {
        /// The server's address.
        address: String,
        /// What it said (at most 64 bytes of it).
        reply: Vec<u8>,
    },
}

impl fmt::Display for PortServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortServerError::InvalidAddress { address } => {
                write!(f, "invalid portserver address {address:?}")
            }
            PortServerError::Connect { address, source } => {
                write!(f, "cannot connect to portserver {address:?}: {source}")
            }
            PortServerError::Io { address, source } => {
                write!(f, "error talking to portserver {address:?}: {source}")
            }
            PortServerError::Timeout { address, after } => {
                write!(f, "portserver {address:?} did not answer within {after:?}")
            }
            PortServerError::NoPort { address } => {
                write!(f, "portserver {address:?} gave no port")
            }
            PortServerError::BadReply { address, reply } => write!(
                f,
                "portserver {address:?} answered {:?}, which is not a port",
                String::from_utf8_lossy(reply)
            ),
        }
    }
}

/// `Display` prints the OS's message, so `source()` does not return it
/// again (a chain printer would show it twice); `From<PortServerError> for
/// io::Error` keeps its kind.
impl std::error::Error for PortServerError {}

impl From<PortServerError> for io::Error {
    fn from(e: PortServerError) -> io::Error {
        let kind = match &e {
            PortServerError::InvalidAddress { .. } => io::ErrorKind::InvalidInput,
            PortServerError::Connect { source, .. } | PortServerError::Io { source, .. } => {
                source.kind()
            }
            PortServerError::Timeout { .. } => io::ErrorKind::TimedOut,
            PortServerError::NoPort { .. } => io::ErrorKind::NotFound,
            PortServerError::BadReply { .. } => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

/// Per server address, the connects in progress on helper threads (one
/// stuck on a server that stopped accepting ends only when that server
/// accepts, refuses or goes away). A handful of entries at most.
static CONNECTS: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());

/// At most this many helper threads are connecting to one server at once;
/// past it a client of that server gives up at once (its server is wedged)
/// rather than pile up threads. Other servers are not affected.
const MAX_CONNECTS: usize = 8;

/// Helper threads waiting for a connect to make: `(process, helper id,
/// sender)`. A thread costs more to start than a whole exchange, so they
/// are kept.
static IDLE: Mutex<Vec<(u32, u64, mpsc::Sender<Job>)>> = Mutex::new(Vec::new());
static HELPER_IDS: AtomicU64 = AtomicU64::new(0);

/// Idle helper threads kept at most, and for how long.
const MAX_IDLE: usize = 2;
const IDLE_FOR: Duration = Duration::from_secs(5);

struct Job {
    address: String,
    addr: SocketAddr,
    reply: mpsc::SyncSender<io::Result<UnixStream>>,
}

enum Connected {
    Yes(UnixStream),
    Failed(io::Error),
    NotInTime,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts a connect to `address`; `false` when too many are in progress.
fn enter(address: &str) -> bool {
    let mut connects = lock(&CONNECTS);
    match connects.iter_mut().find(|(a, _)| a == address) {
        Some((_, n)) if *n >= MAX_CONNECTS => false,
        Some((_, n)) => {
            *n += 1;
            true
        }
        None => {
            connects.push((address.to_string(), 1));
            true
        }
    }
}

fn leave(address: &str) {
    let mut connects = lock(&CONNECTS);
    if let Some(i) = connects.iter().position(|(a, _)| a == address) {
        connects[i].1 -= 1;
        if connects[i].1 == 0 {
            connects.swap_remove(i);
        }
    }
}

/// A helper thread: makes the connects it is sent, offering itself as idle
/// after each, and ends when not needed.
fn helper(id: u64, jobs: mpsc::Receiver<Job>, me: mpsc::Sender<Job>) {
    loop {
        let job = match jobs.recv_timeout(IDLE_FOR) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let mut idle = lock(&IDLE);
                match idle.iter().position(|e| e.1 == id) {
                    // Nobody can send to us any more: done.
                    Some(i) => {
                        idle.swap_remove(i);
                        return;
                    }
                    // A client just took us: its job is on its way.
                    None => continue,
                }
            }
        };
        let result = UnixStream::connect_addr(&job.addr);
        leave(&job.address);
        // The client may have given up (its stream, if any, is dropped).
        let _ = job.reply.send(result);
        let mut idle = lock(&IDLE);
        if idle.len() >= MAX_IDLE {
            return;
        }
        idle.push((std::process::id(), id, me.clone()));
    }
}

/// Connects to `addr` (named `address`) within `timeout`.
///
/// A unix connect does not wait for the server to accept: it returns as
/// soon as the connection is queued. But when the server's listen queue is
/// full (a server that stopped accepting: SIGSTOP, a stuck loop) it blocks
/// until there is room, with no limit std lets us set (the socket's send
/// timeout would bound it, but std connects before it can be set; Python's
/// client hangs there too). So the connect runs on a helper thread and the
/// caller waits for it at most `timeout`; a helper that is still stuck then
/// finishes on its own, and the stream it may get is dropped.
fn connect_within(address: &str, addr: SocketAddr, timeout: Duration) -> Connected {
    if !enter(address) {
        return Connected::NotInTime;
    }
    let (reply, answer) = mpsc::sync_channel(1);
    let mut job = Job {
        address: address.to_string(),
        addr,
        reply,
    };
    let pid = std::process::id();
    loop {
        let idle = lock(&IDLE).pop();
        match idle {
            // A helper of this process (not of the one we were forked
            // from, whose threads are not here).
            Some((owner, _, tx)) if owner == pid => match tx.send(job) {
                Ok(()) => break,
                // It ended meanwhile: try the next.
                Err(mpsc::SendError(back)) => job = back,
            },
            Some(_) => {}
            None => {
                let (tx, rx) = mpsc::channel();
                let id = HELPER_IDS.fetch_add(1, Ordering::Relaxed);
                // Cannot fail: `rx` is alive.
                let _ = tx.send(job);
                let spawned = thread::Builder::new()
                    .name("portpick-connect".to_string())
                    .stack_size(64 * 1024)
                    .spawn(move || helper(id, rx, tx));
                if let Err(e) = spawned {
                    leave(address);
                    return Connected::Failed(e);
                }
                break;
            }
        }
    }
    match answer.recv_timeout(timeout) {
        Ok(Ok(stream)) => Connected::Yes(stream),
        Ok(Err(e)) => Connected::Failed(e),
        Err(mpsc::RecvTimeoutError::Timeout) => Connected::NotInTime,
        // The helper ended without an answer: not expected (a connect does
        // not panic), but not a reason to wait.
        Err(mpsc::RecvTimeoutError::Disconnected) => Connected::Failed(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the connecting thread ended",
        )),
    }
}

/// Sends `request` (one line, newline included) to the portserver at
/// `address` and reads its whole answer, within `timeout`. With
/// `one_line`, the answer ends at its first newline, as Python's client
/// takes it: a server that answers but holds the connection open still
/// gave its port.
pub(crate) fn exchange(
    address: &str,
    request: &[u8],
    timeout: Duration,
    limit: usize,
    one_line: bool,
) -> Result<Vec<u8>, PortServerError> {
    let addr: PortServerAddress = address
        .parse()
        .map_err(|_| PortServerError::InvalidAddress {
            address: address.to_string(),
        })?;
    let connect_err = |source| PortServerError::Connect {
        address: address.to_string(),
        source,
    };
    let sockaddr = addr.to_socket_addr().map_err(connect_err)?;
    let deadline = Instant::now() + timeout;
    let timed_out = || PortServerError::Timeout {
        address: address.to_string(),
        after: timeout,
    };
    let mut stream = match connect_within(address, sockaddr, timeout) {
        Connected::Yes(stream) => stream,
        Connected::Failed(source) => return Err(connect_err(source)),
        Connected::NotInTime => return Err(timed_out()),
    };
    // What the connect left of the time; a zero timeout would mean none.
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let io_err = |source: io::Error| {
        if matches!(
            source.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            timed_out()
        } else {
            PortServerError::Io {
                address: address.to_string(),
                source,
            }
        }
    };
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    match stream.write_all(request) {
        Ok(()) => {}
        // A server that refuses the request may close before we finish.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(io_err(e)),
    }
    let mut reply = Vec::with_capacity(8);
    let mut buf = [0u8; 256];
    // One timeout for every read, and the deadline checked after each: a
    // server that trickles bytes is cut off at the deadline (plus at most
    // one read's wait), and an honest one costs no extra system calls.
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(reply),
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if reply.len() > limit {
                    reply.truncate(64);
                    return Err(PortServerError::BadReply {
                        address: address.to_string(),
                        reply,
                    });
                }
                if one_line && reply.contains(&b'\n') {
                    return Ok(reply);
                }
                if Instant::now() > deadline {
                    return Err(io_err(io::ErrorKind::TimedOut.into()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The server closed with our request unread: it gave no port.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(reply),
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// Asks the portserver at `address` for a port for `pid` (our own pid when
/// `None`), waiting at most `timeout` in all.
///
/// # Errors
///
/// [`PortServerError::NoPort`] when the server closes without a port, and
/// the other variants when it cannot be reached, is too slow, or answers
/// something that is not a port.
pub fn get_port_from_port_server_with_timeout(
    address: &str,
    pid: Option<u32>,
    timeout: Duration,
) -> Result<u16, PortServerError> {
    let pid = pid.unwrap_or_else(std::process::id);
    let mut line = itoa_u32(pid);
    line.push(b'\n');
    let reply = exchange(address, &line, timeout, 64, true)?;
    match protocol::parse_reply(&reply) {
        Ok(Some(port)) => Ok(port),
        Ok(None) => Err(PortServerError::NoPort {
            address: address.to_string(),
        }),
        Err(_) => {
            let mut reply = reply;
            reply.truncate(64);
            Err(PortServerError::BadReply {
                address: address.to_string(),
                reply,
            })
        }
    }
}

fn itoa_u32(n: u32) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// Asks the portserver at `address` for its statistics (our `stats\n`
/// extension) and returns the `name value` pairs in the order given.
///
/// # Errors
///
/// As [`get_port_from_port_server_with_timeout`]; a server that does not
/// know the extension (Python's) closes without a word: `NoPort`.
pub fn get_port_server_stats(
    address: &str,
    timeout: Duration,
) -> Result<Vec<(String, u64)>, PortServerError> {
    let reply = exchange(address, protocol::STATS_REQUEST, timeout, 64 * 1024, false)?;
    if reply.is_empty() {
        return Err(PortServerError::NoPort {
            address: address.to_string(),
        });
    }
    protocol::parse_stats(&reply).ok_or_else(|| {
        let mut reply = reply;
        reply.truncate(64);
        PortServerError::BadReply {
            address: address.to_string(),
            reply,
        }
    })
}
