//! A picker's bound sockets: on its address, in its range, never an
//! excluded port, a port it has out, or one another process has claimed
//! (its owner may be about to bind it). The bind is the check: the prober
//! is not asked, and the socket holds the port, so no claim is kept.

use std::io;
use std::net::{TcpListener, UdpSocket};

use super::local::TRIES;
use super::Picker;
use crate::claim::Claim;
use crate::probe::{self, Bindable, Prober};

impl<P: Prober> Picker<P> {
    /// A TCP listener on a port this picker may hand out: on its
    /// [`address`](Picker::address) (default: as [`crate::bind_unused_tcp`],
    /// the wildcard of every family), in its [`range`](Picker::range) (default:
    /// a port the kernel chooses), not [excluded](Picker::exclude). Nobody
    /// can take the port between the pick and your use of it.
    ///
    /// ```no_run
    /// use std::net::Ipv4Addr;
    /// let picker = portpick::Picker::new()
    ///     .address(Ipv4Addr::LOCALHOST.into())
    ///     .range(20000..=20999);
    /// let listener = picker.bind_unused_tcp()?;
    /// let addr = listener.local_addr()?;
    /// assert!(addr.ip().is_loopback() && (20000..=20999).contains(&addr.port()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// No port could be bound (the message names the address and range).
    pub fn bind_unused_tcp(&self) -> io::Result<TcpListener> {
        self.bind_unused("TCP")
    }

    /// A UDP socket on a port this picker may hand out, chosen as
    /// [`Picker::bind_unused_tcp`] chooses.
    ///
    /// # Errors
    ///
    /// No port could be bound (the message names the address and range).
    pub fn bind_unused_udp(&self) -> io::Result<UdpSocket> {
        self.bind_unused("UDP")
    }

    fn bind_unused<S: Bindable>(&self, what: &str) -> io::Result<S> {
        let found = match self.range {
            None => self.bind_kernel_port(),
            Some((lo, hi)) => self
                .candidates(lo, hi)
                .find_map(|port| self.bind_port(port)),
        };
        found.ok_or_else(|| {
            let on = self.address.map_or(String::new(), |ip| format!(" on {ip}"));
            let within = self
                .range
                .map_or(String::new(), |(lo, hi)| format!(" in {lo}-{hi}"));
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("no {what} port could be bound{on}{within}"),
            )
        })
    }

    /// A socket on a port the kernel chose. Refused ones stay bound until
    /// the end, so that the kernel offers others.
    fn bind_kernel_port<S: Bindable>(&self) -> Option<S> {
        let mut refused = Vec::new();
        for _ in 0..TRIES {
            let Some(socket) = probe::bind_server::<S>(self.address, 0) else {
                continue;
            };
            let port = socket.local_port().ok()?;
            if self.may_bind(port) {
                return Some(socket);
            }
            refused.push(socket);
        }
        None
    }

    /// A socket on `port`, if this picker may hand it out and it binds.
    fn bind_port<S: Bindable>(&self, port: u16) -> Option<S> {
        if !self.allows(port) || self.state().has(port) {
            return None;
        }
        // Held across the bind, so that no picker of ours takes the port
        // meanwhile; the socket holds it from then on.
        let _claim = match self.claims.as_ref().map(|names| names.claim(port)) {
            Some(Claim::Taken) => return None,
            claim => claim,
        };
        probe::bind_server(self.address, port)
    }

    /// Whether a port the kernel gave may be used: allowed, not out here,
    /// not claimed elsewhere.
    fn may_bind(&self, port: u16) -> bool {
        if !self.allows(port) || self.state().has(port) {
            return false;
        }
        !matches!(
            self.claims.as_ref().map(|names| names.claim(port)),
            Some(Claim::Taken)
        )
    }
}
