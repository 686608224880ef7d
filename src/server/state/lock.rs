//! [`StateLock`]: how a server proves it owns its state file. It binds an
//! abstract unix socket named after the file's directory (device and inode)
//! and the file's name, and holds it for its life; the kernel frees the name
//! when the process dies, however it dies, so there is no stale lock to
//! clean up. A second server on the same file finds the name taken.
//!
//! Not the file's own inode: a compaction renames a new file in, and a
//! server started after it would key on another inode than the live one.
//! The directory and the name are what both servers open. Abstract names
//! belong to the network namespace: servers in two network namespaces that
//! share a filesystem do not see each other's lock.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use super::error::{io_err, StateError};
use crate::address::PortServerAddress;

/// The longest abstract name a unix socket address holds.
const MAX_NAME: usize = 107;

/// The lock on one state file, held until dropped.
#[derive(Debug)]
pub struct StateLock {
    /// `None` where there is no abstract namespace (not Linux): no lock.
    _socket: Option<UnixDatagram>,
    name: PortServerAddress,
}

impl StateLock {
    /// Takes the lock on the state file at `path`, before anything reads or
    /// writes it.
    ///
    /// # Errors
    ///
    /// [`StateError::InUse`] when another process holds it,
    /// [`StateError::Io`] when the directory cannot be read or the socket
    /// not bound.
    pub fn acquire(path: &Path) -> Result<StateLock, StateError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let file_name = path.file_name().ok_or_else(|| {
            io_err(path, "lock")(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path names no file",
            ))
        })?;
        let meta = fs::metadata(dir).map_err(io_err(path, "lock"))?;
        let name =
            PortServerAddress::Abstract(lock_name(meta.dev(), meta.ino(), file_name.as_bytes()));
        let addr = match name.to_socket_addr() {
            Ok(addr) => addr,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                return Ok(StateLock {
                    _socket: None,
                    name,
                })
            }
            Err(e) => return Err(io_err(path, "lock")(e)),
        };
        match UnixDatagram::bind_addr(&addr) {
            Ok(socket) => Ok(StateLock {
                _socket: Some(socket),
                name,
            }),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(StateError::InUse {
                path: path.to_path_buf(),
                lock: name.to_string(),
            }),
            Err(e) => Err(io_err(path, "lock")(e)),
        }
    }

    /// The lock's name, `@portpick/state/...`.
    pub fn name(&self) -> &PortServerAddress {
        &self.name
    }
}

/// `portpick/state/v1/DEV/INODE/NAME` (hex numbers). A name too long for a
/// socket address keeps what fits and ends with a hash of the whole name:
/// two long names that share a prefix still get two locks (a collision
/// would only refuse a start, never allow a second one).
pub(crate) fn lock_name(dev: u64, ino: u64, file_name: &[u8]) -> Vec<u8> {
    let mut name = format!("portpick/state/v1/{dev:x}/{ino:x}/").into_bytes();
    if name.len() + file_name.len() <= MAX_NAME {
        name.extend_from_slice(file_name);
        return name;
    }
    let hash = format!("/{:016x}", fnv1a(file_name));
    let room = MAX_NAME.saturating_sub(name.len() + hash.len());
    name.extend_from_slice(&file_name[..room.min(file_name.len())]);
    name.extend_from_slice(hash.as_bytes());
    name
}

/// FNV-1a, 64 bits: the same on every build, unlike std's hasher, so two
/// builds of the server name the same lock.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_differ() {
        assert_eq!(
            lock_name(0x803, 0x1f, b"state"),
            b"portpick/state/v1/803/1f/state"
        );
        let long_a = [b'a'; 255];
        let mut long_b = long_a;
        long_b[254] = b'b';
        let (a, b) = (
            lock_name(u64::MAX, u64::MAX, &long_a),
            lock_name(u64::MAX, u64::MAX, &long_b),
        );
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME);
        assert_ne!(a, b);
    }

    #[test]
    fn a_second_lock_on_the_same_file_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("portpick-lock-test-{}", std::process::id()));
        let first = StateLock::acquire(&path).unwrap();
        let second = StateLock::acquire(&dir.join(".").join(path.file_name().unwrap()));
        assert!(
            matches!(&second, Err(StateError::InUse { lock, .. }) if *lock == first.name().to_string()),
            "{second:?}"
        );
        drop(first);
        assert!(StateLock::acquire(&path).is_ok());
    }
}
