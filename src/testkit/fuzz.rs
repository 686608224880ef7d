//! The fuzz checkers: entry points for the fuzz targets (`fuzz/`) and the
//! replay test (`tests/kit/tests/fuzz_replay.rs`).
//!
//! Each function takes arbitrary bytes, drives one pure part of the crate,
//! and panics when a property breaks, so that a fuzzer finds wrong answers
//! and not only crashes.

use crate::protocol::{
    self, NamespacedReply, Request, RequestError, Status, MAX_NAMESPACED_LEN, MAX_REQUEST_LEN,
    NAMESPACED_PREFIX,
};
use crate::server::policy::{check_pid, Denial, PID_MAX_LIMIT};
use crate::server::process::parse_stat;
use crate::server::ranges::{parse_port_ranges, RangeError};
use crate::server::state::{format_entry, format_header, parse_state};
use crate::testkit::pool_model::{PoolHarness, PoolOp};

/// The wire-protocol request parser (and the reply and stats parsers):
/// never panics, accepts only what the protocol allows, no network split
/// changes a request, and what it accepts reads back the same when written
/// out again.
pub fn request(data: &[u8]) {
    let parsed = whole(data);
    let namespaced = data.starts_with(NAMESPACED_PREFIX);
    assert_eq!(protocol::is_namespaced(data), namespaced);
    let limit = if namespaced {
        MAX_NAMESPACED_LEN
    } else {
        MAX_REQUEST_LEN
    };
    if data.len() > limit {
        assert_eq!(parsed, Err(RequestError::TooLong { len: data.len() }));
    }
    match &parsed {
        Ok(Request::Allocate { pid }) => {
            assert!(data.len() <= MAX_REQUEST_LEN && !namespaced);
            let line = data.strip_suffix(b"\n").unwrap_or(data);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let digits = line.strip_prefix(b"-").unwrap_or(line);
            assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
            assert_eq!(*pid < 0, line.starts_with(b"-") && *pid != 0);
            // The pid check agrees with its rules: 2 up to the limit.
            match check_pid(*pid) {
                Ok(ok) => {
                    assert!((2..PID_MAX_LIMIT).contains(pid) && i64::from(ok) == *pid)
                }
                Err(Denial::InvalidPid) => assert!(*pid <= 0),
                Err(Denial::Init) => assert_eq!(*pid, 1),
                Err(Denial::PidOutOfRange) => assert!(*pid >= PID_MAX_LIMIT),
                Err(other) => panic!("check_pid gave {other:?}"),
            }
            // Written back (as a client would) it parses the same, unless
            // it saturated or no longer fits.
            let again = format!("{pid}\n");
            if pid.unsigned_abs() < i64::MAX.unsigned_abs() && again.len() <= MAX_REQUEST_LEN {
                assert_eq!(whole(again.as_bytes()), Ok(Request::Allocate { pid: *pid }));
            }
        }
        Ok(Request::AllocateIn { namespace, pid }) => namespaced_request(data, *namespace, *pid),
        Ok(Request::Stats) => assert!(matches!(
            data,
            b"stats" | b"stats\n" | b"stats\r" | b"stats\r\n"
        )),
        Err(RequestError::TooLong { len }) => {
            assert_eq!(*len, data.len());
            assert!(*len > limit);
        }
        Err(RequestError::BadNamespace) => assert!(namespaced),
        Err(RequestError::InvalidByte { byte, at }) => {
            assert!(*at < data.len() && data[*at] == *byte, "{parsed:?}");
        }
        Err(RequestError::TrailingData) => {
            let nl = data.iter().position(|&b| b == b'\n');
            assert!(nl.is_some_and(|i| i + 1 < data.len()));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    splits(data, &parsed);

    replies(data);
}

/// What the server reads: the parse of `data` as a whole (end of input).
fn whole(data: &[u8]) -> Result<Request, RequestError> {
    match protocol::parse_request(data, true) {
        Ok(Status::Complete(request)) => Ok(request),
        Ok(Status::Partial) => panic!("partial at the end of input"),
        Err(e) => Err(e),
    }
}

/// The server reads until the parser stops saying [`Status::Partial`] (or
/// the end of input): an accepted request is partial at every shorter
/// prefix, so the server reads all of it however the network splits it;
/// and what the parser says before the end of input, it says at the end.
fn splits(data: &[u8], parsed: &Result<Request, RequestError>) {
    let open = protocol::parse_request(data, false);
    match &open {
        Ok(Status::Partial) => assert!(!data.contains(&b'\n')),
        Ok(Status::Complete(request)) => assert_eq!(parsed, &Ok(*request)),
        Err(e) => assert_eq!(parsed, &Err(e.clone())),
    }
    if parsed.is_ok() {
        let answered_at = (1..data.len())
            .find(|&n| protocol::parse_request(&data[..n], false) != Ok(Status::Partial));
        assert_eq!(
            answered_at, None,
            "accepted request answered before its end"
        );
    }
}

/// The reply and stats parsers on the same bytes: what they accept reads
/// back the same when written out again.
fn replies(data: &[u8]) {
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
    namespaced_reply(data);
}

/// An accepted `pidns NS PID` request: read plainly it says the same, and
/// written out again (as a client would) it parses the same.
fn namespaced_request(data: &[u8], namespace: u64, pid: i64) {
    assert!(data.len() <= MAX_NAMESPACED_LEN && namespace != 0);
    let text = std::str::from_utf8(data).expect("accepted bytes are ASCII");
    let line = text.trim_end_matches('\n').trim_end_matches('\r');
    let rest = &line[NAMESPACED_PREFIX.len()..];
    let (ns, p) = rest.split_once(' ').expect("two fields");
    assert!(ns.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(ns.parse::<u64>().ok(), Some(namespace));
    let digits = p.strip_prefix('-').unwrap_or(p);
    assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    if let Ok(pid) = u32::try_from(pid) {
        let again = protocol::format_namespaced_request(namespace, pid);
        assert_eq!(
            whole(&again),
            Ok(Request::AllocateIn {
                namespace,
                pid: i64::from(pid)
            })
        );
    }
}

/// The reply to a namespaced request: a port is never 0, a reason is one
/// line within its cap, and a denial written out reads back the same.
fn namespaced_reply(data: &[u8]) {
    match protocol::parse_namespaced_reply(data) {
        Ok(NamespacedReply::Port(port)) => assert!(port != 0),
        Ok(NamespacedReply::Denied(reason)) => {
            assert!(!reason.contains('\n'));
            assert!(reason.chars().count() <= protocol::MAX_DENIAL_LEN);
            if !reason.chars().any(char::is_control) {
                assert_eq!(
                    protocol::parse_namespaced_reply(&protocol::format_denial(&reason)),
                    Ok(NamespacedReply::Denied(reason))
                );
            }
        }
        Ok(NamespacedReply::Silent) => assert!(data.is_empty()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// The `/proc/PID/stat` parser: never panics, and agrees with a plain
/// reading of `proc(5)`: the state is field 3, the flags field 9, the
/// thread count field 20 and the start time field 22, all counted after the
/// *last* `)` (a command name may hold any bytes).
pub fn stat(data: &[u8]) {
    let number = |field: &[u8]| -> Option<u64> {
        // The kernel writes no sign and no leading zeros: more than 20
        // digits is no u64 (and `str::parse` would take a `+`).
        if field.len() > 20 || !field.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(field).ok()?.parse().ok()
    };
    let reference = || -> Option<(u8, u64, u64, u64)> {
        let close = data.iter().rposition(|&b| b == b')')?;
        let fields: Vec<&[u8]> = data[close + 1..]
            .split(|&b| b == b' ')
            .filter(|f| !f.is_empty())
            .collect();
        let state = *fields.first()?.first()?;
        let flags = number(fields.get(6)?)?;
        let threads = number(fields.get(17)?)?;
        let start = fields.get(19)?;
        let start = start.strip_suffix(b"\n").unwrap_or(start);
        Some((state, flags, threads, number(start)?))
    };
    let parsed = parse_stat(data);
    assert_eq!(
        parsed
            .as_ref()
            .ok()
            .map(|s| (s.state, s.flags, s.threads, s.start_time)),
        reference(),
        "{parsed:?}"
    );
    match parsed {
        Ok(s) => {
            // proc(5): a zombie with live threads is a process whose main
            // thread exited; one counting only itself is dead.
            let dead = matches!(s.state, b'X' | b'x') || (s.state == b'Z' && s.threads <= 1);
            assert_eq!(s.is_running(), !dead, "{s:?}");
            assert_eq!(s.is_kernel_thread(), s.flags & 0x0020_0000 != 0);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// The `--portserver_static_pool` parser: never panics, and returns exactly
/// the sorted, distinct ports of the in-bounds ranges written, skipping the
/// rest as Python's portserver does.
pub fn ranges(data: &[u8]) {
    // Each piece may name 65,535 ports: a long spec costs pieces x ports
    // and only repeats what a short one tests.
    let spec = String::from_utf8_lossy(&data[..data.len().min(256)]);
    let (ports, skipped) = parse_port_ranges(&spec);
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
            want_skipped.push(RangeError::Unparsable {
                piece: piece.to_string(),
            });
            continue;
        };
        if start < 1 || end > 65535 {
            want_skipped.push(RangeError::OutOfBounds {
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
/// pid; what it read, written out again, reads back the same; and the
/// same file with CRLF line ends reads the same.
pub fn state(data: &[u8]) {
    let s = parse_state(data);
    for (port, owner) in &s.entries {
        assert!(*port != 0 && owner.pid > 1);
    }
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
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
    let mut text = format_header(s.boot_id.as_deref());
    for &(port, owner) in &s.entries {
        text.push_str(&format_entry(port, owner));
    }
    let again = parse_state(text.as_bytes());
    assert!(!again.bad_header && again.errors.is_empty(), "{again:?}");
    assert_eq!(again.boot_id, s.boot_id);
    assert_eq!(again.entries, s.entries);
    same_with_crlf(data);
}

/// `data` without its CRs, and that with every LF made CRLF, parse alike:
/// a journal converted to CRLF loses nothing.
fn same_with_crlf(data: &[u8]) {
    let lf: Vec<u8> = data.iter().copied().filter(|&b| b != b'\r').collect();
    let mut crlf = Vec::with_capacity(lf.len() * 2);
    for &b in &lf {
        if b == b'\n' {
            crlf.push(b'\r');
        }
        crlf.push(b);
    }
    assert_eq!(parse_state(&lf), parse_state(&crlf));
}

/// The pool driven by `data` read as operations, two bytes each (see
/// [`PoolOp::from_bytes`]): allocations, processes ending and pids reused,
/// ports busy outside the server, sweeps, ports given back, reservations
/// restored, two-phase allocations interleaved with everything else, and a
/// process table that fails. The first byte sets the pool size and quota.
/// After every step the [`PoolHarness`] checks the pool against its model.
pub fn pool_ops(data: &[u8]) {
    let Some((&header, ops)) = data.split_first() else {
        return;
    };
    let size = u16::from(header % 32) + 1;
    let quota = usize::from(header / 32) % 5;
    let mut harness = PoolHarness::new(size, quota);
    // Each step checks the whole pool: cap the steps so one input stays fast.
    for op in ops.chunks_exact(2).take(256) {
        let op = PoolOp::from_bytes(op[0], op[1]);
        if let Err(e) = harness.apply(op) {
            panic!("after {op:?}: {e}");
        }
    }
}
