//! The `portpicker` tool as a process: output, exit codes, the portserver
//! path and its fallback, and BIND_TIMEOUT's hold.
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
        .env_remove("PORTPICK_HOLD");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, PATIENCE)
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
    let dir = TempDir::new("cli");
    let port = port_of(&run(tool().env("PORTPICK_LOCK_DIR", dir.path())));
    assert!(port > 0);
    let port = port_of(&run(tool()
        .arg("12345")
        .env("PORTPICK_LOCK_DIR", dir.path())));
    assert!(port > 0);
}

#[test]
fn help_and_bad_arguments() {
    for flag in ["-h", "--help"] {
        let out = run(tool().arg(flag));
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("usage: portpicker"));
    }
    for args in [
        &["notapid"][..],
        &["1", "soon"],
        &["1", "-3"],
        &["1", "2", "3"],
    ] {
        let out = run(tool().args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("usage: portpicker"), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn asks_the_portserver_first_and_falls_back() {
    let ports = pool_ports(1);
    let (address, server) = embedded(&ports);
    let owner = sleeper();
    let got = port_of(&run(tool()
        .arg(owner.pid().to_string())
        .env("PORTSERVER_ADDRESS", &address)
        .env("PORTPICK_LOCK_DIR", "")));
    assert_eq!(got, ports[0]);
    // Pool empty: a local port, exit 0, and a note on stderr.
    let out = run(tool()
        .arg(owner.pid().to_string())
        .env("PORTSERVER_ADDRESS", &address)
        .env("PORTPICK_LOCK_DIR", ""));
    assert_ne!(port_of(&out), ports[0]);
    server.stop();
    // Nobody at the address: still a port.
    let out = run(tool()
        .arg(owner.pid().to_string())
        .env("PORTSERVER_ADDRESS", &address)
        .env("PORTPICK_LOCK_DIR", ""));
    assert!(port_of(&out) > 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("picking a port locally"));
}

fn tcp_busy(port: u16) -> bool {
    TcpListener::bind(("::", port))
        .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
        .is_err()
}

fn udp_busy(port: u16) -> bool {
    UdpSocket::bind(("::", port))
        .or_else(|_| UdpSocket::bind(("0.0.0.0", port)))
        .is_err()
}

/// Runs the tool with `args` as `$(portpicker ...)` does: reads its stdout
/// to the end (which must come when the tool exits, whatever helper it
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
    let dir = TempDir::new("cli");
    let hold = Duration::from_secs(4);
    let (status, text, eof) = capture(
        tool()
            .args([&std::process::id().to_string(), "4"])
            .env("PORTPICK_LOCK_DIR", dir.path()),
    );
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
    let dir = TempDir::new("cli");
    let (status, text, _) = capture(
        tool()
            .args([&std::process::id().to_string(), "1.5"])
            .env("PORTPICK_LOCK_DIR", dir.path()),
    );
    assert!(status.success());
    let port: u16 = text.trim().parse().unwrap();
    assert!(tcp_busy(port), "port {port} not held");
    assert!(eventually(|| !tcp_busy(port)), "port {port} held forever");
    // BIND_TIMEOUT 0: nothing held.
    let (status, text, _) = capture(
        tool()
            .args([&std::process::id().to_string(), "0"])
            .env("PORTPICK_LOCK_DIR", dir.path()),
    );
    assert!(status.success());
    let port: u16 = text.trim().parse().unwrap();
    assert!(!tcp_busy(port), "port {port} held with BIND_TIMEOUT 0");
}

#[test]
fn a_portserver_port_is_not_held() {
    // The portserver owns its ports; the tool binds nothing after exit.
    let ports = pool_ports(1);
    let (address, _server) = embedded(&ports);
    let owner = sleeper();
    let (status, text, _) = capture(
        tool()
            .args([&owner.pid().to_string(), "5"])
            .env("PORTSERVER_ADDRESS", &address)
            .env("PORTPICK_LOCK_DIR", ""),
    );
    assert!(status.success());
    assert_eq!(text, format!("{}\n", ports[0]));
    assert!(!tcp_busy(ports[0]), "portserver port {} held", ports[0]);
    assert!(!udp_busy(ports[0]));
}

#[test]
fn hold_lock_only_leaves_the_port_bindable() {
    let dir = TempDir::new("cli");
    let out = run(tool()
        .args([&std::process::id().to_string(), "3"])
        .env("PORTPICK_LOCK_DIR", dir.path())
        .env("PORTPICK_HOLD", "lock"));
    let port = port_of(&out);
    // Our own server can bind it at once ...
    assert!(!tcp_busy(port));
    // ... while other portpick users skip it (the lock is held).
    let other = portpick::Picker::new().lock_dir(Some(dir.path()));
    for _ in 0..50 {
        assert_ne!(other.pick_unused_port().unwrap(), port);
    }
}

#[test]
fn parallel_invocations_with_holds_get_distinct_ports() {
    let dir = TempDir::new("cli");
    let children: Vec<_> = (0..16)
        .map(|_| {
            tool()
                .args([&std::process::id().to_string(), "5"])
                .env("PORTPICK_LOCK_DIR", dir.path())
                .env("PORTPICK_HOLD", "lock")
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
    assert_eq!(distinct.len(), 16, "{ports:?}");
}

#[test]
fn stats_of_a_portserver() {
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
    let address = unique_address("fake");
    let server = fake_server(&address, b"hello\n");
    let dir = TempDir::new("cli");
    let out = run(tool()
        .arg("4242")
        .env("PORTSERVER_ADDRESS", &address)
        .env("PORTPICK_LOCK_DIR", dir.path()));
    assert!(port_of(&out) > 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hello") && err.contains(&address), "{err}");
    server.join().unwrap();
}

#[test]
fn parallel_invocations_with_bound_holds_get_distinct_ports() {
    let dir = TempDir::new("cli");
    let children: Vec<_> = (0..12)
        .map(|_| {
            tool()
                .args([&std::process::id().to_string(), "8"])
                .env("PORTPICK_LOCK_DIR", dir.path())
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
