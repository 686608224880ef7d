//! Writing the whole state at once, atomically: a new file beside the
//! journal, synced, then renamed over it, so a crash at any point leaves
//! either the old journal or the new one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{io_err, StateError};
use super::format::{format_entry, format_header};
use super::journal::identity_at;
use crate::server::process::Owner;

/// Writes `held` to a new `PATH.tmp` (created exclusively: a link there is
/// never followed), syncs it, renames it over `path` and syncs the
/// directory. The handle that wrote it is the journal from the rename on,
/// so there is no reopen that could fail or open something else. With
/// `replacing`, `path` must still be that file. On failure the temporary
/// file is removed.
pub(super) fn write_snapshot(
    path: &Path,
    boot_id: Option<&str>,
    held: impl IntoIterator<Item = (u16, Owner)>,
    replacing: Option<(u64, u64)>,
) -> Result<(File, usize, u64), StateError> {
    let tmp = with_suffix(path, ".tmp");
    let mut text = format_header(boot_id);
    let mut lines = 0;
    for (port, owner) in held {
        text.push_str(&format_entry(port, owner));
        lines += 1;
    }
    let mut f = create_fresh(path, &tmp)?;
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

/// Creates `tmp` (beside the state file at `path`) exclusively, after
/// removing a leftover regular file of ours there (a crash mid-write); a
/// link or anything else there is refused, never followed.
fn create_fresh(path: &Path, tmp: &Path) -> Result<File, StateError> {
    match fs::symlink_metadata(tmp) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(StateError::Symlink {
                path: tmp.to_path_buf(),
            })
        }
        Ok(m) if m.is_file() => fs::remove_file(tmp).map_err(io_err(path, "remove"))?,
        Ok(_) => {
            return Err(StateError::NotAJournal {
                path: tmp.to_path_buf(),
            })
        }
        Err(_) => {}
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(io_err(path, "create"))
}

/// Writes `bytes` (a journal as read, lines that could not be read and
/// all) to `PATH.unreadable`, atomically and synced, replacing an earlier
/// copy: what the rewrite leaves out stays on disk for a person to read.
///
/// # Errors
///
/// The copy cannot be written: the journal must not be rewritten either.
pub(crate) fn keep_unreadable(path: &Path, bytes: &[u8]) -> Result<PathBuf, StateError> {
    let copy = with_suffix(path, ".unreadable");
    let tmp = with_suffix(&copy, ".tmp");
    let action = "copy the unreadable lines of";
    let mut f = create_fresh(path, &tmp)?;
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| fs::rename(&tmp, &copy));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path, action)(e));
    }
    Ok(copy)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}
