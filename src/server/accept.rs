//! Taking in connections: acceptor threads answer every client whose
//! request is already there (the usual case: clients write their pid right
//! after connecting); the *slow lane*, one thread, owns the connections
//! whose request has not fully arrived and polls them without blocking,
//! each on a backoff from 50 µs to 10 ms, until the request is whole or its
//! deadline passes. So hundreds of silent or trickling clients cost one
//! thread and a bounded list, and never hold up an acceptor.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::protocol::{self, Request, RequestError, Status, MAX_NAMESPACED_LEN};
use crate::server::lifecycle::Shared;
use crate::server::log::{log, Level};

/// A connection whose request has not fully arrived.
pub(super) struct Pending {
    stream: UnixStream,
    buf: [u8; MAX_NAMESPACED_LEN + 1],
    len: usize,
    deadline: Instant,
    next_poll: Instant,
    backoff: Duration,
}

enum ReadState {
    /// The request is whole (or the client finished sending): what it says.
    Done(Result<Request, RequestError>),
    /// More may come.
    Waiting,
    /// The connection failed.
    Failed,
}

impl Pending {
    fn new(stream: UnixStream, timeout: Duration) -> Self {
        let now = Instant::now();
        Pending {
            stream,
            buf: [0; MAX_NAMESPACED_LEN + 1],
            len: 0,
            deadline: now + timeout,
            next_poll: now,
            backoff: Duration::from_micros(50),
        }
    }

    /// Reads what is there without blocking, until the parser has its
    /// answer. The buffer never fills: one byte over the longest request is
    /// an answer ([`RequestError::TooLong`]).
    fn poll(&mut self) -> ReadState {
        loop {
            let at_eof = match self.stream.read(&mut self.buf[self.len..]) {
                Ok(0) => true,
                Ok(n) => {
                    self.len += n;
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadState::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadState::Failed,
            };
            match protocol::parse_request(self.request(), at_eof) {
                Ok(Status::Partial) => {}
                Ok(Status::Complete(request)) => return ReadState::Done(Ok(request)),
                Err(e) => return ReadState::Done(Err(e)),
            }
        }
    }

    /// The bytes received so far.
    fn request(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Answers the whole request.
    fn respond(self, shared: &Shared, parsed: Result<Request, RequestError>) {
        let namespaced = protocol::is_namespaced(self.request());
        shared.respond(self.stream, parsed, namespaced);
    }
}

/// The longest an acceptor sleeps after a failed accept: the slow lane
/// frees descriptors meanwhile (its cap is sized to the limit, so this is
/// rare), and a legitimate client waits no longer than this.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub(super) fn accept_loop(shared: &Shared, listener: &UnixListener, slow: &mpsc::Sender<Pending>) {
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = listener.accept();
        if shared.stopping() {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                stream
            }
            Err(e) => {
                // Repeats (accept on `EMFILE` in a loop) are limited by
                // the log, per call site.
                log!(shared.logger, Level::Warning, "accept failed: {e}");
                // Out of descriptors, say: spinning on accept would only
                // burn a core; let the slow lane shed load.
                backoff = (backoff * 2)
                    .max(Duration::from_millis(1))
                    .min(MAX_ACCEPT_BACKOFF);
                thread::sleep(backoff);
                continue;
            }
        };
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        let mut pending = Pending::new(stream, shared.config.request_timeout);
        // Clients write right after connecting; give the bytes a moment to
        // land before handing the connection to the slow lane.
        let spin_until = Instant::now() + Duration::from_micros(30);
        loop {
            match pending.poll() {
                ReadState::Done(parsed) => {
                    pending.respond(shared, parsed);
                    break;
                }
                ReadState::Failed => break,
                ReadState::Waiting if Instant::now() < spin_until => thread::yield_now(),
                ReadState::Waiting => {
                    shared.counters.pending.fetch_add(1, Ordering::Relaxed);
                    if slow.send(pending).is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

pub(super) fn slow_lane(shared: &Shared, incoming: &mpsc::Receiver<Pending>) {
    let mut waiting: VecDeque<Pending> = VecDeque::new();
    let max = shared.config.max_pending.max(1);
    loop {
        if shared.stopping() {
            return;
        }
        let now = Instant::now();
        let wait = waiting
            .iter()
            .map(|p| p.next_poll.min(p.deadline))
            .min()
            .map_or(Duration::from_millis(100), |t| {
                t.saturating_duration_since(now)
            })
            .min(Duration::from_millis(100));
        match incoming.recv_timeout(wait) {
            Ok(p) => {
                waiting.push_back(p);
                while let Ok(p) = incoming.try_recv() {
                    waiting.push_back(p);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        while waiting.len() > max {
            // The oldest has had the longest chance: shed it. Counted before
            // the close, so a client that sees the close sees the count.
            shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            shared
                .counters
                .request_errors
                .fetch_add(1, Ordering::Relaxed);
            waiting.pop_front();
        }
        let now = Instant::now();
        let mut i = 0;
        while i < waiting.len() {
            let p = &mut waiting[i];
            if p.next_poll > now && p.deadline > now {
                i += 1;
                continue;
            }
            match p.poll() {
                ReadState::Waiting if p.deadline <= now => {
                    shared.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                    shared
                        .counters
                        .request_errors
                        .fetch_add(1, Ordering::Relaxed);
                    waiting.remove(i);
                    log!(
                        shared.logger,
                        Level::Verbose,
                        "Dropped a client that sent no request in time"
                    );
                }
                ReadState::Waiting => {
                    p.next_poll = now + p.backoff;
                    p.backoff = (p.backoff * 2).min(Duration::from_millis(10));
                    i += 1;
                }
                ReadState::Done(parsed) => {
                    if let Some(p) = waiting.remove(i) {
                        p.respond(shared, parsed);
                    }
                }
                ReadState::Failed => {
                    waiting.remove(i);
                }
            }
        }
        shared
            .counters
            .pending
            .store(waiting.len() as u64, Ordering::Relaxed);
    }
}
