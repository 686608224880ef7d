//! [`PortServerError`]: why a portserver gave no port, with its address
//! and what the OS or the server said.

use std::fmt;
use std::io;
use std::time::Duration;

/// Why a portserver gave no port.
#[derive(Debug)]
#[non_exhaustive]
pub enum PortServerError {
    /// The address string is empty.
    InvalidAddress {
        /// The address as given.
        address: String,
    },
    /// No connection could be made (no server, refused, unsupported name).
    Connect {
        /// The server's address.
        address: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The connection broke while talking.
    Io {
        /// The server's address.
        address: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The server did not answer in time.
    Timeout {
        /// The server's address.
        address: String,
        /// The limit that passed.
        after: Duration,
    },
    /// The server closed the connection without a port: it has none for
    /// this pid, or refused the request.
    NoPort {
        /// The server's address.
        address: String,
    },
    /// The server gave no port and said why (it does for requests from
    /// another pid namespace).
    Refused {
        /// The server's address.
        address: String,
        /// Its reason.
        reason: String,
    },
    /// We are in a pid namespace other than the host's (a sandbox), and
    /// the server closed without a word: it does not know our request that
    /// names the namespace (Python's portserver does not), and the pid
    /// alone would name another process on its side.
    NoNamespaces {
        /// The server's address.
        address: String,
    },
    /// Our pid namespace could not be read (`/proc` missing, hidden or out
    /// of file descriptors), so the server was not asked: the plain request
    /// is safe only in the host's namespace, and in a sandbox our pid would
    /// name another process on the server's side.
    OwnNamespaceUnknown {
        /// The server's address.
        address: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The server closed the connection without statistics: it does not
    /// know our `stats` request (Python's portserver does not).
    NoStats {
        /// The server's address.
        address: String,
    },
    /// The server gave, again and again, ports this process's picker has
    /// handed out and not had back (Python's server does not see our
    /// claims; or a port of a dead owner that we still hold): handing one
    /// out twice would let two users of this process meet.
    Repeated {
        /// The server's address.
        address: String,
        /// The last port it gave.
        port: u16,
    },
    /// The server answered something that is not a port.
    BadReply {
        /// The server's address.
        address: String,
        /// What it said (at most 64 bytes of it).
        reply: Vec<u8>,
    },
}

impl fmt::Display for PortServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortServerError::InvalidAddress { address } => {
                write!(f, "invalid portserver address {address:?}")
            }
            PortServerError::Connect { address, source } => {
                write!(f, "cannot connect to portserver {address:?}: {source}")
            }
            PortServerError::Io { address, source } => {
                write!(f, "error talking to portserver {address:?}: {source}")
            }
            PortServerError::Timeout { address, after } => {
                write!(f, "portserver {address:?} did not answer within {after:?}")
            }
            // The protocol has no word for why: say what it can be.
            PortServerError::NoPort { address } => write!(
                f,
                "portserver {address:?} gave no port (it denies a pid that is not \
                 running, pid 1, a kernel thread and a pid over its quota, and has none \
                 when its pool is exhausted; its log says which)"
            ),
            PortServerError::Refused { address, reason } => {
                write!(f, "portserver {address:?} gave no port: {reason}")
            }
            PortServerError::NoNamespaces { address } => write!(
                f,
                "portserver {address:?} cannot serve a sandboxed client: we are in a pid \
                 namespace other than the host's, and it does not know the request that \
                 says which (Python's portserver does not); our pid would name another \
                 process there"
            ),
            PortServerError::OwnNamespaceUnknown { address, source } => write!(
                f,
                "did not ask portserver {address:?}: cannot read our pid namespace \
                 (/proc/self/ns/pid: {source}), and in a sandbox our pid would name \
                 another process there"
            ),
            PortServerError::NoStats { address } => write!(
                f,
                "portserver {address:?} answered no statistics (it does not know the \
                 `stats` request: Python's portserver does not)"
            ),
            PortServerError::Repeated { address, port } => write!(
                f,
                "portserver {address:?} gave port {port}, which this process already \
                 handed out and has not had back"
            ),
            PortServerError::BadReply { address, reply } => write!(
                f,
                "portserver {address:?} answered {:?}, which is not a port",
                String::from_utf8_lossy(reply)
            ),
        }
    }
}

/// `Display` prints the OS's message, so `source()` does not return it
/// again (a chain printer would show it twice); `From<PortServerError> for
/// io::Error` keeps its kind.
impl std::error::Error for PortServerError {}

impl From<PortServerError> for io::Error {
    fn from(e: PortServerError) -> io::Error {
        let kind = match &e {
            PortServerError::InvalidAddress { .. } => io::ErrorKind::InvalidInput,
            PortServerError::Connect { source, .. }
            | PortServerError::Io { source, .. }
            | PortServerError::OwnNamespaceUnknown { source, .. } => source.kind(),
            PortServerError::Timeout { .. } => io::ErrorKind::TimedOut,
            PortServerError::NoPort { .. } | PortServerError::Refused { .. } => {
                io::ErrorKind::NotFound
            }
            PortServerError::NoNamespaces { .. } => io::ErrorKind::Unsupported,
            PortServerError::NoStats { .. } => io::ErrorKind::Unsupported,
            PortServerError::Repeated { .. } => io::ErrorKind::AlreadyExists,
            PortServerError::BadReply { .. } => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}
