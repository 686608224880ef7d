//! The journal's format, pure functions over bytes: a header naming the
//! boot, then one `PORT PID START_TIME` line per allocation. The fuzz
//! targets and the property tests call exactly these.

use std::fmt;

use crate::server::process::Owner;

const MAGIC: &str = "portpick-state 1";

/// One line of a state file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for StateLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// What a state file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateContents {
    /// The boot the file was written in, if its header says.
    pub boot_id: Option<String>,
    /// `(port, owner)` in file order; later lines win.
    pub entries: Vec<(u16, Owner)>,
    /// Lines skipped.
    pub errors: Vec<StateLineError>,
    /// Whether the header was missing or wrong.
    pub bad_header: bool,
}

/// Parses a state file's bytes. Never panics; keeps every good line. Lines
/// end with LF or CRLF.
///
/// ```
/// use portpick::__private::server::parse_state;
/// let s = parse_state(b"portpick-state 1 boot=abc\n15000 42 777\n15001 4");
/// assert_eq!(s.boot_id.as_deref(), Some("abc"));
/// assert_eq!(s.entries.len(), 1);
/// assert_eq!(s.errors.len(), 1); // the truncated last line
/// let crlf = parse_state(b"portpick-state 1 boot=abc\r\n15000 42 777\r\n");
/// assert_eq!((crlf.boot_id.as_deref(), crlf.entries.len()), (Some("abc"), 1));
/// ```
pub fn parse_state(buf: &[u8]) -> StateContents {
    let mut out = StateContents::default();
    let mut lines = buf.split(|&b| b == b'\n').enumerate().peekable();
    match lines.peek() {
        // The version is a whole word: `portpick-state 12` is not version 1.
        Some((_, first))
            if first.starts_with(MAGIC.as_bytes())
                && matches!(first.get(MAGIC.len()), None | Some(b' ' | b'\r')) =>
        {
            let rest = &first[MAGIC.len()..];
            out.boot_id = std::str::from_utf8(rest)
                .ok()
                .and_then(|r| r.trim().strip_prefix("boot="))
                .filter(|id| !id.is_empty())
                .map(str::to_string);
            lines.next();
        }
        _ => out.bad_header = !buf.is_empty(),
    }
    for (i, line) in lines {
        // A journal that went through an editor or another OS may end its
        // lines with CRLF: the CR is not part of the line.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        match parse_entry(line) {
            Ok(entry) => out.entries.push(entry),
            Err(reason) => out.errors.push(StateLineError {
                line: i + 1,
                reason,
            }),
        }
    }
    out
}

/// The journal's first line, `portpick-state 1 boot=ID\n`.
pub fn format_header(boot_id: Option<&str>) -> String {
    match boot_id {
        Some(id) => format!("{MAGIC} boot={id}\n"),
        None => format!("{MAGIC}\n"),
    }
}

/// One journal line, `PORT PID START_TIME\n`: the only writer of the
/// format [`parse_state`] reads.
pub fn format_entry(port: u16, owner: Owner) -> String {
    format!("{port} {} {}\n", owner.pid, owner.start_time)
}

fn parse_entry(line: &[u8]) -> Result<(u16, Owner), &'static str> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8")?;
    let mut parts = text.split(' ');
    let (Some(port), Some(pid), Some(start), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not three fields");
    };
    let port: u16 = digits(port).ok_or("bad port")?;
    let pid: u32 = digits(pid).ok_or("bad pid")?;
    let start_time: u64 = digits(start).ok_or("bad start time")?;
    if port == 0 || pid <= 1 {
        return Err("port or pid out of range");
    }
    Ok((port, Owner { pid, start_time }))
}

fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
