//! `Picker`: the pick algorithm and the in-process bookkeeping of Python's
//! portpicker (reserved, owned and randomly picked ports), on any `Prober`,
//! plus cross-process claims through per-port lock files.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;

use crate::client::{self, PortServerError};
use crate::lock::{self, Claim, LockDir, PortLock};
use crate::probe::{Prober, Protocol, SocketProber};
use crate::rand::Rng;

/// How many kernel-assigned ports, then random ports, a local pick tries.
pub(crate) const TRIES: usize = 10;
/// Random ports come from here, as in Python.
pub(crate) const RANDOM_RANGE: std::ops::Range<u16> = 15000..25000;

/// The environment variable naming the portserver to ask first.
pub const PORTSERVER_ADDRESS_ENV: &str = "PORTSERVER_ADDRESS";

/// No free port was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFreePortError {
    tries: usize,
}

impl NoFreePortError {
    /// How many candidate ports were probed.
    pub fn tries(&self) -> usize {
        self.tries
    }
}

impl fmt::Display for NoFreePortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no free port found after {} candidates", self.tries)
    }
}

impl std::error::Error for NoFreePortError {}

impl From<NoFreePortError> for std::io::Error {
    fn from(e: NoFreePortError) -> Self {
        std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, e)
    }
}

/// Where a picked port came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A port given back with `add_reserved_port`.
    Reserved,
    /// A portserver.
    PortServer,
    /// Picked here by probing.
    Local,
}

#[derive(Debug, Default)]
struct State {
    /// Reserved ports not handed out (Python's `_free_ports`).
    free: BTreeSet<u16>,
    /// Reserved or portserver ports handed out (Python's `_owned_ports`).
    owned: HashSet<u16>,
    /// Ports picked locally and not returned, with their cross-process claim
    /// (Python's `_random_ports`).
    random: HashMap<u16, Option<PortLock>>,
}

/// The pick algorithm with its in-process state. The crate's free functions
/// use one process-wide `Picker<SocketProber>`; build your own to plug in a
/// [`Prober`] or to keep separate books.
///
/// A `Picker` is `Send + Sync`: share it by reference between threads.
pub struct Picker<P = SocketProber> {
    prober: P,
    lock_dir: Option<LockDir>,
    state: Mutex<State>,
    rng: Mutex<Rng>,
}

impl<P> fmt::Debug for Picker<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picker")
            .field("lock_dir", &self.lock_dir)
            .finish_non_exhaustive()
    }
}

impl Default for Picker<SocketProber> {
    fn default() -> Self {
        Picker::new()
    }
}

impl Picker<SocketProber> {
    /// A picker that binds real sockets, with cross-process claims in the
    /// directory `PORTPICK_LOCK_DIR` names (`default`: a per-user directory
    /// under the system temp dir; unset or empty: no claims, as Python).
    /// Claims are opt-in because a claim costs about a third of a pick (see
    /// the README); [`Picker::lock_dir`] turns them on in code.
    pub fn new() -> Self {
        Picker::with_prober(SocketProber)
    }
}

impl<P: Prober> Picker<P> {
    /// A picker on `prober`, with the lock directory from the environment
    /// as [`Picker::new`].
    pub fn with_prober(prober: P) -> Self {
        Picker {
            prober,
            lock_dir: LockDir::from_env(),
            state: Mutex::new(State::default()),
            rng: Mutex::new(Rng::new()),
        }
    }

    /// Claims locally picked ports across processes with lock files in `dir`
    /// (`None`: no cross-process claims, Python's behaviour). Default: from
    /// `PORTPICK_LOCK_DIR`, see [`Picker::new`].
    pub fn lock_dir(mut self, dir: Option<impl Into<std::path::PathBuf>>) -> Self {
        self.lock_dir = dir.map(LockDir::new);
        self
    }

    /// Seeds the random fallback, for reproducible tests. Default: seeded
    /// from the clock and the thread.
    pub fn seed(self, seed: u64) -> Self {
        *lock_ignoring_poison(&self.rng) = Rng::with_seed(seed);
        self
    }

    /// The prober this picker asks.
    pub fn prober(&self) -> &P {
        &self.prober
    }

    /// Picks a port free on TCP and UDP: a reserved port if there is one,
    /// else one from the portserver at `PORTSERVER_ADDRESS` if set, else a
    /// local pick. Our pid is the owner at the portserver.
    ///
    /// # Errors
    ///
    /// [`NoFreePortError`] when every candidate was busy.
    pub fn pick_unused_port(&self) -> Result<u16, NoFreePortError> {
        self.pick_unused_port_for(None, None)
    }

    /// [`Picker::pick_unused_port`] with Python's arguments: the pid the
    /// portserver should hold the port for, and a portserver to ask before
    /// the one in `PORTSERVER_ADDRESS`.
    ///
    /// # Errors
    ///
    /// [`NoFreePortError`] when every candidate was busy.
    pub fn pick_unused_port_for(
        &self,
        pid: Option<u32>,
        portserver_address: Option<&str>,
    ) -> Result<u16, NoFreePortError> {
        self.pick_with_source(pid, portserver_address)
            .map(|(port, _)| port)
    }

    /// As [`Picker::pick_unused_port_for`], also saying where the port came
    /// from.
    ///
    /// # Errors
    ///
    /// [`NoFreePortError`] when every candidate was busy.
    pub fn pick_with_source(
        &self,
        pid: Option<u32>,
        portserver_address: Option<&str>,
    ) -> Result<(u16, Source), NoFreePortError> {
        {
            let mut state = self.state();
            if let Some(port) = state.free.pop_first() {
                state.owned.insert(port);
                return Ok((port, Source::Reserved));
            }
        }
        let env = std::env::var(PORTSERVER_ADDRESS_ENV).ok();
        for address in [portserver_address, env.as_deref()].into_iter().flatten() {
            if address.is_empty() {
                continue;
            }
            match self.get_port_from_port_server(address, pid) {
                Ok(port) => return Ok((port, Source::PortServer)),
                // Python prints these too, then picks locally.
                Err(e) => eprintln!("portpick: {e}; picking a port locally"),
            }
        }
        self.pick_local().map(|port| (port, Source::Local))
    }

    /// Picks a port by probing, never asking a portserver: up to 10
    /// kernel-assigned TCP ports that are also free on UDP, then up to 10
    /// random ports in 15000..25000 free on both. A port picked and not
    /// returned is never picked again by this `Picker`, and (with a lock
    /// directory) not by any other process until we return it or exit.
    ///
    /// # Errors
    ///
    /// [`NoFreePortError`] when all 20 candidates were busy.
    pub fn pick_local(&self) -> Result<u16, NoFreePortError> {
        for _ in 0..TRIES {
            let Some(port) = self.prober.kernel_port(Protocol::Tcp) else {
                continue;
            };
            if port == 0 || self.state().random.contains_key(&port) {
                continue;
            }
            if self.prober.is_free(port, Protocol::Udp) && self.take(port) {
                return Ok(port);
            }
        }
        for _ in 0..TRIES {
            let port = lock_ignoring_poison(&self.rng).range(RANDOM_RANGE);
            if self.state().random.contains_key(&port) {
                continue;
            }
            if self.prober.is_port_free(port) && self.take(port) {
                return Ok(port);
            }
        }
        Err(NoFreePortError { tries: 2 * TRIES })
    }

    /// Records `port` as picked, with a cross-process claim when claims are
    /// on. False when another process holds the claim.
    fn take(&self, port: u16) -> bool {
        let lock = match &self.lock_dir {
            None => None,
            Some(dir) => match dir.claim(port) {
                Claim::Held(lock) => Some(lock),
                Claim::Taken => return false,
                Claim::Unavailable(e) => {
                    lock::warn_unavailable(dir.path(), &e);
                    None
                }
            },
        };
        let mut state = self.state();
        if state.random.contains_key(&port) {
            return false;
        }
        state.random.insert(port, lock);
        true
    }

    /// Asks the portserver at `address` for a port for `pid` (default: our
    /// own pid). A port it gives is owned: returning it makes it reusable in
    /// this process, as in Python.
    ///
    /// # Errors
    ///
    /// [`PortServerError`] when the server is unreachable, silent, slow or
    /// answers something that is not a port.
    pub fn get_port_from_port_server(
        &self,
        address: &str,
        pid: Option<u32>,
    ) -> Result<u16, PortServerError> {
        let port =
            client::get_port_from_port_server_with_timeout(address, pid, client::DEFAULT_TIMEOUT)?;
        self.state().owned.insert(port);
        Ok(port)
    }

    /// Gives a port back. A locally picked port is forgotten (and its
    /// cross-process claim released); a reserved or portserver port becomes
    /// free for the next pick in this process; any other port is ignored.
    /// Returns whether the port was known.
    pub fn return_port(&self, port: u16) -> bool {
        let mut state = self.state();
        if state.random.remove(&port).is_some() {
            true
        } else if state.owned.remove(&port) {
            state.free.insert(port);
            true
        } else {
            false
        }
    }

    /// Adds a port obtained some other way; the next picks hand it out first.
    pub fn add_reserved_port(&self, port: u16) {
        self.state().free.insert(port);
    }

    /// Whether `port` is free on TCP and UDP (IPv6 and IPv4).
    pub fn is_port_free(&self, port: u16) -> bool {
        self.prober.is_port_free(port)
    }

    /// Picks a port and returns a guard that gives it back when dropped.
    ///
    /// # Errors
    ///
    /// As [`Picker::pick_unused_port`].
    pub fn pick_guard(&self) -> Result<PortGuard<'_, P>, NoFreePortError> {
        Ok(PortGuard {
            port: self.pick_unused_port()?,
            picker: self,
        })
    }

    /// Takes the cross-process claim of a locally picked port out of the
    /// books (the port stays picked), to hand it to another process.
    pub(crate) fn take_claim(&self, port: u16) -> Option<std::fs::File> {
        self.state()
            .random
            .get_mut(&port)?
            .take()
            .map(PortLock::into_file)
    }

    /// The ports handed out and not returned, sorted (for tests and tools).
    pub fn outstanding(&self) -> Vec<u16> {
        let state = self.state();
        let mut ports: Vec<u16> = state
            .owned
            .iter()
            .chain(state.random.keys())
            .copied()
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The reserved ports not handed out, sorted.
    pub fn reserved(&self) -> Vec<u16> {
        self.state().free.iter().copied().collect()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock_ignoring_poison(&self.state)
    }
}

/// Our critical sections leave the state consistent at every step, so a
/// panic elsewhere in a holder's thread does not make it unusable.
fn lock_ignoring_poison<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A picked port that is returned when the guard is dropped.
///
/// ```no_run
/// let guard = portpick::pick_guard()?;
/// let port = guard.port();
/// // ... start a server on `port` ...
/// drop(guard); // port returned
/// # Ok::<(), portpick::NoFreePortError>(())
/// ```
#[must_use = "the port is returned as soon as the guard is dropped"]
pub struct PortGuard<'a, P: Prober = SocketProber> {
    port: u16,
    picker: &'a Picker<P>,
}

impl<P: Prober> PortGuard<'_, P> {
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Keeps the port picked (not returned on drop) and gives its number.
    pub fn into_port(self) -> u16 {
        let port = self.port;
        std::mem::forget(self);
        port
    }
}

impl<P: Prober> fmt::Debug for PortGuard<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortGuard")
            .field("port", &self.port)
            .finish()
    }
}

impl<P: Prober> Drop for PortGuard<'_, P> {
    fn drop(&mut self) {
        self.picker.return_port(self.port);
    }
}
