//! The portserver: a daemon on a unix socket that gives each process its own
//! ports and takes them back when the process is gone.
//!
//! A request's walk, file by file:
//!
//! 1. `listen`: the socket was bound at start ([`PortServer::start`], in
//!    `lifecycle`, which also reads the journal back through `restore`);
//! 2. `accept`: an acceptor thread takes the connection and reads the
//!    request, or hands a slow client to the slow lane;
//! 3. `respond`: the request is parsed (`crate::protocol`), the pid checked
//!    (`policy`), its start time read from the process table (`process`);
//! 4. `pool`: `allocate_shared` locks the core, takes a free port out of
//!    the queue, probes it without the lock, and locks again to give it (or
//!    try the next one, or deny the request);
//! 5. `state`: the allocation is journaled and synced;
//! 6. `respond`: `PORT\n` is written and the connection closed; a denial
//!    closes it without a word and is counted and logged.
//!
//! Meanwhile `reclaim` sweeps owners for dead processes and puts their ports
//! back in the queue. `descriptors` sizes the slow lane to the open-files
//! limit. `config` and `ranges` read the command line, `log`
//! writes Python-style log lines, `daemon` is the binaries' `main`.
//!
//! Threads, all blocking, their number fixed at start: `acceptors`
//! (default 2), one slow lane, one reclaimer. Stopping sets a flag, wakes
//! each acceptor by connecting to the socket, and joins every thread.

mod accept;
pub(crate) mod config;
mod daemon;
pub(crate) mod descriptors;
mod error;
mod lifecycle;
mod listen;
pub(crate) mod log;
pub(crate) mod policy;
pub(crate) mod pool;
pub(crate) mod process;
pub(crate) mod ranges;
mod reclaim;
mod respond;
pub(crate) mod restore;
pub(crate) mod state;

pub use config::ServerConfig;
pub use daemon::run_daemon;
pub use error::ServerError;
pub use lifecycle::{PortServer, ServerHandle, Stopper};
pub use log::Level;
pub use process::{Process, ProcessTable};
pub use state::StateError;
