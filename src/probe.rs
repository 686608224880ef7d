//! The `Prober` seam: every "is this port free?" and "give me a kernel port"
//! question goes through it, so the pick path and the portserver pool can be
//! driven by a fake in tests and by a user's own policy in production.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

/// A transport protocol a port can be free or busy on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP (`SOCK_STREAM`).
    Tcp,
    /// UDP (`SOCK_DGRAM`).
    Udp,
}

/// Answers whether ports are free. Implementations must be cheap to call
/// from many threads at once.
///
/// [`SocketProber`] is the real one. A fake makes the pick algorithm and the
/// portserver pool deterministic in tests:
///
/// ```
/// use portpick::{Picker, Prober, Protocol};
///
/// /// Every port is free; the kernel always offers 4242.
/// struct AlwaysFree;
/// impl Prober for AlwaysFree {
///     fn is_free(&self, _port: u16, _protocol: Protocol) -> bool { true }
///     fn kernel_port(&self, _protocol: Protocol) -> Option<u16> { Some(4242) }
/// }
///
/// // Not the environment's portserver, nor real claims: only the fake.
/// let picker = Picker::with_prober(AlwaysFree).ignore_environment().claims(false);
/// assert_eq!(picker.pick_unused_port().unwrap(), 4242);
/// ```
pub trait Prober: Send + Sync {
    /// Whether `port` can be bound for `protocol` on every address family the
    /// host supports (IPv6 and IPv4). A host without IPv6 is not an error.
    fn is_free(&self, port: u16, protocol: Protocol) -> bool;

    /// A port the kernel considers unused for `protocol` (a bind of port 0),
    /// or `None` when it gives none.
    fn kernel_port(&self, protocol: Protocol) -> Option<u16>;

    /// Whether `port` is free on both TCP and UDP.
    fn is_port_free(&self, port: u16) -> bool {
        port != 0 && self.is_free(port, Protocol::Tcp) && self.is_free(port, Protocol::Udp)
    }

    /// Whether `port` can be bound for `protocol` on the one address `ip`:
    /// what a [`Picker`](crate::Picker) with an
    /// [`address`](crate::Picker::address) asks. The default answers
    /// [`Prober::is_free`], for every address: stricter than needed, never
    /// looser, so a prober that knows nothing of addresses stays right.
    fn is_free_on(&self, ip: IpAddr, port: u16, protocol: Protocol) -> bool {
        let _ = ip;
        self.is_free(port, protocol)
    }
}

/// A pointer to a prober is a prober: every method forwarded, the
/// provided ones too, so that an implementation's own `is_port_free` (the
/// portserver's skips claimed ports) is not lost behind the pointer.
macro_rules! forward_prober {
    ($($pointer:ty),*) => {$(
        impl<P: Prober + ?Sized> Prober for $pointer {
            fn is_free(&self, port: u16, protocol: Protocol) -> bool {
                (**self).is_free(port, protocol)
            }
            fn kernel_port(&self, protocol: Protocol) -> Option<u16> {
                (**self).kernel_port(protocol)
            }
            fn is_port_free(&self, port: u16) -> bool {
                (**self).is_port_free(port)
            }
            fn is_free_on(&self, ip: IpAddr, port: u16, protocol: Protocol) -> bool {
                (**self).is_free_on(ip, port, protocol)
            }
        }
    )*};
}

forward_prober!(&P, Box<P>, std::sync::Arc<P>);

/// The real prober: binds sockets.
///
/// On a dual-stack host (Linux's default, `net.ipv6.bindv6only = 0`) one bind
/// of `[::]:port` covers IPv6 and IPv4 at once: the kernel refuses it when any
/// IPv4 or IPv6 socket holds the port. So a check costs one bind per protocol,
/// and a second (IPv4) bind only when the IPv6 socket turns out to be
/// IPv6-only (`net.ipv6.bindv6only = 1`, or a BSD). A host without IPv6 falls
/// back to IPv4 alone.
///
/// TCP sockets are bound with `SO_REUSEADDR` and put in listening state, as
/// Python's portpicker does, so a port in `TIME_WAIT` counts as free.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketProber;

impl SocketProber {
    /// A new prober.
    pub fn new() -> Self {
        SocketProber
    }
}

const ANY_V6: Ipv6Addr = Ipv6Addr::UNSPECIFIED;
const ANY_V4: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

/// The two kinds of socket a port is held with, so that the family logic
/// below exists once for TCP and UDP.
pub(crate) trait Bindable: Sized {
    fn bind_to(addr: SocketAddr) -> io::Result<Self>;
    fn local_port(&self) -> io::Result<u16>;
    /// Whether this IPv6 socket is IPv6-only (`IPV6_V6ONLY`), that is, does
    /// not also hold its port on IPv4. Takes and gives back the socket
    /// because UDP asks through another view of it.
    fn v6_only(self) -> (Self, io::Result<bool>);
}

impl Bindable for TcpListener {
    fn bind_to(addr: SocketAddr) -> io::Result<Self> {
        TcpListener::bind(addr)
    }
    fn local_port(&self) -> io::Result<u16> {
        self.local_addr().map(|a| a.port())
    }
    fn v6_only(self) -> (Self, io::Result<bool>) {
        // std deprecates this getter only because its setter cannot work
        // after bind; reading is what we need.
        #[allow(deprecated)]
        let only = self.only_v6();
        (self, only)
    }
}

impl Bindable for UdpSocket {
    fn bind_to(addr: SocketAddr) -> io::Result<Self> {
        UdpSocket::bind(addr)
    }
    fn local_port(&self) -> io::Result<u16> {
        self.local_addr().map(|a| a.port())
    }
    fn v6_only(self) -> (Self, io::Result<bool>) {
        // std reads IPV6_V6ONLY only through `TcpListener`; the option and
        // its getsockopt are the same for every socket type, so ask through
        // a `TcpListener` view of the same descriptor and take it back.
        let (view, only) = TcpListener::from(OwnedFd::from(self)).v6_only();
        (UdpSocket::from(OwnedFd::from(view)), only)
    }
}

/// How sure [`hold`] must be that an IPv6 socket also holds IPv4.
#[derive(Clone, Copy)]
enum Ask {
    /// Ask the socket: for holds that are kept, where a wrong answer leaves
    /// IPv4 unheld while the caller thinks it is held.
    Socket,
    /// Use what this process's first IPv6 socket said: for probes, where a
    /// getsockopt per bind costs about a tenth of a pick.
    ProcessDefault,
}

/// Whether `v6`, an IPv6 socket std made (so with the system's default
/// `IPV6_V6ONLY`), holds IPv6 only. The default is learned from a socket,
/// not from `net.ipv6.bindv6only`: /proc/sys may not be mounted in a
/// sandbox (reading it there made every port look busy). The default is
/// per network namespace, fixed for a process short of `setns`; a process
/// that outlives a change of the sysctl keeps the old default for its
/// probes, while its holds ask each socket. When the
/// kernel will not say, IPv6-only: an extra IPv4 bind can make a free port
/// look busy, never a busy one look free.
fn is_v6_only<S: Bindable>(v6: S, ask: Ask) -> (S, bool) {
    static DEFAULT: OnceLock<bool> = OnceLock::new();
    if let (Ask::ProcessDefault, Some(&only)) = (ask, DEFAULT.get()) {
        return (v6, only);
    }
    let (v6, only) = v6.v6_only();
    match only {
        Ok(only) => {
            // The first answer is the process's default; later ones only
            // serve their own socket.
            let _ = DEFAULT.set(only);
            (v6, only)
        }
        Err(_) => (v6, true),
    }
}

fn is_busy(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
    )
}

/// Sockets that hold a port on one protocol, on every family the host has.
/// Drop all of them to release the port; keep all of them to hold it.
#[derive(Debug)]
pub struct Held<S> {
    /// The IPv6 socket (also covering IPv4 when it is dual-stack), if the
    /// host has IPv6.
    pub v6: Option<S>,
    /// The IPv4 socket, when the IPv6 one does not cover IPv4 (an IPv6-only
    /// socket, or no IPv6 at all).
    pub v4: Option<S>,
}

impl<S> Held<S> {
    /// Every socket of the hold. Keeping only one of two would leave a
    /// family unheld.
    pub fn into_sockets(self) -> impl Iterator<Item = S> {
        self.v6.into_iter().chain(self.v4)
    }

    /// The socket that serves IPv4 (and IPv6 too when it is dual-stack),
    /// closing the other one: see [`crate::bind_unused_tcp`] for why IPv4.
    fn into_server(self) -> Option<S> {
        self.v4.or(self.v6)
    }
}

/// Binds `port` (0: the kernel chooses) on every family; the port bound.
fn hold<S: Bindable>(port: u16, ask: Ask) -> Option<(u16, Held<S>)> {
    match S::bind_to(SocketAddr::from((ANY_V6, port))) {
        Ok(v6) => {
            let (v6, only) = is_v6_only(v6, ask);
            let port = v6.local_port().ok()?;
            let v4 = if only {
                Some(S::bind_to(SocketAddr::from((ANY_V4, port))).ok()?)
            } else {
                None
            };
            Some((port, Held { v6: Some(v6), v4 }))
        }
        Err(e) if is_busy(&e) => None,
        // No usable IPv6 here: IPv4 alone is every family the host has.
        Err(_) => {
            let v4 = S::bind_to(SocketAddr::from((ANY_V4, port))).ok()?;
            let port = v4.local_port().ok()?;
            Some((
                port,
                Held {
                    v6: None,
                    v4: Some(v4),
                },
            ))
        }
    }
}

/// Binds TCP `port` (0: the kernel chooses) on every family; the port bound.
pub fn hold_tcp(port: u16) -> Option<(u16, Held<TcpListener>)> {
    hold(port, Ask::Socket)
}

/// Binds UDP `port` (0: the kernel chooses) on every family; the port bound.
pub fn hold_udp(port: u16) -> Option<(u16, Held<UdpSocket>)> {
    hold(port, Ask::Socket)
}

/// A kernel-chosen port free on every family, bound by the one socket
/// [`Held::into_server`] picks. With IPv6-only sockets the kernel's choice
/// for `[::]` may be taken on IPv4; those tries are retried.
fn bind_unused<S: Bindable>(what: &str) -> io::Result<S> {
    const TRIES: usize = 10;
    (0..TRIES)
        .find_map(|_| hold::<S>(0, Ask::Socket).and_then(|(_, held)| held.into_server()))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("no {what} port could be bound on every address family"),
            )
        })
}

/// A socket on `port` (0: the kernel chooses) to serve on: on `ip`, or
/// without one on every family as [`crate::bind_unused_tcp`] binds.
pub(crate) fn bind_server<S: Bindable>(ip: Option<IpAddr>, port: u16) -> Option<S> {
    match ip {
        Some(ip) => S::bind_to(SocketAddr::new(ip, port)).ok(),
        None => hold::<S>(port, Ask::Socket).and_then(|(_, held)| held.into_server()),
    }
}

/// See [`crate::bind_unused_tcp`].
pub(crate) fn bind_unused_tcp() -> io::Result<TcpListener> {
    bind_unused("TCP")
}

/// See [`crate::bind_unused_udp`].
pub(crate) fn bind_unused_udp() -> io::Result<UdpSocket> {
    bind_unused("UDP")
}

impl Prober for SocketProber {
    fn is_free(&self, port: u16, protocol: Protocol) -> bool {
        port != 0 && bind(port, protocol).is_some()
    }

    fn kernel_port(&self, protocol: Protocol) -> Option<u16> {
        bind(0, protocol)
    }

    fn is_free_on(&self, ip: IpAddr, port: u16, protocol: Protocol) -> bool {
        let addr = SocketAddr::new(ip, port);
        port != 0
            && match protocol {
                Protocol::Tcp => TcpListener::bind(addr).is_ok(),
                Protocol::Udp => UdpSocket::bind(addr).is_ok(),
            }
    }
}

/// Binds `port` for `protocol` on every address family the host supports and
/// reports whether that worked: Python's `portpicker.bind`, minus the socket
/// type arguments. Port 0 asks the kernel for a port, which is returned.
///
/// ```no_run
/// use portpick::{bind, Protocol};
/// let port = bind(0, Protocol::Tcp).expect("the kernel has a port");
/// assert_ne!(port, 0);
/// ```
pub fn bind(port: u16, protocol: Protocol) -> Option<u16> {
    let ask = Ask::ProcessDefault;
    match protocol {
        Protocol::Tcp => hold::<TcpListener>(port, ask).map(|(port, _)| port),
        Protocol::Udp => hold::<UdpSocket>(port, ask).map(|(port, _)| port),
    }
}
