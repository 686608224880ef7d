//! Asking a portserver for a port (the client half of the wire protocol).

mod connect;
mod error;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::address::PortServerAddress;
use crate::protocol;
use connect::{connect_within, Connected};

pub use error::PortServerError;

/// How long a whole exchange with a portserver may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

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
    let deadline = Instant::now() + timeout;
    let timed_out = || PortServerError::Timeout {
        address: address.to_string(),
        after: timeout,
    };
    let mut stream = match connect_within(address, sockaddr, timeout) {
        Connected::Yes(stream) => stream,
        Connected::Failed(source) => return Err(connect_err(source)),
        Connected::NotInTime => return Err(timed_out()),
    };
    // What the connect left of the time; a zero timeout would mean none.
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let io_err = |source: io::Error| {
        if matches!(
            source.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            timed_out()
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
    // One timeout for every read, and the deadline checked after each: a
    // server that trickles bytes is cut off at the deadline (plus at most
    // one read's wait), and an honest one costs no extra system calls.
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    read_reply(&mut stream, address, deadline, limit, one_line, io_err)
}

/// Reads `stream` until the server closes it (with `one_line`, until the
/// first newline) or `deadline` passes; more than `limit` bytes is a
/// [`PortServerError::BadReply`].
fn read_reply(
    stream: &mut UnixStream,
    address: &str,
    deadline: Instant,
    limit: usize,
    one_line: bool,
    io_err: impl Fn(io::Error) -> PortServerError,
) -> Result<Vec<u8>, PortServerError> {
    let mut reply = Vec::with_capacity(8);
    let mut buf = [0u8; 256];
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
/// `None`; either way as our pid namespace sees it), waiting at most
/// `timeout` in all.
///
/// In the host's pid namespace the request is Python's; in another (a
/// sandbox) it names our namespace too, which only our portserver
/// understands: the pid alone would name another process on the server's
/// side. Where our namespace cannot be read, the server is not asked.
///
/// # Errors
///
/// [`PortServerError::NoPort`] when the server closes without a port,
/// [`PortServerError::Refused`] when it says why (sandboxed requests),
/// [`PortServerError::NoNamespaces`] when a sandboxed request meets a
/// server without the extension, [`PortServerError::OwnNamespaceUnknown`]
/// when `/proc/self/ns/pid` cannot be read, and the other variants when it cannot be
/// reached, is too slow, or answers something that is not a port.
pub fn get_port_from_port_server_with_timeout(
    address: &str,
    pid: Option<u32>,
    timeout: Duration,
) -> Result<u16, PortServerError> {
    let pid = pid.unwrap_or_else(std::process::id);
    // The plain request only where we know our pid is the server's.
    match crate::pidns::own_namespace() {
        Ok(crate::pidns::INIT_NAMESPACE) => {}
        Ok(ns) => return get_port_in_namespace(address, ns, pid, timeout),
        Err(source) => {
            return Err(PortServerError::OwnNamespaceUnknown {
                address: address.to_string(),
                source,
            })
        }
    }
    let mut line = pid.to_string().into_bytes();
    line.push(b'\n');
    let reply = exchange(address, &line, timeout, 64, true)?;
    match protocol::parse_reply(&reply) {
        Ok(Some(port)) => Ok(port),
        Ok(None) => Err(PortServerError::NoPort {
            address: address.to_string(),
        }),
        Err(_) => Err(bad_reply(address, reply)),
    }
}

/// An answer that is not what the protocol allows, cut short for the
/// error's message.
fn bad_reply(address: &str, mut reply: Vec<u8>) -> PortServerError {
    reply.truncate(64);
    PortServerError::BadReply {
        address: address.to_string(),
        reply,
    }
}

/// The sandboxed form: `pidns NS PID`, answered with a port or a reason.
fn get_port_in_namespace(
    address: &str,
    ns: u64,
    pid: u32,
    timeout: Duration,
) -> Result<u16, PortServerError> {
    let request = protocol::format_namespaced_request(ns, pid);
    let reply = exchange(address, &request, timeout, 512, true)?;
    match protocol::parse_namespaced_reply(&reply) {
        Ok(protocol::NamespacedReply::Port(port)) => Ok(port),
        Ok(protocol::NamespacedReply::Denied(reason)) => Err(PortServerError::Refused {
            address: address.to_string(),
            reason,
        }),
        Ok(protocol::NamespacedReply::Silent) => Err(PortServerError::NoNamespaces {
            address: address.to_string(),
        }),
        Err(_) => Err(bad_reply(address, reply)),
    }
}

/// Asks the portserver at `address` for its statistics (our `stats\n`
/// extension) and returns the `name value` pairs in the order given.
///
/// # Errors
///
/// As [`get_port_from_port_server_with_timeout`]; a server that does not
/// know the extension (Python's) closes without a word:
/// [`PortServerError::NoStats`].
pub fn get_port_server_stats(
    address: &str,
    timeout: Duration,
) -> Result<Vec<(String, u64)>, PortServerError> {
    let reply = exchange(address, protocol::STATS_REQUEST, timeout, 64 * 1024, false)?;
    if reply.is_empty() {
        return Err(PortServerError::NoStats {
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
