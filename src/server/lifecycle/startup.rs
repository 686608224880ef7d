//! What starting does before the server threads run: fit the slow lane to
//! the open-files limit, warn about pool ports the kernel may hand out,
//! take the state file's lock and the address, and read the journal back
//! into the pool.

use std::os::unix::net::UnixListener;
use std::path::Path;

use crate::address::PortServerAddress;
use crate::server::config::ServerConfig;
use crate::server::error::ServerError;
use crate::server::listen::{bind_listener, SocketFile};
use crate::server::log::{log, Level, Logger};
use crate::server::pool::Pool;
use crate::server::process::{self, Owner, ProcessTable};
use crate::server::restore::restore;
use crate::server::state::{keep_unreadable, StateFile, StateLock};
use crate::server::{descriptors, ranges};

/// What a server owns once it has taken over: the state file's lock, the
/// address, the journal, and the reservations the journal keeps for live
/// owners outside the pool.
pub(super) struct TakenOver {
    pub(super) lock: Option<StateLock>,
    pub(super) listener: UnixListener,
    /// For a path address: the socket file this server linked there.
    pub(super) socket_file: Option<SocketFile>,
    pub(super) journal: Option<StateFile>,
    pub(super) outside: Vec<(u16, Owner)>,
}

/// Takes what this server will own, in the order that makes a second
/// start change nothing: the state file's lock (a second server on this
/// file stops here), then the address (a second server on it stops here),
/// and only then the journal, read and rewritten.
pub(super) fn take_over(
    config: &ServerConfig,
    pool: &mut Pool,
    processes: &dyn ProcessTable,
    logger: &Logger,
) -> Result<TakenOver, ServerError> {
    let Some(path) = &config.state_file else {
        let (listener, socket_file) = bind_listener(&config.address)?;
        return Ok(TakenOver {
            lock: None,
            listener,
            socket_file,
            journal: None,
            outside: Vec::new(),
        });
    };
    let lock = StateLock::acquire(path).map_err(ServerError::State)?;
    log!(
        logger,
        Level::Debug,
        "Holding {} as the lock on state file {}",
        lock.name(),
        path.display()
    );
    let (listener, socket_file) = bind_listener(&config.address)?;
    match load_state(path, pool, processes, logger) {
        Ok((journal, outside)) => Ok(TakenOver {
            lock: Some(lock),
            listener,
            socket_file,
            journal: Some(journal),
            outside,
        }),
        Err(e) => {
            unbind(&config.address, listener, socket_file);
            Err(e)
        }
    }
}

/// Closes `listener` and removes its socket file (for a path address), if
/// the path still holds that file: a tmp cleaner may have removed it and a
/// new server linked its own there.
pub(super) fn unbind(
    address: &PortServerAddress,
    listener: UnixListener,
    socket_file: Option<SocketFile>,
) {
    drop(listener);
    if let (PortServerAddress::Path(p), Some(file)) = (address, socket_file) {
        file.remove(p);
    }
}

/// Reads the journal, puts back the reservations of live owners, logs what
/// it found, and rewrites the journal as exactly that: the pool's and
/// those kept outside it (returned).
fn load_state(
    path: &Path,
    pool: &mut Pool,
    processes: &dyn ProcessTable,
    logger: &Logger,
) -> Result<(StateFile, Vec<(u16, Owner)>), ServerError> {
    let (contents, bytes) = StateFile::load_with_bytes(path).map_err(ServerError::State)?;
    if !contents.errors.is_empty() {
        let copy = keep_unreadable(path, &bytes).map_err(ServerError::State)?;
        log!(
            logger,
            Level::Warning,
            "State file {}: {} unreadable lines; the file as read is kept in {}",
            path.display(),
            contents.errors.len(),
            copy.display()
        );
    }
    let boot = process::boot_id();
    let report = restore(&contents, boot.as_deref(), pool, processes);
    for line in report.log_lines(path) {
        log!(logger, line.0, "{}", line.1);
    }
    let held = pool.held().chain(report.outside.iter().copied());
    let journal = StateFile::create(path, boot, held).map_err(ServerError::State)?;
    Ok((journal, report.outside))
}

/// Lowers the slow lane's cap so that waiting connections cannot take the
/// descriptors that reading `/proc`, the journal and the replies need:
/// under `ulimit -n 128`, 512 silent connections would leave none.
pub(super) fn fit_to_descriptor_limit(config: &mut ServerConfig, logger: &Logger) {
    let limit = descriptors::open_files_limit();
    let cap = descriptors::pending_cap(config.max_pending, config.acceptors.max(1), limit);
    if cap < config.max_pending {
        log!(
            logger,
            Level::Info,
            "Open files limit {}: at most {cap} connections wait for their request",
            limit.unwrap_or(0)
        );
        config.max_pending = cap;
    }
}

/// Warns in one line when pool ports fall in the kernel's ephemeral range
/// (outgoing connections take those) or its reserved ports.
pub(super) fn warn_about_kernel_ranges(logger: &Logger, ports: &[u16]) {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let ephemeral = ranges::parse_kernel_range(&read("/proc/sys/net/ipv4/ip_local_port_range"));
    let reserved = ranges::parse_kernel_list(&read("/proc/sys/net/ipv4/ip_local_reserved_ports"));
    let overlap = ranges::kernel_overlap(ports, ephemeral, &reserved);
    if overlap.ephemeral > 0 || overlap.reserved > 0 {
        let (lo, hi) = ephemeral.unwrap_or((0, 0));
        log!(
            logger,
            Level::Warning,
            "{} of {} pool ports are in the kernel's ephemeral range {lo}-{hi} (outgoing connections may take them) and {} in ip_local_reserved_ports",
            overlap.ephemeral,
            ports.len(),
            overlap.reserved
        );
    }
}
