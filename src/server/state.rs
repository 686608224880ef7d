//! The state file (`--portserver_state_file`): an append-only journal of
//! allocations, so no reservation is lost when the daemon restarts, even
//! after `kill -9`.
//!
//! Every allocation is appended as `PORT PID START_TIME` and `fsync`ed
//! before the client gets its answer. Releases are not written: on load,
//! the last line for a port wins and owners that are gone are dropped, which
//! is exactly what a release would have said (a port is only ever released
//! because its owner is gone, and a gone `(pid, start time)` never comes
//! back). When the journal grows past four times the live state (and 1,024
//! lines) it is compacted: the live state is written to `PATH.tmp`,
//! `fsync`ed, renamed over `PATH`, and the directory `fsync`ed, so a crash
//! at any point leaves either the old journal or the new one.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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

/// Parses a state file's bytes. Never panics; keeps every good line.
///
/// ```
/// use portpick::__private::server::parse_state;
/// let s = parse_state(b"portpick-state 1 boot=abc\n15000 42 777\n15001 4");
/// assert_eq!(s.boot_id.as_deref(), Some("abc"));
/// assert_eq!(s.entries.len(), 1);
/// assert_eq!(s.errors.len(), 1); // the truncated last line
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

/// The open journal.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    file: File,
    boot_id: Option<String>,
    lines: usize,
}

/// A state file problem.
#[derive(Debug)]
pub struct StateError {
    path: PathBuf,
    action: &'static str,
    source: io::Error,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} state file {}: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

/// `Display` prints the OS's message, so `source()` does not return it
/// again.
impl std::error::Error for StateError {}

impl StateError {
    /// What the OS said.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }
}

impl StateFile {
    /// Reads the state at `path` (missing: empty).
    ///
    /// # Errors
    ///
    /// The file exists but cannot be read.
    pub fn load(path: &Path) -> Result<StateContents, StateError> {
        match fs::read(path) {
            Ok(buf) => Ok(parse_state(&buf)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(StateContents::default()),
            Err(source) => Err(StateError {
                path: path.to_path_buf(),
                action: "read",
                source,
            }),
        }
    }

    /// Writes `held` as the whole state at `path` (atomically) and opens it
    /// for appending.
    ///
    /// # Errors
    ///
    /// The file or its directory cannot be written.
    pub fn create(
        path: &Path,
        boot_id: Option<String>,
        held: impl IntoIterator<Item = (u16, Owner)>,
    ) -> Result<StateFile, StateError> {
        let (file, lines) = write_snapshot(path, boot_id.as_deref(), held)?;
        Ok(StateFile {
            path: path.to_path_buf(),
            file,
            boot_id,
            lines,
        })
    }

    /// Appends one allocation and waits until it is on disk.
    ///
    /// # Errors
    ///
    /// The write or the `fsync` failed: the allocation must not be answered.
    pub fn append(&mut self, port: u16, owner: Owner) -> Result<(), StateError> {
        let line = format_entry(port, owner);
        let err = |source| StateError {
            path: self.path.clone(),
            action: "append to",
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(err)?;
        self.file.sync_data().map_err(err)?;
        self.lines += 1;
        Ok(())
    }

    /// Whether the journal has grown enough, for `held` live ports, that a
    /// compaction pays.
    pub fn wants_compaction(&self, held: usize) -> bool {
        self.lines > 1024 && self.lines > 4 * held
    }

    /// Rewrites the journal as `held` alone.
    ///
    /// # Errors
    ///
    /// Writing the new file failed; the old journal is still in place and
    /// still appended to.
    pub fn compact(
        &mut self,
        held: impl IntoIterator<Item = (u16, Owner)>,
    ) -> Result<(), StateError> {
        let (file, lines) = write_snapshot(&self.path, self.boot_id.as_deref(), held)?;
        self.file = file;
        self.lines = lines;
        Ok(())
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `held` to `PATH.tmp`, syncs it, renames it over `path`, syncs the
/// directory, and opens the result for appending.
fn write_snapshot(
    path: &Path,
    boot_id: Option<&str>,
    held: impl IntoIterator<Item = (u16, Owner)>,
) -> Result<(File, usize), StateError> {
    let tmp = tmp_path(path);
    let err = |action, source| StateError {
        path: path.to_path_buf(),
        action,
        source,
    };
    let mut text = format_header(boot_id);
    let mut lines = 0;
    for (port, owner) in held {
        text.push_str(&format_entry(port, owner));
        lines += 1;
    }
    let mut f = File::create(&tmp).map_err(|e| err("create", e))?;
    f.write_all(text.as_bytes()).map_err(|e| err("write", e))?;
    f.sync_all().map_err(|e| err("sync", e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| err("replace", e))?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        // Makes the rename durable; some filesystems cannot sync a
        // directory, which is not worth failing for.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| err("open", e))?;
    Ok((file, lines))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}
