//! The state file (`--portserver_state_file`): an append-only journal of
//! allocations, so no reservation is lost when the daemon restarts, even
//! after `kill -9`.
//!
//! Every allocation is appended as `PORT PID START_TIME` and `fsync`ed
//! before the client gets its answer. Releases are not written: on load,
//! the last line for a port wins and owners that are gone are dropped, which
//! is exactly what a release would have said (a port is only ever released
//! because its owner is gone, and a gone `(pid, start time)` never comes
//! back). When the journal grows past four times the live state (and 1,024
//! lines) it is compacted: the live state is written to `PATH.tmp`,
//! `fsync`ed, renamed over `PATH`, and the directory `fsync`ed, so a crash
//! at any point leaves either the old journal or the new one.
//!
//! Lines end with LF or CRLF. A journal with lines that cannot be read is
//! copied as read to `PATH.unreadable` before it is rewritten without them.
//!
//! One server per state file: a server takes the file's [`StateLock`]
//! before it binds its address or reads the journal, and holds it while it
//! runs.
//!
//! The path is trusted only as far as it is ours: a symbolic link, or a
//! file without our header, is refused and left alone; `PATH.tmp` is
//! created exclusively, never through a link.

mod error;
mod format;
mod journal;
mod lock;
mod snapshot;

pub use error::StateError;
#[cfg(feature = "testkit")]
pub(crate) use format::{format_entry, format_header};
pub use format::{parse_state, StateContents, StateLineError};
pub use journal::StateFile;
pub use lock::StateLock;
pub(crate) use snapshot::keep_unreadable;
