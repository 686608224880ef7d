//! Cross-process port claims without a daemon: one lock file per port in a
//! lock directory, locked with `flock` (`File::try_lock`) for as long as the
//! port is in use. The kernel drops the lock when the holder exits, even by
//! `kill -9`, so there is nothing stale to clean up.
//!
//! Lock files are never removed, only reused: at most one file per port
//! number (65,535), so they cannot pile up without bound. Removing a file
//! whose lock is free would race: a process that has just opened the file
//! but not yet locked it would lock an unlinked inode while a third process
//! creates and locks a fresh file of the same name, and both would believe
//! they own the port.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable that chooses the lock directory; empty turns the
/// mechanism off.
pub const LOCK_DIR_ENV: &str = "PORTPICK_LOCK_DIR";

/// Where per-port lock files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockDir {
    path: PathBuf,
}

/// A held claim on a port: the open, locked file. Dropping it releases the
/// claim.
#[derive(Debug)]
pub(crate) struct PortLock {
    file: File,
}

impl PortLock {
    /// The locked file, to hand the claim to another process.
    pub(crate) fn into_file(self) -> File {
        self.file
    }
}

/// What trying to claim a port gave.
#[derive(Debug)]
pub(crate) enum Claim {
    /// The port is ours until the lock is dropped.
    Held(PortLock),
    /// Another live process holds it.
    Taken,
    /// The directory does not work (read-only, gone): claims are off.
    Unavailable(io::Error),
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Warns once per process that cross-process claims are off.
pub(crate) fn warn_unavailable(dir: &Path, err: &io::Error) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "portpick: warning: cannot use lock directory {} ({err}); ports picked \
             without a portserver are not protected from other processes \
             (set {LOCK_DIR_ENV}= to silence this)",
            dir.display()
        );
    }
}

impl LockDir {
    /// A lock directory at `path` (created on first use).
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        LockDir { path: path.into() }
    }

    /// The directory chosen by `PORTPICK_LOCK_DIR`, else the per-user default;
    /// `None` when the variable is set and empty.
    pub(crate) fn from_env() -> Option<Self> {
        match std::env::var_os(LOCK_DIR_ENV) {
            Some(v) if v.is_empty() => None,
            Some(v) => Some(LockDir::new(v)),
            None => Some(LockDir::new(default_dir())),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn file_for(&self, port: u16) -> PathBuf {
        let mut path = self.path.clone();
        path.push(format!("{port}.lock"));
        path
    }

    /// Tries to claim `port` for this process.
    pub(crate) fn claim(&self, port: u16) -> Claim {
        let file = match self.open(port) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Err(e) = self.create_dir() {
                    return Claim::Unavailable(e);
                }
                match self.open(port) {
                    Ok(f) => f,
                    Err(e) => return Claim::Unavailable(e),
                }
            }
            Err(e) => return Claim::Unavailable(e),
        };
        match file.try_lock() {
            Ok(()) => Claim::Held(PortLock { file }),
            Err(TryLockError::WouldBlock) => Claim::Taken,
            Err(TryLockError::Error(e)) => Claim::Unavailable(e),
        }
    }

    fn open(&self, port: u16) -> io::Result<File> {
        // flock needs only read access. Opening an existing file read-only,
        // without O_CREAT, is the cheapest claim (the common case once a
        // host has used a port before) and works on a file another user
        // created in a shared directory; the file is created only when
        // missing.
        let path = self.file_for(port);
        match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path),
            other => other,
        }
    }

    fn create_dir(&self) -> io::Result<()> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&self.path)
    }
}

/// `$TMPDIR/portpick-<user>`: per user, so one user cannot block or spoof
/// another's claims in a shared `/tmp`.
fn default_dir() -> PathBuf {
    let user = user_tag();
    std::env::temp_dir().join(format!("portpick-{user}"))
}

#[cfg(unix)]
fn user_tag() -> String {
    use std::os::unix::fs::MetadataExt;
    // The owner of our own /proc entry, or of the home directory, is our uid
    // without libc; fall back to $USER.
    if let Ok(meta) = fs::metadata("/proc/self") {
        return meta.uid().to_string();
    }
    std::env::var("USER").unwrap_or_else(|_| "user".to_string())
}

#[cfg(not(unix))]
fn user_tag() -> String {
    std::env::var("USERNAME").unwrap_or_else(|_| "user".to_string())
}
