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
//!
//! The path is trusted only as far as it is ours: a symbolic link, or a
//! file without our header, is refused and left alone; `PATH.tmp` is
//! created exclusively, never through a link.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
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

/// The open journal: the file at its path, written at known offsets.
///
/// Every write goes through the one handle that is (by identity, checked
/// before each append) the file at the path, at `good_len`, the length of
/// the whole lines already on disk. A write that fails part way is cut off
/// again, so a torn line can never have the next record glued onto it.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    file: File,
    /// `(dev, inode)` of `file`: the path must still name it.
    id: (u64, u64),
    boot_id: Option<String>,
    lines: usize,
    /// Bytes of whole, synced lines: where the next record goes.
    good_len: u64,
    /// A failed write could not be cut off yet: no record goes after it
    /// until it is.
    torn: bool,
    /// After a failed compaction, the line count at which to try again
    /// (each try writes the whole state).
    retry_compaction_at: usize,
}

/// A state file problem.
#[derive(Debug)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing the file (or its temporary copy) failed.
    Io {
        /// The state file.
        path: PathBuf,
        /// What was being done: `read`, `create`, `append to`, ...
        action: &'static str,
        /// What the OS said.
        source: io::Error,
    },
    /// The path (or its temporary copy's path) is a symbolic link, which
    /// is never followed.
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// The path holds something that is not a state file (another program's
    /// file, a typo'd path): it is left untouched.
    NotAJournal {
        /// The path.
        path: PathBuf,
    },
    /// The file at the path is no longer the journal this server writes
    /// (removed or replaced while it ran): nothing is written to either.
    Replaced {
        /// The path.
        path: PathBuf,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Io {
                path,
                action,
                source,
            } => write!(f, "cannot {action} state file {}: {source}", path.display()),
            StateError::Symlink { path } => write!(
                f,
                "state file {} is a symbolic link; not following it",
                path.display()
            ),
            StateError::NotAJournal { path } => write!(
                f,
                "{} is not a portpick state file; leaving it untouched",
                path.display()
            ),
            StateError::Replaced { path } => write!(
                f,
                "state file {} was replaced or removed while serving; not writing to it",
                path.display()
            ),
        }
    }
}

/// `Display` prints the OS's message, so `source()` does not return it
/// again (a chain printer would show it twice).
impl std::error::Error for StateError {}

impl StateError {
    /// What the OS said, for an I/O failure.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            StateError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl Fn(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// `(dev, inode)` of what `path` names itself (a link is not followed).
fn identity_at(path: &Path) -> io::Result<(u64, u64)> {
    let m = fs::symlink_metadata(path)?;
    Ok((m.dev(), m.ino()))
}

impl StateFile {
    /// Reads the state at `path` (missing or empty: empty).
    ///
    /// # Errors
    ///
    /// [`StateError::Symlink`] when `path` is a link,
    /// [`StateError::NotAJournal`] when it is not a regular file or holds
    /// bytes without our header (the file is not touched), and
    /// [`StateError::Io`] when it cannot be read.
    pub fn load(path: &Path) -> Result<StateContents, StateError> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StateContents::default()),
            Err(e) => return Err(io_err(path, "read")(e)),
        };
        if meta.file_type().is_symlink() {
            return Err(StateError::Symlink {
                path: path.to_path_buf(),
            });
        }
        if !meta.is_file() {
            // A FIFO would block the open, a directory cannot be replaced.
            return Err(StateError::NotAJournal {
                path: path.to_path_buf(),
            });
        }
        let mut file = File::open(path).map_err(io_err(path, "read"))?;
        let opened = file.metadata().map_err(io_err(path, "read"))?;
        if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            // Swapped between the look and the open: read nothing.
            return Err(StateError::Replaced {
                path: path.to_path_buf(),
            });
        }
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(io_err(path, "read"))?;
        let contents = parse_state(&buf);
        if contents.bad_header {
            return Err(StateError::NotAJournal {
                path: path.to_path_buf(),
            });
        }
        Ok(contents)
    }

    /// Writes `held` as the whole state at `path` (atomically) and keeps
    /// the new file open as the journal.
    ///
    /// # Errors
    ///
    /// The file or its directory cannot be written; `PATH.tmp` is a link
    /// or not a regular file.
    pub fn create(
        path: &Path,
        boot_id: Option<String>,
        held: impl IntoIterator<Item = (u16, Owner)>,
    ) -> Result<StateFile, StateError> {
        let (file, lines, good_len) = write_snapshot(path, boot_id.as_deref(), held, None)?;
        let meta = file.metadata().map_err(io_err(path, "create"))?;
        Ok(StateFile {
            path: path.to_path_buf(),
            file,
            id: (meta.dev(), meta.ino()),
            boot_id,
            lines,
            good_len,
            torn: false,
            retry_compaction_at: 0,
        })
    }

    /// Appends one allocation and waits until it is on disk.
    ///
    /// # Errors
    ///
    /// The write or the `fsync` failed (the journal is cut back to its last
    /// whole line), or the path no longer names this journal: either way
    /// the allocation must not be answered.
    pub fn append(&mut self, port: u16, owner: Owner) -> Result<(), StateError> {
        if self.torn {
            self.file
                .set_len(self.good_len)
                .map_err(io_err(&self.path, "repair"))?;
            self.torn = false;
        }
        if identity_at(&self.path).ok() != Some(self.id) {
            return Err(StateError::Replaced {
                path: self.path.clone(),
            });
        }
        let line = format_entry(port, owner);
        let written = self
            .file
            .write_all_at(line.as_bytes(), self.good_len)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Part of the line may be on disk (a full disk takes what fits)
            // or a whole one that was never synced: cut it off, as the
            // client will not get this port. If even that fails, the next
            // append tries again before writing anything.
            self.torn = self.file.set_len(self.good_len).is_err();
            return Err(io_err(&self.path, "append to")(e));
        }
        self.good_len += line.len() as u64;
        self.lines += 1;
        Ok(())
    }

    /// Whether the journal has grown enough, for `held` live ports, that a
    /// compaction pays.
    pub fn wants_compaction(&self, held: usize) -> bool {
        self.lines > 1024 && self.lines > 4 * held && self.lines >= self.retry_compaction_at
    }

    /// Rewrites the journal as `held` alone.
    ///
    /// # Errors
    ///
    /// Writing the new file failed; the old journal is still in place and
    /// still appended to (as long as the path names it).
    pub fn compact(
        &mut self,
        held: impl IntoIterator<Item = (u16, Owner)>,
    ) -> Result<(), StateError> {
        let snapshot = write_snapshot(&self.path, self.boot_id.as_deref(), held, Some(self.id));
        let (file, lines, good_len) = match snapshot {
            Ok(s) => s,
            Err(e) => {
                self.retry_compaction_at = self.lines + 256;
                return Err(e);
            }
        };
        // The rename made `file` the journal; no step after it can fail.
        let meta = file.metadata().map_err(io_err(&self.path, "compact"))?;
        self.id = (meta.dev(), meta.ino());
        self.file = file;
        self.lines = lines;
        self.good_len = good_len;
        self.torn = false;
        Ok(())
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `held` to a new `PATH.tmp` (created exclusively: a link there is
/// never followed), syncs it, renames it over `path` and syncs the
/// directory. The handle that wrote it is the journal from the rename on,
/// so there is no reopen that could fail or open something else. With
/// `replacing`, `path` must still be that file. On failure the temporary
/// file is removed.
fn write_snapshot(
    path: &Path,
    boot_id: Option<&str>,
    held: impl IntoIterator<Item = (u16, Owner)>,
    replacing: Option<(u64, u64)>,
) -> Result<(File, usize, u64), StateError> {
    let tmp = tmp_path(path);
    let mut text = format_header(boot_id);
    let mut lines = 0;
    for (port, owner) in held {
        text.push_str(&format_entry(port, owner));
        lines += 1;
    }
    match fs::symlink_metadata(&tmp) {
        Ok(m) if m.file_type().is_symlink() => return Err(StateError::Symlink { path: tmp }),
        // A leftover of ours (a crash mid-snapshot).
        Ok(m) if m.is_file() => fs::remove_file(&tmp).map_err(io_err(path, "remove"))?,
        Ok(_) => return Err(StateError::NotAJournal { path: tmp }),
        Err(_) => {}
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err(path, "create"))?;
    let written = f
        .write_all(text.as_bytes())
        .map_err(io_err(path, "write"))
        .and_then(|()| f.sync_all().map_err(io_err(path, "sync")))
        .and_then(|()| match replacing {
            Some(id) if identity_at(path).ok() != Some(id) => Err(StateError::Replaced {
                path: path.to_path_buf(),
            }),
            _ => Ok(()),
        })
        .and_then(|()| fs::rename(&tmp, path).map_err(io_err(path, "replace")));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
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
    Ok((f, lines, text.len() as u64))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}
