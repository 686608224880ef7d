//! Asking a portserver for a port (the client half of the wire protocol).

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::address::PortServerAddress;
use crate::protocol;

/// How long a whole exchange with a portserver may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

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
            PortServerError::NoPort { address } => {
                write!(f, "portserver {address:?} gave no port")
            }
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
            PortServerError::Connect { source, .. } | PortServerError::Io { source, .. } => {
                source.kind()
            }
            PortServerError::Timeout { .. } => io::ErrorKind::TimedOut,
            PortServerError::NoPort { .. } => io::ErrorKind::NotFound,
            PortServerError::BadReply { .. } => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

/// Sends `request` (one line, newline included) to the portserver at
/// `address` and reads its whole answer, within `timeout`. With
/// `one_line`, the answer ends at its first newline, as Python's client
/// takes it: a server that answers but holds the connection open still
/// gave its port.
pub(crate) fn exchange(
    address: &str,
    request: &[u8],
    timeout: Duration,
    limit: usize,
    one_line: bool,
) -> Result<Vec<u8>, PortServerError> {
    let addr: PortServerAddress = address
        .parse()
        .map_err(|_| PortServerError::InvalidAddress {
            address: address.to_string(),
        })?;
    let connect_err = |source| PortServerError::Connect {
        address: address.to_string(),
        source,
    };
    let sockaddr = addr.to_socket_addr().map_err(connect_err)?;
    // A unix connect does not wait for the server to accept: it returns as
    // soon as the connection is queued. It blocks, with no limit std lets us
    // set, only when the server's listen queue is full (a server that has
    // stopped accepting; Python's client hangs there too). Everything after
    // it is bounded by `timeout`.
    let mut stream = UnixStream::connect_addr(&sockaddr).map_err(connect_err)?;
    let deadline = Instant::now() + timeout;
    let io_err = |source: io::Error| {
        if matches!(
            source.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            PortServerError::Timeout {
                address: address.to_string(),
                after: timeout,
            }
        } else {
            PortServerError::Io {
                address: address.to_string(),
                source,
            }
        }
    };
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    match stream.write_all(request) {
        Ok(()) => {}
        // A server that refuses the request may close before we finish.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(io_err(e)),
    }
    let mut reply = Vec::with_capacity(8);
    let mut buf = [0u8; 256];
    // One timeout for every read, and the deadline checked after each: a
    // server that trickles bytes is cut off at the deadline (plus at most
    // one read's wait), and an honest one costs no extra system calls.
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(reply),
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if reply.len() > limit {
                    reply.truncate(64);
                    return Err(PortServerError::BadReply {
                        address: address.to_string(),
                        reply,
                    });
                }
                if one_line && reply.contains(&b'\n') {
                    return Ok(reply);
                }
                if Instant::now() > deadline {
                    return Err(io_err(io::ErrorKind::TimedOut.into()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The server closed with our request unread: it gave no port.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(reply),
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// Asks the portserver at `address` for a port for `pid` (our own pid when
/// `None`), waiting at most `timeout` in all.
///
/// # Errors
///
/// [`PortServerError::NoPort`] when the server closes without a port, and
/// the other variants when it cannot be reached, is too slow, or answers
/// something that is not a port.
pub fn get_port_from_port_server_with_timeout(
    address: &str,
    pid: Option<u32>,
    timeout: Duration,
) -> Result<u16, PortServerError> {
    let pid = pid.unwrap_or_else(std::process::id);
    let mut line = itoa_u32(pid);
    line.push(b'\n');
    let reply = exchange(address, &line, timeout, 64, true)?;
    match protocol::parse_reply(&reply) {
        Ok(Some(port)) => Ok(port),
        Ok(None) => Err(PortServerError::NoPort {
            address: address.to_string(),
        }),
        Err(_) => {
            let mut reply = reply;
            reply.truncate(64);
            Err(PortServerError::BadReply {
                address: address.to_string(),
                reply,
            })
        }
    }
}

fn itoa_u32(n: u32) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// Asks the portserver at `address` for its statistics (our `stats\n`
/// extension) and returns the `name value` pairs in the order given.
///
/// # Errors
///
/// As [`get_port_from_port_server_with_timeout`]; a server that does not
/// know the extension (Python's) closes without a word: `NoPort`.
pub fn get_port_server_stats(
    address: &str,
    timeout: Duration,
) -> Result<Vec<(String, u64)>, PortServerError> {
    let reply = exchange(address, protocol::STATS_REQUEST, timeout, 64 * 1024, false)?;
    if reply.is_empty() {
        return Err(PortServerError::NoPort {
            address: address.to_string(),
        });
    }
    protocol::parse_stats(&reply).ok_or_else(|| {
        let mut reply = reply;
        reply.truncate(64);
        PortServerError::BadReply {
            address: address.to_string(),
            reply,
        }
    })
}
