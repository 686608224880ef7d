//! The portserver wire format, version 1 (Python's): a request is a pid in
//! ASCII decimal and a newline; the answer is a port and a newline, or
//! nothing. Our extensions: `stats`, and `pidns NS PID` (a pid as a pid
//! namespace sees it), which is always answered. Pure functions over bytes,
//! no I/O: the server, the client, the fuzzers and the property tests all
//! call these. Which pids get a port is the server's policy
//! (`server/policy.rs`), not the wire format's.

use std::fmt;

mod reply;

pub use reply::{
    format_denial, format_reply, format_stats, parse_namespaced_reply, parse_reply, parse_stats,
    NamespacedReply, ReplyError, MAX_DENIAL_LEN,
};

/// Longer requests are bad, as in Python's portserver.
pub const MAX_REQUEST_LEN: usize = 20;

/// Our extension: this request answers `name value` lines. Python's server
/// would reject it as a bad pid, so no Python client can mean anything else.
pub const STATS_REQUEST: &[u8] = b"stats\n";

/// Our extension: `pidns NS PID\n` asks for a port for the process `PID`
/// of the pid namespace whose inode is `NS`. Python's server rejects it (it
/// is no integer), so a silent close means a server without the extension.
pub const NAMESPACED_PREFIX: &[u8] = b"pidns ";

/// Longer namespaced requests are bad (the prefix, two 20-digit numbers, a
/// space and a newline fit).
pub const MAX_NAMESPACED_LEN: usize = 48;

/// A well-formed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Give a port to this pid. The number is as written: it may be 0, 1,
    /// negative or larger than any pid, which the server denies. Numbers
    /// beyond `i64` saturate.
    Allocate {
        /// The pid as the client wrote it.
        pid: i64,
    },
    /// Give a port to the process that is `pid` in the pid namespace
    /// whose inode is `namespace` (`pidns NS PID`). The pid is as written,
    /// as in [`Request::Allocate`].
    AllocateIn {
        /// The inode of the client's pid namespace (never 0).
        namespace: u64,
        /// The pid as the client's namespace sees it.
        pid: i64,
    },
    /// Report statistics (`stats`).
    Stats,
}

/// Why a request is bad. The server answers a bad request with nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// No bytes before the end of the line.
    Empty,
    /// More than [`MAX_REQUEST_LEN`] bytes ([`MAX_NAMESPACED_LEN`] for a
    /// namespaced request).
    TooLong {
        /// How many bytes there were.
        len: usize,
    },
    /// A byte that is not an ASCII digit (spaces, signs other than a leading
    /// `-`, hex, underscores, non-UTF-8 ...).
    InvalidByte {
        /// The byte.
        byte: u8,
        /// Where it is.
        at: usize,
    },
    /// Something follows the first newline.
    TrailingData,
    /// A namespaced request whose namespace is not a number from 1 to
    /// `u64::MAX`, or that has no pid after it.
    BadNamespace,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Empty => f.write_str("empty request"),
            RequestError::TooLong { len } => {
                write!(f, "request of {len} bytes is over the size limit")
            }
            RequestError::InvalidByte { byte, at } => {
                write!(
                    f,
                    "invalid byte {:?} at offset {at} in pid",
                    char::from(*byte)
                )
            }
            RequestError::TrailingData => f.write_str("data after the end of the request line"),
            RequestError::BadNamespace => {
                f.write_str("namespaced request is not `pidns NAMESPACE PID`")
            }
        }
    }
}

impl std::error::Error for RequestError {}

/// How much of a request has come (httparse's way): whether it is whole
/// and whether it is valid are one answer, so they cannot disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// The request is whole, and this is what it says.
    Complete(T),
    /// No newline yet, and no more bytes than a request may have: read on.
    Partial,
}

/// The size limit of the request `buf` begins: only the namespaced form
/// may be longer than Python's 20 bytes.
fn max_len(buf: &[u8]) -> usize {
    if is_namespaced(buf) {
        MAX_NAMESPACED_LEN
    } else {
        MAX_REQUEST_LEN
    }
}

/// Whether `buf` is (the start of) a namespaced request, which the server
/// answers whatever follows, a denial included.
pub fn is_namespaced(buf: &[u8]) -> bool {
    buf.starts_with(NAMESPACED_PREFIX)
}

/// Writes a namespaced request: `pidns NS PID\n`.
pub fn format_namespaced_request(namespace: u64, pid: u32) -> Vec<u8> {
    format!("pidns {namespace} {pid}\n").into_bytes()
}

/// Parses what a client has sent so far: [`Status::Partial`] until a
/// newline comes, the end of input (`at_eof`), or more bytes than a request
/// may have; then the request, or why it is bad. Bad bytes before the
/// newline are judged once the line is whole (or too long), so a client is
/// never answered mid-line.
///
/// ```
/// use portpick::__private::protocol::{parse_request, Request, RequestError, Status};
/// let whole = |buf: &[u8]| parse_request(buf, true);
/// assert_eq!(whole(b"1234\n"), Ok(Status::Complete(Request::Allocate { pid: 1234 })));
/// assert_eq!(whole(b"stats\n"), Ok(Status::Complete(Request::Stats)));
/// assert_eq!(whole(b"-5"), Ok(Status::Complete(Request::Allocate { pid: -5 })));
/// assert_eq!(
///     whole(b"pidns 4026532178 7\n"),
///     Ok(Status::Complete(Request::AllocateIn { namespace: 4026532178, pid: 7 }))
/// );
/// assert_eq!(whole(b""), Err(RequestError::Empty));
/// assert!(whole(b"0x10\n").is_err());
/// // More may come:
/// assert_eq!(parse_request(b"12", false), Ok(Status::Partial));
/// assert_eq!(parse_request(b"0x", false), Ok(Status::Partial));
/// ```
///
/// # Errors
///
/// A [`RequestError`] saying what is wrong; it never panics.
pub fn parse_request(buf: &[u8], at_eof: bool) -> Result<Status<Request>, RequestError> {
    if buf.len() > max_len(buf) {
        return Err(RequestError::TooLong { len: buf.len() });
    }
    if !at_eof && !buf.contains(&b'\n') {
        return Ok(Status::Partial);
    }
    parse_line(buf).map(Status::Complete)
}

/// A whole request within its size limit: up to end of input or the first
/// newline, which must be its last byte.
fn parse_line(buf: &[u8]) -> Result<Request, RequestError> {
    let line = match buf.iter().position(|&b| b == b'\n') {
        Some(end) if end + 1 != buf.len() => return Err(RequestError::TrailingData),
        Some(end) => &buf[..end],
        None => buf,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line == b"stats" {
        return Ok(Request::Stats);
    }
    if let Some(rest) = line.strip_prefix(NAMESPACED_PREFIX) {
        return parse_namespaced(rest);
    }
    parse_pid(line, 0).map(|pid| Request::Allocate { pid })
}

/// `NS PID` after the prefix: both plain decimal, one space between.
fn parse_namespaced(rest: &[u8]) -> Result<Request, RequestError> {
    let space = rest
        .iter()
        .position(|&b| b == b' ')
        .ok_or(RequestError::BadNamespace)?;
    let (ns, pid) = (&rest[..space], &rest[space + 1..]);
    if ns.is_empty() || ns.len() > 20 || !ns.iter().all(u8::is_ascii_digit) || pid.is_empty() {
        return Err(RequestError::BadNamespace);
    }
    let namespace = ns
        .iter()
        .try_fold(0u64, |v, &b| {
            v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .filter(|&ns| ns != 0)
        .ok_or(RequestError::BadNamespace)?;
    let pid = parse_pid(pid, NAMESPACED_PREFIX.len() + space + 1)?;
    Ok(Request::AllocateIn { namespace, pid })
}

/// A decimal pid with an optional `-`, saturating at `i64`; `offset` is
/// where `line` starts in the request, for the error.
fn parse_pid(line: &[u8], offset: usize) -> Result<i64, RequestError> {
    let (negative, digits, start) = match line.split_first() {
        None => return Err(RequestError::Empty),
        Some((b'-', rest)) => (true, rest, offset + 1),
        Some(_) => (false, line, offset),
    };
    if digits.is_empty() {
        return Err(RequestError::InvalidByte {
            byte: b'-',
            at: offset,
        });
    }
    let mut value: i64 = 0;
    for (i, &b) in digits.iter().enumerate() {
        if !b.is_ascii_digit() {
            return Err(RequestError::InvalidByte {
                byte: b,
                at: start + i,
            });
        }
        value = value.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    Ok(if negative { -value } else { value })
}
