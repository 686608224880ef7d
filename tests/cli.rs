//! The `portpicker` tool as a process: output, exit codes, the portserver
//! path and its fallback, and BIND_TIMEOUT's hold.
#![cfg(target_os = "linux")]

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::TcpListener;
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

#[test]
fn bind_timeout_holds_the_port_after_exit() {
    let dir = TempDir::new("cli");
    let start = Instant::now();
    // Read stdout to its end, as `$(portpicker $$ 6)` does: the helper that
    // holds the port must not keep the pipe open.
    let mut child = tool()
        .args([&std::process::id().to_string(), "6"])
        .env("PORTPICK_LOCK_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the tool waited for its hold: {:?}",
        start.elapsed()
    );
    let port: u16 = text.trim().parse().unwrap();
    assert!(tcp_busy(port), "port {port} not held after the tool exited");
    assert!(!portpick::is_port_free(port));
    // Released when the hold ends.
    assert!(eventually(|| !tcp_busy(port)), "port {port} held forever");
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
