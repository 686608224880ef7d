//! A server writes only the state file it owns: a second start on the same
//! address or the same state file (a double start, a supervisor race, the
//! pool flag forgotten) exits 1 and changes nothing, and the live server
//! goes on serving with its journal intact. A rewrite keeps live owners'
//! reservations that lie outside the pool.
#![cfg(target_os = "linux")]

mod support;

use std::path::Path;

use support::*;

fn address_arg(address: &str) -> String {
    format!("--portserver_address={address}")
}

/// Whether the journal at `path` holds `port` for `pid`.
fn journaled(path: &Path, port: u16, pid: u32) -> bool {
    let text = std::fs::read_to_string(path).unwrap();
    let prefix = format!("{port} {pid} ");
    text.lines().skip(1).any(|l| l.starts_with(&prefix))
}

fn run(args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_portserver(&args)
}

/// A live server on a fresh address and state file, with one port handed
/// to a live owner. The second start is made by `second` (given the live
/// server's address, pool and state arguments); then the journal must be
/// byte for byte what it was and the live server must still serve and
/// journal.
fn second_start_changes_nothing(second: impl FnOnce(&str, &str, &str) -> Vec<String>) -> String {
    let dir = TempDir::new("owner");
    let state = dir.path().join("state");
    let ports = pool_ports(3);
    let address = unique_address("owner");
    let (pool, state_flag) = (pool_arg(&ports), state_arg(&state));
    let server = ServerProcess::start(&address, &[&pool, &state_flag]);
    let owner = sleeper();
    let a = ask(&address, owner.pid()).unwrap();
    let before = std::fs::read(&state).unwrap();

    let out = run(&second(&address, &pool, &state_flag));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(std::fs::read(&state).unwrap(), before, "{err}");

    let b = ask(&address, owner.pid());
    assert!(b.is_some(), "the live server stopped serving: {err}");
    let b = b.unwrap();
    assert_ne!(a, b);
    assert!(journaled(&state, a, owner.pid()) && journaled(&state, b, owner.pid()));
    assert!(
        !server.log_text().contains("replaced"),
        "{}",
        server.log_text()
    );
    err
}

#[test]
fn a_second_start_on_the_same_address_and_state_file_changes_nothing() {
    let err = second_start_changes_nothing(|address, pool, state| {
        vec![address_arg(address), pool.to_string(), state.to_string()]
    });
    assert!(err.contains("in use by another portserver"), "{err}");
}

#[test]
fn a_second_start_on_the_same_state_file_changes_nothing() {
    let err = second_start_changes_nothing(|_, pool, state| {
        let elsewhere = unique_address("owner-other");
        vec![address_arg(&elsewhere), pool.to_string(), state.to_string()]
    });
    assert!(err.contains("in use by another portserver"), "{err}");
    assert!(err.contains("@portpick/state/"), "names the lock: {err}");
}

#[test]
fn a_second_start_on_the_same_address_changes_nothing() {
    let other = TempDir::new("owner-other");
    let other_state = other.path().join("state");
    let err = second_start_changes_nothing(|address, pool, _| {
        vec![
            address_arg(address),
            pool.to_string(),
            state_arg(&other_state),
        ]
    });
    assert!(err.contains("already serving on"), "{err}");
    assert!(!other_state.exists(), "nothing written: {err}");
}

#[test]
fn a_double_start_with_the_pool_flag_forgotten_keeps_live_reservations() {
    second_start_changes_nothing(|address, _, state| vec![address_arg(address), state.to_string()]);
}

/// Finding 6: a restart with the pool flag forgotten keeps a live owner's
/// reservation (outside today's pool) in the journal, so the restart with
/// the right pool does not hand the port to another.
#[test]
fn a_rewrite_keeps_live_owners_outside_the_pool() {
    let dir = TempDir::new("owner");
    let state = dir.path().join("state");
    let ports = pool_ports(2);
    let address = unique_address("owner");
    let (pool, state_flag) = (pool_arg(&ports), state_arg(&state));
    let mut server = ServerProcess::start(&address, &[&pool, &state_flag]);
    let owner = sleeper();
    let a = ask(&address, owner.pid()).unwrap();
    server.child.kill();

    // The pool flag forgotten: the default pool does not hold `a`.
    let mut forgot = ServerProcess::start(&address, &[&state_flag]);
    assert!(
        forgot.wait_for_log("kept 1 reservation of live owners outside the pool"),
        "{}",
        forgot.log_text()
    );
    assert!(journaled(&state, a, owner.pid()));
    assert_eq!(stat(&address, "num-ports-held-outside-pool"), 1);
    forgot.child.kill();

    let server = ServerProcess::start(&address, &[&pool, &state_flag]);
    assert!(
        server.wait_for_log("restored 1 reservation"),
        "{}",
        server.log_text()
    );
    let other = sleeper();
    let got = ask(&address, other.pid());
    assert!(got.is_some() && got != Some(a), "{got:?} vs {a}");
    assert_eq!(ask(&address, other.pid()), None);
    drop(server);
}

/// Once its owner is gone, a reservation outside the pool is dropped from
/// the journal (at the next rewrite), not handed to the pool.
#[test]
fn a_reservation_outside_the_pool_ends_with_its_owner() {
    let dir = TempDir::new("owner");
    let state = dir.path().join("state");
    let ports = pool_ports(2);
    let address = unique_address("owner");
    let (state_flag, pool) = (state_arg(&state), pool_arg(&ports[..1]));
    let mut server = ServerProcess::start(&address, &[&pool_arg(&ports), &state_flag]);
    let mut owner = sleeper();
    let taken: Vec<u16> = (0..2)
        .map(|_| ask(&address, owner.pid()).unwrap())
        .collect();
    server.child.kill();
    let outside = if taken[0] == ports[0] {
        taken[1]
    } else {
        taken[0]
    };

    let mut narrow = ServerProcess::start(&address, &[&pool, &state_flag]);
    assert!(
        narrow.wait_for_log("kept 1 reservation of live owners outside the pool"),
        "{}",
        narrow.log_text()
    );
    assert_eq!(stat(&address, "num-ports-held-outside-pool"), 1);
    owner.kill();
    assert!(
        narrow.wait_for_log("dropped 1 reservation outside the pool"),
        "{}",
        narrow.log_text()
    );
    assert_eq!(stat(&address, "num-ports-held-outside-pool"), 0);
    narrow.child.kill();
    let restarted = ServerProcess::start(&address, &[&pool, &state_flag]);
    assert!(!journaled(&state, outside, owner.pid()));
    drop(restarted);
}

/// In a test rig's process: a second server on the same state file is
/// refused while the first runs; dropping (or stopping) the first stops its
/// threads and frees the lock, and the next start takes it over.
#[test]
fn an_embedded_server_holds_its_state_file_until_dropped() {
    use portpick::server::{ServerError, StateError};
    let dir = TempDir::new("owner");
    let state = dir.path().join("state");
    let ports = pool_ports(2);
    let with_state = |c: portpick::server::ServerConfig| c.state_file(Some(state.clone()));
    let (address, first) = embedded_with(&ports, with_state);
    let owner = sleeper();
    let a = ask(&address, owner.pid()).unwrap();

    let config = portpick::server::ServerConfig::new(unique_address("owner").parse().unwrap())
        .ports(ports.clone())
        .state_file(Some(state.clone()));
    match portpick::server::PortServer::new(config).start() {
        Err(ServerError::State(StateError::InUse { path, .. })) => assert_eq!(path, state),
        other => panic!("expected InUse, got {other:?}"),
    }
    assert_eq!(ask(&address, owner.pid()).map(|b| b != a), Some(true));

    drop(first);
    assert!(connect(&address).is_err(), "a dropped server stops serving");
    let (_, second) = embedded_with(&ports, with_state);
    drop(second);
    let (_, third) = embedded_with(&ports, with_state);
    third.stop();
    assert!(journaled(&state, a, owner.pid()));
}
