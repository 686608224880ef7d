#![allow(dead_code)]
//! Portpick's cross-process claims, as tests see them.

use std::sync::Mutex;

/// Whether a socket holds portpick's claim on `port` now: the documented
/// abstract name `portpick/claim/PORT` (a datagram socket) cannot be bound.
#[cfg(target_os = "linux")]
pub fn claimed(port: u16) -> bool {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("portpick/claim/{port}");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
    match std::os::unix::net::UnixDatagram::bind_addr(&addr) {
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => true,
        Err(e) => panic!("checking the claim on {port}: {e}"),
    }
}

/// The ports whose claims process `pid` holds: its sockets bound to
/// `@portpick/claim/PORT` (from `/proc/net/unix` and `/proc/PID/fd`), so
/// other processes' claims of the same ports do not count.
#[cfg(target_os = "linux")]
pub fn claims_held_by(pid: u32) -> std::collections::BTreeSet<u16> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let by_inode: std::collections::HashMap<String, u16> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = fields.get(7)?.strip_prefix("@portpick/claim/")?;
            Some((fields[6].to_string(), port.parse().ok()?))
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|link| {
            let inode = link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
            by_inode.get(inode).copied()
        })
        .collect()
}

/// One test at a time in the binaries that check claims: claims are
/// host-wide, so a test that picks at the same time as another could be
/// handed (by the kernel) a port the other has just released or not
/// claimed, and a check of "this port is not claimed" would meet it.
pub fn claims_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
