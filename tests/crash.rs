//! `kill -9` at random moments (issue 13), with the journal now and then
//! converted to CRLF and the server now and then started twice (issue 17):
//! no reservation is lost, no port is given twice.
#![cfg(target_os = "linux")]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

/// Asks for a port for `pid`; `None` for any failure (the server may be
/// dead or dying).
fn try_ask(address: &str, pid: u32) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = connect(address).ok()?;
    s.write_all(format!("{pid}\n").as_bytes()).ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    reply.trim_end().parse().ok()
}

/// A live process and who it is to the server: pid and start time.
struct Owner {
    _process: Reaper,
    id: (u32, u64),
}

fn new_owner() -> Owner {
    let process = sleeper();
    let pid = process.pid();
    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap();
    let start = portpick::__private::server::parse_stat(&stat)
        .unwrap()
        .start_time;
    Owner {
        _process: process,
        id: (pid, start),
    }
}

/// `(port, pid, start)` of every line of a state file but the header.
fn state_lines(path: &Path) -> std::collections::BTreeSet<(u16, u32, u64)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(' ');
            Some((
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// Rewrites the file at `path` with CRLF line ends.
fn to_crlf(path: &Path) {
    let Ok(text) = std::fs::read(path) else {
        return;
    };
    let mut crlf = Vec::with_capacity(text.len() * 2);
    for b in text {
        if b == b'\n' {
            crlf.push(b'\r');
        }
        crlf.push(b);
    }
    std::fs::write(path, crlf).unwrap();
}

/// Kills the server with `kill -9` at random moments while a client asks
/// for ports for owners that come and go, and restarts it on its state
/// file (now and then converted to CRLF, or started twice): no port is
/// ever held by two live owners, and after each restart every port a
/// client received is still recorded for its live owner.
/// Ignored by default (a few seconds here, more on a slow disk: every
/// allocation is fsynced); `.ci/run` runs it.
#[test]
#[ignore = "slow: every allocation is fsynced; run by .ci/run with --ignored"]
fn kill_9_at_random_moments_loses_no_reservation() {
    use std::collections::BTreeMap;
    const ALLOCATIONS: usize = 4000;
    const RESTARTS: usize = 100;
    const OWNERS: usize = 8;
    let dir = TempDir::new("crash");
    let state = dir.path().join("state");
    let ports = pool_ports(100);
    let pool = {
        let ranges: Vec<String> = ports.iter().map(|p| format!("{p}-{p}")).collect();
        format!("--portserver_static_pool={}", ranges.join(","))
    };
    let state_arg = format!("--portserver_state_file={}", state.display());
    let address = unique_address("crash");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut owners: Vec<Owner> = (0..OWNERS).map(|_| new_owner()).collect();
    // Port -> the owner a client heard it from, while that owner lives.
    let mut ledger: BTreeMap<u16, (u32, u64)> = BTreeMap::new();
    let (mut allocations, mut restarts, mut denied, mut replaced) =
        (0usize, 0usize, 0usize, 0usize);
    let deadline = std::time::Instant::now() + Duration::from_secs(110);
    while allocations < ALLOCATIONS || restarts < RESTARTS {
        assert!(
            std::time::Instant::now() < deadline,
            "{allocations} allocations, {restarts} restarts"
        );
        if restarts % 3 == 1 {
            // An editor or a copy through another OS made it CRLF.
            to_crlf(&state);
        }
        let mut server = ServerProcess::start(&address, &[&pool, &state_arg]);
        if restarts % 10 == 5 {
            // A double start (the pool flag forgotten, too) changes nothing.
            let out = run_portserver(&[&format!("--portserver_address={address}"), &state_arg]);
            assert_eq!(out.status.code(), Some(1));
        }
        // Every port a client received is in the journal the server just
        // rewrote from what it restored.
        let on_disk = state_lines(&state);
        for (port, (pid, start)) in &ledger {
            assert!(
                on_disk.contains(&(*port, *pid, *start)),
                "restart {restarts}: port {port} of live pid {pid} was lost"
            );
        }
        let victim = server.child.pid().to_string();
        let delay = Duration::from_millis(5 + rand(60));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            Command::new("kill").args(["-9", &victim]).status().unwrap();
        });
        loop {
            // Owners come and go while the server runs: one in ten requests
            // an owner ends (its ports go back once the server sees it gone,
            // at once when the pool runs dry) and another starts.
            if rand(10) == 0 {
                let gone = owners.swap_remove(rand(OWNERS as u64) as usize);
                ledger.retain(|_, holder| *holder != gone.id);
                drop(gone);
                owners.push(new_owner());
                replaced += 1;
            }
            let owner = &owners[rand(OWNERS as u64) as usize];
            match try_ask(&address, owner.id.0) {
                Some(port) => {
                    allocations += 1;
                    if let Some(holder) = ledger.insert(port, owner.id) {
                        panic!(
                            "port {port} given to {:?} while its live owner {holder:?} holds it",
                            owner.id
                        );
                    }
                }
                None if server.child.0.try_wait().unwrap().is_some() => break,
                None => denied += 1,
            }
        }
        killer.join().unwrap();
        server.child.kill();
        restarts += 1;
    }
    eprintln!(
        "{allocations} allocations, {restarts} restarts, {replaced} owners replaced, {denied} denials (pool dry or server dying)"
    );
}
