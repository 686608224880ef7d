//! `--portserver_state_file`: reservations survive `kill -9` and restarts,
//! gone owners are dropped, corrupt journals are read as far as they go,
//! and an unwritable path is an error at start.
#![cfg(target_os = "linux")]

mod support;

use std::collections::BTreeSet;

use portpick::server::{Level, PortServer, ServerConfig, ServerError};
use support::*;

#[test]
fn reservations_survive_kill_9() {
    let dir = TempDir::new("state");
    let state = dir.path().join("state");
    let ports = pool_ports(4);
    let address = unique_address("persist");
    let args = [pool_arg(&ports), state_arg(&state)];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let owner = sleeper();
    let mut server = ServerProcess::start(&address, &args);
    let a = ask(&address, owner.pid()).unwrap();
    let b = ask(&address, owner.pid()).unwrap();
    assert_ne!(a, b);
    // On disk before the client had its answer.
    let on_disk = journal(&state);
    let st = start_time(owner.pid());
    assert!(on_disk.contains(&(a, owner.pid(), st)), "{on_disk:?}");
    assert!(on_disk.contains(&(b, owner.pid(), st)), "{on_disk:?}");

    server.child.kill();
    let server = ServerProcess::start(&address, &args);
    assert!(
        server.wait_for_log("restored 2 reservations"),
        "{}",
        server.log_text()
    );
    assert_eq!(stat(&address, "num-ports-held"), 2);
    // Another process gets only the two other ports, never a or b.
    let other = sleeper();
    let got: BTreeSet<u16> = (0..2)
        .map(|_| ask(&address, other.pid()).unwrap())
        .collect();
    assert!(!got.contains(&a) && !got.contains(&b), "{got:?} vs {a} {b}");
    assert_eq!(ask(&address, other.pid()), None, "pool exhausted");
    drop(server);
}

#[test]
fn owners_gone_while_down_are_dropped() {
    let dir = TempDir::new("state");
    let state = dir.path().join("state");
    let ports = pool_ports(2);
    let address = unique_address("persist");
    let args = [pool_arg(&ports), state_arg(&state)];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut owner = sleeper();
    let mut server = ServerProcess::start(&address, &args);
    assert!(ask(&address, owner.pid()).is_some());
    assert!(ask(&address, owner.pid()).is_some());
    server.child.kill();
    owner.kill();

    let server = ServerProcess::start(&address, &args);
    assert!(
        server.wait_for_log("restored 0 reservations, dropped 2 (2 whose owner is gone)"),
        "{}",
        server.log_text()
    );
    assert_eq!(stat(&address, "num-ports-held"), 0);
    let next = sleeper();
    assert!(ask(&address, next.pid()).is_some());
    assert!(ask(&address, next.pid()).is_some());
    // The rewritten journal holds only the live state.
    assert_eq!(journal(&state).len(), 2);
    assert!(journal(&state).iter().all(|e| e.1 == next.pid()));
}

#[test]
fn a_missing_file_is_an_empty_state_and_is_created() {
    let dir = TempDir::new("state");
    let state = dir.path().join("new-state");
    let ports = pool_ports(1);
    let address = unique_address("persist");
    let args = [pool_arg(&ports), state_arg(&state)];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _server = ServerProcess::start(&address, &args);
    assert!(state.exists());
    assert!(journal(&state).is_empty());
    assert_eq!(stat(&address, "num-ports-held"), 0);
}

#[test]
fn a_corrupt_file_is_reported_and_what_can_be_read_is_kept() {
    let dir = TempDir::new("state");
    let state = dir.path().join("state");
    let ports = pool_ports(3);
    let owner = sleeper();
    let st = start_time(owner.pid());
    // A good line among garbage, a line for a port outside the pool, and a
    // torn last line (a crash mid-append).
    let text = format!(
        "portpick-state 1\nthis is not a line\n{} {} {st}\n\u{0}\u{1}\u{2}\n1 {} {st}\n{} {}",
        ports[0],
        owner.pid(),
        owner.pid(),
        ports[1],
        owner.pid(),
    );
    std::fs::write(&state, text).unwrap();
    let address = unique_address("persist");
    let args = [pool_arg(&ports), state_arg(&state)];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&address, &args);
    assert!(
        server.wait_for_log("skipping line 2"),
        "{}",
        server.log_text()
    );
    assert!(
        server.wait_for_log("restored 1 reservation, kept 1 outside the pool"),
        "{}",
        server.log_text()
    );
    assert_eq!(stat(&address, "num-ports-held"), 1);
    let other = sleeper();
    let a = ask(&address, other.pid()).unwrap();
    let b = ask(&address, other.pid()).unwrap();
    assert!(a != ports[0] && b != ports[0]);
    assert_eq!(ask(&address, other.pid()), None);

    // Binary garbage with no header at all is not ours: refused, untouched
    // (tests/kit/tests/state_faults.rs has the other files that are not
    // journals).
    let garbage = [0xffu8, 0, 0x80, b'\n', 0x7f];
    std::fs::write(&state, garbage).unwrap();
    let out = run_portserver(&[
        &format!("--portserver_address={}", unique_address("persist")),
        &pool_arg(&ports),
        &state_arg(&state),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read(&state).unwrap(), garbage);
}

#[test]
fn an_unwritable_state_file_is_an_error_at_start() {
    let dir = TempDir::new("state");
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    // A path below a regular file cannot be created, even by root.
    let state = blocker.join("state");
    let ports = pool_ports(1);
    let out = run_portserver(&[
        &format!("--portserver_address={}", unique_address("persist")),
        &pool_arg(&ports),
        &state_arg(&state),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("state file") && err.contains("a-file"),
        "{err}"
    );

    // Embedded: a typed error.
    let config = ServerConfig::new(unique_address("persist").parse().unwrap())
        .ports(ports)
        .state_file(Some(state))
        .log_level(Level::Error);
    match PortServer::new(config).start() {
        Err(ServerError::State(e)) => assert!(e.to_string().contains("a-file"), "{e}"),
        other => panic!("expected a state error, got {other:?}"),
    }
}
