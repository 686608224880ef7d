//! Binding the listener: the first step of every request is a connection to
//! the socket bound here. A live server on the address is never displaced;
//! the leftover socket file of a killed one is. A socket file is open to
//! every user (mode 0666); its directory decides who may replace it.
//!
//! The directory may be writable by other users (say, /tmp), who may put a
//! symlink where the socket was a moment ago: nothing here changes a file
//! by the final path. The socket is bound and made 0666 inside a private
//! directory of ours, and only then linked to the final path, which link(2)
//! never follows and never replaces: the file appears there listening, at
//! its final mode, or not at all.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::address::PortServerAddress;
use crate::server::error::ServerError;

/// The socket file a server bound, by device and inode: at stop it
/// removes the file at its path only if it is still this one, not the
/// socket of a server that started there since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SocketFile {
    dev: u64,
    ino: u64,
}

impl SocketFile {
    fn of(meta: &std::fs::Metadata) -> SocketFile {
        SocketFile {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// Removes `path` if it is still this socket file.
    pub(super) fn remove(self, path: &Path) {
        // Between the check and the removal a new server could link its
        // socket there; std has no unlink by inode, and the window is a
        // few instructions where it used to be the whole stop.
        match std::fs::symlink_metadata(path) {
            Ok(meta) if SocketFile::of(&meta) == self => {
                let _ = std::fs::remove_file(path);
            }
            _ => {}
        }
    }
}

/// Binds `address`; for a path, also says which socket file is ours.
pub(super) fn bind_listener(
    address: &PortServerAddress,
) -> Result<(UnixListener, Option<SocketFile>), ServerError> {
    bind_with(address, &mut |_| {})
}

/// [`bind_listener`], calling `after_bind` with the final path once the
/// socket is bound and before it is set up: tests play the other user
/// there.
fn bind_with(
    address: &PortServerAddress,
    after_bind: &mut dyn FnMut(&Path),
) -> Result<(UnixListener, Option<SocketFile>), ServerError> {
    let name = address.to_string();
    let bind_err = |source: io::Error| {
        if source.kind() == io::ErrorKind::AddrInUse {
            ServerError::AlreadyServing {
                address: name.clone(),
            }
        } else {
            ServerError::Bind {
                address: name.clone(),
                source,
            }
        }
    };
    // Checks a path's length too: clients must be able to reach it.
    let addr = address.to_socket_addr().map_err(bind_err)?;
    let PortServerAddress::Path(path) = address else {
        let listener = UnixListener::bind_addr(&addr).map_err(bind_err)?;
        return Ok((listener, None));
    };
    clear_the_way(path, &name)?;
    let private = PrivateDir::create(path).map_err(bind_err)?;
    let inside = private.path.join("s");
    let listener = UnixListener::bind(&inside).map_err(bind_err)?;
    after_bind(path);
    // Connecting needs write permission on the socket file, which the
    // umask takes from other users: every user may connect, as to an
    // abstract address; who may replace the socket is the directory's
    // business.
    let everyone = std::fs::Permissions::from_mode(0o666);
    std::fs::set_permissions(&inside, everyone).map_err(bind_err)?;
    let ours = std::fs::symlink_metadata(&inside)
        .map(|meta| SocketFile::of(&meta))
        .map_err(bind_err)?;
    // A leftover that appeared since is cleared again; a few rounds, so
    // that two servers starting together cannot keep each other busy.
    let mut rounds = 0;
    loop {
        match std::fs::hard_link(&inside, path) {
            Ok(()) => return Ok((listener, Some(ours))),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && rounds < 3 => {
                clear_the_way(path, &name)?;
                rounds += 1;
            }
            Err(e) => return Err(bind_err(e)),
        }
    }
}

/// Refuses a path that holds a live server or something that is not a
/// socket, and removes the leftover socket of a killed server.
fn clear_the_way(path: &Path, name: &str) -> Result<(), ServerError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket {
            address: name.to_string(),
        });
    }
    // A live server answers; a leftover of a killed one refuses. (A
    // server's socket appears at the path only once it listens.)
    match UnixStream::connect(path) {
        Ok(_) => Err(ServerError::AlreadyServing {
            address: name.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            let _ = std::fs::remove_file(path);
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

/// A directory only we may change (mode 0700), beside the final path so
/// that a link from it stays on one filesystem; removed with what is in
/// it on drop.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    fn create(final_path: &Path) -> io::Result<PrivateDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let parent = match final_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // Short, since a socket path has room for 107 bytes; unguessable
        // enough that a name taken by someone else costs a retry, not a
        // failed start.
        let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
        for _ in 0..8 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!(".pp{:x}.{n:x}{nanos:x}", std::process::id());
            let path = parent.join(name);
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(PrivateDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path.join("s"));
        let _ = std::fs::remove_dir(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the temp dir, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = format!("portpick-unit-{tag}-{}-{n}", std::process::id());
            let path = std::env::temp_dir().join(name);
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Another user who can write the socket's directory swaps whatever
    /// is at the path for a symlink to a file of theirs (say, /etc/shadow)
    /// while the server sets its socket up: the target keeps its mode.
    #[test]
    fn a_symlink_swapped_in_while_binding_is_never_followed() {
        let dir = Dir::new("swap");
        let target = dir.0.join("secret");
        std::fs::write(&target, "secret").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.0.join("ps.sock");
        let address: PortServerAddress = path.to_str().unwrap().parse().unwrap();
        let mut swap = |p: &Path| {
            let _ = std::fs::remove_file(p);
            std::os::unix::fs::symlink(&target, p).unwrap();
        };
        let bound = bind_with(&address, &mut swap);
        assert_eq!(mode(&target), 0o600, "the symlink was followed");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret");
        // Either the server refused the path or its socket is there.
        if let Ok((_listener, ours)) = bound {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert!(meta.file_type().is_socket());
            assert_eq!(mode(&path), 0o666);
            assert!(UnixStream::connect(&path).is_ok());
            assert_eq!(ours, Some(SocketFile::of(&meta)));
        }
        // The private directory is gone.
        let mut left: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["ps.sock", "secret"]);
    }
}
