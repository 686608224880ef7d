//! The server's lifecycle: [`PortServer`] (configure, start), the state its
//! threads share, and [`ServerHandle`] and [`Stopper`] (stop, wait).

mod banner;
mod startup;

use std::fmt;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::address::PortServerAddress;
use crate::probe::{Prober, SocketProber};
use crate::server::accept::{accept_loop, slow_lane, Pending};
use crate::server::config::ServerConfig;
use crate::server::error::ServerError;
use crate::server::listen::SocketFile;
use crate::server::log::{log, Level, Logger};
use crate::server::pool::Pool;
use crate::server::process::{Owner, ProcFs, ProcessTable};
use crate::server::reclaim::reclaim_loop;
use crate::server::respond::Counters;
use crate::server::state::{StateFile, StateLock};
use crate::sync::lock;
use startup::{fit_to_descriptor_limit, take_over, unbind, warn_about_kernel_ranges};

/// A portserver, ready to start.
///
/// ```no_run
/// use portpick::server::{PortServer, ServerConfig};
///
/// let config = ServerConfig::new("@my-test-rig".parse()?).ports(20000..=20999);
/// let server = PortServer::new(config).start()?;
/// let port = portpick::get_port_from_port_server("@my-test-rig", None)?;
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
            // Ports a local picker has claimed count as busy, so a host
            // that mixes picking with and without the server never gives a
            // port twice.
            prober: Arc::new(crate::claim::SkipClaimed(SocketProber)),
            processes: Arc::new(ProcFs::new()),
        }
    }

    /// Probes ports with `prober` (default: [`SocketProber`], plus a port
    /// that a local picker has claimed counts as busy; a prober given here
    /// replaces both).
    pub fn prober(mut self, prober: impl Prober + 'static) -> Self {
        self.prober = Arc::new(prober);
        self
    }

    /// Reads liveness from `table` (default: Linux's `/proc`).
    pub fn process_table(mut self, table: impl ProcessTable + 'static) -> Self {
        self.processes = Arc::new(table);
        self
    }

    /// Takes the state file's lock, binds the socket, loads the state file
    /// and starts serving. A start that fails has changed nothing that
    /// another server owns.
    ///
    /// # Errors
    ///
    /// [`ServerError`]: the address is taken by a live server or by a file
    /// that is not a socket, the pool is empty, the state file is in use by
    /// another server ([`crate::server::StateError::InUse`]) or cannot be
    /// written.
    pub fn start(self) -> Result<ServerHandle, ServerError> {
        let PortServer {
            mut config,
            prober,
            processes,
        } = self;
        let logger = Logger::spawn(config.log_level, config.log_output.clone());
        fit_to_descriptor_limit(&mut config, &logger);
        let mut pool = Pool::new(config.ports.iter().copied(), config.max_ports_per_pid);
        if pool.stats().managed == 0 {
            return Err(ServerError::EmptyPool);
        }
        warn_about_kernel_ranges(&logger, &config.ports);
        let taken = take_over(&config, &mut pool, &*processes, &logger)?;
        let address = config.address.clone();
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                pool,
                journal: taken.journal,
                outside: taken.outside,
            }),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            pool_dry: Bell::default(),
            stopped: Bell::default(),
            prober,
            processes,
            logger,
            config,
            started: Instant::now(),
        });
        let mut handle = ServerHandle {
            address,
            shared,
            threads: Vec::new(),
            listener: Some(taken.listener),
            socket_file: taken.socket_file,
            state_lock: taken.lock,
        };
        match handle.spawn_threads() {
            Ok(()) => {
                let shared = &handle.shared;
                if shared.logger.enabled(Level::Info) {
                    let managed = lock(&shared.core).pool.stats().managed;
                    let line = banner::serving_line(&shared.config, managed);
                    log!(shared.logger, Level::Info, "{line}");
                }
                Ok(handle)
            }
            Err(e) => {
                handle.shutdown();
                Err(e)
            }
        }
    }
}

/// The pool and its journal, under one lock: a port is journaled in the
/// order it was given, so the journal's last word on a port is the pool's.
pub(super) struct Core {
    pub(super) pool: Pool,
    pub(super) journal: Option<StateFile>,
    /// Reservations of live owners for ports outside the pool, read back
    /// from the journal (a restart with another pool): journaled at every
    /// rewrite, dropped when their owner is gone, never handed out.
    pub(super) outside: Vec<(u16, Owner)>,
}

/// A flag and the condition variable to sleep on it: one thread rings,
/// another sleeps until rung or a timeout passes.
#[derive(Default)]
pub(super) struct Bell {
    rung: Mutex<bool>,
    cvar: Condvar,
}

impl Bell {
    pub(super) fn ring(&self) {
        *lock(&self.rung) = true;
        self.cvar.notify_all();
    }

    /// Sleeps until the bell rings or `timeout` passes (returns at once if
    /// it rang since the last wait), and silences it.
    pub(super) fn wait(&self, timeout: Duration) {
        let mut rung = lock(&self.rung);
        if !*rung {
            rung = self
                .cvar
                .wait_timeout(rung, timeout)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        *rung = false;
    }
}

/// What every server thread shares.
pub(super) struct Shared {
    pub(super) core: Mutex<Core>,
    pub(super) counters: Counters,
    stop: AtomicBool,
    /// Rung when the pool ran dry: the reclaimer sweeps at once.
    pub(super) pool_dry: Bell,
    /// Rung when a stop is requested.
    stopped: Bell,
    pub(super) prober: Arc<dyn Prober>,
    pub(super) processes: Arc<dyn ProcessTable>,
    pub(super) logger: Logger,
    pub(super) config: ServerConfig,
    pub(super) started: Instant,
}

impl Shared {
    fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.pool_dry.ring();
        self.stopped.ring();
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A running portserver. Dropping it stops the server too.
pub struct ServerHandle {
    address: PortServerAddress,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    listener: Option<UnixListener>,
    /// For a path address: the socket file bound, removed at stop if the
    /// path still holds it.
    socket_file: Option<SocketFile>,
    /// Held while serving: no other server touches the state file.
    state_lock: Option<StateLock>,
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
        while !self.shared.stopping() {
            self.shared.stopped.wait(Duration::from_millis(200));
        }
        self.shutdown_inner();
    }

    /// The acceptors, the slow lane and the reclaimer.
    fn spawn_threads(&mut self) -> Result<(), ServerError> {
        let (slow_tx, slow_rx) = mpsc::channel::<Pending>();
        for i in 0..self.shared.config.acceptors.max(1) {
            let listener = match &self.listener {
                Some(listener) => listener.try_clone().map_err(ServerError::Spawn)?,
                None => return Ok(()),
            };
            let (s, tx) = (Arc::clone(&self.shared), slow_tx.clone());
            self.spawn(&format!("portserver-accept-{i}"), move || {
                accept_loop(&s, &listener, &tx)
            })?;
        }
        drop(slow_tx);
        let s = Arc::clone(&self.shared);
        self.spawn("portserver-slow", move || slow_lane(&s, &slow_rx))?;
        let s = Arc::clone(&self.shared);
        self.spawn("portserver-reclaim", move || reclaim_loop(&s))
    }

    fn spawn(&mut self, name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), ServerError> {
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn(f)
            .map_err(ServerError::Spawn)?;
        self.threads.push(thread);
        Ok(())
    }

    fn shutdown(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        if self.threads.is_empty() && self.listener.is_none() {
            return;
        }
        self.shared.request_stop();
        if let Some(listener) = &self.listener {
            if let Err(e) = wake_acceptors(listener) {
                log!(
                    self.shared.logger,
                    Level::Warning,
                    "Waking the acceptors by a shutdown failed ({e}); connecting to {} instead",
                    self.address
                );
                // One connection wakes one acceptor, if the path still
                // leads to this server.
                if let Ok(addr) = self.address.to_socket_addr() {
                    for _ in 0..self.shared.config.acceptors.max(1) {
                        let _ = UnixStream::connect_addr(&addr);
                    }
                }
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(listener) = self.listener.take() {
            unbind(&self.address, listener, self.socket_file.take());
            let shared = &self.shared;
            for (name, value) in shared.stats() {
                log!(shared.logger, Level::Info, "{name} {value}");
            }
            log!(shared.logger, Level::Info, "Goodbye.");
        }
        // Every thread that could write the journal has been joined.
        self.state_lock = None;
    }
}

/// Wakes every thread blocked in accept() on `listener` (they then see
/// the stop flag), without the address: a tmp cleaner may have removed the
/// socket file, or another server taken the path. Shutting a listening
/// unix socket down for reading makes its accept() fail at once (Linux).
fn wake_acceptors(listener: &UnixListener) -> std::io::Result<()> {
    // std has shutdown on streams only; the call is the same on any socket.
    let socket = UnixStream::from(OwnedFd::from(listener.try_clone()?));
    socket.shutdown(Shutdown::Read)
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}
