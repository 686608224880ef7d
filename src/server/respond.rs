//! Answering a request: parse it, allocate a port or deny it, journal the
//! allocation, reply; and the counters behind the `stats` answer. Every
//! denial, whatever made it, is counted and logged in one place.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::{self, Request, RequestError};
use crate::server::lifecycle::{Core, Shared};
use crate::server::log::{log, Level};
use crate::server::policy::{check_pid, Denial};
use crate::server::pool::{allocate_shared, Pool};
use crate::server::process::{Owner, Process};
use crate::sync::lock;

/// The server's own counters (the pool keeps its own).
#[derive(Default)]
pub(super) struct Counters {
    pub(super) request_errors: AtomicU64,
    pub(super) denied_pid: AtomicU64,
    pub(super) denied_persist: AtomicU64,
    pub(super) denied_unknown: AtomicU64,
    pub(super) denied_namespace: AtomicU64,
    pub(super) timed_out: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) stats_requests: AtomicU64,
    pub(super) pending: AtomicU64,
    pub(super) undelivered: AtomicU64,
    pub(super) owner_check_errors: AtomicU64,
}

/// An allocation locks the server's whole core, not the pool alone: the
/// journal stays locked with the pool for the step after the port is given.
impl AsMut<Pool> for Core {
    fn as_mut(&mut self) -> &mut Pool {
        &mut self.pool
    }
}

impl Shared {
    /// The `name value` pairs of the `stats` answer: Python's names first.
    pub(super) fn stats(&self) -> Vec<(&'static str, u64)> {
        let (p, outside) = {
            let core = lock(&self.core);
            (core.pool.stats(), core.outside.len() as u64)
        };
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("client-request-errors", get(&c.request_errors)),
            (
                "denied-allocations",
                p.denied
                    + get(&c.denied_pid)
                    + get(&c.denied_persist)
                    + get(&c.denied_unknown)
                    + get(&c.denied_namespace),
            ),
            ("num-ports-managed", p.managed),
            ("num-ports-checked-for-last-request", p.checked_last),
            ("total-allocations", p.allocations),
            ("num-ports-free", p.free),
            ("num-ports-held", p.held),
            ("num-owners", p.owners),
            ("num-ports-held-outside-pool", outside),
            ("denied-quota", p.denied_quota),
            ("denied-pid", get(&c.denied_pid)),
            ("denied-exhausted", p.denied - p.denied_quota),
            ("denied-state-file", get(&c.denied_persist)),
            ("denied-owner-unknown", get(&c.denied_unknown)),
            ("denied-namespace-unknown", get(&c.denied_namespace)),
            ("ports-reclaimed", p.reclaimed),
            ("ports-busy-skipped", p.busy_skipped),
            ("owner-checks", p.owner_checks),
            (
                "owner-check-errors",
                p.owner_check_errors + get(&c.owner_check_errors),
            ),
            ("connections-timed-out", get(&c.timed_out)),
            ("connections-dropped", get(&c.dropped)),
            ("connections-pending", get(&c.pending)),
            ("replies-undelivered", get(&c.undelivered)),
            ("stats-requests", get(&c.stats_requests)),
            ("uptime-seconds", self.started.elapsed().as_secs()),
        ]
    }

    /// Answers one whole request on `stream`, as parsed. A namespaced
    /// request (`namespaced`: it began so, even if bad) is always answered
    /// (a denial with its reason), so that its client can tell our server
    /// from one without the extension.
    pub(super) fn respond(
        &self,
        mut stream: UnixStream,
        parsed: Result<Request, RequestError>,
        namespaced: bool,
    ) {
        let (given, pid, namespace) = match parsed {
            Err(e) => {
                self.counters.request_errors.fetch_add(1, Ordering::Relaxed);
                log!(self.logger, Level::Warning, "Could not parse request: {e}");
                if namespaced {
                    reply(&mut stream, &protocol::format_denial(&e.to_string()));
                }
                return;
            }
            Ok(Request::Stats) => {
                self.counters.stats_requests.fetch_add(1, Ordering::Relaxed);
                reply(&mut stream, &protocol::format_stats(self.stats()));
                return;
            }
            Ok(Request::Allocate { pid }) => (self.allocate(pid), pid, None),
            Ok(Request::AllocateIn { namespace, pid }) => {
                (self.allocate_in(namespace, pid), pid, Some(namespace))
            }
        };
        match given {
            Ok((port, owner)) => {
                if stream.write_all(&protocol::format_reply(port)).is_err() {
                    self.undelivered(port, owner);
                }
            }
            Err(denial) => {
                self.denied(pid, namespace, denial);
                if namespace.is_some() {
                    reply(&mut stream, &protocol::format_denial(&denial.to_string()));
                }
            }
        }
    }

    /// Gives `pid` (of our `/proc`) a port, unless it is pid 1, a kernel
    /// thread, or not running.
    fn allocate(&self, pid: i64) -> Result<(u16, Owner), Denial> {
        let pid = check_pid(pid)?;
        let process = match self.processes.process(pid) {
            Ok(Some(process)) => process,
            Ok(None) => return Err(Denial::NotRunning),
            Err(_) => return Err(Denial::CannotCheck),
        };
        self.give(process)
    }

    /// Gives a port to the process that is `pid` in the pid namespace
    /// `namespace`; its owner is that process as our `/proc` names it, with
    /// the start time read here (a client's own would not do: time
    /// namespaces shift it). Pid 1 is allowed: a sandbox's init ends with
    /// the sandbox, unlike the host's.
    fn allocate_in(&self, namespace: u64, pid: i64) -> Result<(u16, Owner), Denial> {
        let pid = match check_pid(pid) {
            Err(Denial::Init) => 1,
            checked => checked?,
        };
        let process = match self.processes.find_in_namespace(namespace, pid) {
            // Our own init (the namespace named was ours): it never exits.
            Ok(Some(process)) if process.pid == 1 => return Err(Denial::Init),
            Ok(Some(process)) => process,
            Ok(None) => return Err(Denial::NotRunning),
            Err(e) => {
                return Err(match e.kind() {
                    io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported => {
                        Denial::NamespaceUnknown
                    }
                    _ => Denial::CannotCheck,
                })
            }
        };
        self.give(process)
    }

    /// Runs the pool's allocation for `process` (probing without the
    /// lock), and journals the port before anyone hears of it.
    fn give(&self, process: Process) -> Result<(u16, Owner), Denial> {
        if process.kernel_thread {
            return Err(Denial::KernelThread);
        }
        let owner = Owner {
            pid: process.pid,
            start_time: process.start_time,
        };
        let (port, mut core) = allocate_shared(&self.core, owner, &*self.prober, &*self.processes)?;
        let Core {
            pool,
            journal,
            outside,
        } = &mut *core;
        if let Some(journal) = journal {
            if let Err(e) = journal.append(port, owner) {
                pool.release_port(port, owner);
                drop(core);
                log!(
                    self.logger,
                    Level::Error,
                    "{e}; not handing out port {port}"
                );
                return Err(Denial::NotPersisted);
            }
            if journal.wants_compaction(pool.stats().held as usize + outside.len()) {
                if let Err(e) = journal.compact(pool.held().chain(outside.iter().copied())) {
                    log!(
                        self.logger,
                        Level::Error,
                        "{e}; still appending to the old journal"
                    );
                }
            }
        }
        drop(core);
        log!(
            self.logger,
            Level::Verbose,
            "Allocated port {port} to pid {}",
            owner.pid
        );
        Ok((port, owner))
    }

    /// Counts and logs a denial; when the pool ran dry, wakes the sweep to
    /// find dead owners' ports.
    fn denied(&self, pid: i64, namespace: Option<u64>, denial: Denial) {
        let counter = match denial {
            Denial::InvalidPid
            | Denial::Init
            | Denial::PidOutOfRange
            | Denial::NotRunning
            | Denial::KernelThread => Some(&self.counters.denied_pid),
            Denial::NotPersisted => Some(&self.counters.denied_persist),
            Denial::CannotCheck => Some(&self.counters.denied_unknown),
            Denial::NamespaceUnknown => Some(&self.counters.denied_namespace),
            // The pool counts its own.
            Denial::Quota { .. } | Denial::Exhausted => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if denial == Denial::Exhausted {
            self.pool_dry.ring();
        }
        let Some(namespace) = namespace else {
            log!(
                self.logger,
                Level::Verbose,
                "Denied a port to pid {pid}: {denial}"
            );
            return;
        };
        let who = format!("pid {pid} of pid namespace {namespace}");
        if denial != Denial::NamespaceUnknown {
            log!(
                self.logger,
                Level::Verbose,
                "Denied a port to {who}: {denial}"
            );
        } else {
            // A misconfigured server denies every sandboxed client: say so
            // where it is seen (a warning: once a second, the rest counted).
            log!(
                self.logger,
                Level::Warning,
                "Denied a port to {who}: {denial}"
            );
        }
    }

    /// The client left (or cannot be written to): it will never use the
    /// port, so it goes back to the pool.
    fn undelivered(&self, port: u16, owner: Owner) {
        lock(&self.core).pool.release_port(port, owner);
        // Counted after the release: whoever sees the count sees the port
        // back in the pool.
        self.counters.undelivered.fetch_add(1, Ordering::Relaxed);
        log!(
            self.logger,
            Level::Verbose,
            "Client of pid {} left before its answer; port {port} returned",
            owner.pid
        );
    }
}

/// Writes a reply that gives no port away. The socket is non-blocking, and
/// a reply (a denial, or the stats: well under 1 KiB) fits in a fresh
/// socket's empty send buffer, so this never waits. If a peer somehow makes
/// it fail, it gets a short answer, which it reads as no port.
fn reply(stream: &mut UnixStream, reply: &[u8]) {
    let _ = stream.write_all(reply);
}
