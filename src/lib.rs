//! Find unused network ports, and hand them out without collisions on a busy
//! test host: a std-only Rust take on Google's Python
//! [`portpicker`](https://pypi.org/project/portpicker/), wire-compatible with
//! its client and its portserver in both directions.
//!
//! # Typical use
//!
//! ```no_run
//! let port = portpick::pick_unused_port()?;
//! // ... start the server under test on `port` ...
//! portpick::return_port(port);
//! # Ok::<(), portpick::NoFreePortError>(())
//! ```
//!
//! A port from [`pick_unused_port`] is free on TCP and UDP, IPv6 and IPv4.
//! It comes from, in order: a port given back with [`add_reserved_port`];
//! the portserver named by `PORTSERVER_ADDRESS`; a local pick. On Linux a
//! local pick is also claimed across processes (see [Cross-process
//! claims](#cross-process-claims)), so parallel test processes get distinct
//! ports even without a portserver.
//!
//! # The race-free way: a bound socket
//!
//! A port number is only a promise: between the pick and your `bind`, any
//! other program may take it. When your code can accept a socket instead of
//! a number, take one that is already bound:
//!
//! ```no_run
//! let listener = portpick::bind_unused_tcp()?;
//! let port = listener.local_addr()?.port();
//! // hand `listener` to the server under test; nobody can take `port`.
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Ranges, exclusions, an address, several ports, a block
//!
//! A [`Picker`] narrows what it hands out ([`Picker::range`],
//! [`Picker::exclude`], [`Picker::address`], which make it pick locally),
//! binds listeners within that ([`Picker::bind_unused_tcp`]), and hands out
//! several ports ([`Picker::pick_many`]) or a block
//! ([`Picker::pick_consecutive`]). [`wait_until_listening`] waits for the
//! server under test:
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! let picker = portpick::Picker::new().address(Ipv4Addr::LOCALHOST.into());
//! let block = picker.pick_consecutive(3)?;
//! assert_eq!(block.clone().count(), 3);
//! let addr = (Ipv4Addr::LOCALHOST, *block.start()).into();
//! // ... start the server under test on the block ...
//! portpick::wait_until_listening(addr, std::time::Duration::from_secs(10))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The portserver
//!
//! On a shared host, run one portserver (`cargo run --example portserver`)
//! and set `PORTSERVER_ADDRESS=@unittest-portserver` for the test runners.
//! It gives each process its own ports and takes them back when the process
//! is gone. A test rig can embed it: see [`server::PortServer`].
//!
//! # Cross-process claims
//!
//! On Linux each locally picked port is claimed by binding a unix datagram
//! socket to the abstract name `portpick/claim/PORT` (`@portpick/claim/PORT`
//! in `ss -x`), held until the port is returned (or its guard dropped) or
//! the process exits, however it exits: the kernel drops the name with the
//! socket. A picker never picks a port that another socket has claimed, so
//! processes of one host (any user) get distinct ports without a
//! portserver. Claims live in the network namespace, as ports do; nothing
//! is written to any filesystem. Ports from a portserver are not claimed
//! (the server owns them, and skips ports claimed here).
//!
//! `PORTPICK_CLAIMS=off` in the environment, or [`Picker::claims`]`(false)`
//! in code, turns claims off: Python's behaviour. A claim that cannot be
//! made for another reason than "taken" (no descriptors left, no abstract
//! namespace, half the open file limit already spent on claims) gives one
//! warning and Python's behaviour for that port, never an error. Other
//! systems than Linux have no claims.
//!
//! # Plugging in a prober
//!
//! Every "is this port free?" question goes through the [`Prober`] trait;
//! build a [`Picker`] on your own to check only TCP, one interface, or a fake.
//! A picker reads `PORTSERVER_ADDRESS` and `PORTPICK_CLAIMS` as the free
//! functions do; [`Picker::ignore_environment`] makes a fake's answers the
//! only answers, whatever the host's environment says.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod address;
mod args;
mod claim;
mod client;
mod limits;
mod picker;
mod pidns;
mod probe;
mod protocol;
mod rand;
pub mod server;
mod sync;
#[cfg(feature = "testkit")]
mod testkit;
mod wait;
mod warn;

pub use address::{AddressError, PortServerAddress};
pub use claim::CLAIMS_ENV;
pub use client::{
    get_port_from_port_server_with_timeout, get_port_server_stats, PortServerError, DEFAULT_TIMEOUT,
};
pub use picker::{
    NoFreePortError, NoFreePortReason, Picker, PortGuard, Source, PORTSERVER_ADDRESS_ENV,
};
pub use probe::{bind, Prober, Protocol, SocketProber};
pub use wait::wait_until_listening;

use std::io;
use std::net::{TcpListener, UdpSocket};
use std::sync::OnceLock;

/// The process-wide picker behind the free functions.
fn global() -> &'static Picker {
    static GLOBAL: OnceLock<Picker> = OnceLock::new();
    GLOBAL.get_or_init(Picker::new)
}

/// Picks a port free on TCP and UDP, for this process. See the
/// [crate docs](crate) for where it comes from.
///
/// # Errors
///
/// [`NoFreePortError`] when every candidate was busy.
pub fn pick_unused_port() -> Result<u16, NoFreePortError> {
    global().pick_unused_port()
}

/// Python's `pick_unused_port(pid, portserver_address)`: `pid` is the
/// process a portserver holds the port for (default: this one);
/// `portserver_address` is asked before `PORTSERVER_ADDRESS`.
///
/// # Errors
///
/// [`NoFreePortError`] when every candidate was busy.
pub fn pick_unused_port_for(
    pid: Option<u32>,
    portserver_address: Option<&str>,
) -> Result<u16, NoFreePortError> {
    global().pick_unused_port_for(pid, portserver_address)
}

/// Whether `port` is free for TCP and UDP, on IPv6 and IPv4 (where the
/// host has them).
///
/// ```no_run
/// let port = portpick::pick_unused_port()?;
/// assert!(portpick::is_port_free(port));
/// # Ok::<(), portpick::NoFreePortError>(())
/// ```
pub fn is_port_free(port: u16) -> bool {
    SocketProber.is_port_free(port)
}

/// Gives a port back to this process's books. See [`Picker::return_port`].
pub fn return_port(port: u16) -> bool {
    global().return_port(port)
}

/// Adds a port obtained some other way: the next picks hand it out first.
pub fn add_reserved_port(port: u16) {
    global().add_reserved_port(port)
}

/// Asks the portserver at `address` (`@name` or a path) for a port for
/// `pid` (default: this process), as this process's pid namespace sees it:
/// in a sandbox, the request names the namespace too, and our portserver
/// finds the process on its side (Python's cannot: see
/// [`PortServerError::NoNamespaces`]).
///
/// # Errors
///
/// [`PortServerError`] when the server is unreachable, says no, stays
/// silent past [`DEFAULT_TIMEOUT`], or answers something that is not a port.
pub fn get_port_from_port_server(address: &str, pid: Option<u32>) -> Result<u16, PortServerError> {
    global().get_port_from_port_server(address, pid)
}

/// Picks a port that is returned when the guard drops.
///
/// # Errors
///
/// [`NoFreePortError`] when every candidate was busy.
pub fn pick_guard() -> Result<PortGuard<'static>, NoFreePortError> {
    global().pick_guard()
}

/// A TCP listener on a port the kernel chose and found free on IPv4 and
/// IPv6: no other program can take the port between the pick and your use
/// of it (on the families the listener holds, below).
///
/// On a dual-stack host (Linux's default) the listener is on `[::]` and
/// serves and holds both families. Where IPv6 sockets are IPv6-only
/// (`net.ipv6.bindv6only = 1`) no one socket can: the listener is then on
/// `0.0.0.0`, serving and holding IPv4, and the port was free on IPv6 when
/// chosen but is not held there. IPv4 because it is what clients of a test
/// server dial (`127.0.0.1`, or `localhost`, whose IPv6 address is then
/// refused and the next tried); holding IPv6 with a second listener that
/// nobody accepts on would instead leave such clients hanging. Without IPv6
/// the listener is on `0.0.0.0`.
///
/// # Errors
///
/// No port could be bound on every family.
pub fn bind_unused_tcp() -> io::Result<TcpListener> {
    probe::bind_unused_tcp()
}

/// A UDP socket on a port the kernel chose, free on IPv4 and IPv6, on the
/// family or families [`bind_unused_tcp`] would use.
///
/// # Errors
///
/// No port could be bound on every family.
pub fn bind_unused_udp() -> io::Result<UdpSocket> {
    probe::bind_unused_udp()
}

/// For the binaries, benches, fuzz targets and tests; not a stable API,
/// not covered by semver.
#[doc(hidden)]
pub mod __private {
    /// The command-line lexer of both binaries.
    pub mod args {
        pub use crate::args::{Arg, LexError, Lexer};
    }
    pub use crate::probe::{hold_tcp, hold_udp};
    /// Pid namespaces: ours, and finding a sandboxed pid in our `/proc`.
    pub mod pidns {
        pub use crate::pidns::*;
    }
    /// The wire format: pure functions over bytes.
    pub mod protocol {
        pub use crate::protocol::*;
    }
    #[cfg(feature = "testkit")]
    pub use crate::testkit::{fakes, fuzz, pool_model};
    pub use crate::wait::wait_for_any;

    /// The portserver's insides.
    pub mod server {
        pub use crate::limits::parse_open_files_limit;
        pub use crate::server::config::{parse_args, ArgsError, Command, DEFAULT_ADDRESS};
        #[cfg(feature = "testkit")]
        pub use crate::server::policy::Denial;
        #[cfg(feature = "testkit")]
        pub use crate::server::pool::{Pool, OWNER_CHECKS_PER_REQUEST};
        pub use crate::server::process::{
            parse_stat, presence, Owner, Presence, ProcFs, ProcessTable, StatError, PF_KTHREAD,
        };
        pub use crate::server::ranges::{parse_kernel_range, parse_port_ranges, RangeError};
        pub use crate::server::state::parse_state;
    }

    /// The process-wide picker behind the free functions.
    pub fn global() -> &'static crate::Picker {
        crate::global()
    }

    /// Writes a warning line to stderr, ignoring a stderr that cannot be
    /// written (or collects it: see [`collect_warnings`]).
    pub fn warn(message: std::fmt::Arguments<'_>) {
        crate::warn::warn(message)
    }

    /// From now on this process keeps its warnings, for [`take_warnings`]
    /// (a process whose stderr leads nowhere hands them on itself).
    pub fn collect_warnings() {
        crate::warn::collect()
    }

    /// The warnings kept since [`collect_warnings`], oldest first.
    pub fn take_warnings() -> Vec<String> {
        crate::warn::take_collected()
    }

    /// Whether the process-wide picker claims its ports.
    pub fn claims_on() -> bool {
        crate::global().claims_on()
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[allow(dead_code)]
fn assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Picker>();
    check::<PortGuard<'static>>();
    check::<SocketProber>();
    check::<PortServerError>();
    check::<NoFreePortError>();
    check::<PortServerAddress>();
    check::<server::ServerHandle>();
    check::<server::Stopper>();
    check::<server::PortServer>();
}
