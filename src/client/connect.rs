//! The bounded connect: a unix connect to a server whose listen queue is
//! full blocks with no limit std lets us set, so it runs on a connect thread
//! and the caller waits for it at most its timeout. Connect threads are
//! reused, and a wedged server can hold only a few of them.

use std::io;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

use crate::sync::lock;

/// Per server address, the connects in progress on connect threads (one
/// stuck on a server that stopped accepting ends only when that server
/// accepts, refuses or goes away). A handful of entries at most.
static CONNECTS: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());

/// At most this many connect threads are connecting to one server at once;
/// past it a client of that server gives up at once (its server is wedged)
/// rather than pile up threads. Other servers are not affected.
const MAX_CONNECTS: usize = 8;

/// Connect threads waiting for a connect to make: `(process, thread id,
/// sender)`. A thread costs more to start than a whole exchange, so they
/// are kept.
static IDLE: Mutex<Vec<(u32, u64, mpsc::Sender<Job>)>> = Mutex::new(Vec::new());
static THREAD_IDS: AtomicU64 = AtomicU64::new(0);

/// Idle connect threads kept at most, and for how long.
const MAX_IDLE: usize = 2;
const IDLE_FOR: Duration = Duration::from_secs(5);

struct Job {
    address: String,
    addr: SocketAddr,
    reply: mpsc::SyncSender<io::Result<UnixStream>>,
}

pub(super) enum Connected {
    Yes(UnixStream),
    Failed(io::Error),
    NotInTime,
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

/// A connect thread: makes the connects it is sent, offering itself as idle
/// after each, and ends when not needed.
fn connect_thread(id: u64, jobs: mpsc::Receiver<Job>, me: mpsc::Sender<Job>) {
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
/// client hangs there too). So the connect runs on a connect thread and the
/// caller waits for it at most `timeout`; a connect thread still stuck then
/// finishes on its own, and the stream it may get is dropped.
pub(super) fn connect_within(address: &str, addr: SocketAddr, timeout: Duration) -> Connected {
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
            // A connect thread of this process (not of the one we were
            // forked from, whose threads are not here).
            Some((owner, _, tx)) if owner == pid => match tx.send(job) {
                Ok(()) => break,
                // It ended meanwhile: try the next.
                Err(mpsc::SendError(back)) => job = back,
            },
            Some(_) => {}
            None => {
                let (tx, rx) = mpsc::channel();
                let id = THREAD_IDS.fetch_add(1, Ordering::Relaxed);
                // Cannot fail: `rx` is alive.
                let _ = tx.send(job);
                let spawned = thread::Builder::new()
                    .name("portpick-connect".to_string())
                    .stack_size(64 * 1024)
                    .spawn(move || connect_thread(id, rx, tx));
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
        // The connect thread ended without an answer: not expected (a
        // connect does not panic), but not a reason to wait.
        Err(mpsc::RecvTimeoutError::Disconnected) => Connected::Failed(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the connecting thread ended",
        )),
    }
}
