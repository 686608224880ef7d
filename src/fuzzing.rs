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

/// The wire-protocol request parser (and the reply and stats parsers):
/// never panics, accepts only what the protocol allows, agrees with
/// [`protocol::is_complete`], and what it accepts reads back the same when
/// written out again.
pub fn request(data: &[u8]) {
    let parsed = protocol::parse_request(data);
    if data.len() > MAX_REQUEST_LEN {
        assert_eq!(parsed, Err(RequestError::TooLong { len: data.len() }));
    }
    match &parsed {
        Ok(Request::Allocate { pid }) => {
            assert!(data.len() <= MAX_REQUEST_LEN);
            let line = data.strip_suffix(b"\n").unwrap_or(data);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let digits = line.strip_prefix(b"-").unwrap_or(line);
            assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
            assert_eq!(*pid < 0, line.starts_with(b"-") && *pid != 0);
            // Written back (as a client would) it parses the same, unless
            // it saturated or no longer fits.
            let again = format!("{pid}\n");
            if pid.unsigned_abs() < i64::MAX.unsigned_abs() && again.len() <= MAX_REQUEST_LEN {
                assert_eq!(
                    protocol::parse_request(again.as_bytes()),
                    Ok(Request::Allocate { pid: *pid })
                );
            }
        }
        Ok(Request::Stats) => assert!(matches!(
            data,
            b"stats" | b"stats\n" | b"stats\r" | b"stats\r\n"
        )),
        Err(RequestError::TooLong { len }) => {
            assert_eq!(*len, data.len());
            assert!(*len > MAX_REQUEST_LEN);
        }
        Err(RequestError::InvalidByte { byte, at }) => {
            assert!(*at < data.len() && data[*at] == *byte, "{parsed:?}");
        }
        Err(RequestError::TrailingData) => {
            let nl = data.iter().position(|&b| b == b'\n');
            assert!(nl.is_some_and(|i| i + 1 < data.len()));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // The server stops reading at the first complete prefix (or end of
    // input): an accepted request must be complete only at its end, so the
    // server reads all of it however the network splits it.
    let complete_at = (1..=data.len()).find(|&n| protocol::is_complete(&data[..n]));
    if parsed.is_ok() {
        if let Some(n) = complete_at {
            assert_eq!(n, data.len(), "accepted request complete before its end");
        }
    }

    if let Ok(Some(port)) = protocol::parse_reply(data) {
        assert!(port != 0);
        assert_eq!(
            protocol::parse_reply(&protocol::format_reply(port)),
            Ok(Some(port))
        );
    }
    if let Some(stats) = protocol::parse_stats(data) {
        let text = protocol::format_stats(stats.iter().map(|(n, v)| (n.as_str(), *v)));
        assert_eq!(protocol::parse_stats(&text), Some(stats));
    }
}

/// The `/proc/PID/stat` parser: never panics, and agrees with a plain
/// reading of `proc(5)`: the state is field 3 and the start time field 22,
/// both counted after the *last* `)` (a command name may hold any bytes).
pub fn stat(data: &[u8]) {
    let reference = || -> Option<(u8, u64)> {
        let close = data.iter().rposition(|&b| b == b')')?;
        let fields: Vec<&[u8]> = data[close + 1..]
            .split(|&b| b == b' ')
            .filter(|f| !f.is_empty())
            .collect();
        let state = *fields.first()?.first()?;
        let start = fields.get(19)?;
        let start = start.strip_suffix(b"\n").unwrap_or(start);
        // The kernel writes no leading zeros: more than 20 digits is no u64.
        if start.len() > 20 || !start.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some((state, std::str::from_utf8(start).ok()?.parse().ok()?))
    };
    let parsed = server::parse_stat(data);
    assert_eq!(
        parsed.as_ref().ok().map(|s| (s.state, s.start_time)),
        reference(),
        "{parsed:?}"
    );
    if let Err(e) = parsed {
        assert!(!e.to_string().is_empty());
    }
}

/// The `--portserver_static_pool` parser: never panics, and returns exactly
/// the sorted, distinct ports of the in-bounds ranges written, skipping the
/// rest as Python's portserver does.
pub fn ranges(data: &[u8]) {
    // Each piece may name 65,535 ports: a long spec costs pieces x ports
    // and only repeats what a short one tests.
    let spec = String::from_utf8_lossy(&data[..data.len().min(256)]);
    let (ports, skipped) = server::parse_port_ranges(&spec);
    assert!(ports.windows(2).all(|w| w[0] < w[1]));
    assert!(!ports.contains(&0));
    // A reference with no saturation tricks: numbers of any length.
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u128>().unwrap_or(u128::MAX))
    };
    let mut want: Vec<(u16, u16)> = Vec::new();
    let mut want_skipped = Vec::new();
    for piece in spec.split(',') {
        let Some((start, end)) = piece
            .split_once('-')
            .and_then(|(a, b)| Some((number(a)?, number(b)?)))
        else {
            want_skipped.push(server::RangeError::Unparsable {
                piece: piece.to_string(),
            });
            continue;
        };
        if start < 1 || end > 65535 {
            want_skipped.push(server::RangeError::OutOfBounds {
                piece: piece.to_string(),
            });
            continue;
        }
        if start <= end {
            // In bounds, so both fit.
            want.push((start as u16, end as u16));
        }
    }
    // Merged intervals, not a table of every port: keeps the fuzzer fast.
    want.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (start, end) in want {
        match merged.last_mut() {
            Some(last) if u32::from(start) <= u32::from(last.1) + 1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let want: Vec<u16> = merged.into_iter().flat_map(|(a, b)| a..=b).collect();
    assert_eq!(ports, want);
    assert_eq!(skipped, want_skipped);
    for e in &skipped {
        assert!(!e.to_string().is_empty());
    }
}

/// The state-file loader: never panics; every non-empty line is the header,
/// an entry or an error (numbered in order); entries have a valid port and
/// pid; and what it read, written out again, reads back the same.
pub fn state(data: &[u8]) {
    let s = server::parse_state(data);
    for (port, owner) in &s.entries {
        assert!(*port != 0 && owner.pid > 1);
    }
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let non_empty = lines.iter().filter(|l| !l.is_empty()).count();
    let first = lines.first().copied().unwrap_or_default();
    let header = usize::from(
        first.starts_with(b"portpick-state 1")
            && matches!(first.get(16), None | Some(b' ' | b'\r')),
    );
    assert_eq!(header == 1, !s.bad_header && !data.is_empty());
    assert_eq!(s.entries.len() + s.errors.len() + header, non_empty);
    let mut last = header;
    for e in &s.errors {
        assert!(e.line > last && e.line <= lines.len(), "{e}");
        assert!(!lines[e.line - 1].is_empty());
        last = e.line;
    }
    let mut text = String::from("portpick-state 1");
    if let Some(id) = &s.boot_id {
        text.push_str(" boot=");
        text.push_str(id);
    }
    text.push('\n');
    for (port, owner) in &s.entries {
        text.push_str(&format!("{port} {} {}\n", owner.pid, owner.start_time));
    }
    let again = server::parse_state(text.as_bytes());
    assert!(!again.bad_header && again.errors.is_empty(), "{again:?}");
    assert_eq!(again.boot_id, s.boot_id);
    assert_eq!(again.entries, s.entries);
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
/// some owners, a full sweep, a port given back (by its owner or not), a
/// reservation restored, and a server thread's two-phase allocation (a
/// candidate taken out of the queue, then reported free or busy several
/// steps later, with other operations in between). The first byte sets the
/// pool size and quota.
///
/// After every step, against a model of who holds what: the pool's own
/// invariants; the pool holds nothing the model did not hand out; a live
/// owner never loses a port it was given; no busy port is handed out; no
/// port goes to two live owners; quotas are kept; exhaustion is real; the
/// counters add up.
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
    let alive = |o: &Owner| procs.start_time(o.pid) == Some(o.start_time);
    let mut pool = Pool::new(POOL_BASE..POOL_BASE + size, quota);
    // Every port the pool should hold, with its owner; a dead owner's ports
    // leave it when the pool takes them back.
    let mut model: BTreeMap<u16, Owner> = BTreeMap::new();
    let (mut allocations, mut reclaimed) = (0u64, 0u64);
    // Candidates taken for probing and not yet finished.
    let mut in_flight: Vec<(u16, Owner)> = Vec::new();
    // Each step checks the whole pool: cap the steps so one input stays fast.
    for op in ops.chunks_exact(2).take(256) {
        let (code, arg) = (op[0] % 12, op[1]);
        let flying = |o: Owner, f: &[(u16, Owner)]| f.iter().filter(|(_, x)| *x == o).count();
        let is_flying = |p: u16, f: &[(u16, Owner)]| f.iter().any(|&(x, _)| x == p);
        let pid = 2 + u32::from(arg % 8);
        let port = POOL_BASE + u16::from(arg) % (size + 2);
        match code {
            0 | 1 => {
                let Some(start_time) = procs.start_time(pid) else {
                    continue;
                };
                let owner = Owner { pid, start_time };
                let held = model.values().filter(|o| **o == owner).count();
                assert_eq!(pool.held_by(owner), held);
                let held = held + flying(owner, &in_flight);
                match pool.allocate(owner, &prober, &procs) {
                    Ok(port) => {
                        assert!(pool.manages(port) && port >= POOL_BASE);
                        assert!(!is_flying(port, &in_flight), "{port} is being probed");
                        assert!(!prober.is_busy(port), "busy port {port} handed out");
                        if let Some(prev) = model.get(&port) {
                            assert!(!alive(prev), "port {port} of live {prev:?} handed out");
                            reclaimed += 1;
                        }
                        assert!(quota == 0 || held < quota, "quota {quota} broken");
                        assert_eq!(pool.owner_of(port), Some(owner));
                        model.insert(port, owner);
                        allocations += 1;
                    }
                    Err(Denial::Quota { held: h }) => {
                        assert!(quota > 0 && h >= quota && h == held);
                    }
                    Err(Denial::Exhausted) => {
                        assert!(quota == 0 || held < quota);
                        for p in POOL_BASE..POOL_BASE + size {
                            assert!(
                                pool.owner_of(p).is_some()
                                    || prober.is_busy(p)
                                    || is_flying(p, &in_flight),
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
            7 => {
                for owner in pool.owners() {
                    if !alive(&owner) {
                        pool.release_owner(owner);
                    }
                }
                for (port, owner) in pool.held() {
                    assert!(alive(&owner), "port {port} still held by dead {owner:?}");
                }
            }
            8 => {
                // Given back by its holder; with the high bit by another
                // owner (who may hold other ports); with the next bit by an
                // owner the pool never saw.
                let holder = model.get(&port).copied();
                let stranger = Owner { pid, start_time: 0 };
                let owner = if arg & 0x80 != 0 {
                    let others = model.values().copied().filter(|o| Some(*o) != holder);
                    others.min_by_key(|o| o.pid != pid)
                } else if arg & 0x40 != 0 {
                    None
                } else {
                    holder
                }
                .unwrap_or(stranger);
                let released = pool.release_port(port, owner);
                assert_eq!(
                    released,
                    holder == Some(owner),
                    "release {port} as {owner:?}"
                );
                if released {
                    model.remove(&port);
                    // As the pool: a restored port was never counted.
                    allocations = allocations.saturating_sub(1);
                    assert_eq!(pool.owner_of(port), None);
                }
            }
            9 => {
                let Some(start_time) = procs.start_time(pid) else {
                    continue;
                };
                let owner = Owner { pid, start_time };
                let was_free = pool.manages(port)
                    && pool.owner_of(port).is_none()
                    && !is_flying(port, &in_flight);
                assert_eq!(pool.restore(port, owner), was_free);
                if was_free {
                    model.insert(port, owner);
                }
            }
            10 => {
                let Some(start_time) = procs.start_time(pid) else {
                    continue;
                };
                let owner = Owner { pid, start_time };
                let held = pool.held_by(owner) + flying(owner, &in_flight);
                match pool.take_candidate(owner, &procs, true) {
                    Ok(port) => {
                        assert!(pool.manages(port) && !is_flying(port, &in_flight));
                        assert!(quota == 0 || held < quota, "quota {quota} broken");
                        if let Some(prev) = model.get(&port) {
                            assert!(!alive(prev), "port {port} of live {prev:?} taken");
                        }
                        in_flight.push((port, owner));
                    }
                    Err(Denial::Quota { held: h }) => assert!(quota > 0 && h == held),
                    Err(Denial::Exhausted) => {
                        for p in POOL_BASE..POOL_BASE + size {
                            assert!(
                                pool.owner_of(p).is_some() || is_flying(p, &in_flight),
                                "port {p} queued, yet no candidate"
                            );
                        }
                    }
                    Err(other) => panic!("unexpected denial {other:?}"),
                }
            }
            _ => {
                if in_flight.is_empty() {
                    let stranger = Owner { pid, start_time: 0 };
                    assert!(!pool.finish_candidate(port, stranger, true));
                    continue;
                }
                let (port, owner) = in_flight.swap_remove(usize::from(arg) % in_flight.len());
                let free = !prober.is_busy(port);
                assert_eq!(pool.finish_candidate(port, owner, free), free);
                // Finished once: a second report is refused.
                assert!(!pool.finish_candidate(port, owner, free));
                if free {
                    if let Some(prev) = model.get(&port) {
                        assert!(!alive(prev), "port {port} of live {prev:?} handed out");
                        reclaimed += 1;
                    }
                    model.insert(port, owner);
                    allocations += 1;
                }
            }
        }
        if let Err(e) = pool.check_invariants() {
            panic!("{e}");
        }
        for (port, owner) in &model {
            if alive(owner) {
                assert_eq!(pool.owner_of(*port), Some(*owner), "live owner lost {port}");
            }
        }
        let before = model.len();
        model.retain(|port, owner| pool.owner_of(*port) == Some(*owner));
        reclaimed += (before - model.len()) as u64;
        for (port, owner) in pool.held() {
            assert_eq!(model.get(&port), Some(&owner), "pool and model differ");
        }
        let s = pool.stats();
        assert_eq!(s.managed, u64::from(size));
        assert_eq!(s.probing, in_flight.len() as u64);
        assert_eq!(s.free + s.held + s.probing, s.managed);
        assert_eq!(s.held, model.len() as u64);
        let owners: HashSet<&Owner> = model.values().collect();
        assert_eq!(s.owners, owners.len() as u64);
        assert_eq!(s.allocations, allocations);
        assert_eq!(s.reclaimed, reclaimed);
        assert!(s.denied_quota <= s.denied);
        assert!(s.checked_last <= 2 * server::MAX_PROBES_PER_REQUEST as u64);
    }
}
