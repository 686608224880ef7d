//! The portserver, embedded on fresh abstract addresses and driven over real
//! unix sockets by real processes (pid reuse, with the test kit's fake
//! processes: tests/kit/tests/server.rs).
#![cfg(target_os = "linux")]

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use portpick::server::{Level, PortServer, ServerConfig, ServerError};
use support::*;

#[test]
fn two_allocations_for_one_live_pid_are_distinct() {
    let ports = pool_ports(3);
    let (address, _server) = embedded(&ports);
    let owner = sleeper();
    let a = ask(&address, owner.pid()).unwrap();
    let b = ask(&address, owner.pid()).unwrap();
    assert_ne!(a, b);
    assert!(ports.contains(&a) && ports.contains(&b));
    let s = stats(&address);
    assert_eq!(s["total-allocations"], 2);
    assert_eq!(s["num-ports-held"], 2);
    assert_eq!(s["num-owners"], 1);
}

#[test]
fn pids_that_cannot_own_a_port_are_denied() {
    let ports = pool_ports(2);
    let (address, _server) = embedded(&ports);
    let dead = dead_pid();
    for request in [
        format!("{dead}\n"),
        "0\n".to_string(),
        "1\n".to_string(),
        "-5\n".to_string(),
        "99999999\n".to_string(),
        format!("{}\n", (1u64 << 22) + 1),
    ] {
        assert!(
            raw_request(&address, request.as_bytes()).is_empty(),
            "{request:?} got a port"
        );
    }
    let s = stats(&address);
    assert_eq!(s["denied-allocations"], 6);
    assert_eq!(s["denied-pid"], 6);
    assert_eq!(s["total-allocations"], 0);
    assert_eq!(s["client-request-errors"], 0);
    // Still serving.
    let owner = sleeper();
    assert!(ask(&address, owner.pid()).is_some());
}

#[test]
fn malformed_requests_get_nothing_and_the_server_goes_on() {
    let ports = pool_ports(2);
    let (address, _server) = embedded(&ports);
    let owner = sleeper();
    let pid = owner.pid();
    let bad: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\n".to_vec(),
        b"abc\n".to_vec(),
        format!("{} {}\n", pid / 10, pid % 10).into_bytes(),
        format!(" {pid}\n").into_bytes(),
        format!("+{pid}\n").into_bytes(),
        b"0x1f\n".to_vec(),
        b"1_000\n".to_vec(),
        b"123456789012345678901234567890\n".to_vec(),
        b"\xff\xfe\xfd\n".to_vec(),
        format!("{pid}\n{pid}\n").into_bytes(),
    ];
    for (i, request) in bad.iter().enumerate() {
        assert!(
            raw_request(&address, request).is_empty(),
            "{:?} got an answer",
            String::from_utf8_lossy(request)
        );
        assert_eq!(
            stat(&address, "client-request-errors"),
            i as u64 + 1,
            "{:?} was not counted",
            String::from_utf8_lossy(request)
        );
    }
    let s = stats(&address);
    assert_eq!(s["client-request-errors"], bad.len() as u64);
    assert_eq!(s["total-allocations"], 0);
    assert!(ask(&address, pid).is_some(), "still serving");
}

#[test]
fn a_port_in_use_outside_the_server_is_skipped() {
    let ports = pool_ports(3);
    // One held on TCP (dual stack), one on UDP only.
    let tcp = TcpListener::bind(("::", ports[0])).unwrap();
    let udp = UdpSocket::bind(("0.0.0.0", ports[1])).unwrap();
    let (address, _server) = embedded(&ports);
    let owner = sleeper();
    assert_eq!(ask(&address, owner.pid()), Some(ports[2]));
    assert_eq!(ask(&address, owner.pid()), None);
    let s = stats(&address);
    assert!(s["ports-busy-skipped"] >= 2, "{s:?}");
    assert_eq!(s["denied-exhausted"], 1);
    drop((tcp, udp));
    // Once released they are handed out.
    // (Retried: another process's momentary probe of a port, a bind of
    // a few microseconds, makes the server skip it for that request.)
    let mut got = BTreeSet::new();
    let all = eventually(|| {
        got.extend(ask(&address, owner.pid()));
        got.len() == 2
    });
    assert!(all, "got {got:?}; stats {:?}", stats(&address));
    assert_eq!(got, BTreeSet::from([ports[0], ports[1]]));
}

#[test]
fn ports_of_a_dead_owner_come_back() {
    let ports = pool_ports(2);
    let (address, _server) =
        embedded_with(&ports, |c| c.reclaim_interval(Duration::from_millis(50)));
    let mut first = sleeper();
    let mine: BTreeSet<u16> = (0..2)
        .map(|_| ask(&address, first.pid()).unwrap())
        .collect();
    let second = sleeper();
    assert_eq!(ask(&address, second.pid()), None, "pool exhausted");
    first.kill();
    let mut got = BTreeSet::new();
    assert!(eventually(|| {
        if let Some(p) = ask(&address, second.pid()) {
            got.insert(p);
        }
        got.len() == 2
    }));
    assert_eq!(got, mine);
    assert_eq!(stat(&address, "ports-reclaimed"), 2);
}

#[test]
fn the_stats_request() {
    let ports = pool_ports(3);
    let (address, _server) = embedded(&ports);
    let owner = sleeper();
    ask(&address, owner.pid()).unwrap();
    raw_request(&address, b"junk\n");
    raw_request(&address, b"0\n");
    let reply = raw_request(&address, b"stats\n");
    let text = String::from_utf8(reply).unwrap();
    let names: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        &names[..5],
        [
            "client-request-errors",
            "denied-allocations",
            "num-ports-managed",
            "num-ports-checked-for-last-request",
            "total-allocations"
        ]
    );
    let s = stats(&address);
    assert_eq!(s["client-request-errors"], 1);
    assert_eq!(s["denied-allocations"], 1);
    assert_eq!(s["num-ports-managed"], 3);
    assert_eq!(s["total-allocations"], 1);
    assert_eq!(
        s["num-ports-free"] + s["num-ports-held"],
        s["num-ports-managed"]
    );
    assert_eq!(
        s["denied-allocations"],
        s["denied-pid"] + s["denied-quota"] + s["denied-exhausted"] + s["denied-state-file"]
    );
    assert!(s["stats-requests"] >= 2);
}

#[test]
fn split_writes_and_half_closed_requests_work() {
    let ports = pool_ports(2);
    let (address, _server) = embedded(&ports);
    let owner = sleeper();
    let pid = owner.pid().to_string();
    let (head, tail) = pid.split_at(1);

    let mut s = connect(&address).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(format!("{tail}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(ports.contains(&reply.trim().parse().unwrap()));

    // No newline: the end of the client's writing ends the request.
    let mut s = connect(&address).unwrap();
    s.write_all(pid.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(ports.contains(&reply.trim().parse().unwrap()));
}

#[test]
fn a_silent_client_times_out_without_holding_others() {
    let ports = pool_ports(1);
    let (address, _server) =
        embedded_with(&ports, |c| c.request_timeout(Duration::from_millis(200)));
    let mut silent = connect(&address).unwrap();
    let owner = sleeper();
    assert!(ask(&address, owner.pid()).is_some());
    // The silent one is closed by the server with no answer.
    let mut buf = Vec::new();
    silent.read_to_end(&mut buf).unwrap();
    assert!(buf.is_empty());
    assert!(eventually(|| stat(&address, "connections-timed-out") == 1));
}

#[test]
fn stop_is_prompt_and_frees_the_address() {
    let ports = pool_ports(1);
    let (address, server) = embedded(&ports);
    // Idle clients connected, one half-way through a request.
    let idle: Vec<_> = (0..5).map(|_| connect(&address).unwrap()).collect();
    let mut partial = connect(&address).unwrap();
    partial.write_all(b"12").unwrap();
    let start = Instant::now();
    server.stop();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        start.elapsed()
    );
    assert!(connect(&address).is_err(), "nobody listens after stop");
    drop(idle);
    // The same address can serve again.
    let config = ServerConfig::new(address.parse().unwrap())
        .ports(ports)
        .log_level(Level::Error);
    let again = PortServer::new(config).start().unwrap();
    let owner = sleeper();
    assert!(ask(&address, owner.pid()).is_some());
    drop(again);
}

#[test]
fn path_sockets_stale_taken_and_not_sockets() {
    let dir = TempDir::new("path");
    let path = dir.path().join("ps.sock");
    // A socket file left by a killed server: nobody accepts on it.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let ports = pool_ports(2);
    let config = || {
        ServerConfig::new(path.to_str().unwrap().parse().unwrap())
            .ports(ports.clone())
            .log_level(Level::Error)
    };
    let server = PortServer::new(config()).start().unwrap();
    let owner = sleeper();
    assert!(ask(path.to_str().unwrap(), owner.pid()).is_some());
    // Every user may connect (connecting needs write permission), whatever
    // the umask; the directory decides who may replace the socket.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666, "{mode:o}");

    // A live server there is not replaced.
    match PortServer::new(config()).start() {
        Err(e @ ServerError::AlreadyServing { .. }) => {
            assert!(e.to_string().contains("already serving"), "{e}")
        }
        other => panic!("expected AlreadyServing, got {other:?}"),
    }
    assert!(
        ask(path.to_str().unwrap(), owner.pid()).is_some(),
        "first still serves"
    );
    server.stop();
    assert!(!path.exists(), "stop removes its socket file");

    // A regular file is never removed.
    std::fs::write(&path, "precious").unwrap();
    match PortServer::new(config()).start() {
        Err(ServerError::NotASocket { .. }) => {}
        other => panic!("expected NotASocket, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn an_abstract_name_in_use_is_already_serving() {
    let ports = pool_ports(1);
    let (address, _server) = embedded(&ports);
    let config = ServerConfig::new(address.parse().unwrap())
        .ports(ports)
        .log_level(Level::Error);
    assert!(matches!(
        PortServer::new(config).start(),
        Err(ServerError::AlreadyServing { .. })
    ));
}

#[test]
fn the_quota_stops_one_pid_taking_the_pool() {
    let ports = pool_ports(6);
    let (address, _server) = embedded_with(&ports, |c| c.max_ports_per_pid(3));
    let greedy = sleeper();
    for _ in 0..3 {
        assert!(ask(&address, greedy.pid()).is_some());
    }
    assert_eq!(ask(&address, greedy.pid()), None);
    assert_eq!(ask(&address, greedy.pid()), None);
    let other = sleeper();
    assert!(ask(&address, other.pid()).is_some(), "others still served");
    let s = stats(&address);
    assert_eq!(s["denied-quota"], 2);
    assert_eq!(s["total-allocations"], 4);
}

#[test]
fn an_empty_pool_does_not_start() {
    let config = ServerConfig::new(unique_address("empty").parse().unwrap())
        .ports([])
        .log_level(Level::Error);
    assert!(matches!(
        PortServer::new(config).start(),
        Err(ServerError::EmptyPool)
    ));
}

#[test]
fn a_client_gone_before_its_answer_loses_no_port() {
    let ports = pool_ports(1);
    let (address, _server) = embedded(&ports);
    let owner = sleeper();
    for i in 1..=5 {
        // The whole request, then gone. With no newline the request ends
        // only with the client's close, so its answer cannot be delivered.
        let mut s = connect(&address).unwrap();
        s.write_all(owner.pid().to_string().as_bytes()).unwrap();
        drop(s);
        let done = eventually(|| stat(&address, "replies-undelivered") == i);
        assert!(done, "{:?}", stats(&address));
        // The allocation went back to the pool.
        assert_eq!(stat(&address, "num-ports-held"), 0);
    }
    assert_eq!(stat(&address, "total-allocations"), 0);
    assert_eq!(ask(&address, owner.pid()), Some(ports[0]));
}

/// Stops `server` on a thread; true if the stop returned within PATIENCE
/// (a stop that hangs leaves its thread behind and fails the test).
fn stops_in_bounded_time(server: portpick::server::ServerHandle) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        server.stop();
        let _ = tx.send(());
    });
    rx.recv_timeout(PATIENCE).is_ok()
}

#[test]
fn stop_returns_when_the_socket_file_is_gone() {
    let dir = TempDir::new("gone");
    let path = dir.path().join("ps.sock");
    let mut config = ServerConfig::new(path.to_str().unwrap().parse().unwrap())
        .ports(pool_ports(1))
        .log_level(Level::Error);
    config.acceptors = 3;
    let server = PortServer::new(config).start().unwrap();
    // As a tmp cleaner would.
    std::fs::remove_file(&path).unwrap();
    assert!(stops_in_bounded_time(server), "stop hung");
}

#[test]
fn stop_leaves_the_socket_file_of_a_server_started_since() {
    let dir = TempDir::new("since");
    let path = dir.path().join("ps.sock");
    let ports = pool_ports(2);
    let config = |port: u16| {
        ServerConfig::new(path.to_str().unwrap().parse().unwrap())
            .ports([port])
            .log_level(Level::Error)
    };
    let first = PortServer::new(config(ports[0])).start().unwrap();
    std::fs::remove_file(&path).unwrap();
    let second = PortServer::new(config(ports[1])).start().unwrap();
    assert!(stops_in_bounded_time(first), "stop hung");
    assert!(
        path.exists(),
        "the first server removed the second's socket"
    );
    let owner = sleeper();
    assert_eq!(ask(path.to_str().unwrap(), owner.pid()), Some(ports[1]));
    drop(second);
    assert!(!path.exists(), "the second removes its own socket");
}

#[test]
fn a_symlink_at_the_path_is_neither_followed_nor_replaced_and_nothing_is_left_behind() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("symlink");
    let path = dir.path().join("ps.sock");
    let target = dir.path().join("secret");
    std::fs::write(&target, "secret").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let config = || {
        ServerConfig::new(path.to_str().unwrap().parse().unwrap())
            .ports(pool_ports(1))
            .log_level(Level::Error)
    };
    match PortServer::new(config()).start() {
        Err(ServerError::NotASocket { .. }) => {}
        other => panic!("expected NotASocket, got {other:?}"),
    }
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert!(std::fs::symlink_metadata(&path).unwrap().is_symlink());
    // Served and stopped, a server leaves only what was there before.
    std::fs::remove_file(&path).unwrap();
    PortServer::new(config()).start().unwrap().stop();
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["secret"]);
}
