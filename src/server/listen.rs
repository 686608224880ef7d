//! Binding the listener: the first step of every request is a connection to
//! the socket bound here. A live server on the address is never displaced;
//! the leftover socket file of a killed one is. A socket file is open to
//! every user (mode 0666); its directory decides who may replace it.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};

use crate::address::PortServerAddress;
use crate::server::error::ServerError;

pub(super) fn bind_listener(address: &PortServerAddress) -> Result<UnixListener, ServerError> {
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
    let addr = address.to_socket_addr().map_err(bind_err)?;
    if let PortServerAddress::Path(path) = address {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(ServerError::NotASocket { address: name });
            }
            // A live server answers; a leftover of a killed one refuses.
            match UnixStream::connect_addr(&addr) {
                Ok(_) => return Err(ServerError::AlreadyServing { address: name }),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    let _ = std::fs::remove_file(path);
                }
                Err(_) => {}
            }
        }
    }
    let listener = UnixListener::bind_addr(&addr).map_err(bind_err)?;
    if let PortServerAddress::Path(path) = address {
        // Connecting needs write permission on the socket file, which the
        // umask takes from other users: every user may connect, as to an
        // abstract address; who may replace the socket is the directory's
        // business.
        use std::os::unix::fs::PermissionsExt;
        let everyone = std::fs::Permissions::from_mode(0o666);
        if let Err(e) = std::fs::set_permissions(path, everyone) {
            let _ = std::fs::remove_file(path);
            return Err(bind_err(e));
        }
    }
    Ok(listener)
}
