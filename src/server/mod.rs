//! The portserver: a daemon on a unix socket that gives each process its own
//! ports and takes them back when the process is gone.
//!
//! Threads, all blocking, their number fixed at start:
//! - `acceptors` (default 2) accept connections and answer every client
//!   whose request is already there (the usual case: clients write their
//!   pid right after connecting);
//! - one *slow lane* thread owns the connections whose request has not
//!   fully arrived. It polls them without blocking, each on a backoff from
//!   50 µs to 10 ms, until the request is whole or its deadline passes. So
//!   hundreds of silent or trickling clients cost one thread and a bounded
//!   list, and never hold up an acceptor;
//! - one *reclaimer* sweeps all owners for dead processes every second (and
//!   at once when the pool runs dry), reading `/proc` outside the pool lock,
//!   and logs statistics at `--verbose`.
//!
//! Stopping sets a flag, wakes each acceptor by connecting to the socket,
//! and joins every thread.

mod config;
mod log;
mod pool;
mod process;
mod ranges;
mod state;

pub use config::{
    parse_args, ArgsError, Command, ServerConfig, DEFAULT_ADDRESS, DEFAULT_MAX_PORTS_PER_PID,
    DEFAULT_POOL, USAGE,
};
pub use log::{Level, Logger};
pub use pool::{Denial, Owner, Pool, PoolStats, MAX_PROBES_PER_REQUEST, OWNER_CHECKS_PER_REQUEST};
pub use process::{parse_stat, ProcFs, ProcStat, ProcessTable, StatError};
pub use ranges::{parse_port_ranges, RangeError};
pub use state::{parse_state, StateContents, StateError, StateFile, StateLineError};

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::address::PortServerAddress;
use crate::probe::{Prober, SocketProber};
use crate::protocol::{self, Request, MAX_REQUEST_LEN};
use log::log;

/// Linux's largest possible pid (`PID_MAX_LIMIT`, 2^22).
const PID_MAX: i64 = 1 << 22;

/// Why a portserver could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// Another server answers on the address.
    AlreadyServing {
        /// The address.
        address: String,
    },
    /// Something that is not a socket sits at the path.
    NotASocket {
        /// The path.
        address: String,
    },
    /// Binding the socket failed.
    Bind {
        /// The address.
        address: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The pool has no port.
    EmptyPool,
    /// The state file cannot be read or written.
    State(StateError),
    /// A thread could not be started.
    Spawn(io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::AlreadyServing { address } => {
                write!(f, "a portserver is already serving on {address}")
            }
            ServerError::NotASocket { address } => {
                write!(f, "{address} exists and is not a socket; not replacing it")
            }
            ServerError::Bind { address, source } => {
                write!(f, "cannot listen on {address}: {source}")
            }
            ServerError::EmptyPool => f.write_str("no ports to serve"),
            ServerError::State(e) => e.fmt(f),
            ServerError::Spawn(e) => write!(f, "cannot start a server thread: {e}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Bind { source, .. } | ServerError::Spawn(source) => Some(source),
            ServerError::State(e) => Some(e),
            _ => None,
        }
    }
}

/// A portserver, ready to start.
///
/// ```no_run
/// use portpick::server::{PortServer, ServerConfig};
///
/// let config = ServerConfig::new("@my-test-rig".parse()?).ports(20000..=20999);
/// let server = PortServer::new(config).start()?;
/// std::env::set_var("PORTSERVER_ADDRESS", "@my-test-rig");
/// let port = portpick::pick_unused_port()?;
/// server.stop();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PortServer {
    config: ServerConfig,
    prober: Arc<dyn Prober>,
    processes: Arc<dyn ProcessTable>,
}

impl fmt::Debug for PortServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortServer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PortServer {
    /// A server with `config`, probing with real sockets and reading
    /// liveness from `/proc`.
    pub fn new(config: ServerConfig) -> Self {
        PortServer {
            config,
            prober: Arc::new(crate::claim::SkipClaimed(SocketProber)),
            processes: Arc::new(ProcFs::new()),
        }
    }

    /// Probes ports with `prober` (default: [`SocketProber`]).
    pub fn prober(mut self, prober: impl Prober + 'static) -> Self {
        self.prober = Arc::new(prober);
        self
    }

    /// Reads liveness from `table` (default: [`ProcFs`]).
    pub fn process_table(mut self, table: impl ProcessTable + 'static) -> Self {
        self.processes = Arc::new(table);
        self
    }

    /// Binds the socket, loads the state file and starts serving.
    ///
    /// # Errors
    ///
    /// [`ServerError`]: the address is taken by a live server or by a file
    /// that is not a socket, the pool is empty, or the state file cannot be
    /// written.
    pub fn start(self) -> Result<ServerHandle, ServerError> {
        let PortServer {
            config,
            prober,
            processes,
        } = self;
        let logger = Logger::new(config.log_level);
        let mut pool = Pool::new(config.ports.iter().copied(), config.max_ports_per_pid);
        if pool.stats().managed == 0 {
            return Err(ServerError::EmptyPool);
        }
        warn_about_kernel_ranges(&logger, &config.ports);
        let journal = match &config.state_file {
            None => None,
            Some(path) => Some(load_state(path, &mut pool, &*processes, &logger)?),
        };
        let listener = bind_listener(&config.address)?;
        let address = config.address.clone();
        let shared = Arc::new(Shared {
            core: Mutex::new(Core { pool, journal }),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            reclaim: (Mutex::new(false), Condvar::new()),
            prober,
            processes,
            logger,
            config,
            started: Instant::now(),
        });
        let (slow_tx, slow_rx) = mpsc::channel::<Pending>();
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(name.to_string())
                .spawn(f)
                .map_err(ServerError::Spawn)
        };
        let result = (|| {
            for i in 0..shared.config.acceptors.max(1) {
                let listener = listener.try_clone().map_err(ServerError::Spawn)?;
                let (s, tx) = (Arc::clone(&shared), slow_tx.clone());
                threads.push(spawn(
                    &format!("portserver-accept-{i}"),
                    Box::new(move || accept_loop(&s, &listener, &tx)),
                )?);
            }
            let s = Arc::clone(&shared);
            threads.push(spawn(
                "portserver-slow",
                Box::new(move || slow_lane(&s, &slow_rx)),
            )?);
            let s = Arc::clone(&shared);
            threads.push(spawn(
                "portserver-reclaim",
                Box::new(move || reclaim_loop(&s)),
            )?);
            Ok(())
        })();
        drop(slow_tx);
        let handle = ServerHandle {
            address,
            shared,
            threads,
            listener: Some(listener),
        };
        match result {
            Ok(()) => {
                log!(
                    handle.shared.logger,
                    Level::Info,
                    "Serving on {}",
                    handle.address
                );
                Ok(handle)
            }
            Err(e) => {
                handle.shutdown();
                Err(e)
            }
        }
    }
}

/// A running portserver. Dropping it stops the server too.
pub struct ServerHandle {
    address: PortServerAddress,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    listener: Option<UnixListener>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Stops a running server from another thread (say, a signal watcher).
#[derive(Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
}

impl fmt::Debug for Stopper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopper").finish_non_exhaustive()
    }
}

impl Stopper {
    /// Asks the server to stop; [`ServerHandle::wait`] then returns.
    pub fn stop(&self) {
        self.shared.request_stop();
    }
}

impl ServerHandle {
    /// Where the server listens.
    pub fn address(&self) -> &PortServerAddress {
        &self.address
    }

    /// The statistics, as the `stats` request answers them.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        self.shared.stats()
    }

    /// A handle that can stop the server from elsewhere.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Stops accepting, finishes the requests in hand, joins every thread
    /// and removes the socket file (for a path address).
    pub fn stop(mut self) {
        self.shutdown_inner();
    }

    /// Serves until a [`Stopper`] stops the server, then shuts down as
    /// [`ServerHandle::stop`].
    pub fn wait(mut self) {
        {
            let (lock, cvar) = &self.shared.reclaim;
            let mut guard = lock_or_recover(lock);
            while !self.shared.stop.load(Ordering::SeqCst) {
                guard = cvar
                    .wait_timeout(guard, Duration::from_millis(200))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        self.shutdown_inner();
    }

    fn shutdown(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        if self.threads.is_empty() && self.listener.is_none() {
            return;
        }
        self.shared.request_stop();
        // Each acceptor is blocked in accept(): one connection wakes one.
        if let Ok(addr) = self.address.to_socket_addr() {
            for _ in 0..self.shared.config.acceptors.max(1) {
                let _ = UnixStream::connect_addr(&addr);
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if self.listener.take().is_some() {
            if let PortServerAddress::Path(p) = &self.address {
                let _ = std::fs::remove_file(p);
            }
            let shared = &self.shared;
            for (name, value) in shared.stats() {
                log!(shared.logger, Level::Info, "{name} {value}");
            }
            log!(shared.logger, Level::Info, "Goodbye.");
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

struct Core {
    pool: Pool,
    journal: Option<StateFile>,
}

#[derive(Default)]
struct Counters {
    request_errors: AtomicU64,
    denied_pid: AtomicU64,
    denied_persist: AtomicU64,
    timed_out: AtomicU64,
    dropped: AtomicU64,
    stats_requests: AtomicU64,
    pending: AtomicU64,
    undelivered: AtomicU64,
}

struct Shared {
    core: Mutex<Core>,
    counters: Counters,
    stop: AtomicBool,
    /// Wakes the reclaimer: `true` when the pool ran dry.
    reclaim: (Mutex<bool>, Condvar),
    prober: Arc<dyn Prober>,
    processes: Arc<dyn ProcessTable>,
    logger: Logger,
    config: ServerConfig,
    started: Instant,
}

fn lock_or_recover<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.reclaim.1.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        let p = lock_or_recover(&self.core).pool.stats();
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("client-request-errors", get(&c.request_errors)),
            (
                "denied-allocations",
                p.denied + get(&c.denied_pid) + get(&c.denied_persist),
            ),
            ("num-ports-managed", p.managed),
            ("num-ports-checked-for-last-request", p.checked_last),
            ("total-allocations", p.allocations),
            ("num-ports-free", p.free),
            ("num-ports-held", p.held),
            ("num-owners", p.owners),
            ("denied-quota", p.denied_quota),
            ("denied-pid", get(&c.denied_pid)),
            ("denied-exhausted", p.denied - p.denied_quota),
            ("denied-state-file", get(&c.denied_persist)),
            ("ports-reclaimed", p.reclaimed),
            ("ports-busy-skipped", p.busy_skipped),
            ("owner-checks", p.owner_checks),
            ("connections-timed-out", get(&c.timed_out)),
            ("connections-dropped", get(&c.dropped)),
            ("connections-pending", get(&c.pending)),
            ("replies-undelivered", get(&c.undelivered)),
            ("stats-requests", get(&c.stats_requests)),
            ("uptime-seconds", self.started.elapsed().as_secs()),
        ]
    }

    /// Answers one whole request on `stream`.
    fn respond(&self, mut stream: UnixStream, request: &[u8]) {
        let reply = match protocol::parse_request(request) {
            Err(e) => {
                self.counters.request_errors.fetch_add(1, Ordering::Relaxed);
                log!(self.logger, Level::Warning, "Could not parse request: {e}");
                return;
            }
            Ok(Request::Stats) => {
                self.counters.stats_requests.fetch_add(1, Ordering::Relaxed);
                protocol::format_stats(self.stats())
            }
            Ok(Request::Allocate { pid }) => match self.allocate(pid) {
                Ok((port, owner)) => {
                    let reply = protocol::format_reply(port);
                    if stream.write_all(&reply).is_err() {
                        // The client left (or cannot be written to): it will
                        // never use the port, so it goes back to the pool.
                        lock_or_recover(&self.core).pool.release_port(port, owner);
                        // Counted after the release: whoever sees the count
                        // sees the port back in the pool.
                        self.counters.undelivered.fetch_add(1, Ordering::Relaxed);
                        log!(
                            self.logger,
                            Level::Verbose,
                            "Client of pid {pid} left before its answer; port {port} returned"
                        );
                    }
                    return;
                }
                Err(_) => return,
            },
        };
        // The socket is non-blocking, and a reply (a port, or the stats: well
        // under 1 KiB) fits in a fresh socket's empty send buffer, so this
        // never waits. If a peer somehow makes it fail, it gets a short
        // answer, which it reads as no port.
        let _ = stream.write_all(&reply);
    }

    fn allocate(&self, pid: i64) -> Result<(u16, Owner), Denial> {
        let denied = |d: Denial| {
            log!(
                self.logger,
                Level::Verbose,
                "Denied a port to pid {pid}: {d}"
            );
            Err(d)
        };
        let pid = match pid {
            i64::MIN..=0 => return self.deny_pid(pid, Denial::InvalidPid),
            1 => return self.deny_pid(pid, Denial::Init),
            p if p > PID_MAX => return self.deny_pid(pid, Denial::PidOutOfRange),
            p => p as u32,
        };
        let Some(start_time) = self.processes.start_time(pid) else {
            return self.deny_pid(i64::from(pid), Denial::NotRunning);
        };
        let owner = Owner { pid, start_time };
        // The pool's steps (`Pool::allocate`), with the probe (two binds,
        // most of an allocation's cost) made without the lock held, so the
        // acceptor threads probe in parallel. The port being probed is out
        // of the queue meanwhile: nobody else can be given it.
        let mut core = lock_or_recover(&self.core);
        let mut budget = 1;
        let mut tries = 0;
        let (mut core, port) = loop {
            let candidate = core
                .pool
                .take_candidate(owner, &*self.processes, tries == 0);
            let port = match candidate {
                Ok(port) => port,
                Err(d) => {
                    drop(core);
                    return self.denied_by_pool(pid, d);
                }
            };
            if tries == 0 {
                budget = core.pool.probe_budget();
            }
            drop(core);
            let free = self.prober.is_port_free(port);
            core = lock_or_recover(&self.core);
            if core.pool.finish_candidate(port, owner, free) {
                break (core, port);
            }
            tries += 1;
            if tries >= budget {
                core.pool.deny_exhausted();
                drop(core);
                return self.denied_by_pool(pid, Denial::Exhausted);
            }
        };
        let Core { pool, journal } = &mut *core;
        if let Some(journal) = journal {
            if let Err(e) = journal.append(port, owner) {
                pool.release_port(port, owner);
                drop(core);
                self.counters.denied_persist.fetch_add(1, Ordering::Relaxed);
                log!(
                    self.logger,
                    Level::Error,
                    "{e}; not handing out port {port}"
                );
                return denied(Denial::NotPersisted);
            }
            if journal.wants_compaction(pool.stats().held as usize) {
                if let Err(e) = journal.compact(pool.held()) {
                    log!(
                        self.logger,
                        Level::Error,
                        "{e}; still appending to the old journal"
                    );
                }
            }
        }
        drop(core);
        log!(
            self.logger,
            Level::Verbose,
            "Allocated port {port} to pid {pid}"
        );
        Ok((port, owner))
    }

    /// A denial the pool gave (quota, exhausted): logged, and when the pool
    /// is dry the background sweep is woken to find dead owners' ports.
    fn denied_by_pool(&self, pid: u32, d: Denial) -> Result<(u16, Owner), Denial> {
        if d == Denial::Exhausted {
            *lock_or_recover(&self.reclaim.0) = true;
            self.reclaim.1.notify_all();
        }
        log!(
            self.logger,
            Level::Verbose,
            "Denied a port to pid {pid}: {d}"
        );
        Err(d)
    }

    fn deny_pid(&self, pid: i64, d: Denial) -> Result<(u16, Owner), Denial> {
        self.counters.denied_pid.fetch_add(1, Ordering::Relaxed);
        log!(
            self.logger,
            Level::Verbose,
            "Denied a port to pid {pid}: {d}"
        );
        Err(d)
    }
}

/// A connection whose request has not fully arrived.
struct Pending {
    stream: UnixStream,
    buf: [u8; MAX_REQUEST_LEN + 1],
    len: usize,
    deadline: Instant,
    next_poll: Instant,
    backoff: Duration,
}

enum ReadState {
    /// The request is whole (or the client finished sending).
    Done,
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
            buf: [0; MAX_REQUEST_LEN + 1],
            len: 0,
            deadline: now + timeout,
            next_poll: now,
            backoff: Duration::from_micros(50),
        }
    }

    /// Reads what is there without blocking.
    fn poll(&mut self) -> ReadState {
        loop {
            if protocol::is_complete(&self.buf[..self.len]) {
                return ReadState::Done;
            }
            match self.stream.read(&mut self.buf[self.len..]) {
                Ok(0) => return ReadState::Done,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadState::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return ReadState::Failed,
            }
        }
    }
}

fn accept_loop(shared: &Shared, listener: &UnixListener, slow: &mpsc::Sender<Pending>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping() {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                log!(shared.logger, Level::Warning, "accept failed: {e}");
                // Out of file descriptors, say: let the slow lane shed load.
                thread::sleep(Duration::from_millis(10));
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
                ReadState::Done => {
                    shared.respond(pending.stream, &pending.buf[..pending.len]);
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

fn slow_lane(shared: &Shared, incoming: &mpsc::Receiver<Pending>) {
    let mut waiting: std::collections::VecDeque<Pending> = std::collections::VecDeque::new();
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
                ReadState::Done => {
                    if let Some(p) = waiting.remove(i) {
                        shared.respond(p.stream, &p.buf[..p.len]);
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

fn reclaim_loop(shared: &Shared) {
    let interval = shared
        .config
        .reclaim_interval
        .max(Duration::from_millis(10));
    // A flood of "no port" answers wakes us each time; sweeping more often
    // than this would only burn a core on /proc reads.
    let min_gap = interval.min(Duration::from_millis(20));
    let mut last_stats = Instant::now();
    let mut last_sweep = Instant::now();
    loop {
        let since = last_sweep.elapsed();
        if since < min_gap {
            thread::sleep(min_gap - since);
        }
        {
            let (lock, cvar) = &shared.reclaim;
            let mut dry = lock_or_recover(lock);
            if !*dry && !shared.stopping() {
                dry = cvar
                    .wait_timeout(dry, interval)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            *dry = false;
        }
        if shared.stopping() {
            return;
        }
        last_sweep = Instant::now();
        let owners = lock_or_recover(&shared.core).pool.owners();
        let dead: Vec<Owner> = owners
            .into_iter()
            .filter(|o| shared.processes.start_time(o.pid) != Some(o.start_time))
            .collect();
        if !dead.is_empty() {
            let mut core = lock_or_recover(&shared.core);
            let mut n = 0;
            for owner in &dead {
                n += core.pool.release_owner(*owner);
            }
            drop(core);
            log!(
                shared.logger,
                Level::Debug,
                "Reclaimed {n} ports from {} dead owners",
                dead.len()
            );
        }
        if let Some(every) = shared.config.stats_interval {
            if shared.logger.enabled(Level::Verbose) && last_stats.elapsed() >= every {
                last_stats = Instant::now();
                for (name, value) in shared.stats() {
                    log!(shared.logger, Level::Verbose, "{name} {value}");
                }
            }
        }
    }
}

fn bind_listener(address: &PortServerAddress) -> Result<UnixListener, ServerError> {
    let name = address.to_string();
    let bind_err = |source: io::Error| {
        if source.kind() == io::ErrorKind::AddrInUse {
            ServerError::AlreadyServing {
                address: name.clone(),
            }
        } else {
            ServerError::Bind {
                address: name.clone(),
                source,
            }
        }
    };
    let addr = address.to_socket_addr().map_err(bind_err)?;
    if let PortServerAddress::Path(path) = address {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(ServerError::NotASocket { address: name });
            }
            // A live server answers; a leftover of a killed one refuses.
            match UnixStream::connect_addr(&addr) {
                Ok(_) => return Err(ServerError::AlreadyServing { address: name }),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    let _ = std::fs::remove_file(path);
                }
                Err(_) => {}
            }
        }
    }
    UnixListener::bind_addr(&addr).map_err(bind_err)
}

fn load_state(
    path: &std::path::Path,
    pool: &mut Pool,
    processes: &dyn ProcessTable,
    logger: &Logger,
) -> Result<StateFile, ServerError> {
    let contents = StateFile::load(path).map_err(ServerError::State)?;
    let boot = process::boot_id();
    if contents.bad_header {
        log!(
            logger,
            Level::Warning,
            "State file {} has no valid header; reading what it can",
            path.display()
        );
    }
    for e in contents.errors.iter().take(5) {
        log!(
            logger,
            Level::Warning,
            "State file {}: skipping {e}",
            path.display()
        );
    }
    if contents.errors.len() > 5 {
        log!(
            logger,
            Level::Warning,
            "State file {}: {} bad lines in all",
            path.display(),
            contents.errors.len()
        );
    }
    let same_boot = match (&contents.boot_id, &boot) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    let (mut kept, mut gone, mut outside) = (0usize, 0usize, 0usize);
    if same_boot {
        // Later lines win: walk backwards and keep the first seen per port.
        let mut seen = vec![false; 65536];
        for &(port, owner) in contents.entries.iter().rev() {
            if std::mem::replace(&mut seen[port as usize], true) {
                continue;
            }
            if !pool.manages(port) {
                outside += 1;
            } else if processes.start_time(owner.pid) != Some(owner.start_time) {
                gone += 1;
            } else if pool.restore(port, owner) {
                kept += 1;
            }
        }
    } else if !contents.entries.is_empty() {
        log!(
            logger,
            Level::Info,
            "State file {} is from an earlier boot; its owners are gone",
            path.display()
        );
        gone = contents.entries.len();
    }
    if !contents.entries.is_empty() || !contents.errors.is_empty() {
        log!(
            logger,
            Level::Info,
            "State file {}: restored {kept} reservations, dropped {gone} of gone owners, {outside} outside the pool",
            path.display()
        );
    }
    StateFile::create(path, boot, pool.held()).map_err(ServerError::State)
}

/// Warns in one line when pool ports fall in the kernel's ephemeral range
/// (outgoing connections take those) or its reserved ports.
fn warn_about_kernel_ranges(logger: &Logger, ports: &[u16]) {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let ephemeral = read("/proc/sys/net/ipv4/ip_local_port_range").and_then(|s| {
        let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
        Some((it.next()??, it.next()??))
    });
    let reserved: Vec<(u16, u16)> = read("/proc/sys/net/ipv4/ip_local_reserved_ports")
        .map(|s| {
            s.trim()
                .split(',')
                .filter_map(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let in_ephemeral = ephemeral.map_or(0, |(lo, hi)| {
        ports.iter().filter(|&&p| p >= lo && p <= hi).count()
    });
    let in_reserved = ports
        .iter()
        .filter(|&&p| reserved.iter().any(|&(lo, hi)| p >= lo && p <= hi))
        .count();
    if in_ephemeral > 0 || in_reserved > 0 {
        let (lo, hi) = ephemeral.unwrap_or((0, 0));
        log!(
            logger,
            Level::Warning,
            "{in_ephemeral} of {} pool ports are in the kernel's ephemeral range {lo}-{hi} (outgoing connections may take them) and {in_reserved} in ip_local_reserved_ports",
            ports.len()
        );
    }
}
