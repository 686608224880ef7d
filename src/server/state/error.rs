//! [`StateError`]: why the journal could not be read or written, with the
//! path and what was being done.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

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
    /// Another process (a live portserver) holds the state file's lock:
    /// nothing is read or written.
    InUse {
        /// The path.
        path: PathBuf,
        /// The lock's name, `@portpick/state/...`.
        lock: String,
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
            StateError::InUse { path, lock } => write!(
                f,
                "state file {} is in use by another portserver (it holds the lock {lock}); not touching it",
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

pub(super) fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl Fn(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}
