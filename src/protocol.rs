//! The portserver wire format, version 1 (Python's): a request is a pid in
//! ASCII decimal and a newline; the answer is a port and a newline, or
//! nothing. Pure functions over bytes, no I/O: the server, the client, the
//! fuzzers and the property tests all call these.

use std::fmt;

/// Longer requests are bad, as in Python's portserver.
pub const MAX_REQUEST_LEN: usize = 20;

/// Our extension: this request answers `name value` lines. Python's server
/// would reject it as a bad pid, so no Python client can mean anything else.
pub const STATS_REQUEST: &[u8] = b"stats\n";

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
    /// Report statistics (`stats`).
    Stats,
}

/// Why a request is bad. The server answers a bad request with nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// No bytes before the end of the line.
    Empty,
    /// More than [`MAX_REQUEST_LEN`] bytes.
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
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Empty => f.write_str("empty request"),
            RequestError::TooLong { len } => {
                write!(
                    f,
                    "request of {len} bytes is over the {MAX_REQUEST_LEN}-byte limit"
                )
            }
            RequestError::InvalidByte { byte, at } => {
                write!(
                    f,
                    "invalid byte {:?} at offset {at} in pid",
                    char::from(*byte)
                )
            }
            RequestError::TrailingData => f.write_str("data after the end of the request line"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Whether `buf` holds all a request can be: a newline has come, or more
/// bytes than a request may have. (End of input also completes one.)
pub fn is_complete(buf: &[u8]) -> bool {
    buf.len() > MAX_REQUEST_LEN || buf.contains(&b'\n')
}

/// Parses one whole request: what a client sent up to end of input or the
/// first newline.
///
/// ```
/// use portpick::__private::protocol::{parse_request, Request, RequestError};
/// assert_eq!(parse_request(b"1234\n"), Ok(Request::Allocate { pid: 1234 }));
/// assert_eq!(parse_request(b"stats\n"), Ok(Request::Stats));
/// assert_eq!(parse_request(b"-5"), Ok(Request::Allocate { pid: -5 }));
/// assert_eq!(parse_request(b""), Err(RequestError::Empty));
/// assert!(parse_request(b"0x10\n").is_err());
/// ```
///
/// # Errors
///
/// A [`RequestError`] saying what is wrong; it never panics.
pub fn parse_request(buf: &[u8]) -> Result<Request, RequestError> {
    if buf.len() > MAX_REQUEST_LEN {
        return Err(RequestError::TooLong { len: buf.len() });
    }
    let line = match buf.iter().position(|&b| b == b'\n') {
        Some(end) if end + 1 != buf.len() => return Err(RequestError::TrailingData),
        Some(end) => &buf[..end],
        None => buf,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line == b"stats" {
        return Ok(Request::Stats);
    }
    let (negative, digits, offset) = match line.split_first() {
        None => return Err(RequestError::Empty),
        Some((b'-', rest)) => (true, rest, 1),
        Some(_) => (false, line, 0),
    };
    if digits.is_empty() {
        return Err(RequestError::InvalidByte { byte: b'-', at: 0 });
    }
    let mut value: i64 = 0;
    for (i, &b) in digits.iter().enumerate() {
        if !b.is_ascii_digit() {
            return Err(RequestError::InvalidByte {
                byte: b,
                at: i + offset,
            });
        }
        value = value.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    Ok(Request::Allocate {
        pid: if negative { -value } else { value },
    })
}

/// Why a request got no port (the server answers them all alike: it closes
/// without a word; the reason goes to its log and its counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// Pid 0 or negative.
    InvalidPid,
    /// Pid 1: the client was reparented to init and meant its parent.
    Init,
    /// Not below [`PID_MAX_LIMIT`].
    PidOutOfRange,
    /// No process with that pid runs.
    NotRunning,
    /// The owner already holds its quota.
    Quota {
        /// How many ports it holds.
        held: usize,
    },
    /// Every port is held or in use outside the server.
    Exhausted,
    /// The allocation could not be recorded in the state file.
    NotPersisted,
    /// The process table could not tell whether the pid runs (the server
    /// is out of file descriptors, say).
    CannotCheck,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::InvalidPid => f.write_str("invalid pid"),
            Denial::Init => f.write_str("pid 1 (init)"),
            Denial::PidOutOfRange => f.write_str("pid out of range"),
            Denial::NotRunning => f.write_str("no such process"),
            Denial::Quota { held } => write!(f, "quota reached ({held} ports held)"),
            Denial::Exhausted => f.write_str("all ports in use"),
            Denial::NotPersisted => f.write_str("state file write failed"),
            Denial::CannotCheck => f.write_str("cannot tell whether the pid runs"),
        }
    }
}

/// Linux's `PID_MAX_LIMIT` (2^22): `kernel.pid_max` cannot be set above
/// it, so every pid is below it.
pub const PID_MAX_LIMIT: i64 = 1 << 22;

/// Checks a requested pid before any system call: 0 and negative are
/// invalid, 1 is init (the client was reparented and meant its parent), and
/// no pid reaches [`PID_MAX_LIMIT`].
///
/// ```
/// use portpick::__private::protocol::{check_pid, Denial, PID_MAX_LIMIT};
/// assert_eq!(check_pid(1234), Ok(1234));
/// assert_eq!(check_pid(1), Err(Denial::Init));
/// assert_eq!(check_pid(PID_MAX_LIMIT), Err(Denial::PidOutOfRange));
/// ```
///
/// # Errors
///
/// [`Denial::InvalidPid`], [`Denial::Init`] or [`Denial::PidOutOfRange`].
pub fn check_pid(pid: i64) -> Result<u32, Denial> {
    match pid {
        i64::MIN..=0 => Err(Denial::InvalidPid),
        1 => Err(Denial::Init),
        p if p >= PID_MAX_LIMIT => Err(Denial::PidOutOfRange),
        // Below 2^22, so it fits.
        p => Ok(p as u32),
    }
}

/// Writes the answer for a port: `PORT\n`.
pub fn format_reply(port: u16) -> Vec<u8> {
    format!("{port}\n").into_bytes()
}

/// Why a reply is not a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError;

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("reply is not a port number")
    }
}

impl std::error::Error for ReplyError {}

/// Reads a server's answer. Empty means no port (`Ok(None)`), as does `0`
/// (Python's client treats 0 as failure too). Like Python's client, only the
/// first line counts and white space around the number is allowed.
///
/// ```
/// use portpick::__private::protocol::parse_reply;
/// assert_eq!(parse_reply(b"15000\n"), Ok(Some(15000)));
/// assert_eq!(parse_reply(b""), Ok(None));
/// assert!(parse_reply(b"nope\n").is_err());
/// ```
///
/// # Errors
///
/// [`ReplyError`] when the first line is not a number from 0 to 65535.
pub fn parse_reply(buf: &[u8]) -> Result<Option<u16>, ReplyError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(buf);
    let line = trim_ascii(line);
    if line.is_empty() || line.len() > 5 || !line.iter().all(u8::is_ascii_digit) {
        return Err(ReplyError);
    }
    let value = line.iter().fold(0u32, |v, &b| v * 10 + u32::from(b - b'0'));
    match u16::try_from(value) {
        Ok(0) => Ok(None),
        Ok(port) => Ok(Some(port)),
        Err(_) => Err(ReplyError),
    }
}

/// `<[u8]>::trim_ascii`, which is newer (1.80) than our minimum Rust.
fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !first.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !last.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    s
}

/// Writes statistics as `name value\n` lines.
pub fn format_stats<'a>(stats: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<u8> {
    let mut out = String::new();
    for (name, value) in stats {
        out.push_str(name);
        out.push(' ');
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

/// Reads `name value\n` lines; `None` if any line is not of that form.
pub fn parse_stats(buf: &[u8]) -> Option<Vec<(String, u64)>> {
    let text = std::str::from_utf8(buf).ok()?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}
