//! The server's side of the exchange: a port, a denial with its reason
//! (namespaced requests only), or statistics; how to write and read each.

use std::fmt;

/// Writes the answer for a port: `PORT\n`.
pub fn format_reply(port: u16) -> Vec<u8> {
    format!("{port}\n").into_bytes()
}

/// Writes the answer to a namespaced request that gets no port:
/// `0 REASON\n`, on one line.
pub fn format_denial(reason: &str) -> Vec<u8> {
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DENIAL_LEN)
        .collect();
    format!("0 {reason}\n").into_bytes()
}

/// The longest reason a denial carries, in characters.
pub const MAX_DENIAL_LEN: usize = 200;

/// A server's answer to a namespaced request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespacedReply {
    /// A port.
    Port(u16),
    /// No port, and why (`0 REASON`).
    Denied(String),
    /// A close without a word: the server does not know the extension
    /// (Python's), since ours answers every namespaced request.
    Silent,
}

/// Reads a server's answer to a namespaced request: `PORT`, `0 REASON`, or
/// nothing. Only the first line counts.
///
/// ```
/// use portpick::__private::protocol::{parse_namespaced_reply, NamespacedReply};
/// assert_eq!(parse_namespaced_reply(b"15000\n"), Ok(NamespacedReply::Port(15000)));
/// assert_eq!(
///     parse_namespaced_reply(b"0 no such process\n"),
///     Ok(NamespacedReply::Denied("no such process".into()))
/// );
/// assert_eq!(parse_namespaced_reply(b""), Ok(NamespacedReply::Silent));
/// ```
///
/// # Errors
///
/// [`ReplyError`] when the first line is neither a port nor a denial.
pub fn parse_namespaced_reply(buf: &[u8]) -> Result<NamespacedReply, ReplyError> {
    if buf.is_empty() {
        return Ok(NamespacedReply::Silent);
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(buf);
    if let Some(reason) = line.strip_prefix(b"0 ") {
        let reason = String::from_utf8_lossy(trim_ascii(reason));
        let reason: String = reason.chars().take(MAX_DENIAL_LEN).collect();
        // Cut at the cap, it may end in white space, which a reason never
        // keeps: trimmed again, a denial written out reads back the same.
        let reason = reason.trim_end_matches(|c: char| c.is_ascii_whitespace());
        return Ok(NamespacedReply::Denied(reason.to_string()));
    }
    match parse_reply(line)? {
        Some(port) => Ok(NamespacedReply::Port(port)),
        None => Ok(NamespacedReply::Denied(String::new())),
    }
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
