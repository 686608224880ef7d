//! Portserver addresses: `@name` is a Linux abstract-namespace unix socket,
//! anything else a filesystem path.

use std::fmt;
use std::io;
use std::os::unix::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where a portserver listens.
///
/// ```
/// use portpick::PortServerAddress;
/// let a: PortServerAddress = "@unittest-portserver".parse().unwrap();
/// assert!(a.is_abstract());
/// assert_eq!(a.to_string(), "@unittest-portserver");
/// let p: PortServerAddress = "/run/portserver.sock".parse().unwrap();
/// assert!(!p.is_abstract());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortServerAddress {
    /// A Linux abstract-namespace name, written `@name` (the `@` stands for
    /// the leading NUL byte).
    Abstract(Vec<u8>),
    /// A socket file.
    Path(PathBuf),
}

/// The reason a string is not a portserver address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError {
    address: String,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid portserver address {:?}: it is empty",
            self.address
        )
    }
}

impl std::error::Error for AddressError {}

impl std::str::FromStr for PortServerAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(AddressError {
                address: s.to_string(),
            });
        }
        Ok(match s.strip_prefix('@') {
            Some(name) => PortServerAddress::Abstract(name.as_bytes().to_vec()),
            None => PortServerAddress::Path(PathBuf::from(s)),
        })
    }
}

impl PortServerAddress {
    /// Whether this is an abstract-namespace name.
    pub fn is_abstract(&self) -> bool {
        matches!(self, PortServerAddress::Abstract(_))
    }

    /// The socket file, for a path address.
    pub fn path(&self) -> Option<&Path> {
        match self {
            PortServerAddress::Path(p) => Some(p),
            PortServerAddress::Abstract(_) => None,
        }
    }

    /// The `std` socket address to bind or connect to.
    ///
    /// # Errors
    ///
    /// An abstract name on a platform without the abstract namespace
    /// (`ErrorKind::Unsupported`), or a name or path too long for a unix
    /// socket address (`ErrorKind::InvalidInput`).
    pub fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        match self {
            PortServerAddress::Path(p) => SocketAddr::from_pathname(p),
            PortServerAddress::Abstract(name) => abstract_addr(name),
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix socket names (@name) exist only on Linux",
    ))
}

impl fmt::Display for PortServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortServerAddress::Abstract(name) => {
                write!(f, "@{}", String::from_utf8_lossy(name))
            }
            PortServerAddress::Path(p) => write!(f, "{}", p.display()),
        }
    }
}
