//! [`StateFile`], the open journal: loaded once, appended to and synced
//! for every allocation, compacted when it grows, and never written again
//! once the path names another file.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::error::{io_err, StateError};
use super::format::{format_entry, parse_state, StateContents};
use super::snapshot::write_snapshot;
use crate::server::process::Owner;

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

/// `(dev, inode)` of what `path` names itself (a link is not followed).
pub(super) fn identity_at(path: &Path) -> io::Result<(u64, u64)> {
    let m = fs::symlink_metadata(path)?;
    Ok((m.dev(), m.ino()))
}

impl StateFile {
    /// Reads the state at `path` (missing or empty: empty), with the bytes
    /// read (to keep a copy of a journal with lines that could not be read).
    ///
    /// # Errors
    ///
    /// [`StateError::Symlink`] when `path` is a link,
    /// [`StateError::NotAJournal`] when it is not a regular file or holds
    /// bytes without our header (the file is not touched), and
    /// [`StateError::Io`] when it cannot be read.
    pub fn load_with_bytes(path: &Path) -> Result<(StateContents, Vec<u8>), StateError> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok((StateContents::default(), Vec::new()))
            }
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
        Ok((contents, buf))
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
}
