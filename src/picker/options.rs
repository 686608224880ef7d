//! The options that narrow what a picker hands out: a range, exclusions,
//! an address. Each makes the picker pick locally, since a portserver
//! cannot honour them.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use super::Picker;
use crate::probe::Prober;

impl<P: Prober> Picker<P> {
    /// Hands out only ports in `range` (port 0 is never one). Such a picker
    /// picks locally: random candidates in the range, each probed and
    /// claimed, then, when the range holds at most 4,096 ports, every port
    /// of it in turn, so a full range fails rather than loops. A portserver
    /// is not asked (its pool is its own, and a port it gave cannot be given
    /// back to it); reserved ports in the range still come first. Default:
    /// no range.
    ///
    /// ```no_run
    /// let picker = portpick::Picker::new().range(20000..=20099);
    /// let port = picker.pick_unused_port()?;
    /// assert!((20000..=20099).contains(&port));
    /// # Ok::<(), portpick::NoFreePortError>(())
    /// ```
    pub fn range(mut self, range: RangeInclusive<u16>) -> Self {
        self.range = Some(((*range.start()).max(1), *range.end()));
        self
    }

    /// Never hands out these ports (added to those of earlier calls). Such
    /// a picker picks locally, as with [`Picker::range`]. Default: none.
    ///
    /// ```no_run
    /// let picker = portpick::Picker::new().range(20000..=20001).exclude([20000]);
    /// assert_eq!(picker.pick_unused_port()?, 20001);
    /// # Ok::<(), portpick::NoFreePortError>(())
    /// ```
    pub fn exclude(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.exclude.extend(ports);
        self
    }

    /// "Free" means free on `ip` (TCP and UDP), and the picker's listeners
    /// ([`Picker::bind_unused_tcp`]) bind there: `127.0.0.1` keeps a test
    /// server off the network. Such a picker picks locally, as with
    /// [`Picker::range`]. The prober is asked through
    /// [`Prober::is_free_on`]; a prober that does not provide it answers
    /// for every address. Default: Python's rule, the wildcard of every
    /// family.
    ///
    /// ```no_run
    /// use std::net::Ipv4Addr;
    /// let picker = portpick::Picker::new().address(Ipv4Addr::LOCALHOST.into());
    /// let listener = picker.bind_unused_tcp()?;
    /// assert!(listener.local_addr()?.ip().is_loopback());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn address(mut self, ip: IpAddr) -> Self {
        self.address = Some(ip);
        self
    }

    /// Whether range, exclusions or an address are set: then only a local
    /// pick can honour them.
    pub(super) fn constrained(&self) -> bool {
        self.range.is_some() || !self.exclude.is_empty() || self.address.is_some()
    }

    /// Whether `port` may be handed out: in the range, not excluded.
    pub(super) fn allows(&self, port: u16) -> bool {
        port != 0
            && self.range.map_or(true, |(lo, hi)| lo <= port && port <= hi)
            && !self.exclude.contains(&port)
    }
}
