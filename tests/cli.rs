//! The `portpicker` tool as a process: output, exit codes, the portserver
//! path and its fallback, the claim kept for the owner's life by a holder,
//! and BIND_TIMEOUT's hold (the holder's own life: tests/holder.rs). No portpick variable is set unless a test says.
#![cfg(target_os = "linux")]

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn tool() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portpicker"));
    cmd.env_remove("PORTSERVER_ADDRESS")
        .env_remove(portpick::CLAIMS_ENV);
    cmd
}

fn run(cmd: &mut Command) -> Output {
    run_bounded(cmd)
}

fn port_of(out: &Output) -> u16 {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.ends_with('\n') && text.lines().count() == 1,
        "{text:?}"
    );
    text.trim().parse().unwrap()
}

#[test]
fn prints_one_port() {
    let _turn = claims_turn();
    let port = port_of(&run(&mut tool()));
    assert!(port > 0);
    let port = port_of(&run(tool().arg("12345")));
    assert!(port > 0);
}

#[test]
fn help_and_bad_arguments() {
    let _turn = claims_turn();
    for flag in ["-h", "--help"] {
        let out = run(tool().arg(flag));
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("usage: portpicker"));
    }
    for args in [
        &["notapid"][..],
        &["1", "soon"],
        &["1", "-3"],
        &["1", "86400.5"],
        &["1", "1e9"],
        &["1", "2", "3"],
    ] {
        let out = run(tool().args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("usage: portpicker"), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    // The bound is said where the error is.
    let out = run(tool().args(["1", "90000"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("from 0 to 86400"));
    // Not UTF-8: a message and a usage error, not a panic.
    use std::os::unix::ffi::OsStrExt;
    let out = run(tool().arg(std::ffi::OsStr::from_bytes(b"12\xff")));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid UTF-8"));
}

#[test]
fn asks_the_portserver_first_and_falls_back() {
    let _turn = claims_turn();
    let ports = pool_ports(1);
    let (address, server) = embedded(&ports);
    let owner = sleeper();
    let got = port_of(&run(tool()
        .arg(owner.pid().to_string())
        .env("PORTSERVER_ADDRESS", &address)));
    assert_eq!(got, ports[0]);
    // Pool empty: a local port, exit 0, and a note on stderr.
    let out = run(tool()
        .arg(owner.pid().to_string())
        .env("PORTSERVER_ADDRESS", &address));
    assert_ne!(port_of(&out), ports[0]);
    server.stop();
    // Nobody at the address: still a port.
    let out = run(tool()
        .arg(owner.pid().to_string())
        .env("PORTSERVER_ADDRESS", &address));
    assert!(port_of(&out) > 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("picking a port locally"));
}

/// Runs the tool with `args` as `$(portpicker ...)` does: reads its stdout
/// to the end (which must come when the tool exits, whatever holder it
/// leaves behind) and waits for it. Bounded: a pipe kept open fails the
/// test after `PATIENCE` instead of hanging it.
fn capture(cmd: &mut Command) -> (std::process::ExitStatus, String, Instant) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let text = rx
        .recv_timeout(PATIENCE)
        .expect("the tool's stdout stayed open");
    let eof = Instant::now();
    let status = wait_output(child, PATIENCE).status;
    (status, text, eof)
}

#[test]
fn bind_timeout_holds_the_port_after_exit() {
    let _turn = claims_turn();
    let hold = Duration::from_secs(4);
    let (status, text, eof) = capture(tool().args([&std::process::id().to_string(), "4"]));
    assert!(status.success());
    let port: u16 = text.trim().parse().unwrap();
    // Still held after stdout closed and the tool exited: so the pipe was
    // not kept open until the hold ended.
    assert!(tcp_busy(port), "port {port} not held on TCP after exit");
    assert!(udp_busy(port), "port {port} not held on UDP after exit");
    assert!(!portpick::is_port_free(port));
    // Released when the hold ends (not before `hold` from the end of the
    // output, give or take a loaded machine).
    let deadline = eof + hold + PATIENCE;
    while tcp_busy(port) || udp_busy(port) {
        assert!(Instant::now() < deadline, "port {port} held forever");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        eof.elapsed() >= hold - Duration::from_secs(2),
        "released after {:?}, before the hold of {hold:?} ended",
        eof.elapsed()
    );
}

#[test]
fn a_fractional_bind_timeout() {
    let _turn = claims_turn();
    let (status, text, _) = capture(tool().args([&std::process::id().to_string(), "1.5"]));
    assert!(status.success());
    let port: u16 = text.trim().parse().unwrap();
    assert!(tcp_busy(port), "port {port} not held");
    assert!(eventually(|| !tcp_busy(port)), "port {port} held forever");
    // BIND_TIMEOUT 0: nothing held.
    let (status, text, _) = capture(tool().args([&std::process::id().to_string(), "0"]));
    assert!(status.success());
    let port: u16 = text.trim().parse().unwrap();
    assert!(!tcp_busy(port), "port {port} held with BIND_TIMEOUT 0");
}

#[test]
fn a_portserver_port_is_not_held() {
    let _turn = claims_turn();
    // The portserver owns its ports; the tool binds nothing after exit.
    let ports = pool_ports(1);
    let (address, _server) = embedded(&ports);
    let owner = sleeper();
    let (status, text, _) = capture(
        tool()
            .args([&owner.pid().to_string(), "5"])
            .env("PORTSERVER_ADDRESS", &address),
    );
    assert!(status.success());
    assert_eq!(text, format!("{}\n", ports[0]));
    assert!(!tcp_busy(ports[0]), "portserver port {} held", ports[0]);
    assert!(!udp_busy(ports[0]));
    // Nor claimed: the server owns it.
    assert!(!claimed(ports[0]));
}

/// Waits (bounded) until no claim in `ports` is held; how long it took.
fn released(ports: &[u16]) -> Duration {
    let start = Instant::now();
    let all = eventually(|| ports.iter().all(|&p| !claimed(p)));
    let held: Vec<u16> = ports.iter().copied().filter(|&p| claimed(p)).collect();
    assert!(all, "still claimed: {held:?}");
    start.elapsed()
}

#[test]
fn the_port_is_claimed_for_the_owners_life_and_bindable_at_once() {
    let _turn = claims_turn();
    let mut owner = sleeper();
    let port = port_of(&run(tool().arg(owner.pid().to_string())));
    // The owner can bind it at once: the holder holds the claim, not the
    // port ...
    let tcp = TcpListener::bind(("::", port)).or_else(|_| TcpListener::bind(("0.0.0.0", port)));
    assert!(tcp.is_ok(), "{port}: {tcp:?}");
    let udp = UdpSocket::bind(("::", port)).or_else(|_| UdpSocket::bind(("0.0.0.0", port)));
    assert!(udp.is_ok(), "{port}: {udp:?}");
    drop((tcp, udp));
    // ... while other portpick users skip it, after the tool has exited.
    std::thread::sleep(Duration::from_millis(600));
    assert!(claimed(port));
    owner.kill();
    let took = released(&[port]);
    assert!(
        took < Duration::from_secs(2),
        "claim outlived its owner by {took:?}"
    );
}

/// 200 calls at once for `pid`: their ports, distinct and claimed after
/// every call has exited.
fn two_hundred_calls_for(pid: u32) -> Vec<u16> {
    let children: Vec<_> = (0..200)
        .map(|_| {
            tool()
                .arg(pid.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| wait_output(c, PATIENCE))
        .collect();
    let ports: Vec<u16> = outputs.iter().map(port_of).collect();
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), 200, "{ports:?}");
    // No call fell back to an unheld pick.
    for out in &outputs {
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every call has exited; every port stays claimed past a sweep of the
    // holders, since the owner lives.
    std::thread::sleep(Duration::from_millis(600));
    let unclaimed: Vec<u16> = ports.iter().copied().filter(|&p| !claimed(p)).collect();
    assert!(unclaimed.is_empty(), "{unclaimed:?}");
    ports
}

#[test]
fn two_hundred_parallel_calls_for_one_owner_get_distinct_claimed_ports() {
    let _turn = claims_turn();
    let mut owner = sleeper();
    let ports = two_hundred_calls_for(owner.pid());
    owner.kill();
    let took = released(&ports);
    assert!(
        took < Duration::from_secs(2),
        "claims outlived their owner by {took:?}"
    );
}

#[test]
fn claims_off_is_pythons_tool() {
    let _turn = claims_turn();
    let owner = sleeper();
    let port = port_of(&run(tool()
        .arg(owner.pid().to_string())
        .env(portpick::CLAIMS_ENV, "off")));
    assert!(!claimed(port));
}

#[test]
fn stats_of_a_portserver() {
    let _turn = claims_turn();
    let ports = pool_ports(2);
    let (address, _server) = embedded(&ports);
    let out = run(tool().args(["--stats", &address]));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("num-ports-managed 2"), "{text}");
    // Through the environment too.
    let out = run(tool().arg("--stats").env("PORTSERVER_ADDRESS", &address));
    assert!(String::from_utf8_lossy(&out.stdout).contains("num-ports-managed 2"));
    // Nobody there: exit 1 with a message.
    let out = run(tool().args(["--stats", &unique_address("nobody")]));
    assert_eq!(out.status.code(), Some(1));
    assert!(!out.stderr.is_empty());
}

/// A one-shot fake portserver: answers `reply` and returns the request.
fn fake_server(address: &str, reply: &'static [u8]) -> std::thread::JoinHandle<Vec<u8>> {
    use std::io::Write;
    one_shot_server(address, move |s| {
        let _ = s.write_all(reply);
    })
}

#[test]
fn the_pid_asked_for_is_the_argument_or_our_parent() {
    let _turn = claims_turn();
    // The tool's parent is this test process.
    let address = unique_address("fake");
    let server = fake_server(&address, b"23456\n");
    let out = run(tool().env("PORTSERVER_ADDRESS", &address));
    assert_eq!(port_of(&out), 23456);
    assert_eq!(
        server.join().unwrap(),
        format!("{}\n", std::process::id()).as_bytes()
    );
    let address = unique_address("fake");
    let server = fake_server(&address, b"23457\n");
    let out = run(tool().arg("4242").env("PORTSERVER_ADDRESS", &address));
    assert_eq!(port_of(&out), 23457);
    assert_eq!(server.join().unwrap(), b"4242\n");
}

#[test]
fn a_portserver_that_answers_garbage_means_a_local_port() {
    let _turn = claims_turn();
    let address = unique_address("fake");
    let server = fake_server(&address, b"hello\n");
    let out = run(tool().arg("4242").env("PORTSERVER_ADDRESS", &address));
    assert!(port_of(&out) > 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hello") && err.contains(&address), "{err}");
    server.join().unwrap();
}

#[test]
fn parallel_invocations_with_bound_holds_get_distinct_ports() {
    let _turn = claims_turn();
    let children: Vec<_> = (0..12)
        .map(|_| {
            tool()
                .args([&std::process::id().to_string(), "8"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ports: Vec<u16> = children
        .into_iter()
        .map(|c| port_of(&wait_output(c, PATIENCE)))
        .collect();
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    for &p in &ports {
        assert!(tcp_busy(p), "port {p} not held");
    }
}
