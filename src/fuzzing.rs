//! Entry points for the fuzz targets (`fuzz/`) and the replay test
//! (`tests/fuzz_replay.rs`); not a stable API.
//!
//! Each function takes arbitrary bytes, drives one pure part of the crate,
//! and panics when a property breaks, so that a fuzzer finds wrong answers
//! and not only crashes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use crate::probe::{Prober, Protocol};
use crate::protocol::{self, Request, RequestError, MAX_REQUEST_LEN};
use crate::server::{self, Denial, Owner, Pool, ProcessTable};

/// The wire-protocol request parser: never panics, accepts only what the
/// protocol allows, and agrees with completeness.
pub fn request(data: &[u8]) {
    let parsed = protocol::parse_request(data);
    match &parsed {
        Ok(Request::Allocate { pid }) => {
            assert!(data.len() <= MAX_REQUEST_LEN);
            let line = data.strip_suffix(b"\n").unwrap_or(data);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let digits = line.strip_prefix(b"-").unwrap_or(line);
            assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
            assert_eq!(*pid < 0, line.starts_with(b"-") && *pid != 0);
            // A non-negative pid written back parses the same.
            if *pid >= 0 && *pid < i64::MAX {
                let again = format!("{pid}\n");
                assert_eq!(
                    protocol::parse_request(again.as_bytes()),
                    Ok(Request::Allocate { pid: *pid })
                );
            }
        }
        Ok(Request::Stats) => assert!(data.starts_with(b"stats")),
        Err(RequestError::TooLong { len }) => assert_eq!(*len, data.len()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // A complete buffer parses the same however it is split up to its end.
    if protocol::is_complete(data) && data.len() <= MAX_REQUEST_LEN {
        assert!(data.contains(&b'\n'));
    }
    let _ = protocol::parse_reply(data);
    let _ = protocol::parse_stats(data);
}

/// The `/proc/PID/stat` parser: never panics; a parsed line's start time
/// is the 20th field after the last `)`.
pub fn stat(data: &[u8]) {
    if let Ok(stat) = server::parse_stat(data) {
        let close = data.iter().rposition(|&b| b == b')');
        assert!(close.is_some());
        let rest = &data[close.unwrap_or(0) + 1..];
        let field = rest
            .split(|&b| b == b' ')
            .filter(|f| !f.is_empty())
            .nth(19)
            .map(|f| f.strip_suffix(b"\n").unwrap_or(f))
            .and_then(|f| std::str::from_utf8(f).ok())
            .and_then(|f| f.parse::<u64>().ok());
        assert_eq!(field, Some(stat.start_time));
    }
}

/// The `--portserver_static_pool` parser: never panics, returns sorted
/// distinct ports in 1..=65535, each inside a range that was written.
pub fn ranges(data: &[u8]) {
    let Ok(spec) = std::str::from_utf8(data) else {
        return;
    };
    let (ports, skipped) = server::parse_port_ranges(spec);
    assert!(ports.windows(2).all(|w| w[0] < w[1]));
    assert!(!ports.contains(&0));
    assert!(skipped.len() <= spec.split(',').count());
    for e in &skipped {
        assert!(!e.to_string().is_empty());
    }
}

/// The state-file loader: never panics, every entry is a valid port and
/// pid, every line is either an entry, an error, the header or empty.
pub fn state(data: &[u8]) {
    let s = server::parse_state(data);
    for (port, owner) in &s.entries {
        assert!(*port != 0 && owner.pid > 1);
    }
    // Every non-empty line is the header, an entry or an error.
    let lines = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let header = usize::from(data.starts_with(b"portpick-state 1"));
    assert_eq!(header == 1, !s.bad_header && !data.is_empty());
    assert_eq!(s.entries.len() + s.errors.len() + header, lines);
}

/// A prober whose answers a test sets: every port is free unless marked
/// busy.
#[derive(Debug, Default)]
pub struct FakeProber {
    busy: Mutex<HashSet<u16>>,
}

impl FakeProber {
    /// Marks `port` busy (`true`) or free outside the server.
    pub fn set_busy(&self, port: u16, busy: bool) {
        let mut set = lock(&self.busy);
        if busy {
            set.insert(port);
        } else {
            set.remove(&port);
        }
    }

    /// Whether `port` is marked busy.
    pub fn is_busy(&self, port: u16) -> bool {
        lock(&self.busy).contains(&port)
    }
}

impl Prober for FakeProber {
    fn is_free(&self, port: u16, _: Protocol) -> bool {
        !self.is_busy(port)
    }

    fn kernel_port(&self, _: Protocol) -> Option<u16> {
        None
    }
}

/// A process table a test writes: pid -> start time.
#[derive(Debug, Default)]
pub struct FakeProcesses {
    table: Mutex<HashMap<u32, u64>>,
}

impl FakeProcesses {
    /// Starts (or restarts, with a new start time) process `pid`.
    pub fn start(&self, pid: u32, start_time: u64) {
        lock(&self.table).insert(pid, start_time);
    }

    /// Ends process `pid`.
    pub fn end(&self, pid: u32) {
        lock(&self.table).remove(&pid);
    }
}

impl ProcessTable for FakeProcesses {
    fn start_time(&self, pid: u32) -> Option<u64> {
        lock(&self.table).get(&pid).copied()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

const POOL_BASE: u16 = 30000;

/// The pool driven by `data` read as operations, two bytes each (an opcode
/// and an argument): allocate for a pid, a process ends, a pid is reused by
/// a new process, a port becomes busy or free outside the server, a sweep of
/// some owners, a full sweep, a port given back. After every step: the
/// pool's own invariants, no port handed to two live owners, no busy port
/// handed out, quotas kept, and the counters add up.
pub fn pool_ops(data: &[u8]) {
    let Some((&header, ops)) = data.split_first() else {
        return;
    };
    let size = u16::from(header % 32) + 1;
    let quota = usize::from(header / 32) % 5;
    let prober = FakeProber::default();
    let procs = FakeProcesses::default();
    let mut clock = 1u64;
    for pid in 2..10 {
        procs.start(pid, clock);
    }
    let mut pool = Pool::new(POOL_BASE..POOL_BASE + size, quota);
    let mut model: BTreeMap<u16, Owner> = BTreeMap::new();
    let mut allocations = 0u64;
    // Each step checks the whole pool: cap the steps so one input stays fast.
    for op in ops.chunks_exact(2).take(256) {
        let (code, arg) = (op[0] % 8, op[1]);
        let pid = 2 + u32::from(arg % 8);
        let port = POOL_BASE + u16::from(arg) % (size + 2);
        match code {
            0 | 1 => {
                let Some(start_time) = procs.start_time(pid) else {
                    continue;
                };
                let owner = Owner { pid, start_time };
                let held = model.values().filter(|o| **o == owner).count();
                match pool.allocate(owner, &prober, &procs) {
                    Ok(port) => {
                        assert!(port >= POOL_BASE && port < POOL_BASE + size);
                        assert!(!prober.is_busy(port), "busy port {port} handed out");
                        if let Some(prev) = model.get(&port) {
                            assert_ne!(
                                procs.start_time(prev.pid),
                                Some(prev.start_time),
                                "port {port} of live {prev:?} handed to {owner:?}"
                            );
                        }
                        assert!(quota == 0 || held < quota, "quota {quota} broken");
                        model.insert(port, owner);
                        allocations += 1;
                    }
                    Err(Denial::Quota { held: h }) => {
                        assert!(quota > 0 && h == quota && held == quota);
                    }
                    Err(Denial::Exhausted) => {
                        for p in POOL_BASE..POOL_BASE + size {
                            assert!(
                                pool.owner_of(p).is_some() || prober.is_busy(p),
                                "port {p} free, yet exhausted"
                            );
                        }
                    }
                    Err(other) => panic!("unexpected denial {other:?}"),
                }
            }
            2 => procs.end(pid),
            3 => {
                clock += 1;
                procs.start(pid, clock);
            }
            4 => prober.set_busy(port, true),
            5 => prober.set_busy(port, false),
            6 => {
                pool.reclaim_some(&procs, usize::from(arg % 4));
            }
            _ => {
                for owner in pool.owners() {
                    if procs.start_time(owner.pid) != Some(owner.start_time) {
                        pool.release_owner(owner);
                    }
                }
                for (port, owner) in pool.held() {
                    assert_eq!(
                        procs.start_time(owner.pid),
                        Some(owner.start_time),
                        "port {port} still held by dead {owner:?} after a sweep"
                    );
                }
            }
        }
        if let Err(e) = pool.check_invariants() {
            panic!("{e}");
        }
        for (port, owner) in pool.held() {
            assert_eq!(model.get(&port), Some(&owner), "pool and model differ");
        }
        let s = pool.stats();
        assert_eq!(s.managed, u64::from(size));
        assert_eq!(s.free + s.held, s.managed);
        assert_eq!(s.allocations, allocations);
        assert!(s.denied_quota <= s.denied);
    }
}
