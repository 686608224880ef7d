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

/// The environment variable that turns cross-process claims on and chooses
/// their directory: a path, or [`DEFAULT_LOCK_DIR`] for a per-user
/// directory under the system temp dir. Unset or empty: off (Python's
/// behaviour) for the library; the `portpicker` tool claims by default.
pub const LOCK_DIR_ENV: &str = "PORTPICK_LOCK_DIR";

/// The value of [`LOCK_DIR_ENV`] that chooses the per-user default
/// directory, `$TMPDIR/portpick-<uid>` (created `0700`, used only while it
/// is ours and private).
pub const DEFAULT_LOCK_DIR: &str = "default";

/// Where per-port lock files live.
#[derive(Debug, Clone)]
pub(crate) struct LockDir {
    path: PathBuf,
    /// The default directory sits in a shared temp dir, where another user
    /// could have made it first: it is used only if it is ours and private.
    /// The outcome of that check, made once (`None`: not checked, as for a
    /// directory the user chose).
    private: Option<std::sync::OnceLock<Result<(), String>>>,
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
        LockDir {
            path: path.into(),
            private: None,
        }
    }

    /// The directory chosen by `PORTPICK_LOCK_DIR`: `None` when it is unset
    /// or empty, the per-user default for `default`, else the path given.
    pub(crate) fn from_env() -> Option<Self> {
        match std::env::var_os(LOCK_DIR_ENV) {
            None => None,
            Some(v) if v.is_empty() => None,
            Some(v) if v == DEFAULT_LOCK_DIR => Some(LockDir {
                path: default_dir(),
                private: Some(std::sync::OnceLock::new()),
            }),
            Some(v) => Some(LockDir::new(v)),
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
        if let Some(checked) = &self.private {
            if let Err(why) = checked.get_or_init(|| self.check_private()) {
                return Claim::Unavailable(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    why.clone(),
                ));
            }
        }
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

    /// Creates the default directory if needed and checks that it is a
    /// directory of ours that nobody else can write: otherwise another user
    /// could hold our ports' locks, or swap the files under us.
    fn check_private(&self) -> Result<(), String> {
        match fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.create_dir().map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
            Ok(_) => {}
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let meta = fs::symlink_metadata(&self.path).map_err(|e| e.to_string())?;
            let me = fs::metadata("/proc/self").map(|m| m.uid()).ok();
            if !meta.is_dir() {
                return Err("not a directory".to_string());
            }
            if me.is_some_and(|uid| uid != meta.uid()) {
                return Err(format!("owned by uid {}, not by us", meta.uid()));
            }
            if meta.mode() & 0o022 != 0 {
                return Err(format!(
                    "writable by others (mode {:o})",
                    meta.mode() & 0o777
                ));
            }
        }
        Ok(())
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
