//! `Picker`: the in-process bookkeeping of Python's portpicker (reserved,
//! owned and randomly picked ports), on any `Prober`, its options, and the
//! choice of source. The local pick is in `local`, blocks and several ports
//! in `block`, bound listeners in `listen`, the portserver asked in
//! `served`; cross-process claims of locally picked ports in `claim.rs`.

mod block;
mod error;
mod guard;
mod listen;
mod local;
mod options;
mod served;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::claim::{ClaimPrefix, PortClaim};
use crate::client;
use crate::probe::{Prober, SocketProber};
use crate::rand::Rng;
use crate::sync::lock;

pub use error::{NoFreePortError, NoFreePortReason};
pub use guard::PortGuard;

/// The environment variable naming the portserver to ask first.
pub const PORTSERVER_ADDRESS_ENV: &str = "PORTSERVER_ADDRESS";

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
    /// Reserved ports waiting to be handed out, not out now (Python's
    /// `_free_ports`).
    reserved_waiting: BTreeSet<u16>,
    /// Reserved or portserver ports handed out (Python's `_owned_ports`).
    owned: HashSet<u16>,
    /// Ports picked locally (at random or given by the kernel) and not
    /// returned, with their cross-process claim (Python's `_random_ports`).
    picked_locally: HashMap<u16, Option<PortClaim>>,
}

impl State {
    /// Whether handing `port` out now could give it twice: it is out
    /// (picked locally, or reserved or a portserver's, and not returned),
    /// or waits in the reserved ports to be handed out.
    fn has(&self, port: u16) -> bool {
        self.picked_locally.contains_key(&port)
            || self.owned.contains(&port)
            || self.reserved_waiting.contains(&port)
    }
}

/// The pick algorithm with its in-process state. The crate's free functions
/// use one process-wide `Picker<SocketProber>`; build your own to plug in a
/// [`Prober`] or to keep separate books.
///
/// A `Picker` is `Send + Sync`: share it by reference between threads.
///
/// Whatever its sources, a picker never hands out a port it has handed
/// out and not had back.
pub struct Picker<P = SocketProber> {
    prober: P,
    claims: Option<ClaimPrefix>,
    /// Whether [`Picker::claims`] (or `claims_in`) chose `claims`, which
    /// [`Picker::ignore_environment`] then leaves alone.
    claims_chosen: bool,
    /// `range`, as (first, last); `first` at least 1.
    range: Option<(u16, u16)>,
    exclude: HashSet<u16>,
    address: Option<IpAddr>,
    /// The portserver to ask; `None`: the one `PORTSERVER_ADDRESS` names,
    /// read at each pick (as Python reads it).
    portserver: Option<Option<String>>,
    /// How long one pick may wait for the portserver, repeats included.
    portserver_timeout: Duration,
    state: Mutex<State>,
    rng: Mutex<Rng>,
}

impl<P> fmt::Debug for Picker<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picker")
            .field("claims", &self.claims)
            .field("range", &self.range)
            .field("exclude", &self.exclude.len())
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Default for Picker<SocketProber> {
    fn default() -> Self {
        Picker::new()
    }
}

impl Picker<SocketProber> {
    /// A picker that binds real sockets and claims the ports it picks
    /// across processes (on Linux, unless `PORTPICK_CLAIMS=off`; see
    /// [`Picker::claims`]).
    pub fn new() -> Self {
        Picker::with_prober(SocketProber)
    }
}

impl<P: Prober> Picker<P> {
    /// A picker on `prober`, with claims as [`Picker::new`].
    pub fn with_prober(prober: P) -> Self {
        Picker {
            prober,
            claims: ClaimPrefix::from_env(),
            claims_chosen: false,
            range: None,
            exclude: HashSet::new(),
            address: None,
            portserver: None,
            portserver_timeout: client::DEFAULT_TIMEOUT,
            state: Mutex::new(State::default()),
            rng: Mutex::new(Rng::new()),
        }
    }

    /// Whether locally picked ports are claimed across processes: each is
    /// held by an abstract unix socket named `portpick/claim/PORT` until it
    /// is returned or this process exits, and a port another process has
    /// claimed is never picked. `false`: Python's behaviour. Default: on,
    /// unless the environment says `PORTPICK_CLAIMS=off`. Only Linux has
    /// the abstract namespace: elsewhere there are no claims.
    pub fn claims(mut self, yes: bool) -> Self {
        self.claims = (yes && cfg!(target_os = "linux")).then(ClaimPrefix::standard);
        self.claims_chosen = true;
        self
    }

    /// Asks the portserver at `address` (`@name` or a path; `None`: no
    /// portserver) instead of the one `PORTSERVER_ADDRESS` names. Default:
    /// `PORTSERVER_ADDRESS`, read at each pick.
    pub fn portserver(mut self, address: Option<&str>) -> Self {
        self.portserver = Some(address.map(str::to_string));
        self
    }

    /// How long one pick may wait for the portserver in all, the times it
    /// is asked again included (tests make it short). Default: 5 s.
    #[doc(hidden)]
    pub fn portserver_timeout(mut self, timeout: Duration) -> Self {
        self.portserver_timeout = timeout;
        self
    }

    /// Ignores the environment, for tests (a fake prober's answers must not
    /// be overtaken by a real portserver) and for code that must behave the
    /// same on every host: no portserver unless [`Picker::portserver`] or a
    /// pick names one, whatever `PORTSERVER_ADDRESS` says, and claims on
    /// (on Linux) whatever `PORTPICK_CLAIMS` says, unless [`Picker::claims`]
    /// chose otherwise, before or after this.
    ///
    /// ```
    /// # use portpick::{Picker, SocketProber};
    /// let picker = Picker::with_prober(SocketProber).ignore_environment();
    /// # let _ = picker;
    /// ```
    pub fn ignore_environment(mut self) -> Self {
        if self.portserver.is_none() {
            self.portserver = Some(None);
        }
        if self.claims_chosen {
            return self;
        }
        self.claims(true)
    }

    /// Claims in names `PREFIXPORT` instead of the documented ones, so that
    /// tests with made-up ports meet no real picker's claims.
    #[doc(hidden)]
    pub fn claims_in(mut self, prefix: &str) -> Self {
        self.claims = Some(ClaimPrefix::with_prefix(prefix));
        self.claims_chosen = true;
        self
    }

    /// Seeds the random fallback, for reproducible tests. Default: seeded
    /// from the clock and the thread.
    pub fn seed(self, seed: u64) -> Self {
        *lock(&self.rng) = Rng::with_seed(seed);
        self
    }

    /// The prober this picker asks.
    pub fn prober(&self) -> &P {
        &self.prober
    }

    /// Picks a port free on TCP and UDP: a reserved port if there is one,
    /// else one from the portserver (at `PORTSERVER_ADDRESS` if set, or as
    /// [`Picker::portserver`] says), else a local pick. Our pid is the owner
    /// at the portserver. With [`range`](Picker::range),
    /// [`exclude`](Picker::exclude) or [`address`](Picker::address), no
    /// portserver is asked.
    ///
    /// # Errors
    ///
    /// [`NoFreePortError`] when every candidate was busy.
    pub fn pick_unused_port(&self) -> Result<u16, NoFreePortError> {
        self.pick_unused_port_for(None, None)
    }

    /// [`Picker::pick_unused_port`] with Python's arguments: the pid the
    /// portserver should hold the port for, and a portserver to ask before
    /// the one in `PORTSERVER_ADDRESS`. A picker with a range, exclusions
    /// or an address asks no portserver, so both are unused.
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
        if let Some(port) = self.take_reserved() {
            return Ok((port, Source::Reserved));
        }
        if let Some(port) = self.pick_served(pid, portserver_address) {
            return Ok((port, Source::PortServer));
        }
        self.pick_local().map(|port| (port, Source::Local))
    }

    /// The lowest reserved port this picker allows and does not have out
    /// (one added again while out waits until it is back), now owned.
    fn take_reserved(&self) -> Option<u16> {
        let mut state = self.state();
        let state = &mut *state;
        let port = *state.reserved_waiting.iter().find(|&&p| {
            self.allows(p) && !state.owned.contains(&p) && !state.picked_locally.contains_key(&p)
        })?;
        state.reserved_waiting.remove(&port);
        state.owned.insert(port);
        Some(port)
    }

    /// Gives a port back. A locally picked port is forgotten (and its
    /// cross-process claim released); a reserved or portserver port becomes
    /// free for the next pick in this process; any other port is ignored.
    /// Returns whether the port was known.
    pub fn return_port(&self, port: u16) -> bool {
        let mut state = self.state();
        if state.picked_locally.remove(&port).is_some() {
            true
        } else if state.owned.remove(&port) {
            state.reserved_waiting.insert(port);
            true
        } else {
            false
        }
    }

    /// Adds a port obtained some other way; the next picks hand it out first.
    pub fn add_reserved_port(&self, port: u16) {
        self.state().reserved_waiting.insert(port);
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

    pub(crate) fn claims_on(&self) -> bool {
        self.claims.is_some()
    }

    /// The ports handed out and not returned, sorted (for tests and tools).
    pub fn outstanding(&self) -> Vec<u16> {
        let state = self.state();
        let mut ports: Vec<u16> = state
            .owned
            .iter()
            .chain(state.picked_locally.keys())
            .copied()
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The reserved ports not handed out, sorted.
    pub fn reserved(&self) -> Vec<u16> {
        self.state().reserved_waiting.iter().copied().collect()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::Picker;

    #[test]
    fn ignore_environment_keeps_claims_off() {
        let picker = Picker::new().claims(false).ignore_environment();
        assert!(!picker.claims_on());
        let picker = Picker::new().ignore_environment().claims(false);
        assert!(!picker.claims_on());
        let picker = Picker::new().claims(true).ignore_environment();
        assert_eq!(picker.claims_on(), cfg!(target_os = "linux"));
    }
}
