//! [`PortGuard`]: a picked port that goes back to its picker when dropped,
//! so a test that panics still returns its ports.

use std::fmt;

use super::Picker;
use crate::probe::{Prober, SocketProber};

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
    pub(super) port: u16,
    pub(super) picker: &'a Picker<P>,
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
