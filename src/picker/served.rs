//! Asking a portserver for a picker: which addresses a pick asks (the
//! caller's, then the picker's or `PORTSERVER_ADDRESS`), and the repeats
//! when the server hands back a port this picker has out already.

use std::time::Instant;

use super::{Picker, PORTSERVER_ADDRESS_ENV};
use crate::client::{self, PortServerError};
use crate::probe::Prober;

/// How many ports a portserver may give that this picker already handed
/// out, before the picker stops asking it.
const SERVER_REPEATS: usize = 3;

impl<P: Prober> Picker<P> {
    /// The first port a portserver gives for `pid`, asking `portserver_address`
    /// and then the configured address; `None` when the picker is
    /// constrained, no address is set, or every server failed (each failure
    /// warned about once).
    pub(super) fn pick_served(
        &self,
        pid: Option<u32>,
        portserver_address: Option<&str>,
    ) -> Option<u16> {
        let configured = match &self.portserver {
            Some(address) => address.clone(),
            None => std::env::var(PORTSERVER_ADDRESS_ENV).ok(),
        };
        let addresses = [portserver_address, configured.as_deref()];
        // The portserver cannot honour a range, exclusions or an address.
        let addresses = addresses.iter().filter(|_| !self.constrained());
        for address in addresses.flatten() {
            if address.is_empty() {
                continue;
            }
            match self.get_port_from_port_server(address, pid) {
                Ok(port) => return Some(port),
                // Python prints these too, then picks locally; once per
                // address and reason, not on every pick of a loop.
                Err(e) => {
                    crate::warn::warn_once(format_args!("portpick: {e}; picking a port locally"))
                }
            }
        }
        None
    }

    /// Asks the portserver at `address` for a port for `pid` (default: our
    /// own pid). A port it gives is owned: returning it makes it reusable in
    /// this process, as in Python. A port this picker has out already is
    /// not handed out twice: the server is asked again, a few times, all
    /// within one timeout (5 s unless set).
    ///
    /// # Errors
    ///
    /// [`PortServerError`] when the server is unreachable, silent, slow,
    /// answers something that is not a port, or gives only ports this
    /// picker has out ([`PortServerError::Repeated`]).
    pub fn get_port_from_port_server(
        &self,
        address: &str,
        pid: Option<u32>,
    ) -> Result<u16, PortServerError> {
        // One deadline for the pick: the repeats share it, so the tool
        // keeps its documented bound whatever the server answers.
        let deadline = Instant::now() + self.portserver_timeout;
        let mut last = 0;
        for _ in 0..SERVER_REPEATS {
            let left = deadline.saturating_duration_since(Instant::now());
            if last != 0 && left.is_zero() {
                break;
            }
            let port = client::get_port_from_port_server_with_timeout(address, pid, left).map_err(
                |e| match e {
                    PortServerError::Timeout { address, .. } => PortServerError::Timeout {
                        address,
                        after: self.portserver_timeout,
                    },
                    e => e,
                },
            )?;
            let mut state = self.state();
            if !state.picked_locally.contains_key(&port) && !state.owned.contains(&port) {
                // A reserved copy waiting would hand it out twice.
                state.reserved_waiting.remove(&port);
                state.owned.insert(port);
                return Ok(port);
            }
            last = port;
        }
        Err(PortServerError::Repeated {
            address: address.to_string(),
            port: last,
        })
    }
}
