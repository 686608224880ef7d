//! Why a portserver could not start.

use std::fmt;
use std::io;

use crate::server::state::StateError;

/// Why a portserver could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// Another server answers on the address.
    AlreadyServing {
        /// The address.
        address: String,
    },
    /// Something that is not a socket sits at the path.
    NotASocket {
        /// The path.
        address: String,
    },
    /// Binding the socket failed.
    Bind {
        /// The address.
        address: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The pool has no port.
    EmptyPool,
    /// The state file cannot be read or written.
    State(StateError),
    /// A thread could not be started.
    Spawn(io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The OS's message is printed here, so `source()` does not return
        // it again: a chain printer would show it twice.
        match self {
            ServerError::AlreadyServing { address } => {
                write!(f, "a portserver is already serving on {address}")
            }
            ServerError::NotASocket { address } => {
                write!(f, "{address} exists and is not a socket; not replacing it")
            }
            ServerError::Bind { address, source } => {
                write!(f, "cannot listen on {address}: {source}")
            }
            ServerError::EmptyPool => f.write_str("no ports to serve"),
            ServerError::State(e) => e.fmt(f),
            ServerError::Spawn(e) => write!(f, "cannot start a server thread: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}
