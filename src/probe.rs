//! The `Prober` seam: every "is this port free?" and "give me a kernel port"
//! question goes through it, so the pick path and the portserver pool can be
//! driven by a fake in tests and by a user's own policy in production.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};

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
}

impl<P: Prober + ?Sized> Prober for &P {
    fn is_free(&self, port: u16, protocol: Protocol) -> bool {
        (**self).is_free(port, protocol)
    }
    fn kernel_port(&self, protocol: Protocol) -> Option<u16> {
        (**self).kernel_port(protocol)
    }
    // Forwarded too: an implementation's own `is_port_free` (the
    // portserver's skips claimed ports) must not be lost behind a pointer.
    fn is_port_free(&self, port: u16) -> bool {
        (**self).is_port_free(port)
    }
}

impl<P: Prober + ?Sized> Prober for Box<P> {
    fn is_free(&self, port: u16, protocol: Protocol) -> bool {
        (**self).is_free(port, protocol)
    }
    fn kernel_port(&self, protocol: Protocol) -> Option<u16> {
        (**self).kernel_port(protocol)
    }
    // Forwarded too: an implementation's own `is_port_free` (the
    // portserver's skips claimed ports) must not be lost behind a pointer.
    fn is_port_free(&self, port: u16) -> bool {
        (**self).is_port_free(port)
    }
}

impl<P: Prober + ?Sized> Prober for std::sync::Arc<P> {
    fn is_free(&self, port: u16, protocol: Protocol) -> bool {
        (**self).is_free(port, protocol)
    }
    fn kernel_port(&self, protocol: Protocol) -> Option<u16> {
        (**self).kernel_port(protocol)
    }
    // Forwarded too: an implementation's own `is_port_free` (the
    // portserver's skips claimed ports) must not be lost behind a pointer.
    fn is_port_free(&self, port: u16) -> bool {
        (**self).is_port_free(port)
    }
}

/// The real prober: binds sockets.
///
/// On a dual-stack host (Linux's default, `net.ipv6.bindv6only = 0`) one bind
/// of `[::]:port` covers IPv6 and IPv4 at once: the kernel refuses it when any
/// IPv4 or IPv6 socket holds the port. So a check costs one bind per protocol,
/// and a second (IPv4) bind only when the IPv6 socket turns out to be
/// IPv6-only. A host without IPv6 falls back to IPv4 alone.
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

/// What a bind on `[::]` told us.
enum V6Outcome<S> {
    /// Bound; `dual` is true when the socket also covers IPv4.
    Bound { socket: S, dual: bool },
    /// The port is in use (or not ours to take).
    Busy,
    /// The host has no usable IPv6.
    NoIpv6,
}

fn is_busy(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
    )
}

/// Whether a fresh IPv6 socket also covers IPv4. std leaves
/// `IPV6_V6ONLY` at the system default, which Linux reads from
/// `net.ipv6.bindv6only` (0 unless an administrator changed it). Elsewhere
/// (BSDs) the default is IPv6-only, so IPv4 gets its own bind.
fn dual_stack() -> bool {
    static DUAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DUAL.get_or_init(|| {
        std::fs::read("/proc/sys/net/ipv6/bindv6only").is_ok_and(|v| v.first() == Some(&b'0'))
    })
}

fn v6_tcp(port: u16) -> V6Outcome<TcpListener> {
    match TcpListener::bind(SocketAddr::from((ANY_V6, port))) {
        Ok(socket) => V6Outcome::Bound {
            socket,
            dual: dual_stack(),
        },
        Err(e) if is_busy(&e) => V6Outcome::Busy,
        Err(_) => V6Outcome::NoIpv6,
    }
}

fn v6_udp(port: u16) -> V6Outcome<UdpSocket> {
    match UdpSocket::bind(SocketAddr::from((ANY_V6, port))) {
        Ok(socket) => V6Outcome::Bound {
            socket,
            dual: dual_stack(),
        },
        Err(e) if is_busy(&e) => V6Outcome::Busy,
        Err(_) => V6Outcome::NoIpv6,
    }
}

/// Sockets that hold a port on one protocol, on every family the host has.
#[derive(Debug)]
pub struct Held<S> {
    /// The IPv6 socket (dual-stack when the host is), if IPv6 exists.
    pub v6: Option<S>,
    /// The IPv4 socket, when the IPv6 one does not cover IPv4.
    pub v4: Option<S>,
}

impl<S> Held<S> {
    /// The socket that covers the most: the dual-stack one if there is one.
    pub fn into_primary(self) -> Option<S> {
        self.v6.or(self.v4)
    }
}

/// Binds TCP `port` (0: the kernel chooses) on every family; the port bound.
pub fn hold_tcp(port: u16) -> Option<(u16, Held<TcpListener>)> {
    match v6_tcp(port) {
        V6Outcome::Busy => None,
        V6Outcome::Bound { socket, dual: true } => {
            let port = socket.local_addr().ok()?.port();
            Some((
                port,
                Held {
                    v6: Some(socket),
                    v4: None,
                },
            ))
        }
        V6Outcome::Bound {
            socket,
            dual: false,
        } => {
            let port = socket.local_addr().ok()?.port();
            let v4 = TcpListener::bind(SocketAddr::from((ANY_V4, port))).ok()?;
            Some((
                port,
                Held {
                    v6: Some(socket),
                    v4: Some(v4),
                },
            ))
        }
        V6Outcome::NoIpv6 => {
            let v4 = TcpListener::bind(SocketAddr::from((ANY_V4, port))).ok()?;
            let port = v4.local_addr().ok()?.port();
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

/// Binds UDP `port` (0: the kernel chooses) on every family; the port bound.
pub fn hold_udp(port: u16) -> Option<(u16, Held<UdpSocket>)> {
    match v6_udp(port) {
        V6Outcome::Busy => None,
        V6Outcome::Bound { socket, dual: true } => {
            let port = socket.local_addr().ok()?.port();
            Some((
                port,
                Held {
                    v6: Some(socket),
                    v4: None,
                },
            ))
        }
        V6Outcome::Bound {
            socket,
            dual: false,
        } => {
            let port = socket.local_addr().ok()?.port();
            let v4 = UdpSocket::bind(SocketAddr::from((ANY_V4, port))).ok()?;
            Some((
                port,
                Held {
                    v6: Some(socket),
                    v4: Some(v4),
                },
            ))
        }
        V6Outcome::NoIpv6 => {
            let v4 = UdpSocket::bind(SocketAddr::from((ANY_V4, port))).ok()?;
            let port = v4.local_addr().ok()?.port();
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

impl Prober for SocketProber {
    fn is_free(&self, port: u16, protocol: Protocol) -> bool {
        if port == 0 {
            return false;
        }
        match protocol {
            Protocol::Tcp => hold_tcp(port).is_some(),
            Protocol::Udp => hold_udp(port).is_some(),
        }
    }

    fn kernel_port(&self, protocol: Protocol) -> Option<u16> {
        match protocol {
            Protocol::Tcp => hold_tcp(0).map(|(port, _)| port),
            Protocol::Udp => hold_udp(0).map(|(port, _)| port),
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
    match protocol {
        Protocol::Tcp => hold_tcp(port).map(|(port, _)| port),
        Protocol::Udp => hold_udp(port).map(|(port, _)| port),
    }
}
